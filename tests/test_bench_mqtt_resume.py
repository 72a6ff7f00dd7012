"""Found by the fleet simulator: a basket whose persistent session has queued status messages
gets them right behind the CONNACK on reconnect. The client must keep them, not refuse the
connection (it used to raise "unexpected packets after CONNACK" and so never reconnected)."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt

from mqtt_controller.mqtt import MQTTClient
from tests.support.broker import Broker


def test_queued_messages_behind_the_connack_are_delivered() -> None:
    broker = Broker.with_acl().start()
    try:
        c = MQTTClient("basket-1", "127.0.0.1", broker.port, "basket1", "basket1-pw",
                       keepalive=30, clean_session=False)
        c.connect()
        c.subscribe("basket/1/status", 1)
        c.publish("basket/1/availability", b"online", qos=1)
        deadline = time.monotonic() + 5
        while c.inflight and time.monotonic() < deadline:
            c.poll(100)
        assert not c.inflight
        c.disconnect()

        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="svc")
        pub.username_pw_set("service", "service-pw")
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        infos = [pub.publish("basket/1/status", b"start", qos=1) for _ in range(20)]
        for info in infos:
            info.wait_for_publish(5)
        pub.disconnect()
        pub.loop_stop()

        assert c.connect() is True  # session present, queued messages right behind
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 20 and time.monotonic() < deadline:
            got += c.poll(100)
        assert got == [("basket/1/status", b"start")] * 20
        c.disconnect()
    finally:
        broker.close()
