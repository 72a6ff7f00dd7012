"""Soak run (`make soak`, not part of `make test`): many baskets against one real Mosquitto for
minutes, all of them behind the fault proxy, with a fault injected every 30 s.

Baskets: `--real` real controller subprocesses (alternately CPython and MicroPython, items
through a FIFO), the rest simulated in this process, each a real `Runtime` (Controller +
MQTTClient) stepped in its own thread. A paho "service" connects to the broker directly.

Each 30 s round: a fault at 0 s (rotating: reset, half-open, short outage, long outage,
byte-at-a-time); random item lines for every basket until 20 s; a total command to every basket
at 21 s; at 28 s every basket's newest cart must be what the service saw last (else: a lost
update) and every total must have been answered. Reports lost updates (must be 0), reconnects,
unanswered commands and the RSS of the controller processes at start and end (must be flat).
Exit status 1 when any of these fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from mqtt_controller import cart as cartmod
from mqtt_controller import config, protocol
from mqtt_controller.runtime import Runtime
from tests.support.broker import Broker
from tests.support.faultproxy import FaultProxy
from tests.support.peer import Peer
from tests.support.process import ControllerProc, rss_kb

ROUND_S = 30.0
ITEMS_UNTIL_S = 20.0
TOTALS_AT_S = 21.0
CHECK_AT_S = 28.0
KEEPALIVE = 4
CODES = ["MLON", "APPL", "KIWI", "PEAR", "MILK", "EGGS"]
FAULTS = ["reset", "half-open", "drop-3s", "drop-8s", "trickle-8s"]


def random_line(rnd: random.Random) -> str:
    code = rnd.choice(CODES)
    r = rnd.random()
    if r < 0.6:
        return code
    if r < 0.85:
        return "-" + code
    return "%s=%d" % (code, rnd.randint(0, 9))


class SimRuntime(Runtime):
    """The real runtime, counting its connects and losses."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.connects = 0
        self.losses = 0

    def _connect(self) -> bool:
        ok = bool(super()._connect())
        if ok:
            self.connects += 1
        return ok

    def _lost(self, e: BaseException) -> None:
        self.losses += 1
        super()._lost(e)


class SimBasket:
    def __init__(self, n: int, port: int, seed: int) -> None:
        self.n = n
        env = {"MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(port), "MQTT_USER": "basket%d" % n,
               "MQTT_PASSWORD": "basket%d-pw" % n, "MQTT_TOPIC": "basket/%d" % n,
               "MQTT_KEEPALIVE": str(KEEPALIVE), "CART_STATE_FILE": "", "LOG_LEVEL": "error"}
        self.rt = SimRuntime(config.load(env.get))
        self.rnd = random.Random(seed)
        self.items_on = False
        self.next_item = 0.0
        self.stop = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="basket-%d" % n, daemon=True)

    def _loop(self) -> None:
        try:
            while not self.stop:
                now = time.monotonic()
                if self.items_on and now >= self.next_item:
                    self.rt.item(random_line(self.rnd))
                    self.next_item = now + self.rnd.uniform(2.0, 8.0)
                self.rt.step(200)
            self.rt.shutdown()
        except BaseException as e:  # reported: a simulated basket must never die
            self.error = e

    def expected(self) -> bytes:
        return protocol.encode_update(self.n, dict(self.rt.controller.cart.items))

    def total(self) -> int | None:
        return self.rt.controller.total

    def reconnects(self) -> int:
        return max(0, self.rt.connects - 1)


class RealBasket:
    def __init__(self, n: int, interp: str, port: int, workdir: Path, seed: int,
                 mp_heap: str) -> None:
        self.n = n
        # MicroPython gets a board-sized heap: a leak would end in MemoryError, not in RSS.
        args = ["-X", "heapsize=" + mp_heap] if interp == "micropython" and mp_heap else []
        self.proc = ControllerProc(interp, port, basket=n, workdir=workdir, interp_args=args,
                                   keepalive=KEEPALIVE, DISPLAY="none",
                                   LOG_LEVEL="info").start(wait_connected=False)
        self.cart = cartmod.Cart()  # the model of what the controller holds
        self.rnd = random.Random(seed)
        self.next_item = 0.0

    def maybe_item(self, now: float) -> None:
        if now >= self.next_item:
            line = random_line(self.rnd)
            parsed = cartmod.parse_item_line(line)
            if parsed:
                self.cart.apply(*parsed)
            self.proc.items(line)
            self.next_item = now + self.rnd.uniform(2.0, 8.0)

    def expected(self) -> bytes:
        return protocol.encode_update(self.n, self.cart.items)

    def answered_total(self, total: int) -> bool:
        return bool(self.proc.find(r"TOTAL %s KRW" % _thousands(total)))

    def reconnects(self) -> int:
        return max(0, self.proc.count("connected to") - 1)


