# Settings: environment variables (CPython, MicroPython unix) or config.json on a board, with
# the same keys. Every problem is a ConfigError naming the key; the password is never shown.
# Start-up code only: runtime.build() releases this module once the basket is set up, so on a
# board its code gives its heap back (compat.release).
import json

from mqtt_controller import log, protocol
from mqtt_controller.compat import getenv

# Every key load() reads; `--help` documents them (helptext.py, which a board never loads: its
# strings would take heap), and load_file() warns about a config.json key that is neither one of
# them nor a board key.
KEYS = ("MQTT_HOST", "MQTT_PORT", "MQTT_USER", "MQTT_PASSWORD", "MQTT_TOPIC", "BASKET_ID",
        "MQTT_CLIENT_ID", "MQTT_KEEPALIVE", "MQTT_TLS", "MQTT_CAFILE", "CART_STATE_FILE",
        "ITEM_SOURCE", "DISPLAY", "LOG_LEVEL", "MQTT_CLIENT")


class ConfigError(ValueError):
    def __init__(self, key, message):
        super().__init__("%s: %s" % (key, message))
        self.key = key


class Config:
    pass  # no methods: a method would keep this module's code alive (see above)


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
    try:
        log.set_level(c.log_level)
    except ValueError as e:
        raise ConfigError("LOG_LEVEL", str(e).split(" (")[0].replace("LOG_LEVEL ", ""))
    c.mqtt_client = (_str(get, "MQTT_CLIENT", "builtin").strip().lower() or "builtin")
    if c.mqtt_client not in ("builtin", "umqtt"):
        raise ConfigError("MQTT_CLIENT", "must be builtin or umqtt (got %r)" % c.mqtt_client)
    c.settings = get  # for optional modules (rfid, display) with keys of their own
    return c


# -- a board's config.json (board.py) ------------------------------------------------------
# The board's own keys in config.json, next to KEYS (README "Flash an ESP32 basket"
# explains them; no help texts here: every string costs heap on a board).
BOARD_KEYS = ("WIFI_SSID", "WIFI_PASSWORD", "WIFI_HOSTNAME", "WIFI_IP", "WIFI_NETMASK",
              "WIFI_GATEWAY", "WIFI_DNS", "WIFI_TIMEOUT_MS", "WIFI_RETRIES", "WATCHDOG_MS",
              "SAFE_PIN")

_RFID_KEYS = ("RFID_POWER", "RFID_REGION", "RFID_RSSI_MIN", "RFID_PRESENCE", "RFID_ABSENCE",
              "RFID_CYCLE_MS")


def known_keys():
    keys = list(KEYS)
    keys.extend(BOARD_KEYS)
    keys.extend(_RFID_KEYS)
    keys.append("MQTT_PASS")
    return keys


def load_file(path):
    """Reads config.json; returns get(key) -> value or None. Values may be text or numbers
    (the provisioning tool writes text). Raises ConfigError naming the key or file."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ConfigError(path, "missing: copy config.example.json to %s and fill it in "
                          "(or use the file tools/provision.py wrote)" % path)
    try:
        data = json.loads(text)
    except ValueError as e:  # MicroPython says little more than "syntax error in JSON"
        raise ConfigError(path, "not valid JSON (%s)" % e)
    if not isinstance(data, dict):
        raise ConfigError(path, "must be one JSON object {\"KEY\": \"value\", ...}")
    known = known_keys()
    for key in data:
        value = data[key]
        if key.startswith("_"):  # "_comment" keys are for people
            continue
        if key not in known:
            log.warning("%s: unknown key %s ignored (typo?)", path, key)
        if value is not None and not isinstance(value, (str, int, float)):
            raise ConfigError(key, "must be text or a number, not %s" % (
                type(value).__name__))
    return data.get


class BoardSettings:
    ssid = password = hostname = ip = netmask = gateway = dns = ""
    timeout_ms = retries = watchdog_ms = 0
    safe_pin = None


def board_settings(get):
    s = BoardSettings()
    s.ssid = _str(get, "WIFI_SSID").strip()
    s.password = get("WIFI_PASSWORD")
    if s.password is not None and not isinstance(s.password, str):
        raise ConfigError("WIFI_PASSWORD", "must be text")
    s.hostname = _str(get, "WIFI_HOSTNAME").strip()
    s.ip = _str(get, "WIFI_IP").strip()
    s.netmask = _str(get, "WIFI_NETMASK", "255.255.255.0").strip() or "255.255.255.0"
    s.gateway = _str(get, "WIFI_GATEWAY").strip()
    s.dns = _str(get, "WIFI_DNS").strip() or s.gateway
    for key, value in (("WIFI_IP", s.ip), ("WIFI_NETMASK", s.netmask),
                       ("WIFI_GATEWAY", s.gateway), ("WIFI_DNS", s.dns)):
        if value and not _is_ipv4(value):
            raise ConfigError(key, "must be an IPv4 address like 192.168.1.50 (got %r)"
                              % value)
    if s.ip and not s.gateway:
        raise ConfigError("WIFI_GATEWAY", "required with WIFI_IP")
    s.timeout_ms = _int(get, "WIFI_TIMEOUT_MS", 15000, 1000, 120000)
    s.retries = _int(get, "WIFI_RETRIES", 3, 1, 20)
    s.watchdog_ms = _int(get, "WATCHDOG_MS", 0, 0, 3600000)
    if 0 < s.watchdog_ms < 1000:
        raise ConfigError("WATCHDOG_MS", "0 (off) or 1000-3600000 (got %d)" % s.watchdog_ms)
    s.safe_pin = _safe_pin(get)
    return s


def _safe_pin(get):
    v = get("SAFE_PIN")
    if isinstance(v, str) and v.strip().lower() in ("none", "off", "-1"):
        return None
    return _int(get, "SAFE_PIN", 0, 0, 99)


def _is_ipv4(text):
    parts = text.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or int(p) > 255:
            return False
    return True
