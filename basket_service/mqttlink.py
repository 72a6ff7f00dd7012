"""paho-mqtt 2.x clients built from Settings: the service's long-lived client, a one-shot
publisher for the command line, and a short sweep that reads the retained basket topics."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import paho.mqtt.client as mqtt

from basket_service.config import Settings

log = logging.getLogger("basket_service.mqtt")


class LinkError(OSError):
    """The broker cannot be reached or refused us; the message is safe to show."""


class BufferedSocket:
    """A plain TCP socket whose reads are buffered. paho reads each packet in several tiny
    recv() calls (the type byte, the length byte by byte, then the body), one system call
    each; this takes what the kernel holds in one call and hands it out. paho's loop asks
    pending() before it waits in select(), as it does for TLS sockets, so nothing buffered
    waits. Everything else goes to the socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._sock.recv(max(n, 65536))
            if len(data) <= n:
                return data
            self._buf, self._pos = data, 0
        end = min(len(self._buf), self._pos + n)
        chunk = self._buf[self._pos:end]
        self._pos = end
        return chunk

    def pending(self) -> int:
        return len(self._buf) - self._pos

    def send(self, data: bytes | bytearray) -> int:
        return self._sock.send(data)

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def __getattr__(self, name: str) -> object:
        return getattr(self._sock, name)


class Client(mqtt.Client):
    """paho's client with buffered reads on plain TCP (TLS sockets buffer already), and
    `corked()`: many publish()/ack() calls from another thread with one wake-up of paho's
    network thread instead of one each (each wake-up costs a system call and a hand-over of
    the GIL, a tenth of the service's time at 5,000 updates/s)."""

    @contextmanager
    def corked(self) -> Iterator[None]:
        # paho 2.2: _packet_queue() wakes the loop through _sockpairW when it is set, and
        # the loop only ever replaces the pair while it is None in loop(), which the
        # loop_start() thread does not call. Packets queued meanwhile are written as soon
        # as the loop wakes (or on its next turn anyway).
        wake = self._sockpairW
        self._sockpairW = None
        try:
            yield
        finally:
            if self._sockpairW is None:
                self._sockpairW = wake
            if wake is not None:
                try:
                    wake.send(b"0")
                except OSError:  # full (the loop is awake anyway) or closed by a reconnect
                    pass

    def _create_socket(self) -> mqtt.SocketLike:  # paho 2.2: makes each connection's socket
        sock = super()._create_socket()
        if type(sock) is socket.socket:
            return BufferedSocket(sock)
        return sock


def make_client(settings: Settings, client_id: str, *, clean: bool = True,
                manual_ack: bool = False) -> Client:
    client = Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                    clean_session=clean, manual_ack=manual_ack)
    if settings.mqtt_user:
        client.username_pw_set(settings.mqtt_user, settings.mqtt_password)
    if settings.mqtt_cafile:
        client.tls_set(ca_certs=str(settings.mqtt_cafile), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    client.reconnect_delay_set(1, 30)
    client.on_socket_open = _nodelay
    return client


def _nodelay(client: mqtt.Client, userdata: object, sock: object) -> None:
    """The service acknowledges a message and publishes the next total in two small writes; with
    Nagle's algorithm on, the second waits for the broker's delayed ACK (up to 40 ms)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        pass


def _connect_blocking(client: mqtt.Client, settings: Settings, timeout: float) -> None:
    ready = threading.Event()
    result: list[str] = []

    def on_connect(c: mqtt.Client, u: object, flags: object, rc: mqtt.ReasonCode,
                   props: object) -> None:
        if rc.is_failure:
            result.append(str(rc))
        ready.set()

    client.on_connect = on_connect
    try:
        client.connect(settings.mqtt_host, settings.mqtt_port, keepalive=30)
    except OSError as e:
        raise LinkError("cannot reach MQTT broker %s:%d: %s"
                        % (settings.mqtt_host, settings.mqtt_port, e.strerror or e))
    client.loop_start()
    if not ready.wait(timeout):
        client.loop_stop()
        raise LinkError("MQTT broker %s:%d did not answer CONNECT"
                        % (settings.mqtt_host, settings.mqtt_port))
    if result:
        client.loop_stop()
        raise LinkError("MQTT broker refused the connection: %s (check MQTT_USER/MQTT_PASSWORD)"
                        % result[0])


@contextmanager
def publisher(settings: Settings, timeout: float = 10.0,
              retain: bool = False) -> Iterator[Callable[[str, bytes], None]]:
    """One connection to the broker for several QoS 1 publishes: yields publish(topic,
    payload), which returns once the broker has acknowledged it (LinkError otherwise).
    `retain`: the messages are retained."""
    client = make_client(settings, "basket-cli-%s" % uuid.uuid4().hex[:12])
    _connect_blocking(client, settings, timeout)

    def publish(topic: str, payload: bytes) -> None:
        try:
            info = client.publish(topic, payload, qos=1, retain=retain)
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as e:
            raise LinkError("publishing failed: %s" % e)
        if not info.is_published():
            raise LinkError("the broker did not acknowledge %s" % topic)

    try:
        yield publish
    finally:
        client.disconnect()
        client.loop_stop()


def publish_once(settings: Settings, messages: Iterable[tuple[str, bytes]],
                 timeout: float = 10.0, retain: bool = False) -> None:
    """Publishes QoS 1 messages (retained with `retain`) and returns once the broker has
    acknowledged each."""
    with publisher(settings, timeout, retain) as publish:
        for topic, payload in messages:
            publish(topic, payload)


def read_retained(settings: Settings, topics: list[str], quiet: float = 0.5,
                  limit: float = 10.0, want: int | None = None) -> list[tuple[str, bytes]]:
    """Returns the retained messages on `topics`. Retained messages come straight after the
    SUBACK, so the sweep ends after `quiet` seconds without one (or after `limit`), or as soon
    as `want` different topics have one (literal topics: nothing more can come)."""
    got: list[tuple[str, bytes]] = []
    cond = threading.Condition()
    subscribed = threading.Event()
    client = make_client(settings, "%s-sweep-%s" % (settings.client_id[:40], uuid.uuid4().hex[:6]))

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            with cond:
                got.append((msg.topic, bytes(msg.payload)))
                cond.notify_all()

    client.on_message = on_message
    client.on_subscribe = lambda *a: subscribed.set()
    _connect_blocking(client, settings, limit)
    try:
        client.subscribe([(t, 1) for t in topics])
        if not subscribed.wait(limit):
            raise LinkError("no SUBACK for the retained sweep")
        deadline = time.monotonic() + limit
        with cond:
            while True:
                if want is not None and len({t for t, _ in got}) >= want:
                    break
                seen = len(got)
                cond.wait(min(quiet, max(0.0, deadline - time.monotonic())))
                if len(got) == seen or time.monotonic() >= deadline:
                    break
            return list(got)
    finally:
        client.disconnect()
        client.loop_stop()
