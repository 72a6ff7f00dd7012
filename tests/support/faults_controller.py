"""The real controller as a subprocess for the fault tests: items through a FIFO (ITEM_SOURCE),
log lines collected with their arrival time, RSS from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.lines import LineLog

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
        self.started_at = time.monotonic()
        argv = [INTERPRETERS[interp], *(interp_args or []), "-m", "mqtt_controller"]
        self.proc = subprocess.Popen(argv, cwd=ROOT,
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        self.out = LineLog(self.proc.stdout)

    # -- input --------------------------------------------------------------------------------
    def item(self, line: str) -> None:
        os.write(self._fifo_fd, (line + "\n").encode())

    # -- output -------------------------------------------------------------------------------
    def mark(self) -> int:
        return self.out.mark()

    def log(self) -> str:
        return self.out.text()

    def find(self, pattern: str, start: int = 0) -> list[tuple[float, str]]:
        return self.out.find(pattern, start)

    def wait_log(self, pattern: str, timeout: float = 10.0, start: int = 0) -> tuple[float, str]:
        """Waits for a line matching `pattern` at or after line `start`; returns (time, line)."""
        hit = self.out.wait(pattern, timeout, start)
        if hit is None:
            raise AssertionError("controller (%s): no log line /%s/ within %.1f s; log:\n%s"
                                 % (self.interp, pattern, timeout, self.log()[-4000:]))
        return hit[0], hit[1]

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
        self.out.thread.join(5)
        try:
            os.close(self._fifo_fd)
        except OSError:
            pass
        return self.proc.returncode
