# Settings: environment variables (CPython, MicroPython unix) or config.json on a board, with
# the same keys, all read by one table (below). Every problem is a ConfigError "KEY: what is
# wrong"; a password is never shown. Start-up code only: startup.build() and board.boot() release
# this module once the basket is set up, so on a board its code and its table give their heap
# back (compat.release). What each key means is in helptext.py, which a board never loads.
import json

from mqtt_controller import log, protocol
from mqtt_controller.compat import getenv

# How a value is read (the kind column). Values are text (the environment, config.json) or JSON
# numbers (config.json). A missing value takes the default (None: load() works it out), and so
# does "" except for FILE and HOST; "blank" below is what is left of text after strip().
TEXT = 0  # text, stripped; blank: the default; a: at most this many characters (0: any)
FILE = 1  # text, stripped; blank: "" (no file)
HOST = 2  # text, stripped; blank: an error
SECRET = 3  # text as given, never shown; a: an older name of the key, read when it is missing
INT = 4  # a whole number from a to b
OFF_INT = 5  # 0 (off) or a whole number from a to b
PIN = 6  # none, off or -1 (no pin), or a whole number from a to b
FLAG = 7  # 1, true, yes, on or 0, false, no, off (any case)
CHOICE = 8  # one of the names in a (any case); blank: the default
IPV4 = 9  # an IPv4 address like 192.168.1.50; blank: the default
DBM = 10  # a power in dBm from a to b, decimals allowed; read in hundredths of a dBm
REGION = 11  # an RFID region name (yrm100.REGIONS), keep (None) or a region code 1-255

# (key, Config attribute, kind, default, a, b). helptext.py documents the same keys (`--help`).
CONTROLLER = (
    ("MQTT_HOST", "host", HOST, "localhost", 0, 0),
    ("MQTT_PORT", "port", INT, 1883, 1, 65535),
    ("MQTT_USER", "user", SECRET, None, None, 0),
    ("MQTT_PASSWORD", "password", SECRET, None, "MQTT_PASS", 0),
    ("MQTT_TOPIC", "topic", TEXT, "", 0, 0),
    ("BASKET_ID", "basket_id", INT, None, 0, 999999999),
    ("MQTT_CLIENT_ID", "client_id", TEXT, None, 64, 0),
    ("MQTT_KEEPALIVE", "keepalive", INT, 60, 1, 65535),
    ("MQTT_TLS", "tls", FLAG, False, 0, 0),
    ("MQTT_CAFILE", "cafile", TEXT, None, 0, 0),
    ("CART_STATE_FILE", "state_file", FILE, None, 0, 0),
    ("ITEM_SOURCE", "item_source", TEXT, "stdin", 0, 0),
    ("DISPLAY", "display", TEXT, "console", 0, 0),
    ("LOG_LEVEL", "log_level", CHOICE, "info", ("debug", "info", "warning", "warn", "error"), 0),
    ("MQTT_CLIENT", "mqtt_client", CHOICE, "builtin", ("builtin", "umqtt"), 0),
    ("HEALTH_INTERVAL_S", "health_interval", INT, 60, 0, 86400),
    ("OTA_DIR", "ota_dir", FILE, "", 0, 0),
    ("OTA_KEY", "ota_key", SECRET, None, None, 0),
    ("OTA_TRIAL_S", "ota_trial", INT, 120, 10, 3600),
)
# Read with ITEM_SOURCE=rfid:... only, into Config.settings (a dict by key; rfid.py uses it).
RFID = (
    ("RFID_POWER", None, DBM, 26, 10, 30),
    ("RFID_REGION", None, REGION, "KR", 0, 0),
    ("RFID_RSSI_MIN", None, INT, -58, -128, 0),
    ("RFID_PRESENCE", None, INT, 1, 1, 20),
    ("RFID_ABSENCE", None, INT, 2, 1, 100),
    ("RFID_CYCLE_MS", None, INT, 500, 50, 60000),
)
# A board's own keys in config.json (board.py), read into BoardSettings.
BOARD = (
    ("WIFI_SSID", "ssid", TEXT, "", 0, 0),
    ("WIFI_PASSWORD", "password", SECRET, None, None, 0),
    ("WIFI_HOSTNAME", "hostname", TEXT, "", 0, 0),
    ("WIFI_IP", "ip", IPV4, "", 0, 0),
    ("WIFI_NETMASK", "netmask", IPV4, "255.255.255.0", 0, 0),
    ("WIFI_GATEWAY", "gateway", IPV4, "", 0, 0),
    ("WIFI_DNS", "dns", IPV4, None, 0, 0),
    ("WIFI_TIMEOUT_MS", "timeout_ms", INT, 15000, 1000, 120000),
    ("WIFI_RETRIES", "retries", INT, 3, 1, 20),
    ("WATCHDOG_MS", "watchdog_ms", OFF_INT, 0, 1000, 3600000),
    ("SAFE_PIN", "safe_pin", PIN, 0, 0, 99),
    ("BATTERY_ADC_PIN", "battery_pin", PIN, None, 0, 99),
    ("BATTERY_DIVIDER", "battery_divider", INT, 2000, 1000, 100000),
)

