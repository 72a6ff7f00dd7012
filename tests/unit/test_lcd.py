from mqtt_controller import lcd


class FakeBus:
    def __init__(self, fail_after=None):
        self.writes = []
        self.fail_after = fail_after
        self.closed = False

    def writeto(self, addr, data):
        if self.fail_after is not None and len(self.writes) >= self.fail_after:
            raise OSError(121, "remote I/O error")
        self.writes.append((addr, bytes(data)))

    def close(self):
        self.closed = True


def nib(n, rs=0, bl=0x08):
    v = (n << 4) | bl | rs
    return bytes((v | 0x04, v))


def byte(b, rs=0, bl=0x08):
    return nib(b >> 4, rs, bl) + nib(b & 0x0F, rs, bl)


def test_init_sequence_is_the_hd44780_4bit_protocol():
    bus = FakeBus()
    lcd.Lcd(bus, 0x27).init()
    assert all(a == 0x27 for a, _ in bus.writes)
    got = [d for _, d in bus.writes]
    assert got == [
        b"\x08",  # all lines low, backlight on
        b"\x3c\x38", b"\x3c\x38", b"\x3c\x38",  # 0x3 three times (8-bit mode), E high then low
        b"\x2c\x28",  # 0x2: 4-bit mode
        b"\x2c\x28\x8c\x88",  # 0x28 function set: 4-bit, 2 lines, 5x8
        b"\x0c\x08\x8c\x88",  # 0x08 display off
        b"\x0c\x08\x1c\x18",  # 0x01 clear
        b"\x0c\x08\x6c\x68",  # 0x06 entry mode: increment
        b"\x0c\x08\xcc\xc8",  # 0x0C display on, no cursor
    ]
    assert got[5:] == [byte(0x28), byte(0x08), byte(0x01), byte(0x06), byte(0x0C)]


def test_write_line_sets_the_address_then_sends_16_characters():
    bus = FakeBus()
    d = lcd.Lcd(bus, 0x3F)
    d.write_line(1, "TOTAL 15,000 KRW")
    (addr, data), = bus.writes
    assert addr == 0x3F
    assert data[:4] == byte(0xC0)  # DDRAM address 0x40 = row 2
    expected = b"".join(byte(ord(c), rs=1) for c in "TOTAL 15,000 KRW")
    assert data[4:] == expected
    assert len(data) == 4 + 16 * 4
    # "T" = 0x54: high nibble 5 with RS=1 -> 0x5D/0x59, low nibble 4 -> 0x4D/0x49
    assert data[4:8] == b"\x5d\x59\x4d\x49"


def test_short_text_is_padded_long_text_cut_odd_characters_replaced():
    bus = FakeBus()
    d = lcd.Lcd(bus)
    d.write_line(0, "AB")
    data = bus.writes[0][1]
    assert data[:4] == byte(0x80)
    assert data[4:] == byte(0x41, 1) + byte(0x42, 1) + byte(0x20, 1) * 14
    d.write_line(0, "X" * 20)
    assert len(bus.writes[1][1]) == 4 + 64
    d.write_line(0, "\u20a9~\x01")
    assert bus.writes[2][1][4:16] == byte(0x3F, 1) * 3


def test_backlight_bit():
    bus = FakeBus()
    d = lcd.Lcd(bus, backlight=False)
    d.command(0x0C)
    assert bus.writes[0][1] == byte(0x0C, bl=0)
    d.set_backlight(True)
    assert bus.writes[1][1] == b"\x08"
    d.set_backlight(False)
    assert bus.writes[2][1] == b"\x00"


def test_bus_errors_propagate_to_the_caller():
    bus = FakeBus(fail_after=0)
    try:
        lcd.Lcd(bus).write_line(0, "x")
    except OSError:
        return
    raise AssertionError("no OSError")
