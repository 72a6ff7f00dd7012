"""A real Mosquitto for the tests: free loopback port, password file, started and stopped here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"

# Development users of the test broker; basket users may only touch their own topics.
DEFAULT_USERS = {
    "basket1": "basket1-pw",
    "basket2": "basket2-pw",
    "service": "service-pw",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("nothing listens on %s:%d" % (host, port))


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


class Mosquitto:
    """One broker process. `restart()` keeps the port, the data folder and the users."""

    def __init__(
        self,
        users: dict[str, str] | None = None,
        acl: str | None = None,
        extra_conf: str = "",
        port: int | None = None,
        persistence: bool = True,
        nodelay: bool = True,
    ) -> None:
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mosq-"))
        os.chmod(self.dir, 0o755)
        self.log_path = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        pwfile = self.dir / "passwd"
        pwfile.write_text("")
        for user, password in self.users.items():
            subprocess.run([MOSQUITTO_PASSWD, "-b", str(pwfile), user, password], check=True)
        lines = [
            "user root",
            "listener %d 127.0.0.1" % self.port,
            "allow_anonymous false",
            "password_file %s" % pwfile,
            "log_dest file %s" % self.log_path,
            "log_type all",
            "connection_messages true",
        ]
        if nodelay:
            lines.append("set_tcp_nodelay true")
        if persistence:
            lines += ["persistence true", "persistence_location %s/" % self.dir]
        if acl is not None:
            (self.dir / "acl").write_text(acl)
            lines.append("acl_file %s" % (self.dir / "acl"))
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n" + extra_conf)

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError("mosquitto did not start:\n" + self.log())
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def log(self) -> str:
        return read_log(self.log_path)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
