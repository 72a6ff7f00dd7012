"""Fleet simulator: N baskets in one or a few processes, each a real MQTT client (the
controller's own mqtt_controller.mqtt.MQTTClient and protocol.encode_update) with its own broker
user, adding and removing items at a given rate and timing each update until the backend's
total for it comes back on basket/<n>/status.

    python tools/simulate.py --provisioned DIR --port 1883 --baskets 1000 --rate 1 --duration 30

Passwords come from the folder tools/provision.py wrote (provision.state.json); provision at
least as many baskets as you simulate. --rate 0 only connects, subscribes and holds the links
(a scale test). A progress line goes to stderr; the summary to stdout (and --json FILE)."""

from __future__ import annotations

import argparse
import heapq
import json
import multiprocessing as mp
import os
import random
import resource
import select
import sys
import time
from pathlib import Path
from typing import Any

from basket_service import catalog
from mqtt_controller import protocol
from mqtt_controller.mqtt import MQTTClient
from mqtt_controller.packet import MQTTException

ROOT = Path(__file__).resolve().parents[1]

REPORT_S = 0.5
# Updates per basket still waiting for their total. Past it the oldest counts as unanswered;
# it must cover a saturated run (40 updates/s per basket x seconds of backlog), or totals that
# do come, late, are counted as unmatched instead of timed.
FIFO_MAX = 4096


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Basket:
    __slots__ = ("n", "client", "items", "fifo", "status")

    def __init__(self, n: int, client: MQTTClient) -> None:
        self.n = n
        self.client = client
        self.items: dict[str, int] = {}
        self.fifo: list[tuple[float, int]] = []  # (sent at, expected total), oldest first
        self.status = "basket/%d/status" % n


def change_cart(b: Basket, codes: list[str], rng: random.Random) -> None:
    """One item event: add a product (mostly) or remove one; the cart always changes."""
    if b.items and (len(b.items) >= 20 or rng.random() < 0.35):
        code = rng.choice(sorted(b.items))
        if b.items[code] > 1:
            b.items[code] -= 1
        else:
            del b.items[code]
    else:
        code = rng.choice(codes)
        b.items[code] = b.items.get(code, 0) + 1


