# The RFID item source driven through fake serial ports and a fake clock (both interpreters).
from _util import raises

from mqtt_controller import rfid, yrm100
from mqtt_controller.compat import ticks_add

STOP = yrm100.cmd_stop()
POLL = yrm100.cmd_multi_poll(rfid.POLL_COUNT)
KR = yrm100.cmd_set_region(6)
P26 = yrm100.cmd_set_power(2600)


class FakePort:
    def __init__(self, name):
        self.name = name
        self.is_open = False
        self.fail_open = False
        self.fail_read = False
        self.written = []
        self.inbox = b""
        self.opens = 0

    def open(self):
        self.opens += 1
        if self.fail_open:
            raise OSError(2, "no such device")
        self.is_open = True

    def read(self):
        if self.fail_read:
            raise OSError(5, "EIO")
        d, self.inbox = self.inbox, b""
        return d

    def write(self, data):
        self.written.append(data)
        return len(data)

    def pollable(self):
        return self

    def close(self):
        self.is_open = False


def epc(code, n):
    return code.encode() + bytes((0, 0, 0, 0, 0, 0, 0, n))


def make(n=1, **kw):
    ports = [FakePort("p%d" % i) for i in range(n)]
    s = rfid.parse_settings(kw)
    src = rfid.RfidSource(ports, s["RFID_POWER"], s["RFID_REGION"], s["RFID_RSSI_MIN"],
                          s["RFID_PRESENCE"], s["RFID_ABSENCE"], s["RFID_CYCLE_MS"], now_ms=0)
    return src, ports


def test_setup_commands_are_paced_by_responses():
    src, (p,) = make()
    assert p.written == [STOP]  # one command at a time
    assert src.next_ms(0) == rfid.CMD_GAP_MS
    p.inbox = yrm100.response(0x28)
    src.read(10)
    assert p.written == [STOP, KR]
    src.read(10 + rfid.CMD_GAP_MS)  # no answer: go on after CMD_GAP_MS
    assert p.written == [STOP, KR, P26]
    p.inbox = yrm100.response(0xB6)
    src.read(300)
    assert p.written == [STOP, KR, P26]
    assert src.next_ms(300) is None  # idle, nothing due: the loop may sleep


def test_polls_only_while_shopping_and_emits_counts_per_cycle():
    src, (p,) = make(RFID_CYCLE_MS=500, RFID_REGION="keep")
    assert src.read(1000) == []  # setup done (gap elapsed)
    src.read(1200)
    assert yrm100.cmd_set_region(6) not in p.written
    p.written = []
    p.inbox = yrm100.tag_notice(epc("MLON", 1), -40)
    assert src.read(1300) == []  # not shopping: tags ignored
    src.set_active(True, 2000)
    assert p.written == [POLL]
    p.inbox = (yrm100.tag_notice(epc("MLON", 1), -40) + yrm100.tag_notice(epc("MLON", 2), -50)
               + yrm100.tag_notice(epc("APPL", 1), -70))
    assert src.read(2100) == []
    assert src.next_ms(2100) == 400
    assert src.read(2500) == ["MLON=2"]
    p.inbox = yrm100.tag_notice(epc("MLON", 1), -40)
    assert src.read(3000) == []  # MLON 2 missed one cycle
    assert src.read(3500) == ["MLON=1"]  # ... and two: gone
    assert src.read(4000) == ["MLON=0"]
    src.set_active(False, 5100)
    assert p.written[-1] == STOP
    assert src.next_ms(5200) is None


def test_a_late_loop_does_not_make_tags_miss_cycles():
    src, (p,) = make(RFID_CYCLE_MS=100)
    src.set_active(True, 0)
    p.inbox = yrm100.tag_notice(epc("MLON", 1), -40)
    assert src.read(100) == ["MLON=1"]
    p.inbox = yrm100.tag_notice(epc("MLON", 1), -40)
    assert src.read(1000) == []  # nine cycles late: counted as one, and the tag was seen
    assert src.next_ms(1000) == 100
    assert src.read(1100) == []
    assert src.read(1200) == ["MLON=0"]


