# The health report (${MQTT_TOPIC}/health), pure: a dict of fields in, compact JSON out, keys
# sorted and encoded by hand (MicroPython's dicts keep no order), so both interpreters give the
# same bytes for the same state. At most MAX_BYTES: a report that would be longer has its ota
# error shortened, then loses readers from the end of its list, then config_error and the ota
# error are shortened further; it is never cut mid-JSON.
# The runtime gathers the fields (Runtime.health_fields) and decides when to publish.
from mqtt_controller.compat import const

MAX_BYTES = const(512)
OTA_ERROR_MIN = const(48)  # an update's error keeps this much before readers are cut

# machine.reset_cause() values on MicroPython ports (ESP32, RP2, ...) in words.
CAUSES = (("PWRON_RESET", "power_on"), ("HARD_RESET", "hard_reset"), ("WDT_RESET", "wdt_reset"),
          ("DEEPSLEEP_RESET", "deepsleep_reset"), ("SOFT_RESET", "soft_reset"))


def _text(s):
    out = []
    for ch in s:
        o = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif o < 0x20:
            out.append("\\u%04x" % o)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(v):
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return "%d" % v
    if isinstance(v, str):
        return _text(v)
    if isinstance(v, dict):
        return "{" + ",".join([_text(k) + ":" + _value(v[k]) for k in sorted(v)]) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join([_value(x) for x in v]) + "]"
    return _value(int(v))  # a float: whole numbers only on the wire


def encode(fields):
    """The report as bytes: compact JSON, keys sorted, at most MAX_BYTES. Until it fits: the
    ota error is shortened to OTA_ERROR_MIN characters, readers are cut from the end,
    config_error is shortened, then the ota error further."""
    data = _value(fields).encode()
    if len(data) <= MAX_BYTES:
        return data
    f = dict(fields)
    ota = f.get("ota")
    if isinstance(ota, dict):
        ota = f["ota"] = dict(ota)
        data = _shorten(f, ota, "error", OTA_ERROR_MIN)
    readers = list(f.get("readers") or ())
    while readers and len(data) > MAX_BYTES:
        readers.pop()
        f["readers"] = readers
        data = _value(f).encode()
    if len(data) > MAX_BYTES:
        data = _shorten(f, f, "config_error")
    if len(data) > MAX_BYTES and isinstance(ota, dict):
        data = _shorten(f, ota, "error")
    return data


def _shorten(f, d, key, least=0):
    """d[key] (a part of the report f) cut, with "...", to the longest start (of at least
    `least` characters) that lets f fit; the report's bytes."""
    err = d.get(key)
    if isinstance(err, str) and len(err) > least:
        lo, hi = least, len(err)  # the longest start that fits (escapes make it uneven)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            d[key] = err[:mid] + "..." if mid < len(err) else err
            if len(_value(f).encode()) <= MAX_BYTES:
                lo = mid
            else:
                hi = mid - 1
        d[key] = err[:lo] + "..." if lo < len(err) else err
    return _value(f).encode()


def readers(status):
    """[(name, ok, ms since the last tag read or None)] -> the report's `readers` list."""
    out = []
    for name, ok, age_ms in status:
        out.append({"last_read_s": None if age_ms is None else age_ms // 1000, "name": name,
                    "state": "ok" if ok else "down"})
    return out


def states(status):
    """What a watched change compares: each reader's name and ok."""
    return [(s[0], s[1]) for s in status]


def boot_cause(machine):
    """machine.reset_cause() in words ("power_on", ..., "cause_<n>"); "start" without one."""
    try:
        cause = machine.reset_cause()
    except (AttributeError, OSError):
        return "start"
    for name, words in CAUSES:
        if getattr(machine, name, None) == cause:
            return words
    return "cause_%d" % cause


def battery_mv(raw_uv, divider_x1000):
    """mV at the battery from a reading in microvolts at the ADC pin and the divider ratio
    x1000 (2000: the pin sees half the battery)."""
    return raw_uv * divider_x1000 // 1000000
