"""A loopback TCP fault proxy between the controller and a real broker, for the fault tests.

One thread runs a selector over every proxied connection. The proxy is in one mode at a time,
for all connections, old and new:

- ``pass``      bytes go straight through;
- ``trickle``   bytes go one at a time with a delay between them (both directions);
- ``hold``      bytes are read and kept, nothing is delivered; ``pass_through()`` later delivers
                them all (a network that drops traffic for a while: TCP retransmits, nothing is
                lost); ``allow_down`` / ``allow_up`` let that many bytes through first toward the
                controller / the broker (None: that direction is not held), e.g. a stall in the
                middle of a packet;
- ``blackhole`` bytes are read and thrown away, nothing is closed (a half-open link). By default
                only the connections open now are cut off; a new connection passes.

``reset()`` closes every connection with an RST to both ends. A peer that closes its end is
passed on only in ``pass``/``trickle`` (once its buffered bytes are out): in ``hold`` and
``blackhole`` the other end stays open, as it would behind a dead link.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

PASS = "pass"
TRICKLE = "trickle"
HOLD = "hold"
BLACKHOLE = "blackhole"


@dataclass
class _Side:
    sock: socket.socket
    out: bytearray = field(default_factory=bytearray)  # bytes waiting to be written to `sock`
    eof: bool = False  # the far end of `sock` said goodbye
    closed: bool = False
    next_at: float = 0.0  # trickle: when the next byte may go


@dataclass
class _Pair:
    n: int
    client: _Side
    upstream: _Side
    opened_at: float
    closed_at: float | None = None
    client_eof_at: float | None = None  # when the controller closed its end
    bytes_down: int = 0  # broker -> controller, delivered
    bytes_up: int = 0  # controller -> broker, delivered
    blackholed: bool = False


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1",
                 trickle_delay: float = 0.002) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.trickle_delay = trickle_delay
        self.mode = PASS
        self.allow_down: int | None = 0  # in hold: bytes still let through toward the controller
        self.allow_up: int | None = 0
        self.pairs: list[_Pair] = []
        self.lock = threading.RLock()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="faultproxy", daemon=True)
        self.thread.start()

    # -- control (from the test thread) --------------------------------------------------------
    def _set(self, mode: str, allow_down: int | None = 0, allow_up: int | None = 0) -> None:
        with self.lock:
            self.mode = mode
            self.allow_down = allow_down
            self.allow_up = allow_up
        self._wake()

    def pass_through(self) -> None:
        with self.lock:
            for p in self.pairs:
                p.blackholed = False
        self._set(PASS)

    def trickle(self, delay: float | None = None) -> None:
        if delay is not None:
            self.trickle_delay = delay
        self._set(TRICKLE)

    def hold(self, allow_down: int | None = 0, allow_up: int | None = 0) -> None:
        self._set(HOLD, allow_down, allow_up)

    def blackhole(self, existing_only: bool = True) -> None:
        with self.lock:
            for p in self.pairs:
                if p.closed_at is None:
                    p.blackholed = True
        if not existing_only:
            self._set(BLACKHOLE)

    def drop_for(self, seconds: float) -> None:
        """Holds all traffic for `seconds`, then delivers it and passes again (blocks)."""
        self.hold()
        time.sleep(seconds)
        self.pass_through()

    def reset(self) -> int:
        """RST to both ends of every open connection; returns how many were cut."""
        n = 0
        with self.lock:
            for p in self.pairs:
                if p.closed_at is None:
                    for side in (p.client, p.upstream):
                        try:
                            side.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                 struct.pack("ii", 1, 0))
                        except OSError:
                            pass
                    self._close_pair(p)
                    n += 1
        self._wake()
        return n

    def connections(self) -> int:
        with self.lock:
            return len(self.pairs)

    def open_pairs(self) -> list[_Pair]:
        with self.lock:
            return [p for p in self.pairs if p.closed_at is None]

    def wait_connections(self, n: int, timeout: float = 15.0) -> _Pair:
        """Waits until at least `n` connections were accepted in all; returns the n-th."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.pairs) >= n:
                    return self.pairs[n - 1]
            time.sleep(0.01)
        raise AssertionError("fault proxy: %d connection(s) after %.1f s, wanted %d"
                             % (self.connections(), timeout, n))

    def close(self) -> None:
        self._stop = True
        self._wake()
        self.thread.join(5)
        with self.lock:
            for p in self.pairs:
                self._close_pair(p)
        for s in (self.listener, self._wake_r, self._wake_w):
            s.close()
        self.sel.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # -- the proxy thread ---------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop:
            timeout = 0.05
            if self.mode == TRICKLE:
                timeout = min(timeout, self.trickle_delay)
            for key, _ in self.sel.select(timeout):
                if key.data is None:
                    self._accept()
                elif key.data == "wake":
                    try:
                        self._wake_r.recv(4096)
                    except OSError:
                        pass
                else:
                    pair, side = key.data
                    self._on_readable(pair, side)
            with self.lock:
                for p in list(self.pairs):
                    if p.closed_at is None:
                        self._pump(p)

    def _accept(self) -> None:
        try:
            c, _ = self.listener.accept()
        except OSError:
            return
        try:
            u = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            c.close()
            return
        for s in (c, u):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            p = _Pair(len(self.pairs) + 1, _Side(c), _Side(u), time.monotonic())
            self.pairs.append(p)
            self.sel.register(c, selectors.EVENT_READ, (p, "client"))
            self.sel.register(u, selectors.EVENT_READ, (p, "upstream"))

    def _on_readable(self, p: _Pair, which: str) -> None:
        with self.lock:
            if p.closed_at is not None:
                return
            src = p.client if which == "client" else p.upstream
            dst = p.upstream if which == "client" else p.client
            try:
                data = src.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                src.eof = True
                if which == "client" and p.client_eof_at is None:
                    p.client_eof_at = time.monotonic()
                try:
                    self.sel.unregister(src.sock)
                except (KeyError, ValueError):
                    pass
                return
            if self.mode != BLACKHOLE and not p.blackholed:
                dst.out.extend(data)

    def _pump(self, p: _Pair) -> None:
        now = time.monotonic()
        for dst, down in ((p.client, True), (p.upstream, False)):
            if not dst.out or dst.closed:
                continue
            if self.mode == BLACKHOLE or p.blackholed:
                dst.out.clear()
                continue
            if self.mode == PASS:
                limit = len(dst.out)
            elif self.mode == TRICKLE:
                if now < dst.next_at:
                    continue
                limit = 1
            else:  # HOLD
                allow = self.allow_down if down else self.allow_up
                limit = len(dst.out) if allow is None else allow
            if limit <= 0:
                continue
            try:
                n = dst.sock.send(bytes(dst.out[:limit]))
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                self._close_pair(p)
                return
            del dst.out[:n]
            if down:
                p.bytes_down += n
            else:
                p.bytes_up += n
            if self.mode == HOLD:
                if down and self.allow_down is not None:
                    self.allow_down -= n
                elif not down and self.allow_up is not None:
                    self.allow_up -= n
            if self.mode == TRICKLE:
                dst.next_at = now + self.trickle_delay
        if self.mode in (PASS, TRICKLE) and not p.blackholed:
            for src, dst in ((p.client, p.upstream), (p.upstream, p.client)):
                if src.eof and not dst.out:
                    self._close_pair(p)
                    return

    def _close_pair(self, p: _Pair) -> None:
        if p.closed_at is not None:
            return
        p.closed_at = time.monotonic()
        for side in (p.client, p.upstream):
            try:
                self.sel.unregister(side.sock)
            except (KeyError, ValueError):
                pass
            try:
                side.sock.close()
            except OSError:
                pass
            side.closed = True
