# HD44780 16x2 character LCD behind a PCF8574 I2C backpack (4-bit mode), and the I2C buses it
# can sit on: /dev/i2c-N through fcntl ioctl I2C_SLAVE (the Pi, standard library only) or
# machine.I2C (a board). Hardware modules are imported inside the bus classes.
#
# Bus interface: writeto(addr, data) (raises OSError), close().
# Lcd(bus, addr): init(), write_line(row, text), command(byte), set_backlight(on).
# LcdDisplay: display.py's interface on an Lcd (here, not in display.py: only an LCD basket
# loads it). A missing or failing LCD is logged once and retried now and then.
from mqtt_controller import log
from mqtt_controller.compat import const, sleep_ms, ticks_diff, ticks_ms
from mqtt_controller.display import group, items_text, total_text, unpack

# PCF8574 port bits on the usual backpack: P0 RS, P1 RW, P2 E, P3 backlight, P4-P7 D4-D7.
RS = const(0x01)
EN = const(0x04)
BACKLIGHT = const(0x08)

COLS = const(16)
ROWS = const(2)
_ROW_ADDR = (0x00, 0x40)

CLEAR = const(0x01)
ENTRY_INC = const(0x06)  # cursor moves right, no display shift
DISPLAY_ON = const(0x0C)  # display on, cursor and blink off
DISPLAY_OFF = const(0x08)
FUNCTION_4BIT_2LINE = const(0x28)  # 4-bit bus, 2 lines, 5x8 font
SET_DDRAM = const(0x80)

I2C_SLAVE = const(0x0703)  # linux/i2c-dev.h
LCD_RETRY_MS = const(30000)


class Lcd:
    def __init__(self, bus, addr=0x27, backlight=True):
        self.bus = bus
        self.addr = addr
        self.bl = BACKLIGHT if backlight else 0

    def _nibble(self, nib, rs):
        # The controller latches D4-D7 on the falling edge of E: data with E high, then E low.
        v = ((nib & 0x0F) << 4) | self.bl | rs
        return bytes((v | EN, v))

    def _byte(self, b, rs):
        return self._nibble(b >> 4, rs) + self._nibble(b, rs)

    def command(self, c):
        self.bus.writeto(self.addr, self._byte(c, 0))
        if c == CLEAR:
            sleep_ms(2)  # clear takes 1.52 ms

    def init(self):
        """The HD44780 "initialisation by instruction" sequence for a 4-bit bus."""
        self.bus.writeto(self.addr, bytes((self.bl,)))
        sleep_ms(50)  # > 40 ms after power-up
        for wait in (5, 1, 1):  # three times "8-bit mode", whatever state it was left in
            self.bus.writeto(self.addr, self._nibble(0x3, 0))
            sleep_ms(wait)
        self.bus.writeto(self.addr, self._nibble(0x2, 0))  # now 4-bit
        sleep_ms(1)
        for c in (FUNCTION_4BIT_2LINE, DISPLAY_OFF, CLEAR, ENTRY_INC, DISPLAY_ON):
            self.command(c)

    def write_line(self, row, text):
        """Writes one whole row (padded or cut to 16 characters) in a single I2C transfer."""
        data = self._byte(SET_DDRAM | _ROW_ADDR[row], 0)
        text = text[:COLS]
        text = text + " " * (COLS - len(text))
        for ch in text:
            o = ord(ch)
            data += self._byte(o if 0x20 <= o <= 0x7D else 0x3F, RS)  # the ROM's ASCII range
        self.bus.writeto(self.addr, data)

    def set_backlight(self, on):
        self.bl = BACKLIGHT if on else 0
        self.bus.writeto(self.addr, bytes((self.bl,)))


class LinuxI2C:
    """/dev/i2c-N with the standard library (the Pi: enable I2C, bus 1 on pins 3/5)."""

    def __init__(self, bus):
        import fcntl
        import os

        self._os = os
        self._ioctl = fcntl.ioctl
        self._fd = os.open("/dev/i2c-%d" % bus, os.O_RDWR)
        self._addr = None

    def writeto(self, addr, data):
        if self._fd is None:
            raise OSError(9, "I2C bus closed")
        if addr != self._addr:
            self._ioctl(self._fd, I2C_SLAVE, addr)
            self._addr = addr
        n = self._os.write(self._fd, data)
        if n != len(data):
            raise OSError(5, "short I2C write")

    def close(self):
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                self._os.close(fd)
            except OSError:
                pass


