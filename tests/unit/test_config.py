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


def test_help_lists_every_key():
    text = helptext.help_text()
    for key, _, _ in helptext.SETTINGS:
        assert key in text
    # config.KEYS (what board.py accepts in config.json) and the help table stay in step
    assert [key for key, _, _ in helptext.SETTINGS] == list(config.KEYS)


def test_runtime_build_releases_config_on_micropython():
    # start-up code gives its heap back on a board: runtime.build() drops config.py from
    # sys.modules, and Config has no methods that would keep the module's code alive
    import sys

    from mqtt_controller import compat
    from mqtt_controller.runtime import build

    env = {"MQTT_TOPIC": "basket/7", "ITEM_SOURCE": "none", "DISPLAY": "none",
           "CART_STATE_FILE": ""}
    cfg, rt = build(env.get)
    assert cfg.basket_id == 7 and rt.status_topic == "basket/7/status"
    assert ("mqtt_controller.config" not in sys.modules) == compat.MICROPYTHON
    assert [k for k in type(cfg).__dict__ if callable(type(cfg).__dict__[k])] == []
