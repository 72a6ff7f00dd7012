# Stand-in for MicroPython's `network` (ESP32 flavour) on the unix port, for the board tests.
# Do not upload to a board. Steered by files in $BOARD_STUB_DIR (see README.md here).
import os
import time

import _stubctl

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_BEACON_TIMEOUT = 200
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204

JOIN_MS = 300  # how long a successful join takes
_fails = int(os.getenv("BOARD_STUB_WIFI_FAILS") or "0")
_hostname = "esp32"
_interfaces = {}


def hostname(name=None):
    global _hostname
    if name is None:
        return _hostname
    _stubctl.log("network.hostname %s" % name)
    _hostname = name


class _WLAN:
    def __init__(self, iface):
        self.iface = iface
        self._active = False
        self._status = STAT_IDLE
        self._ready_at = None
        self._attempts = 0
        self._ifconfig = ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
        self._static = None

    def active(self, value=None):
        if value is None:
            return self._active
        self._active = bool(value)
        _stubctl.log("WLAN.active %s" % self._active)

    def connect(self, ssid, key=None):
        if not self._active:
            raise OSError("Wifi Not Started")
        self._attempts += 1
        _stubctl.log("WLAN.connect %s attempt %d" % (ssid, self._attempts))
        if self._attempts <= _fails or _stubctl.read("ap", "up") != "up":
            self._status = STAT_NO_AP_FOUND
            self._ready_at = None
        else:
            self._status = STAT_CONNECTING
            self._ready_at = time.ticks_add(time.ticks_ms(), JOIN_MS)

    def disconnect(self):
        self._status = STAT_IDLE
        self._ready_at = None

    def isconnected(self):
        if _stubctl.read("wlan_raises") is not None:
            raise RuntimeError("stub: Wi-Fi driver fault")
        if _stubctl.read("ap", "up") != "up":
            if self._status in (STAT_GOT_IP, STAT_CONNECTING):
                self._status = STAT_BEACON_TIMEOUT
                self._ready_at = None
            return False
        if self._status == STAT_CONNECTING and self._ready_at is not None and \
                time.ticks_diff(time.ticks_ms(), self._ready_at) >= 0:
            self._status = STAT_GOT_IP
            self._ifconfig = self._static or ("10.0.0.2", "255.255.255.0", "10.0.0.1",
                                              "10.0.0.1")
        return self._status == STAT_GOT_IP

    def status(self, param=None):
        if param == "rssi":  # $BOARD_STUB_DIR/rssi (dBm; default -61); an error when not joined
            if self._status != STAT_GOT_IP:
                raise OSError("Wifi Not Connected")
            return int(_stubctl.read("rssi", "-61"))
        if param is not None:
            raise ValueError("unknown status param")
        return self._status

    def ifconfig(self, cfg=None):
        if cfg is None:
            return self._ifconfig if self._status == STAT_GOT_IP else ("0.0.0.0",) * 4
        _stubctl.log("WLAN.ifconfig %s" % (cfg,))
        self._static = tuple(cfg)

    def config(self, *args, **kw):
        if kw:
            _stubctl.log("WLAN.config %s" % sorted(kw))
        return None


def WLAN(iface=STA_IF):
    if iface not in _interfaces:
        _interfaces[iface] = _WLAN(iface)
    return _interfaces[iface]
