"""The basket controller as a real subprocess under CPython or the MicroPython unix port,
with its items fed through a FIFO and its output captured to a file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INTERPRETERS = {
    "cpython": [str(BIN / "python"), "-m", "mqtt_controller"],
    "micropython": [str(BIN / "micropython"), "-m", "mqtt_controller"],
}


class Controller:
    def __init__(self, interp: str, port: int, basket: int = 1, workdir: Path | None = None,
                 **env: str) -> None:
        self.interp = interp
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="basket-"))
        self.fifo = self.dir / "items.fifo"
        if not self.fifo.exists():
            os.mkfifo(self.fifo)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(ROOT),
            "MICROPYPATH": ".frozen:" + str(ROOT),
            "MQTT_HOST": "127.0.0.1",
            "MQTT_PORT": str(port),
            "MQTT_USER": "basket%d" % basket,
            "MQTT_PASSWORD": "basket%d-pw" % basket,
            "MQTT_TOPIC": "basket/%d" % basket,
            "MQTT_KEEPALIVE": "10",
            "CART_STATE_FILE": str(self.dir / "state.json"),
            "ITEM_SOURCE": str(self.fifo),
        }
        self.env.update(env)
        self.log_path = self.dir / ("controller-%s.log" % interp)
        self.proc: subprocess.Popen[bytes] | None = None
        self._fifo_fd: int | None = None

    def start(self, wait_connected: bool = True, stdin: int = subprocess.DEVNULL) -> Controller:
        self._log = open(self.log_path, "ab")
        self._mark = self.log_path.stat().st_size
        self.proc = subprocess.Popen(INTERPRETERS[self.interp], cwd=self.dir, env=self.env,
                                     stdin=stdin, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        if wait_connected:
            self.wait_log("connected to", start=self._mark)
        return self

    def output(self, start: int = 0) -> str:
        return self.log_path.read_bytes()[start:].decode(errors="replace")

    def wait_log(self, text: str, timeout: float = 15.0, start: int = 0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output(start)
            if text in out:
                return out
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("%r not in controller output:\n%s" % (text, self.output()))

    def mark(self) -> int:
        return self.log_path.stat().st_size

    def items(self, *lines: str | bytes) -> None:
        """Writes item lines to the controller's FIFO (kept open, so it never sees EOF)."""
        if self._fifo_fd is None:
            self._fifo_fd = os.open(self.fifo, os.O_RDWR | os.O_NONBLOCK)
        data = b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n" for ln in lines)
        os.write(self._fifo_fd, data)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def close(self) -> None:
        self.kill9()
        if self._fifo_fd is not None:
            os.close(self._fifo_fd)
            self._fifo_fd = None
        if hasattr(self, "_log"):
            self._log.close()


def run_once(interp: str, env: dict[str, str],
             timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    """Runs the controller expecting it to exit by itself (configuration errors, --help)."""
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
            "MICROPYPATH": ".frozen:" + str(ROOT)}
    args = env.pop("ARGS", "").split()
    full.update(env)
    return subprocess.run(INTERPRETERS[interp] + args, env=full, capture_output=True, text=True,
                          timeout=timeout, cwd=tempfile.mkdtemp(prefix="basket-"),
                          stdin=subprocess.DEVNULL)
