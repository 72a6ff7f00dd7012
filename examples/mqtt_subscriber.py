"""Watches every basket: prints each message on basket/# (retained ones marked) until Ctrl-C.
Settings as the service: MQTT_HOST, MQTT_PORT, MQTT_USER, MQTT_PASSWORD (MQTT_CAFILE for TLS).

    MQTT_USER=service MQTT_PASSWORD=... python examples/mqtt_subscriber.py
"""

from __future__ import annotations

import sys
import threading
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import paho.mqtt.client as mqtt  # noqa: E402

from basket_service import config, mqttlink  # noqa: E402


def main() -> int:
    try:
        settings = config.load()
    except config.ConfigError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    client = mqttlink.make_client(settings, "basket-watch-%s" % uuid.uuid4().hex[:8])

    def on_connect(c: mqtt.Client, u: object, f: object, rc: mqtt.ReasonCode, p: object) -> None:
        if rc.is_failure:
            print("connection refused: %s" % rc, file=sys.stderr)
            return
        print("watching basket/# on %s:%d" % (settings.mqtt_host, settings.mqtt_port), flush=True)
        c.subscribe("basket/#", qos=1)

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        text = bytes(msg.payload).decode("utf-8", "replace")
        print("%s%s %s" % (msg.topic, " (retained)" if msg.retain else "", text), flush=True)

    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=30)
    except OSError as e:
        print("error: cannot reach %s:%d: %s" % (settings.mqtt_host, settings.mqtt_port, e),
              file=sys.stderr)
        return 1
    client.loop_start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