def worker(wid: int, numbers: list[int], args: argparse.Namespace, passwords: dict[str, str],
           out: Any, go: Any, t0: Any) -> None:
    raise_nofile()
    rng = random.Random(args.seed * 1000 + wid)
    products = catalog.load(Path(args.catalog))
    codes = sorted(products)
    baskets: list[Basket] = []
    failed = 0
    errors: dict[str, int] = {}
    started = time.monotonic()
    for n in numbers:
        c = MQTTClient("basket-%d" % n, args.host, args.port, "basket%d" % n,
                       passwords.get("basket%d" % n), keepalive=60, clean_session=False)
        c.set_last_will("basket/%d/availability" % n, b"offline", True, 1)
        try:
            c.connect()
            c.subscribe("basket/%d/status" % n, 1)
            c.publish("basket/%d/availability" % n, b"online", retain=True, qos=1)
        except (OSError, MQTTException) as e:
            failed += 1
            key = str(e)[:60] or type(e).__name__
            errors[key] = errors.get(key, 0) + 1
            c.close()
            continue
        baskets.append(Basket(n, c))
    by_fd = {b.client.sock.fileno(): b for b in baskets}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    # Subscribed = the QoS 1 `online` sent after SUBSCRIBE is acknowledged (the broker answers
    # in order, so the SUBACK came first, and a refusal would have raised).
    deadline = time.monotonic() + 30
    while any(b.client.inflight for b in baskets) and time.monotonic() < deadline:
        for fd, _ in poller.poll(100):
            b = by_fd[fd]
            try:
                b.client.service(True)
            except (OSError, MQTTException) as e:
                errors[str(e)[:60]] = errors.get(str(e)[:60], 0) + 1
    subscribed = sum(1 for b in baskets if not b.client.inflight and b.client.sock)
    out.put(("ready", wid, len(baskets), subscribed, failed, time.monotonic() - started, errors))
    go.wait()
    start = t0.value
    stop_at = start + args.duration
    sent = answered = unanswered = unmatched = 0
    lat: list[tuple[float, float]] = []  # (received at, latency s)
    sched: list[tuple[float, int]] = []
    if args.rate > 0:
        period = 1.0 / args.rate
        for i in range(len(baskets)):
            heapq.heappush(sched, (start + rng.random() * period, i))
    last_report = last_ping = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= stop_at + (args.drain if args.rate > 0 else 0):
            break
        while sched and sched[0][0] <= now and now < stop_at:
            due, i = heapq.heappop(sched)
            b = baskets[i]
            change_cart(b, codes, rng)
            total = catalog.price(b.items, products).total
            try:
                b.client.publish("basket/%d/update" % b.n, protocol.encode_update(b.n, b.items),
                                 retain=True, qos=1)
                b.fifo.append((time.monotonic(), total))
                if len(b.fifo) > FIFO_MAX:
                    b.fifo.pop(0)
                    unanswered += 1
                sent += 1
            except (OSError, MQTTException) as e:
                errors[str(e)[:60]] = errors.get(str(e)[:60], 0) + 1
            heapq.heappush(sched, (max(due + 1.0 / args.rate, now - 1.0), i))
        wait = 200.0
        if sched and now < stop_at:
            wait = max(0.0, (sched[0][0] - time.monotonic()) * 1000)
        for fd, _ in poller.poll(min(wait, REPORT_S * 1000)):
            b = by_fd[fd]
            try:
                msgs = b.client.service(True)
            except (OSError, MQTTException) as e:
                errors[str(e)[:60]] = errors.get(str(e)[:60], 0) + 1
                poller.unregister(fd)
                continue
            t = time.monotonic()
            for topic, payload in msgs:
                if topic != b.status or payload is None:
                    continue
                try:
                    price = json.loads(payload)["payload"]["totalprice"]
                except (ValueError, KeyError, TypeError):
                    continue
                for k, (ts, want) in enumerate(b.fifo):
                    if want == price:
                        unanswered += k
                        del b.fifo[:k + 1]
                        answered += 1
                        lat.append((t, t - ts))
                        break
                else:
                    unmatched += 1
            try:
                b.client.send_acks()  # handled: acknowledge them (as the basket's loop does)
            except OSError as e:
                errors[str(e)[:60]] = errors.get(str(e)[:60], 0) + 1
        now = time.monotonic()
        if now - last_ping >= 5:  # keepalive: PINGREQ when due, dead links noticed
            last_ping = now
            for b in baskets:
                try:
                    b.client.service(False)
                except (OSError, MQTTException):
                    pass
        if now - last_report >= REPORT_S:
            last_report = now
            out.put(("progress", wid, sent, answered, lat))
            lat = []
    unanswered += sum(len(b.fifo) for b in baskets)
    out.put(("progress", wid, sent, answered, lat))
    for b in baskets:
        try:
            b.client.disconnect()
        except OSError:
            pass
    out.put(("done", wid, sent, answered, unanswered, unmatched, errors))


