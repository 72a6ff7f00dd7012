# MQTT 3.1.1 packets, pure: encoders for what a client sends and an incremental reader for what
# it receives. The reader never holds more than `max_packet` bytes of one packet: a larger one is
# skipped as it streams by (only its first bytes are kept, to acknowledge a QoS 1 PUBLISH).
# And the keepalive policy both clients follow (link.Link applies it). No I/O here.
import struct

from mqtt_controller.compat import const

CONNECT = const(0x10)
CONNACK = const(0x20)
PUBLISH = const(0x30)
PUBACK = const(0x40)
SUBSCRIBE = const(0x82)
SUBACK = const(0x90)
UNSUBACK = const(0xB0)
PINGREQ = const(0xC0)
PINGRESP = const(0xD0)
DISCONNECT = const(0xE0)

_HEAD_KEEP = const(300)  # of a skipped PUBLISH: topic length, a topic of up to ~256, packet id
_FROM_SERVER = (CONNACK, PUBLISH, PUBACK, SUBACK, UNSUBACK, PINGRESP)

REFUSALS = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password",
    # Mosquitto 2: a wrong password, or a client id the login is not bound to (dynsec)
    5: "not authorized (check MQTT_USER, MQTT_PASSWORD and MQTT_CLIENT_ID)",
}


class MQTTException(Exception):
    """A protocol fault or a refusal by the broker; `code` is the CONNACK return code (or 0)."""

    def __init__(self, message, code=0):
        super().__init__(message)
        self.code = code


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _str(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack("!H", len(s)) + s


def _packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def connect(client_id, keepalive, clean_session=True, user=None, password=None, will=None):
    """will: (topic, payload, qos, retain) or None."""
    flags = 0x02 if clean_session else 0
    payload = _str(client_id)
    if will:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + _str(msg)
    if user is not None:
        flags |= 0x80
        payload += _str(user)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    return _packet(CONNECT, b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack("!H", keepalive)
                   + payload)


def publish(topic, payload, qos=0, retain=False, pid=0, dup=False):
    first = PUBLISH | (qos << 1) | (1 if retain else 0) | (0x08 if dup else 0)
    body = _str(topic)
    if qos:
        body += struct.pack("!H", pid)
    if isinstance(payload, str):
        payload = payload.encode()
    return _packet(first, body + payload)


def puback(pid):
    return bytes([PUBACK, 2]) + struct.pack("!H", pid)


def subscribe(pid, topics):
    """topics: a list of (topic, qos)."""
    body = struct.pack("!H", pid)
    for topic, qos in topics:
        body += _str(topic) + bytes([qos])
    return _packet(SUBSCRIBE, body)


def pingreq():
    return b"\xc0\x00"


def disconnect():
    return b"\xe0\x00"


def parse_connack(body):
    """Returns session_present; raises MQTTException for a refusal or a malformed CONNACK."""
    if len(body) != 2:
        raise MQTTException("malformed CONNACK (%d bytes)" % len(body))
    rc = body[1]
    if rc:
        raise MQTTException("connection refused: %s" % REFUSALS.get(rc, "code %d" % rc), rc)
    return bool(body[0] & 1)


def parse_publish(first, body):
    """Returns (topic, payload, qos, pid, retain); raises MQTTException when malformed."""
    qos = (first >> 1) & 3
    if qos == 3:
        raise MQTTException("PUBLISH with QoS 3")
    if len(body) < 2:
        raise MQTTException("PUBLISH shorter than its topic length")
    tlen = (body[0] << 8) | body[1]
    end = 2 + tlen
    if end + (2 if qos else 0) > len(body):
        raise MQTTException("PUBLISH topic length %d larger than the packet" % tlen)
    try:
        topic = bytes(body[2:end]).decode("utf-8")
    except (UnicodeError, ValueError):
        raise MQTTException("PUBLISH topic is not UTF-8")
    pid = 0
    if qos:
        pid = (body[end] << 8) | body[end + 1]
        end += 2
    return topic, body[end:], qos, pid, bool(first & 1)


def parse_pid(body, what):
    if len(body) != 2:
        raise MQTTException("malformed %s (%d bytes)" % (what, len(body)))
    return (body[0] << 8) | body[1]


PING = "ping"
DEAD = "dead"


def ping_schedule(keepalive_s, since_rx_ms, since_tx_ms, ping_out):
    """The keepalive policy of both clients: (action, ms until the next check). Ping when
    nothing was sent or received for half the keepalive; the link is dead after 1.5 x keepalive
    with no packet from the broker. action is PING, DEAD or None."""
    ka = keepalive_s * 1000
    wait = ka * 3 // 2 - since_rx_ms
    if wait <= 0:
        return DEAD, 0
    if not ping_out:
        ping_in = min(ka // 2 - since_tx_ms, ka // 2 - since_rx_ms)
        if ping_in <= 0:
            return PING, 0
        wait = min(wait, ping_in)
    return None, wait


class Reader:
    """Turns a byte stream into packets: feed() returns a list of (first_byte, body, size).
    For a packet over `max_packet`, body holds only its first bytes and len(body) < size."""

    def __init__(self, max_packet=4096):
        self.max_packet = max_packet
        self.skipped = 0
        self.reset()

    def reset(self):
        self._hdr = bytearray()
        self._size = -1  # remaining length of the packet being read; -1 while reading the header
        self._body = None
        self._skip = 0

    def feed(self, data):
        out = []
        i = 0
        n = len(data)
        while i < n:
            if self._size < 0:
                b = data[i]
                i += 1
                self._hdr.append(b)
                if len(self._hdr) == 1:
                    if (b & 0xF0) not in _FROM_SERVER:
                        raise MQTTException("unexpected packet type 0x%02x from broker" % b)
                    continue
                if b & 0x80:
                    if len(self._hdr) == 5:
                        raise MQTTException("remaining length longer than 4 bytes")
                    continue
                size = 0
                mult = 1
                for c in self._hdr[1:]:
                    size += (c & 0x7F) * mult
                    mult <<= 7
                self._size = size
                self._body = bytearray()
                if size > self.max_packet:
                    self._skip = size
                    self.skipped += 1
            elif self._skip:
                take = min(self._skip, n - i)
                room = _HEAD_KEEP - len(self._body)
                if room > 0:
                    self._body.extend(data[i:i + min(take, room)])
                i += take
                self._skip -= take
            else:
                take = min(self._size - len(self._body), n - i)
                self._body.extend(data[i:i + take])
                i += take
            if self._size >= 0 and not self._skip and (
                    len(self._body) == self._size or self._size > self.max_packet):
                out.append((self._hdr[0], bytes(self._body), self._size))
                self.reset()
        return out
