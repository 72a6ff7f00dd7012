"""A paho-mqtt peer for the tests: collects messages per topic and waits for conditions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt


class Peer:
    def __init__(self, port: int, user: str = "service", password: str = "service-pw",
                 client_id: str = "", clean: bool = True) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=clean if client_id else True)
        self.client.username_pw_set(user, password)
        self.client.on_message = self._on_message
        self.connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self.connected.set()
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self.connected.wait(5):
            raise TimeoutError("paho peer did not connect")

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cond.notify_all()

    def subscribe(self, topic: str, qos: int = 1) -> None:
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.subscribe(topic, qos)
        if not done.wait(5):
            raise TimeoutError("no SUBACK for %s" % topic)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)

    def payloads(self, topic: str) -> list[bytes]:
        with self.cond:
            return [p for t, p, _ in self.messages if t == topic]

    def wait_for(self, pred: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = pred()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for %s; got %r" % (what or pred,
                                                                               self.messages[-10:]))
                self.cond.wait(min(left, 0.1))

    def wait_payload(self, topic: str, payload: bytes, timeout: float = 10.0,
                     start: int = 0) -> int:
        """Waits until `payload` arrives on `topic` (at or after message index `start`)."""
        def find() -> int | None:
            for i in range(start, len(self.messages)):
                t, p, _ = self.messages[i]
                if t == topic and p == payload:
                    return i + 1
            return None
        return self.wait_for(find, timeout, "%s %r" % (topic, payload))

    def mark(self) -> int:
        with self.cond:
            return len(self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
