"""The service as a real subprocess (`python -m basket_service serve ...`), its log read by a
thread so tests wait on log lines without polling, and the command-line tools beside it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.broker import stop_process
from tests.support.lines import LineLog

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
        self.out: LineLog | None = None
        self.earlier: list[str] = []  # the output of runs before a restart (start() again)
        self.proc: subprocess.Popen[str] | None = None

    def start(self, ready: bool = True) -> ServiceProc:
        if self.out is not None:
            self.earlier += self.out.lines()
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self.proc.stdout is not None
        self.out = LineLog(self.proc.stdout)
        if ready:
            self.wait_line(r"connected to MQTT")
        return self

    @property
    def lines(self) -> list[str]:
        return self.earlier + (self.out.lines() if self.out else [])

    def mark(self) -> int:
        """Where the current run's output stands (for wait_line's `start`)."""
        return self.out.mark() if self.out else 0

    def wait_line(self, pattern: str, timeout: float = 15.0, start: int = 0) -> str:
        assert self.out is not None and self.proc is not None, "start() first"
        hit = self.out.wait(pattern, timeout, start)
        if hit is None:
            if self.proc.poll() is not None:
                raise AssertionError("service exited (%s) before %r:\n%s"
                                     % (self.proc.returncode, pattern, self.log()))
            raise AssertionError("timed out waiting for %r in:\n%s" % (pattern, self.log()))
        return hit[1]

    def count(self, pattern: str) -> int:
        rx = re.compile(pattern)
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