def test_reactivation_forgets_previous_tags():
    src, (p,) = make(RFID_CYCLE_MS=100)
    src.set_active(True, 0)
    p.inbox = yrm100.tag_notice(epc("MLON", 1), -40)
    src.read(50)
    assert src.read(100) == ["MLON=1"]
    src.set_active(False, 150)
    src.set_active(True, 200)
    p.inbox = yrm100.tag_notice(epc("MLON", 1), -40)
    src.read(250)
    assert src.read(300) == ["MLON=1"]


def test_lost_reader_is_reopened_with_backoff_and_others_keep_working():
    src, (a, b) = make(2, RFID_CYCLE_MS=100, RFID_ABSENCE=3)
    src.set_active(True, 0)
    a.inbox = yrm100.tag_notice(epc("MLON", 1), -40)
    b.inbox = yrm100.tag_notice(epc("MLON", 2), -40)
    assert src.read(100) == ["MLON=2"]
    b.fail_read = True
    b.fail_open = True
    a.inbox = yrm100.tag_notice(epc("MLON", 1), -40)
    assert src.read(150) == []
    assert len(src.pollables()) == 1
    assert src.next_ms(150) == 50  # cycle end comes before the reopen at 150 + 500
    out = []
    t = 200
    while t <= 600:
        a.inbox = yrm100.tag_notice(epc("MLON", 1), -40)
        out += src.read(t)
        t += 100
    assert out == ["MLON=1"]  # b's tag left after the absence window, a's stayed
    assert b.opens == 1
    src.read(649)
    assert b.opens == 1
    src.read(650)  # first back-off step (500 ms): fails again
    assert b.opens == 2 and not b.is_open
    assert src.next_ms(650) <= 100  # the cycle; the reopen is 1000 ms away
    b.fail_open = False
    b.fail_read = False
    src.read(1649)
    assert b.opens == 2
    src.read(1650)  # second back-off step (1000 ms)
    assert b.is_open and b.opens == 3
    assert len(src.pollables()) == 2
    assert b.written[-1] == STOP  # setup starts again
    st = src.stats()
    assert st["lost"] == 1 and st["opens"] == 3


def test_reopened_reader_resumes_polling():
    src, (p,) = make(RFID_CYCLE_MS=100)
    src.set_active(True, 0)
    p.fail_read = True
    src.read(10)
    p.fail_read = False
    p.written = []
    src.read(510)
    assert p.written == [STOP]
    for t in (520, 620, 720, 820):
        p.inbox = yrm100.response(p.written[-1][2])
        src.read(t)
    assert p.written == [STOP, KR, P26, POLL]


def test_garbage_and_bad_frames_are_counted_not_raised():
    src, (p,) = make(RFID_CYCLE_MS=100)
    src.set_active(True, 0)
    bad = bytearray(yrm100.tag_notice(epc("MLON", 1), -40))
    bad[-2] ^= 0xFF
    wrong_len = yrm100.frame(0x22, b"\xd8\x30\x00MLON", yrm100.TYPE_NOTICE)
    p.inbox = (b"\x01\x02\xbb\x00" + bytes(bad) + wrong_len + yrm100.error_response(0x15)
               + yrm100.error_response(0x09) + yrm100.tag_notice(b"\x00\x01\x02\x03", -30))
    assert src.read(50) == []
    assert src.read(100) == []
    st = src.stats()
    assert st["bad_checksum"] == 1 and st["bad_tags"] == 1 and st["garbage"] >= 2
    assert st["reader_errors"] == 1 and st["bad_code"] == 1 and st["errors"] == 0


def test_read_never_raises():
    src, (p,) = make()

    def boom():
        raise RuntimeError("driver bug")

    p.read = boom
    assert src.read(10) == []
    assert src.stats()["errors"] == 1


