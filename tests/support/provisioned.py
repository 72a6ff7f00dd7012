"""tools/provision.py for the tests: run it, start Mosquitto on its config, talk paho to it."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from .broker import MOSQUITTO, free_port, read_log, stop_process, wait_port

ROOT = Path(__file__).resolve().parents[2]
PROVISION = ROOT / "tools" / "provision.py"


def provision(out: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs the tool as a user would; stdout/stderr are kept so tests can look for secrets."""
    res = subprocess.run([sys.executable, str(PROVISION), "--out", str(out), *args],
                         capture_output=True, text=True, timeout=60)
    if check and res.returncode != 0:
        raise AssertionError("provision.py failed (%d):\n%s%s" % (res.returncode, res.stdout,
                                                                    res.stderr))
    return res


def read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def shared_tmpdir(prefix: str) -> Path:
    """A folder the `mosquitto` user can enter (pytest's tmp_path is 0700 all the way up)."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(d, 0o755)
    return d


class ProvisionedDir:
    """A provisioned folder on free loopback ports, plus the broker started on its config."""

    def __init__(self, *args: str, tls: bool = True) -> None:
        self.root = shared_tmpdir("prov-")
        self.dir = self.root / "broker"
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "mosquitto.log"
        argv = ["--port", str(self.port), "--bind", "127.0.0.1", *args]
        if self.tls_port:
            argv += ["--tls", "--tls-port", str(self.tls_port)]
        self.result = provision(self.dir, *argv)

    @property
    def conf(self) -> Path:
        return self.dir / "mosquitto.conf"

    def env(self, basket: int | None = None, worker: int = 1) -> dict[str, str]:
        """A basket's .env file, or (basket None) service worker `worker`'s."""
        if basket is None:
            return read_env(self.dir / ("service.env" if worker == 1 else
                                        "service-%d.env" % worker))
        return read_env(self.dir / "baskets" / ("%d.env" % basket))

    def password(self, basket: int | None = None) -> str:
        return self.env(basket)["MQTT_PASSWORD"]

    def start(self) -> ProvisionedDir:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        log.close()
        for port in (self.port, self.tls_port):
            deadline = time.monotonic() + 10
            while port:
                if self.proc.poll() is not None:  # exited: a config or permission error
                    raise RuntimeError("mosquitto exited (%s):\n%s" % (self.proc.returncode,
                                                                       self.log()))
                try:
                    wait_port(port, timeout=0.2)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError("mosquitto did not start:\n" + self.log())
        return self

    def restart(self) -> None:
        """Stop (Mosquitto saves its sessions and retained messages) and start again: the way to
        apply a re-run of provision.py, since the dynamic-security plugin reads its file only
        at start."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its config (not the dynamic-security plugin's file)."""
        assert self.proc is not None
        mark = self.log().count("Reloading config")
        self.proc.send_signal(1)
        deadline = time.monotonic() + 5
        while self.log().count("Reloading config") <= mark:
            if time.monotonic() > deadline:
                raise AssertionError("no reload in the log:\n" + self.log())
            time.sleep(0.02)
        time.sleep(0.1)  # the message is logged before the files are read

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def log(self) -> str:
        return read_log(self.log_path)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Refused(Exception):
    def __init__(self, reason: Any) -> None:
        super().__init__("connection refused: %s" % reason)
        self.reason = reason


class Client:
    """A paho client that connects synchronously and records messages and SUBACK codes."""

    def __init__(self, port: int, user: str | None, password: str | None,
                 cafile: str | Path | None = None, host: str = "127.0.0.1",
                 will: tuple[str, bytes] | None = None, client_id: str | None = None,
                 clean: bool = True) -> None:
        """`client_id` None: `basket-<n>` for a `basket<n>` login (the only id the provisioned
        broker accepts for it), else a random one."""
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        if client_id is None:
            n = user[6:] if user and user.startswith("basket") else ""
            client_id = "basket-" + n if n.isdigit() else ""
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=clean if client_id else True)
        self.disconnected = threading.Event()
        self.c.on_disconnect = lambda *a: self.disconnected.set()
        if user is not None:
            self.c.username_pw_set(user, password)
        if cafile is not None:
            self.c.tls_set(ca_certs=str(cafile), cert_reqs=ssl.CERT_REQUIRED)
        if will is not None:
            self.c.will_set(will[0], will[1], qos=1, retain=True)
        self.c.on_message = self._on_message
        self._connack: Any = None
        self._done = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.connect(host, port, keepalive=30)  # TLS handshake errors raise here
        self.c.loop_start()
        if not self._done.wait(5):
            self.close()
            raise TimeoutError("no CONNACK")
        reason: Any = self._connack
        if reason.is_failure:
            self.close()
            raise Refused(reason)

    def _on_connect(self, c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connack = reason
        if reason.is_failure:
            c.disconnect()  # no automatic reconnect: the test wants the refusal, not a retry
        self._done.set()

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cond.notify_all()

    def subscribe(self, *topics: str) -> list[int]:
        """Returns the SUBACK codes (0/1 granted QoS, 128 refused)."""
        done = threading.Event()
        codes: list[int] = []

        def on_subscribe(c: Any, u: Any, mid: Any, reasons: Any, props: Any) -> None:
            codes.extend(int(r.value) for r in reasons)
            done.set()

        self.c.on_subscribe = on_subscribe
        self.c.subscribe([(t, 1) for t in topics])
        if not done.wait(5):
            raise TimeoutError("no SUBACK for %s" % (topics,))
        return codes

    def publish(self, topic: str, payload: bytes | str, retain: bool = False,
                qos: int = 1) -> None:
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)
        if not info.is_published():
            raise TimeoutError("no PUBACK on %s" % topic)

    def topics(self) -> list[str]:
        with self.cond:
            return [t for t, _, _ in self.messages]

    def wait_for(self, topic: str, payload: bytes, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(t == topic and p == payload for t, p, _ in self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s %r; got %r" % (topic, payload, self.messages))
                self.cond.wait(min(left, 0.1))

    def close(self) -> None:
        self.c.disconnect()  # first: it wakes the network thread, so loop_stop() returns at once
        self.c.loop_stop()


def refused(port: int, user: str | None, password: str | None, **kw: Any) -> Any:
    """The CONNACK reason of a connection the broker must refuse; fails if it is accepted."""
    try:
        client = Client(port, user, password, **kw)
    except Refused as e:
        return e.reason
    client.close()
    raise AssertionError("the broker accepted user %r" % user)
