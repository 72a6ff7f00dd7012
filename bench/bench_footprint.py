"""Benchmark 3: footprint, through the pipeline of `make footprint` (bench/footprint.py:
compile_board, mp_run over bench/mp_footprint.py).
- MicroPython unix: gc.mem_alloc() after gc.collect(), once connected and subscribed with a
  20-item cart (settings from the environment, as `-m mqtt_controller` reads them), against
  umqtt.simple connected alone; both loaded from .mpy files (what a board runs), so the figure
  is the modules' code plus their live objects, no compiler left-overs.
- Board .mpy bytes: the mqtt_controller modules a basket loads (measured: the modules in
  sys.modules once connected) without RFID/LCD and with them, as `make deploy MPY=1` compiles
  them, against umqtt's simple.mpy.
- CPython: process start to subscribed (Popen until the `online` it publishes right after
  SUBSCRIBE reaches a subscriber), peak RSS once there, and -X importtime of the modules,
  against a paho-mqtt client doing the same."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench import footprint as fp  # noqa: E402
from bench.common import MICROPYTHON, MPY_CROSS, PYTHON, ROOT, quick, spawn, spread  # noqa: E402
from bench.driver import Driver  # noqa: E402
from tests.support.broker import Broker  # noqa: E402

CART20 = {"ITEM%02d" % i: 1 + i % 3 for i in range(20)}
# loaded only when configured: ITEM_SOURCE=rfid:... and DISPLAY=lcd:...
RFID_LCD = ["items", "display", "rfid", "yrm100", "presence", "serialport", "lcd"]
TARGET_HEAP = 24 * 1024
TARGET_MPY = 16 * 1024
TARGET_START_MS = 50.0


def bare_heap() -> int:
    """The heap in use of the bare interpreter (after gc.collect())."""
    res = subprocess.run([MICROPYTHON, "-c", "import gc\ngc.collect()\nprint(gc.mem_alloc())"],
                         capture_output=True, text=True, timeout=30)
    return int(res.stdout.split()[-1])


def mp_heaps(broker: Broker, path: str) -> tuple[dict[str, int], list[str]]:
    """One measurement of each: the bare interpreter, the module code alone (what the basket
    imports, config.py released), the basket connected, umqtt.simple connected (if in lib/);
    and the mqtt_controller modules the connected basket has loaded. The measuring script's own
    code (its heap_empty over the bare interpreter's) is left out of the figures."""
    env = dict(broker.login(1), MQTT_TOPIC="basket/1", BENCH_BOOT="env", CART_STATE_FILE="",
               ITEM_SOURCE="none", DISPLAY="none", LOG_LEVEL="warning")
    bare = bare_heap()
    out: dict[str, int] = {"baseline": bare}
    modules: list[str] = []
    for mode in ("controller", "imports") + (("umqtt",) if common.have_umqtt() else ()):
        r = fp.mp_run(mode, broker.port, path, env=env)
        if r["rc"] != "0" or "heap_in_use" not in r:
            raise RuntimeError("mp_footprint %s failed:\n%s" % (mode, r["stderr"]))
        script = int(r["heap_empty"]) - bare
        if mode == "controller":
            out["controller"] = int(r["heap_in_use"]) - script
            modules = [m for m in r.get("modules", "").split(",") if m]
        elif mode == "imports":  # each import's heap; config.py is released once started
            out["imports"] = bare + sum(
                int(v) for k, v in r.items()
                if k.startswith("import_") and k[7:] not in ("board", "config"))
        else:
            out["umqtt"] = int(r["heap_in_use"]) - script
    return out, modules


def start_to_online(broker: Broker, kind: str, basket: int, work: Path) -> tuple[float, int]:
    drv = Driver(broker.port, "service", broker.password(), ["basket/+/availability"])
    try:
        mark = len(drv.got)
        t0 = time.perf_counter()
        proc = spawn(kind, broker, basket, work, cart=CART20)
        hit = drv.wait_live("basket/%d/availability" % basket, 15, mark)
        if hit is None:
            raise RuntimeError("%s did not come online" % kind)
        rss = proc.rss_kb("VmHWM")
        proc.stop()
        return (hit[0] - t0) * 1e3, rss
    finally:
        drv.close()


def importtime(modules: str) -> float:
    """Cumulative microseconds -X importtime reports for the named top-level imports."""
    res = subprocess.run([PYTHON, "-X", "importtime", "-c", "import " + modules], cwd=ROOT,
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    wanted = {m.strip() for m in modules.split(",")}
    total = 0
    for line in res.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and m.group(3) in wanted:
            total += int(m.group(1))
    return total / 1e3


def main() -> int:
    common.header("footprint")
    work = Path(tempfile.mkdtemp(prefix="bench-fp-"))
    os.chmod(work, 0o755)
    broker = common.broker(baskets=3).start()
    out = []
    try:
        lib = work / "lib"
        fp.compile_board(lib, umqtt=common.have_umqtt())
        # -- MicroPython heap
        runs = int(quick(3, 1))
        heaps: dict[str, list[int]] = {"baseline": [], "imports": [], "controller": [], "umqtt": []}
        modules: list[str] = []
        for _ in range(runs):
            got, modules = mp_heaps(broker, "%s:%s" % (lib, lib / "lib"))
            for mode in heaps:
                if mode in got:
                    heaps[mode].append(got[mode])
        rows: list[list[object]] = []
        for mode, vals in heaps.items():
            if vals:
                ratio = ("%.2f" % (common.median(vals) / common.median(heaps["umqtt"]))
                         if heaps["umqtt"] else "-")
                rows.append([mode, spread([v / 1024 for v in vals], "%.1f"), ratio])
        print("\nMicroPython unix heap, gc.mem_alloc() after gc.collect() (%d runs)" % runs)
        print(common.table(["subject", "KB", "ratio to umqtt"], rows))
        ctl = common.median(heaps["controller"])
        print("target controller heap <= 24 KB: %.1f KB -> %s" % (
            ctl / 1024, common.verdict(ctl <= TARGET_HEAP)))
        code = common.median(heaps["imports"])
        print("of which module code (imports alone): %.1f KB; live state once connected with "
              "20 items: %.1f KB (64-bit unix port: a 32-bit board stores less)"
              % (code / 1024, (ctl - code) / 1024))
        out.append("MP heap controller %.1f KB (code %.1f KB), umqtt %.1f KB, bare interpreter "
                   "%.1f KB" % (ctl / 1024, code / 1024, common.median(heaps["umqtt"] or [0])
                                / 1024, common.median(heaps["baseline"]) / 1024))
        # -- .mpy bytes a board receives
        names = [m.split(".", 1)[1] if "." in m else "__init__" for m in modules]
        names = [n for n in names if n != "__main__"]  # a board runs main.py instead
        if "config" not in names:  # released after start-up, but the board has the file
            names.append("config")
        base = sum((lib / "mqtt_controller" / (n + ".mpy")).stat().st_size for n in names)
        full_names = sorted(set(names) | set(RFID_LCD))
        full = sum((lib / "mqtt_controller" / (n + ".mpy")).stat().st_size for n in full_names)
        board = (lib / "mqtt_controller" / "board.mpy").stat().st_size  # main.py's supervisor
        umqtt = (lib / "lib" / "umqtt" / "simple.mpy").stat().st_size if common.have_umqtt() else 0
        print("\nboard .mpy bytes (mpy-cross %s)" % subprocess.run(
            [MPY_CROSS, "--version"], capture_output=True, text=True).stdout.strip())
        rows = [["basket without RFID/LCD (%d modules)" % len(names), base,
                 "%.1f" % (base / umqtt) if umqtt else "-"],
                ["with RFID + LCD (%d modules)" % len(full_names), full,
                 "%.1f" % (full / umqtt) if umqtt else "-"],
                ["without RFID/LCD, plus board.py (main.py on a board)", base + board,
                 "%.1f" % ((base + board) / umqtt) if umqtt else "-"],
                ["umqtt.simple simple.mpy", umqtt, "1.0"]]
        print(common.table(["what", "bytes", "ratio to umqtt"], rows))
        print("modules: %s" % ", ".join(names))
        per = sorted(((lib / "mqtt_controller" / (n + ".mpy")).stat().st_size, n)
                     for n in full_names)
        print("largest: %s" % ", ".join("%s %d" % (n, s) for s, n in reversed(per[-6:])))
        print("target board .mpy <= 16 KB (without RFID/LCD): %.1f KB -> %s" % (
            base / 1024, common.verdict(base <= TARGET_MPY)))
        out.append(".mpy %d B (with RFID/LCD %d B; with board.py %d B), umqtt simple.mpy %d B"
                   % (base, full, base + board, umqtt))
        # -- CPython start to subscribed, RSS, import time
        runs = int(quick(5, 1))
        start: dict[str, list[float]] = {"controller-cpython": [], "paho": [],
                                         "controller-mp": []}
        rss: dict[str, list[int]] = {k: [] for k in start}
        for i in range(runs):
            for kind in start:
                ms, kb = start_to_online(broker, kind, 1 + i % 3, work)
                start[kind].append(ms)
                rss[kind].append(kb)
        # what the benchmark's basket loads (ITEM_SOURCE=none, DISPLAY=none, built-in client)
        imp = {"controller-cpython": [importtime("mqtt_controller.runtime, mqtt_controller.config"
                                                 ", mqtt_controller.mqtt")
                                      for _ in range(runs)],
               "paho": [importtime("paho.mqtt.client") for _ in range(runs)]}
        rows = []
        for kind in start:
            r = common.median(start[kind]) / common.median(start["paho"])
            rows.append([kind, spread(start[kind], "%.1f"), "%.2f" % r,
                         spread([v / 1024 for v in rss[kind]], "%.1f"),
                         spread(imp[kind], "%.1f") if kind in imp else "-"])
        print("\nprocess start -> subscribed and online (%d runs); load %s" % (runs, common.load()))
        print(common.table(["subject", "ms", "ratio to paho", "peak RSS MB",
                            "-X importtime ms"], rows))
        cs = common.median(start["controller-cpython"])
        print("target CPython start to subscribed <= 50 ms: %.1f ms -> %s" % (
            cs, common.verdict(cs <= TARGET_START_MS)))
        out.append("CPython start->subscribed %.1f ms (paho %.1f, MP controller %.1f), "
                   "peak RSS %.1f MB (paho %.1f), importtime %.1f ms (paho %.1f)" % (
                       cs, common.median(start["paho"]), common.median(start["controller-mp"]),
                       common.median(rss["controller-cpython"]) / 1024,
                       common.median(rss["paho"]) / 1024,
                       common.median(imp["controller-cpython"]), common.median(imp["paho"])))
    finally:
        common.cleanup(broker, work)
    common.record("footprint", "; ".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
