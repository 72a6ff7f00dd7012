# The `--help` text: every setting with its default and meaning (README documents the same).
# Host only: a board has no command line, and these strings would take heap there.
# Its keys are config.KEYS, in the same order (a unit test keeps the two in step).

# (key, default, help)
SETTINGS = (
    ("MQTT_HOST", "localhost", "broker host name or address"),
    ("MQTT_PORT", "1883", "broker port (8883 is usual with MQTT_TLS=1)"),
    ("MQTT_USER", "", "user name at the broker"),
    ("MQTT_PASSWORD", "", "password at the broker (MQTT_PASS is accepted too); never logged"),
    ("MQTT_TOPIC", "", "base topic, e.g. basket/1 (default basket/<BASKET_ID>)"),
    ("BASKET_ID", "", "basket number (default: the trailing integer of MQTT_TOPIC)"),
    ("MQTT_CLIENT_ID", "", "MQTT client id (default basket-<BASKET_ID>)"),
    ("MQTT_KEEPALIVE", "60", "keepalive in seconds (1-65535); link dead after 1.5 x this"),
    ("MQTT_TLS", "0", "1 to connect with TLS and verify the broker's certificate"),
    ("MQTT_CAFILE", "", "CA certificate (PEM) to verify the broker with when MQTT_TLS=1"),
    ("CART_STATE_FILE", "basket-<BASKET_ID>.state.json", "where state and cart survive a restart"),
    ("ITEM_SOURCE", "stdin", "stdin, none, a FIFO/tty path, or rfid:<readers>"),
    ("DISPLAY", "console", "console, none, or lcd:<bus>:<address>"),
    ("LOG_LEVEL", "info", "debug, info, warning or error"),
    ("MQTT_CLIENT", "builtin", "builtin, or umqtt (micropython-lib's umqtt.simple, if installed)"),
)


def help_text():
    lines = ["Settings (environment variables; config.json on a board):"]
    for key, default, text in SETTINGS:
        lines.append("  %-16s %s%s" % (key, text, (" [default: %s]" % default) if default else ""))
    return "\n".join(lines)
