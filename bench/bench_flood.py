"""Benchmark 7: one basket floods, the others must not notice. The provisioned broker
(tools/provision.py), `basket_service serve` (SQLite) as a subprocess; basket 1 publishes
5,000 distinct carts a second for 10 s (paho, in its own process), while 20 other baskets each
publish an update every 100 ms. Reported: the other baskets' update -> total latency (p50, p99,
max; a total counts when it names that update's cart), how many of their updates were never
answered, the flooder's totals/s (the service's per-basket rate limit), whether the flooder
ended on its last cart's total, the largest SQLite WAL seen, the service's peak RSS and CPU,
and any "dropped" line in the broker's log. Target: p99 <= 50 ms and 0 unanswered.
FLOOD_RATE=N changes the flood rate (FLOOD_RATE=1: the same run without a flood, the baseline);
FLOOD_PYSPY=file records a py-spy profile (raw) of the service during the flood."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from bench.bench_fleet import start_service  # noqa: E402
from bench.common import PYTHON, ROOT, Broker, quick, stop_proc  # noqa: E402

TARGET_P99_MS = 50.0
RATE = float(os.environ.get("FLOOD_RATE", "") or quick(5000, 5000))
SECONDS = float(quick(10, 2))
OTHERS = int(quick(20, 5))
EVERY_S = 0.1


def flooder_main(port: int, password: str, rate: float, seconds: float) -> int:
    """The flooding basket in a process of its own (so its publishing does not share a GIL
    with the measured baskets): prints one JSON line when done."""
    from tests.support.flood import RawBasket, drain, flood_raw

    b = RawBasket(port, 1, password)
    t0 = time.monotonic()
    sent = flood_raw(b, rate, seconds)
    took = time.monotonic() - t0
    drain(b)
    within = sum(1 for at, _, _ in b.totals if at <= t0 + took)
    print(json.dumps({"sent": sent, "seconds": took, "totals_during": within,
                      "totals": len(b.totals), "last_answered": b.answered_last()}), flush=True)
    b.close()
    return 0


class Sampler(threading.Thread):
    """The largest WAL file and service RSS seen, every 50 ms."""

    def __init__(self, db: Path, pid: int) -> None:
        super().__init__(daemon=True)
        self.wal = Path(str(db) + "-wal")
        self.pid = pid
        self.max_wal = 0
        self.max_rss_kb = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            try:
                self.max_wal = max(self.max_wal, self.wal.stat().st_size)
            except OSError:
                pass
            self.max_rss_kb = max(self.max_rss_kb, common.proc_status(self.pid, "VmRSS"))


def main() -> int:
    from tests.support.flood import Basket, steady

    common.header("flood: one basket at %.0f updates/s, %d others at %.0f/s each"
                  % (RATE, OTHERS, 1 / EVERY_S))
    work = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    os.chmod(work, 0o755)
    broker = Broker(baskets=OTHERS + 1)
    svc = None
    others: list[Basket] = []
    try:
        broker.start()
        db = work / "basket.db"
        svc = start_service(broker, db, work, settle=0.5)
        others = [Basket(broker.port, n, broker.password(n)) for n in range(2, OTHERS + 2)]
        sampler = Sampler(db, svc.pid)
        sampler.start()
        cpu0 = common.cpu_ns(svc.pid)
        spy = None
        if os.environ.get("FLOOD_PYSPY"):  # a profile of the service during the flood
            spy = subprocess.Popen([str(common.VENV_BIN / "py-spy"), "record", "-p",
                                    str(svc.pid), "-d", str(int(SECONDS)), "-f", "raw", "-o",
                                    os.environ["FLOOD_PYSPY"], "--threads"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        flooder = subprocess.Popen([PYTHON, __file__, "--flooder", str(broker.port),
                                    broker.password(1), str(RATE), str(SECONDS)], cwd=ROOT,
                                   stdout=subprocess.PIPE, text=True,
                                   env=dict(os.environ, PYTHONPATH=str(ROOT)))
        paced = [threading.Thread(target=steady, args=(b, EVERY_S, SECONDS, 1 + b.n))
                 for b in others]
        for p in paced:
            p.start()
        for p in paced:
            p.join()
        out, _ = flooder.communicate(timeout=SECONDS + 60)
        if spy is not None:
            spy.wait(30)
        cpu = (common.cpu_ns(svc.pid) - cpu0) / 1e9 / (time.monotonic() - t0)
        f = json.loads(out.strip().splitlines()[-1])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(b.unanswered() for b in others):
            time.sleep(0.05)
        sampler.done.set()
        sampler.join()
        lat = sorted(x for b in others for x in b.latencies_ms())
        sent = sum(len(b.sent) for b in others)
        unanswered = sum(b.unanswered() for b in others)
        dropped = sum(1 for ln in broker.log_path.read_text(errors="replace").splitlines()
                      if "dropped" in ln)
        p50, p99 = common.pct(lat, 50), common.pct(lat, 99)
        rows = [[
            "%.0f/s x %.1f s" % (f["sent"] / f["seconds"], f["seconds"]),
            "%d x %.0f/s" % (OTHERS, 1 / EVERY_S), sent, "%.1f" % p50, "%.1f" % p99,
            "%.1f" % (lat[-1] if lat else float("nan")), unanswered,
            "%.1f" % (f["totals_during"] / f["seconds"]), "yes" if f["last_answered"] else "NO",
            "%.1f" % (sampler.max_wal / 2**20), "%.0f" % (sampler.max_rss_kb / 1024),
            "%.0f%%" % (cpu * 100), dropped]]
        print(common.table(["flooder", "others", "their updates", "p50 ms", "p99 ms", "max ms",
                            "unanswered", "flooder totals/s", "flooder last priced",
                            "max WAL MB", "service RSS MB", "service CPU",
                            "broker 'dropped' lines"], rows))
        ok = p99 <= TARGET_P99_MS and unanswered == 0
        print("target p99 <= %.0f ms and 0 unanswered for the other baskets: p99 %.1f ms, "
              "%d unanswered -> %s" % (TARGET_P99_MS, p99, unanswered, common.verdict(ok)))
        common.record("flood", "basket 1 at %.0f/s for %.0f s, %d others x %.0f/s: p50 %.1f "
                      "p99 %.1f max %.1f ms, %d of %d unanswered; flooder %.1f totals/s, last "
                      "cart priced: %s; max WAL %.1f MB; service RSS %.0f MB, CPU %.0f%%; "
                      "broker dropped lines %d" % (
                          f["sent"] / f["seconds"], f["seconds"], OTHERS, 1 / EVERY_S, p50,
                          p99, lat[-1] if lat else float("nan"), unanswered, sent,
                          f["totals_during"] / f["seconds"],
                          "yes" if f["last_answered"] else "no", sampler.max_wal / 2**20,
                          sampler.max_rss_kb / 1024, cpu * 100, dropped))
    finally:
        for b in others:
            b.close()
        stop_proc(svc)
        broker.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--flooder":
        sys.exit(flooder_main(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]),
                              float(sys.argv[5])))
    sys.exit(main())