def _thousands(n: int) -> str:
    return "{:,}".format(n)


class Service:
    """The backend's view: the newest update per basket, straight from the broker."""

    def __init__(self, port: int) -> None:
        self.peer = Peer(port)
        self.latest: dict[int, bytes] = {}
        self.count = 0
        self.lock = threading.Lock()
        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            if msg.topic.endswith("/update"):
                n = int(msg.topic.split("/")[1])
                with self.lock:
                    self.latest[n] = bytes(msg.payload)
                    self.count += 1

        self.peer.client.on_message = on_message
        self.peer.subscribe("basket/+/update")

    def command(self, n: int, payload: bytes | str) -> None:
        self.peer.client.publish("basket/%d/status" % n, payload, qos=1)

    def get(self, n: int) -> bytes | None:
        with self.lock:
            return self.latest.get(n)


def inject(proxy: FaultProxy, fault: str) -> None:
    if fault == "reset":
        proxy.reset()
    elif fault == "half-open":
        proxy.blackhole()  # the links open now go dead without closing; new links work
    elif fault == "drop-3s":
        threading.Thread(target=proxy.drop_for, args=(3.0,), daemon=True).start()
    elif fault == "drop-8s":
        threading.Thread(target=proxy.drop_for, args=(8.0,), daemon=True).start()
    elif fault == "trickle-8s":
        proxy.trickle(0.002)
        threading.Timer(8.0, proxy.pass_through).start()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--baskets", type=int, default=100)
    ap.add_argument("--real", type=int, default=10, help="real controller subprocesses")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mp-heap", default="256K",
                    help="MicroPython heap size (-X heapsize), '' for the default")
    ap.add_argument("--out", default=".run/soak/result.json")
    args = ap.parse_args()
    real_n = min(args.real, args.baskets)
    rounds = max(1, int(args.minutes * 60 // ROUND_S))
    users = {"basket%d" % n: "basket%d-pw" % n for n in range(1, args.baskets + 1)}
    users["service"] = "service-pw"
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    broker = Broker.with_acl(users=users, persistence=True).start()
    proxy = FaultProxy(broker.port)
    service = Service(broker.port)
    print("soak: %d baskets (%d real controller processes: %d CPython, %d MicroPython; %d "
          "simulated in-process Runtime+MQTTClient), %d rounds of %d s, keepalive %d s, "
          "MicroPython heap %s" % (args.baskets, real_n, (real_n + 1) // 2, real_n // 2,
                       args.baskets - real_n, rounds, ROUND_S, KEEPALIVE,
                       args.mp_heap or "default"), flush=True)

    reals = [RealBasket(n, "cpython" if n % 2 else "micropython", proxy.port, work,
                        args.seed * 1000 + n, args.mp_heap) for n in range(1, real_n + 1)]
    sims = [SimBasket(n, proxy.port, args.seed * 1000 + n)
            for n in range(real_n + 1, args.baskets + 1)]
    everyone: list[RealBasket | SimBasket] = [*reals, *sims]
    for s in sims:
        s.thread.start()
    for r in reals:
        r.proc.wait_line("connected to", timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not all(s.rt.connected for s in sims):
        time.sleep(0.1)
    time.sleep(1.0)  # subscriptions in place ("online" follows the SUBSCRIBE)
    for n in range(1, args.baskets + 1):
        service.command(n, "start")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if all(r.proc.find("session started") for r in reals) and all(
                s.rt.controller.state == "shopping" for s in sims):
            break
        time.sleep(0.2)
    time.sleep(2.0)
    rss_start = {r.n: r.proc.rss_kb() for r in reals}
    self_rss_start = rss_kb(os.getpid())

    lost: list[dict[str, Any]] = []
    unanswered: list[dict[str, Any]] = []
    faults: list[str] = []
    t_begin = time.monotonic()
    connects_before = sum(b.reconnects() for b in everyone)
    for rnd in range(rounds):
        t0 = t_begin + rnd * ROUND_S
        fault = FAULTS[rnd % len(FAULTS)]
        faults.append(fault)
        proxy.pass_through()  # lets go of the links the last half-open fault left dead
        inject(proxy, fault)
        for s in sims:
            s.items_on = True
        while time.monotonic() < t0 + ITEMS_UNTIL_S:
            now = time.monotonic()
            for r in reals:
                r.maybe_item(now)
            time.sleep(0.1)
        for s in sims:
            s.items_on = False
        time.sleep(max(0.0, t0 + TOTALS_AT_S - time.monotonic()))
        total = 1000 * (rnd + 1)
        for n in range(1, args.baskets + 1):
            service.command(n, json.dumps({"msg": "total", "payload": {
                "basketid": n, "totalprice": total}}, separators=(",", ":")))
        time.sleep(max(0.0, t0 + CHECK_AT_S - time.monotonic()))
        bad = 0
        for b in everyone:
            want = b.expected()
            got = service.get(b.n)
            if got != want:
                bad += 1
                lost.append({"round": rnd + 1, "fault": fault, "basket": b.n,
                             "want": want.decode(), "got": got.decode() if got else None})
            ok = b.answered_total(total) if isinstance(b, RealBasket) else b.total() == total
            if not ok:
                unanswered.append({"round": rnd + 1, "fault": fault, "basket": b.n})
        connects_now = sum(b.reconnects() for b in everyone)
        print("round %2d/%d  fault %-10s  lost %d  unanswered %d  reconnects %3d  updates seen %d"
              % (rnd + 1, rounds, fault, bad, sum(1 for u in unanswered if u["round"] == rnd + 1),
                 connects_now - connects_before, service.count), flush=True)
        connects_before = connects_now
        time.sleep(max(0.0, t0 + ROUND_S - time.monotonic()))

    rss_end = {r.n: r.proc.rss_kb() for r in reals}
    self_rss_end = rss_kb(os.getpid())
    # The retained update of every basket, as a backend starting now would see it.
    fresh = Service(broker.port)
    time.sleep(2.0)
    retained_bad = [b.n for b in everyone if fresh.get(b.n) != b.expected()]
    fresh.peer.close()

    dead = [r.n for r in reals if not r.proc.alive()]
    sim_errors = [(s.n, repr(s.error)) for s in sims if s.error is not None]
    for s in sims:
        s.stop = True
    for s in sims:
        s.thread.join(5)
    tracebacks = []
    for r in reals:
        r.proc.stop()
        if "Traceback" in r.proc.output():
            tracebacks.append(r.n)
    service.peer.close()
    proxy.close()
    broker.close()

    reconnects_real = {r.n: r.reconnects() for r in reals}
    reconnects_sim = sum(s.reconnects() for s in sims)
    growth = {n: rss_end[n] - rss_start[n] for n in rss_start}
    flat = all(g <= max(1024, rss_start[n] // 10) for n, g in growth.items())
    result = {
        "baskets": args.baskets, "real": real_n, "simulated": len(sims), "rounds": rounds,
        "minutes": args.minutes, "faults": faults, "lost_updates": len(lost), "lost": lost[:50],
        "retained_wrong": retained_bad, "unanswered_commands": len(unanswered),
        "unanswered": unanswered[:50], "reconnects_real": reconnects_real,
        "reconnects_simulated": reconnects_sim, "updates_seen": service.count,
        "rss_kb_start": rss_start, "rss_kb_end": rss_end, "rss_kb_growth": growth,
        "soak_process_rss_kb": [self_rss_start, self_rss_end], "dead": dead,
        "tracebacks": tracebacks, "sim_errors": sim_errors,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print("\nlost updates: %d (retained wrong: %d)   unanswered commands: %d"
          % (len(lost), len(retained_bad), len(unanswered)))
    print("reconnects: real %s; simulated %d in all (%d baskets)"
          % (" ".join("%d:%d" % kv for kv in sorted(reconnects_real.items())), reconnects_sim,
             len(sims)))
    print("controller RSS KiB start -> end: %s" % "  ".join(
        "%d(%s):%d->%d" % (r.n, "mp" if r.proc.interp == "micropython" else "py",
                           rss_start[r.n], rss_end[r.n]) for r in reals))
    print("soak process RSS KiB: %d -> %d; updates seen by the service: %d"
          % (self_rss_start, self_rss_end, service.count))
    print("dead controllers: %s; tracebacks: %s; simulated basket errors: %s"
          % (dead or "none", tracebacks or "none", sim_errors or "none"))
    print("result: %s" % out)
    ok = not lost and not retained_bad and not unanswered and not dead and not tracebacks \
        and not sim_errors and flat
    print("SOAK %s" % ("PASSED" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
