from _util import raises

from mqtt_controller import yrm100
from mqtt_controller.yrm100 import Decoder

# Frames as printed in the YRM100 (JRD-100) command manual.
MANUAL_NOTICE = bytes.fromhex("BB02220011C93400" "30751FEB705C5904E3D50D70" "3A76EF7E")


def test_commands_are_byte_exact():
    assert yrm100.cmd_multi_poll(10000) == bytes.fromhex("BB00270003222710837E")
    assert yrm100.cmd_stop() == bytes.fromhex("BB00280000287E")
    assert yrm100.cmd_set_region(0x01) == bytes.fromhex("BB0007000101097E")
    assert yrm100.cmd_set_region(yrm100.REGIONS["KR"]) == bytes.fromhex("BB00070001060E7E")
    assert yrm100.cmd_set_power(2000) == bytes.fromhex("BB00B6000207D08F7E")
    assert yrm100.cmd_set_power(2600) == bytes.fromhex("BB00B600020A28EA7E")
    assert yrm100.cmd_hopping(True) == bytes.fromhex("BB00AD0001FFAD7E")
    assert yrm100.cmd_hopping(False) == bytes.fromhex("BB00AD000100AE7E")
    assert yrm100.cmd_set_channel(1) == bytes.fromhex("BB00AB000101AD7E")


def test_command_ranges_are_checked():
    raises(ValueError, yrm100.cmd_multi_poll, 0)
    raises(ValueError, yrm100.cmd_multi_poll, 65536)
    raises(ValueError, yrm100.cmd_set_power, -1)


def test_manual_tag_notification_decodes():
    d = Decoder()
    frames = d.feed(MANUAL_NOTICE)
    assert frames == [(2, 0x22, MANUAL_NOTICE[5:-2])]
    rssi, pc, epc, crc = yrm100.parse_tag(frames[0][2])
    assert rssi == -55  # 0xC9
    assert pc == 0x3400
    assert epc == bytes.fromhex("30751FEB705C5904E3D50D70")
    assert crc == 0x3A76


def test_tag_notice_round_trip_and_signed_rssi():
    epc = b"MLON" + bytes(range(8))
    for rssi in (-128, -58, -1, 0, 5):
        f = yrm100.tag_notice(epc, rssi, crc=0xBEEF)
        (t, c, p), = Decoder().feed(f)
        assert (t, c) == (2, 0x22)
        assert yrm100.parse_tag(p) == (rssi, 0x3000, epc, 0xBEEF)


def test_parse_tag_rejects_wrong_epc_length():
    good = yrm100.tag_notice(b"MLON1234", -40)[5:-2]
    assert yrm100.parse_tag(good) is not None
    assert yrm100.parse_tag(good[:-1]) is None
    assert yrm100.parse_tag(good + b"\x00") is None
    assert yrm100.parse_tag(b"\xc9\x30") is None


def test_responses_and_errors():
    d = Decoder()
    frames = d.feed(bytes.fromhex("BB01B6000100B87E") + bytes.fromhex("BB01FF000115167E"))
    assert frames == [(1, 0xB6, b"\x00"), (1, 0xFF, b"\x15")]
    assert yrm100.response(0xB6) == bytes.fromhex("BB01B6000100B87E")
    assert yrm100.error_response(0x15) == bytes.fromhex("BB01FF000115167E")


def test_split_feeding_byte_by_byte():
    stream = yrm100.tag_notice(b"MLON0001", -40) + yrm100.response(0x28)
    d = Decoder()
    out = []
    for i in range(len(stream)):
        out += d.feed(stream[i:i + 1])
    assert [f[1] for f in out] == [0x22, 0x28]
    assert d.garbage == 0 and d.bad_checksum == 0 and d.bad_length == 0


def test_resync_on_garbage_counts_it():
    good = yrm100.tag_notice(b"MLON0001", -40)
    d = Decoder()
    frames = d.feed(b"\x00\x11\x7e" + good + b"\xbb\xbb" + good)
    assert len(frames) == 2
    assert d.garbage >= 3


def test_bad_checksum_rejected_and_counted():
    good = yrm100.tag_notice(b"MLON0001", -40)
    bad = bytearray(good)
    bad[-2] ^= 1
    d = Decoder()
    assert d.feed(bytes(bad) + good) == [(2, 0x22, good[5:-2])]
    assert d.bad_checksum == 1


def test_wrong_length_rejected_and_counted():
    good = yrm100.tag_notice(b"MLON0001", -40)
    short = bytearray(good)
    short[4] -= 1  # claims one byte less: the end byte is not where it should be
    d = Decoder()
    assert d.feed(bytes(short) + good) == [(2, 0x22, good[5:-2])]
    assert d.bad_length >= 1
    d = Decoder()
    huge = b"\xbb\x02\x22\xff\xff"  # far beyond max_params
    assert d.feed(huge + good) == [(2, 0x22, good[5:-2])]
    assert d.bad_length >= 1
    d = Decoder()
    assert d.feed(b"\xbb\x07\x22\x00\x00\x29\x7e" + good) == [(2, 0x22, good[5:-2])]  # bad type


def test_buffer_stays_bounded():
    d = Decoder(max_params=64)
    d.feed(b"\xbb\x00\x22\x00\x40" + b"\x00" * 40)  # a partial frame waits
    assert len(d._buf) <= 7 + 64
    d.feed(b"\x55" * 5000)
    assert len(d._buf) <= 7 + 64
    d.feed(bytes(3000))
    assert len(d._buf) <= 7 + 64


def _lcg(seed):
    # a tiny deterministic PRNG, the same on both interpreters
    state = [seed]

    def nxt():
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return state[0] >> 8

    return nxt


def test_random_bytes_never_raise():
    rnd = _lcg(12345)
    alphabet = b"\xbb\x7e\x00\x01\x02\x22\x27\x28\xff"
    d = Decoder()
    total = 0
    for _ in range(300):
        n = rnd() % 64
        chunk = bytearray(n)
        for i in range(n):
            r = rnd()
            # biased towards protocol bytes so that plausible headers occur often
            chunk[i] = alphabet[r % len(alphabet)] if r & 0x100 else r & 0xFF
        for t, c, p in d.feed(bytes(chunk)):
            total += 1
            if t == 2 and c == 0x22:
                tag = yrm100.parse_tag(p)
                if tag is not None:
                    yrm100.product_code(tag[2])
        assert len(d._buf) <= 7 + yrm100.MAX_PARAMS
    assert d.garbage > 0
    assert total >= 0


def test_frames_between_random_noise_all_found():
    rnd = _lcg(7)
    good = yrm100.tag_notice(b"APPL0007", -45)
    d = Decoder()
    found = 0
    for _ in range(50):
        noise = bytes([rnd() % 0xBB for _ in range(rnd() % 20)])  # no header byte in the noise
        found += len(d.feed(noise + good))
    assert found == 50


def test_product_code():
    assert yrm100.product_code(b"MLON\x00\x01") == "MLON"
    assert yrm100.product_code(b"A_-.rest") == "A_-."
    assert yrm100.product_code(bytes.fromhex("4D4C4F4E")) == "MLON"
    assert yrm100.product_code(b"ML N1234") is None
    assert yrm100.product_code(b"\x30\x75\x1f\xeb") is None
    assert yrm100.product_code(b"MLO") is None
    assert yrm100.product_code(b"ML\xc3\xa9") is None
