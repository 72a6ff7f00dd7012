# `python -m mqtt_controller` / `micropython -m mqtt_controller`: settings from the environment.
# With OTA_DIR set, the loader (otaboot.py) picks the version to run before anything else of the
# package is imported; exit status 3 asks the service manager for a restart (a staged update, a
# trial that timed out).
import os
import sys

# The factory's, on purpose: it must still print a crash of a version that does not import.
from mqtt_controller.compat import print_exception

USAGE = """usage: python -m mqtt_controller [--help] [--version]

Smart basket controller: keeps the cart, talks MQTT to the broker.
Item lines on ITEM_SOURCE: CODE adds one, -CODE removes one, CODE=N sets the count.
"""


def _ota_dir():
    try:
        return os.getenv("OTA_DIR") or ""
    except AttributeError:  # a port without an environment
        return ""


def _build():
    from mqtt_controller.startup import build  # from the version otaboot switched to

    return build()


def main(argv):
    if "-h" in argv or "--help" in argv:
        from mqtt_controller.helptext import help_text  # the factory's: releases carry none

        print(USAGE)
        print(help_text())
        return 0
    ota_dir = _ota_dir()
    if ota_dir:
        from mqtt_controller import otaboot
    if "--version" in argv:
        if ota_dir:  # the version a start would run; a pending trial is not counted
            otaboot.switch(otaboot.select(ota_dir, persist=False)[1])
        try:
            from mqtt_controller import __version__
        except Exception as e:  # a broken update (a start would roll a trial of it back)
            sys.stderr.write("error: the version in %s does not import: %s: %s\n" % (
                ota_dir, type(e).__name__, e))
            return 1
        print("mqtt_controller %s" % __version__)
        return 0
    if argv:
        sys.stderr.write("error: unknown argument %s (settings come from the environment; see "
                         "--help)\n" % argv[0])
        return 2
    try:
        cfg, rt = otaboot.start(ota_dir, _build) if ota_dir else _build()
    except ValueError as e:  # ConfigError, and bad ITEM_SOURCE / DISPLAY specs
        sys.stderr.write("configuration error: %s\n" % e)
        return 2
    except OSError as e:  # the only file read at start-up: the CA certificate
        sys.stderr.write("configuration error: MQTT_CAFILE: cannot read %s (%s)\n" % (
            os.getenv("MQTT_CAFILE"), e))
        return 2
    from mqtt_controller import log

    log.info("basket %d on %s, broker %s:%d%s, items from %s", cfg.basket_id, cfg.topic,
             cfg.host, cfg.port, " (TLS)" if cfg.tls else "", cfg.item_source)
    rt.run()
    return rt.exit_code  # 3: restart me (a staged update, a trial that timed out)


try:
    code = main(sys.argv[1:])
except KeyboardInterrupt:
    code = 0
except Exception as e:  # a bug: show it, exit non-zero so a supervisor restarts us
    print_exception(e)
    code = 1
sys.exit(code)
