# Item sources that speak the line protocol: standard input, or a path (FIFO, tty, file).
# Each has pollables() / read(now_ms) / next_ms(now_ms) / set_active(shopping) / close(), and
# status(now_ms) / status_changes for the health report (no RFID readers here: [] and 0).
# A source that cannot be opened or fails is reopened with back-off, like an RFID reader.
import sys

from mqtt_controller import log
from mqtt_controller.backoff import REOPEN_CAP_MS, REOPEN_FIRST_MS, Backoff
from mqtt_controller.cart import MAX_LINE
from mqtt_controller.compat import ticks_add, ticks_diff, ticks_ms, would_block


# -- reading a stream without blocking (here, not in compat.py: only an item source needs it)
def binary_stdin():
    """Standard input as bytes (a port without sys.stdin.buffer reads bytes from sys.stdin)."""
    return getattr(sys.stdin, "buffer", sys.stdin)


def open_unbuffered(path, mode):
    """open() without a buffer, so "r+b" works on a FIFO or tty (CPython's buffered random
    access needs a seekable file); MicroPython's open() takes no buffering argument."""
    try:
        return open(path, mode, 0)
    except TypeError:
        return open(path, mode)


class NonBlockingReader:
    """Reads whatever a stream (stdin, FIFO, tty) has without blocking: read() returns bytes,
    b"" when nothing is there yet, None at end of input."""

    def __init__(self, stream, limit=256):
        self.stream = stream
        self.limit = limit
        self._fd = None
        self._poll = None
        try:
            import os

            fd = stream if isinstance(stream, int) else stream.fileno()
            os.set_blocking(fd, False)  # CPython: one os.read takes what is there
            self._fd = fd
        except (ImportError, AttributeError, OSError):
            import select  # MicroPython: no os.read, so a byte at a time while poll says so

            self._poll = select.poll()
            self._poll.register(stream, select.POLLIN)

    def read(self):
        if self._fd is not None:
            import os

            try:
                data = os.read(self._fd, self.limit)
            except OSError as e:
                if would_block(e):
                    return b""
                raise
            return data if data else None
        out = bytearray()
        while len(out) < self.limit and self._poll.poll(0):
            b = self.stream.read(1)
            if not b:
                return bytes(out) if out else None
            out.extend(b)
        return bytes(out)



class LineSplitter:
    """Bytes in, whole lines out; a line longer than MAX_LINE is cut and passed on so the
    controller rejects it, and the rest of it up to the newline is dropped."""

    def __init__(self):
        self.buf = bytearray()
        self.discard = False

    def feed(self, data):
        lines = []
        for b in data:
            if b == 10 or b == 13:
                if not self.discard and self.buf:
                    lines.append(bytes(self.buf))
                self.buf = bytearray()
                self.discard = False
            elif not self.discard:
                self.buf.append(b)
                if len(self.buf) > MAX_LINE:
                    lines.append(bytes(self.buf))
                    self.buf = bytearray()
                    self.discard = True
        return lines


class StreamSource:
    def __init__(self, name, opener):
        self.name = name
        self.opener = opener  # () -> stream; raises OSError when it cannot be opened yet
        self.stream = None
        self.reader = None
        self.lines = LineSplitter()
        self.backoff = Backoff(REOPEN_FIRST_MS, REOPEN_CAP_MS)  # failures: in a row
        self.retry_at = None  # ticks of the next open attempt while there is no stream
        self.done = False
        self._open(ticks_ms())

    def _open(self, now_ms):
        try:
            self.stream = self.opener()
            self.reader = NonBlockingReader(self.stream)
        except OSError as e:
            self.stream = self.reader = None
            self.retry_at = ticks_add(now_ms, self.backoff.next_delay())
            if self.backoff.failures == 1:  # once per streak
                log.warning("items: cannot open %s (%s); retrying with back-off", self.name, e)
            return
        self.retry_at = None
        self.backoff.reset()
        log.info("items: reading from %s", self.name)

    def pollables(self):
        return [self.stream] if self.stream is not None else []

    def read(self, now_ms):
        if self.stream is None:
            if not self.done and self.retry_at is not None and \
                    ticks_diff(now_ms, self.retry_at) >= 0:
                self._open(now_ms)
            return []
        try:
            data = self.reader.read()
        except OSError as e:
            log.warning("items: %s failed (%s); reopening with back-off", self.name, e)
            self.close()
            # One step taken: a reopen that fails too is not warned about again.
            self.retry_at = ticks_add(now_ms, self.backoff.next_delay())
            return []
        if data is None:
            log.info("items: end of input on %s; the basket keeps running", self.name)
            self.close()
            self.done = True
            return []
        return self.lines.feed(data)

    def next_ms(self, now_ms):
        if self.stream is None and not self.done and self.retry_at is not None:
            return max(0, ticks_diff(self.retry_at, now_ms))
        return None

    def set_active(self, shopping):
        pass

    status_changes = 0  # no readers: nothing for the health report ever changes

    def status(self, now_ms):
        return []

    def close(self):
        # stdin is not ours to close
        if self.stream is not None and self.opener is not binary_stdin:
            try:
                self.stream.close()
            except OSError:
                pass
        self.stream = self.reader = None


def _path_opener(path):
    def opener():
        # read-write keeps a FIFO open with no writer (no end of input) and never blocks
        return open_unbuffered(path, "r+b" if _is_fifo_or_tty(path) else "rb")
    return opener


def _is_fifo_or_tty(path):
    import os

    mode = os.stat(path)[0]  # raises OSError when the path is missing
    return (mode & 0o170000) in (0o010000, 0o020000)  # S_IFIFO, S_IFCHR


def open_source(spec, settings=None):
    """ITEM_SOURCE: "stdin", "none", "rfid:<readers>" or a path. settings: the source's own
    values, checked (Config.settings: the RFID_* keys; None: their defaults)."""
    if spec == "none":
        return None
    if spec == "stdin":
        return StreamSource("standard input", binary_stdin)
    if spec.startswith("rfid:"):
        from mqtt_controller import rfid

        if settings is None:
            return rfid.open_source(spec[5:])
        return rfid.open_readers(spec[5:], settings)
    return StreamSource(spec, _path_opener(spec))
