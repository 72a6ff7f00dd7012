# What the basket shows: its number and `ready` when idle, the item count while shopping, and the
# total once the service sent one for the cart held now. A console display (default) and a 16x2
# LCD (lcd.py) behind one interface.
#
# Display interface: render(view) where view = (state, basket_id, item_count, total, notice):
# state "idle" or "shopping", total an int in won or None (the controller clears it on every
# cart change; it is never shown while idle), notice a string or None: while idle the pin
# command's "ready | PIN 482913" / "thank you | locked until 08:05" (shown in place of "ready"),
# while shopping "ask staff" (lines the catalogue does not know, shown before the total). Only
# changes are output. render() never raises; close().
# open_display(spec): "console" (default, one stdout line per change, e.g.
# "[display] basket 1 | 3 items | TOTAL 15,000 KRW") or "lcd:BUS:ADDR[:SDA:SCL]" (e.g.
# "lcd:1:0x27" on the Pi, "lcd:0:0x27:21:22" on an ESP32); bad spec -> ValueError naming DISPLAY.
# The LCD's display class lives in lcd.py, so a basket with a console (or none) never loads it.
import sys

from mqtt_controller import log
from mqtt_controller.controller import group_thousands as group


def stdout_line(text):
    """Prints a line at once, also when stdout is a file or a pipe (journald, tests)."""
    sys.stdout.write(text + "\n")
    try:
        sys.stdout.flush()
    except (AttributeError, OSError):
        pass


def total_text(total, width=16):
    """`TOTAL 15,000 KRW`, squeezed until it fits `width` characters."""
    g = group(total)
    for t in ("TOTAL %s KRW", "TOTAL %sKRW", "%s KRW", "%sKRW", "%s"):
        text = t % g
        if len(text) <= width:
            return text
    return g[-width:]


def items_text(n):
    return "%d item%s" % (n, "" if n == 1 else "s")


def unpack(view):
    state, basket, count, total, notice = view
    return state == "shopping", basket, int(count or 0), total, notice


def console_text(view):
    shopping, basket, count, total, notice = unpack(view)
    if not shopping:  # never a total while idle: it would only be an old one
        return "[display] basket %s | %s" % (basket, notice or "ready")
    parts = ["[display] basket %s" % basket, items_text(count)]
    if notice:
        parts.append(notice)
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
            from mqtt_controller.lcd import LcdDisplay

            return LcdDisplay(bus, addr, sda, scl, open_bus)
    raise ValueError("DISPLAY: must be console, none or lcd:BUS:ADDR[:SDA:SCL], e.g. lcd:1:0x27 "
                     "(got %r)" % spec)
