"""Emulates a YRM100 UHF RFID reader on a pseudo-terminal, for tests and demos without hardware.

It answers the commands the basket sends (stop, region, power, hopping, channel, multiple
polling), streams a tag notification per scripted tag (with its RSSI) every inventory round while
polling, and can inject garbage, frames with a bad checksum, and disconnects (the pty is closed,
as when a USB reader is unplugged; reconnect() makes a new one behind the same symlink).

From Python::

    with Yrm100Emulator(link="/tmp/rfid0") as emu:
        emu.set_tag(make_epc("MLON", 1), -40)
        ...  # ITEM_SOURCE=rfid:/tmp/rfid0

From the command line (prints the device path, then takes commands on stdin; `help` lists them)::

    python -m tools.yrm100_emulator --link /tmp/rfid0 --tag MLON=-40 --tag MLON=-45 --tag APPL=-70
"""

from __future__ import annotations

import argparse
import logging
import os
import pty
import select
import sys
import threading
import time
import tty

from mqtt_controller import yrm100

log = logging.getLogger("yrm100-emulator")

_ANSWERED = (yrm100.CMD_SET_REGION, yrm100.CMD_SET_POWER, yrm100.CMD_HOPPING,
             yrm100.CMD_SET_CHANNEL)


def make_epc(code: str, serial: int) -> bytes:
    """A 96-bit EPC: the 4-character product code in ASCII, then an 8-byte serial number."""
    raw = code.encode("ascii")
    if len(raw) != 4:
        raise ValueError("a product code on the tag is 4 characters: %r" % code)
    return raw + serial.to_bytes(8, "big")


class Yrm100Emulator:
    """One emulated reader. Thread-safe; all public methods may be called from tests."""

    def __init__(self, tags: dict[bytes, int] | None = None, link: str | None = None,
                 round_ms: int = 20, report_no_tag: bool = True) -> None:
        self._lock = threading.RLock()
        self.tags: dict[bytes, int] = dict(tags or {})
        self.link = link
        self.round_ms = round_ms
        self.report_no_tag = report_no_tag
        self.polling = False
        self.remaining = 0
        self.region: int | None = None
        self.power: int | None = None  # dBm x 100
        self.hopping: bool | None = None
        self.channel: int | None = None
        self.commands: list[tuple[int, bytes]] = []
        self.sent_notices = 0
        self.dropped_writes = 0
        self.connected = False
        self.pty_path = ""
        self._master: int | None = None
        self._slave: int | None = None
        self._decoder = yrm100.Decoder()
        self._closing = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._next_round = 0.0
        self._connect()
        self._thread = threading.Thread(target=self._run, name="yrm100-emulator", daemon=True)
        self._thread.start()

    # --- scripting ---

    @property
    def path(self) -> str:
        """The device path to give the basket (the symlink when one was asked for)."""
        return self.link or self.pty_path

    def set_tag(self, epc: bytes, rssi: int) -> None:
        with self._lock:
            self.tags[bytes(epc)] = rssi

    def remove_tag(self, epc: bytes) -> None:
        with self._lock:
            self.tags.pop(bytes(epc), None)

    def clear_tags(self) -> None:
        with self._lock:
            self.tags.clear()

    def inject(self, data: bytes) -> None:
        """Raw bytes on the wire, as line noise would put them there."""
        self._write(data)

    def inject_garbage(self) -> None:
        # stray header bytes, a lying length, a truncated frame: all must be resynchronised over
        self._write(b"\x00\xbb\xff\x7e\xbb\x02\x22\x00\x05\x01\x7e\x13\xbb\x01\xb6\x00\x01")

    def inject_bad_checksum(self, epc: bytes, rssi: int = -40) -> None:
        f = bytearray(yrm100.tag_notice(epc, rssi))
        f[-2] ^= 0x5A
        self._write(bytes(f))

    def received(self, cmd: int) -> int:
        """How many commands with this code arrived."""
        with self._lock:
            return sum(1 for c, _ in self.commands if c == cmd)

    def disconnect(self) -> None:
        """Closes the pty (and removes the symlink), as when the reader is unplugged."""
        with self._lock:
            self._close_pty()
            self.polling = False
        self._wake()
        log.info("disconnected")

    def reconnect(self) -> None:
        """A new pty behind the same symlink, as when the reader is plugged in again."""
        with self._lock:
            if not self.connected:
                self._connect()
        self._wake()
        log.info("reconnected at %s", self.pty_path)

    def close(self) -> None:
        self._closing.set()
        self._wake()
        self._thread.join(timeout=5)
        with self._lock:
            self._close_pty()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> Yrm100Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the emulated module ---

    def _connect(self) -> None:
        m, s = pty.openpty()
        tty.setraw(s)  # so nothing is echoed before the basket configures its side
        os.set_blocking(m, False)
        self._master, self._slave = m, s
        self.pty_path = os.ttyname(s)
        self._decoder.reset()
        if self.link:
            tmp = self.link + ".tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self.pty_path, tmp)
            os.replace(tmp, self.link)
        self.connected = True

    def _close_pty(self) -> None:
        if self.link and os.path.lexists(self.link):
            os.unlink(self.link)
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None
        self.connected = False

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _write(self, data: bytes) -> None:
        with self._lock:
            if self._master is None:
                return
            try:
                os.write(self._master, data)
            except (BlockingIOError, OSError):  # nobody reads: like a UART, drop it
                self.dropped_writes += 1

    def _run(self) -> None:
        while not self._closing.is_set():
            with self._lock:
                master = self._master
                timeout = None
                if self.polling:
                    timeout = max(0.0, self._next_round - time.monotonic())
            fds = [self._wake_r] + ([master] if master is not None else [])
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):  # the pty was closed under us
                continue
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
            if master is not None and master in ready:
                try:
                    data = os.read(master, 1024)
                except OSError:
                    data = b""
                if data:
                    with self._lock:
                        if self._master == master:
                            for f in self._decoder.feed(data):
                                self._command(f)
            with self._lock:
                if self.polling and time.monotonic() >= self._next_round:
                    self._round()

    def _command(self, f: tuple[int, int, bytes]) -> None:
        ftype, cmd, params = f
        self.commands.append((cmd, params))
        if ftype != yrm100.TYPE_COMMAND:
            return
        if cmd == yrm100.CMD_MULTI_POLL and len(params) == 3 and params[0] == 0x22:
            self.remaining = (params[1] << 8) | params[2]
            self.polling = self.remaining > 0
            self._next_round = time.monotonic()
        elif cmd == yrm100.CMD_STOP:
            self.polling = False
            self._write(yrm100.response(cmd, b"\x00"))
        elif cmd in _ANSWERED:
            if cmd == yrm100.CMD_SET_REGION and len(params) == 1:
                self.region = params[0]
            elif cmd == yrm100.CMD_SET_POWER and len(params) == 2:
                self.power = (params[0] << 8) | params[1]
            elif cmd == yrm100.CMD_HOPPING and len(params) == 1:
                self.hopping = params[0] == 0xFF
            elif cmd == yrm100.CMD_SET_CHANNEL and len(params) == 1:
                self.channel = params[0]
            self._write(yrm100.response(cmd, b"\x00"))
        elif cmd == yrm100.CMD_GET_POWER:
            p = self.power or 0
            self._write(yrm100.response(cmd, bytes((p >> 8, p & 0xFF))))
        else:
            self._write(yrm100.error_response(yrm100.ERR_COMMAND))

    def _round(self) -> None:
        out = b"".join(yrm100.tag_notice(epc, rssi) for epc, rssi in self.tags.items())
        if out:
            self.sent_notices += len(self.tags)
            self._write(out)
        elif self.report_no_tag:
            self._write(yrm100.error_response(yrm100.ERR_NO_TAG))
        self.remaining -= 1
        if self.remaining <= 0:
            self.polling = False
        self._next_round = time.monotonic() + self.round_ms / 1000


