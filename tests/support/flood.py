"""Baskets played by paho for the flood test and bench/bench_flood.py: one basket publishing as
fast as asked (distinct carts), others at a steady pace, each recording when its update went
out and when the service's total naming that cart (its `cart` digest) came back."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import paho.mqtt.client as mqtt


def cart_digest(cart: dict[str, int]) -> str:
    canonical = json.dumps(dict(sorted(cart.items())), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def flood_cart(i: int) -> dict[str, int]:
    """The i-th of 998,001 distinct carts."""
    return {"MLON": i % 999 + 1, "APPL": i // 999 % 999 + 1}


class Basket:
    """Basket `n` with its own login and bound client id (`basket-<n>`)."""

    def __init__(self, port: int, n: int, password: str, user: str | None = None) -> None:
        self.n = n
        self.lock = threading.Lock()
        self.sent: dict[str, float] = {}  # digest -> when its update was published
        self.answered: dict[str, float] = {}  # digest -> when the first total naming it came
        self.totals: list[tuple[float, str, int]] = []  # (when, digest, total)
        self.last = ""  # digest of the newest update published
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="basket-%d" % n)
        self.c.username_pw_set(user or "basket%d" % n, password)
        self.c.max_inflight_messages_set(1000)
        self.c.on_message = self._on_message
        ready = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: ready.set()
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        if not ready.wait(10):
            raise TimeoutError("basket %d did not connect" % n)
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.subscribe("basket/%d/status" % n, 1)
        if not subscribed.wait(10):
            raise TimeoutError("no SUBACK for basket %d" % n)

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        at = time.monotonic()
        if not msg.payload.startswith(b"{"):
            return
        body = json.loads(msg.payload)["payload"]
        with self.lock:
            self.totals.append((at, body.get("cart", ""), body["totalprice"]))
            self.answered.setdefault(body.get("cart", ""), at)

    def publish(self, cart: dict[str, int]) -> str:
        d = cart_digest(cart)
        payload = json.dumps({"id": self.n, "list": dict(sorted(cart.items()))},
                             separators=(",", ":"))
        with self.lock:
            self.sent.setdefault(d, time.monotonic())
            self.last = d
        self.c.publish("basket/%d/update" % self.n, payload, qos=1, retain=True)
        return d

    def latencies_ms(self) -> list[float]:
        with self.lock:
            return [(self.answered[d] - t) * 1000 for d, t in self.sent.items()
                    if d in self.answered]

    def unanswered(self) -> int:
        with self.lock:
            return sum(1 for d in self.sent if d not in self.answered)

    def answered_last(self) -> bool:
        with self.lock:
            return self.last in self.answered

    def last_total(self) -> tuple[str, int] | None:
        with self.lock:
            return self.totals[-1][1:] if self.totals else None

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def flood(b: Basket, rate: float, seconds: float, stop: threading.Event | None = None) -> int:
    """Publishes distinct carts at `rate` per second for `seconds`; returns how many."""
    t0 = time.monotonic()
    i = 0
    while True:
        now = time.monotonic() - t0
        if now >= seconds or (stop is not None and stop.is_set()):
            return i
        due = int(now * rate) + 1
        while i < due:
            b.publish(flood_cart(i))
            i += 1
        time.sleep(0.001)


def steady(b: Basket, every: float, seconds: float, first: int = 1) -> int:
    """One update every `every` seconds for `seconds` (distinct carts); returns how many."""
    t0 = time.monotonic()
    k = 0
    while time.monotonic() - t0 < seconds:
        b.publish({"TMAT": first + k % 999, "SHIN": k // 999 + 1})
        k += 1
        time.sleep(max(0.0, t0 + k * every - time.monotonic()))
    return k
