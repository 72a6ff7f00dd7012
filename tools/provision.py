#!/usr/bin/env python3
"""Provision one Mosquitto 2 broker for the smart baskets: config, dynamic-security users and
roles, optional TLS.

Writes everything into one folder, gives each basket its own user, random password and client id,
and keeps a state file so that re-running adds baskets (or rotates chosen passwords) without
touching the others. No secret is ever printed: the summary names the files that hold them.

    sudo python3 tools/provision.py --baskets 1-200 --out /etc/mosquitto/smartbasket --tls \\
        --host mqtt.example.com
"""

from __future__ import annotations

import argparse
import base64
import datetime
import glob
import hashlib
import hmac
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
OTA_KEYS_NAME = "ota-keys.json"  # every basket's OTA_KEY, for the service (OTA_KEYS_FILE)
STATE_VERSION = 1
MAX_BASKET_ID = 99999
BASKET_USER = "basket%d"
BASKET_CLIENT_ID = "basket-%d"  # the controller's default MQTT_CLIENT_ID; the broker insists on it
SERVICE_CLIENT_ID = "basket-service-%d"  # worker k's SERVICE_CLIENT_ID (service.env: k = 1)
DYNSEC_NAME = "dynamic-security.json"
DYNSEC_PLUGIN = "mosquitto_dynamic_security.so"
# Where Debian/Ubuntu (multiarch), Fedora and a source build put the plugin.
DYNSEC_PLUGIN_GLOBS = ("/usr/lib/*-linux-gnu*/" + DYNSEC_PLUGIN, "/usr/lib/" + DYNSEC_PLUGIN,
                       "/usr/lib64/" + DYNSEC_PLUGIN, "/usr/local/lib/" + DYNSEC_PLUGIN,
                       "/usr/local/lib/*/" + DYNSEC_PLUGIN)
DYNSEC_PLUGIN_DEFAULT = "/usr/lib/x86_64-linux-gnu/" + DYNSEC_PLUGIN
# The whole MQTT packet, as Mosquitto counts it: a client that sends a bigger one is disconnected
# as soon as the fixed header announces its length, before the body is read. An update payload
# is at most 4096 bytes (basket_service/contract.py MAX_PAYLOAD, the basket's own 4 KiB packet
# limit), plus topic and header: 8192 leaves room and cuts a 50 MiB publish at its first bytes.
MAX_PACKET_SIZE = 8192
# Payloads above the contract's limit that still fit in a packet are acknowledged and dropped:
# never retained, never delivered.
MESSAGE_SIZE_LIMIT = 4096
USER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# Same as mosquitto_ctrl and mosquitto_passwd 2.0: PBKDF2-SHA512, 12-byte salt, 101 rounds. The
# passwords are 192 random bits, so more rounds would only slow down a reconnect storm, not an
# attacker.
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
    service_workers: int = 1
    run_as_user: str = "mosquitto"
    san: list[str] = field(default_factory=list)
    max_queued: int = 0  # 0 = sized from the number of baskets
    dynsec_plugin: str = ""  # "" = found on this machine (DYNSEC_PLUGIN_GLOBS)

    def service_users(self) -> list[str]:
        """Worker 1 is `service_user` itself (service.env); worker k >= 2 is `<user>-k`."""
        return [self.service_user] + ["%s-%d" % (self.service_user, k)
                                      for k in range(2, self.service_workers + 1)]

    @staticmethod
    def service_env_name(k: int) -> str:
        return "service.env" if k == 1 else "service-%d.env" % k

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
    ota_keys: dict[str, str] = field(default_factory=dict)  # basket number -> its OTA_KEY
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
                ota_keys={str(k): str(v) for k, v in raw.get("ota_keys", {}).items()},
                server_cert_names=list(raw.get("server_cert_names", [])),
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ProvisionError("cannot read the state file %s: %s" % (path, e))

    def dump(self) -> str:
        data: dict[str, Any] = {
            "version": STATE_VERSION,
            "comment": "Plain-text passwords of this broker's users and the baskets' update keys."
                       " Keep it 0600, uncommitted.",
            "settings": asdict(self.settings),
            "baskets": self.baskets,
            "passwords": self.passwords,
            "ota_keys": self.ota_keys,
            "server_cert_names": self.server_cert_names,
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def new_password() -> str:
    return secrets.token_urlsafe(24)


def new_ota_key() -> str:
    """A basket's OTA_KEY: 32 random bytes as 64 lowercase hex characters. The service signs
    each update it pushes to that basket with it (HMAC-SHA256, docs/ota.md)."""
    return secrets.token_hex(32)


# --- files --------------------------------------------------------------------------------------


@dataclass
class Owner:
    """Who must be able to read the broker's own files (dynamic-security file, key, data)."""

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
    """Mosquitto started as root drops to `user` before its plugin reads the users and roles."""
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


# --- users and roles: the dynamic-security plugin's file ----------------------------------------


def pbkdf2(password: str, salt: bytes) -> bytes:
    return hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS, 64)


