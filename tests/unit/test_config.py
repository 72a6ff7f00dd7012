from _util import raises

from mqtt_controller import config, helptext
from mqtt_controller.config import ConfigError


def load(**env):
    return config.load(env.get)


def test_defaults_from_topic():
    c = load(MQTT_TOPIC="basket/1")
    assert (c.host, c.port, c.topic, c.basket_id, c.client_id, c.keepalive) == (
        "localhost", 1883, "basket/1", 1, "basket-1", 60)
    assert c.state_file == "basket-1.state.json"
    assert c.item_source == "stdin" and c.display == "console" and not c.tls


def test_topic_from_basket_id_and_trailing_number():
    assert load(BASKET_ID="7").topic == "basket/7"
    c = load(MQTT_TOPIC="basket/unit0001")
    assert c.basket_id == 1 and c.client_id == "basket-1"
    c = load(MQTT_TOPIC="store/a", BASKET_ID=3, MQTT_CLIENT_ID="x")
    assert (c.topic, c.basket_id, c.client_id) == ("store/a", 3, "x")


def test_original_mqtt_pass_is_accepted():
    assert load(BASKET_ID="1", MQTT_USER="u", MQTT_PASS="secret").password == "secret"
    assert load(BASKET_ID="1", MQTT_USER="u", MQTT_PASS="a", MQTT_PASSWORD="b").password == "b"


