# A tiny MQTT 3.1.1 client over a socket: QoS 0/1 publish, QoS 1 subscribe, last will, keepalive
# pings and dead-link detection, and a non-blocking poll. Every packet leaves in one write (a
# packet split over writes meets Nagle's algorithm and delayed ACKs). Link faults raise OSError,
# protocol faults and refusals MQTTException; either way the caller reconnects.
import select
import socket

from mqtt_controller import compat, packet
from mqtt_controller.compat import ticks_add, ticks_diff, ticks_ms
from mqtt_controller.link import Link
from mqtt_controller.packet import MQTTException

MAX_INFLIGHT = 8
_MAX_STRAY_PINGRESP = 3
_READ_CHUNK = 512  # a socket read: the buffer a read needs in one piece of a fragmented heap
_READ_PACKETS = 32  # packets per _read(): the rest waits in the socket (a flood of tiny packets)
_WRITE_TIMEOUT_MS = 10000
_DRAIN_MS = 200  # after DISCONNECT: how long to wait for the broker to close


class MQTTClient(Link):
    def __init__(self, client_id, host, port=1883, user=None, password=None, keepalive=60,
                 clean_session=False, max_packet=4096, tls=None, connect_timeout_ms=10000):
        super().__init__(keepalive)
        self.client_id = client_id
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.clean_session = clean_session
        self.tls = tls  # None, or a function (sock, host) -> wrapped socket
        self.connect_timeout_ms = connect_timeout_ms
        self.will = None
        self.reader = packet.Reader(max_packet)
        self.inflight = {}  # pid -> (topic, payload, retain), oldest first by pid order of entry
        self._order = []
        self._pid = 0
        self._stray = 0  # PINGRESPs never asked for, in a row
        self._pending = None  # () -> bytes a TLS socket holds decrypted (poll() cannot see them)
        self._fault = None  # a protocol fault to raise on the next service()
        self._early = []  # packets that came in the same read as the CONNACK
        self._more = False  # _read() stopped early: more may be buffered
        self._acks = b""  # PUBACKs of delivered messages, sent once they are handled
        self._optional = {}  # packet id -> topic of an optional subscription awaiting its SUBACK
        self.counters = {"oversized": 0, "unknown_puback": 0}

    # -- connection ---------------------------------------------------------------------------
    def set_last_will(self, topic, payload, retain=False, qos=0):
        self.will = (topic, payload, qos, retain)

    def connect(self):
        """Opens the link; returns session_present. Raises OSError or MQTTException."""
        self.close()
        addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0]
        sock = socket.socket(addr[0], socket.SOCK_STREAM)
        self._opened(sock)  # from here on close() closes it
        try:
            sock.settimeout(self.connect_timeout_ms / 1000)
            sock.connect(addr[-1])
            compat.set_nodelay(sock)
            if self.tls:
                sock = self.tls(sock, self.host)
            sock.setblocking(False)
            self._opened(sock)  # the TLS socket, if any; the keepalive clock starts now
            self.reader.reset()
            self._more = False
            self._stray = 0
            self._pending = compat.tls_pending(sock)
            self._early = []
            self._optional = {}
            self._write(packet.connect(self.client_id, self.keepalive_s, self.clean_session,
                                       self.user, self.password, self.will))
            pkts = self._wait_packet(self.connect_timeout_ms)
            first, body = pkts[0][0], pkts[0][1]
            if first & 0xF0 != packet.CONNACK:
                raise MQTTException("expected CONNACK, got packet type 0x%02x" % first)
            present = packet.parse_connack(body)
            # A resumed session's queued messages may follow the CONNACK in the same read.
            self._early = pkts[1:]
            for pid in self._order:  # QoS 1 messages not yet acknowledged go again
                topic, payload, retain = self.inflight[pid]
                self._write(packet.publish(topic, payload, 1, retain, pid, dup=True))
            return present
        except Exception:
            self.close()
            raise

    def _wait_packet(self, timeout_ms):
        start = ticks_ms()
        p = select.poll()
        p.register(self.sock, select.POLLIN)
        while True:
            left = timeout_ms - ticks_diff(ticks_ms(), start)
            if left <= 0:
                raise OSError("no answer from the broker within %d ms" % timeout_ms)
            if p.poll(left):
                pkts = self._read()
                if pkts:
                    return pkts

    def disconnect(self):
        """Says goodbye (the will is not sent) and closes the link once the broker has."""
        if self.sock is not None:
            try:
                self._write(packet.disconnect())
                self._drain_to_eof()
            except OSError:
                pass
        self.close()

    def _drain_to_eof(self):
        # Closing a socket with unread bytes in it (a flood of commands) sends a TCP RST, and
        # the broker may then drop the DISCONNECT before it reads it and send the will. So:
        # half-close, read (and discard: never acknowledged, delivered again) until the broker
        # closes, briefly.
        sock = self.sock
        compat.shutdown_write(sock)
        deadline = ticks_add(ticks_ms(), _DRAIN_MS)
        while True:
            left = ticks_diff(deadline, ticks_ms())
            if left <= 0 or not compat.readable(sock, left):
                return
            try:
                data = compat.recv_now(sock, _READ_CHUNK)
            except OSError:
                return
            if data is not None and not data:  # the broker closed
                return

    def close(self):
        self._fault = None
        self._acks = b""  # not acknowledged: the broker delivers those messages again
        super().close()

    # -- sending ------------------------------------------------------------------------------
    def _next_pid(self):
        while True:
            self._pid = self._pid % 65535 + 1
            if self._pid not in self.inflight:
                return self._pid

    def subscribe(self, topic, qos=1, optional=False):
        """A refused subscription (SUBACK 0x80) closes the link, unless it is optional: then
        it lands in take_refused() (an older broker ACL without the topic must not stop the
        basket)."""
        pid = self._next_pid()
        if optional:
            self._optional[pid] = topic
        self._write(packet.subscribe(pid, [(topic, qos)]))

    def publish(self, topic, payload, retain=False, qos=0):
        """Sends a message. With QoS 1 it is kept until acknowledged (re-sent after a reconnect);
        an unacknowledged older message on the same topic is superseded by the new one."""
        pid = 0
        if qos:
            for old in self._order:
                if self.inflight[old][0] == topic:
                    self._forget(old)
                    break
            if len(self._order) >= MAX_INFLIGHT:
                self._forget(self._order[0])
            pid = self._next_pid()
            self.inflight[pid] = (topic, payload, retain)
            self._order.append(pid)
        if self.sock is None:
            raise OSError("not connected")
        # The acknowledgements of the commands handled meanwhile ride in the same write,
        # after the message: one send, and the broker passes the update on first.
        acks, self._acks = self._acks, b""
        self._write(packet.publish(topic, payload, qos, retain, pid) + acks)
        return pid

    def _forget(self, pid):
        del self.inflight[pid]
        self._order.remove(pid)

    def _write(self, data):
        sock = self.sock
        if sock is None:
            raise OSError("not connected")
        mv = memoryview(data)
        off = 0
        start = ticks_ms()
        p = None
        while off < len(data):
            try:
                n = sock.send(mv[off:])
            except OSError as e:
                if not compat.would_block(e):
                    raise
                n = 0
            if n:
                off += n
                continue
            if p is None:
                p = select.poll()
                p.register(sock, select.POLLOUT)
            left = _WRITE_TIMEOUT_MS - ticks_diff(ticks_ms(), start)
            if left <= 0:
                raise OSError("write to the broker timed out")
            p.poll(left)
        self._note_tx()

    # -- receiving ----------------------------------------------------------------------------
    def _read(self):
        """Reads what the socket has now; returns complete packets. EOF raises OSError."""
        pkts = []
        self._more = False
        for _ in range(64):  # bounded: a flood cannot starve the rest of the loop
            data = compat.recv_now(self.sock, _READ_CHUNK)
            if data is None:  # nothing yet
                break
            if not data:
                raise OSError("connection closed by the broker")
            self._note_rx()
            pkts.extend(self.reader.feed(data))
            if len(pkts) >= _READ_PACKETS:  # bounded memory as well as bounded time
                self._more = True  # the next service() reads on, even if poll() is quiet (TLS)
                break
            if len(data) < _READ_CHUNK and not (self._pending and self._pending()):
                break
        else:
            self._more = True
        return pkts

    def service(self, readable=True):
        """Handles what arrived and keeps the link alive; returns [(topic, payload), ...]."""
        if self.sock is None:
            raise OSError("not connected")
        self.send_acks()  # what the last call handed over has been handled by now
        fault = self._fault
        if fault is not None:
            self._fault = None
            raise fault
        msgs = []
        pkts = self._early
        if pkts:
            self._early = []
        if readable or self._more:
            pkts = pkts + self._read()
        for first, body, size in pkts:
            try:
                self._handle(first, body, size, msgs)
            except MQTTException as e:
                if not msgs:
                    raise
                self._fault = e  # hand over the commands that came before it (acknowledged
                return msgs  # by send_acks()), and fail on the next call
        self._ping_if_due()
        return msgs

    def _handle(self, first, body, size, msgs):
        kind = first & 0xF0
        if kind == packet.PUBLISH:
            if (first >> 1) & 3 == 2:
                raise MQTTException("QoS 2 PUBLISH on a QoS 1 subscription")
            oversized = len(body) < size
            if oversized:
                self.counters["oversized"] += 1
                try:
                    topic, _, qos, pid, _ = packet.parse_publish(first, body)
                except MQTTException:
                    qos = 0  # head too short to find the packet id: nothing to acknowledge
                    topic = "?"
                msgs.append((topic, None))  # None: dropped as oversized (size in counters)
            else:
                topic, payload, qos, pid, _ = packet.parse_publish(first, body)
                msgs.append((topic, payload))
            if qos == 1:  # acknowledged by send_acks() or the next publish(): once handled
                self._acks += packet.puback(pid)
        elif kind == packet.PUBACK:
            pid = packet.parse_pid(body, "PUBACK")
            if pid in self.inflight:
                self._forget(pid)
            else:
                self.counters["unknown_puback"] += 1
        elif kind == packet.SUBACK:
            if len(body) < 3:
                raise MQTTException("malformed SUBACK")
            topic = self._optional.pop(packet.parse_pid(body[:2], "SUBACK"), None)
            if body[2] == 0x80:
                if topic is None:
                    raise MQTTException("subscription refused: not authorized", 5)
                self.refused.append(topic)
        elif kind == packet.PINGRESP:
            if self._pong():
                self._stray = 0
            else:  # never asked for: a few are odd, a stream of them is a broken broker
                self._stray += 1
                if self._stray > _MAX_STRAY_PINGRESP:
                    raise MQTTException("PINGRESPs the client never asked for")
        elif kind == packet.CONNACK:
            raise MQTTException("unexpected CONNACK")
        # UNSUBACK: never asked for; ignored

    def drop_acks(self):
        self._acks = b""

    def send_acks(self):
        """Acknowledges the messages service() handed over (at least once: a link lost before
        this delivers them again). Runtime calls it after handling them."""
        if self._acks and self.sock is not None:
            acks, self._acks = self._acks, b""
            self._write(acks)

    def _send_ping(self):
        self._write(packet.pingreq())

    def _work_waiting(self):
        return bool(self._early or self._more or self._fault)
