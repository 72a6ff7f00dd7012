"""The real controller as a subprocess for the fault tests: items through a FIFO (ITEM_SOURCE),
log lines collected with their arrival time, RSS from /proc."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INTERPRETERS = {"cpython": str(BIN / "python"), "micropython": str(BIN / "micropython")}


class ControllerProc:
    def __init__(self, interp: str, port: int, workdir: Path, basket: int = 1,
                 keepalive: int = 2, host: str = "127.0.0.1", log_level: str = "info",
                 password: str | None = None, extra_env: dict[str, str] | None = None,
                 interp_args: list[str] | None = None) -> None:
        self.interp = interp
        self.basket = basket
        self.keepalive = keepalive
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.fifo = self.workdir / ("items-%d.fifo" % basket)
        if not self.fifo.exists():
            os.mkfifo(self.fifo)
        # Our own read-write end keeps the FIFO open, so writing never blocks or fails.
        self._fifo_fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MQTT_", "BASKET"))}
        env.update({
            "MQTT_HOST": host,
            "MQTT_PORT": str(port),
            "MQTT_USER": "basket%d" % basket,
            "MQTT_PASSWORD": password or "basket%d-pw" % basket,
            "MQTT_TOPIC": "basket/%d" % basket,
            "MQTT_KEEPALIVE": str(keepalive),
            "ITEM_SOURCE": str(self.fifo),
            "DISPLAY": "none",
            "CART_STATE_FILE": str(self.workdir / ("basket-%d.state.json" % basket)),
            "LOG_LEVEL": log_level,
            "PYTHONPATH": str(ROOT),
            "MICROPYPATH": ".frozen:" + str(ROOT),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(extra_env or {})
        self.lines: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        self.started_at = time.monotonic()
        argv = [INTERPRETERS[interp], *(interp_args or []), "-m", "mqtt_controller"]
        self.proc = subprocess.Popen(argv, cwd=ROOT,
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append((time.monotonic(), line))
                self.cond.notify_all()

    # -- input --------------------------------------------------------------------------------
    def item(self, line: str) -> None:
        os.write(self._fifo_fd, (line + "\n").encode())

    # -- output -------------------------------------------------------------------------------
    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def log(self) -> str:
        with self.cond:
            return "\n".join(t for _, t in self.lines)

    def find(self, pattern: str, start: int = 0) -> list[tuple[float, str]]:
        rx = re.compile(pattern)
        with self.cond:
            return [(t, s) for t, s in self.lines[start:] if rx.search(s)]

    def wait_log(self, pattern: str, timeout: float = 10.0, start: int = 0) -> tuple[float, str]:
        """Waits for a line matching `pattern` at or after line `start`; returns (time, line)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    t, s = self.lines[i]
                    i += 1
                    if rx.search(s):
                        return t, s
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and i >= len(self.lines)):
                    raise AssertionError("controller (%s): no log line /%s/ within %.1f s; log:\n%s"
                                         % (self.interp, pattern, timeout, self.log()[-4000:]))
                self.cond.wait(min(left, 0.1))

    def count(self, pattern: str, start: int = 0) -> int:
        return len(self.find(pattern, start))

    def assert_no_traceback(self) -> None:
        text = self.log()
        assert "Traceback" not in text, text[-4000:]

    def rss_kb(self) -> int:
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (KeyboardInterrupt on both interpreters): says offline, exits 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        try:
            os.close(self._fifo_fd)
        except OSError:
            pass
        return self.proc.returncode