def run(args: argparse.Namespace) -> dict[str, Any]:
    state = json.loads((Path(args.provisioned) / "provision.state.json").read_text())
    passwords = {k: v for k, v in state["passwords"].items()}
    numbers = list(range(args.first, args.first + args.baskets))
    missing = [n for n in numbers if "basket%d" % n not in passwords]
    if missing:
        raise SystemExit("simulate: baskets %d-%d are not provisioned in %s (re-run "
                         "tools/provision.py with --baskets)" % (missing[0], missing[-1],
                                                                 args.provisioned))
    nofile = raise_nofile()
    procs = max(1, min(args.processes, len(numbers)))
    if len(numbers) // procs + 50 > nofile:
        raise SystemExit("simulate: %d baskets per process, but the open-file limit is %d; use "
                         "more --processes" % (len(numbers) // procs, nofile))
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    go = ctx.Event()
    t0 = ctx.Value("d", 0.0)
    shards = [numbers[i::procs] for i in range(procs)]
    workers = [ctx.Process(target=worker, args=(i, s, args, passwords, out, go, t0), daemon=True)
               for i, s in enumerate(shards)]
    begun = time.monotonic()
    for w in workers:
        w.start()
    connected = subscribed = failed = 0
    errors: dict[str, int] = {}
    for _ in workers:
        msg = out.get()
        _, _, c, s, f, _, e = msg
        connected += c
        subscribed += s
        failed += f
        for k, v in e.items():
            errors[k] = errors.get(k, 0) + v
    connect_s = time.monotonic() - begun
    ready = {"baskets": len(numbers), "connected": connected, "subscribed": subscribed,
             "failed": failed, "connect_s": round(connect_s, 2)}
    print("READY connected=%d subscribed=%d failed=%d connect_s=%.2f" % (
        connected, subscribed, failed, connect_s), flush=True)
    t0.value = time.monotonic() + 0.2
    go.set()
    measure_from = t0.value + args.warmup
    measure_to = t0.value + args.duration
    sent = {i: 0 for i in range(procs)}
    answered = {i: 0 for i in range(procs)}
    lats: list[float] = []
    in_window = 0
    done = 0
    final: dict[str, int] = {"unanswered": 0, "unmatched": 0}
    tty = sys.stderr.isatty() and not args.quiet
    last_line = 0.0
    while done < procs:
        msg = out.get()
        if msg[0] == "progress":
            _, wid, s, a, lat = msg
            sent[wid], answered[wid] = s, a
            for t, d in lat:
                if measure_from <= t <= measure_to + args.drain:
                    lats.append(d)
                    if t <= measure_to:
                        in_window += 1
        elif msg[0] == "done":
            _, wid, s, a, un, um, e = msg
            done += 1
            final["unanswered"] += un
            final["unmatched"] += um
            for k, v in e.items():
                errors[k] = errors.get(k, 0) + v
        now = time.monotonic()
        if not args.quiet and now - last_line >= (1.0 if tty else 5.0):
            last_line = now
            el = max(0.001, now - t0.value)
            p = sorted(lats[-5000:])
            line = ("[%5.1f s] %d/%d baskets connected, sent %d (%.0f/s), totals %d (%.0f/s)%s"
                    % (el, connected, len(numbers), sum(sent.values()), sum(sent.values()) / el,
                       sum(answered.values()), sum(answered.values()) / el,
                       ", recent p50 %.1f ms p99 %.1f ms" % (p[len(p) // 2] * 1e3,
                                                             p[int(len(p) * 0.99)] * 1e3)
                       if p else ""))
            sys.stderr.write(("\r" + line + "   ") if tty else (line + "\n"))
            sys.stderr.flush()
    if tty:
        sys.stderr.write("\n")
    for w in workers:
        w.join(10)
    window = args.duration - args.warmup
    lats.sort()

    def q(p: float) -> float | None:
        if not lats:
            return None
        return round(lats[min(len(lats) - 1, int(p * len(lats)))] * 1e3, 3)

    summary: dict[str, Any] = dict(ready)
    summary.update({
        "rate_per_basket": args.rate, "offered_per_s": round(len(numbers) * args.rate, 1),
        "duration_s": args.duration, "warmup_s": args.warmup, "processes": procs,
        "sent": sum(sent.values()), "answered": sum(answered.values()),
        "totals_per_s": round(in_window / window, 1) if window > 0 and args.rate > 0 else 0.0,
        "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": round(lats[-1] * 1e3, 3) if lats else None,
        "latency_samples": len(lats), "unanswered": final["unanswered"],
        "unmatched": final["unmatched"], "errors": errors})
    return summary


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tools/simulate.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--provisioned", required=True, metavar="DIR",
                   help="folder written by tools/provision.py (passwords of the basket users)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--baskets", type=int, default=100, help="how many baskets (default 100)")
    p.add_argument("--first", type=int, default=1, help="first basket number (default 1)")
    p.add_argument("--rate", type=float, default=1.0,
                   help="item events (= updates) per second per basket; 0: connect and hold")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of traffic (or hold)")
    p.add_argument("--warmup", type=float, default=5.0,
                   help="seconds at the start left out of the figures")
    p.add_argument("--drain", type=float, default=3.0,
                   help="seconds to wait for outstanding totals after the last update")
    p.add_argument("--processes", type=int, default=max(1, min(4, os.cpu_count() or 1)),
                   help="simulator processes (default: cores, at most 4)")
    p.add_argument("--catalog", default=str(ROOT / "data" / "catalog_sample.csv"),
                   help="products to put in carts (the backend's catalogue)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.baskets < 1 or args.rate < 0 or args.duration <= 0 or args.warmup >= args.duration:
        parser().error("need --baskets >= 1, --rate >= 0, --duration > --warmup >= 0")
    summary = run(args)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if summary["connected"] == summary["baskets"] else 1


if __name__ == "__main__":
    sys.exit(main())
