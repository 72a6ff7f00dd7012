"""A scripted fake MQTT broker (paho-test style: expect a packet, send the reply) for what a real
broker never sends. Only for protocol faults: every other test uses a real Mosquitto.

Each accepted connection runs the next script from the list given to `FakeBroker`; when the
list is used up, connections get `good`, a well-behaved broker that answers CONNECT, SUBSCRIBE,
QoS 1 PUBLISH and PINGREQ and records what it received (so a test sees the reconnect work).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CONNACK_OK = b"\x20\x02\x00\x00"
CONNACK_RESUMED = b"\x20\x02\x01\x00"
PINGRESP = b"\xd0\x00"


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(topic: str, payload: bytes, qos: int = 0, pid: int = 1, retain: bool = False) -> bytes:
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + (struct.pack("!H", pid) if qos else b"") + payload
    return bytes([0x30 | (qos << 1) | int(retain)]) + varint(len(body)) + body


def suback(pid: int, rc: int = 1) -> bytes:
    return b"\x90\x03" + struct.pack("!HB", pid, rc)


def puback(pid: int) -> bytes:
    return b"\x40\x02" + struct.pack("!H", pid)


@dataclass
class Packet:
    first: int
    body: bytes

    @property
    def kind(self) -> int:
        return self.first & 0xF0

    def pid(self) -> int:
        """Packet id of a SUBSCRIBE or QoS 1 PUBLISH (0 for QoS 0)."""
        if self.kind == 0x80:
            return int(struct.unpack("!H", self.body[:2])[0])
        if self.kind == 0x30 and self.first & 0x06:
            tlen = struct.unpack("!H", self.body[:2])[0]
            return int(struct.unpack("!H", self.body[2 + tlen:4 + tlen])[0])
        return 0

    def topic(self) -> str:
        tlen = struct.unpack("!H", self.body[:2])[0]
        return self.body[2:2 + tlen].decode()

    def payload(self) -> bytes:
        tlen = struct.unpack("!H", self.body[:2])[0]
        return self.body[2 + tlen + (2 if self.first & 0x06 else 0):]


class Closed(Exception):
    pass


@dataclass
class Conn:
    sock: socket.socket
    n: int
    received: list[Packet] = field(default_factory=list)
    closed_by_peer_at: float | None = None

    def recv_packet(self, timeout: float = 10.0) -> Packet:
        self.sock.settimeout(timeout)
        first = self._exact(1)[0]
        mult, size = 1, 0
        while True:
            b = self._exact(1)[0]
            size += (b & 0x7F) * mult
            mult <<= 7
            if not b & 0x80:
                break
        p = Packet(first, self._exact(size))
        self.received.append(p)
        return p

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except ConnectionError:
                chunk = b""
            if not chunk:
                if self.closed_by_peer_at is None:
                    self.closed_by_peer_at = time.monotonic()
                raise Closed()
            buf += chunk
        return buf

    def expect(self, kind: int, timeout: float = 10.0) -> Packet:
        p = self.recv_packet(timeout)
        if p.kind != kind:
            raise AssertionError("fake broker: expected packet 0x%02x, got 0x%02x" % (kind,
                                                                                     p.first))
        return p

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):  # the client hung up first
            if self.closed_by_peer_at is None:
                self.closed_by_peer_at = time.monotonic()
            raise Closed() from None

    def handshake(self, connack: bytes = CONNACK_OK) -> None:
        """CONNECT -> CONNACK; SUBSCRIBE -> SUBACK (and acks publishes that come first)."""
        self.expect(0x10)
        self.send(connack)

    def wait_closed(self, timeout: float = 10.0) -> bool:
        """Reads (and answers PINGREQ) until the client closes; True if it did within timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                p = self.recv_packet(left)
            except Closed:
                return True
            except (TimeoutError, socket.timeout):
                return False
            self.answer(p)

    def answer(self, p: Packet) -> None:
        if p.kind == 0x80:
            self.send(suback(p.pid()))
        elif p.kind == 0x30 and p.first & 0x06:
            self.send(puback(p.pid()))
        elif p.kind == 0xC0:
            self.send(PINGRESP)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


Script = Callable[[Conn], None]


def good(conn: Conn) -> None:
    """A well-behaved broker until the client goes away."""
    conn.handshake()
    conn.wait_closed(3600)


class FakeBroker:
    def __init__(self, scripts: list[Script] | None = None, default: Script = good) -> None:
        self.scripts = list(scripts or [])
        self.default = default
        self.conns: list[Conn] = []
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port: int = self.listener.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                s, _ = self.listener.accept()
            except OSError:
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                conn = Conn(s, len(self.conns) + 1)
                self.conns.append(conn)
                script = self.scripts.pop(0) if self.scripts else self.default
            threading.Thread(target=self._run, args=(script, conn), daemon=True).start()

    def _run(self, script: Script, conn: Conn) -> None:
        try:
            script(conn)
        except Closed:
            pass
        except (OSError, AssertionError) as e:
            with self.lock:
                self.errors.append(e)
        finally:
            conn.close()

    def wait_conns(self, n: int, timeout: float = 15.0) -> Conn:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.conns) >= n:
                    return self.conns[n - 1]
            time.sleep(0.01)
        raise AssertionError("fake broker: %d connection(s), wanted %d" % (len(self.conns), n))

    def published(self, topic: str | None = None) -> list[tuple[str, bytes]]:
        with self.lock:
            conns = list(self.conns)
        return [(p.topic(), p.payload()) for c in conns for p in list(c.received)
                if p.kind == 0x30 and (topic is None or p.topic() == topic)]

    def close(self) -> None:
        self._stop = True
        self.listener.close()
        with self.lock:
            for c in self.conns:
                c.close()
