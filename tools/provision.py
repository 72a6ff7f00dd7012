#!/usr/bin/env python3
"""Provision one Mosquitto 2 broker for the smart baskets: config, password file, ACL, optional TLS.

Writes everything into one folder, gives each basket its own user and random password, and keeps
a state file so that re-running adds baskets (or rotates chosen passwords) without touching the
others. No secret is ever printed: the summary names the files that hold them.

    sudo python3 tools/provision.py --baskets 1-200 --out /etc/mosquitto/smartbasket --tls \\
        --host mqtt.example.com
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_NAME = "provision.state.json"
STATE_VERSION = 1
MAX_BASKET_ID = 99999
BASKET_USER = "basket%d"
USER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Same as mosquitto_passwd 2.0: PBKDF2-SHA512, 12-byte salt, 101 rounds. The passwords are 192
# random bits, so more rounds would only slow down a reconnect storm, not an attacker.
PBKDF2_ITERATIONS = 101
PBKDF2_SALT_BYTES = 12
LOCAL_NAMES = ("localhost", "127.0.0.1")


class ProvisionError(Exception):
    """A problem the user can fix (missing tool, unreadable state); printed without a traceback."""


# --- basket lists -------------------------------------------------------------------------------


def parse_baskets(text: str) -> list[int]:
    """'1-3,7,9-10' -> [1, 2, 3, 7, 9, 10]. Raises ValueError with a message fit for a user."""
    ids: set[int] = set()
    if not text.strip():
        raise ValueError("empty basket list")
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", part)
        if not m:
            raise ValueError(
                "%r is not a basket number or range (expected e.g. 1-200 or 1,5,9-12)" % part
            )
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if lo < 1 or hi > MAX_BASKET_ID:
            raise ValueError("basket numbers must be between 1 and %d: %r" % (MAX_BASKET_ID, part))
        if hi < lo:
            raise ValueError("range %r runs backwards" % part)
        ids.update(range(lo, hi + 1))
    return sorted(ids)


def _basket_list_arg(text: str) -> list[int]:
    try:
        return parse_baskets(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def _port_arg(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a port number" % text)
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError("port %d is outside 1-65535" % port)
    return port


def _user_arg(text: str) -> str:
    if not USER_RE.fullmatch(text):
        raise argparse.ArgumentTypeError("%r: use 1-64 characters of A-Z a-z 0-9 _ . -" % text)
    if re.fullmatch(r"basket[0-9]+", text):
        raise argparse.ArgumentTypeError("%r would clash with the basket user names" % text)
    return text


# --- settings and state -------------------------------------------------------------------------


@dataclass
class Settings:
    """What the broker looks like; remembered in the state file so a re-run needs only --baskets."""

    port: int = 1883
    tls: bool = False
    tls_port: int = 8883
    tls_only: bool = False
    host: str = "localhost"
    bind: str = ""  # "" = every interface; the firewall decides who reaches it
    service_user: str = "service"
    run_as_user: str = "mosquitto"
    san: list[str] = field(default_factory=list)
    max_queued: int = 0  # 0 = sized from the number of baskets

    def tls_names(self) -> list[str]:
        names = [self.host] + [n for n in self.san if n != self.host]
        if self.host in LOCAL_NAMES:
            names += [n for n in LOCAL_NAMES if n not in names]
        return names


@dataclass
class State:
    settings: Settings = field(default_factory=Settings)
    baskets: list[int] = field(default_factory=list)
    passwords: dict[str, str] = field(default_factory=dict)
    server_cert_names: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> State | None:
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            if raw.get("version") != STATE_VERSION:
                raise ValueError("unknown version %r" % raw.get("version"))
            known = {f for f in Settings.__dataclass_fields__}
            settings = Settings(**{k: v for k, v in raw["settings"].items() if k in known})
            return cls(
                settings=settings,
                baskets=sorted(int(b) for b in raw["baskets"]),
                passwords={str(k): str(v) for k, v in raw["passwords"].items()},
                server_cert_names=list(raw.get("server_cert_names", [])),
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ProvisionError("cannot read the state file %s: %s" % (path, e))

    def dump(self) -> str:
        data: dict[str, Any] = {
            "version": STATE_VERSION,
            "comment": "Plain-text passwords of this broker's users. Keep it 0600, uncommitted.",
            "settings": asdict(self.settings),
            "baskets": self.baskets,
            "passwords": self.passwords,
            "server_cert_names": self.server_cert_names,
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def new_password() -> str:
    return secrets.token_urlsafe(24)


# --- files --------------------------------------------------------------------------------------


@dataclass
class Owner:
    """Who must be able to read the broker's own files (password file, ACL, key, data folder)."""

    uid: int = -1  # -1 leaves ownership as it is
    gid: int = -1
    name: str = ""

    def chown(self, path: Path) -> None:
        if self.uid >= 0:
            os.chown(path, self.uid, self.gid)


