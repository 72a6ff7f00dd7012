"""The health report (`basket/<n>/health`) against a real Mosquitto, the controller as a
subprocess under both interpreters: its fields and its retained copy (a late subscriber gets it),
an emulated RFID reader unplugged and plugged back shows `down` / `ok` within two reports, and a
board run (main.py with the stand-in `machine` and `network`) reports rssi, mem_free and boot."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtt_controller import __version__
from tests.support.board_proc import BoardProc, make_flash
from tests.support.broker import Broker
from tests.support.peer import Peer
from tests.support.process import ControllerProc
from tools.yrm100_emulator import Yrm100Emulator

HEALTH = "basket/1/health"
KEYS = ["battery_mv", "boot", "config_error", "config_rev", "counters", "display", "id",
        "interval_s", "mem_free", "ota", "readers", "rssi", "runtime", "uptime_s", "version"]


@pytest.fixture
def service(broker: Broker) -> Iterator[Peer]:
    p = Peer(broker.port, "service", "service-pw")
    p.subscribe("basket/1/health")
    p.subscribe("basket/1/availability")
    yield p
    p.close()


def reports(peer: Peer, start: int = 0) -> list[dict[str, Any]]:
    with peer.cond:
        return [json.loads(p) for t, p, _ in peer.messages[start:] if t == HEALTH]


def wait_report(peer: Peer, pred: Callable[[dict[str, Any]], bool], start: int = 0,
                what: str = "") -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for doc in reports(peer, start):
            if pred(doc):
                return doc
        return None
    return peer.wait_for(find, 15, what or "a health report")  # type: ignore[no-any-return]


def test_the_report_has_its_fields_and_a_late_subscriber_gets_the_retained_copy(
        interp: str, controller: Callable[..., ControllerProc], broker: Broker,
        service: Peer) -> None:
    c = controller(HEALTH_INTERVAL_S="1", DISPLAY="none").start()
    first = wait_report(service, lambda d: True)
    with service.cond:
        raw = [p for t, p, _ in service.messages if t == HEALTH][0]
        online = [i for i, (t, p, _) in enumerate(service.messages)
                  if t == "basket/1/availability" and p == b"online"]
        at = [i for i, (t, _, _) in enumerate(service.messages) if t == HEALTH][0]
    assert online and online[0] < at  # after `online`
    assert len(raw) <= 512 and b" " not in raw.replace(b"cpython ", b"").replace(
        b"micropython ", b"")
    assert list(first) == KEYS, raw  # json keeps the order: sorted on the wire
    assert first["id"] == 1 and first["version"] == __version__
    assert first["runtime"].startswith(interp + " "), first["runtime"]
    assert first["boot"] == "start" and first["rssi"] is None and first["battery_mv"] is None
    assert first["readers"] == [] and first["display"] == "none" and first["interval_s"] == 1
    assert first["config_rev"] == 0 and first["config_error"] is None
    assert (first["mem_free"] is None) == (interp == "cpython"), first["mem_free"]
    if interp == "micropython":
        assert isinstance(first["mem_free"], int) and first["mem_free"] > 0
    assert first["counters"] == {"commands": 0, "items": 0, "reconnects": 0,
                                 "rejected_commands": 0, "rejected_items": 0}
    service.publish("basket/1/status", b"start")
    c.wait_log("session started")  # items before it are ignored, not counted
    c.items("MLON", "bad code!")
    later = wait_report(service, lambda d: d["counters"]["items"] == 1, what="items counted")
    assert later["counters"] == {"commands": 1, "items": 1, "reconnects": 0,
                                 "rejected_commands": 0, "rejected_items": 1}, later
    assert later["uptime_s"] >= first["uptime_s"]
    late = Peer(broker.port, "service", "service-pw")
    try:
        late.subscribe(HEALTH)
        late.wait_for(lambda: late.payloads(HEALTH), what="the retained report")
        with late.cond:
            retained = [r for t, _, r in late.messages if t == HEALTH][0]
        assert retained and list(json.loads(late.payloads(HEALTH)[0])) == KEYS
    finally:
        late.close()
    assert "Traceback" not in c.output()


def test_a_reader_unplugged_shows_down_within_two_reports_and_ok_when_back(
        interp: str, controller: Callable[..., ControllerProc], service: Peer,
        tmp_path: Path) -> None:
    link = str(tmp_path / "rfid0")
    emu = Yrm100Emulator(link=link)
    try:
        c = controller(ITEM_SOURCE="rfid:" + link, RFID_CYCLE_MS="200", HEALTH_INTERVAL_S="2",
                       DISPLAY="none").start()
        ok = wait_report(service, lambda d: d["readers"] and d["readers"][0]["state"] == "ok")
        assert ok["readers"] == [{"last_read_s": None, "name": link, "state": "ok"}], ok
        m = service.mark()
        emu.disconnect()  # unplugged
        c.wait_log("rfid: reader %s lost" % link)
        down = wait_report(service, lambda d: d["readers"][0]["state"] == "down", start=m)
        assert down["readers"][0]["name"] == link
        # within two cycles: at most one report (one already on its way) before it
        got = reports(service, m)
        assert got.index(down) <= 1, got
        m = service.mark()
        emu.reconnect()
        wait_report(service, lambda d: d["readers"][0]["state"] == "ok", start=m,
                    what="the reader back")
        assert reports(service, m).index(
            next(d for d in reports(service, m) if d["readers"][0]["state"] == "ok")) <= 1
        assert "Traceback" not in c.output()
    finally:
        emu.close()


def test_a_board_reports_rssi_mem_free_boot_and_battery(tmp_path: Path, broker: Broker,
                                                        service: Peer) -> None:
    flash = make_flash(tmp_path, broker.port, DISPLAY="console", HEALTH_INTERVAL_S="1",
                       BATTERY_ADC_PIN="34", BATTERY_DIVIDER="2000")
    (flash / "rssi").write_text("-67")
    (flash / "reset_cause").write_text("3")  # WDT_RESET
    (flash / "adc34").write_text("1850000")  # 1.85 V at the pin: 3.7 V at the battery
    proc = BoardProc(flash)
    proc.start(stdin=True)
    try:
        doc = wait_report(service, lambda d: True, what="the board's report")
        assert doc["rssi"] == -67 and doc["boot"] == "wdt_reset", doc
        assert doc["battery_mv"] == 3700, doc
        assert isinstance(doc["mem_free"], int) and doc["mem_free"] > 0, doc
        assert doc["runtime"].startswith("micropython ") and doc["readers"] == []
        assert doc["display"] == "ok"  # DISPLAY: console by default
        m = service.mark()
        (flash / "rssi").write_text("-80")  # the next report reads the signal again
        wait_report(service, lambda d: d["rssi"] == -80, start=m, what="rssi -80")
        calls = (flash / "calls.log").read_text()
        assert "ADC 34" in calls
    finally:
        proc.stop()
    assert "Traceback" not in proc.output()


def test_an_unplugged_reader_becomes_an_alert_at_the_store(
        interp: str, controller: Callable[..., ControllerProc], broker: Broker,
        tmp_path: Path) -> None:
    """The whole path: the emulated reader unplugged -> the basket's report -> the service's
    database -> `basket_service health` shows the reader down and a `reader_down` alert."""
    from tests.support.service_proc import ServiceProc, cli, service_env

    env = service_env(broker.port, {"BASKET_DB": str(tmp_path / "basket.db")})
    svc = ServiceProc(env).start()
    link = str(tmp_path / "rfid0")
    emu = Yrm100Emulator(link=link)

    def fleet_row() -> dict[str, Any] | None:
        res = cli(env, "health", "--json")
        assert res.returncode == 0, res.stderr
        rows = [json.loads(ln) for ln in res.stdout.splitlines()]
        return next((r for r in rows if r["basket"] == 1), None)

    try:
        c = controller(ITEM_SOURCE="rfid:" + link, RFID_CYCLE_MS="200", HEALTH_INTERVAL_S="2",
                       DISPLAY="none").start()
        svc.wait_line(r"basket 1: health report stored", timeout=15)
        row = fleet_row()
        assert row is not None and row["readers"][0]["state"] == "ok", row
        assert not [a for a in row["alerts"] if a["kind"] == "reader_down"], row
        emu.disconnect()
        c.wait_log("rfid: reader %s lost" % link)
        svc.wait_line(r"basket 1: health report stored.*down", timeout=15)
        row = fleet_row()
        assert row is not None and row["readers"][0]["state"] == "down", row
        assert [a for a in row["alerts"] if a["kind"] == "reader_down"], row
        table = cli(env, "health").stdout
        assert "reader_down" in table or "down" in table, table
        assert svc.count("Traceback") == 0 and "Traceback" not in c.output()
    finally:
        emu.close()
        svc.stop()
