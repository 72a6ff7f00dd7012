"""The service as a real subprocess (`python -m basket_service serve ...`), its log read by a
thread so tests wait on log lines without polling, and the command-line tools beside it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.support.broker import stop_process

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "data" / "catalog_sample.csv"


def service_env(port: int, db: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "BASKET_DB", "SERVICE_CLIENT_ID")}
    env.update({"MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(port), "MQTT_USER": "service",
                "MQTT_PASSWORD": "service-pw", "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"})
    env.update(db)
    env.update(extra)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "basket_service", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


class ServiceProc:
    def __init__(self, env: dict[str, str], *extra_args: str, catalog: Path = CATALOG) -> None:
        self.env = env
        self.args = [sys.executable, "-m", "basket_service", "serve", "--catalog", str(catalog),
                     *extra_args]
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.proc: subprocess.Popen[str] | None = None

    def start(self, ready: bool = True) -> ServiceProc:
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        if ready:
            self.wait_line(r"connected to MQTT")
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def wait_line(self, pattern: str, timeout: float = 15.0, start: int = 0) -> str:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    if rx.search(line):
                        return line
                if self.proc is not None and self.proc.poll() is not None and not self._alive():
                    raise AssertionError("service exited (%s) before %r:\n%s"
                                         % (self.proc.returncode, pattern, self.log()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for %r in:\n%s" % (pattern, self.log()))
                self.cond.wait(min(left, 0.5))

    def _alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def count(self, pattern: str) -> int:
        rx = re.compile(pattern)
        with self.cond:
            return sum(1 for line in self.lines if rx.search(line))

    def log(self) -> str:
        return "\n".join(self.lines[-200:])

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as a crash or an OOM kill would leave it."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        return stop_process(self.proc, 10)
