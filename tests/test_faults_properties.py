"""Property-based tests (hypothesis) of the three parsers that take input from outside: the MQTT
packet reader, the status-command parser and the item-line parser. Hostile input may only ever
raise the project's own error; valid input round-trips. (The same modules get a seeded random
fuzz under MicroPython in tests/unit/test_faults_client.py.)"""

from __future__ import annotations

import json
import os

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from mqtt_controller import cart, packet, protocol
from mqtt_controller.cart import CartError
from mqtt_controller.mqtt import MQTTClient
from mqtt_controller.packet import MQTTException, Reader
from mqtt_controller.protocol import Rejected
from tests.support.chunk_sock import ChunkSock

# HYPOTHESIS_EXAMPLES=5000 for a deeper search than the 300 examples `make test` runs.
settings.register_profile("faults", deadline=None,
                          max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "300")),
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("faults")

_HEAD_KEEP = 300  # packet.Reader keeps this much of a skipped packet


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given offsets (any order, duplicates and out-of-range ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(data)})
    out, prev = [], 0
    for p in points + [len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


def feed_all(r: Reader, chunks: list[bytes]) -> list[tuple[int, bytes, int]]:
    out = []
    for ch in chunks:
        out.extend(r.feed(ch))
    return out


cuts = st.lists(st.integers(min_value=0, max_value=20000), max_size=40)
max_packets = st.sampled_from([2, 16, 128, 300, 4096, 70000])


# -- packet reader ---------------------------------------------------------------------------
@given(data=st.binary(max_size=3000), cut=cuts, max_packet=max_packets)
@example(data=b"\x30\xff\xff\xff\xff\x01", cut=[], max_packet=4096)
@example(data=b"\x32\x07\x03\xe8abc\x00\x01", cut=[1], max_packet=4096)
def test_reader_on_arbitrary_bytes_only_raises_mqttexception(data: bytes, cut: list[int],
                                                             max_packet: int) -> None:
    r = Reader(max_packet)
    try:
        for first, body, size in feed_all(r, chunked(data, cut)):
            assert len(body) <= max(max_packet, _HEAD_KEEP)
            assert len(body) == size or (size > max_packet and len(body) < size)
            kind = first & 0xF0
            if kind == packet.PUBLISH and len(body) == size:
                packet.parse_publish(first, body)
            elif kind == packet.CONNACK:
                packet.parse_connack(body)
            elif kind == packet.PUBACK:
                packet.parse_pid(body, "PUBACK")
    except MQTTException:
        pass


@given(data=st.binary(max_size=3000), cut=cuts, max_packet=max_packets)
def test_client_on_arbitrary_bytes_only_raises_mqttexception(data: bytes, cut: list[int],
                                                             max_packet: int) -> None:
    c = MQTTClient("p", "127.0.0.1", keepalive=0, max_packet=max_packet)
    c.sock = ChunkSock([x for x in chunked(data, cut) if x])
    try:
        for _ in range(len(data) + 2):
            for topic, payload in c.service(True):
                assert isinstance(topic, str)
                assert payload is None or isinstance(payload, bytes)
    except MQTTException:
        pass


topics = st.text(st.characters(exclude_categories=["Cs"]), max_size=120)
publishes = st.tuples(topics, st.binary(max_size=5000), st.sampled_from([0, 1]),
                      st.integers(1, 65535), st.booleans(), st.booleans())


@given(msgs=st.lists(publishes, min_size=1, max_size=6), cut=cuts)
def test_publish_round_trips_through_the_reader_in_any_chunking(msgs, cut: list[int]) -> None:
    stream = b"".join(packet.publish(t, p, q, r, pid, d) for t, p, q, pid, r, d in msgs)
    got = feed_all(Reader(70000), chunked(stream, cut))
    assert len(got) == len(msgs)
    for (first, body, size), (t, p, q, pid, r, d) in zip(got, msgs):
        assert size == len(body)
        topic, payload, qos, got_pid, retain = packet.parse_publish(first, body)
        assert (topic, bytes(payload), qos, retain) == (t, p, q, r)
        assert got_pid == (pid if q else 0)
        assert bool(first & 0x08) == d


@given(msg=publishes, cut=cuts, max_packet=st.integers(16, 2000))
def test_oversized_publish_is_skipped_but_its_head_and_size_survive(msg, cut: list[int],
                                                                    max_packet: int) -> None:
    t, p, q, pid, r, d = msg
    pkt = packet.publish(t, p, q, r, pid, d)
    h = 1
    while pkt[h] & 0x80:
        h += 1
    h += 1  # fixed header: type byte and remaining length
    body_len = len(pkt) - h
    tail = packet.puback(7)  # the stream goes on after the skipped packet
    got = feed_all(Reader(max_packet), chunked(pkt + tail, cut))
    assert len(got) == 2 and got[1] == (packet.PUBACK, b"\x00\x07", 2)
    first, body, full = got[0]
    assert (first, full) == (pkt[0], body_len)
    if body_len > max_packet:
        assert body == pkt[h:h + min(_HEAD_KEEP, body_len)]
    else:
        assert body == pkt[h:]
        assert packet.parse_publish(first, body)[0] == t


@given(n=st.integers(0, 268_435_455))
def test_remaining_length_round_trips(n: int) -> None:
    r = Reader(0)  # every packet "oversized": only the header is decoded, the body skipped
    assert r.feed(b"\xd0" + packet.varint(n)) == ([] if n else [(0xD0, b"", 0)])
    assert r._size == (n if n else -1)


# -- status commands --------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=12)
keys = st.sampled_from(["msg", "MSG", "Msg", "payload", "PayLoad", "basketid", "BasketId",
                        "totalprice", "TotalPrice", "cart", "Cart", "unknown", "pin", "PIN",
                        "locked_until", "thanks", "x"])
command_like = st.recursive(
    st.sampled_from(["start", "end", "total", " START ", "End", "pin", "1234", "08:05"])
    | st.integers() | st.none() | st.booleans(),
    lambda inner: st.dictionaries(keys, inner, max_size=4), max_leaves=8)


@given(payload=st.binary(max_size=700))
@example(payload=b"[" * 600)
@example(payload=b'{"msg":"total","payload":{"basketid":1,"totalprice":1e400}}')
def test_parse_command_on_arbitrary_bytes_only_rejects(payload: bytes) -> None:
    try:
        cmd, arg = protocol.parse_command(payload, 1)
    except Rejected:
        return
    check_parsed(cmd, arg)


def check_parsed(cmd, arg) -> None:
    assert cmd in (protocol.START, protocol.END, protocol.TOTAL, protocol.PIN)
    if cmd == protocol.TOTAL:
        price, cart, unknown = arg
        assert protocol.is_int(price) and price >= 0
        assert cart is None or (isinstance(cart, str) and len(cart) <= protocol.MAX_DIGEST)
        assert protocol.is_int(unknown) and unknown >= 0
    elif cmd == protocol.PIN:
        pin, until, thanks = arg
        assert (pin is None) != (until is None)
        assert pin is None or (4 <= len(pin) <= 8 and all("0" <= c <= "9" for c in pin))
        assert until is None or (1 <= len(until) <= 16 and all(" " <= c <= "~" for c in until))
        assert thanks is True or thanks is False
    else:
        assert arg is None


@given(doc=st.one_of(json_values, command_like), basket=st.integers(0, 999))
def test_parse_command_on_json_shapes_only_rejects(doc, basket: int) -> None:
    text = json.dumps(doc).encode()
    try:
        cmd, arg = protocol.parse_command(text, basket)
    except Rejected:
        return
    check_parsed(cmd, arg)


def _case(word: str, flips: list[bool]) -> str:
    return "".join(ch.upper() if f else ch for ch, f in zip(word, flips + [False] * len(word)))


@given(basket=st.integers(0, 999_999_999), price=st.integers(0, 10**12),
       flips=st.lists(st.booleans(), max_size=12), spaces=st.booleans())
def test_valid_total_round_trips(basket: int, price: int, flips: list[bool],
                                 spaces: bool) -> None:
    doc = {_case("msg", flips): "total",
           _case("payload", flips): {_case("basketid", flips): basket,
                                     _case("totalprice", flips): price}}
    text = json.dumps(doc, separators=(", ", ": ") if spaces else (",", ":")).encode()
    assume(len(text) <= protocol.MAX_COMMAND)
    assert protocol.parse_command(text, basket) == (protocol.TOTAL, (price, None, 0))
    try:
        protocol.parse_command(text, basket + 1)
    except Rejected as e:
        assert "not this one" in str(e)
    else:
        raise AssertionError("a total for another basket was accepted")


# -- item lines ---------------------------------------------------------------------------------
codes = st.from_regex(r"\A[A-Za-z0-9_.][A-Za-z0-9_.\-]{0,31}\Z")


@given(line=st.one_of(st.text(max_size=100), st.binary(max_size=100)))
@example(line="A=" + "9" * 4)
@example(line=b"\xff")
@example(line="-")
def test_parse_item_line_only_raises_carterror(line) -> None:
    try:
        parsed = cart.parse_item_line(line)
    except CartError:
        return
    if parsed is None:
        return
    op, code, n = parsed
    assert op in (cart.ADD, cart.REMOVE, cart.SET)
    assert protocol.valid_code(code) and not code.startswith("-")
    assert 0 <= n <= cart.MAX_COUNT


@given(code=codes, op=st.sampled_from([cart.ADD, cart.REMOVE, cart.SET]),
       n=st.integers(0, 999), pad=st.sampled_from(["", " ", "\t", "  "]),
       as_bytes=st.booleans())
def test_valid_item_lines_round_trip(code: str, op: str, n: int, pad: str, as_bytes: bool) -> None:
    text = {cart.ADD: code, cart.REMOVE: "-" + code, cart.SET: "%s=%d" % (code, n)}[op]
    line = pad + text + pad
    parsed = cart.parse_item_line(line.encode() if as_bytes else line)
    assert parsed == (op, code, n if op == cart.SET else 1)


@given(lines=st.lists(st.one_of(st.text(max_size=40), codes, codes.map(lambda c: c + "=3"),
                                codes.map(lambda c: "-" + c)), max_size=60))
def test_cart_stays_within_bounds_whatever_the_lines(lines: list[str]) -> None:
    c = cart.Cart()
    for line in lines:
        try:
            parsed = cart.parse_item_line(line)
            if parsed:
                c.apply(*parsed)
        except CartError:
            pass
        assert len(c.items) <= cart.MAX_CODES
        assert all(1 <= v <= cart.MAX_COUNT for v in c.items.values())


@given(basket=st.integers(0, 999_999_999), pin=st.text("0123456789", min_size=4, max_size=8),
       until=st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1,
                     max_size=16),
       locked=st.booleans(), thanks=st.none() | st.booleans())
def test_valid_pin_round_trips(basket: int, pin: str, until: str, locked: bool,
                               thanks: bool | None) -> None:
    body: dict[str, object] = {"basketid": basket}
    body["locked_until" if locked else "pin"] = until if locked else pin
    if thanks is not None:
        body["thanks"] = thanks
    text = json.dumps({"msg": "pin", "payload": body}).encode()
    assert protocol.parse_command(text, basket) == (
        protocol.PIN, (None, until, bool(thanks)) if locked else (pin, None, bool(thanks)))
    body["pin" if locked else "locked_until"] = pin if locked else until  # both: rejected
    try:
        protocol.parse_command(json.dumps({"msg": "pin", "payload": body}).encode(), basket)
    except Rejected as e:
        assert "exactly one" in str(e)
    else:
        raise AssertionError("a pin command with both pin and locked_until was accepted")
