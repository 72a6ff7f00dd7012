# The `--help` text: config.py's settings table, with what each key means. Host only: a board
# has no command line, and these strings would take heap there (tools/deploy.py leaves this
# file off the board). A unit test keeps MEANINGS and the table in step.
from mqtt_controller import config

MEANINGS = {
    "MQTT_HOST": "broker host name or address",
    "MQTT_PORT": "broker port (8883 is usual with MQTT_TLS=1)",
    "MQTT_USER": "user name at the broker",
    "MQTT_PASSWORD": "password at the broker (MQTT_PASS is accepted too); never logged",
    "MQTT_TOPIC": "base topic, e.g. basket/1",
    "BASKET_ID": "basket number",
    "MQTT_CLIENT_ID": "MQTT client id of the persistent session",
    "MQTT_KEEPALIVE": "keepalive in seconds; the link is dead after 1.5 x this",
    "MQTT_TLS": "1 to connect with TLS and verify the broker's certificate",
    "MQTT_CAFILE": "CA certificate (PEM) to verify the broker with when MQTT_TLS=1",
    "CART_STATE_FILE": "where state and cart survive a restart; empty: nowhere",
    "ITEM_SOURCE": "stdin, none, a FIFO/tty path, or rfid:<readers>",
    "DISPLAY": "console, none, or lcd:<bus>:<address>",
    "LOG_LEVEL": "how much to log",
    "MQTT_CLIENT": "MQTT client: umqtt is micropython-lib's umqtt.simple, if installed",
    "HEALTH_INTERVAL_S": "seconds between health reports on <topic>/health; 0: only on changes",
    "OTA_DIR": "folder of the updates over the air (empty: updates off; a board uses ota)",
    "OTA_KEY": "this basket's key for the service's signed update pushes; never logged",
    "OTA_TRIAL_S": "seconds a new version has to connect before it is rolled back",
    "RFID_POWER": "transmit power in dBm (decimals allowed)",
    "RFID_REGION": "radio region: KR, US, EU, CN900, CN800, a region code, or keep",
    "RFID_RSSI_MIN": "dBm; weaker reads do not count",
    "RFID_PRESENCE": "polling cycles in a row a tag must be read before it counts",
    "RFID_ABSENCE": "cycles without a read after which a tag leaves the cart",
    "RFID_CYCLE_MS": "length of a polling cycle in ms",
    "WIFI_SSID": "Wi-Fi network to join (not set: no Wi-Fi)",
    "WIFI_PASSWORD": "its password",
    "WIFI_HOSTNAME": "host name on the network",
    "WIFI_IP": "a static address instead of DHCP (with WIFI_GATEWAY)",
    "WIFI_NETMASK": "netmask of the static address",
    "WIFI_GATEWAY": "gateway of the static address",
    "WIFI_DNS": "name server of the static address",
    "WIFI_TIMEOUT_MS": "how long one attempt to join may take",
    "WIFI_RETRIES": "attempts to join at boot",
    "WATCHDOG_MS": "hardware watchdog timeout",
    "SAFE_PIN": "GPIO that, held low in the first second, starts safe mode (none: off)",
    "BATTERY_ADC_PIN": "ADC pin of a battery divider for the health report (none: off)",
    "BATTERY_DIVIDER": "battery voltage / pin voltage x 1000 (2000: the pin sees half)",
}

# Defaults that load() works out from other keys (None in the table).
DERIVED = {
    "MQTT_TOPIC": "basket/<BASKET_ID>",
    "BASKET_ID": "trailing integer of MQTT_TOPIC",
    "MQTT_CLIENT_ID": "basket-<BASKET_ID>",
    "CART_STATE_FILE": "basket-<BASKET_ID>.state.json",
    "WIFI_DNS": "WIFI_GATEWAY",
}

SECTIONS = (
    ("Settings (environment variables; config.json on a board):", config.CONTROLLER),
    ("With ITEM_SOURCE=rfid:...:", config.RFID),
    ("On a board only (config.json):", config.BOARD),
)


def default_text(row):
    """The default as the docs write it ("" when there is none)."""
    key, _, kind, default, _, _ = row
    if key in DERIVED:
        return DERIVED[key]
    if default is None:
        return ""
    if kind == config.FLAG:
        return "1" if default else "0"
    return str(default)


def accepted_text(row):
    """What the table lets through, when it says more than the meaning: a range or names."""
    _, _, kind, _, a, b = row
    if kind in (config.INT, config.DBM, config.PIN):
        return ("%d to %d" if a < 0 else "%d-%d") % (a, b)
    if kind == config.OFF_INT:
        return "0 (off) or %d-%d" % (a, b)
    if kind == config.CHOICE:
        return "%s or %s" % (", ".join(a[:-1]), a[-1])
    if kind == config.TEXT and a:
        return "at most %d characters" % a
    return ""


def help_text():
    lines = []
    for title, rows in SECTIONS:
        if lines:
            lines.append("")
        lines.append(title)
        for row in rows:
            default = default_text(row)
            notes = [n for n in (accepted_text(row), default and "default: " + default) if n]
            extra = (" [%s]" % "; ".join(notes)) if notes else ""
            lines.append("  %-17s %s%s" % (row[0], MEANINGS[row[0]], extra))
    return "\n".join(lines)
