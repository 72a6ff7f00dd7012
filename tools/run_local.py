#!/usr/bin/env python3
"""`make run`: the whole system on this machine — a provisioned Mosquitto on loopback, the
backend service on SQLite with the sample catalogue, and basket 1 reading items from this
terminal. Ctrl-C (or end of input and Ctrl-C) stops all three.

Everything lives under .run/ (credentials, database, logs, the basket's state file), readable
by this user only: 0700 folders, 0600 files. No printed hint carries a password: the commands
read it from a file (.run/service.sh, or mosquitto_pub's options file in .run/mqtt/)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from tools import dev_broker

ROOT = Path(__file__).resolve().parent.parent
RUN = Path(os.environ.get("RUN_DIR") or ROOT / ".run")  # RUN_DIR: elsewhere (tests)
PY = sys.executable


def read_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if listening(port):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    sys.exit("run: %s did not start; see %s" % (what, log))


def _shown(path: Path) -> Path:
    return path.relative_to(ROOT) if ROOT in path.parents else path


def private_run_dir(run: Path) -> None:
    """`run` and everything in it this user owns: folders 0700, files without group/other bits
    (a .run/ from before the umask, or one made by an older version, is tightened too)."""
    run.mkdir(mode=0o700, exist_ok=True)
    uid = os.getuid()
    for top, _dirs, files in os.walk(run):
        for name in [top] + [os.path.join(top, f) for f in files]:
            try:
                st = os.lstat(name)
                if st.st_uid != uid or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                    continue  # another user's file, a symlink (the RFID pty), a socket
                os.chmod(name, 0o700 if stat.S_ISDIR(st.st_mode) else st.st_mode & 0o700)
            except OSError:
                pass


def write_mqtt_options(where: Path, env: dict[str, str]) -> None:
    """mosquitto_pub/_sub read default options from $XDG_CONFIG_HOME/mosquitto_pub (..._sub): the
    service login goes there (0600), so a hint's command line holds no password."""
    where.mkdir(mode=0o700, exist_ok=True)
    lines = ["-h %s" % env.get("MQTT_HOST", "127.0.0.1"), "-p %s" % env["MQTT_PORT"],
             "-u %s" % env["MQTT_USER"], "-P %s" % env["MQTT_PASSWORD"]]
    if env.get("MQTT_CAFILE"):
        lines.append("--cafile %s" % env["MQTT_CAFILE"])
    for tool in ("mosquitto_pub", "mosquitto_sub"):
        path = where / tool
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(path, 0o600)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=int(os.environ.get("BROKER_PORT") or 1883))
    p.add_argument("--http", type=int, default=int(os.environ.get("DASHBOARD_PORT") or 8080),
                   help="port of the store dashboard on 127.0.0.1")
    p.add_argument("--rfid", action="store_true", default=os.environ.get("RFID") == "1",
                   help="basket 1 reads an emulated YRM100 RFID reader; this terminal drives it")
    args = p.parse_args()
    # `kill` or a closed terminal stops everything the way Ctrl-C does: the broker and the
    # backend run in sessions of their own and would otherwise be left behind.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    if listening(args.port):
        sys.exit("run: something already listens on 127.0.0.1:%d (another broker?). Stop it, or "
                 "pick another port: make run BROKER_PORT=11883" % args.port)
    if listening(args.http):
        sys.exit("run: port %d for the dashboard is taken; pick another: make run "
                 "DASHBOARD_PORT=18080" % args.http)
    # The receipts database, logs, state file and credentials are this user's alone; the
    # children (broker, backend, basket) inherit the umask for what they create.
    os.umask(0o077)
    RUN.mkdir(mode=0o700, exist_ok=True)
    broker = dev_broker.ensure(port=args.port, out=RUN / "broker")
    write_mqtt_options(RUN / "mqtt", read_env(broker.service_env))
    private_run_dir(RUN)
    procs: list[subprocess.Popen[bytes]] = []

    def stop_all() -> None:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()

    try:
        broker_log = RUN / "mosquitto.log"
        procs.append(subprocess.Popen(
            [dev_broker.mosquitto_binary(), "-c", str(broker.conf)],
            stdout=broker_log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True))
        wait_port(args.port, procs[-1], "Mosquitto", broker_log)

        service_env = dict(os.environ, **read_env(broker.service_env),
                           BASKET_DB=str(RUN / "basket.db"))
        service_log = RUN / "service.log"
        procs.append(subprocess.Popen(
            [PY, "-m", "basket_service", "serve", "--catalog",
             str(ROOT / "data" / "catalog_sample.csv"), "--http", str(args.http)],
            cwd=ROOT, env=service_env, stdout=service_log.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True))
        (RUN / "service.sh").write_text(
            "# source me: settings for basket_service commands beside `make run`\nset -a\n"
            ". %s\nBASKET_DB=%s\nset +a\n" % (broker.service_env, RUN / "basket.db"))
        os.chmod(RUN / "service.sh", 0o600)

        basket_env = dict(os.environ, **read_env(broker.basket_env(1)),
                          ITEM_SOURCE="stdin", CART_STATE_FILE=str(RUN / "basket-1.state.json"))
        emulator = None
        if args.rfid:
            link = RUN / "rfid0"
            emulator = subprocess.Popen([PY, "-m", "tools.yrm100_emulator", "--link", str(link)],
                                        cwd=ROOT)
            procs.append(emulator)
            deadline = time.monotonic() + 10
            while not link.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            basket_env.update(ITEM_SOURCE="rfid:%s" % link, RFID_REGION="keep")
        print((RFID_INSTRUCTIONS if args.rfid else INSTRUCTIONS) % {
            "port": args.port, "run": _shown(RUN), "http": args.http}, flush=True)
        basket = subprocess.Popen([PY, "-m", "mqtt_controller"], cwd=ROOT, env=basket_env,
                                  stdin=subprocess.DEVNULL if args.rfid else None)
        try:
            (emulator or basket).wait()
        except KeyboardInterrupt:
            pass
        if basket.poll() is None:
            basket.send_signal(signal.SIGINT)
            basket.wait(10)
    except KeyboardInterrupt:
        pass
    finally:
        stop_all()
    print("\nrun: stopped (logs in %s)" % _shown(RUN))
    return 0


