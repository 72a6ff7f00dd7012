"""Start-up: --help, and configuration errors that name the variable (exit 2, no traceback)."""

from __future__ import annotations

import pytest

from tests.support.process import run_once


def test_help_lists_the_settings(interp: str) -> None:
    r = run_once(interp, {"ARGS": "--help"})
    assert r.returncode == 0
    for key in ("MQTT_HOST", "MQTT_PORT", "MQTT_USER", "MQTT_PASSWORD", "MQTT_TOPIC",
                "BASKET_ID", "MQTT_CLIENT_ID", "MQTT_KEEPALIVE", "CART_STATE_FILE",
                "ITEM_SOURCE", "LOG_LEVEL", "RFID_POWER", "WIFI_SSID"):
        assert key in r.stdout
    assert "[1-65535; default: 1883]" in r.stdout


@pytest.mark.parametrize(("env", "key"), [
    ({}, "MQTT_TOPIC"),
    ({"MQTT_TOPIC": "basket/1", "MQTT_PORT": "eighty"}, "MQTT_PORT"),
    ({"MQTT_TOPIC": "basket/one"}, "BASKET_ID"),
    ({"MQTT_TOPIC": "basket/1", "MQTT_KEEPALIVE": "0"}, "MQTT_KEEPALIVE"),
    ({"MQTT_TOPIC": "basket/1", "DISPLAY": "hologram"}, "DISPLAY"),
    ({"MQTT_TOPIC": "basket/1", "MQTT_TLS": "1", "MQTT_CAFILE": "/nonexistent/ca.crt"},
     "MQTT_CAFILE"),
    ({"MQTT_TOPIC": "basket/1", "ITEM_SOURCE": "rfid:"}, "ITEM_SOURCE"),
    ({"MQTT_TOPIC": "basket/1", "ITEM_SOURCE": "rfid:/dev/null", "RFID_POWER": "loud"},
     "RFID_POWER"),
    ({"MQTT_TOPIC": "basket/1", "LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
])
def test_configuration_errors(interp: str, env: dict[str, str], key: str) -> None:
    env = dict(env, MQTT_PASSWORD="pw-9f8e7d", MQTT_USER="u")
    r = run_once(interp, env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "configuration error: %s: " % key in r.stderr, r.stderr  # KEY: what is wrong
    assert "Traceback" not in r.stderr + r.stdout
    assert "pw-9f8e7d" not in r.stderr + r.stdout


def test_unknown_argument(interp: str) -> None:
    r = run_once(interp, {"ARGS": "--bogus", "MQTT_TOPIC": "basket/1"})
    assert r.returncode == 2 and "--bogus" in r.stderr
