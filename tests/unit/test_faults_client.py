# MQTTClient against a scripted socket (no network): what a hostile broker's bytes do to it.
from _util import raises

from mqtt_controller import packet
from mqtt_controller.mqtt import MQTTClient
from mqtt_controller.packet import MQTTException


class ScriptedSock:
    """recv() hands out `data` in pieces of at most n bytes; then 'would block' (EAGAIN)."""

    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.sent = bytearray()
        self.writes = 0

    def recv(self, n):
        if self.pos >= len(self.data):
            raise OSError(11, "would block")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk

    def send(self, data):
        self.sent.extend(data)
        self.writes += 1
        return len(data)

    def close(self):
        pass


def client_on(data, **kw):
    c = MQTTClient("t", "127.0.0.1", keepalive=kw.pop("keepalive", 0), **kw)
    c.sock = ScriptedSock(data)
    return c


def test_flood_of_tiny_packets_is_read_in_bounded_bites_then_refused():
    c = client_on(b"\xd0\x00" * 32768)
    e = raises(MQTTException, c.service, True)
    assert "never asked for" in str(e)
    assert 0 < c.sock.pos <= 2048  # not 64 KiB of packets at once (MemoryError on a board)


def test_bytes_are_read_in_bounded_bites():
    tail = packet.publish("basket/1/status", b"start", qos=1, pid=9)
    c = client_on(packet.puback(1) * 5000 + tail)  # unknown PUBACKs: counted, harmless
    got = []
    calls = 0
    while not got:
        got.extend(c.service(calls == 0))  # also when poll() is quiet (TLS hides bytes)
        calls += 1
        assert calls < 1000
        if calls == 1:
            assert c.sock.pos <= 2048 and c.next_ms() == 0  # come back at once for the rest
    assert calls > 1
    assert got == [("basket/1/status", b"start")]
    c.send_acks()
    assert bytes(c.sock.sent) == packet.puback(9)


def test_a_few_stray_pingresps_are_tolerated():
    tail = packet.publish("basket/1/status", b"end", qos=0)
    c = client_on(b"\xd0\x00" * 3 + tail)
    assert c.service(True) == [("basket/1/status", b"end")]


def test_commands_before_a_fault_are_handed_over_first():
    head = packet.publish("basket/1/status", b"start", qos=1, pid=3)
    c = client_on(head + b"\xd0\x00" * 10)
    assert c.service(True) == [("basket/1/status", b"start")]
    assert c.next_ms() == 0
    raises(MQTTException, c.service, False)  # after acknowledging the handled command
    assert bytes(c.sock.sent) == packet.puback(3)


def test_acknowledged_once_handled_after_the_update_in_one_write():
    c = client_on(packet.publish("basket/1/status", b"start", qos=1, pid=5))
    assert c.service(True) == [("basket/1/status", b"start")]
    assert bytes(c.sock.sent) == b""  # not before it is handled: a crash now loses nothing
    writes = c.sock.writes
    c.publish("basket/1/update", b"{}", retain=True, qos=1)
    assert c.sock.writes == writes + 1
    assert bytes(c.sock.sent) == packet.publish("basket/1/update", b"{}", 1, True, 1) + \
        packet.puback(5)
    c.send_acks()  # nothing left to acknowledge
    assert c.sock.writes == writes + 1


def test_unknown_puback_is_counted_not_fatal():
    c = client_on(packet.puback(4242))
    assert c.service(True) == []
    assert c.counters["unknown_puback"] == 1


def test_oversized_qos1_publish_is_acknowledged_and_reported():
    c = client_on(packet.publish("basket/1/status", b"x" * 10000, qos=1, pid=7), max_packet=512)
    got = []
    for _ in range(100):
        got.extend(c.service(True))
    assert got == [("basket/1/status", None)]
    c.send_acks()
    assert bytes(c.sock.sent) == packet.puback(7)
    assert c.counters["oversized"] == 1


def test_broken_packets_raise_mqttexception():
    for data in (b"\x10\x00", b"\x30\xff\xff\xff\xff\x01", b"\x32\x07\x03\xe8abc\x00\x01",
                 b"\x20\x02\x00\x00", b"\x90\x02\x00\x01", b"\x40\x03\x00\x01\x00",
                 b"\x34\x05\x00\x01a\x00\x01"):
        raises(MQTTException, client_on(data).service, True)


# -- seeded random fuzz, so MicroPython gets hostile input too (hypothesis covers CPython) ------
class Lcg:
    def __init__(self, seed):
        self.x = seed

    def below(self, n):
        self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.x >> 8) % n

    def bytes(self, n, alphabet=None):
        if alphabet is None:
            return bytes([self.below(256) for _ in range(n)])
        return bytes([alphabet[self.below(len(alphabet))] for _ in range(n)])


_MQTT_BYTES = b"\x20\x30\x32\x34\x36\x40\x90\xb0\xd0\x00\x01\x02\x03\x05\x7f\x80\xff/ab"


def test_random_bytes_into_the_client_only_raise_mqttexception():
    rnd = Lcg(8)
    for i in range(400):
        data = rnd.bytes(rnd.below(200), _MQTT_BYTES if i % 2 else None)
        c = client_on(data, max_packet=[8, 64, 4096][i % 3])
        try:
            for _ in range(len(data) + 2):
                c.service(True)
        except MQTTException:
            pass


def test_random_command_payloads_only_reject():
    from mqtt_controller import protocol

    rnd = Lcg(9)
    pieces = [b"{", b"}", b'"msg"', b'"total"', b'"payload"', b'"basketid"', b'"totalprice"',
              b":", b",", b"1", b"-1", b"1e9", b"[", b"]", b"null", b"start", b"\xff", b" "]
    for _ in range(600):
        payload = b"".join(pieces[rnd.below(len(pieces))] for _ in range(rnd.below(20)))
        try:
            cmd, arg = protocol.parse_command(payload, 1)
        except protocol.Rejected:
            continue
        assert cmd in ("start", "end", "total")


def test_random_item_lines_only_raise_carterror():
    from mqtt_controller import cart

    rnd = Lcg(10)
    alphabet = b"AZaz09_-.=+ \t\xc3\xa9\xff-=1"
    for _ in range(1500):
        line = rnd.bytes(rnd.below(70), alphabet)
        try:
            parsed = cart.parse_item_line(line)
        except cart.CartError:
            continue
        if parsed is not None:
            assert 0 <= parsed[2] <= cart.MAX_COUNT


def test_a_refused_optional_subscription_keeps_the_link_a_required_one_closes_it():
    c = client_on(b"\x90\x03\x00\x02\x80")  # SUBACK for packet id 2: refused
    c.subscribe("basket/1/status", 1)  # pid 1
    c.subscribe("basket/1/config", 1, optional=True)  # pid 2
    assert c.service(True) == []
    assert c.take_refused() == ["basket/1/config"]
    assert c.take_refused() == []
    c = client_on(b"\x90\x03\x00\x01\x80")  # the required one refused
    c.subscribe("basket/1/status", 1)
    e = raises(MQTTException, c.service, True)
    assert "subscription refused" in str(e)