INSTRUCTIONS = """
================================================================================================
 Smart Basket running locally: Mosquitto on 127.0.0.1:%(port)d, the backend (SQLite, sample
 catalogue), and basket 1 reading items from THIS terminal. Logs: %(run)s/*.log

 Store dashboard (every basket live, start / end / checkout buttons, receipts):
      http://127.0.0.1:%(http)d/
 The shopper's page for basket 1 (pair with the PIN the basket shows below, then watch the
 cart, check out and confirm the checkout code on the dashboard; docs/shopper.md):
      http://127.0.0.1:%(http)d/shop/1

 The commands below read the service login from files in %(run)s/ (0600); none puts a
 password on the command line. `. %(run)s/service.sh` loads it into this shell's environment.

 1. In another terminal, start a shopping session for basket 1:
      . %(run)s/service.sh && .venv/bin/python -m basket_service start 1
    (or with the raw MQTT command, as the backend would send it:
      XDG_CONFIG_HOME=%(run)s/mqtt mosquitto_pub -q 1 -t basket/1/status -m start )
 2. Here, type product codes and Enter: MLON  BLUE  APPL  (-MLON removes one, MLON=3 sets 3).
    The backend prices each update and the basket shows TOTAL ... KRW.
 3. Send a total or end by hand:
      XDG_CONFIG_HOME=%(run)s/mqtt mosquitto_pub -q 1 -t basket/1/status \\
        -m '{"msg":"total","payload":{"basketid":1,"totalprice":15000}}'
      XDG_CONFIG_HOME=%(run)s/mqtt mosquitto_pub -q 1 -t basket/1/status -m end
    or check out (receipt) / list carts:
      . %(run)s/service.sh && .venv/bin/python -m basket_service checkout 1
      .venv/bin/python -m basket_service receipts
 4. Watch the baskets' carts and availability:
      XDG_CONFIG_HOME=%(run)s/mqtt mosquitto_sub -v -t 'basket/+/update' -t 'basket/+/availability'
 Ctrl-C stops the basket, the backend and the broker.
================================================================================================
"""

RFID_INSTRUCTIONS = INSTRUCTIONS.replace(
    " 2. Here, type product codes and Enter: MLON  BLUE  APPL  (-MLON removes one, MLON=3 sets 3).",
    " 2. Here, drive the emulated RFID reader: `tag MLON=-40` puts a melon tag in the basket,\n"
    "    `list` shows the tags, `rssi 0 -70` weakens tag 0 below the threshold, `del 0` removes"
    " it.")

if __name__ == "__main__":
    sys.exit(main())
