# Stand-in for MicroPython's `machine` on the unix port, for the board tests. Do not upload.
# Pins read $BOARD_STUB_DIR/pin<N>; the watchdog records the gap before every feed; reset()
# ends the process with status 86 (a real board would restart).
import sys
import time

import _stubctl


class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, n, mode=-1, pull=-1):
        self.n = n

    def value(self, v=None):
        if v is not None:
            return None
        return int(_stubctl.read("pin%d" % self.n, "1"))


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.last = time.ticks_ms()
        _stubctl.log("WDT timeout=%d" % timeout)

    def feed(self):
        now = time.ticks_ms()
        gap = time.ticks_diff(now, self.last)
        self.last = now
        _stubctl.log("WDT.feed gap=%d" % gap)
        if gap > self.timeout:
            _stubctl.log("WDT expired")
            print("stub: watchdog expired (%d ms without a feed)" % gap)
            sys.exit(87)


# reset_cause(): $BOARD_STUB_DIR/reset_cause holds the number (default: power on). ESP32 values.
PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


def reset_cause():
    return int(_stubctl.read("reset_cause", str(PWRON_RESET)))


class ADC:
    """read_uv() is $BOARD_STUB_DIR/adc<N> (microvolts at pin N; default 1,850,000)."""

    ATTN_11DB = 3

    def __init__(self, pin, atten=None):
        self.n = pin.n if isinstance(pin, Pin) else pin
        _stubctl.log("ADC %d" % self.n)

    def atten(self, value):
        _stubctl.log("ADC.atten %d" % value)

    def read_uv(self):
        return int(_stubctl.read("adc%d" % self.n, "1850000"))

    def read_u16(self):
        return self.read_uv() * 65535 // 3300000


def reset():
    _stubctl.log("machine.reset")
    print("stub: machine.reset()")
    sys.exit(86)


def soft_reset():
    reset()


def unique_id():
    return b"\x24\x0a\xc4\x00\x00\x01"
