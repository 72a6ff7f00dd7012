# A board's start-up steps (board.py's boot() and main() run them): safe mode, the settings
# from config.json, the Wi-Fi join of boot.py, the loader and the runtime's start. Start-up
# code: released once the basket runs (compat.release), so only what runs every turn (board.py:
# the Wi-Fi watch, the health values, the crash handler) keeps its heap. Factory code, as
# board.py: imported before the loader switches to an update.
from mqtt_controller import board, compat, log
from mqtt_controller.board import CONFIG_FILE, SAFE_FILE, Wifi
from mqtt_controller.compat import print_exception, sleep_ms, ticks_diff, ticks_ms


def _settings(path):
    """(get, BoardSettings) from config.json; raises ConfigError (a ValueError) naming the key.
    config.py is imported here only: boot() and startup.build() release it after start-up."""
    from mqtt_controller import config

    get = _with_ota_dir(config.load_file(path))
    return get, config.board_settings(get)


def _with_ota_dir(get):
    def board_get(key):
        v = get(key)
        return board.OTA_DIR if v is None and key == "OTA_DIR" else v

    return board_get


# -- safe mode --------------------------------------------------------------------------------
def safe_mode(path=CONFIG_FILE):
    """Why this boot is in safe mode: "" when it is not. A file named `safe` (mpremote touch
    :safe) or SAFE_PIN held low during the first second. Decided once per boot (kept in
    board.safe: this module is released between boot.py and main.py)."""
    if board.safe is not None:
        return board.safe
    board.safe = ""
    if _exists(SAFE_FILE):
        board.safe = "the file '%s' exists" % SAFE_FILE
        return board.safe
    pin_no = 0
    try:
        pin_no = _settings(path)[1].safe_pin
    except ValueError:
        pass  # a broken config.json still has the default pin
    if pin_no is None:
        return board.safe
    try:
        from machine import Pin

        pin = Pin(pin_no, Pin.IN, Pin.PULL_UP)
    except (ImportError, ValueError, OSError, TypeError) as e:
        log.debug("SAFE_PIN %d not usable: %s", pin_no, e)
        return board.safe
    start = ticks_ms()
    while ticks_diff(ticks_ms(), start) < board.SAFE_WINDOW_MS:
        if pin.value() == 0:
            board.safe = "GPIO%d was held low" % pin_no
            break
        sleep_ms(50)
    return board.safe


def _exists(path):
    import os

    try:
        os.stat(path)
        return True
    except OSError:
        return False


def join(wifi):
    """Up to WIFI_RETRIES attempts of WIFI_TIMEOUT_MS each; True when connected."""
    s = wifi.s
    if wifi.isconnected():
        log.info("Wi-Fi: already connected to %s as %s", s.ssid, wifi.address())
        return True
    for attempt in range(1, s.retries + 1):
        log.info("Wi-Fi: joining %s (attempt %d of %d)", s.ssid, attempt, s.retries)
        wifi.start()
        start = ticks_ms()
        while ticks_diff(ticks_ms(), start) < s.timeout_ms:
            if wifi.isconnected():
                log.info("Wi-Fi: connected to %s as %s", s.ssid, wifi.address())
                return True
            sleep_ms(100)
        log.warning("Wi-Fi: attempt %d failed (%s)", attempt, wifi.reason())
    return False


# -- boot.py and main.py ----------------------------------------------------------------------
def boot(path=CONFIG_FILE):
    """boot.py: joins Wi-Fi. Never raises: a board without Wi-Fi still reaches main.py and
    the REPL. Returns True when the network is up."""
    try:
        why = safe_mode(path)
        if why:
            print("boot: SAFE MODE (%s): Wi-Fi and the controller are skipped" % why)
            if why.startswith("the file"):
                print("boot: to leave safe mode: mpremote rm :%s, then reset" % SAFE_FILE)
            return False
        s = _settings(path)[1]
        if not s.ssid:
            log.info("Wi-Fi: WIFI_SSID not set in %s; not started", path)
            return False
        if join(Wifi(s)):
            return True
        log.warning("Wi-Fi: not connected after %d attempt(s); main.py keeps trying", s.retries)
    except ValueError as e:
        print("boot: configuration error: %s" % e)
    except KeyboardInterrupt:
        print("boot: interrupted; Wi-Fi not joined")
    except Exception as e:  # whatever it is, the REPL must stay reachable
        print("boot: Wi-Fi set-up failed:")
        print_exception(e)
    finally:
        compat.release("config")
        compat.release("boardstart")
    return False


def start(path=CONFIG_FILE):
    """main.py's start: "safe" or "config" (said on the console), or (rt, BoardSettings) of
    the basket built and ready to run. Other exceptions (e.g. MemoryError) are raised."""
    try:
        why = safe_mode(path)
        if why:
            print("main: SAFE MODE (%s): controller not started" % why)
            return "safe"
        try:
            get, s = _settings(path)
            cfg, rt = _start(get)
        except ValueError as e:
            print("configuration error: %s" % e)
            print("fix it (e.g. mpremote edit :%s), then reset the board" % path)
            return "config"
        except OSError as e:  # the CA file is the only file read here
            print("configuration error: MQTT_CAFILE: cannot read it (%s)" % e)
            return "config"
        log.info("basket %d on %s, broker %s:%d%s, items from %s", cfg.basket_id, cfg.topic,
                 cfg.host, cfg.port, " (TLS)" if cfg.tls else "", cfg.item_source)
        return rt, s
    finally:
        compat.release("boardstart")


def _start(get):
    """(cfg, rt) of the version the loader picks from OTA_DIR (otaboot.start: a trial that
    fails to import or build is rolled back at once and the current version built)."""
    def build():
        from mqtt_controller.startup import build  # from the version otaboot switched to

        return build(get, board.REMOTE_FILE, flavour="mpy")  # a board's updates: .mpy files

    ota_dir = get("OTA_DIR")
    if not ota_dir or not isinstance(ota_dir, str):
        return build()
    from mqtt_controller import otaboot

    try:
        return otaboot.start(ota_dir, build)
    finally:  # start-up code: its heap is free again (the agent imports it when needed)
        compat.release("otaboot")
