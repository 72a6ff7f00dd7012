"""The store's side of fleet health, pure parts: alerts (every kind, and its absence), the
health report's validation, the remote-safe settings and the config payload."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from basket_service import contract
from basket_service.contract import Rejected
from basket_service.fleet import ALERT_KINDS, Thresholds, alerts, fleet_version
from mqtt_controller import config as controller_config
from tests.support.fake_basket import encode_health, health_doc

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
T = Thresholds()


def row(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"online": True, "in_use": False,
                               "health_at": NOW.isoformat(), "prev_counters": None}
    base.update(kw)
    return base


def kinds(r: dict[str, object], doc: dict[str, object] | None, version: str | None = "0.1.0",
          now: datetime = NOW, thresholds: Thresholds = T) -> list[str]:
    return [a["kind"] for a in alerts(r, doc, now, version, thresholds)]


def test_a_healthy_basket_has_no_alert():
    assert kinds(row(), health_doc(1)) == []
    assert kinds(row(in_use=True), health_doc(1)) == []
    assert kinds(row(), None) == []  # never reported: nothing to judge but its session


def test_offline_in_session():
    assert kinds(row(online=False, in_use=True), health_doc(1)) == ["offline_in_session"]
    assert kinds(row(online=False, in_use=True), None) == ["offline_in_session"]
    assert kinds(row(online=False, in_use=False), health_doc(1)) == []
    assert kinds(row(online=None, in_use=True), health_doc(1)) == []


def test_silent_after_three_intervals_never_with_interval_0():
    doc = health_doc(1, interval_s=60)
    at = row(health_at=(NOW - timedelta(seconds=180)).isoformat())
    assert kinds(at, doc) == ["silent"]
    assert "interval 60 s" in alerts(at, doc, NOW, "0.1.0", T)[0]["text"]
    assert kinds(row(health_at=(NOW - timedelta(seconds=179)).isoformat()), doc) == []
    assert kinds(row(health_at=(NOW - timedelta(days=9)).isoformat()),
                 health_doc(1, interval_s=0)) == []
    # An offline basket said so: it is offline, not silent.
    assert kinds(row(online=False, health_at=(NOW - timedelta(hours=1)).isoformat()), doc) == []


def test_reader_down_one_alert_per_reader():
    doc = health_doc(1, readers=[{"last_read_s": None, "name": "/dev/ttyUSB0", "state": "down"},
                                 {"last_read_s": 3, "name": "/dev/ttyUSB1", "state": "ok"},
                                 {"last_read_s": None, "name": "uart1", "state": "down"}])
    got = alerts(row(), doc, NOW, "0.1.0", T)
    assert got == [{"kind": "reader_down", "text": "reader /dev/ttyUSB0 down"},
                   {"kind": "reader_down", "text": "reader uart1 down"}]
    assert kinds(row(), health_doc(1, readers=[])) == []


def test_display_failed():
    assert kinds(row(), health_doc(1, display="failed")) == ["display_failed"]
    assert kinds(row(), health_doc(1, display="none")) == []


def test_low_memory_and_battery_against_the_thresholds():
    assert kinds(row(), health_doc(1, mem_free=8191)) == ["low_memory"]
    assert kinds(row(), health_doc(1, mem_free=8192)) == []
    assert kinds(row(), health_doc(1, mem_free=None)) == []
    assert kinds(row(), health_doc(1, mem_free=9000), thresholds=Thresholds(10000, 3400)) == [
        "low_memory"]
    assert kinds(row(), health_doc(1, battery_mv=3399)) == ["low_battery"]
    assert kinds(row(), health_doc(1, battery_mv=3400)) == []
    assert kinds(row(), health_doc(1, battery_mv=None)) == []
    assert kinds(row(), health_doc(1, battery_mv=3500), thresholds=Thresholds(8192, 3600)) == [
        "low_battery"]


def test_version_mismatch_against_the_most_common():
    docs = [health_doc(1), health_doc(2), health_doc(3, version="0.0.9")]
    assert fleet_version(docs + [None]) == "0.1.0"
    assert fleet_version([]) is None
    assert kinds(row(), docs[2], fleet_version(docs)) == ["version_mismatch"]
    assert kinds(row(), docs[0], fleet_version(docs)) == []
    assert kinds(row(), docs[0], None) == []


def test_config_rejected():
    got = alerts(row(), health_doc(1, config_error="RFID_RSSI_MIN: must be -128 to 0"), NOW,
                 "0.1.0", T)
    assert got == [{"kind": "config_rejected",
                    "text": "config rejected: RFID_RSSI_MIN: must be -128 to 0"}]
    assert kinds(row(), health_doc(1, config_error=None, config_rev=3)) == []


def test_rejections_grew_by_ten_since_the_previous_report():
    prev = {"commands": 3, "items": 5, "reconnects": 1, "rejected_commands": 2,
            "rejected_items": 0}
    now_c = dict(prev, rejected_commands=12)
    got = alerts(row(prev_counters=prev), health_doc(1, counters=now_c), NOW, "0.1.0", T)
    assert got == [{"kind": "rejections",
                    "text": "10 commands rejected since the previous report"}]
    assert kinds(row(prev_counters=prev), health_doc(1, counters=dict(
        prev, rejected_items=10))) == ["rejections"]
    assert kinds(row(prev_counters=prev), health_doc(1, counters=dict(
        prev, rejected_commands=11, rejected_items=9))) == []
    assert kinds(row(prev_counters=None), health_doc(1, counters=now_c)) == []
    # A restart zeroes the counters: no alert.
    assert kinds(row(prev_counters=now_c), health_doc(1, counters=prev)) == []


def test_every_kind_is_covered_here():
    seen = {"offline_in_session", "silent", "reader_down", "display_failed", "low_memory",
            "low_battery", "version_mismatch", "config_rejected", "rejections"}
    assert seen == set(ALERT_KINDS)


# --- the health report's validation -------------------------------------------------------
def test_parse_health_accepts_the_contract_example_and_extra_keys():
    payload = encode_health(health_doc(7))
    assert len(payload) <= contract.MAX_HEALTH
    doc = contract.parse_health(7, payload)
    assert doc == health_doc(7)
    extra = contract.parse_health(7, encode_health(health_doc(7, wifi_channel=6)))
    assert extra["wifi_channel"] == 6
    # The optional keys may be left out (read as null).
    short = health_doc(7)
    for key in ("runtime", "boot", "mem_free", "rssi", "battery_mv"):
        del short[key]
    assert contract.parse_health(7, encode_health(short))["rssi"] is None


@pytest.mark.parametrize("payload, why", [
    (b"[]", "not a JSON object"),
    (b"{", "not JSON"),
    (b"\xff", "not JSON"),
    (b'{"id":1,"id":1}', "duplicate"),
    (encode_health(health_doc(2)), "id 2 on basket 1"),
    (encode_health({k: v for k, v in health_doc(1).items() if k != "readers"}), "no readers"),
    (encode_health(health_doc(1, uptime_s="1h")), "uptime_s is not an integer"),
    (encode_health(health_doc(1, uptime_s=1.5)), "uptime_s is not an integer"),
    (encode_health(health_doc(1, config_rev=True)), "config_rev is not an integer"),
    (encode_health(health_doc(1, config_rev=-1)), "config_rev is negative"),
    (encode_health(health_doc(1, display="broken")), "display"),
    (encode_health(health_doc(1, readers=[{"name": "a", "state": "dead"}])), "reader"),
    (encode_health(health_doc(1, readers=[{"name": "a", "state": "ok"}] * 2)), "twice"),
    (encode_health(health_doc(1, counters={"items": "5"})), "counters"),
    (encode_health(health_doc(1, version="x" * 600)), "bytes"),
])
def test_parse_health_rejects(payload, why):
    with pytest.raises(Rejected) as e:
        contract.parse_health(1, payload)
    assert e.value.reason == "bad_health"
    assert why in str(e.value)


def test_health_topic_parses():
    assert contract.parse_topic("basket/12/health") == (12, "health")
    assert contract.health_topic(12) == "basket/12/health"
    assert contract.config_topic(12) == "basket/12/config"


# --- remote configuration -------------------------------------------------------------------
def test_remote_values():
    assert contract.remote_value("RFID_RSSI_MIN", "-60") == -60
    assert contract.remote_value("RFID_POWER", "+20") == 20
    assert contract.remote_value("HEALTH_INTERVAL_S", "0") == 0
    assert contract.remote_value("LOG_LEVEL", "DEBUG") == "debug"
    for key, raw, why in [("MQTT_HOST", "x", "cannot be set remotely"),
                          ("MQTT_PASSWORD", "x", "cannot be set remotely"),
                          ("RFID_REGION", "KR", "cannot be set remotely"),
                          ("RFID_RSSI_MIN", "-129", "from -128 to 0"),
                          ("RFID_RSSI_MIN", "-6o", "whole number"),
                          ("RFID_CYCLE_MS", "1_000", "whole number"),
                          ("HEALTH_INTERVAL_S", "86401", "from 0 to 86400"),
                          ("LOG_LEVEL", "loud", "one of debug")]:
        with pytest.raises(ValueError) as e:
            contract.remote_value(key, raw)
        assert str(e.value).startswith(key + ": ") and why in str(e.value), str(e.value)


def test_remote_ranges_are_the_controllers():
    rows = controller_config.CONTROLLER + controller_config.RFID
    table = {k: (a, b) for k, _, _, _, a, b in rows}
    assert set(contract.REMOTE_SAFE) == set(controller_config.REMOTE)
    for key, (lo, hi) in contract.REMOTE_INTS.items():
        if key in table:
            assert table[key] == (lo, hi), key
    assert tuple(table["LOG_LEVEL"][0]) == contract.REMOTE_CHOICES["LOG_LEVEL"]


def test_config_payload():
    body = contract.config_payload(3, {"RFID_RSSI_MIN": -60, "LOG_LEVEL": "debug"})
    assert body == b'{"rev":3,"set":{"LOG_LEVEL":"debug","RFID_RSSI_MIN":-60}}'
    assert json.loads(body) == {"rev": 3, "set": {"LOG_LEVEL": "debug", "RFID_RSSI_MIN": -60}}
    with pytest.raises(ValueError):
        contract.config_payload(1, {"K%d" % i: "x" * 50 for i in range(30)})


def test_the_controllers_report_parses():
    """What mqtt_controller/health.py encodes (long readers cut, a long config_error
    shortened) is what parse_health accepts."""
    from mqtt_controller import health

    fields = health_doc(4, config_error="RFID_RSSI_MIN: " + "x" * 400,
                        readers=[{"last_read_s": i, "name": "/dev/ttyUSB%d" % i, "state": "ok"}
                                 for i in range(12)])
    payload = health.encode(fields)
    assert len(payload) <= contract.MAX_HEALTH
    doc = contract.parse_health(4, payload)
    assert doc["id"] == 4 and doc["config_error"].startswith("RFID_RSSI_MIN: ")
    assert contract.parse_health(4, health.encode(health_doc(4))) == health_doc(4)