def write_file(path: Path, text: str, mode: int, owner: Owner | None = None) -> None:
    """Atomic write; the file has `mode` from the first byte on (no window with umask defaults)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        if owner is not None:
            owner.chown(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_dir(path: Path, mode: int, owner: Owner | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)
    if owner is not None:
        owner.chown(path)


def broker_owner(run_as_user: str) -> Owner:
    """Mosquitto started as root drops to `user` before it reads the password file and the ACL."""
    if os.geteuid() != 0 or run_as_user == "root":
        return Owner()
    import pwd

    try:
        pw = pwd.getpwnam(run_as_user)
    except KeyError:
        raise ProvisionError(
            "the broker user %r does not exist here. Install Mosquitto's package (it creates "
            "'mosquitto'), name another user with --run-as-user, or use --run-as-user root for "
            "a development broker" % run_as_user
        )
    return Owner(pw.pw_uid, pw.pw_gid, run_as_user)


def unreachable_ancestor(path: Path, owner: Owner) -> Path | None:
    """The first folder above `path` the broker user cannot enter, if any."""
    if owner.uid < 0:
        return None
    groups = set(os.getgrouplist(owner.name, owner.gid)) if owner.name else {owner.gid}
    for p in [path, *path.parents]:
        st = p.stat()
        if st.st_uid == owner.uid:
            ok = st.st_mode & 0o100
        elif st.st_gid in groups:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return p
    return None


# --- password file ------------------------------------------------------------------------------


def hash_password(password: str, salt: bytes | None = None) -> str:
    """Mosquitto 2's `$7$` format: PBKDF2-HMAC-SHA512, base64 salt and 64-byte key."""
    salt = secrets.token_bytes(PBKDF2_SALT_BYTES) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, 64)
    return "$7$%d$%s$%s" % (
        PBKDF2_ITERATIONS,
        base64.b64encode(salt).decode(),
        base64.b64encode(key).decode(),
    )


