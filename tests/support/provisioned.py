"""A paho client for the provisioned broker (tests.support.broker.Broker.provisioned): connects
synchronously, records messages and SUBACK codes; `refused` for a login it must refuse."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt


class Refused(Exception):
    def __init__(self, reason: Any) -> None:
        super().__init__("connection refused: %s" % reason)
        self.reason = reason


class Client:
    """A paho client that connects synchronously and records messages and SUBACK codes."""

    def __init__(self, port: int, user: str | None, password: str | None,
                 cafile: str | Path | None = None, host: str = "127.0.0.1",
                 will: tuple[str, bytes] | None = None, client_id: str | None = None,
                 clean: bool = True) -> None:
        """`client_id` None: `basket-<n>` for a `basket<n>` login (the only id the provisioned
        broker accepts for it), else a random one."""
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        if client_id is None:
            n = user[6:] if user and user.startswith("basket") else ""
            client_id = "basket-" + n if n.isdigit() else ""
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=clean if client_id else True)
        self.disconnected = threading.Event()
        self.c.on_disconnect = lambda *a: self.disconnected.set()
        if user is not None:
            self.c.username_pw_set(user, password)
        if cafile is not None:
            self.c.tls_set(ca_certs=str(cafile), cert_reqs=ssl.CERT_REQUIRED)
        if will is not None:
            self.c.will_set(will[0], will[1], qos=1, retain=True)
        self.c.on_message = self._on_message
        self._connack: Any = None
        self._done = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.connect(host, port, keepalive=30)  # TLS handshake errors raise here
        self.c.loop_start()
        if not self._done.wait(5):
            self.close()
            raise TimeoutError("no CONNACK")
        reason: Any = self._connack
        if reason.is_failure:
            self.close()
            raise Refused(reason)

    def _on_connect(self, c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connack = reason
        if reason.is_failure:
            c.disconnect()  # no automatic reconnect: the test wants the refusal, not a retry
        self._done.set()

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cond.notify_all()

    def subscribe(self, *topics: str) -> list[int]:
        """Returns the SUBACK codes (0/1 granted QoS, 128 refused)."""
        done = threading.Event()
        codes: list[int] = []

        def on_subscribe(c: Any, u: Any, mid: Any, reasons: Any, props: Any) -> None:
            codes.extend(int(r.value) for r in reasons)
            done.set()

        self.c.on_subscribe = on_subscribe
        self.c.subscribe([(t, 1) for t in topics])
        if not done.wait(5):
            raise TimeoutError("no SUBACK for %s" % (topics,))
        return codes

    def publish(self, topic: str, payload: bytes | str, retain: bool = False,
                qos: int = 1) -> None:
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5)
        if not info.is_published():
            raise TimeoutError("no PUBACK on %s" % topic)

    def topics(self) -> list[str]:
        with self.cond:
            return [t for t, _, _ in self.messages]

    def wait_for(self, topic: str, payload: bytes, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(t == topic and p == payload for t, p, _ in self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s %r; got %r" % (topic, payload, self.messages))
                self.cond.wait(min(left, 0.1))

    def close(self) -> None:
        self.c.disconnect()  # first: it wakes the network thread, so loop_stop() returns at once
        self.c.loop_stop()


def refused(port: int, user: str | None, password: str | None, **kw: Any) -> Any:
    """The CONNACK reason of a connection the broker must refuse; fails if it is accepted."""
    try:
        client = Client(port, user, password, **kw)
    except Refused as e:
        return e.reason
    client.close()
    raise AssertionError("the broker accepted user %r" % user)
