# Every CPython/MicroPython difference lives here; nothing else branches on the interpreter.
import sys
import time

MICROPYTHON = sys.implementation.name == "micropython"

try:  # MicroPython: compile-time constants
    from micropython import const
except ImportError:  # CPython: a plain function does
    def const(x):
        return x

if hasattr(time, "ticks_ms"):  # MicroPython: wrapping millisecond ticks
    ticks_ms = time.ticks_ms
    ticks_diff = time.ticks_diff
    ticks_add = time.ticks_add
else:  # CPython: a monotonic clock never wraps
    def ticks_ms():
        return int(time.monotonic() * 1000)

    def ticks_diff(a, b):
        return a - b

    def ticks_add(a, b):
        return a + b

if hasattr(time, "sleep_ms"):
    sleep_ms = time.sleep_ms
else:
    def sleep_ms(ms):
        time.sleep(ms / 1000)

try:  # MicroPython prints a traceback with this
    from sys import print_exception
except ImportError:
    import traceback

    def print_exception(exc, file=sys.stderr):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=file)

try:
    from os import urandom
except ImportError:  # some ports lack os.urandom
    urandom = None


def random_below(n):
    """A random integer in [0, n) for back-off jitter; no `random` module needed."""
    if n <= 1:
        return 0
    if urandom is not None:
        b = urandom(4)
        v = (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]
    else:
        v = ticks_ms() * 2654435761
    return v % n


def getenv(name, default=None):
    try:
        import os
        v = os.getenv(name)
    except (ImportError, AttributeError):  # a board has no environment
        v = None
    return default if v is None else v


def stderr_write(text):
    try:
        sys.stderr.write(text)
    except (AttributeError, OSError):
        print(text, end="")