def _parse_tag(text: str, serials: dict[str, int]) -> tuple[bytes, int]:
    """CODE=RSSI (a new serial number per CODE) or HEXEPC=RSSI."""
    what, _, rssi = text.partition("=")
    if len(what) > 4:
        epc = bytes.fromhex(what)
    else:
        serials[what] = serials.get(what, 0) + 1
        epc = make_epc(what, serials[what])
    return epc, int(rssi or "-40")


_HELP = """commands:
  tag CODE=RSSI | HEXEPC=RSSI   add a tag (or change its RSSI)
  rssi N RSSI                   change tag N (see `list`)
  del N                         remove tag N
  list                          the tags, numbered
  garbage | badsum              inject line noise / a frame with a bad checksum
  disconnect | reconnect        unplug / plug the reader
  quit"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--link", help="stable symlink to the pty (survives reconnects)")
    ap.add_argument("--tag", action="append", default=[], metavar="CODE=RSSI",
                    help="a tag in the field: CODE=RSSI or HEXEPC=RSSI (repeatable)")
    ap.add_argument("--round-ms", type=int, default=50, help="ms per inventory round")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(name)s: %(message)s")
    serials: dict[str, int] = {}
    tags = dict(_parse_tag(t, serials) for t in args.tag)
    emu = Yrm100Emulator(tags, link=args.link, round_ms=args.round_ms)
    print(emu.path, flush=True)
    print("ITEM_SOURCE=rfid:%s   (type `help` for commands)" % emu.path, file=sys.stderr)
    try:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            cmd = words[0]
            try:
                with emu._lock:
                    order = list(emu.tags)
                if cmd == "tag":
                    epc, rssi = _parse_tag(words[1], serials)
                    emu.set_tag(epc, rssi)
                elif cmd == "rssi":
                    emu.set_tag(order[int(words[1])], int(words[2]))
                elif cmd == "del":
                    emu.remove_tag(order[int(words[1])])
                elif cmd == "list":
                    for i, epc in enumerate(order):
                        print("%d %s %s dBm" % (i, epc.hex(), emu.tags.get(epc)))
                elif cmd == "garbage":
                    emu.inject_garbage()
                elif cmd == "badsum":
                    emu.inject_bad_checksum(order[0] if order else make_epc("XXXX", 0))
                elif cmd == "disconnect":
                    emu.disconnect()
                elif cmd == "reconnect":
                    emu.reconnect()
                elif cmd == "quit":
                    break
                else:
                    print(_HELP)
            except (IndexError, ValueError) as e:
                print("? %s" % e)
    except KeyboardInterrupt:
        pass
    finally:
        emu.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
