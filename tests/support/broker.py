"""The one Mosquitto wrapper of the tests, the benchmarks and the soak run.

`Broker.with_acl(...)`: a password file (the development users below unless `users`), an
optional ACL (`acl_text()` builds the contract's), persistence, everything logged.
`Broker.provisioned(...)`: the folder tools/provision.py writes (per-basket users bound to
client ids `basket-<n>`, the dynamic-security plugin, optionally TLS) on free loopback ports.
Either way: `start()` (waits until every listener takes connections; `fresh`: without the
sessions and retained messages of earlier runs), `stop()` (SIGTERM: Mosquitto saves its
state), `kill()` (SIGKILL), `restart()`, `reload()` (SIGHUP), the log (`mark()` a line index,
`log(start)`, `wait_log`), `close()`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
ROOT = Path(__file__).resolve().parents[2]
PROVISION = ROOT / "tools" / "provision.py"

# Development users of the test broker; basket users may only touch their own topics.
DEFAULT_USERS = {
    "basket1": "basket1-pw",
    "basket2": "basket2-pw",
    "service": "service-pw",
}


def acl_text(baskets: tuple[int, ...] = (1, 2), service: str = "service") -> str:
    """An acl_file for Broker.with_acl(acl=...) in the contract's shape (tools/provision.py's
    roles, as far as an acl_file can say them): basket n writes its update, availability and
    health and reads its status, config and ota (updates over the air: only the service writes
    them); the service reads every update, availability and health and writes every status,
    config and ota. (Mosquitto's acl_file filters deliveries only; subscriptions are checked by
    the provisioned broker's dynamic-security roles, Broker.provisioned.)"""
    parts = []
    for n in baskets:
        parts.append("user basket%d\n" % n + "".join(
            "topic %s basket/%d/%s\n" % (access, n, kind) for access, kind in (
                ("write", "update"), ("write", "availability"), ("write", "health"),
                ("read", "status"), ("read", "config"), ("read", "ota"))))
    parts.append("user %s\n" % service + "".join(
        "topic %s basket/+/%s\n" % (access, kind) for access, kind in (
            ("read", "update"), ("read", "availability"), ("read", "health"),
            ("write", "status"), ("write", "config"), ("write", "ota"))))
    return "\n".join(parts)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError("nothing listens on %s:%d" % (host, port)) from None
            time.sleep(0.01)


def read_log(path: Path) -> str:
    """A log file's text so far; empty when there is none yet."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 5.0) -> int | None:
    """SIGTERM, then SIGKILL if it does not go within `timeout`; returns the exit status."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def shared_tmpdir(prefix: str) -> Path:
    """A folder the `mosquitto` user can enter (pytest's tmp_path is 0700 all the way up)."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(d, 0o755)
    return d


def provision(out: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs tools/provision.py as a user would; stdout/stderr are kept so tests can look for
    secrets."""
    res = subprocess.run([sys.executable, str(PROVISION), "--out", str(out), *args],
                         capture_output=True, text=True, timeout=60)
    if check and res.returncode != 0:
        raise AssertionError("provision.py failed (%d):\n%s%s" % (res.returncode, res.stdout,
                                                                    res.stderr))
    return res


def read_env(path: Path) -> dict[str, str]:
    """A KEY=value file (the .env files provision.py writes)."""
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


class Broker:
    """One Mosquitto process on the config `conf`, listening on 127.0.0.1:`port` (and
    `tls_port`), its output and log in `log_path`. Use the constructors below."""

    def __init__(self, root: Path, conf: Path, port: int, data: Path,
                 tls_port: int | None = None, users: dict[str, str] | None = None,
                 prov: Path | None = None) -> None:
        self.root = root
        self.conf = conf
        self.port = port
        self.tls_port = tls_port
        self.data = data  # where it keeps sessions and retained messages
        self.users = users  # the password file's logins (with_acl); None: provisioned
        self.dir = prov or root  # the provisioned folder (its .env files, ca.crt, ...)
        self.log_path = root / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.result: subprocess.CompletedProcess[str] | None = None  # provision.py's run
        self.baskets = 0  # provisioned(baskets=N): users basket1 .. basketN

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def with_acl(cls, users: dict[str, str] | None = None, acl: str | None = None,
                 extra_conf: str = "", port: int | None = None, persistence: bool = True,
                 nodelay: bool = True) -> Broker:
        """A password file of `users` (DEFAULT_USERS unless given), the ACL text `acl` if any,
        anonymous clients refused, every log type."""
        users = dict(DEFAULT_USERS if users is None else users)
        root = shared_tmpdir("mosq-")
        port = port or free_port()
        pwfile = root / "passwd"
        pwfile.write_text("")
        for user, password in users.items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", str(pwfile), user, password], check=True)
        data = root / "data"
        data.mkdir()
        lines = [
            "user root",
            "listener %d 127.0.0.1" % port,
            "allow_anonymous false",
            "password_file %s" % pwfile,
            "log_dest file %s" % (root / "mosquitto.log"),
            "log_type all",
            "connection_messages true",
        ]
        if nodelay:
            lines.append("set_tcp_nodelay true")
        if persistence:
            lines += ["persistence true", "persistence_location %s/" % data]
        if acl is not None:
            (root / "acl").write_text(acl)
            lines.append("acl_file %s" % (root / "acl"))
        conf = root / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n" + extra_conf)
        return cls(root, conf, port, data, users=users)

    @classmethod
    def provisioned(cls, *args: str, baskets: int = 0, tls: bool = True,
                    nodelay: bool = True) -> Broker:
        """tools/provision.py `args` (`baskets`: and --baskets 1-N) into a fresh folder on free
        loopback ports (`tls`: a TLS listener too). `nodelay=False` runs its config without
        `set_tcp_nodelay` (Mosquitto's default: Nagle on)."""
        if baskets:
            args = ("--baskets", "1-%d" % baskets, *args)
        root = shared_tmpdir("prov-")
        prov = root / "broker"
        port = free_port()
        tls_port = free_port() if tls else None
        argv = ["--port", str(port), "--bind", "127.0.0.1", *args]
        if tls_port:
            argv += ["--tls", "--tls-port", str(tls_port)]
        result = provision(prov, *argv)
        conf = prov / "mosquitto.conf"
        if not nodelay:
            text = conf.read_text()
            conf = prov / "mosquitto-nagle.conf"
            conf.write_text("\n".join(ln for ln in text.splitlines()
                                      if not ln.startswith("set_tcp_nodelay")) + "\n")
        b = cls(root, conf, port, prov / "data", tls_port=tls_port, prov=prov)
        b.result = result
        b.baskets = baskets
        return b

    # -- logins -------------------------------------------------------------------------------
    @staticmethod
    def user(basket: int | None = None) -> str:
        return "service" if basket is None else "basket%d" % basket

    def env_file(self, basket: int | None = None, worker: int = 1) -> dict[str, str]:
        """Provisioned: a basket's .env file, or (basket None) service worker `worker`'s."""
        if basket is None:
            return read_env(self.dir / ("service.env" if worker == 1 else
                                        "service-%d.env" % worker))
        return read_env(self.dir / "baskets" / ("%d.env" % basket))

    def password(self, basket: int | None = None) -> str:
        """A basket's (basket None: the service's) password, as it stands now."""
        if self.users is not None:
            return self.users[self.user(basket)]
        return self.env_file(basket)["MQTT_PASSWORD"]

    def login(self, basket: int | None = None) -> dict[str, str]:
        """A basket's (or, basket None, the service's) connection settings on the plain
        listener; a provisioned basket login connects only with its own client id, so it comes
        with MQTT_CLIENT_ID."""
        env = {"MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(self.port),
               "MQTT_USER": self.user(basket), "MQTT_PASSWORD": self.password(basket)}
        if basket is not None and self.users is None:
            env["MQTT_CLIENT_ID"] = "basket-%d" % basket
        return env

    # -- life ---------------------------------------------------------------------------------
    def start(self, fresh: bool = False) -> Broker:
        """Starts it and waits for its listeners (`fresh`: forgets saved sessions and retained
        messages first)."""
        if fresh:
            for f in self.data.glob("*"):
                f.unlink()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log,
                                         stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        for port in (self.port, self.tls_port):
            while port:
                if self.proc.poll() is not None:  # exited: a config or permission error
                    raise RuntimeError("mosquitto exited (%s):\n%s" % (self.proc.returncode,
                                                                       self.log()[-4000:]))
                try:
                    wait_port(port, timeout=0.1)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError("mosquitto did not start:\n" + self.log()[-4000:])
        return self

    def stop(self) -> None:
        """SIGTERM (it saves its sessions and retained messages), SIGKILL after 5 s."""
        stop_process(self.proc)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: nothing saved since its last autosave."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        """Stops and starts it on the same port, data and users (the way to apply a re-run of
        provision.py: the dynamic-security plugin reads its file only at start)."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its config (not the dynamic-security plugin's file)."""
        assert self.proc is not None
        mark = self.mark()
        self.proc.send_signal(1)
        self.wait_log("Reloading config", timeout=5, start=mark)
        time.sleep(0.1)  # the message is logged before the files are read

    def rss_kb(self) -> int:
        from tests.support.process import rss_kb

        return rss_kb(self.proc.pid) if self.proc else 0

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- its log ------------------------------------------------------------------------------
    def mark(self) -> int:
        """The number of lines in its log so far (a `start` for log and wait_log)."""
        return len(self.log().splitlines())

    def log(self, start: int = 0) -> str:
        """Its log (and output) from line `start` on."""
        text = read_log(self.log_path)
        return "".join(text.splitlines(keepends=True)[start:]) if start else text

    def wait_log(self, text: str, timeout: float = 10.0, start: int = 0) -> str:
        """The first log line at or after line `start` holding `text`."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log(start).splitlines():
                if text in line:
                    return line
            if time.monotonic() > deadline:
                raise AssertionError("no %r in the broker's log:\n%s" % (text, self.log()[-4000:]))
            time.sleep(0.02)
