# Serial ports for the RFID readers, opened without pyserial: a tty through termios (CPython on
# the Pi, and the MicroPython unix port) or machine.UART on a board. Hardware modules are
# imported inside open(), so this module imports anywhere; what differs between the interpreters'
# os and termios is handled here, at the edge (compat.py's header has the rule).
#
# Port interface: open() (raises OSError), read() -> bytes (b"" when nothing is waiting; never
# blocks; raises OSError once the device is gone), write(data), pollable() -> what to register
# with select.poll for POLLIN, close(), and `name`.
# make_port(entry): "/dev/ttyUSB0" (any absolute path) -> TermiosPort at 115200 8N1 raw;
# "uart2" (board default pins) or "uart1:17:16" (tx pin, rx pin) -> UartPort at 115200 8N1.
import errno
import os
import select

BAUD = 115200
_CHUNK = 256
_MAX_CHUNKS = 4  # one read() drains at most this many chunks, so a chatty reader cannot hog
_HANGUP = select.POLLHUP | select.POLLERR | getattr(select, "POLLNVAL", 0x20)

# Linux values for the termios flags the MicroPython unix port does not export.
_LINUX = {"VTIME": 5, "VMIN": 6, "CSTOPB": 0o100, "CREAD": 0o200, "CLOCAL": 0o4000,
          "CRTSCTS": 0o20000000000}


def _flag(termios, name):
    return getattr(termios, name, _LINUX[name])


class TermiosPort:
    def __init__(self, path):
        self.name = path
        self._fd = None
        self._file = None  # MicroPython: the FileIO the fd belongs to
        self._poll = None
        self._empty = 0

    def open(self):
        import termios

        if hasattr(os, "open") and hasattr(os, "O_NONBLOCK"):  # CPython
            fd = os.open(self.name, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        else:  # MicroPython unix port: no os.open; VMIN=VTIME=0 below makes reads return at once
            self._file = open(self.name, "r+b")
            fd = self._file.fileno()
        self._fd = fd
        try:
            self._configure(termios, fd)
            self._poll = select.poll()
            self._poll.register(self._file if self._file is not None else fd, select.POLLIN)
        except Exception:
            self.close()
            raise
        self._empty = 0

    def _configure(self, termios, fd):
        if hasattr(termios, "setraw"):  # MicroPython
            termios.setraw(fd)
            a = termios.tcgetattr(fd)
        else:
            a = termios.tcgetattr(fd)
            a[0] &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                      | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON
                      | termios.IXOFF | termios.IXANY)
            a[1] &= ~termios.OPOST
            a[3] &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG
                      | termios.IEXTEN)
            a[2] &= ~(termios.CSIZE | termios.PARENB)
            a[2] |= termios.CS8
        a[2] &= ~(_flag(termios, "CSTOPB") | _flag(termios, "CRTSCTS"))
        a[2] |= _flag(termios, "CREAD") | _flag(termios, "CLOCAL")
        a[4] = a[5] = termios.B115200
        a[6][_flag(termios, "VMIN")] = 0
        a[6][_flag(termios, "VTIME")] = 0
        termios.tcsetattr(fd, termios.TCSANOW, a)

    def _read1(self):
        if self._file is not None:
            return self._file.read(_CHUNK) or b""
        try:
            return os.read(self._fd, _CHUNK)
        except OSError as e:
            if e.args and e.args[0] == errno.EAGAIN:  # nothing waiting
                return b""
            raise

    def read(self):
        if self._fd is None:
            raise OSError(9, "port closed")
        ev = self._poll.poll(0)
        if not ev:
            return b""
        flags = ev[0][1]
        out = b""
        for _ in range(_MAX_CHUNKS):
            d = self._read1()
            if not d:
                break
            out += d
            if len(d) < _CHUNK:
                break
        if out:
            self._empty = 0
            return out
        if flags & _HANGUP:
            raise OSError(5, "device hung up")
        # readable yet nothing to read: a hung-up tty can look like this; don't spin on it
        self._empty += 1
        if self._empty >= 3:
            raise OSError(5, "device readable but returns no data")
        return b""

    def write(self, data):
        if self._fd is None:
            raise OSError(9, "port closed")
        if self._file is not None:
            return self._file.write(data)
        return os.write(self._fd, data)

    def pollable(self):
        return self._file if self._file is not None else self._fd

    def close(self):
        fd, f = self._fd, self._file
        self._fd = self._file = self._poll = None
        try:
            if f is not None:
                f.close()
            elif fd is not None:
                os.close(fd)
        except OSError:
            pass


class UartPort:
    def __init__(self, uart_id, tx=None, rx=None):
        self.name = "uart%d" % uart_id
        self.uart_id = uart_id
        self.tx = tx
        self.rx = rx
        self._u = None

    def open(self):
        from machine import UART

        kw = {"baudrate": BAUD, "bits": 8, "parity": None, "stop": 1, "timeout": 0,
              "rxbuf": 1024}
        if self.tx is not None:
            kw["tx"] = self.tx
            kw["rx"] = self.rx
        self._u = UART(self.uart_id, **kw)

    def read(self):
        if self._u is None:
            raise OSError(9, "port closed")
        n = self._u.any()
        if not n:
            return b""
        return self._u.read(min(n, _CHUNK * _MAX_CHUNKS)) or b""

    def write(self, data):
        if self._u is None:
            raise OSError(9, "port closed")
        return self._u.write(data)

    def pollable(self):
        return self._u

    def close(self):
        u, self._u = self._u, None
        if u is not None and hasattr(u, "deinit"):
            try:
                u.deinit()
            except OSError:
                pass


def _int(text, what):
    try:
        return int(text)
    except ValueError:
        raise ValueError("%s: %r is not a number" % (what, text))


def make_port(entry):
    """A closed port for one reader entry of ITEM_SOURCE=rfid:...; ValueError when malformed."""
    entry = entry.strip()
    if entry.startswith("/"):
        return TermiosPort(entry)
    if entry.startswith("uart"):
        parts = entry[4:].split(":")
        if len(parts) in (1, 3) and parts[0]:
            uid = _int(parts[0], "ITEM_SOURCE")
            if len(parts) == 3:
                return UartPort(uid, _int(parts[1], "ITEM_SOURCE"), _int(parts[2], "ITEM_SOURCE"))
            return UartPort(uid)
    raise ValueError("ITEM_SOURCE: reader %r must be a device path (/dev/ttyUSB0) or uartN "
                     "or uartN:TX:RX" % entry)
