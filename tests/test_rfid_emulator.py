"""The RFID item source against emulated YRM100 readers on pseudo-terminals (CPython, and the
same source code under the MicroPython unix port)."""

from __future__ import annotations

import os
import re
import select
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mqtt_controller import compat, rfid, yrm100
from tests.support.process import MICROPYTHON, Process
from tools.yrm100_emulator import Yrm100Emulator, make_epc

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = {"RFID_CYCLE_MS": "150"}


class Loop:
    """What the runtime does with an item source: poll its fds, call read() on time."""

    def __init__(self, src: rfid.RfidSource) -> None:
        self.src = src
        self.lines: list[str] = []
        self.turns = 0

    def turn(self, cap_ms: int = 50) -> None:
        p = select.poll()
        for x in self.src.pollables():
            p.register(x, select.POLLIN)
        t = self.src.next_ms(compat.ticks_ms())
        p.poll(cap_ms if t is None else min(t, cap_ms))
        self.turns += 1
        self.lines += self.src.read(compat.ticks_ms())

    def run(self, seconds: float, cap_ms: int = 50) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.turn(cap_ms)

    def until(self, pred: Callable[[list[str]], bool], timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while not pred(self.lines):
            assert time.monotonic() < end, "timed out; lines so far: %r" % self.lines
            self.turn()

    def until_line(self, line: str, timeout: float = 5.0) -> None:
        start = len(self.lines)
        self.until(lambda ls: line in ls[start:], timeout)


@pytest.fixture
def emu(tmp_path: Path):
    e = Yrm100Emulator(link=str(tmp_path / "rfid0"))
    yield e
    e.close()


@pytest.fixture
def emu2(tmp_path: Path):
    e = Yrm100Emulator(link=str(tmp_path / "rfid1"))
    yield e
    e.close()


def shopping(spec: str, **settings: str) -> tuple[rfid.RfidSource, Loop]:
    src = rfid.open_source(spec, dict(SETTINGS, **settings))
    src.set_active(True)
    return src, Loop(src)


def test_tags_appear_as_counts_and_the_reader_is_configured(emu: Yrm100Emulator) -> None:
    emu.set_tag(make_epc("MLON", 1), -40)
    emu.set_tag(make_epc("MLON", 2), -50)
    emu.set_tag(make_epc("SODA", 1), -45)
    emu.set_tag(make_epc("APPL", 1), -70)  # too weak to count
    src, loop = shopping(emu.path, RFID_POWER="24", RFID_REGION="KR")
    try:
        loop.until(lambda ls: "MLON=2" in ls and "SODA=1" in ls)
        loop.run(0.5)
        assert sorted(loop.lines) == ["MLON=2", "SODA=1"]
        assert emu.polling
        assert emu.received(yrm100.CMD_STOP) >= 1
        assert emu.power == 2400 and emu.region == 0x06
        assert src.stats()["weak"] > 0
    finally:
        src.close()


def test_weaker_then_gone_lowers_the_count(emu: Yrm100Emulator) -> None:
    a, b = make_epc("MLON", 1), make_epc("MLON", 2)
    emu.set_tag(a, -40)
    emu.set_tag(b, -40)
    src, loop = shopping(emu.path)
    try:
        loop.until_line("MLON=2")
        emu.set_tag(b, -65)  # below RFID_RSSI_MIN (-58)
        loop.until_line("MLON=1")
        emu.remove_tag(a)
        loop.until_line("MLON=0")
        emu.set_tag(b, -58)  # at the threshold counts again
        loop.until_line("MLON=1")
        assert loop.lines == ["MLON=2", "MLON=1", "MLON=0", "MLON=1"]
    finally:
        src.close()


def test_garbage_and_bad_checksums_are_tolerated(emu: Yrm100Emulator) -> None:
    emu.set_tag(make_epc("MLON", 1), -40)
    src, loop = shopping(emu.path)
    try:
        loop.until_line("MLON=1")
        for _ in range(10):
            emu.inject_garbage()
            emu.inject_bad_checksum(make_epc("FAKE", 9), -30)
            emu.inject(b"\xbb\x02\x22\x00\x11" + b"\x00" * 8)  # a truncated frame
            loop.run(0.05)
        loop.run(0.5)
        assert loop.lines == ["MLON=1"]  # nothing invented, nothing lost
        st = src.stats()
        assert st["bad_checksum"] >= 10 and st["garbage"] > 0 and st["errors"] == 0
    finally:
        src.close()


def test_unplugged_reader_is_reopened_without_busy_waiting(emu: Yrm100Emulator) -> None:
    emu.set_tag(make_epc("MLON", 1), -40)
    emu.set_tag(make_epc("MLON", 2), -40)
    src, loop = shopping(emu.path)
    try:
        loop.until_line("MLON=2")
        emu.disconnect()
        t0 = time.monotonic()
        loop.until_line("MLON=0")
        # kept for the absence window (2 cycles of 150 ms), not dropped at once
        assert time.monotonic() - t0 >= 0.2
        assert src.pollables() == []
        turns = loop.turns
        loop.run(1.5, cap_ms=5000)  # like the runtime: sleep until next_ms
        assert loop.turns - turns < 40, "busy loop while the reader is gone"
        emu.reconnect()
        loop.until_line("MLON=2", timeout=10)
        st = src.stats()
        assert st["lost"] == 1 and st["opens"] == 2
    finally:
        src.close()


def test_two_readers_are_merged_and_one_failing_does_not_stop_the_other(
        emu: Yrm100Emulator, emu2: Yrm100Emulator) -> None:
    emu.set_tag(make_epc("MLON", 1), -40)
    emu.set_tag(make_epc("MLON", 2), -40)
    emu2.set_tag(make_epc("MLON", 2), -50)  # the same item, seen by both readers
    emu2.set_tag(make_epc("MLON", 3), -45)
    src, loop = shopping("%s,%s" % (emu.path, emu2.path))
    try:
        loop.until(lambda ls: ls and ls[-1] == "MLON=3")
        loop.run(0.4)
        assert loop.lines[-1] == "MLON=3"
        emu2.disconnect()
        loop.until_line("MLON=2")  # item 3 was only seen by the unplugged reader
        emu.set_tag(make_epc("MLON", 4), -40)
        loop.until_line("MLON=3")
        assert len(src.pollables()) == 1
    finally:
        src.close()


def test_idle_basket_does_not_poll(emu: Yrm100Emulator) -> None:
    emu.set_tag(make_epc("MLON", 1), -40)
    src = rfid.open_source(emu.path, SETTINGS)
    loop = Loop(src)
    try:
        loop.run(0.5)
        assert not emu.polling and loop.lines == []
        assert src.next_ms(compat.ticks_ms()) is None
        src.set_active(True)
        loop.until_line("MLON=1")
        src.set_active(False)
        loop.run(0.4)
        assert not emu.polling
        assert loop.lines == ["MLON=1"]
        sent = emu.sent_notices
        loop.run(0.3)
        assert emu.sent_notices == sent
        src.set_active(True)  # a new trip starts from an empty tracker
        loop.until_line("MLON=1")
    finally:
        src.close()


def test_reader_plugged_in_after_start(tmp_path: Path) -> None:
    link = str(tmp_path / "late")
    src, loop = shopping(link)
    try:
        loop.run(0.3)
        assert src.pollables() == []
        with Yrm100Emulator(tags={make_epc("SODA", 1): -40}, link=link):
            loop.until_line("SODA=1", timeout=10)
    finally:
        src.close()


MP_DRIVER = r"""
import os, sys, select
sys.path.insert(0, sys.argv[1])
from mqtt_controller import rfid, compat
src = rfid.open_source(sys.argv[2], {"RFID_CYCLE_MS": 150})
src.set_active(True)
stop = sys.argv[3]
while True:
    try:
        os.stat(stop)
        break
    except OSError:
        pass
    p = select.poll()
    for x in src.pollables():
        p.register(x, select.POLLIN)
    t = src.next_ms(compat.ticks_ms())
    p.poll(50 if t is None else min(t, 50))
    for line in src.read(compat.ticks_ms()):
        print("LINE", line)
print("STATS", src.stats()["lost"], src.stats()["bad_checksum"])
src.close()
"""


def test_the_source_under_micropython(emu: Yrm100Emulator, tmp_path: Path) -> None:
    mp = Path(MICROPYTHON)  # $MICROPYTHON (e.g. the 32-bit build) or the venv's
    if not mp.exists():
        pytest.skip("no MicroPython unix port in the venv")
    script = tmp_path / "driver.py"
    script.write_text(MP_DRIVER)
    stop = tmp_path / "stop"
    emu.set_tag(make_epc("MLON", 1), -40)
    emu.set_tag(make_epc("MLON", 2), -40)
    proc = Process([str(mp), str(script), str(ROOT), emu.path, str(stop)],
                   dict(os.environ)).start()
    after = 0

    def expect(want: str) -> None:  # the next line that is `want`, after the last one expected
        nonlocal after
        after = proc.wait_line("^%s$" % re.escape(want), timeout=10, start=after).pos + 1

    try:
        expect("LINE MLON=2")
        emu.set_tag(make_epc("MLON", 2), -70)
        emu.inject_bad_checksum(make_epc("MLON", 3))
        expect("LINE MLON=1")
        emu.disconnect()
        expect("LINE MLON=0")
        emu.reconnect()
        expect("LINE MLON=1")
        stop.write_text("")
        expect("STATS 1 1")
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_emulator_command_line(tmp_path: Path) -> None:
    link = str(tmp_path / "cli")
    proc = Process([sys.executable, "-m", "tools.yrm100_emulator", "--link", link,
                    "--tag", "MLON=-40", "--tag", "MLON=-45", "--round-ms", "20"],
                   dict(os.environ), cwd=ROOT).start(stdin=True)
    try:
        assert proc.wait_line(".", timeout=10).text.strip() == link  # its first line
        src, loop = shopping(link)
        try:
            loop.until_line("MLON=2")
            proc.send("rssi 1 -80\n")
            loop.until_line("MLON=1")
        finally:
            src.close()
        proc.send("quit\n")
        assert proc.wait(timeout=10) == 0
        assert not os.path.lexists(link)
    finally:
        proc.kill()
