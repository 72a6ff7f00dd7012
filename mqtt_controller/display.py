# What the basket shows: its number when idle, the item count while shopping, and the total once
# the service sent it. A console display (default) and a 16x2 LCD (lcd.py) behind one interface.
#
# Display interface: render(view) where view = (state, basket_id, item_count, total): state
# "idle" or "shopping", total an int in won or None (the runtime clears it on `end`). Only
# changes are output. render() never raises; close().
# open_display(spec): "console" (default, one stdout line per change, e.g.
# "[display] basket 1 | 3 items | TOTAL 15,000 KRW") or "lcd:BUS:ADDR[:SDA:SCL]" (e.g.
# "lcd:1:0x27" on the Pi, "lcd:0:0x27:21:22" on an ESP32); bad spec -> ValueError naming DISPLAY.
# A missing or failing LCD is logged once and retried now and then; the basket keeps working.
from mqtt_controller import log
from mqtt_controller.compat import stdout_line, ticks_diff, ticks_ms
from mqtt_controller.controller import group_thousands as group

LCD_RETRY_MS = 30000


def total_text(total, width=16):
    """`TOTAL 15,000 KRW`, squeezed until it fits `width` characters."""
    g = group(total)
    for t in ("TOTAL %s KRW", "TOTAL %sKRW", "%s KRW", "%sKRW", "%s"):
        text = t % g
        if len(text) <= width:
            return text
    return g[-width:]


def _items(n):
    return "%d item%s" % (n, "" if n == 1 else "s")


def _unpack(view):
    state, basket, count, total = view
    return state == "shopping", basket, int(count or 0), total


def lcd_lines(view):
    """The two 16-character rows for a view."""
    shopping, basket, count, total = _unpack(view)
    if shopping:
        left = _items(count).upper()
        right = "#%s" % basket
        pad = 16 - len(left) - len(right)
        top = left + " " * pad + right if pad >= 1 else left
    else:
        top = "BASKET %s" % basket
    bottom = total_text(total) if total is not None else ""
    return top[:16], bottom


def console_text(view):
    shopping, basket, count, total = _unpack(view)
    parts = ["[display] basket %s" % basket]
    if shopping:
        parts.append(_items(count))
    elif total is None:
        parts.append("ready")
    if total is not None:
        parts.append(total_text(total, 40))
    return " | ".join(parts)


class ConsoleDisplay:
    def __init__(self, out=None):
        self._out = out  # a callable taking the line; print() when None
        self._last = None

    def render(self, view):
        try:
            text = console_text(view)
        except Exception as e:  # a malformed view must not stop the basket
            log.warning("display: bad view %r (%s)", view, e)
            return
        if text != self._last:
            self._last = text
            if self._out is None:
                stdout_line(text)
            else:
                self._out(text)

    def close(self):
        pass


class LcdDisplay:
    def __init__(self, bus, addr, sda=None, scl=None, open_bus=None):
        if open_bus is None:
            from mqtt_controller.lcd import open_bus
        self._open_bus = open_bus
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
        from mqtt_controller.lcd import Lcd

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


def _num(text, base=10):
    try:
        return int(text, base)
    except ValueError:
        return None


def open_display(spec=None, open_bus=None):
    s = (spec or "console").strip()
    if s == "console":
        return ConsoleDisplay()
    if s == "none":
        return None
    parts = s.split(":")
    if parts[0] == "lcd" and len(parts) in (1, 3, 5):
        bus, addr, sda, scl = 1, 0x27, None, None
        if len(parts) >= 3:
            bus = _num(parts[1])
            addr = _num(parts[2], 0)
        if len(parts) == 5:
            sda = _num(parts[3])
            scl = _num(parts[4])
            if sda is None or scl is None:
                bus = None
        if bus is not None and addr is not None and 0 <= bus <= 99 and 0x03 <= addr <= 0x77:
            return LcdDisplay(bus, addr, sda, scl, open_bus)
    raise ValueError("DISPLAY must be console, none or lcd:BUS:ADDR[:SDA:SCL], e.g. lcd:1:0x27 "
                     "(got %r)" % spec)
