"""A controller process for the board tests: output collected line by line in a thread, with
waits on what it printed. Used for `micropython boot.py + main.py` and `-m mqtt_controller`."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.support.lines import LineLog

ROOT = Path(__file__).resolve().parent.parent.parent
MICROPYTHON = str(ROOT / ".venv" / "bin" / "micropython")
STUBS = ROOT / "tests" / "board_stubs"


class Proc:
    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path | str = ROOT,
                 stdin: bool = False) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL)  # fmt: skip
        assert self.proc.stdout is not None
        self.out = LineLog(self.proc.stdout)

    def text(self) -> str:
        return self.out.text()

    def mark(self) -> int:
        return self.out.mark()

    def wait_line(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match[str]:
        """Waits for a line (at or after index `start`) matching the regex; returns the match."""
        hit = self.out.wait(pattern, timeout, start)
        if hit is None:
            raise AssertionError("no line matching %r; output:\n%s" % (
                pattern, self.out.text(last=60)))
        return hit[2]

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def wait_exit(self, timeout: float = 15.0) -> int:
        rc = self.proc.wait(timeout)
        self.out.thread.join(5)
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.thread.join(5)


def mp_env(**extra: str) -> dict[str, str]:
    """Environment for the MicroPython unix port: the repo and lib/ on MICROPYPATH, nothing of
    the caller's MQTT_* settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MQTT_", "BASKET_", "WIFI_", "ITEM_", "CART_", "DISPLAY"))}
    env["MICROPYPATH"] = "%s:%s" % (ROOT, ROOT / "lib")
    env.update(extra)
    return env
