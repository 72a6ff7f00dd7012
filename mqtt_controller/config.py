# Settings: environment variables (CPython, MicroPython unix) or config.json on a board, with
# the same keys. Every problem is a ConfigError naming the key; the password is never shown.
from mqtt_controller import protocol
from mqtt_controller.compat import getenv

# Every key load() reads; `--help` documents them (helptext.py, which a board never loads: its
# strings would take heap), and board.py warns about a config.json key not among them.
KEYS = ("MQTT_HOST", "MQTT_PORT", "MQTT_USER", "MQTT_PASSWORD", "MQTT_TOPIC", "BASKET_ID",
        "MQTT_CLIENT_ID", "MQTT_KEEPALIVE", "MQTT_TLS", "MQTT_CAFILE", "CART_STATE_FILE",
        "ITEM_SOURCE", "DISPLAY", "LOG_LEVEL", "MQTT_CLIENT")


class ConfigError(ValueError):
    def __init__(self, key, message):
        super().__init__("%s: %s" % (key, message))
        self.key = key


class Config:
    def __repr__(self):  # never shows the password
        return "Config(host=%r, port=%r, topic=%r, basket_id=%r, user=%r)" % (
            self.host, self.port, self.topic, self.basket_id, self.user)


def _int(get, key, default, lo, hi):
    raw = get(key)
    if raw is None or raw == "":
        return default
    if isinstance(raw, int) and not isinstance(raw, bool):
        v = raw
    else:
        s = str(raw).strip()
        if not s or not (s.isdigit()):
            raise ConfigError(key, "must be a whole number from %d to %d (got %r)" % (lo, hi, raw))
        v = int(s)
    if not lo <= v <= hi:
        raise ConfigError(key, "must be a whole number from %d to %d (got %r)" % (lo, hi, raw))
    return v


def _str(get, key, default=""):
    raw = get(key)
    if raw is None:
        return default
    if not isinstance(raw, str):
        raise ConfigError(key, "must be text")
    return raw


def _flag(get, key):
    raw = str(get(key) or "0").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(key, "must be 1 or 0 (got %r)" % raw)


def load(get=None):
    """Builds a Config from get(key) -> value or None (default: the environment)."""
    if get is None:
        get = getenv
    c = Config()
    c.host = _str(get, "MQTT_HOST", "localhost").strip()
    if not c.host:
        raise ConfigError("MQTT_HOST", "must not be empty")
    c.port = _int(get, "MQTT_PORT", 1883, 1, 65535)
    c.user = _str(get, "MQTT_USER") or None
    pw = get("MQTT_PASSWORD")
    c.password = _str(get, "MQTT_PASSWORD" if pw is not None else "MQTT_PASS") or None
    if c.password and not c.user:
        raise ConfigError("MQTT_USER", "must be set when a password is given")
    topic = _str(get, "MQTT_TOPIC").strip()
    bid = get("BASKET_ID")
    if bid is not None and bid != "":
        c.basket_id = _int(get, "BASKET_ID", 0, 0, 999999999)
    elif topic:
        c.basket_id = protocol.basket_id_from_topic(topic)
        if c.basket_id is None:
            raise ConfigError("BASKET_ID", "not set, and MQTT_TOPIC %r does not end in a number"
                              % topic)
    else:
        raise ConfigError("MQTT_TOPIC", "set MQTT_TOPIC (e.g. basket/1) or BASKET_ID")
    if not topic:
        topic = "basket/%d" % c.basket_id
    if not protocol.valid_topic(topic):
        raise ConfigError("MQTT_TOPIC", "%r is not a usable topic (no wildcards, no leading or "
                          "trailing /)" % topic)
    c.topic = topic
    c.client_id = _str(get, "MQTT_CLIENT_ID").strip() or "basket-%d" % c.basket_id
    if len(c.client_id) > 64:
        raise ConfigError("MQTT_CLIENT_ID", "at most 64 characters")
    c.keepalive = _int(get, "MQTT_KEEPALIVE", 60, 1, 65535)
    c.tls = _flag(get, "MQTT_TLS")
    c.cafile = _str(get, "MQTT_CAFILE").strip() or None
    if c.tls and not c.cafile:
        raise ConfigError("MQTT_CAFILE", "required with MQTT_TLS=1 (the CA that signed the "
                          "broker's certificate)")
    state = get("CART_STATE_FILE")
    c.state_file = "basket-%d.state.json" % c.basket_id if state is None else _str(
        get, "CART_STATE_FILE").strip()
    c.item_source = (_str(get, "ITEM_SOURCE", "stdin").strip() or "stdin")
    c.display = (_str(get, "DISPLAY", "console").strip() or "console")
    c.log_level = (_str(get, "LOG_LEVEL", "info").strip() or "info")
    from mqtt_controller import log

    try:
        log.set_level(c.log_level)
    except ValueError as e:
        raise ConfigError("LOG_LEVEL", str(e).split(" (")[0].replace("LOG_LEVEL ", ""))
    c.mqtt_client = (_str(get, "MQTT_CLIENT", "builtin").strip().lower() or "builtin")
    if c.mqtt_client not in ("builtin", "umqtt"):
        raise ConfigError("MQTT_CLIENT", "must be builtin or umqtt (got %r)" % c.mqtt_client)
    c.settings = get  # for optional modules (rfid, display) with keys of their own
    return c
