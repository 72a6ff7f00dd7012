from _util import raises
from test_lcd import FakeBus, byte

from mqtt_controller import display, lcd


def test_group_thousands():
    assert display.group(0) == "0"
    assert display.group(999) == "999"
    assert display.group(1000) == "1,000"
    assert display.group(15000) == "15,000"
    assert display.group(1234567) == "1,234,567"
    assert display.group(-1500) == "-1,500"


def test_total_text_fits_16_columns():
    assert display.total_text(15000) == "TOTAL 15,000 KRW"
    assert display.total_text(150000) == "TOTAL 150,000KRW"
    assert display.total_text(1500000) == "1,500,000 KRW"
    for n in (0, 5, 99999, 10 ** 9, 10 ** 15, 10 ** 20):
        assert len(display.total_text(n)) <= 16


def test_lcd_lines():
    assert lcd.lcd_lines(("idle", 1, 0, None, None)) == ("BASKET 1", "READY")
    assert lcd.lcd_lines(("shopping", 1, 3, None, None)) == ("3 ITEMS       #1", "")
    assert lcd.lcd_lines(("shopping", 12, 1, 15000, None)) == ("1 ITEM       #12",
                                                            "TOTAL 15,000 KRW")
    # Idle never shows a total, not even TOTAL 0 KRW: it could only be an old one.
    assert lcd.lcd_lines(("idle", 1, 0, 15000, None)) == ("BASKET 1", "READY")
    assert lcd.lcd_lines(("idle", 1, 0, 0, None)) == ("BASKET 1", "READY")
    top, _ = lcd.lcd_lines(("shopping", 123456789, 999, None, None))
    assert len(top) <= 16


def test_console_display_prints_one_line_per_change():
    out = []
    d = display.ConsoleDisplay(out.append)
    d.render(("idle", 1, 0, None, None))
    d.render(("idle", 1, 0, None, None))
    d.render(("shopping", 1, 0, None, None))
    d.render(("shopping", 1, 3, None, None))
    d.render(("shopping", 1, 3, 15000, None))
    d.render(("idle", 1, 0, None, None))
    d.render(("idle", 1, 0, 0, None))  # idle never shows a total, not even TOTAL 0 KRW
    d.render(None)  # malformed: logged, nothing printed, no exception
    assert out == [
        "[display] basket 1 | ready",
        "[display] basket 1 | 0 items",
        "[display] basket 1 | 3 items",
        "[display] basket 1 | 3 items | TOTAL 15,000 KRW",
        "[display] basket 1 | ready",
    ]


def test_lcd_display_writes_only_changed_rows():
    bus = FakeBus()
    d = lcd.LcdDisplay(1, 0x27, open_bus=lambda n, sda, scl: bus)
    assert d.working
    n_init = len(bus.writes)
    d.render(("idle", 7, 0, None, None))
    d.render(("idle", 7, 0, None, None))
    d.render(("shopping", 7, 2, None, None))
    d.render(("shopping", 7, 2, 4500, None))
    w = [data for _, data in bus.writes[n_init:]]
    assert len(w) == 5  # idle: both rows; shopping: both (READY goes); total: bottom row
    assert w[0][:4] == byte(0x80) and w[1][:4] == byte(0xC0) and w[4][:4] == byte(0xC0)
    assert w[1][4:] == b"".join(byte(ord(c), 1) for c in "READY           ")
    assert w[4][4:] == b"".join(byte(ord(c), 1) for c in "TOTAL 4,500 KRW ")


def test_missing_lcd_is_survived():
    opened = []

    def no_bus(n, sda, scl):
        opened.append(n)
        raise OSError(2, "No such file or directory: /dev/i2c-1")

    d = lcd.LcdDisplay(1, 0x27, open_bus=no_bus)
    assert not d.working
    d.render(("idle", 1, 0, None, None))  # no exception; no retry before LCD_RETRY_MS
    d.render(("shopping", 1, 1, None, None))
    assert opened == [1]
    assert d.failures == 1


def test_failing_lcd_is_survived():
    bus = FakeBus(fail_after=12)  # the init sequence takes 10 writes
    d = lcd.LcdDisplay(1, 0x27, open_bus=lambda n, sda, scl: bus)
    assert d.working
    d.render(("idle", 1, 0, None, None))
    d.render(("shopping", 1, 1, None, None))  # the bus fails now
    assert not d.working
    assert bus.closed
    d.render(("shopping", 1, 2, None, None))


