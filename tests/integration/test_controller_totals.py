"""Totals name the cart they priced, the basket paces its updates and re-publishes one nobody
answered: the controller under both interpreters, a real Mosquitto, paho as the service."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from tests.support.peer import Peer
from tests.support.process import ControllerProc

UPD = "basket/1/update"
STATUS = "basket/1/status"


def digest(list_json: bytes) -> str:
    """The contract's cart digest: SHA-256 over the update's `list` JSON, 32 hex characters."""
    return hashlib.sha256(list_json).hexdigest()[:32]


def total(price: int, cart: str | None = None) -> bytes:
    extra = ',"cart":"%s"' % cart if cart is not None else ""
    return ('{"msg":"total","payload":{"basketid":1,"totalprice":%d%s}}'
            % (price, extra)).encode()


def display_lines(c: ControllerProc, start: int = 0) -> list[str]:
    return [ln for ln in c.output(start).splitlines() if ln.startswith("[display]")]


def test_only_a_total_for_the_cart_held_now_is_shown(controller: Callable[..., ControllerProc],
                                                     backend: Peer) -> None:
    c = controller().start()
    c.wait_log("[display] basket 1 | ready")
    backend.wait_payload(UPD, b'{"id":1,"list":{}}')
    mark = c.mark()
    backend.publish(STATUS, total(0))  # while idle: never shown, not even TOTAL 0 KRW
    c.wait_log("while idle: not shown", start=mark)
    assert not any("TOTAL" in ln for ln in display_lines(c)), c.output()

    backend.publish(STATUS, b"start")
    c.wait_log("session started")
    c.items("APPL")
    at = backend.wait_payload(UPD, b'{"id":1,"list":{"APPL":1}}')
    mark = c.mark()
    backend.publish(STATUS, total(900, digest(b"{}")))  # priced an older cart: stale
    c.wait_log("stale total", start=mark)
    backend.publish(STATUS, total(500, digest(b'{"APPL":1}')))
    c.wait_log("[display] basket 1 | 1 item | TOTAL 500 KRW", start=mark)
    assert not any("900" in ln for ln in display_lines(c, mark)), c.output(mark)
    assert "rejected" not in c.output(mark)  # stale is not a rejected command

    mark = c.mark()
    c.items("MLON")  # a cart change hides the total until one for the new cart comes
    backend.wait_payload(UPD, b'{"id":1,"list":{"APPL":1,"MLON":1}}', start=at)
    c.wait_log("[display] basket 1 | 2 items", start=mark)
    assert display_lines(c, mark) == ["[display] basket 1 | 2 items"], c.output(mark)
    backend.publish(STATUS, total(2400))  # no `cart` (the original backend): shown
    c.wait_log("[display] basket 1 | 2 items | TOTAL 2,400 KRW", start=mark)

    mark = c.mark()
    backend.publish(STATUS, b"end")
    c.wait_log("[display] basket 1 | ready", start=mark)
    backend.publish(STATUS, total(2400))
    c.wait_log("while idle: not shown", start=mark)
    assert display_lines(c, mark) == ["[display] basket 1 | ready"], c.output(mark)


def test_item_updates_are_paced_and_the_newest_cart_wins(controller: Callable[..., ControllerProc],
                                                          backend: Peer) -> None:
    c = controller().start()
    backend.publish(STATUS, b"start")
    c.wait_log("session started")
    at = backend.wait_payload(UPD, b'{"id":1,"list":{}}')
    time.sleep(0.3)
    at = backend.mark()
    t0 = time.monotonic()
    for _ in range(40):  # 40 items over about 1.2 s
        c.items("MLON")
        time.sleep(0.03)
    backend.wait_payload(UPD, b'{"id":1,"list":{"MLON":40}}', start=at)
    took = time.monotonic() - t0
    sent = [p for p in backend.payloads(UPD)[at:]]
    # At most 5 a second (plus the first at once and the one after the burst), never an
    # update per item; the last one is the whole cart.
    assert len(sent) <= took * 5 + 2, (len(sent), took, sent)
    assert sent[-1] == b'{"id":1,"list":{"MLON":40}}'
    mark = backend.mark()
    backend.publish(STATUS, b"end")  # a command goes at once (timed in tests/unit/test_runtime.py)
    backend.wait_payload(UPD, b'{"id":1,"list":{}}', start=mark)


def test_a_dropped_update_converges_without_a_new_item(controller: Callable[..., ControllerProc],
                                                       backend: Peer) -> None:
    c = controller().start()
    backend.publish(STATUS, b"start")
    c.wait_log("session started")
    backend.wait_payload(UPD, b'{"id":1,"list":{}}')
    backend.publish(STATUS, total(0, digest(b"{}")))
    mark = c.mark()
    at = backend.mark()
    c.items("APPL", "MLON", "MLON")
    cart = b'{"id":1,"list":{"APPL":1,"MLON":2}}'
    # The service "drops" the first update: no total.
    first = backend.wait_payload(UPD, cart, start=at)
    t = time.monotonic()
    # The basket publishes the same update again (retained, QoS 1) a few seconds later ...
    backend.wait_payload(UPD, cart, start=first, timeout=8)
    waited = time.monotonic() - t
    assert 2.0 <= waited <= 5.0, waited
    c.wait_log("re-published", start=mark)
    # ... and the service answers that one.
    backend.publish(STATUS, total(4780, digest(b'{"APPL":1,"MLON":2}')))
    c.wait_log("[display] basket 1 | 3 items | TOTAL 4,780 KRW", start=mark)
    # Confirmed: no more re-publishing.
    n = len(backend.payloads(UPD))
    time.sleep(3.5)
    assert len(backend.payloads(UPD)) == n, backend.payloads(UPD)[n:]
