# What boot.py and main.py do on a MicroPython board: settings from config.json, Wi-Fi with a
# timeout and retries (and a rejoin while running), safe mode, the hardware watchdog, and a
# supervisor that logs a crash and resets. `machine` and `network` are imported where used.
# This module is factory code: the loader (otaboot.py) may switch the runtime and everything
# under it to an update in /ota, never this supervisor (a broken update must not break it).
from mqtt_controller import health, log
from mqtt_controller.compat import print_exception, sleep_ms, ticks_add, ticks_diff, ticks_ms

CONFIG_FILE = "config.json"
SAFE_FILE = "safe"
ERROR_LOG = "error.log"
REMOTE_FILE = "remote_config.json"  # the applied remote configuration (startup.build)
OTA_DIR = "ota"  # a board's default: updates on (a host's default is "", off)
RESTART = 3  # Runtime.exit_code: "restart me" (an update staged, a trial timed out)
ERROR_LOG_MAX = 4096  # bytes; a bigger log starts over, so the flash never fills up
RESET_DELAY_MS = 5000  # after a crash: time to read the message (and to press Ctrl-C)
SAFE_WINDOW_MS = 1000  # SAFE_PIN is watched this long at boot
WIFI_CHECK_MS = 2000  # how often the running loop looks at the Wi-Fi link

# Why the board is in safe mode ("" = it is not), decided once per boot by boardstart.safe_mode
# and kept here, in the module that stays loaded (boardstart is released after boot.py)
safe = None


# -- Wi-Fi ------------------------------------------------------------------------------------
_STATUS_NAMES = (("STAT_WRONG_PASSWORD", "wrong password"),
                 ("STAT_NO_AP_FOUND", "no access point found"),
                 ("STAT_CONNECT_FAIL", "connection failed"),
                 ("STAT_BEACON_TIMEOUT", "beacon timeout"),
                 ("STAT_ASSOC_FAIL", "association failed"),
                 ("STAT_HANDSHAKE_TIMEOUT", "handshake timeout"),
                 ("STAT_CONNECTING", "still connecting"),
                 ("STAT_IDLE", "idle"))


class Wifi:
    """The station interface. join() blocks (boot); start() and isconnected() do not (loop)."""

    def __init__(self, s):
        import network

        self.network = network
        self.s = s
        if s.hostname:
            try:
                network.hostname(s.hostname)  # MicroPython 1.20+
            except AttributeError:
                pass
        self.wlan = network.WLAN(network.STA_IF)
        self.wlan.active(True)
        if s.hostname and not hasattr(network, "hostname"):
            try:
                self.wlan.config(dhcp_hostname=s.hostname)
            except (ValueError, OSError):
                pass
        if s.ip:
            self.wlan.ifconfig((s.ip, s.netmask, s.gateway, s.dns))

    def isconnected(self):
        return self.wlan.isconnected()

    def address(self):
        try:
            return self.wlan.ifconfig()[0]
        except (OSError, IndexError):
            return "?"

    def reason(self):
        try:
            st = self.wlan.status()
        except (OSError, TypeError):
            return "unknown status"
        for name, text in _STATUS_NAMES:
            if getattr(self.network, name, None) == st:
                return text
        return "status %r" % (st,)

    def start(self):
        """Starts a join attempt and returns at once."""
        try:
            self.wlan.disconnect()
        except OSError:
            pass
        self.wlan.connect(self.s.ssid, self.s.password or "")

class WifiWatch:
    """A turn hook of the runtime (turn(now)): notices a lost link, rejoins in the background,
    holds MQTT connect attempts back while Wi-Fi is down and lets them go at once when it is
    back. It steers the runtime only through hold(), connect_now() and drop_link()."""

    def __init__(self, wifi, rt):
        self.wifi = wifi
        self.rt = rt
        self.up = wifi.isconnected()
        self.next_check = ticks_ms()
        self.join_started = None
        self.attempts = 0
        if not self.up:
            log.warning("Wi-Fi: not connected; joining %s in the background", wifi.s.ssid)
            rt.hold()  # no broker attempts without a network
            self._start(ticks_ms())

    def _start(self, now):
        self.attempts += 1
        self.join_started = now
        try:
            self.wifi.start()
        except OSError as e:
            log.warning("Wi-Fi: join attempt failed to start: %s", e)

    def turn(self, now):
        """Looks at the link every WIFI_CHECK_MS; returns the ms until the next look."""
        if ticks_diff(now, self.next_check) >= 0:
            self.next_check = ticks_add(now, WIFI_CHECK_MS)
            self._check(now)
        return max(0, ticks_diff(self.next_check, now))

    def _check(self, now):
        if self.wifi.isconnected():
            if not self.up:
                self.up = True
                log.info("Wi-Fi: back on %s as %s after %d attempt(s); connecting to the "
                         "broker", self.wifi.s.ssid, self.wifi.address(), self.attempts)
                self.attempts = 0
                self.rt.connect_now()
            return
        if self.up:
            self.up = False
            reason = self.wifi.reason()
            log.warning("Wi-Fi: link to %s lost (%s); rejoining", self.wifi.s.ssid, reason)
            self.rt.hold()
            self.rt.drop_link("Wi-Fi lost (%s)" % reason)
            self._start(now)
        elif ticks_diff(now, self.join_started) >= self.wifi.s.timeout_ms:
            log.warning("Wi-Fi: join attempt %d failed (%s); trying again", self.attempts,
                        self.wifi.reason())
            self._start(now)


