"""`make run` (tools/run_local.py) as a user runs it: everything comes up, and a `kill` stops the
broker and the backend too, not only the basket (they run in sessions of their own)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.broker import free_port

ROOT = Path(__file__).resolve().parent.parent


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_for(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_sigterm_stops_broker_and_backend_too() -> None:
    run = Path(tempfile.mkdtemp(prefix="run-local-"))
    os.chmod(run, 0o755)  # Mosquitto started as root reads its files as another user
    port, http = free_port(), free_port()
    out = run / "out.txt"
    with out.open("wb") as f:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "run_local.py"), "--port", str(port), "--http",
             str(http)], cwd=ROOT, env=dict(os.environ, RUN_DIR=str(run)),
            stdin=subprocess.PIPE, stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"subscribed to basket/1/status" in out.read_bytes(), 30,
                 "basket 1 never connected")
        wait_for(lambda: listening(http), 30, "the dashboard never came up")
        assert listening(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        wait_for(lambda: not listening(port) and not listening(http), 10,
                 "broker or backend left running after SIGTERM")
        assert b"run: stopped" in out.read_bytes()
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(run, ignore_errors=True)
