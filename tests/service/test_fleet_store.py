"""The store's side of fleet health on both databases, in-process: the latest report per
basket, health_events only on changes, alerts from stored state with a fake `now`,
desired configs, a sweep's older copy."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from basket_service import config, contract, fleet, store
from basket_service.db import Database, open_db
from tests.support.fake_basket import encode_health, health_doc


@pytest.fixture
def db(any_db: dict[str, str]) -> Iterator[Database]:
    d = open_db(config.load(any_db))
    yield d
    d.close()


def report(db: Database, basket: int, since: str | None = None, **changes: object):
    doc = contract.parse_health(basket, encode_health(health_doc(basket, **changes)))
    with db.tx() as t:
        return fleet.record_health_tx(t, basket, doc, since=since)


def events(db: Database, basket: int) -> list[tuple[str, str | None, str | None]]:
    return [(e["what"], e["old"], e["new"]) for e in reversed(fleet.history(db, basket))]


def test_latest_wins_and_events_only_on_changes(db):
    first = report(db, 1)
    assert first == [("version", None, "0.1.0"), ("display", None, "ok"),
                     ("config_rev", None, "0"), ("reader /dev/ttyUSB0", None, "ok")]
    assert report(db, 1, uptime_s=3660) == []  # the same state: no event
    assert report(db, 1, uptime_s=3720, counters={"commands": 9}) == []
    down = [{"last_read_s": None, "name": "/dev/ttyUSB0", "state": "down"}]
    assert report(db, 1, uptime_s=3780, readers=down) == [("reader /dev/ttyUSB0", "ok", "down")]
    assert report(db, 1, uptime_s=3840, readers=down, config_rev=2, display="failed",
                  config_error="LOG_LEVEL: bad") == [
        ("display", "ok", "failed"), ("config_rev", "0", "2"),
        ("config_error", None, "LOG_LEVEL: bad")]
    assert report(db, 1, uptime_s=10, readers=[], version="0.2.0", config_rev=2,
                  display="failed", config_error="LOG_LEVEL: bad") == [
        ("version", "0.1.0", "0.2.0"), ("reader /dev/ttyUSB0", "down", None)]
    store.set_availability(db, 1, True)
    store.set_availability(db, 1, True)  # no change: no event
    store.set_availability(db, 1, False)
    assert events(db, 1)[-2:] == [("online", None, "online"), ("online", "online", "offline")]
    assert len(events(db, 1)) == 4 + 1 + 3 + 2 + 2

    rows = fleet.fleet(db)
    assert [r["basket"] for r in rows] == [1]
    r = rows[0]
    assert (r["uptime_s"], r["version"], r["readers"], r["online"]) == (10, "0.2.0", [], False)
    assert r["counters"]["commands"] == 3 and r["health_at"] is not None


def test_alerts_from_stored_state_with_a_fake_now(db):
    report(db, 1, interval_s=60)
    report(db, 2, interval_s=60, readers=[{"last_read_s": None, "name": "r0", "state": "down"}])
    report(db, 3, interval_s=0, version="0.0.9")
    store.set_availability(db, 1, True)
    store.set_availability(db, 2, True)
    at = datetime.fromisoformat(str(fleet.fleet(db)[0]["health_at"]))

    def by_basket(now: datetime) -> dict[int, list[str]]:
        return {r["basket"]: [a["kind"] for a in r["alerts"]] for r in fleet.fleet(db, now)}

    assert by_basket(at + timedelta(seconds=60)) == {1: [], 2: ["reader_down"],
                                                     3: ["version_mismatch"]}
    late = by_basket(at + timedelta(seconds=181))
    assert late == {1: ["silent"], 2: ["silent", "reader_down"], 3: ["version_mismatch"]}
    # Back: a new report clears it.
    report(db, 1, interval_s=60)
    again = datetime.fromisoformat(str(fleet.fleet(db)[0]["health_at"]))
    assert by_basket(again + timedelta(seconds=60))[1] == []


def test_rejections_compare_with_the_previous_report(db):
    report(db, 1)
    c = dict(health_doc(1)["counters"])  # type: ignore[call-overload]
    report(db, 1, counters=dict(c, rejected_items=10))
    kinds = [a["kind"] for a in fleet.fleet(db)[0]["alerts"]]
    assert kinds == ["rejections"]
    report(db, 1, counters=dict(c, rejected_items=11))
    assert fleet.fleet(db)[0]["alerts"] == []


def test_offline_in_session(db):
    store.start_session(db, 4)
    store.set_availability(db, 4, False)
    r = fleet.fleet(db)[0]
    assert (r["basket"], r["in_use"], [a["kind"] for a in r["alerts"]]) == (
        4, True, ["offline_in_session"])


def test_desired_config_and_known_baskets(db):
    assert fleet.set_config(db, 5, {"RFID_RSSI_MIN": -60}) == (1, {"RFID_RSSI_MIN": -60})
    assert fleet.set_config(db, 5, {"LOG_LEVEL": "debug"}) == (
        2, {"RFID_RSSI_MIN": -60, "LOG_LEVEL": "debug"})
    assert fleet.set_config(db, 5, {"RFID_RSSI_MIN": -50})[1]["RFID_RSSI_MIN"] == -50
    report(db, 6, config_rev=3, config_error="RFID_POWER: bad")
    store.set_availability(db, 7, True)
    assert fleet.known_baskets(db) == [5, 6, 7]
    rows = {r["basket"]: r for r in fleet.fleet(db)}
    assert rows[5]["desired_rev"] == 3 and rows[6]["desired_rev"] is None
    shown = {c["basket"]: c for c in fleet.configs(db, [5, 6])}
    assert shown[5]["set"] == {"LOG_LEVEL": "debug", "RFID_RSSI_MIN": -50}
    assert (shown[6]["desired_rev"], shown[6]["config_rev"], shown[6]["config_error"]) == (
        None, 3, "RFID_POWER: bad")
    # Too big for the contract's 1,024 bytes: refused, nothing written.
    with pytest.raises(ValueError):
        fleet.set_config(db, 5, {"LOG_LEVEL": "x" * 1100})
    assert fleet.configs(db, [5])[0]["desired_rev"] == 3


def test_a_sweeps_older_copy_is_not_stored(db):
    report(db, 1, uptime_s=100)
    since = "2000-01-01T00:00:00.000+00:00"  # the sweep began before the stored report
    assert report(db, 1, since=since, uptime_s=50) is None
    assert fleet.fleet(db)[0]["uptime_s"] == 100
    assert report(db, 1, since="2999-01-01T00:00:00.000+00:00", uptime_s=150) == []
    assert fleet.fleet(db)[0]["uptime_s"] == 150
