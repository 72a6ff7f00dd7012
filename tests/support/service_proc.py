"""The service as a real subprocess (`python -m basket_service serve ...`), its log read by a
thread so tests wait on log lines without polling, and the command-line tools beside it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.process import Process

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


class ServiceProc(Process):
    """`serve` as a process (tests.support.process.Process: its output accumulates over runs,
    a mark is a line index); `start()` waits for its MQTT connection unless ready=False."""

    name = "service"

    def __init__(self, env: dict[str, str], *extra_args: str, catalog: Path = CATALOG) -> None:
        super().__init__([sys.executable, "-m", "basket_service", "serve", "--catalog",
                          str(catalog), *extra_args], env, cwd=ROOT)

    def start(self, stdin: bool = False, ready: bool = True) -> ServiceProc:
        mark = self.mark()
        super().start(stdin)
        if ready:
            self.wait_line(r"connected to MQTT", start=mark)
        return self
