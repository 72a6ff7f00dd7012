"""A controller process for the board tests: output collected line by line in a thread, with
waits on what it printed. Used for `micropython boot.py + main.py` and `-m mqtt_controller`."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
MICROPYTHON = str(ROOT / ".venv" / "bin" / "micropython")
STUBS = ROOT / "tests" / "board_stubs"


class Proc:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path | str = ROOT,
                 stdin: bool = False) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)  # fmt: skip
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self.cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def text(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def wait_line(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match[str]:
        """Waits for a line (at or after index `start`) matching the regex; returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and i >= len(self.lines)
                                 and not self.thread.is_alive()):
                    raise AssertionError("no line matching %r; output:\n%s" % (
                        pattern, "\n".join(self.lines[-60:])))
                self.cond.wait(min(left, 0.1))

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def wait_exit(self, timeout: float = 15.0) -> int:
        rc = self.proc.wait(timeout)
        self.thread.join(5)
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(5)


def mp_env(**extra: str) -> dict[str, str]:
    """Environment for the MicroPython unix port: the repo and lib/ on MICROPYPATH, nothing of
    the caller's MQTT_* settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MQTT_", "BASKET_", "WIFI_", "ITEM_", "CART_", "DISPLAY"))}
    env["MICROPYPATH"] = "%s:%s" % (ROOT, ROOT / "lib")
    env.update(extra)
    return env