def find_mosquitto_passwd() -> str | None:
    found = shutil.which("mosquitto_passwd")
    if found:
        return found
    for candidate in ("/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def write_password_file(
    path: Path, passwords: dict[str, str], owner: Owner, tool: str | None
) -> str:
    """Writes the hashed password file; returns how it was hashed. Never puts a password in argv."""
    plain = "".join("%s:%s\n" % (user, pw) for user, pw in sorted(passwords.items()))
    if tool is None:
        hashed = "".join(
            "%s:%s\n" % (user, hash_password(pw)) for user, pw in sorted(passwords.items())
        )
        write_file(path, hashed, 0o600, owner)
        return "hashlib (PBKDF2-SHA512)"
    # `-U` hashes a plain user:password file in place; the plain copy lives only in a 0600 file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".passwd.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(plain)
        res = subprocess.run([tool, "-U", tmp], capture_output=True, text=True)
        if res.returncode != 0:
            raise ProvisionError("%s -U failed: %s" % (tool, (res.stderr or res.stdout).strip()))
        if "$7$" not in Path(tmp).read_text().splitlines()[0]:
            raise ProvisionError("%s did not write PBKDF2-SHA512 ($7$) hashes" % tool)
        owner.chown(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return tool + " -U"


# --- ACL and config -----------------------------------------------------------------------------


def acl_text(baskets: Iterable[int], service_user: str) -> str:
    lines = [
        "# Generated by tools/provision.py; re-run it instead of editing this file.",
        "# A basket publishes only its own update and availability and reads only its own status;",
        "# the service reads every update and availability and writes every status.",
        "# Anyone not named here, anonymous clients included, gets nothing ($SYS too).",
        "",
        "user %s" % service_user,
        "topic read basket/+/update",
        "topic read basket/+/availability",
        "topic write basket/+/status",
    ]
    for n in baskets:
        lines += [
            "",
            "user " + BASKET_USER % n,
            "topic write basket/%d/update" % n,
            "topic write basket/%d/availability" % n,
            "topic read basket/%d/status" % n,
        ]
    return "\n".join(lines) + "\n"


def max_queued(settings: Settings, n_baskets: int) -> int:
    if settings.max_queued:
        return settings.max_queued
    # A basket's own queue holds a few status messages (start, total, end) per shopping trip, so
    # 100 covers one that was offline for a long time. The same limit applies to the service's
    # session, which queues every basket's updates while it is down; Mosquitto drops the NEWEST
    # message when a queue is full, so that queue grows with the fleet.
    return max(100, 10 * n_baskets)


def config_text(out: Path, settings: Settings, n_baskets: int) -> str:
    bind = (" " + settings.bind) if settings.bind else ""
    lines = [
        "# Mosquitto 2 configuration generated by tools/provision.py on %s."
        % datetime.date.today().isoformat(),
        "# Start it as is:  mosquitto -c %s" % (out / "mosquitto.conf"),
        "# Re-run the tool to change it; SIGHUP (systemctl reload) re-reads passwords and ACL.",
        "",
        "# Started as root, Mosquitto drops to this user before it reads the files below.",
        "user %s" % settings.run_as_user,
        "per_listener_settings false",
        "",
    ]
    if not (settings.tls and settings.tls_only):
        lines += ["listener %d%s" % (settings.port, bind), "protocol mqtt", ""]
    if settings.tls:
        lines += [
            "listener %d%s" % (settings.tls_port, bind),
            "protocol mqtt",
            "certfile %s" % (out / "tls" / "server.crt"),
            "keyfile %s" % (out / "tls" / "server.key"),
            "tls_version tlsv1.2",
            "",
        ]
    lines += [
        "allow_anonymous false",
        "password_file %s" % (out / "passwd"),
        "acl_file %s" % (out / "acl"),
        "",
        "# Retained availability/updates and QoS 1 sessions survive a restart.",
        "persistence true",
        "persistence_location %s/" % (out / "data"),
        "autosave_interval 60",
        "# A basket that has been away this long loses its queued status messages.",
        "persistent_client_expiration 14d",
        "max_queued_messages %d" % max_queued(settings, n_baskets),
        "# Unacknowledged QoS 1 messages in flight to one client (default 20): the service",
        "# acknowledges each update once it is committed and its total confirmed, and works in",
        "# batches, so 20 at a time would cap it at 20 per round trip.",
        "max_inflight_messages 1000",
        "",
        "# Without it a basket's command/acknowledgement exchange meets Nagle's algorithm and",
        "# delayed ACKs: ~44 ms per round trip instead of well under 1 ms.",
        "set_tcp_nodelay true",
        "",
        "# stderr ends up in the journal under systemd.",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "connection_messages true",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
    ]
    return "\n".join(lines) + "\n"


# --- TLS ----------------------------------------------------------------------------------------


def _openssl(*args: str) -> None:
    res = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise ProvisionError("openssl %s failed: %s" % (args[0], res.stderr.strip()))


def _san_entry(name: str) -> str:
    try:
        ipaddress.ip_address(name)
        return "IP:" + name
    except ValueError:
        return "DNS:" + name


def make_tls(out: Path, names: list[str], owner: Owner, renew_server: bool) -> list[str]:
    """A development CA (kept across runs: baskets hold it) and a server certificate for `names`."""
    if shutil.which("openssl") is None:
        raise ProvisionError("--tls needs the openssl command (apt install openssl)")
    tls = out / "tls"
    make_dir(tls, 0o755)
    ca_key, ca_crt = tls / "ca.key", out / "ca.crt"
    done: list[str] = []
    if not (ca_key.exists() and ca_crt.exists()):
        old_umask = os.umask(0o077)
        try:
            _openssl(
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
                "-keyout", str(ca_key), "-out", str(ca_crt),
                "-subj", "/O=Smart Basket/CN=Smart Basket development CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            )  # fmt: skip
        finally:
            os.umask(old_umask)
        os.chmod(ca_key, 0o600)
        os.chmod(ca_crt, 0o644)
        renew_server = True
        done.append("new development CA %s" % ca_crt)
    server_key, server_crt = tls / "server.key", tls / "server.crt"
    if renew_server or not (server_key.exists() and server_crt.exists()):
        ext = "\n".join([
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=serverAuth",
            "subjectKeyIdentifier=hash",
            "authorityKeyIdentifier=keyid,issuer",
            "subjectAltName=" + ",".join(_san_entry(n) for n in names),
        ]) + "\n"  # fmt: skip
        with tempfile.TemporaryDirectory() as work:
            csr, extfile = Path(work) / "server.csr", Path(work) / "ext.cnf"
            extfile.write_text(ext)
            old_umask = os.umask(0o077)
            try:
                _openssl(
                    "req", "-newkey", "rsa:2048", "-nodes", "-sha256",
                    "-keyout", str(server_key), "-out", str(csr), "-subj", "/CN=" + names[0][:64],
                )  # fmt: skip
                _openssl(
                    "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                    "-set_serial", str(secrets.randbits(63)), "-days", "825", "-sha256",
                    "-extfile", str(extfile), "-out", str(server_crt),
                )  # fmt: skip
            finally:
                os.umask(old_umask)
        os.chmod(server_key, 0o600)
        owner.chown(server_key)
        os.chmod(server_crt, 0o644)
        done.append("server certificate for %s" % ", ".join(names))
    return done


# --- client files -------------------------------------------------------------------------------


def client_settings(
    out: Path, s: Settings, user: str, password: str, cafile: str
) -> dict[str, str]:
    """The connection keys every client gets. Values stay strings, exactly as in the .env file."""
    keys = {
        "MQTT_HOST": s.host,
        "MQTT_PORT": str(s.tls_port if s.tls else s.port),
        "MQTT_USER": user,
        "MQTT_PASSWORD": password,
    }
    if s.tls:
        keys["MQTT_TLS"] = "1"
        keys["MQTT_CAFILE"] = cafile
    return keys


def basket_settings(
    out: Path, s: Settings, n: int, password: str, cafile: str
) -> dict[str, str]:
    keys = client_settings(out, s, BASKET_USER % n, password, cafile)
    keys["MQTT_TOPIC"] = "basket/%d" % n
    keys["BASKET_ID"] = str(n)
    # Keep the documented order: connection, identity, then TLS.
    order = ["MQTT_HOST", "MQTT_PORT", "MQTT_USER", "MQTT_PASSWORD", "MQTT_TOPIC", "BASKET_ID",
             "MQTT_TLS", "MQTT_CAFILE"]  # fmt: skip
    return {k: keys[k] for k in order if k in keys}


def env_text(keys: dict[str, str], what: str) -> str:
    head = "# %s: generated by tools/provision.py. Secret: keep it 0600, never commit it.\n" % what
    return head + "".join("%s=%s\n" % kv for kv in keys.items())


# --- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="provision.py",
        description="Generate a Mosquitto 2 broker config with one user per basket, an ACL, "
        "and optional TLS. Re-running adds baskets and keeps existing passwords; options not "
        "given are taken from the previous run.",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="folder for everything generated (created if missing)")
    p.add_argument("--baskets", type=_basket_list_arg, metavar="LIST",
                   help="basket numbers, e.g. 1-200 or 1,5,9-12 (needed on the first run)")
    p.add_argument("--port", type=_port_arg, help="plain MQTT listener (default 1883)")
    p.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None,
                   help="add a TLS listener with a development CA and server certificate")
    p.add_argument("--tls-port", type=_port_arg, help="TLS listener (default 8883)")
    p.add_argument("--tls-only", action=argparse.BooleanOptionalAction, default=None,
                   help="with --tls, no plain listener at all")
    p.add_argument("--host", help="name or address clients connect to; also the certificate's "
                   "CN and first SAN (default localhost, with 127.0.0.1 as a second SAN)")
    p.add_argument("--san", action="append", metavar="NAME",
                   help="extra certificate name or IP address (repeatable)")
    p.add_argument("--bind", metavar="ADDRESS",
                   help="listen on this address only (default: every interface)")
    p.add_argument("--service-user", type=_user_arg, help="backend user name (default service)")
    p.add_argument("--run-as-user", type=_user_arg, metavar="USER",
                   help="the `user` line of the config (default mosquitto); when this tool runs "
                   "as root it hands the broker's files to that user. 'root' is for development")
    p.add_argument("--max-queued", type=int, metavar="N",
                   help="max_queued_messages (default max(100, 10 x baskets))")
    p.add_argument("--rotate", type=_basket_list_arg, metavar="LIST",
                   help="give these baskets new passwords")
    p.add_argument("--rotate-service", action="store_true", help="give the service a new password")
    p.add_argument("--board-cafile", default="ca.crt", metavar="PATH",
                   help="MQTT_CAFILE in the boards' .json files (default ca.crt, next to "
                   "config.json on the board)")
    p.add_argument("--no-mosquitto-passwd", action="store_true",
                   help="hash in Python even when mosquitto_passwd is installed")
    return p


