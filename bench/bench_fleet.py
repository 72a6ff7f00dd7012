"""Benchmark 4: backend throughput. tools/simulate.py drives basket_service (SQLite) through the
provisioned broker: sustained totals/s (each update priced, stored and answered) and
update -> total latency at 100, 1,000 and 5,000 baskets x 1 update/s, plus a saturation run
(more offered than the service can take), next to the broker's own QoS 1 limit measured in the
same run: mosquitto_pub -l (QoS 1, retained) -> mosquitto_sub (QoS 1)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.common import PYTHON, ROOT, quick, spread  # noqa: E402
from tests.support.broker import Broker  # noqa: E402

TARGET_RATE = 5000.0
TARGET_P99_MS = 20.0


def broker_limit(broker: Broker, n: int) -> float:
    """Messages/s from one mosquitto_pub to one mosquitto_sub, both QoS 1: first to last
    arrival at the subscriber (its own timestamps), so a late subscriber still measures."""
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-u",
                            "service", "-P", broker.password(), "-q", "1", "-t",
                            "basket/1/update", "-C", str(n), "-W", "120", "-F", "%U",
                            "-i", "bench-limit-sub"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    lines = (common.UPDATE_PAYLOAD.decode() + "\n") * n
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-u", "basket1",
                    "-P", broker.password(1), "-q", "1", "-t", "basket/1/update", "-l",
                    "-i", "basket-1"],  # the only client id basket1's login may use
                   input=lines.encode(), check=True, timeout=120)
    try:
        out = sub.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:  # it missed some: what it got is enough
        sub.terminate()
        out = sub.communicate()[0]
    stamps = [float(x) for x in out.split() if x.replace(".", "", 1).isdigit()]
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return float("nan")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def history_rows(db: Path) -> int:
    try:
        with sqlite3.connect(str(db), timeout=30) as c:
            return int(c.execute("SELECT count(*) FROM history").fetchone()[0])
    except sqlite3.Error:
        return 0


def simulate(broker: Broker, baskets: int, rate: float, duration: float, warmup: float,
             work: Path) -> dict:  # type: ignore[type-arg]
    out = work / "sim.json"
    res = subprocess.run([PYTHON, "-m", "tools.simulate", "--provisioned",
                          str(broker.dir), "--port", str(broker.port), "--baskets", str(baskets),
                          "--rate", str(rate), "--duration", str(duration), "--warmup",
                          str(warmup), "--processes", "2", "--json", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=duration + 300)
    if not out.exists():
        raise RuntimeError("simulate failed:\n%s%s" % (res.stdout[-2000:], res.stderr[-2000:]))
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def main() -> int:
    common.header("backend throughput (fleet simulator -> basket_service on SQLite)")
    common.raise_nofile()
    levels = [100, 1000, 5000] if not common.QUICK else [5]
    # Saturation: 8,000 updates/s offered, each basket below the service's per-basket limit of
    # 10 totals/s (docs/service.md): a basket faster than that only delays itself.
    sat = (1000, 8.0) if not common.QUICK else (5, 8.0)  # baskets, updates/s each
    duration, warmup = float(quick(20, 3)), float(quick(5, 1))
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    os.chmod(work, 0o755)
    t = time.monotonic()
    broker = common.broker(baskets=max(levels + [sat[0]]))
    print("provisioned %d basket users in %.1f s" % (broker.baskets, time.monotonic() - t))
    svc = None
    rows = []
    notes = []
    try:
        broker.start()
        limits = [broker_limit(broker, int(quick(20000, 500))) for _ in range(int(quick(3, 1)))]
        print("broker QoS 1 limit (mosquitto_pub -> mosquitto_sub): %s msg/s" % spread(
            limits, "%.0f"))
        broker.stop()
        runs = [(n, 1.0) for n in levels] + [sat]
        for i, (n, rate) in enumerate(runs):
            # Each level on a fresh broker, service and database: no backlog carried over.
            broker.start(fresh=True)
            db = work / ("basket-%d.db" % i)
            svc = common.start_service(broker, db)
            cpu0 = common.cpu_ns(svc.pid)
            s = simulate(broker, n, rate, duration, warmup, work)
            cpu = (common.cpu_ns(svc.pid) - cpu0) / 1e9
            stored = history_rows(db)
            svc.stop()
            broker.stop()
            rows.append([n, "%g" % rate, "%.0f" % s["offered_per_s"], "%.0f" % s["totals_per_s"],
                         "%d/%d" % (stored, s["sent"]), s["p50_ms"], s["p99_ms"], s["max_ms"],
                         s["unanswered"], "%.0f%%" % (cpu / (duration + 3) * 100),
                         "%.2f" % (s["totals_per_s"] / common.median(limits))])
            notes.append("%d x %g/s: %.0f totals/s p50 %s p99 %s ms" % (
                n, rate, s["totals_per_s"], s["p50_ms"], s["p99_ms"]))
            if s["connected"] != n:
                print("warning: only %d of %d baskets connected: %s" % (s["connected"], n,
                                                                       s["errors"]))
        print("\n%.0f s runs (first %.0f s left out); load %s" % (duration, warmup, common.load()))
        print(common.table(["baskets", "upd/s each", "offered/s", "totals/s", "stored/sent",
                            "p50 ms", "p99 ms", "max ms", "unanswered", "service CPU",
                            "ratio to broker limit"], rows))
        best = max(float(r[3]) for r in rows)
        print("target >= %.0f updates/s priced and stored: %.0f -> %s" % (
            TARGET_RATE, best, common.verdict(best >= TARGET_RATE)))
        at1000 = [r for r in rows if r[0] == 1000 and r[1] == "1"]
        if at1000:
            p99 = float(at1000[0][6] or 0)
            print("target p99 <= %.0f ms at 1,000 baskets x 1/s: %.1f ms -> %s" % (
                TARGET_P99_MS, p99, common.verdict(p99 <= TARGET_P99_MS)))
        common.record("fleet", "broker QoS1 limit %.0f msg/s; %s" % (
            common.median(limits), "; ".join(notes)))
    finally:
        common.cleanup(broker, work, svc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
