# Freezes the basket controller into a MicroPython firmware build, e.g. in ports/esp32:
#   make BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/this/manifest.py
# The firmware's own modules stay in (include below). On such a board copy only boot.py, main.py
# and config.json (mpremote cp boot.py main.py config.json :): a mqtt_controller/ folder in the
# board's filesystem would come first on sys.path and shadow the frozen package.
# ruff: noqa: F821 - include() and package() are given by MicroPython's manifest tool
include("$(PORT_DIR)/boards/manifest.py")
package(
    "mqtt_controller",
    files=(
        "__init__.py",
        "backoff.py",
        "board.py",
        "cart.py",
        "compat.py",
        "config.py",
        "controller.py",
        "display.py",
        "health.py",
        "items.py",
        "lcd.py",
        "link.py",
        "log.py",
        "mqtt.py",
        "packet.py",
        "presence.py",
        "protocol.py",
        "remote.py",
        "rfid.py",
        "runtime.py",
        "serialport.py",
        "store.py",
        "tls.py",
        "umqtt_adapter.py",
        "yrm100.py",
    ),
    base_path=".",
    opt=3,
)
