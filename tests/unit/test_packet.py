from _util import raises

from mqtt_controller import packet
from mqtt_controller.packet import MQTTException, Reader


def test_connect_with_will_user_and_password():
    pkt = packet.connect("basket-1", 60, clean_session=False, user="u", password="pw",
                         will=("basket/1/availability", b"offline", 1, True))
    body = (b"\x00\x04MQTT\x04" + bytes([0x80 | 0x40 | 0x20 | 0x08 | 0x04]) + b"\x00\x3c"
            + b"\x00\x08basket-1" + b"\x00\x15basket/1/availability" + b"\x00\x07offline"
            + b"\x00\x01u" + b"\x00\x02pw")
    assert pkt == b"\x10" + bytes([len(body)]) + body


def test_connect_clean_anonymous():
    assert packet.connect("c", 30) == b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x1e\x00\x01c"


def test_publish_qos0_qos1_retain_dup():
    assert packet.publish("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"
    assert packet.publish("a/b", b"hi", qos=1, retain=True, pid=10) == (
        b"\x33\x09\x00\x03a/b\x00\x0ahi")
    assert packet.publish("a/b", b"", qos=1, pid=258, dup=True) == b"\x3a\x07\x00\x03a/b\x01\x02"


def test_long_publish_uses_multi_byte_length():
    pkt = packet.publish("t", b"x" * 200)
    assert pkt[:3] == b"\x30\xcb\x01"  # 203 = 0x4b + 1*128
    assert len(pkt) == 3 + 203


def test_subscribe_puback_ping_disconnect():
    assert packet.subscribe(1, [("basket/1/status", 1)]) == (
        b"\x82\x14\x00\x01\x00\x0fbasket/1/status\x01")
    assert packet.puback(0x1234) == b"\x40\x02\x12\x34"
    assert packet.pingreq() == b"\xc0\x00"
    assert packet.disconnect() == b"\xe0\x00"


def test_varint_boundaries():
    assert packet.varint(0) == b"\x00"
    assert packet.varint(127) == b"\x7f"
    assert packet.varint(128) == b"\x80\x01"
    assert packet.varint(16383) == b"\xff\x7f"
    assert packet.varint(268435455) == b"\xff\xff\xff\x7f"


def test_connack_codes():
    assert packet.parse_connack(b"\x00\x00") is False
    assert packet.parse_connack(b"\x01\x00") is True
    e = raises(MQTTException, packet.parse_connack, b"\x00\x04")
    assert "bad user name or password" in str(e) and e.code == 4
    e = raises(MQTTException, packet.parse_connack, b"\x00\x05")
    assert "not authorized" in str(e)
    raises(MQTTException, packet.parse_connack, b"\x00")


def test_reader_reassembles_packets_fed_a_byte_at_a_time():
    stream = (b"\x20\x02\x00\x00" + packet.publish("basket/1/status", b"start", 1, pid=7)
              + b"\xd0\x00")
    r = Reader()
    got = []
    for i in range(len(stream)):
        got.extend(r.feed(stream[i:i + 1]))
    assert [g[0] & 0xF0 for g in got] == [0x20, 0x30, 0xD0]
    topic, payload, qos, pid, retain = packet.parse_publish(got[1][0], got[1][1])
    assert (topic, bytes(payload), qos, pid, retain) == ("basket/1/status", b"start", 1, 7, False)


def test_reader_skips_an_oversized_packet_keeping_only_its_head():
    r = Reader(max_packet=100)
    big = packet.publish("basket/1/status", b"x" * 5000, qos=1, pid=9)
    got = []
    for i in range(0, len(big), 333):
        got.extend(r.feed(big[i:i + 333]))
    got.extend(r.feed(b"\xd0\x00"))
    assert len(got) == 2 and r.skipped == 1
    first, head, size = got[0]
    assert size == len(big) - 3 and len(head) < 400
    topic, _, qos, pid, _ = packet.parse_publish(first, head)
    assert (topic, qos, pid) == ("basket/1/status", 1, 9)  # enough to acknowledge it
    assert got[1][0] == 0xD0


def test_reader_rejects_broken_streams():
    raises(MQTTException, Reader().feed, b"\x30\xff\xff\xff\xff\x01")  # 5-byte length
    raises(MQTTException, Reader().feed, b"\x10\x00")  # CONNECT from a broker
    raises(MQTTException, Reader().feed, b"\x00\x00")
    raises(MQTTException, Reader().feed, b"\xf0\x00")


def test_malformed_publish_and_acks():
    raises(MQTTException, packet.parse_publish, 0x30, b"\x00")
    raises(MQTTException, packet.parse_publish, 0x30, b"\x00\x10abc")  # topic past the end
    raises(MQTTException, packet.parse_publish, 0x32, b"\x00\x01a\x00")  # no room for the pid
    raises(MQTTException, packet.parse_publish, 0x36, b"\x00\x01a\x00\x01")  # QoS 3
    raises(MQTTException, packet.parse_publish, 0x30, b"\x00\x02\xff\xfe")
    raises(MQTTException, packet.parse_pid, b"\x00", "PUBACK")
    assert packet.parse_pid(b"\x01\x02", "PUBACK") == 258


def test_ping_schedule():
    # keepalive 60 s: ping after 30 s of quiet either way, dead after 90 s without a packet.
    assert packet.ping_schedule(60, 0, 0, False) == (None, 30000)
    assert packet.ping_schedule(60, 10000, 29000, False) == (None, 1000)
    assert packet.ping_schedule(60, 30000, 0, False) == (packet.PING, 0)
    assert packet.ping_schedule(60, 0, 30000, False) == (packet.PING, 0)
    assert packet.ping_schedule(60, 31000, 31000, True) == (None, 59000)  # ping out: wait
    assert packet.ping_schedule(60, 90000, 0, True) == (packet.DEAD, 0)
    assert packet.ping_schedule(60, 90000, 0, False) == (packet.DEAD, 0)
