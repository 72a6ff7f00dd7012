#!/usr/bin/env python3
"""The local development broker: baskets 1-3 and the service, provisioned into .run/broker/
(0700: Mosquitto runs as the user who starts it, root included, so nobody else needs to read it).

`ensure()` (or `dev_broker.py ensure`) provisions on first use and returns the paths; `run` then
starts Mosquitto in the foreground on loopback. `make broker` and `make run` use it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from tools import provision

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / ".run" / "broker"
DEV_BASKETS = "1-3"


@dataclass
class DevBroker:
    dir: Path
    port: int
    conf: Path
    service_env: Path
    baskets_dir: Path
    tls_port: int | None  # None: no TLS listener

    def basket_env(self, n: int) -> Path:
        return self.baskets_dir / ("%d.env" % n)

    def describe(self) -> dict[str, str]:
        """Paths only: shell-friendly KEY=VALUE lines, no secrets."""
        return {
            "BROKER_DIR": str(self.dir),
            "BROKER_PORT": str(self.port),
            "BROKER_CONF": str(self.conf),
            "SERVICE_ENV": str(self.service_env),
            "BASKETS_DIR": str(self.baskets_dir),
            "BASKET1_ENV": str(self.basket_env(1)),
            **({"BROKER_TLS_PORT": str(self.tls_port)} if self.tls_port else {}),
        }


def _current(out: Path) -> dict[str, object] | None:
    try:
        settings = json.loads((out / provision.STATE_NAME).read_text())["settings"]
        return settings if isinstance(settings, dict) else None
    except (OSError, ValueError, KeyError):
        return None


def ensure(port: int = 1883, out: Path = DEFAULT_DIR, tls: bool = False,
           tls_port: int = 8883) -> DevBroker:
    """Provisions the development broker unless it already matches; never changes passwords."""
    out = out.resolve()
    wanted = {"port": port, "tls": tls, "bind": "127.0.0.1", "run_as_user": "root"}
    if tls:
        wanted["tls_port"] = tls_port
    settings = _current(out)
    up_to_date = (
        settings is not None
        and (out / "mosquitto.conf").exists()
        and (out / provision.DYNSEC_NAME).exists()  # else an older password_file/acl_file one
        and all(settings.get(k) == v for k, v in wanted.items())
    )
    if not up_to_date:
        # The broker runs as this user (root only keeps root), so the folder can be this
        # user's alone: passwords, the CA key and the sessions stay private on a shared host.
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(out, 0o700)
        # Root only on loopback: a dev broker then starts from any folder, even one the
        # `mosquitto` user cannot enter (a home directory). Deployments keep the default user.
        argv = ["--out", str(out), "--baskets", DEV_BASKETS, "--port", str(port),
                "--bind", "127.0.0.1", "--host", "127.0.0.1", "--run-as-user", "root",
                "--tls" if tls else "--no-tls", "--tls-port", str(tls_port)]
        # The summary goes to stderr: stdout stays KEY=VALUE lines for scripts.
        with contextlib.redirect_stdout(sys.stderr):
            rc = provision.main(argv)
        if rc != 0:
            raise SystemExit("dev_broker: provisioning %s failed" % out)
    return DevBroker(out, port, out / "mosquitto.conf", out / "service.env", out / "baskets",
                     tls_port if tls else None)


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.access(found, os.X_OK):
        raise SystemExit("dev_broker: mosquitto is not installed (make mosquitto)")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dev_broker.py", description=__doc__)
    p.add_argument("command", choices=["ensure", "run"],
                   help="ensure: provision if needed and print the paths; run: also start it")
    p.add_argument("--port", type=int, default=int(os.environ.get("BROKER_PORT") or 1883))
    p.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    p.add_argument("--tls", action="store_true", help="add a TLS listener (--tls-port)")
    p.add_argument("--tls-port", type=int, default=8883)
    args = p.parse_args(argv)
    broker = ensure(args.port, args.dir, args.tls, args.tls_port)
    for key, value in broker.describe().items():
        print("%s=%s" % (key, value))
    if args.command == "run":
        sys.stdout.flush()
        print("dev_broker: Mosquitto on 127.0.0.1:%d (Ctrl-C stops it); client settings in %s"
              % (args.port, broker.baskets_dir), file=sys.stderr)
        os.execv(mosquitto_binary(), ["mosquitto", "-c", str(broker.conf)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