def test_rearm_polling_periodically():
    src, (p,) = make(RFID_CYCLE_MS=1000)
    src.set_active(True, 0)
    for t in (1, 2, 3):
        p.inbox = yrm100.response(p.written[-1][2])
        src.read(t)
    assert p.written == [STOP, KR, P26, POLL]
    p.written = []
    for t in range(1003, rfid.REARM_MS, 1000):
        src.read(t)
        assert src.next_ms(t) <= 1000
    assert p.written == []
    src.read(rfid.REARM_MS + 3)
    assert p.written == [STOP]
    p.inbox = yrm100.response(0x28)
    src.read(rfid.REARM_MS + 10)
    assert p.written == [STOP, POLL]


def test_close_stops_and_closes():
    src, (p,) = make()
    src.set_active(True, 0)
    src.close()
    assert p.written[-1] == STOP and not p.is_open
    assert src.read(10) == [] and src.next_ms(10) is None


def test_settings_defaults_and_errors():
    s = rfid.parse_settings({})
    assert s == {"RFID_POWER": 2600, "RFID_REGION": 6, "RFID_RSSI_MIN": -58,
                 "RFID_PRESENCE": 1, "RFID_ABSENCE": 2, "RFID_CYCLE_MS": 500}
    s = rfid.parse_settings({"RFID_POWER": "20.5", "RFID_REGION": "us", "RFID_RSSI_MIN": "-60",
                             "RFID_PRESENCE": 2, "RFID_ABSENCE": "4", "RFID_CYCLE_MS": "250"})
    assert s == {"RFID_POWER": 2050, "RFID_REGION": 2, "RFID_RSSI_MIN": -60,
                 "RFID_PRESENCE": 2, "RFID_ABSENCE": 4, "RFID_CYCLE_MS": 250}
    assert rfid.parse_settings({"RFID_REGION": "keep"})["RFID_REGION"] is None
    assert rfid.parse_settings({"RFID_REGION": "0x04"})["RFID_REGION"] == 4
    for key, bad in (("RFID_POWER", "loud"), ("RFID_POWER", 40), ("RFID_POWER", True),
                     ("RFID_REGION", "MARS"), ("RFID_RSSI_MIN", "5"), ("RFID_RSSI_MIN", 1.5),
                     ("RFID_PRESENCE", 0), ("RFID_ABSENCE", "x"), ("RFID_CYCLE_MS", 10)):
        e = raises(ValueError, rfid.parse_settings, {key: bad})
        assert key in str(e), (key, e)


def test_open_source_spec_errors():
    for bad in ("", " , ", "ttyUSB0", "uart", "uartx", "uart1:17", "/dev/a,/dev/a",
                ",".join("/dev/ttyUSB%d" % i for i in range(9))):
        e = raises(ValueError, rfid.open_source, bad, {})
        assert "ITEM_SOURCE" in str(e), (bad, e)
    raises(ValueError, rfid.open_source, "/dev/null-rfid", {"RFID_POWER": "x"})


def test_unavailable_readers_do_not_raise():
    src = rfid.open_source("/nonexistent/ttyUSB0,uart2,uart1:17:16", {})
    assert src.pollables() == []
    assert src.next_ms(ticks_add(0, 0)) is not None
    src.close()


def test_reopen_back_off_doubles_to_16_s_and_starts_over_once_open():
    p = FakePort("p0")
    p.fail_open = True
    src = rfid.RfidSource([p], 2600, 6, -58, 1, 2, 500, now_ms=0)
    t, gaps = 0, []
    while len(gaps) < 7:
        d = src.next_ms(t)
        opens = p.opens
        src.read(t + d - 1)
        assert p.opens == opens  # not before it is due
        t += d
        src.read(t)
        assert p.opens == opens + 1
        gaps.append(d)
    assert gaps == [500, 1000, 2000, 4000, 8000, 16000, 16000], gaps
    p.fail_open = False
    t += src.next_ms(t)
    src.read(t)
    assert p.is_open
    p.fail_read = True  # lost once open: the first step again
    src.read(t + 1)
    assert not p.is_open and src.next_ms(t + 1) == 500