def test_open_display_specs():
    assert isinstance(display.open_display(None), display.ConsoleDisplay)
    assert isinstance(display.open_display("console"), display.ConsoleDisplay)
    seen = []

    def fake(n, sda, scl):
        seen.append((n, sda, scl))
        return FakeBus()

    d = display.open_display("lcd:1:0x27", open_bus=fake)
    assert isinstance(d, lcd.LcdDisplay) and d.addr == 0x27 and d.bus_no == 1
    d = display.open_display("lcd:0:39:21:22", open_bus=fake)
    assert d.addr == 0x27 and d.bus_no == 0
    d = display.open_display("lcd", open_bus=fake)
    assert d.addr == 0x27 and d.bus_no == 1
    assert seen == [(1, None, None), (0, 21, 22), (1, None, None)]
    for bad in ("lcd:1", "lcd:x:0x27", "lcd:1:0x99", "lcd:1:0x27:21", "oled", "lcd:1:0x27:a:b"):
        e = raises(ValueError, display.open_display, bad)
        assert "DISPLAY" in str(e), bad


def test_real_bus_that_does_not_exist_is_survived():
    d = display.open_display("lcd:99:0x27")  # no /dev/i2c-99 (no fcntl on MicroPython unix)
    assert not d.working
    d.render(("idle", 1, 0, None, None))
    d.close()


def test_console_notices():
    d = display.console_text
    assert d(("idle", 3, 0, None, "ready | PIN 482913")) == (
        "[display] basket 3 | ready | PIN 482913")
    assert d(("idle", 3, 0, None, "ready | locked until 08:05")) == (
        "[display] basket 3 | ready | locked until 08:05")
    assert d(("idle", 3, 0, None, "thank you | PIN 482913")) == (
        "[display] basket 3 | thank you | PIN 482913")
    assert d(("idle", 3, 0, None, "thank you | locked until 08:05")) == (
        "[display] basket 3 | thank you | locked until 08:05")
    assert d(("shopping", 3, 2, 5000, "ask staff")) == (
        "[display] basket 3 | 2 items | ask staff | TOTAL 5,000 KRW")
    assert d(("idle", 3, 0, None, None)) == "[display] basket 3 | ready"
    assert d(("shopping", 3, 2, 5000, None)) == "[display] basket 3 | 2 items | TOTAL 5,000 KRW"


def test_lcd_notices():
    ll = lcd.lcd_lines
    assert ll(("idle", 3, 0, None, "ready | PIN 482913")) == ("BASKET 3", "PIN 482913")
    assert ll(("idle", 3, 0, None, "thank you | PIN 12345678")) == ("Thank you!", "PIN 12345678")
    assert ll(("idle", 3, 0, None, "ready | locked until 08:05")) == ("BASKET 3",
                                                                       "Locked to 08:05")
    assert ll(("idle", 3, 0, None, "thank you | locked until 8:05 am")) == (
        "Thank you!", "Locked 8:05 am")
    assert ll(("idle", 3, 0, None, "ready | locked until 2024-01-02 08:05")) == (
        "BASKET 3", "2024-01-02 08:05")
    assert ll(("shopping", 3, 2, 5000, "ask staff")) == ("2 ITEMS       #3", "Ask staff  5,000")
    assert ll(("shopping", 3, 2, 99999, "ask staff"))[1] == "Ask staff 99,999"
    assert ll(("shopping", 3, 2, 100000, "ask staff"))[1] == "Ask staff"  # too wide: no figure
    for view in (("idle", 3, 0, None, "thank you | locked until " + "x" * 16),
                 ("shopping", 123456789, 999, 10 ** 15, "ask staff")):
        top, bottom = ll(view)
        assert len(top) <= 16 and len(bottom) <= 16, view


def test_lcd_display_shows_the_pin_row():
    bus = FakeBus()
    d = lcd.LcdDisplay(1, 0x27, open_bus=lambda n, sda, scl: bus)
    n_init = len(bus.writes)
    d.render(("idle", 3, 0, None, None))
    d.render(("idle", 3, 0, None, "ready | PIN 482913"))
    w = [data for _, data in bus.writes[n_init:]]
    assert len(w) == 3  # idle: both rows; the PIN: the bottom row only
    assert w[2][:4] == byte(0xC0)
    assert w[2][4:] == b"".join(byte(ord(c), 1) for c in "PIN 482913      ")