# The keys the service may set over MQTT (`<topic>/config`, remote.py; docs/fleet.md): tuning
# only. Never the broker, credentials, topic, client id, item source or display wiring: a wrong
# value there would cut the basket off from the service that could set it right again.
REMOTE = ("RFID_POWER", "RFID_RSSI_MIN", "RFID_PRESENCE", "RFID_ABSENCE", "RFID_CYCLE_MS",
          "HEALTH_INTERVAL_S", "LOG_LEVEL")


class ConfigError(ValueError):
    def __init__(self, key, message):
        super().__init__("%s: %s" % (key, message))
        self.key = key


class Config:
    pass  # no methods: a method would keep this module's code alive (see above)


class BoardSettings:
    pass  # the same


def _read(get, row):
    """The value of one table row from get(key) -> value or None."""
    key, _, kind, default, a, b = row
    raw = get(key)
    if raw is None and kind == SECRET and a:
        key = a
        raw = get(a)
    if raw is None or (raw == "" and kind != FILE and kind != HOST):
        raw = default
        if raw is None:
            return None
    if kind <= SECRET or kind == CHOICE or kind == IPV4:
        if not isinstance(raw, str):
            raise ConfigError(key, "must be text")
        if kind == SECRET:
            return raw
        v = raw.strip()
        if kind == FILE:
            return v
        if kind == HOST and not v:
            raise ConfigError(key, "must not be empty")
        v = v or default
        if kind == CHOICE:
            v = v.lower()
            if v not in a:
                raise ConfigError(key, "must be %s or %s (got %r)" % (
                    ", ".join(a[:-1]), a[-1], v))
        elif kind == IPV4 and v and not _is_ipv4(v):
            raise ConfigError(key, "must be an IPv4 address like 192.168.1.50 (got %r)" % v)
        elif kind == TEXT and a and v and len(v) > a:
            raise ConfigError(key, "must be at most %d characters (got %d)" % (a, len(v)))
        return v
    if kind == FLAG:
        v = str(raw).strip().lower()
        if v in ("1", "true", "yes", "on"):
            return True
        if v in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(key, "must be 1 or 0 (got %r)" % v)
    if kind == PIN and isinstance(raw, str) and raw.strip().lower() in ("none", "off", "-1"):
        return None
    if kind == DBM:
        return _dbm(key, raw, a, b)
    if kind == REGION:
        return _region(key, raw)
    if kind == OFF_INT:
        v = _int(key, raw, 0, b)
        if 0 < v < a:
            raise ConfigError(key, "0 (off) or %d-%d (got %d)" % (a, b, v))
        return v
    return _int(key, raw, a, b)


def _int(key, raw, lo, hi):
    v = None
    if isinstance(raw, bool):
        pass
    elif isinstance(raw, int):
        v = raw
    elif isinstance(raw, float):
        try:
            v = int(raw) if raw == int(raw) else None
        except (ValueError, OverflowError):  # nan, inf
            v = None
    elif isinstance(raw, str):
        s = raw.strip()
        if (s[1:] if s[:1] in ("-", "+") else s).isdigit():
            v = int(s)
    if v is None or not lo <= v <= hi:
        raise ConfigError(key, "must be a whole number from %d to %d (got %r)" % (lo, hi, raw))
    return v


def _dbm(key, raw, lo, hi):
    p = None
    if not isinstance(raw, bool):
        try:
            p = float(raw)
        except (TypeError, ValueError):
            p = None
    if p is None or not lo <= p <= hi:
        raise ConfigError(key, "must be a transmit power in dBm from %d to %d (got %r)"
                          % (lo, hi, raw))
    return int(p * 100 + 0.5)


