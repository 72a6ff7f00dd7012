"""The Pi's I2C path (/dev/i2c-N, ioctl I2C_SLAVE, os.write) with the kernel calls recorded."""

from __future__ import annotations

import os
from typing import Any

import pytest

from mqtt_controller import display, lcd


def test_linux_bus_selects_the_address_once_and_writes_whole_transfers(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    calls: list[tuple[Any, ...]] = []
    real_open = os.open

    def fake_open(path: str, flags: int, *a: Any) -> int:
        calls.append(("open", path))
        return real_open(str(tmp_path / "i2c"), os.O_RDWR | os.O_CREAT, 0o600)

    def fake_write(fd: int, data: bytes) -> int:
        calls.append(("write", bytes(data)))
        return len(data)

    import fcntl

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "write", fake_write)
    monkeypatch.setattr(fcntl, "ioctl", lambda fd, req, arg: calls.append(("ioctl", req, arg)))
    d = display.open_display("lcd:1:0x27")
    assert d.working
    d.render(("shopping", 1, 3, 15000, None))
    d.close()
    assert calls[0] == ("open", "/dev/i2c-1")
    assert calls[1] == ("ioctl", 0x0703, 0x27)
    assert [c for c in calls if c[0] == "ioctl"] == [("ioctl", 0x0703, 0x27)]
    writes = [c[1] for c in calls if c[0] == "write"]
    assert writes[0] == b"\x08" and writes[1] == b"\x3c\x38"
    assert len(writes) == 10 + 2  # init sequence, then one transfer per row
    assert len(writes[-1]) == 4 + 16 * 4


def test_short_write_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    path = tmp_path / "i2c"
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, f, *a: real_open(str(path), os.O_RDWR | os.O_CREAT))
    monkeypatch.setattr(os, "write", lambda fd, data: len(data) - 1)
    import fcntl

    monkeypatch.setattr(fcntl, "ioctl", lambda fd, req, arg: 0)
    bus = lcd.LinuxI2C(1)
    with pytest.raises(OSError):
        bus.writeto(0x27, b"\x00\x01")
    bus.close()


def test_absent_bus_is_logged_and_survived(capsys: pytest.CaptureFixture[str]) -> None:
    d = display.open_display("lcd:99:0x27")  # no /dev/i2c-99 here
    assert not d.working
    d.render(("idle", 1, 0, None, None))
    d.render(("shopping", 1, 1, None, None))
    err = capsys.readouterr().err
    assert err.count("not working") == 1
