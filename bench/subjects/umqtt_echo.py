# Reference echo under MicroPython: stock umqtt.simple (PyPI sdist, lib/umqtt: make board-libs)
# answers every command on basket/<n>/status with the same update the controller would send.
# UMQTT_NODELAY=1 sets TCP_NODELAY on its socket after connecting (its writes are many small
# ones: header, length, topic, payload). Nothing else: no state, no parsing, no persistence.
import os
import sys

sys.path.insert(0, os.getenv("UMQTT_PATH"))
from umqtt.simple import MQTTClient  # noqa: E402

topic = os.getenv("MQTT_TOPIC")
payload = os.getenv("ECHO_PAYLOAD").encode()
# The provisioned broker binds basket<n>'s login to the client id basket-<n> (MQTT_CLIENT_ID).
client_id = os.getenv("MQTT_CLIENT_ID") or "echo-" + topic.replace("/", "-")
c = MQTTClient(client_id, os.getenv("MQTT_HOST"), int(os.getenv("MQTT_PORT")),
               os.getenv("MQTT_USER"), os.getenv("MQTT_PASSWORD"), keepalive=60)
c.set_last_will(topic + "/availability", b"offline", True, 1)
c.connect()
if os.getenv("UMQTT_NODELAY") == "1":
    c.sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY
pending = []


def on_message(t, m):
    pending.append(1)


c.set_callback(on_message)
c.subscribe(topic + "/status", 1)
c.publish(topic + "/availability", b"online", True, 1)
update = topic + "/update"
while True:
    c.wait_msg()
    while pending:
        pending.pop()
        c.publish(update, payload, True, 1)
