"""`make run` (tools/run_local.py) as a user runs it: everything comes up, and a `kill` stops the
broker and the backend too, not only the basket (they run in sessions of their own). What it
creates under .run/ is private (0700/0600), and no printed hint puts a password on a command
line; the hinted commands work."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.broker import free_port, read_env

ROOT = Path(__file__).resolve().parent.parent


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_sigterm_stops_broker_and_backend_too() -> None:
    run = Path(tempfile.mkdtemp(prefix="run-local-"))
    os.chmod(run, 0o755)  # as a fresh `mkdir .run` under a 022 umask would be
    (run / "service.log").write_text("from an earlier run\n")
    os.chmod(run / "service.log", 0o644)
    port, http = free_port(), free_port()
    out = run / "out.txt"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.run_local", "--port", str(port), "--http", str(http)],
            cwd=ROOT, env=dict(os.environ, RUN_DIR=str(run)),
            stdin=subprocess.PIPE, stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"subscribed to basket/1/status" in out.read_bytes(), 30,
                 "basket 1 never connected")
        wait_for(lambda: listening(http), 30, "the dashboard never came up")
        assert listening(port)

        # Private: the folders 0700, every file 0600 (the old log tightened too).
        wait_for(lambda: (run / "basket.db").exists(), 10, "no database")
        for d in (run, run / "broker", run / "broker" / "baskets", run / "mqtt"):
            assert mode(d) == 0o700, d
        files = [p for p in run.rglob("*") if p.is_file() and not p.is_symlink()
                 and p.name != "out.txt" and p.parent.name != "tls" and p.name != "ca.crt"]
        names = {p.name for p in files}
        assert {"basket.db", "service.log", "mosquitto.log", "service.sh", "mosquitto_pub",
                "dynamic-security.json", "service.env"} <= names, names
        for p in files:
            assert mode(p) == 0o600, (p, oct(mode(p)))

        # No password in what was printed, nor a -P on a hinted command line.
        text = out.read_text()
        secrets = [read_env(run / "broker" / "service.env")["MQTT_PASSWORD"],
                   read_env(run / "broker" / "baskets" / "1.env")["MQTT_PASSWORD"]]
        assert not [s for s in secrets if s in text]
        assert " -P " not in text and "MQTT_PASSWORD" not in text

        # The hints work as printed: the raw command reaches basket 1 with the service login
        # from .run/mqtt/, and the CLI reads its settings from .run/service.sh.
        env = dict(os.environ, XDG_CONFIG_HOME=str(run / "mqtt"))
        res = subprocess.run(["mosquitto_pub", "-q", "1", "-t", "basket/1/status", "-m", "start"],
                             env=env, capture_output=True, text=True, timeout=10)
        assert res.returncode == 0, res.stderr
        wait_for(lambda: b"session started" in out.read_bytes(), 10, "basket 1 got no start")
        res = subprocess.run(["bash", "-c", ". %s && %s -m basket_service carts"
                              % (run / "service.sh", sys.executable)], cwd=ROOT,
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stdout + res.stderr

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        wait_for(lambda: not listening(port) and not listening(http), 10,
                 "broker or backend left running after SIGTERM")
        assert b"run: stopped" in out.read_bytes()
    finally:
        if proc.poll() is None:  # a failed check: SIGTERM first, or its children outlive it
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(run, ignore_errors=True)
