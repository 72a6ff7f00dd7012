"""Reference echo on CPython: stock paho-mqtt answers every command on basket/<n>/status with
the same update the controller would send. Nothing else: no state, no parsing."""

import os
import signal
import sys

import paho.mqtt.client as mqtt

topic = os.environ["MQTT_TOPIC"]
payload = os.environ["ECHO_PAYLOAD"].encode()
# The provisioned broker binds basket<n>'s login to the client id basket-<n> (MQTT_CLIENT_ID).
client_id = os.environ.get("MQTT_CLIENT_ID") or "echo-" + topic.replace("/", "-")
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
c.username_pw_set(os.environ["MQTT_USER"], os.environ["MQTT_PASSWORD"])
c.will_set(topic + "/availability", b"offline", qos=1, retain=True)


def on_connect(cl: mqtt.Client, u: object, f: object, rc: object, p: object) -> None:
    cl.subscribe(topic + "/status", 1)
    cl.publish(topic + "/availability", b"online", qos=1, retain=True)


def on_message(cl: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
    cl.publish(topic + "/update", payload, qos=1, retain=True)


c.on_connect = on_connect
c.on_message = on_message
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
c.connect(os.environ["MQTT_HOST"], int(os.environ["MQTT_PORT"]), keepalive=60)
c.loop_forever()
