"""Benchmark 2: CPU used by a connected, idle controller (keepalive 60 s, so one PINGREQ every
30 s) on both interpreters, side by side with an idle paho-mqtt client, over the same window.
The window is split in slices; the table shows the median and min-max slice."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.common import cpu_ns, quick, spawn, spread  # noqa: E402
from bench.driver import Driver  # noqa: E402

SUBJECTS = [("controller-mp", 1), ("controller-cpython", 2), ("paho", 3)]
TARGET_PCT = 0.2


def main() -> int:
    common.header("idle cost")
    window = float(quick(60, 3))
    slices = int(quick(6, 1))
    work = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    broker = common.broker(baskets=3).start()
    procs = {}
    try:
        drv = Driver(broker.port, "service", broker.password(),
                     ["basket/+/availability"])
        for kind, n in SUBJECTS:
            procs[kind] = spawn(kind, broker, n, work)
            if drv.wait_live("basket/%d/availability" % n, 15) is None:
                raise RuntimeError("%s did not come online" % kind)
        drv.close()
        time.sleep(quick(2, 0.2))  # connect-time work done
        per: dict[str, list[float]] = {k: [] for k, _ in SUBJECTS}
        total = {k: 0 for k, _ in SUBJECTS}
        for _ in range(slices):
            t0 = time.monotonic()
            c0 = {k: cpu_ns(p.pid) for k, p in procs.items()}
            time.sleep(window / slices)
            dt = time.monotonic() - t0
            for k, p in procs.items():
                used = cpu_ns(p.pid) - c0[k]
                total[k] += used
                per[k].append(used / 1e9 / dt * 100)
        rows = []
        for k, _ in SUBJECTS:
            whole = total[k] / 1e9 / window * 100
            rows.append([k, "%.4f" % whole, spread(per[k], "%.4f"),
                         "%.1f" % (total[k] / 1e6), "%.2f" % (whole / max(1e-9, total["paho"]
                                                                / 1e9 / window * 100))])
        print("\n%.0f s window in %d slices; load %s" % (window, slices, common.load()))
        print(common.table(["subject", "% of a core", "per slice", "CPU ms", "ratio to paho"],
                           rows))
        figures = {k: total[k] / 1e9 / window * 100 for k, _ in SUBJECTS}
        for k in ("controller-mp", "controller-cpython"):
            print("target %s <= %.1f%% of a core: %.4f%% -> %s" % (
                k, TARGET_PCT, figures[k], common.verdict(figures[k] <= TARGET_PCT)))
        common.record("idle %.0f s" % window, "; ".join(
            "%s %.4f%% of a core" % (k, v) for k, v in figures.items()))
    finally:
        common.cleanup(broker, work, *procs.values())
    return 0


if __name__ == "__main__":
    sys.exit(main())
