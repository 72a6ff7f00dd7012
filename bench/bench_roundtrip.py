"""Benchmark 1: command -> update round trip through a real Mosquitto on loopback.

A paho driver (logged in as the backend) publishes `start` (QoS 1) on basket/1/status and times
the basket's update on basket/1/update. Each subject starts in a shopping session with a 5-item
cart, so every `start` is a real command through the whole path: the controller parses it, the
state machine decides to re-publish the cart, the cart is encoded and published QoS 1 retained
(ARCHITECTURE.md: `start` while shopping re-publishes the current cart). The reference echo
loops answer every message with the same update bytes and do nothing else.
Subjects: the controller under MicroPython unix and CPython; umqtt.simple under MicroPython
(stock, and with TCP_NODELAY on its socket); paho-mqtt on CPython. Broker: the provisioned
config (set_tcp_nodelay true) and the same config without set_tcp_nodelay (Mosquitto default).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.common import cpu_ns, pct, quick, spawn, spread  # noqa: E402
from bench.driver import Driver  # noqa: E402
from tests.support.broker import Broker  # noqa: E402

SUBJECTS = ["controller-mp", "controller-cpython", "umqtt", "umqtt-nodelay", "paho"]
LABEL = {"controller-mp": "controller, MicroPython", "controller-cpython": "controller, CPython",
         "umqtt": "umqtt.simple echo (stock)", "umqtt-nodelay": "umqtt.simple echo + NODELAY",
         "paho": "paho-mqtt echo, CPython"}
REFERENCE = {"controller-mp": "umqtt-nodelay", "controller-cpython": "paho"}


def measure(broker: Broker, kind: str, n: int, work: Path) -> dict[str, float]:
    broker.start(fresh=True)
    drv = Driver(broker.port, "service", broker.password(), ["basket/1/update",
                                                             "basket/1/availability"])
    proc = spawn(kind, broker, 1, work)
    try:
        if drv.wait_live("basket/1/availability", 15) is None:
            raise RuntimeError("%s did not come online; log: %s" % (
                kind, proc.output()[-1500:]))
        drv.wait(lambda: False, 0.3)  # let the connect-time traffic settle
        drv.round_trips("basket/1/status", "basket/1/update", int(quick(50, 5)))  # warm-up
        cpu0 = cpu_ns(proc.pid)
        rtts = drv.round_trips("basket/1/status", "basket/1/update", n)
        cpu = cpu_ns(proc.pid) - cpu0
    finally:
        drv.close()
        proc.stop()
        broker.stop()
    return {"p50": pct(rtts, 50) * 1e3, "p99": pct(rtts, 99) * 1e3, "cpu_us": cpu / n / 1e3,
            "mean": sum(rtts) / len(rtts) * 1e3}


def main() -> int:
    common.header("command -> update round trip")
    subjects = [s for s in SUBJECTS if not s.startswith("umqtt") or common.have_umqtt()]
    if len(subjects) < len(SUBJECTS):
        print("umqtt.simple is not in lib/ (run `make board-libs`): its rows are skipped")
    configs = [("provisioned", False, int(quick(2000, 20)), int(quick(5, 1))),
               ("mosquitto-default-nagle", True, int(quick(100, 10)), int(quick(3, 1)))]
    work = Path(tempfile.mkdtemp(prefix="bench-rtt-"))
    summary = []
    try:
        for name, defaults, n, runs in configs:
            broker = common.broker(baskets=2, defaults=defaults)
            res: dict[str, list[dict[str, float]]] = {s: [] for s in subjects}
            try:
                for _ in range(runs):  # interleaved, so load changes hit every subject alike
                    for kind in subjects:
                        # stock umqtt takes ~44 ms a round trip: a tenth of the count
                        k = max(20, n // 10) if kind == "umqtt" else n
                        res[kind].append(measure(broker, kind, k, work))
            finally:
                broker.close()
            print("\nbroker config: %s; %d round trips x %d runs per subject (stock umqtt "
                  "echo: %d); load %s" % (name, n, runs, max(20, n // 10),
                                                            common.load()))
            rows = []
            for kind in subjects:
                p50 = [r["p50"] for r in res[kind]]
                p99 = [r["p99"] for r in res[kind]]
                cpu = [r["cpu_us"] for r in res[kind]]
                ref = REFERENCE.get(kind)
                ratio = "-"
                if ref in res:
                    rs = [a["p50"] / b["p50"] for a, b in zip(res[kind], res[ref])]
                    ratio = "%s x %s" % (spread(rs, "%.2f"), ref)
                rows.append([LABEL[kind], spread(p50), spread(p99), spread(cpu, "%.0f"), ratio])
            print(common.table(["subject", "p50 ms", "p99 ms", "device CPU us/rt",
                                "p50 ratio to reference"], rows))
            for kind, ref, target in (("controller-mp", "umqtt-nodelay", 1.2),
                                      ("controller-cpython", "paho", 1.0)):
                if kind in res and ref in res and name == "provisioned":
                    r = common.median([a["p50"] / b["p50"] for a, b in zip(res[kind], res[ref])])
                    print("target %s <= %.1f x %s: %.2f -> %s" % (kind, target, ref, r,
                                                                  common.verdict(r <= target)))
            summary.append("%s: %s" % (name, "; ".join(
                "%s p50 %.3f p99 %.3f ms cpu %.0f us" % (
                    k, common.median([r["p50"] for r in res[k]]),
                    common.median([r["p99"] for r in res[k]]),
                    common.median([r["cpu_us"] for r in res[k]])) for k in subjects)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    common.record("roundtrip", " // ".join(summary))
    return 0


if __name__ == "__main__":
    t = time.monotonic()
    rc = main()
    print("(%.0f s)" % (time.monotonic() - t))
    sys.exit(rc)