# -- the health report's board values ---------------------------------------------------------
class BoardHealth:
    """What only a board knows for the health report (Runtime.set_health_extras): why it
    started (machine.reset_cause(), read once), the Wi-Fi signal, the battery through an ADC
    pin and a divider (BATTERY_ADC_PIN, BATTERY_DIVIDER)."""

    def __init__(self, wifi, s):
        import machine

        self.boot = health.boot_cause(machine)
        self.wlan = wifi.wlan if wifi is not None else None
        self.divider = s.battery_divider
        self.adc = None
        if s.battery_pin is not None:
            try:
                self.adc = machine.ADC(machine.Pin(s.battery_pin))
                try:
                    self.adc.atten(machine.ADC.ATTN_11DB)  # ESP32: the whole 0-3.3 V range
                except AttributeError:
                    pass
            except (AttributeError, ValueError, OSError, TypeError) as e:
                log.warning("BATTERY_ADC_PIN %d not usable: %s", s.battery_pin, e)

    def __call__(self):
        out = {"boot": self.boot}
        if self.wlan is not None:
            try:
                if self.wlan.isconnected():
                    out["rssi"] = self.wlan.status("rssi")
            except (OSError, ValueError, TypeError, AttributeError):
                pass
        if self.adc is not None:
            try:
                if hasattr(self.adc, "read_uv"):
                    uv = self.adc.read_uv()
                else:  # older ports: 16 bits over 3.3 V
                    uv = self.adc.read_u16() * 3300000 // 65535
                out["battery_mv"] = health.battery_mv(uv, self.divider)
            except (OSError, ValueError, TypeError):
                pass
        return out


# -- boot.py and main.py ----------------------------------------------------------------------
def boot(path=CONFIG_FILE):
    """boot.py: joins Wi-Fi (boardstart.boot). Never raises; True when the network is up."""
    from mqtt_controller import boardstart  # start-up code: it releases itself

    return boardstart.boot(path)


def main(path=CONFIG_FILE):
    """main.py: runs the basket until Ctrl-C. A configuration error is printed and main.py
    ends (the REPL stays usable to fix config.json); a crash is logged and resets the board."""
    try:
        from mqtt_controller import boardstart  # start-up code: it releases itself

        got = boardstart.start(path)
        del boardstart  # nothing left to keep it: its heap is free again
    except Exception as e:  # e.g. MemoryError: a reset may well cure it
        crash(e)
        return "crashed"
    if isinstance(got, str):  # "safe", "config": said on the console
        return got
    rt, s = got
    wdt = None
    try:
        wifi = Wifi(s) if s.ssid else None
        watch = WifiWatch(wifi, rt) if wifi is not None else None
        rt.set_health_extras(BoardHealth(wifi, s))
        if s.watchdog_ms:
            from machine import WDT

            if s.watchdog_ms < 25000:
                log.warning("WATCHDOG_MS=%d: a slow broker connect (up to 20 s) may reset the "
                            "board", s.watchdog_ms)
            wdt = WDT(timeout=s.watchdog_ms)
            log.info("watchdog on: %d ms", s.watchdog_ms)
        loop(rt, watch, wdt, s.watchdog_ms // 2 if wdt else None)
    except KeyboardInterrupt:  # Ctrl-C before the loop ran (Runtime.run handles it there)
        log.info("interrupted")
        rt.shutdown()
    except Exception as e:
        crash(e, wdt)
        return "crashed"
    if rt.exit_code == RESTART:
        log.info("restarting")
        import machine

        machine.reset()
    if wdt is not None:
        print("the watchdog keeps running: the board resets within %d ms (safe mode avoids "
              "that)" % s.watchdog_ms)
    return "stopped"


def loop(rt, watch, wdt, max_wait_ms=None):
    """Runtime.run with the watchdog and the Wi-Fi watch as turn hooks: until Ctrl-C, then
    offline and a clean disconnect; a crash is logged and resets the board at once."""
    if wdt is not None:
        rt.add_turn_hook(lambda now: wdt.feed())  # None: no wish for an earlier turn
    if watch is not None:
        rt.add_turn_hook(watch.turn)
    rt.run(max_wait_ms, on_crash=lambda e: crash(e, wdt))


def crash(e, wdt=None):
    """Logs an unexpected exception (console and error.log) and resets the board."""
    print("FATAL: unexpected error; resetting in %d s" % (RESET_DELAY_MS // 1000))
    print_exception(e)
    try:
        import os

        try:
            if os.stat(ERROR_LOG)[6] > ERROR_LOG_MAX:
                os.remove(ERROR_LOG)
        except OSError:
            pass
        with open(ERROR_LOG, "a") as f:
            f.write("--- crash after %d ms\n" % ticks_ms())
            print_exception(e, f)
    except Exception:
        pass  # a full or broken flash must not stop the reset
    deadline = ticks_add(ticks_ms(), RESET_DELAY_MS)
    while ticks_diff(deadline, ticks_ms()) > 0:
        if wdt is not None:
            wdt.feed()
        sleep_ms(100)
    import machine

    machine.reset()
