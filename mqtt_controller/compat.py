# What differs between CPython and MicroPython in the standard library and built-ins (time,
# sys, os, select, socket, signal, open), each as a small function or name. The rule: the shared
# modules branch on the interpreter only through this module. The adapters handle their own
# module's differences at the edge, where they import it, so a basket that does not load them
# pays no heap for them: tls.py (ssl; MQTT_TLS=1 only), serialport.py (termios or machine.UART)
# and lcd.py (/dev/i2c or machine.I2C); board.py runs on MicroPython only (its probes are for
# firmware versions).
import select
import sys
import time

MICROPYTHON = sys.implementation.name == "micropython"
# The health report's `runtime`: "cpython 3.11.7", "micropython 1.28.0".
RUNTIME = "%s %d.%d.%d" % ((sys.implementation.name,) + tuple(sys.implementation.version[:3]))

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


def release(name):
    """Forgets the start-up module mqtt_controller.<name> on MicroPython: once nothing refers
    to its functions any more, gc frees its code. A no-op on CPython (nothing worth saving)."""
    if MICROPYTHON:
        full = "mqtt_controller." + name
        if full in sys.modules:
            del sys.modules[full]
            try:
                delattr(sys.modules["mqtt_controller"], name)
            except (AttributeError, KeyError):
                pass


def mem_free():
    """Bytes free on MicroPython's heap (gc.mem_free, without a collection of its own: a
    Ctrl-C landing in a forced gc.collect() ends the unix port with "MemoryError: heap is
    locked" instead of a clean stop; garbage not yet collected counts as used); None on
    CPython."""
    if not MICROPYTHON:
        return None
    import gc

    return gc.mem_free()


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


_EAGAIN = (11, 35, 115)  # EAGAIN/EWOULDBLOCK on Linux and BSD, EINPROGRESS (lwIP sends it)


def would_block(exc):
    """True for the 'try again later' errors of a non-blocking socket (plain or TLS)."""
    name = type(exc).__name__
    if name in ("BlockingIOError", "SSLWantReadError", "SSLWantWriteError"):
        return True
    code = exc.args[0] if exc.args else None
    return getattr(exc, "errno", code) in _EAGAIN


def recv_now(sock, n):
    """What a non-blocking socket (plain or TLS) has, up to n bytes: bytes, b"" at the end of
    the stream, None when nothing is there yet (CPython raises BlockingIOError or
    SSLWantReadError, MicroPython's TLS socket returns None)."""
    try:
        return sock.recv(n)
    except OSError as e:
        if would_block(e):
            return None
        raise


def tls_pending(sock):
    """() -> bytes a TLS socket holds decrypted, which poll() cannot see (CPython's
    SSLSocket.pending), or None: a plain socket, or MicroPython's TLS (no such count)."""
    return getattr(sock, "pending", None)


def polled(event, obj):
    """True when a poll() event is about obj: MicroPython names the object, CPython its fd."""
    if event[0] is obj:
        return True
    try:
        return event[0] == obj.fileno()
    except (AttributeError, OSError):
        return False


def readable(sock, timeout_ms):
    """True when sock has something to read within timeout_ms (a one-off poll)."""
    p = select.poll()
    p.register(sock, select.POLLIN)
    return bool(p.poll(max(0, timeout_ms)))


def shutdown_write(sock):
    """Half-closes a socket (FIN after what was written); MicroPython sockets may lack it."""
    try:
        sock.shutdown(1)  # SHUT_WR
    except (OSError, AttributeError):
        pass


def set_nodelay(sock):
    # IPPROTO_TCP=6, TCP_NODELAY=1 on Linux and lwIP; MicroPython lacks the names.
    try:
        sock.setsockopt(6, 1, 1)
    except (OSError, AttributeError, TypeError):
        pass


def fsync(f):
    f.flush()
    try:
        import os

        os.fsync(f.fileno())
    except (ImportError, AttributeError, OSError):
        pass  # MicroPython: close() commits the file


def rename(src, dst):
    import os

    try:
        os.rename(src, dst)
    except OSError:  # FAT on a board will not rename over an existing file
        try:
            os.remove(dst)
        except OSError:
            pass
        os.rename(src, dst)


class StopSignals:
    """CPython: SIGTERM and SIGINT call handler() (which only sets a flag: nothing is raised in
    the middle of a read) and wake the loop's poll() through a pipe given to
    signal.set_wakeup_fd; register this object in the poller, drain() it when it is readable.
    MicroPython has no signal module: `active` is False, and there Ctrl-C raises
    KeyboardInterrupt as usual (a SIGTERM ends the process like a power cut)."""

    def __init__(self, handler):
        self.active = False
        self._fds = None
        self._old = None
        try:
            import os
            import signal
        except ImportError:
            return
        try:
            r, w = os.pipe()
        except (AttributeError, OSError):
            return
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        try:
            old_fd = signal.set_wakeup_fd(w)
            self._old = (old_fd, signal.signal(signal.SIGTERM, lambda n, f: handler()),
                         signal.signal(signal.SIGINT, lambda n, f: handler()))
        except ValueError:  # not the main thread: no signals here
            os.close(r)
            os.close(w)
            return
        self._fds = (r, w)
        self.active = True

    def fileno(self):
        return self._fds[0]

    def drain(self):
        import os

        try:
            while os.read(self._fds[0], 64):
                pass
        except OSError:
            pass

    def close(self):
        """Gives the signals back to what handled them before."""
        if not self.active:
            return
        import os
        import signal

        old_fd, term, intr = self._old
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGTERM, term or signal.SIG_DFL)  # None: not set from Python
        signal.signal(signal.SIGINT, intr or signal.SIG_DFL)
        for fd in self._fds:
            os.close(fd)
        self.active = False