class MachineI2C:
    """machine.I2C on a board; sda/scl pin numbers, or the port's defaults when None."""

    def __init__(self, bus, sda=None, scl=None, freq=100000):
        from machine import I2C, Pin

        if sda is None:
            self._i2c = I2C(bus, freq=freq)
        else:
            self._i2c = I2C(bus, sda=Pin(sda), scl=Pin(scl), freq=freq)

    def writeto(self, addr, data):
        self._i2c.writeto(addr, data)

    def close(self):
        pass


def open_i2c(bus, sda=None, scl=None):
    """The I2C bus for this platform: machine.I2C where it exists, else /dev/i2c-<bus>."""
    try:
        import machine

        board = hasattr(machine, "I2C")
    except ImportError:
        board = False
    if board:
        return MachineI2C(bus, sda, scl)
    return LinuxI2C(bus)


def _pair(left, right):
    """left and right on one row, right-aligned; left alone when both do not fit."""
    pad = 16 - len(left) - len(right)
    return left + " " * pad + right if pad >= 1 else left


def lcd_lines(view):
    """The two 16-character rows for a view. Notices: idle `BASKET 3` (`Thank you!` after a
    checkout) over `PIN 482913` / `Locked to 08:05`; shopping with lines the catalogue does
    not know, `Ask staff` with the total's figure beside it when it fits (to 99,999 won)."""
    shopping, basket, count, total, notice = unpack(view)
    if shopping:
        top = _pair(items_text(count).upper(), "#%s" % basket)
        bottom = total_text(total) if total is not None else ""
        if notice:
            bottom = _pair("Ask staff", group(total) if total is not None else "")
    elif notice:  # "ready | PIN 482913", "thank you | locked until 08:05"
        head, _, bottom = notice.partition(" | ")
        top = "BASKET %s" % basket if head == "ready" else "Thank you!"
        if bottom.startswith("locked until "):
            for f in ("Locked to %s", "Locked %s", "%s"):  # locked_until: 1-16 characters
                if len(f % bottom[13:]) <= 16:
                    break
            bottom = f % bottom[13:]
    else:  # idle: never a total (it could only be an old one)
        top = "BASKET %s" % basket
        bottom = "READY"
    return top[:16], bottom[:16]


class LcdDisplay:
    def __init__(self, bus, addr, sda=None, scl=None, open_bus=None):
        self._open_bus = open_bus or open_i2c
        self.bus_no = bus
        self.addr = addr
        self.sda = sda
        self.scl = scl
        self._bus = None
        self._lcd = None
        self._rows = [None, None]
        self._failed_at = None
        self.failures = 0
        self._start(ticks_ms())

    @property
    def working(self):
        return self._lcd is not None

    def _start(self, now):
        try:
            self._bus = self._open_bus(self.bus_no, self.sda, self.scl)
            lcd = Lcd(self._bus, self.addr)
            lcd.init()
        except Exception as e:
            self._fail(e, now)
            return
        self._lcd = lcd
        self._rows = [None, None]
        if self.failures:
            log.info("display: LCD at 0x%02x on I2C bus %d works again", self.addr, self.bus_no)

    def _fail(self, e, now):
        if self._failed_at is None:
            log.warning("display: LCD at 0x%02x on I2C bus %d not working (%s); the basket "
                        "carries on without it", self.addr, self.bus_no, e)
        self.failures += 1
        self._failed_at = now
        self._lcd = None
        bus, self._bus = self._bus, None
        if bus is not None:
            try:
                bus.close()
            except Exception:
                pass

    def render(self, view):
        now = ticks_ms()
        try:
            rows = lcd_lines(view)
        except Exception as e:
            log.warning("display: bad view %r (%s)", view, e)
            return
        if self._lcd is None:
            if self._failed_at is None or ticks_diff(now, self._failed_at) < LCD_RETRY_MS:
                return
            self._start(now)
            if self._lcd is None:
                return
        try:
            for row in (0, 1):
                if self._rows[row] != rows[row]:
                    self._rows[row] = None
                    self._lcd.write_line(row, rows[row])
                    self._rows[row] = rows[row]
        except Exception as e:
            self._fail(e, now)
            return
        if self._failed_at is not None:
            self._failed_at = None  # working again: a later failure is news again

    def close(self):
        if self._bus is not None:
            try:
                self._bus.close()
            except Exception:
                pass
        self._bus = self._lcd = None
