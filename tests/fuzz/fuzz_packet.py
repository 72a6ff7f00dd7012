"""Coverage-guided fuzz target (atheris) for the MQTT packet decoder and the client's handling of
what it decodes. Run with `make fuzz` (FUZZ_SECONDS=600 by default); not part of `make test`.

Input layout: byte 0 picks the chunk size the stream is cut into (1..32 bytes, or all at once),
byte 1 the reader's max_packet; the rest is the byte stream "from the broker". The only exception
allowed out of the decoder and the client is MQTTException (a protocol fault: the caller closes
the link); anything else, or a body buffer above its bound, is a crash.
"""

from __future__ import annotations

import sys

import atheris

from tests.support.chunk_sock import ChunkSock

with atheris.instrument_imports():
    from mqtt_controller import packet
    from mqtt_controller.mqtt import MQTTClient
    from mqtt_controller.packet import MQTTException

_MAX_PACKETS = (16, 64, 300, 4096)


def _chunks(data: bytes, size: int) -> list[bytes]:
    if size == 0:
        return [data] if data else []
    return [data[i:i + size] for i in range(0, len(data), size)]


def test_one(data: bytes) -> None:
    if len(data) < 2:
        return
    size = data[0] % 33
    max_packet = _MAX_PACKETS[data[1] % len(_MAX_PACKETS)]
    stream = data[2:]
    bound = max(max_packet, 300)

    # 1. The bare reader, with the client's parsers applied to what it returns.
    r = packet.Reader(max_packet)
    try:
        for chunk in _chunks(stream, size):
            for first, body, full in r.feed(chunk):
                assert len(body) <= bound, (len(body), bound)
                assert len(body) <= full
                kind = first & 0xF0
                if kind == packet.CONNACK:
                    packet.parse_connack(body)
                elif kind == packet.PUBLISH and len(body) == full:
                    topic, payload, qos, pid, retain = packet.parse_publish(first, body)
                    assert isinstance(topic, str) and qos in (0, 1, 2)
                elif kind == packet.PUBACK:
                    packet.parse_pid(body, "PUBACK")
            assert r._body is None or len(r._body) <= bound
    except MQTTException:
        pass

    # 2. The client on a fake socket: every packet type through _handle().
    c = MQTTClient("fuzz", "127.0.0.1", keepalive=0, max_packet=max_packet)
    c.inflight = {1: ("t", b"x", False)}
    c._order = [1]
    c.sock = ChunkSock(_chunks(stream, size))
    try:
        for _ in range(len(stream) // 1024 + 2):
            msgs = c.service(True)
            for topic, payload in msgs:
                assert isinstance(topic, str)
                assert payload is None or isinstance(payload, bytes)
    except MQTTException:
        pass
    except OSError as e:  # only the fake socket's EOF-free stream: never expected
        raise AssertionError("OSError from a stream without EOF: %r" % e)


def seeds() -> list[bytes]:
    """Valid traffic a broker sends, behind the two control bytes (whole, then 1-byte chunks)."""
    pkts = [
        b"\x20\x02\x00\x00",  # CONNACK
        b"\x90\x03\x00\x01\x01",  # SUBACK
        packet.puback(1),
        b"\xd0\x00",  # PINGRESP
        packet.publish("basket/1/status", b"start", qos=1, pid=7),
        packet.publish("basket/1/status", b'{"msg":"total","payload":{"basketid":1}}'),
        packet.publish("b/1/status", b"x" * 400, qos=1, pid=9),  # oversized for small limits
    ]
    stream = b"".join(pkts)
    return [bytes([0, 3]) + stream, bytes([1, 0]) + stream] + [bytes([5, 3]) + p for p in pkts]


def main() -> None:
    dirs = [a for a in sys.argv[1:] if not a.startswith("-")]
    if dirs:  # an empty corpus folder gets the seeds
        import os

        os.makedirs(dirs[0], exist_ok=True)
        if not os.listdir(dirs[0]):
            for i, s in enumerate(seeds()):
                with open(os.path.join(dirs[0], "seed-%02d" % i), "wb") as f:
                    f.write(s)
    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
