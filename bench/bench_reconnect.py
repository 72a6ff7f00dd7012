"""Benchmark 6: time from a broker restart until the controller has re-published its cart.

The controller (basket 1 under MicroPython, basket 2 on CPython, both shopping with a 5-item
cart) runs against the provisioned broker with persistence. Each cycle: t0, the broker is
stopped (SIGTERM: it saves its database and closes every link) and started again on the same
port; a fresh paho subscriber connects as soon as the port answers; the figure is t0 until the
first live (not retained) update from each basket. The controller's first retry comes after
0.5-1 s of jittered back-off (attempt 0: the link had been up for >= STABLE_MS), so cycles are
spaced by STABLE_MS + 1 s; a quick run skips the spacing."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.common import quick, spawn, spread  # noqa: E402
from bench.driver import Driver  # noqa: E402

SUBJECTS = [("controller-mp", 1), ("controller-cpython", 2)]
TARGET_S = 1.5
STABLE_S = 10.0 + 1.0  # runtime.STABLE_MS: a link up this long resets the back-off


def main() -> int:
    common.header("reconnect: broker restart -> cart re-published")
    cycles = int(quick(10, 2))
    work = Path(tempfile.mkdtemp(prefix="bench-rc-"))
    broker = common.broker(baskets=2).start()
    procs = {}
    res: dict[str, list[float]] = {k: [] for k, _ in SUBJECTS}
    down: list[float] = []
    try:
        drv = Driver(broker.port, "service", broker.password(), ["basket/+/availability"])
        for kind, n in SUBJECTS:
            procs[kind] = spawn(kind, broker, n, work)
            if drv.wait_live("basket/%d/availability" % n, 15) is None:
                raise RuntimeError("%s did not come online" % kind)
        drv.close()
        for i in range(cycles):
            time.sleep(quick(STABLE_S, 0.5))
            t0 = time.perf_counter()
            broker.stop()
            broker.start(fresh=False)  # and waits for its listener
            down.append(time.perf_counter() - t0)
            drv = Driver(broker.port, "service", broker.password(), ["basket/+/update"])
            for kind, n in SUBJECTS:
                hit = drv.wait_live("basket/%d/update" % n, 30)
                if hit is None:
                    raise RuntimeError("%s did not re-publish within 30 s" % kind)
                res[kind].append(hit[0] - t0)
            drv.close()
            print("cycle %d: broker back after %.3f s; %s" % (i + 1, down[-1], ", ".join(
                "%s %.3f s" % (k, v[-1]) for k, v in res.items())))
        print("\n%d restarts; load %s" % (cycles, common.load()))
        rows = [[k, spread(v), "%.3f" % common.median(v)] for k, v in res.items()]
        rows.append(["(broker stop + start)", spread(down), "%.3f" % common.median(down)])
        print(common.table(["subject", "s, median (min-max)", "median"], rows))
        for k, v in res.items():
            m = common.median(v)
            print("target %s <= %.1f s: %.3f s -> %s" % (k, TARGET_S, m,
                                                          common.verdict(m <= TARGET_S)))
        common.record("reconnect x%d" % cycles, "; ".join(
            "%s median %.3f s (%.3f-%.3f)" % (k, common.median(v), min(v), max(v))
            for k, v in res.items()) + "; broker down %.3f s" % common.median(down))
    finally:
        common.cleanup(broker, work, *procs.values())
    return 0


if __name__ == "__main__":
    sys.exit(main())
