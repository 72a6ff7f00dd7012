"""A whole shopping session against a real Mosquitto, the controller under both interpreters."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable

from tests.support.broker import Broker
from tests.support.peer import Peer
from tests.support.process import ControllerProc

UPD = "basket/1/update"
STATUS = "basket/1/status"
AVAIL = "basket/1/availability"


def total(n: int, basket: int = 1, camel: bool = False) -> bytes:
    keys = ("basketId", "totalPrice") if camel else ("basketid", "totalprice")
    return json.dumps({"msg": "total", "payload": {keys[0]: basket, keys[1]: n}},
                      separators=(",", ":")).encode()


def test_start_items_total_end(controller: Callable[..., ControllerProc], backend: Peer) -> None:
    c = controller().start()
    backend.wait_payload(AVAIL, b"online")
    at = backend.wait_payload(UPD, b'{"id":1,"list":{}}')
    backend.publish(STATUS, b"start")
    at = backend.wait_payload(UPD, b'{"id":1,"list":{}}', start=at)
    c.wait_log("session started")
    c.items("MLON", "MLON", "BLUE")
    at = backend.wait_payload(UPD, b'{"id":1,"list":{"BLUE":1,"MLON":2}}', start=at)
    mark = c.mark()
    backend.publish(STATUS, total(42780))
    c.wait_log("TOTAL 42,780 KRW", start=mark)
    c.items("-BLUE", "APPL=3")
    at = backend.wait_payload(UPD, b'{"id":1,"list":{"APPL":3,"MLON":2}}', start=at)
    backend.publish(STATUS, b"end")
    at = backend.wait_payload(UPD, b'{"id":1,"list":{}}', start=at)
    c.wait_log("session ended")
    # Items after the end are ignored; no update follows them.
    mark = c.mark()
    c.items("MLON")
    c.wait_log("ignored", start=mark)
    assert c.alive()


def test_json_and_camel_case_commands(controller: Callable[..., ControllerProc],
                                      backend: Peer) -> None:
    c = controller().start()
    at = backend.wait_payload(UPD, b'{"id":1,"list":{}}')
    backend.publish(STATUS, b'{"msg":"start"}')
    c.wait_log("session started")
    c.items("WTMN")
    at = backend.wait_payload(UPD, b'{"id":1,"list":{"WTMN":1}}', start=at)
    mark = c.mark()
    backend.publish(STATUS, total(22800, camel=True))
    c.wait_log("TOTAL 22,800 KRW", start=mark)
    backend.publish(STATUS, b' {"msg":"end"} ')
    backend.wait_payload(UPD, b'{"id":1,"list":{}}', start=at)
    c.wait_log("session ended", start=mark)


def test_hostile_commands_and_items_change_nothing(controller: Callable[..., ControllerProc],
                                                   backend: Peer) -> None:
    c = controller().start()
    backend.publish(STATUS, b"start")
    c.wait_log("session started")
    c.items("MLON", "MLON")
    at = backend.wait_payload(UPD, b'{"id":1,"list":{"MLON":2}}')
    bad_commands = [b"", b"hello", b"{", b"[]", b"null", b"\xff\xfe\x00",
                    b'{"msg":"total","payload":{"basketid":2,"totalprice":1}}',
                    b'{"msg":"total","payload":{"basketid":1,"totalprice":-1}}',
                    b'{"msg":"total","payload":{"basketid":1,"totalprice":1.5}}',
                    b'{"msg":"total","payload":{"basketid":1,"totalprice":"9"}}',
                    b'{"msg":"total","payload":null}', b'{"msg":7}',
                    b"[" * 5000, b"x" * 3000, b"y" * 10000]  # the last one is over 4 KiB
    for p in bad_commands:
        backend.publish(STATUS, p)
    c.items("MLON=1000", "MLON=-1", "MLON=abc", "BAD CODE", "X" * 200, "=5", "--MLON",
            b"\xff\xfe", "MLON=1.5")
    c.wait_log("item rejected (#9)")
    c.wait_log("status rejected (#%d)" % len(bad_commands))
    mark = c.mark()
    backend.publish(STATUS, b"start")  # re-publishes the cart: proof it is intact and alive
    backend.wait_payload(UPD, b'{"id":1,"list":{"MLON":2}}', start=at)
    c.wait_log("start while shopping", start=mark)
    out = c.output()
    out = c.output()
    assert out.count("status rejected") == len(bad_commands), out
    assert out.count("item rejected") == 9, out
    assert "Traceback" not in out
    assert "oversized" in out
    backend.publish(STATUS, total(100))
    c.wait_log("TOTAL 100 KRW", start=mark)


def test_clean_stop_says_offline_without_a_traceback(controller: Callable[..., ControllerProc],
                                                     backend: Peer, interp: str) -> None:
    c = controller().start()
    at = backend.wait_payload(AVAIL, b"online")
    # MicroPython has no signal module: SIGINT (KeyboardInterrupt) is its clean stop.
    c.signal(signal.SIGTERM if interp == "cpython" else signal.SIGINT)
    assert c.wait() == 0
    backend.wait_payload(AVAIL, b"offline", start=at)
    out = c.output()
    assert "Traceback" not in out and "stopped;" in out


def test_will_says_offline_after_kill_9(controller: Callable[..., ControllerProc],
                                        backend: Peer) -> None:
    c = controller(MQTT_KEEPALIVE="2").start()
    at = backend.wait_payload(AVAIL, b"online")
    c.kill()
    backend.wait_payload(AVAIL, b"offline", start=at, timeout=10)


def test_wrong_password_is_a_clear_message(controller: Callable[..., ControllerProc],
                                           broker: Broker) -> None:
    c = controller(MQTT_PASSWORD="not-the-password-s3cr3t").start(wait_connected=False)
    # Mosquitto 2 answers a wrong password with "not authorized" (code 5), not code 4.
    c.wait_log("not authorized (check MQTT_USER, MQTT_PASSWORD and MQTT_CLIENT_ID)",
               timeout=15)
    c.wait_log("connect attempt 2", timeout=15)
    out = c.output()
    assert "not-the-password-s3cr3t" not in out
    assert "Traceback" not in out
    assert c.alive()  # keeps retrying


def test_broker_never_sees_other_baskets_topics(controller: Callable[..., ControllerProc],
                                                backend: Peer) -> None:
    """A basket subscribes only to its own status topic: another basket's start is not seen."""
    c = controller().start()
    backend.wait_payload(UPD, b'{"id":1,"list":{}}')
    mark = c.mark()
    backend.publish("basket/2/status", b"start")
    backend.publish(STATUS, total(5))
    c.wait_log("total 5 KRW while idle", start=mark)  # handled (idle: not shown)
    assert "session started" not in c.output(mark)