def test_errors_name_the_key():
    cases = [
        ({}, "MQTT_TOPIC"),
        ({"MQTT_TOPIC": "basket/x"}, "BASKET_ID"),
        ({"BASKET_ID": "one"}, "BASKET_ID"),
        ({"BASKET_ID": "1", "MQTT_PORT": "0"}, "MQTT_PORT"),
        ({"BASKET_ID": "1", "MQTT_PORT": "70000"}, "MQTT_PORT"),
        ({"BASKET_ID": "1", "MQTT_PORT": "18 83"}, "MQTT_PORT"),
        ({"BASKET_ID": "1", "MQTT_KEEPALIVE": "-5"}, "MQTT_KEEPALIVE"),
        ({"MQTT_TOPIC": "basket/+/1"}, "MQTT_TOPIC"),
        ({"BASKET_ID": "1", "MQTT_HOST": " "}, "MQTT_HOST"),
        ({"BASKET_ID": "1", "MQTT_PASSWORD": "pw"}, "MQTT_USER"),
        ({"BASKET_ID": "1", "MQTT_TLS": "1"}, "MQTT_CAFILE"),
        ({"BASKET_ID": "1", "MQTT_TLS": "maybe"}, "MQTT_TLS"),
        ({"BASKET_ID": "1", "LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"BASKET_ID": "1", "MQTT_CLIENT_ID": "x" * 65}, "MQTT_CLIENT_ID"),
    ]
    for env, key in cases:
        e = raises(ConfigError, config.load, env.get)
        assert e.key == key and key in str(e), (env, str(e))


def test_password_never_in_repr_or_errors():
    c = load(BASKET_ID="1", MQTT_USER="u", MQTT_PASSWORD="hunter2")
    assert "hunter2" not in repr(c)
    e = raises(ConfigError, config.load,
               {"BASKET_ID": "1", "MQTT_PASSWORD": "hunter2", "MQTT_PORT": "x"}.get)
    assert "hunter2" not in str(e)


def test_board_json_values_may_be_numbers():
    c = load(MQTT_TOPIC="basket/2", MQTT_PORT=8883, MQTT_KEEPALIVE=30)
    assert (c.port, c.keepalive) == (8883, 30)


def test_every_error_reads_key_colon_what_is_wrong():
    cases = [
        ({"BASKET_ID": "1", "MQTT_PORT": "x"}, "MQTT_PORT: must be a whole number from 1 to 65535"),
        ({"BASKET_ID": "1", "MQTT_HOST": 5}, "MQTT_HOST: must be text"),
        ({"BASKET_ID": "1", "MQTT_HOST": ""}, "MQTT_HOST: must not be empty"),
        ({"BASKET_ID": "1", "MQTT_USER": "u", "MQTT_PASS": 7}, "MQTT_PASS: must be text"),
        ({"BASKET_ID": "1", "LOG_LEVEL": "Loud"},
         "LOG_LEVEL: must be debug, info, warning, warn or error (got 'loud')"),
        ({"BASKET_ID": "1", "MQTT_CLIENT": "Paho"}, "MQTT_CLIENT: must be builtin or umqtt"),
        ({"BASKET_ID": "1", "MQTT_TLS": "maybe"}, "MQTT_TLS: must be 1 or 0 (got 'maybe')"),
        ({"BASKET_ID": "1", "MQTT_CLIENT_ID": "x" * 65},
         "MQTT_CLIENT_ID: must be at most 64 characters"),
        ({"BASKET_ID": "1", "ITEM_SOURCE": "rfid:/dev/x", "RFID_POWER": "loud"},
         "RFID_POWER: must be a transmit power in dBm from 10 to 30 (got 'loud')"),
        ({"BASKET_ID": "1", "ITEM_SOURCE": "rfid:/dev/x", "RFID_CYCLE_MS": "10"},
         "RFID_CYCLE_MS: must be a whole number from 50 to 60000 (got '10')"),
        ({"BASKET_ID": "1", "ITEM_SOURCE": "rfid:/dev/x", "RFID_REGION": "MARS"},
         "RFID_REGION: must be one of CN800, CN900, EU, KR, US, keep, or a region code"),
    ]
    for env, start in cases:
        e = raises(ConfigError, config.load, env.get)
        assert str(e).startswith(start), (env, str(e))
        assert e.key == start.split(":")[0]


def test_blank_values():
    c = load(BASKET_ID="4", MQTT_TOPIC=" ", MQTT_CLIENT_ID="", CART_STATE_FILE="", ITEM_SOURCE=" ",
             DISPLAY="", LOG_LEVEL="", MQTT_CLIENT=" ", MQTT_USER="", MQTT_PASSWORD="",
             MQTT_PORT="", MQTT_CAFILE=" ")
    assert (c.topic, c.client_id, c.state_file, c.item_source, c.display) == (
        "basket/4", "basket-4", "", "stdin", "console")
    assert (c.log_level, c.mqtt_client, c.user, c.password, c.port, c.cafile) == (
        "info", "builtin", None, None, 1883, None)


def test_whole_numbers_from_text_or_json():
    for raw, value in (("60", 60), (" 60 ", 60), (60, 60), (60.0, 60), ("+60", 60)):
        assert load(BASKET_ID="1", MQTT_KEEPALIVE=raw).keepalive == value, raw
    for raw in ("6O", "60.0", "1e2", 60.5, True, "", " "):
        if raw == "":
            continue  # blank: the default
        raises(ConfigError, config.load, {"BASKET_ID": "1", "MQTT_KEEPALIVE": raw}.get)


def test_rfid_settings_are_read_with_an_rfid_source_only():
    assert load(BASKET_ID="1", RFID_POWER="loud").settings is None
    c = load(BASKET_ID="1", ITEM_SOURCE="rfid:/dev/ttyUSB0", RFID_POWER="20.5",
             RFID_REGION="keep", RFID_RSSI_MIN="-60")
    assert c.settings == {"RFID_POWER": 2050, "RFID_REGION": None, "RFID_RSSI_MIN": -60,
                          "RFID_PRESENCE": 1, "RFID_ABSENCE": 2, "RFID_CYCLE_MS": 500}


def test_board_settings():
    s = config.board_settings({"WIFI_SSID": " shop ", "WIFI_IP": "10.0.0.5",
                               "WIFI_GATEWAY": "10.0.0.1", "WATCHDOG_MS": 30000,
                               "SAFE_PIN": "none"}.get)
    assert (s.ssid, s.password, s.ip, s.netmask, s.gateway, s.dns) == (
        "shop", None, "10.0.0.5", "255.255.255.0", "10.0.0.1", "10.0.0.1")
    assert (s.timeout_ms, s.retries, s.watchdog_ms, s.safe_pin) == (15000, 3, 30000, None)
    assert config.board_settings({}.get).safe_pin == 0
    for env, start in (({"WATCHDOG_MS": 10}, "WATCHDOG_MS: 0 (off) or 1000-3600000 (got 10)"),
                       ({"WIFI_IP": "10.0.0.5"}, "WIFI_GATEWAY: required with WIFI_IP"),
                       ({"WIFI_DNS": "10.0.0"}, "WIFI_DNS: must be an IPv4 address"),
                       ({"WIFI_RETRIES": "0"}, "WIFI_RETRIES: must be a whole number from 1")):
        e = raises(ConfigError, config.board_settings, env.get)
        assert str(e).startswith(start), (env, str(e))


def test_known_keys_are_the_table():
    known = config.known_keys()
    for key in ("MQTT_HOST", "MQTT_PASS", "RFID_POWER", "WIFI_SSID", "SAFE_PIN"):
        assert key in known
    assert len(set(known)) == len(known)


def test_help_lists_every_key_with_a_meaning():
    text = helptext.help_text()
    keys = [row[0] for row in config.CONTROLLER + config.RFID + config.BOARD]
    for key in keys:
        assert "\n  %s " % key in text, key
    # every key in the table has a meaning, and every meaning a key
    assert sorted(helptext.MEANINGS) == sorted(keys)
    assert "[1-65535; default: 1883]" in text and "[-128 to 0; default: -58]" in text


def test_startup_build_releases_config_on_micropython():
    # start-up code gives its heap back on a board: startup.build() drops config.py (before
    # the runtime's modules load) and itself from sys.modules, and Config has no methods that
    # would keep the module's code alive
    import sys

    from mqtt_controller import compat
    from mqtt_controller.startup import build

    env = {"MQTT_TOPIC": "basket/7", "ITEM_SOURCE": "none", "DISPLAY": "none",
           "CART_STATE_FILE": ""}
    cfg, rt = build(env.get)
    assert cfg.basket_id == 7 and rt.status_topic == "basket/7/status"
    assert ("mqtt_controller.config" not in sys.modules) == compat.MICROPYTHON
    assert ("mqtt_controller.startup" not in sys.modules) == compat.MICROPYTHON
    # no saved remote set: remote.py waits for a config message
    assert rt.remote is None
    assert ("mqtt_controller.remote" not in sys.modules) == compat.MICROPYTHON
    for cls in (type(cfg), config.BoardSettings):
        assert [k for k in cls.__dict__ if callable(cls.__dict__[k])] == []
