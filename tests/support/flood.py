"""Baskets played by paho for the flood test and bench/bench_flood.py: one basket publishing as
fast as asked (distinct carts), others at a steady pace, each recording when its update went
out and when the service's total naming that cart (its `cart` digest) came back."""

from __future__ import annotations

import hashlib
import json
import select
import socket
import struct
import threading
import time

import paho.mqtt.client as mqtt


def cart_digest(cart: dict[str, int]) -> str:
    canonical = json.dumps(dict(sorted(cart.items())), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def flood_cart(i: int) -> dict[str, int]:
    """The i-th of 998,001 distinct carts."""
    return {"MLON": i % 999 + 1, "APPL": i // 999 % 999 + 1}


class Records:
    """What a test basket saw: its updates sent and the totals that came back, by cart digest."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.lock = threading.Lock()
        self.sent: dict[str, float] = {}  # digest -> when its update was published
        self.answered: dict[str, float] = {}  # digest -> when the first total naming it came
        self.totals: list[tuple[float, str, int]] = []  # (when, digest, total)
        self.last = ""  # digest of the newest update published

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


class Basket(Records):
    """Basket `n` with its own login and bound client id (`basket-<n>`)."""

    def __init__(self, port: int, n: int, password: str, user: str | None = None) -> None:
        super().__init__(n)
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
    """One update every `every` seconds for `seconds` (distinct carts); returns how many. Like
    a basket's own rate limit, never two within every/2 (a stalled sender skips, it does not
    catch up in a burst)."""
    t0 = time.monotonic()
    k = 0
    due = t0
    while time.monotonic() - t0 < seconds:
        b.publish({"TMAT": first + k % 999, "SHIN": k // 999 + 1})
        k += 1
        now = time.monotonic()
        due = max(due + every, now + every / 2)
        time.sleep(due - now)
    return k


# --- a cheap flooder: MQTT 3.1.1 over a plain socket --------------------------------------------
# paho spends ~100 us of Python per QoS 1 publish; at 5,000/s the load generator would take a
# whole core from the service it measures. This one builds the packets in bulk.


def _s(text: str | bytes) -> bytes:
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    n, out = len(body), bytearray([first])
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


class RawBasket(Records):
    """Basket `n` (client id `basket-<n>`) speaking MQTT itself: publish_many() writes many
    QoS 1 retained updates in one send; pump() reads PUBACKs and the totals on its status topic
    (acknowledging them). Same records as Basket."""

    def __init__(self, port: int, n: int, password: str, user: str | None = None) -> None:
        super().__init__(n)
        self.topic = _s("basket/%d/update" % n)
        self.mid = 0
        self.buf = b""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = (_s("MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 60) + _s("basket-%d" % n)
                + _s(user or "basket%d" % n) + _s(password))
        self.sock.sendall(_packet(0x10, body))
        self._read_until(0x20)
        self.sock.sendall(_packet(0x82, struct.pack("!H", 1) + _s("basket/%d/status" % n)
                                  + b"\x01"))
        self._read_until(0x90)

    def _read_until(self, kind: int) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for first, _ in self._packets(self.sock.recv(65536)):
                if first & 0xF0 == kind:
                    return
        raise TimeoutError("no packet 0x%x from the broker" % kind)

    def _packets(self, data: bytes) -> list[tuple[int, bytes]]:
        if not data:
            raise ConnectionError("the broker closed the connection")
        self.buf += data
        out: list[tuple[int, bytes]] = []
        while len(self.buf) >= 2:
            n, mult, i = 0, 1, 1
            while True:
                if i >= len(self.buf):
                    return out
                byte = self.buf[i]
                n += (byte & 0x7F) * mult
                mult *= 128
                i += 1
                if not byte & 0x80:
                    break
            if len(self.buf) < i + n:
                return out
            out.append((self.buf[0], self.buf[i:i + n]))
            self.buf = self.buf[i + n:]
        return out

    def pump(self) -> None:
        """Handles what the broker has sent so far (does not wait)."""
        acks = b""
        while select.select([self.sock], [], [], 0)[0]:
            for first, body in self._packets(self.sock.recv(65536)):
                if first & 0xF0 != 0x30:
                    continue  # PUBACK, PINGRESP
                tlen = struct.unpack("!H", body[:2])[0]
                pos = 2 + tlen
                if first & 0x06:
                    acks += _packet(0x40, body[pos:pos + 2])
                    pos += 2
                payload = body[pos:]
                if payload.startswith(b"{"):
                    doc = json.loads(payload)["payload"]
                    at = time.monotonic()
                    with self.lock:
                        self.totals.append((at, doc.get("cart", ""), doc["totalprice"]))
                        self.answered.setdefault(doc.get("cart", ""), at)
        if acks:
            self.sock.sendall(acks)

    def publish_many(self, carts: list[dict[str, int]]) -> None:
        out = []
        now = time.monotonic()
        for cart in carts:
            self.mid = self.mid % 65535 + 1
            payload = json.dumps({"id": self.n, "list": dict(sorted(cart.items()))},
                                 separators=(",", ":")).encode()
            out.append(_packet(0x33, self.topic + struct.pack("!H", self.mid) + payload))
            d = cart_digest(cart)
            self.sent.setdefault(d, now)
            self.last = d
        self.sock.sendall(b"".join(out))

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        except OSError:
            pass
        self.sock.close()


def flood_raw(b: RawBasket, rate: float, seconds: float) -> int:
    """Like flood(), through a RawBasket; then waits (up to 15 s) for its last cart's total."""
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < seconds:
        due = int((time.monotonic() - t0) * rate) + 1
        if due > i:
            b.publish_many([flood_cart(k) for k in range(i, due)])
            i = due
        b.pump()
        time.sleep(0.001)
    return i


def drain(b: RawBasket, timeout: float = 15.0) -> None:
    """Keeps reading until the last cart's total came (or `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not b.answered_last():
        b.pump()
        time.sleep(0.01)
