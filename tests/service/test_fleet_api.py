"""The dashboard's fleet API: /api/fleet (one row per basket from basket_service.fleet.fleet,
in the OpenAPI description), /api/fleet/{n}/events (the recorded state changes), the alerts on
the board's cards (/api/baskets), the /fleet page, the token rules, and the live feed's `fleet`
events on a real server. Health reports go in through the store's own functions
(contract.parse_health, fleet.record_health_tx), as the service stores them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from basket_service import config, contract, fleet, store
from basket_service.db import Database
from basket_service.web.access import Access
from basket_service.web.routes import create_app
from basket_service.web.server import Dashboard
from tests.service.test_dashboard_api import Feed
from tests.support.fake_basket import health_doc

LOCAL = "http://127.0.0.1:8080"
TOKEN = "s3cret-token-for-tests-0123456789"
ROW_KEYS = {"basket", "online", "in_use", "version", "runtime", "uptime_s", "last_seen", "rssi",
            "readers", "display", "battery_mv", "mem_free", "config_rev", "config_error",
            "desired_rev", "alerts"}


def report(db: Database, basket: int, **over: Any) -> None:
    """A health report as the service stores it: checked by the contract, then recorded."""
    doc = contract.parse_health(basket, json.dumps(health_doc(basket, **over)).encode())
    with db.tx() as t:
        fleet.record_health_tx(t, basket, doc)


@pytest.fixture
def client(env, db) -> Iterator[TestClient]:
    with TestClient(create_app(config.load(env)), base_url=LOCAL) as c:
        yield c


def test_fleet_api_rows_and_alerts(client, db):
    assert client.get("/api/fleet").json() == []
    store.set_availability(db, 1, True)
    store.set_availability(db, 2, True)
    report(db, 1, rssi=-61, battery_mv=3900, mem_free=40000)
    report(db, 2, readers=[{"last_read_s": 4, "name": "/dev/ttyUSB0", "state": "ok"},
                           {"last_read_s": None, "name": "/dev/ttyUSB1", "state": "down"}])
    r = client.get("/api/fleet")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    rows = {row["basket"]: row for row in r.json()}  # the order is not what is tested
    assert sorted(rows) == [1, 2]
    for row in rows.values():
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["online"] is True and row["in_use"] is False
        assert row["version"] == "0.1.0" and row["runtime"] == "cpython 3.11.7"
        assert row["uptime_s"] == 3600 and row["config_rev"] == 0 and row["desired_rev"] is None
        assert isinstance(row["last_seen"], str)
    b1, b2 = rows[1], rows[2]
    assert (b1["rssi"], b1["battery_mv"], b1["mem_free"]) == (-61, 3900, 40000)
    assert b1["alerts"] == []
    assert [x["state"] for x in b2["readers"]] == ["ok", "down"]
    assert b2["alerts"] == [{"kind": "reader_down", "text": "reader /dev/ttyUSB1 down"}]
    # The cards' badge: the board carries each basket's alerts (the same list).
    cards = {b["basket"]: b for b in client.get("/api/baskets").json()}
    assert cards[1]["alerts"] == [] and cards[2]["alerts"] == b2["alerts"]
    assert client.get("/api/baskets/2").json()["alerts"] == b2["alerts"]

    # The reader comes back: the alert clears and the history has both changes.
    report(db, 2, readers=[{"last_read_s": 4, "name": "/dev/ttyUSB0", "state": "ok"},
                           {"last_read_s": 1, "name": "/dev/ttyUSB1", "state": "ok"}])
    rows = {row["basket"]: row for row in client.get("/api/fleet").json()}
    assert rows[2]["alerts"] == []
    r = client.get("/api/fleet/2/events")
    assert r.status_code == 200
    changes = [(e["what"], e["old"], e["new"]) for e in r.json()
               if e["what"] == "reader /dev/ttyUSB1"]
    assert changes == [("reader /dev/ttyUSB1", "down", "ok"),
                       ("reader /dev/ttyUSB1", None, "down")]  # newest first
    assert all(e["basket"] == 2 for e in r.json())
    assert client.get("/api/fleet/7/events").json() == []
    assert client.get("/api/fleet/0/events").status_code == 422


def test_fleet_api_alert_kinds_reach_the_page(client, db):
    store.set_availability(db, 3, True)
    report(db, 3, display="failed", battery_mv=3100, config_error="RFID_POWER: must be 0-30")
    store.set_availability(db, 4, True)
    store.start_session(db, 4)
    store.set_availability(db, 4, False)
    rows = {row["basket"]: row for row in client.get("/api/fleet").json()}
    assert {a["kind"] for a in rows[3]["alerts"]} == {"display_failed", "low_battery",
                                                       "config_rejected"}
    assert rows[4]["alerts"] == [{"kind": "offline_in_session",
                                  "text": "offline while a session is open"}]
    assert rows[4]["in_use"] is True and rows[4]["online"] is False


def test_fleet_page_and_openapi(client):
    r = client.get("/fleet")
    assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert b'id="fleet"' in r.content and b'src="static/fleet.js"' in r.content
    assert b"<script>" not in r.content and b"style=" not in r.content  # the CSP: no inline
    assert client.get("/static/fleet.js").status_code == 200
    # The pages link to each other.
    assert b'href="fleet"' in client.get("/").content
    assert b'href="./"' in r.content
    spec = client.get("/openapi.json").json()
    assert "/api/fleet" in spec["paths"] and "/api/fleet/{basket}/events" in spec["paths"]
    fleet_out = spec["components"]["schemas"]["FleetOut"]
    assert ROW_KEYS <= set(fleet_out["properties"])
    assert "alerts" in spec["components"]["schemas"]["BasketOut"]["properties"]


def test_fleet_api_needs_the_token(env, db):
    with TestClient(create_app(config.load(env), token=TOKEN), base_url=LOCAL) as c:
        for path in ("/api/fleet", "/api/fleet/1/events"):
            r = c.get(path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        assert c.get("/fleet").status_code == 401
        r = c.get("/api/fleet", headers={"Authorization": "Bearer " + TOKEN})
        assert r.status_code == 200 and r.json() == []


def test_fleet_live_feed(env, db):
    dash = Dashboard(config.load(env), Access("127.0.0.1", 0)).start()
    feed = Feed(dash.access.url + "api/events")
    try:
        feed.wait(lambda n, d: n == "snapshot")
        store.set_availability(db, 5, True)
        report(db, 5, uptime_s=10)
        # Each report changes the basket's row: the feed carries the new row.
        _, row = feed.wait(lambda n, d: n == "fleet" and d["basket"] == 5
                           and d["uptime_s"] == 10)
        assert ROW_KEYS <= set(row) and row["alerts"] == []
        report(db, 5, uptime_s=70, readers=[{"last_read_s": None, "name": "/dev/ttyUSB0",
                                             "state": "down"}])
        _, row = feed.wait(lambda n, d: n == "fleet" and d["uptime_s"] == 70)
        assert [a["kind"] for a in row["alerts"]] == ["reader_down"]
        # The card's badge follows: a `basket` event with the alert.
        feed.wait(lambda n, d: n == "basket" and d["basket"] == 5
                  and [a["kind"] for a in d["alerts"]] == ["reader_down"])
    finally:
        dash.stop()
        feed.close()
