"""MQTT_CLIENT=umqtt: the controller under the MicroPython unix port with micropython-lib's
umqtt.simple (lib/, from `make board-libs`) against a real Mosquitto, paho as the service."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.board_proc import mp_env
from tests.support.broker import Broker
from tests.support.peer import Peer
from tests.support.process import MICROPYTHON, ROOT, Process

UMQTT = ROOT / "lib" / "umqtt" / "simple.py"

pytestmark = pytest.mark.skipif(not UMQTT.exists(),
                                reason="lib/umqtt/simple.py missing: run `make board-libs`")


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker.with_acl().start()
    yield b
    b.close()


def controller(broker: Broker, tmp_path: Path, **extra: str) -> Process:
    settings = dict(MQTT_HOST="127.0.0.1", MQTT_PORT=str(broker.port), MQTT_USER="basket1",
                    MQTT_PASSWORD="basket1-pw", MQTT_TOPIC="basket/1", MQTT_CLIENT="umqtt",
                    CART_STATE_FILE=str(tmp_path / "state.json"), LOG_LEVEL="debug")
    settings.update(extra)
    env = mp_env(**settings)
    # cwd: a folder without the checkout's package, so a frozen build runs its own
    return Process([MICROPYTHON, "-m", "mqtt_controller"], env, cwd=tmp_path).start(stdin=True)


def test_shopping_session_through_umqtt(broker: Broker, tmp_path: Path) -> None:
    peer = Peer(broker.port)
    peer.subscribe("basket/1/#")
    proc = controller(broker, tmp_path)
    try:
        peer.wait_payload("basket/1/availability", b"online")
        proc.wait_line(r"connected to 127\.0\.0\.1:\d+ as basket-1")
        m = peer.mark()
        peer.publish("basket/1/status", b"start")
        # The session's own update, not the one of the connect (the same bytes while idle).
        proc.wait_line(r"session started")
        peer.wait_payload("basket/1/update", b'{"id":1,"list":{}}', start=m)
        proc.send("MLON\nMLON\nAPPL\n")
        peer.wait_payload("basket/1/update", b'{"id":1,"list":{"APPL":1,"MLON":2}}', start=m)
        total = {"msg": "total", "payload": {"basketid": 1, "totalprice": 13900}}
        peer.publish("basket/1/status", json.dumps(total))
        proc.wait_line(r"\[display\] basket 1 \| 3 items \| TOTAL 13,900 KRW")
        proc.send("-APPL\n")
        peer.wait_payload("basket/1/update", b'{"id":1,"list":{"MLON":2}}', start=m)
        m2 = peer.mark()
        peer.publish("basket/1/status", b"end")
        peer.wait_payload("basket/1/update", b'{"id":1,"list":{}}', start=m2)
        proc.wait_line(r"\[display\] basket 1 \| ready")
        # the will: killed without DISCONNECT, the broker says offline for it
        proc.kill()
        peer.wait_payload("basket/1/availability", b"offline", start=m2)
    finally:
        proc.stop()
        peer.close()
    # the broker saw umqtt's client: QoS 1 publishes were acknowledged (no resends pending)
    assert "Received PUBLISH from basket-1" in broker.log()


def test_umqtt_refused_login_is_retried_and_named(broker: Broker, tmp_path: Path) -> None:
    proc = controller(broker, tmp_path, MQTT_PASSWORD="wrong")
    try:
        proc.wait_line(r"connect attempt 1 to 127\.0\.0\.1:\d+ failed: connection refused: "
                       r"(bad user name or password|not authorized)")
        proc.wait_line(r"connect attempt 2 ", timeout=10)
    finally:
        proc.stop()
    assert "wrong" not in proc.output()


def test_umqtt_keepalive_pings_and_reconnects_after_broker_restart(
        broker: Broker, tmp_path: Path) -> None:
    peer = Peer(broker.port)
    peer.subscribe("basket/1/availability")
    proc = controller(broker, tmp_path, MQTT_KEEPALIVE="2")
    try:
        peer.wait_payload("basket/1/availability", b"online")
        time.sleep(3.5)  # more than 1.5 x keepalive: only pings keep the link up
        assert "PINGREQ from basket-1" in broker.log()
        assert "link to" not in proc.output(), proc.output()
        m = proc.mark()
        broker.restart()
        proc.wait_line(r"link to 127\.0\.0\.1:\d+ lost", start=m)
        proc.wait_line(r"connected to 127\.0\.0\.1:\d+ as basket-1", start=m, timeout=20)
    finally:
        proc.stop()
        peer.close()


def test_umqtt_with_tls_is_a_configuration_error(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    env = mp_env(MQTT_TOPIC="basket/1", MQTT_CLIENT="umqtt", MQTT_TLS="1", MQTT_CAFILE=str(ca),
                 CART_STATE_FILE=str(tmp_path / "s.json"))
    proc = Process([MICROPYTHON, "-m", "mqtt_controller"], env).start()
    assert proc.wait() == 2
    assert "configuration error: MQTT_CLIENT: umqtt does not do TLS" in proc.output()


def test_unknown_mqtt_client_names_the_key(tmp_path: Path) -> None:
    env = mp_env(MQTT_TOPIC="basket/1", MQTT_CLIENT="paho")
    proc = Process([MICROPYTHON, "-m", "mqtt_controller"], env).start()
    assert proc.wait() == 2
    assert "configuration error: MQTT_CLIENT: must be builtin or umqtt" in proc.output()
