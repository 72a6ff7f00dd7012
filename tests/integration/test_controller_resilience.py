"""The basket against outages: broker restarts, commands sent while it was away, kill -9."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from tests.support.broker import Broker
from tests.support.peer import Peer
from tests.support.process import ControllerProc

UPD = "basket/1/update"
STATUS = "basket/1/status"
AVAIL = "basket/1/availability"


def test_broker_restart_mid_session(controller: Callable[..., ControllerProc], broker: Broker,
                                    backend: Peer) -> None:
    c = controller(MQTT_KEEPALIVE="5").start()
    backend.publish(STATUS, b"start")
    c.wait_log("session started")
    c.items("MLON")
    backend.wait_payload(UPD, b'{"id":1,"list":{"MLON":1}}')
    backend.close()
    mark = c.mark()
    broker.stop()
    c.wait_log("link to", start=mark)  # the loss is noticed and logged
    # Items keep coming while the broker is away: only the newest cart is sent later.
    c.items("MLON", "BLUE")
    time.sleep(0.5)
    c.items("-BLUE", "APPL")
    time.sleep(1.0)
    broker.start()
    c.wait_log("connected to", start=mark, timeout=20)
    peer = Peer(broker.port)
    peer.subscribe(UPD)
    # The retained update is the newest cart, never an intermediate one.
    peer.wait_payload(UPD, b'{"id":1,"list":{"APPL":1,"MLON":2}}')
    out = c.output(mark)
    assert '"BLUE":1' not in out, out
    mark = c.mark()
    peer.publish(STATUS, b'{"msg":"total","payload":{"basketid":1,"totalprice":777}}')
    c.wait_log("TOTAL 777 KRW", start=mark)
    peer.close()


def test_command_sent_while_offline_arrives_after_reconnect(
        controller: Callable[..., ControllerProc], backend: Peer) -> None:
    c = controller().start()
    at = backend.wait_payload(UPD, b'{"id":1,"list":{}}')
    c.signal(2)  # a clean stop; the broker keeps the persistent session
    c.wait()
    backend.publish(STATUS, b"start")  # QoS 1: queued for the offline basket
    c.start()
    backend.wait_payload(UPD, b'{"id":1,"list":{}}', start=at + 1)
    c.wait_log("session started")
    assert "session resumed" in c.output()


def test_kill_9_mid_session_restores_cart_and_state(controller: Callable[..., ControllerProc],
                                                    backend: Peer) -> None:
    c = controller().start()
    backend.publish(STATUS, b"start")
    c.wait_log("session started")
    c.items("MLON", "MLON", "PCH4")
    at = backend.wait_payload(UPD, b'{"id":1,"list":{"MLON":2,"PCH4":1}}')
    c.kill()
    state = json.loads(c.state_file.read_text())
    assert state["state"] == "shopping" and state["list"] == {"MLON": 2, "PCH4": 1}
    c.start()
    c.wait_log("restored shopping state with 3 item(s)")
    backend.wait_payload(UPD, b'{"id":1,"list":{"MLON":2,"PCH4":1}}', start=at)
    c.items("BLUE")  # still shopping: items count
    backend.wait_payload(UPD, b'{"id":1,"list":{"BLUE":1,"MLON":2,"PCH4":1}}', start=at)


def test_corrupt_state_file_starts_idle_with_a_warning(controller: Callable[..., ControllerProc],
                                                       backend: Peer) -> None:
    c = controller()
    c.state_file.write_text('{"state": "shopping", "list": {"MLON": ')
    c.start()
    c.wait_log("corrupt")
    out = c.output()
    assert "Traceback" not in out
    backend.wait_payload(UPD, b'{"id":1,"list":{}}')
    c.items("MLON")
    c.wait_log("ignored")
