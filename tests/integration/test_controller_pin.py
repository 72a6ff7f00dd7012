"""The shopper's self-service flow on the basket: the pairing PIN (or a lock) and a checkout's
thank-you on the idle display, and "ask staff" for cart lines the catalogue does not know. The
controller under both interpreters, a real Mosquitto, paho as the service."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from tests.support.peer import Peer
from tests.support.process import ControllerProc

UPD = "basket/1/update"
STATUS = "basket/1/status"


def pin(body: str, basket: int = 1) -> bytes:
    return ('{"msg":"pin","payload":{"basketid":%d,%s}}' % (basket, body)).encode()


def total(price: int, list_json: bytes, unknown: int) -> bytes:
    cart = hashlib.sha256(list_json).hexdigest()[:32]
    return ('{"msg":"total","payload":{"basketid":1,"totalprice":%d,"cart":"%s","unknown":%d}}'
            % (price, cart, unknown)).encode()


def display_lines(c: ControllerProc, start: int = 0) -> list[str]:
    return [ln for ln in c.output(start).splitlines() if ln.startswith("[display]")]


def test_the_idle_display_shows_the_pin_until_a_session_starts(
        controller: Callable[..., ControllerProc], backend: Peer) -> None:
    c = controller().start()
    c.wait_log("[display] basket 1 | ready")
    backend.wait_payload(UPD, b'{"id":1,"list":{}}')
    state = c.state_file.read_bytes() if c.state_file.exists() else None
    updates = len(backend.payloads(UPD))

    mark = c.mark()
    backend.publish(STATUS, pin('"pin":"482913"'))
    c.wait_log("[display] basket 1 | ready | PIN 482913", start=mark)
    backend.publish(STATUS, pin('"pin":"482913","thanks":true'))
    c.wait_log("[display] basket 1 | thank you | PIN 482913", start=mark)
    again = c.mark()
    backend.publish(STATUS, pin('"pin":"482913"'))  # the same PIN without thanks: ready again
    c.wait_log("[display] basket 1 | ready | PIN 482913", start=again)
    assert display_lines(c, mark) == ["[display] basket 1 | ready | PIN 482913",
                                      "[display] basket 1 | thank you | PIN 482913",
                                      "[display] basket 1 | ready | PIN 482913"], c.output(mark)

    # Bad pin commands: rejected with the running count, the display as it was.
    mark = c.mark()
    bad = [pin('"pin":"482913"', basket=2), pin('"pin":"12"'), pin('"pin":"1234567890"'),
           pin('"pin":"1234","locked_until":"08:05"'), pin('"pin":"1234","thanks":"yes"'),
           pin('"locked_until":""')]
    for p in bad:
        backend.publish(STATUS, p)
    c.wait_log("status rejected (#%d)" % len(bad), start=mark)
    time.sleep(0.3)
    assert display_lines(c, mark) == [], c.output(mark)

    mark = c.mark()
    backend.publish(STATUS, pin('"locked_until":"08:05","thanks":true'))
    c.wait_log("[display] basket 1 | thank you | locked until 08:05", start=mark)
    backend.publish(STATUS, pin('"locked_until":"08:05"'))
    c.wait_log("[display] basket 1 | ready | locked until 08:05", start=mark)
    backend.publish(STATUS, pin('"pin":"482913"'))
    c.wait_log("[display] basket 1 | ready | PIN 482913", start=mark)
    # Nothing published, nothing persisted.
    assert len(backend.payloads(UPD)) == updates, backend.payloads(UPD)[updates:]
    assert (c.state_file.read_bytes() if c.state_file.exists() else None) == state

    mark = c.mark()
    backend.publish(STATUS, b"start")  # the PIN is used up by pairing
    c.wait_log("[display] basket 1 | 0 items", start=mark)
    backend.publish(STATUS, pin('"pin":"111111"'))  # while shopping: ignored, not rejected
    c.wait_log("pin while shopping: ignored", start=mark)
    backend.publish(STATUS, b"end")
    c.wait_log("[display] basket 1 | ready", start=mark)
    assert display_lines(c, mark) == ["[display] basket 1 | 0 items",
                                      "[display] basket 1 | ready"], c.output(mark)
    assert "status rejected" not in c.output(mark)
    c.assert_no_traceback()


def test_unknown_lines_ask_staff(controller: Callable[..., ControllerProc],
                                 backend: Peer) -> None:
    c = controller().start()
    backend.publish(STATUS, b"start")
    c.wait_log("session started")
    c.items("APPL")
    at = backend.wait_payload(UPD, b'{"id":1,"list":{"APPL":1}}')
    mark = c.mark()
    backend.publish(STATUS, total(5000, b'{"APPL":1}', 1))
    c.wait_log("[display] basket 1 | 1 item | ask staff | TOTAL 5,000 KRW", start=mark)

    mark = c.mark()
    c.items("MLON")  # a cart change hides it with the total
    backend.wait_payload(UPD, b'{"id":1,"list":{"APPL":1,"MLON":1}}', start=at)
    c.wait_log("[display] basket 1 | 2 items", start=mark)
    backend.publish(STATUS, total(7400, b'{"APPL":1,"MLON":1}', 0))
    c.wait_log("[display] basket 1 | 2 items | TOTAL 7,400 KRW", start=mark)
    backend.publish(STATUS, b'{"msg":"total","payload":{"basketid":1,"totalprice":7400,'
                            b'"unknown":-1}}')
    c.wait_log("status rejected (#1)", start=mark)
    assert display_lines(c, mark) == ["[display] basket 1 | 2 items",
                                      "[display] basket 1 | 2 items | TOTAL 7,400 KRW"], \
        c.output(mark)
    c.assert_no_traceback()