def _region(key, raw):
    from mqtt_controller.yrm100 import REGIONS  # read with RFID readers only, which load it

    v = raw
    if isinstance(v, str):
        name = v.strip().upper()
        if name == "KEEP":
            return None
        if name in REGIONS:
            return REGIONS[name]
        try:
            v = int(name, 0)
        except ValueError:
            pass
    if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 256:
        return v
    raise ConfigError(key, "must be one of %s, keep, or a region code (got %r)"
                      % (", ".join(sorted(REGIONS)), raw))


def _is_ipv4(text):
    parts = text.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or int(p) > 255:
            return False
    return True


def rfid_settings(get):
    """The RFID_* values, checked and converted: a dict by key (RFID_POWER in hundredths of a
    dBm, RFID_REGION a region code or None to leave the module's region alone)."""
    return {row[0]: _read(get, row) for row in RFID}


def load(get=None):
    """Builds a Config from get(key) -> value or None (default: the environment)."""
    if get is None:
        get = getenv
    c = Config()
    for row in CONTROLLER:
        setattr(c, row[1], _read(get, row))
    if c.password and not c.user:
        raise ConfigError("MQTT_USER", "must be set when a password is given")
    topic = c.topic
    if c.basket_id is None:
        if not topic:
            raise ConfigError("MQTT_TOPIC", "set MQTT_TOPIC (e.g. basket/1) or BASKET_ID")
        c.basket_id = protocol.basket_id_from_topic(topic)
        if c.basket_id is None:
            raise ConfigError("BASKET_ID", "not set, and MQTT_TOPIC %r does not end in a number"
                              % topic)
    if not topic:
        c.topic = topic = "basket/%d" % c.basket_id
    if not protocol.valid_topic(topic):
        raise ConfigError("MQTT_TOPIC", "%r is not a usable topic (no wildcards, no leading or "
                          "trailing /)" % topic)
    if c.client_id is None:
        c.client_id = "basket-%d" % c.basket_id
    if c.tls and not c.cafile:
        raise ConfigError("MQTT_CAFILE", "required with MQTT_TLS=1 (the CA that signed the "
                          "broker's certificate)")
    if c.state_file is None:
        c.state_file = "basket-%d.state.json" % c.basket_id
    log.set_level(c.log_level)  # one of log's names: the table only lets those through
    # the item source's own keys, parsed now: this module is gone once the basket runs
    c.settings = rfid_settings(get) if c.item_source.startswith("rfid:") else None
    return c


def known_keys():
    keys = [row[0] for row in CONTROLLER + RFID + BOARD]
    keys.append("MQTT_PASS")
    return keys


# -- a remote configuration (remote.py: `<topic>/config`) -----------------------------------
def _remote_row(key):
    for row in CONTROLLER + RFID:
        if row[0] == key:
            return row
    return None


def remote_values(values):
    """A remote set {KEY: text or whole number} checked by the same rows as at start-up, all or
    nothing: the converted values by key, or ConfigError "KEY: ..." for the first bad key in
    sorted order (the same one on both interpreters)."""
    if not isinstance(values, dict):
        raise ConfigError("set", "must be an object {\"KEY\": value, ...}")
    keys = sorted(values)
    out = {}
    for key in keys:
        row = _remote_row(key) if key in REMOTE else None
        if row is None:
            if key in known_keys():
                raise ConfigError(key, "may not be set remotely")
            raise ConfigError(key, "unknown setting")
        v = values[key]
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise ConfigError(key, "must be text or a whole number")
        out[key] = _read(values.get, row)
    return out


def remote_base(cfg):
    """The values the remote keys have from the local settings (cfg as load() made it)."""
    out = {}
    for key in REMOTE:
        row = _remote_row(key)
        if row is None:
            continue
        if row[1] is not None:
            v = getattr(cfg, row[1], None)
        else:
            s = getattr(cfg, "settings", None)
            v = s.get(key) if s else None
        if v is not None:
            out[key] = v
    return out


def apply_remote(cfg, values):
    """Lays checked remote values (remote_values) over cfg before the basket opens its I/O."""
    for key in values:
        row = _remote_row(key)
        if row[1] is not None:
            setattr(cfg, row[1], values[key])
        elif getattr(cfg, "settings", None) is not None:
            cfg.settings[key] = values[key]
    if "LOG_LEVEL" in values:
        log.set_level(values["LOG_LEVEL"])


# -- a board's config.json (board.py) ------------------------------------------------------
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


def board_settings(get):
    s = BoardSettings()
    for row in BOARD:
        setattr(s, row[1], _read(get, row))
    if s.dns is None:
        s.dns = s.gateway
    if s.ip and not s.gateway:
        raise ConfigError("WIFI_GATEWAY", "required with WIFI_IP")
    return s