def hash_password(password: str, salt: bytes | None = None) -> dict[str, Any]:
    """The plugin's fields (as `mosquitto_ctrl dynsec init` writes them): PBKDF2-HMAC-SHA512 with
    a 12-byte salt, the 64-byte key and the salt in base64, and the iteration count."""
    salt = secrets.token_bytes(PBKDF2_SALT_BYTES) if salt is None else salt
    return {"password": base64.b64encode(pbkdf2(password, salt)).decode(),
            "salt": base64.b64encode(salt).decode(), "iterations": PBKDF2_ITERATIONS}


def _hash_kept(password: str, old: dict[str, Any] | None) -> dict[str, Any]:
    """The old entry's hash when it is still this password: a re-run that changes nothing
    rewrites the same bytes."""
    try:
        if old and old.get("iterations") == PBKDF2_ITERATIONS:
            salt = base64.b64decode(old["salt"], validate=True)
            if hmac.compare_digest(base64.b64encode(pbkdf2(password, salt)).decode(),
                                   str(old["password"])):
                return {k: old[k] for k in ("password", "salt", "iterations")}
    except (KeyError, TypeError, ValueError):
        pass
    return hash_password(password)


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def service_acls() -> list[dict[str, Any]]:
    """Every basket's update, availability and health in, every basket's status, config and
    ota (the update pushes) out. Shared subscriptions are checked by the plugin as the whole filter
    (`$share/<group>/basket/+/update`), so they need their own patterns; `$share/+/...` lets
    any group name through."""
    acls = [_acl("publishClientSend", "basket/+/status"),
            _acl("publishClientSend", "basket/+/config"),
            _acl("publishClientSend", "basket/+/ota")]
    for topic in ("basket/+/update", "basket/+/availability", "basket/+/health"):
        acls += [_acl("publishClientReceive", topic), _acl("subscribePattern", topic),
                 _acl("subscribePattern", "$share/+/" + topic)]
    return acls


def basket_acls(n: int) -> list[dict[str, Any]]:
    """Its own update, availability and health out, its own status, config and ota in, and
    three subscriptions: exactly `basket/<n>/status`, `basket/<n>/config` and `basket/<n>/ota`
    (literals: no wildcard, no `$share/`, no other basket). It never sends on config or ota."""
    return [_acl("publishClientSend", "basket/%d/update" % n),
            _acl("publishClientSend", "basket/%d/availability" % n),
            _acl("publishClientSend", "basket/%d/health" % n),
            _acl("publishClientReceive", "basket/%d/status" % n),
            _acl("subscribeLiteral", "basket/%d/status" % n),
            _acl("publishClientReceive", "basket/%d/config" % n),
            _acl("subscribeLiteral", "basket/%d/config" % n),
            _acl("publishClientReceive", "basket/%d/ota" % n),
            _acl("subscribeLiteral", "basket/%d/ota" % n)]


