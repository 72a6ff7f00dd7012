"""A basket played by a paho peer: publishes contract updates (retained, QoS 1) and
availability, and collects what arrives on basket/<n>/status. The one place to swap in the
real controller (python -m mqtt_controller) once it is merged."""

from __future__ import annotations

import hashlib
import json

from tests.support.peer import Peer


def encode_update(basket: int, cart: dict[str, int]) -> bytes:
    """The contract's compact form: no spaces, codes sorted."""
    return json.dumps({"id": basket, "list": dict(sorted(cart.items()))},
                      separators=(",", ":")).encode()


def digest(cart: dict[str, int]) -> str:
    """The `cart` field of the service's total for this cart (the contract's cart digest)."""
    canonical = json.dumps(dict(sorted(cart.items())), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def total_message(basket: int, total: int, cart: dict[str, int] | None = None,
                  unknown: int = 0) -> bytes:
    """The service's total; with `cart`, naming that cart (without: the original backend's);
    `unknown`: how many of its codes the catalogue does not know (sent only when some)."""
    body: dict[str, object] = {"basketid": basket, "totalprice": total}
    if cart is not None:
        body["cart"] = digest(cart)
    if unknown:
        body["unknown"] = unknown
    return json.dumps({"msg": "total", "payload": body}, separators=(",", ":")).encode()


def health_doc(basket: int, **changes: object) -> dict[str, object]:
    """A health report as a basket sends it (docs/fleet.md), with `changes` applied."""
    doc: dict[str, object] = {
        "battery_mv": None, "boot": "start", "config_error": None, "config_rev": 0,
        "counters": {"commands": 3, "items": 5, "reconnects": 1, "rejected_commands": 0,
                     "rejected_items": 0},
        "display": "ok", "id": basket, "interval_s": 60, "mem_free": None,
        "readers": [{"last_read_s": 12, "name": "/dev/ttyUSB0", "state": "ok"}],
        "rssi": None, "runtime": "cpython 3.11.7", "uptime_s": 3600, "version": "0.1.0"}
    doc.update(changes)
    return doc


def encode_health(doc: dict[str, object]) -> bytes:
    """Compact, keys sorted (as the basket sends it)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


class FakeBasket:
    def __init__(self, port: int, n: int, user: str | None = None,
                 password: str | None = None) -> None:
        self.n = n
        self.base = "basket/%d" % n
        self.peer = Peer(port, user or "basket%d" % n, password or "basket%d-pw" % n)
        self.peer.subscribe(self.base + "/status")

    @property
    def status_topic(self) -> str:
        return self.base + "/status"

    def online(self) -> None:
        self.peer.publish(self.base + "/availability", b"online", retain=True)

    def offline(self) -> None:
        self.peer.publish(self.base + "/availability", b"offline", retain=True)

    def send(self, cart: dict[str, int]) -> bytes:
        payload = encode_update(self.n, cart)
        self.peer.publish(self.base + "/update", payload, retain=True)
        return payload

    def health(self, **changes: object) -> bytes:
        """Publishes a health report (retained, QoS 1): health_doc(n, **changes)."""
        payload = encode_health(health_doc(self.n, **changes))
        self.peer.publish(self.base + "/health", payload, retain=True)
        return payload

    def send_raw(self, payload: bytes, topic: str | None = None) -> None:
        self.peer.publish(topic or self.base + "/update", payload, retain=False)

    def statuses(self) -> list[bytes]:
        return self.peer.payloads(self.status_topic)

    def totals(self) -> list[int]:
        out = []
        for p in self.statuses():
            if p.startswith(b"{"):
                doc = json.loads(p)
                assert doc["payload"]["basketid"] == self.n, doc
                out.append(doc["payload"]["totalprice"])
        return out

    def mark(self) -> int:
        return self.peer.mark()

    def wait_status(self, payload: bytes, timeout: float = 10.0, start: int = 0) -> int:
        return self.peer.wait_payload(self.status_topic, payload, timeout, start)

    def wait_total(self, total: int, timeout: float = 10.0, start: int = 0,
                   cart: dict[str, int] | None = None) -> int:
        """Waits for a total of `total` (naming `cart`, when given) at or after `start`."""
        want = None if cart is None else digest(cart)

        def find() -> int | None:
            for i in range(start, len(self.peer.messages)):
                t, p, _ = self.peer.messages[i]
                if t == self.status_topic and p.startswith(b"{"):
                    body = json.loads(p)["payload"]
                    if body["totalprice"] == total and (want is None or body["cart"] == want):
                        return i + 1
            return None
        return int(self.peer.wait_for(find, timeout, "total %d on %s" % (total,
                                                                      self.status_topic)))

    def close(self) -> None:
        self.peer.close()