def resolve_settings(args: argparse.Namespace, old: Settings | None) -> Settings:
    s = Settings(**asdict(old)) if old else Settings()
    for name in ("port", "tls", "tls_port", "tls_only", "host", "bind", "service_user",
                 "run_as_user", "san", "max_queued"):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            setattr(s, name, value)
    return s


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out: Path = args.out.expanduser().resolve()
    if out.exists() and not out.is_dir():
        parser.error("--out %s is not a folder" % out)
    state_path = out / STATE_NAME
    old = State.load(state_path)
    s = resolve_settings(args, old.settings if old else None)
    if old is None and not args.baskets:
        parser.error("--baskets is required on the first run into %s" % out)
    if s.tls and not (s.tls_only) and s.tls_port == s.port:
        parser.error("--port and --tls-port are both %d" % s.port)
    if s.tls_only and not s.tls:
        parser.error("--tls-only needs --tls")
    if s.max_queued < 0:
        parser.error("--max-queued must be positive")

    state = old or State()
    state.settings = s
    known = set(state.baskets)
    new = sorted(set(args.baskets or []) - known)
    state.baskets = sorted(known | set(new))
    rotate = set(args.rotate or [])
    unknown = rotate - set(state.baskets)
    if unknown:
        parser.error("--rotate: no such basket(s): %s" % ",".join(map(str, sorted(unknown))))

    users = {BASKET_USER % n: n in rotate for n in state.baskets}
    users[s.service_user] = args.rotate_service
    passwords = {}
    for user, rotate_it in users.items():
        old_pw = state.passwords.get(user)
        passwords[user] = new_password() if rotate_it or not old_pw else old_pw
    state.passwords = passwords

    owner = broker_owner(s.run_as_user)
    if not out.exists():
        make_dir(out, 0o755)
    blocked = unreachable_ancestor(out, owner)
    if blocked is not None:
        print("provision: warning: user %r cannot enter %s, so Mosquitto started as root will "
              "not read its files; pick another --out or make it traversable (chmod o+x)"
              % (owner.name, blocked), file=sys.stderr)  # fmt: skip

    # Passwords first: whatever fails later, a re-run finds the same ones.
    write_file(state_path, state.dump(), 0o600)

    tool = None if args.no_mosquitto_passwd else find_mosquitto_passwd()
    hashed_by = write_password_file(out / "passwd", passwords, owner, tool)
    write_file(out / "acl", acl_text(state.baskets, s.service_user), 0o600, owner)
    make_dir(out / "data", 0o700, owner)
    notes: list[str] = []
    if s.tls:
        names = s.tls_names()
        notes += make_tls(out, names, owner, renew_server=names != state.server_cert_names)
        state.server_cert_names = names
        write_file(state_path, state.dump(), 0o600)
    write_file(out / "mosquitto.conf", config_text(out, s, len(state.baskets)), 0o644)

    make_dir(out / "baskets", 0o700)
    cafile = str(out / "ca.crt")
    for n in state.baskets:
        keys = basket_settings(out, s, n, passwords[BASKET_USER % n], cafile)
        write_file(out / "baskets" / ("%d.env" % n), env_text(keys, "basket %d" % n), 0o600)
        if s.tls:
            keys["MQTT_CAFILE"] = args.board_cafile
        write_file(out / "baskets" / ("%d.json" % n),
                   json.dumps(keys, indent=2) + "\n", 0o600)  # fmt: skip
    service = client_settings(out, s, s.service_user, passwords[s.service_user], cafile)
    write_file(out / "service.env", env_text(service, "backend service"), 0o600)

    rotated = sorted(rotate) + ([s.service_user] if args.rotate_service else [])
    print("provision: %d baskets in %s (%d new%s); passwords hashed with %s" % (
        len(state.baskets), out, len(new),
        (", new passwords for %s" % ",".join(map(str, rotated))) if rotated else "",
        hashed_by))  # fmt: skip
    for note in notes:
        print("provision: " + note)
    print("  broker config   %s   (start: mosquitto -c %s)" % (out / "mosquitto.conf",
                                                            out / "mosquitto.conf"))  # fmt: skip
    print("  users, ACL      %s, %s" % (out / "passwd", out / "acl"))
    print("  basket files    %s/<n>.env and <n>.json   (secret, 0600)" % (out / "baskets"))
    print("  service file    %s   (secret, 0600)" % (out / "service.env"))
    print("  all passwords   %s   (secret, 0600; keep it to add baskets later)" % state_path)
    if s.tls:
        print("  CA for clients  %s" % cafile)
    if owner.uid >= 0:
        print("  broker files handed to user %r (the config's `user`)" % owner.name)
    if rotated:
        print("  reload a running broker to apply: systemctl reload mosquitto (or kill -HUP)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except ProvisionError as e:
        print("provision: error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