def dynsec_doc(baskets: Iterable[int], settings: Settings, passwords: dict[str, str],
               old: dict[str, Any] | None = None) -> dict[str, Any]:
    """The plugin's whole configuration. Anything no role allows is refused, anonymous clients
    and `$SYS` included; only unsubscribing is always allowed."""
    old_clients = {c.get("username"): c for c in (old or {}).get("clients", [])
                   if isinstance(c, dict)}
    clients: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = [{"rolename": "service",
                                    "textName": "the backend: prices every basket",
                                    "acls": service_acls()}]
    for user in settings.service_users():
        # Not bound to a client id: the CLI and the dashboard connect with random
        # `basket-cli-<hex>` ids under the same login (docs/broker.md).
        clients.append({"username": user, "textName": "backend service worker",
                        "roles": [{"rolename": "service", "priority": 0}],
                        **_hash_kept(passwords[user], old_clients.get(user))})
    for n in baskets:
        user = BASKET_USER % n
        clients.append({"username": user, "textName": "basket %d" % n,
                        "clientid": BASKET_CLIENT_ID % n,
                        "roles": [{"rolename": user, "priority": 0}],
                        **_hash_kept(passwords[user], old_clients.get(user))})
        roles.append({"rolename": user, "acls": basket_acls(n)})
    return {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False,
                             "subscribe": False, "unsubscribe": True},
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def load_dynsec(path: Path) -> dict[str, Any] | None:
    """The previous run's file, for its salts; a missing or unreadable one is simply rebuilt."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def find_dynsec_plugin() -> str | None:
    for pattern in DYNSEC_PLUGIN_GLOBS:
        for found in sorted(glob.glob(pattern)):
            if os.path.isfile(found):
                return found
    return None


# --- config ---------------------------------------------------------------------------------------


def max_queued(settings: Settings, n_baskets: int) -> int:
    if settings.max_queued:
        return settings.max_queued
    # A basket's own queue holds a few status messages (start, total, end) per shopping trip, so
    # 100 covers one that was offline for a long time. The same limit applies to the service's
    # session, which queues every basket's updates while it is down; Mosquitto drops the NEWEST
    # message when a queue is full, so that queue grows with the fleet.
    return max(100, 10 * n_baskets)


def config_text(out: Path, settings: Settings, n_baskets: int, plugin: str) -> str:
    bind = (" " + settings.bind) if settings.bind else ""
    lines = [
        "# Mosquitto 2 configuration generated by tools/provision.py on %s."
        % datetime.date.today().isoformat(),
        "# Start it as is:  mosquitto -c %s" % (out / "mosquitto.conf"),
        "# Re-run the tool to change it, then restart the broker: the dynamic-security plugin",
        "# reads its users and roles only at start (SIGHUP does not reload them).",
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
        "# Users, passwords, client ids and per-basket roles (docs/broker.md). A basket login",
        "# connects only as basket-<n> and subscribes only to basket/<n>/status and /config.",
        "plugin %s" % plugin,
        "plugin_opt_config_file %s" % (out / DYNSEC_NAME),
        "",
        "# Size limits (docs/broker.md): a bigger packet closes the sender's connection unread;",
        "# a bigger payload is acknowledged and dropped.",
        "max_packet_size %d" % MAX_PACKET_SIZE,
        "message_size_limit %d" % MESSAGE_SIZE_LIMIT,
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
    out: Path, s: Settings, n: int, password: str, cafile: str, ota_key: str
) -> dict[str, str]:
    keys = client_settings(out, s, BASKET_USER % n, password, cafile)
    keys["MQTT_TOPIC"] = "basket/%d" % n
    keys["BASKET_ID"] = str(n)
    keys["MQTT_CLIENT_ID"] = BASKET_CLIENT_ID % n  # the only id the broker accepts for it
    keys["OTA_KEY"] = ota_key  # checks the service's signature on every update pushed to it
    # Keep the documented order: connection, identity, TLS, then the update key.
    order = ["MQTT_HOST", "MQTT_PORT", "MQTT_USER", "MQTT_PASSWORD", "MQTT_TOPIC", "BASKET_ID",
             "MQTT_CLIENT_ID", "MQTT_TLS", "MQTT_CAFILE", "OTA_KEY"]  # fmt: skip
    return {k: keys[k] for k in order if k in keys}


def service_settings(
    out: Path, s: Settings, k: int, user: str, password: str, cafile: str
) -> dict[str, str]:
    keys = client_settings(out, s, user, password, cafile)
    keys["SERVICE_CLIENT_ID"] = SERVICE_CLIENT_ID % k  # one session per worker
    keys["OTA_KEYS_FILE"] = str(out / OTA_KEYS_NAME)  # `release push` signs with these
    return keys


def _workers_arg(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number" % text)
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError("--service-workers must be between 1 and 64")
    return n


def env_text(keys: dict[str, str], what: str) -> str:
    head = "# %s: generated by tools/provision.py. Secret: keep it 0600, never commit it.\n" % what
    return head + "".join("%s=%s\n" % kv for kv in keys.items())


# --- command line -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="provision.py",
        description="Generate a Mosquitto 2 broker config with one user, client id and role per "
        "basket (the dynamic-security plugin), and optional TLS. Re-running adds baskets and "
        "keeps existing passwords; options not given are taken from the previous run.",
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
    p.add_argument("--service-workers", type=_workers_arg, metavar="N",
                   help="backend logins (default 1): service.env, then service-2.env ... for "
                   "<user>-2 ..., each with its own password and SERVICE_CLIENT_ID")
    p.add_argument("--dynsec-plugin", metavar="PATH",
                   help="the dynamic-security plugin (default: found on this machine, e.g. "
                   + DYNSEC_PLUGIN_DEFAULT + ")")
    p.add_argument("--run-as-user", type=_user_arg, metavar="USER",
                   help="the `user` line of the config (default mosquitto); when this tool runs "
                   "as root it hands the broker's files to that user. 'root' is for development")
    p.add_argument("--max-queued", type=int, metavar="N",
                   help="max_queued_messages (default max(100, 10 x baskets))")
    p.add_argument("--rotate", type=_basket_list_arg, metavar="LIST",
                   help="give these baskets new passwords and update keys (OTA_KEY)")
    p.add_argument("--rotate-service", action="store_true",
                   help="give every service login a new password")
    p.add_argument("--board-cafile", default="ca.crt", metavar="PATH",
                   help="MQTT_CAFILE in the boards' .json files (default ca.crt, next to "
                   "config.json on the board)")
    # Before the dynamic-security plugin the tool could hash with mosquitto_passwd; it always
    # hashes in Python now. Accepted so that old scripts keep working.
    p.add_argument("--no-mosquitto-passwd", action="store_true", help=argparse.SUPPRESS)
    return p


def resolve_settings(args: argparse.Namespace, old: Settings | None) -> Settings:
    s = Settings(**asdict(old)) if old else Settings()
    for name in ("port", "tls", "tls_port", "tls_only", "host", "bind", "service_user",
                 "service_workers", "run_as_user", "san", "max_queued",
                 "dynsec_plugin"):  # fmt: skip
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
    for user in s.service_users():
        if user in users:
            parser.error("service login %r clashes with a basket login" % user)
        users[user] = args.rotate_service
    passwords = {}
    for user, rotate_it in users.items():
        old_pw = state.passwords.get(user)
        passwords[user] = new_password() if rotate_it or not old_pw else old_pw
    state.passwords = passwords
    # Each basket's update key, renewed with its password (--rotate): a key read out of a
    # stolen basket then signs nothing, not even for that basket's new installation.
    state.ota_keys = {str(n): new_ota_key() if n in rotate or not state.ota_keys.get(str(n))
                      else state.ota_keys[str(n)] for n in state.baskets}

    plugin = s.dynsec_plugin or find_dynsec_plugin()
    if plugin is None:
        plugin = DYNSEC_PLUGIN_DEFAULT
        print("provision: warning: %s is not installed here; the config names %s (install "
              "mosquitto, or pass --dynsec-plugin with its path on the broker's machine)"
              % (DYNSEC_PLUGIN, plugin), file=sys.stderr)  # fmt: skip
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

    dynsec_path = out / DYNSEC_NAME
    old_dynsec = load_dynsec(dynsec_path)
    dynsec = json.dumps(dynsec_doc(state.baskets, s, passwords, old_dynsec), indent=2) + "\n"
    old_text = dynsec_path.read_text() if old_dynsec is not None else None
    write_file(dynsec_path, dynsec, 0o600, owner)
    notes: list[str] = []
    for legacy in ("passwd", "acl"):  # an older run's password file and ACL: no longer read
        if (out / legacy).exists():
            (out / legacy).unlink()
            notes.append("removed the old %s (users and roles are in %s now)" % (legacy,
                                                                                  DYNSEC_NAME))
    make_dir(out / "data", 0o700, owner)
    if s.tls:
        names = s.tls_names()
        notes += make_tls(out, names, owner, renew_server=names != state.server_cert_names)
        state.server_cert_names = names
        write_file(state_path, state.dump(), 0o600)
    write_file(out / "mosquitto.conf", config_text(out, s, len(state.baskets), plugin), 0o644)

    make_dir(out / "baskets", 0o700)
    cafile = str(out / "ca.crt")
    for n in state.baskets:
        keys = basket_settings(out, s, n, passwords[BASKET_USER % n], cafile,
                               state.ota_keys[str(n)])
        write_file(out / "baskets" / ("%d.env" % n), env_text(keys, "basket %d" % n), 0o600)
        if s.tls:
            keys["MQTT_CAFILE"] = args.board_cafile
        write_file(out / "baskets" / ("%d.json" % n),
                   json.dumps(keys, indent=2) + "\n", 0o600)  # fmt: skip
    write_file(out / OTA_KEYS_NAME, json.dumps(state.ota_keys, indent=2) + "\n", 0o600)
    for k, user in enumerate(s.service_users(), 1):
        keys = service_settings(out, s, k, user, passwords[user], cafile)
        what = "backend service" + ("" if k == 1 else " worker %d" % k)
        write_file(out / s.service_env_name(k), env_text(keys, what), 0o600)
    # Workers dropped by a smaller --service-workers lose their file (their login is gone).
    for stale in sorted(out.glob("service-*.env")):
        m = re.fullmatch(r"service-([0-9]+)\.env", stale.name)
        if m and int(m.group(1)) > s.service_workers:
            stale.unlink()
            notes.append("removed %s (fewer --service-workers)" % stale.name)

    rotated = sorted(rotate) + (s.service_users() if args.rotate_service else [])
    print("provision: %d baskets in %s (%d new%s)" % (
        len(state.baskets), out, len(new),
        (", new passwords for %s" % ",".join(map(str, rotated))) if rotated else ""))  # fmt: skip
    for note in notes:
        print("provision: " + note)
    print("  broker config   %s   (start: mosquitto -c %s)" % (out / "mosquitto.conf",
                                                            out / "mosquitto.conf"))  # fmt: skip
    print("  users, roles    %s   (dynamic-security plugin %s)" % (dynsec_path, plugin))
    print("  basket files    %s/<n>.env and <n>.json   (secret, 0600)" % (out / "baskets"))
    print("  service file%s  %s   (secret, 0600)" % (
        "s" if s.service_workers > 1 else " ",
        ", ".join(str(out / s.service_env_name(k))
                  for k in range(1, min(s.service_workers, 2) + 1))
        + (" ..." if s.service_workers > 2 else "")))  # fmt: skip
    print("  update keys     %s   (secret, 0600; the service's OTA_KEYS_FILE)"
          % (out / OTA_KEYS_NAME))
    print("  all passwords   %s   (secret, 0600; keep it to add baskets later)" % state_path)
    if s.tls:
        print("  CA for clients  %s" % cafile)
    if owner.uid >= 0:
        print("  broker files handed to user %r (the config's `user`)" % owner.name)
    if old_text is not None and old_text != dynsec:
        print("  users or passwords changed: restart a running broker to apply them "
              "(systemctl restart mosquitto); the plugin reads its file only at start")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except ProvisionError as e:
        print("provision: error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
