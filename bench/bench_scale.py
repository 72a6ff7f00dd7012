"""Benchmark 5: how many simulated baskets one Mosquitto (provisioned config) holds connected
and subscribed: 1,000 / 5,000 / 10,000 clients of tools/simulate.py --rate 0 (each its own
user, password check, ACL, persistent session, will, retained `online`), with the broker's
resident memory at each level and the time to connect them all. The open-file limit is raised
to the hard limit for the broker and the simulator (resource.setrlimit)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.common import PYTHON, ROOT, quick  # noqa: E402

TARGET = 10000


def main() -> int:
    common.header("scale: baskets connected and subscribed to one Mosquitto")
    nofile = common.raise_nofile()
    levels = [1000, 5000, 10000] if not common.QUICK else [20]
    print("open-file limit (soft = hard): %d" % nofile)
    t = time.monotonic()
    broker = common.broker(baskets=max(levels))
    print("provisioned %d basket users in %.1f s" % (broker.baskets, time.monotonic() - t))
    rows = []
    held = 0
    try:
        for n in levels:
            broker.start(fresh=True)
            idle_kb = broker.rss_kb()
            procs = max(1, min(8, n // 2500 + 1))
            hold = float(quick(5, 2))
            sim = subprocess.Popen(
                [PYTHON, "-m", "tools.simulate", "--provisioned", str(broker.dir),
                 "--port", str(broker.port), "--baskets", str(n), "--rate", "0", "--duration",
                 str(hold + 3), "--warmup", "0", "--processes", str(procs), "--quiet"],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert sim.stdout is not None
            ready = ""
            for line in sim.stdout:
                if line.startswith("READY"):
                    ready = line.strip()
                    break
            time.sleep(hold)  # all links up and idle: the broker's steady memory
            rss = broker.rss_kb()
            fields = dict(kv.split("=") for kv in ready.split()[1:]) if ready else {}
            rest = sim.communicate(timeout=120)[0]
            if not ready:
                print("simulate failed:\n" + rest[-2000:])
            sub = int(fields.get("subscribed", 0))
            if sub == n:
                held = n
            rows.append([n, fields.get("connected", "?"), sub, fields.get("failed", "?"),
                         fields.get("connect_s", "?"), "%.1f" % (rss / 1024),
                         "%.1f" % ((rss - idle_kb) / max(1, sub)) if sub else "-"])
            broker.stop()
        print("\nload %s" % common.load())
        print(common.table(["baskets", "connected", "subscribed", "failed", "connect s",
                            "broker RSS MB", "KB per basket"], rows))
        print("target %d baskets on one broker: %d held -> %s" % (
            TARGET, held, common.verdict(held >= TARGET)))
        common.record("scale", "; ".join("%s baskets: %s subscribed, broker %s MB, connect %s s"
                                         % (r[0], r[2], r[5], r[4]) for r in rows))
    finally:
        broker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
