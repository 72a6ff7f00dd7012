# `python -m mqtt_controller` / `micropython -m mqtt_controller`: settings from the environment.
import sys

from mqtt_controller import __version__, log
from mqtt_controller.compat import getenv, print_exception

USAGE = """usage: python -m mqtt_controller [--help] [--version]

Smart basket controller: keeps the cart, talks MQTT to the broker.
Item lines on ITEM_SOURCE: CODE adds one, -CODE removes one, CODE=N sets the count.
"""


def main(argv):
    if "-h" in argv or "--help" in argv:
        from mqtt_controller.helptext import help_text

        print(USAGE)
        print(help_text())
        return 0
    if "--version" in argv:
        print("mqtt_controller %s" % __version__)
        return 0
    if argv:
        sys.stderr.write("error: unknown argument %s (settings come from the environment; see "
                         "--help)\n" % argv[0])
        return 2
    try:
        from mqtt_controller.runtime import build

        cfg, rt = build()
    except ValueError as e:  # ConfigError, and bad ITEM_SOURCE / DISPLAY specs
        sys.stderr.write("configuration error: %s\n" % e)
        return 2
    except OSError as e:  # the only file read at start-up: the CA certificate
        sys.stderr.write("configuration error: MQTT_CAFILE: cannot read %s (%s)\n" % (
            getenv("MQTT_CAFILE"), e))
        return 2
    log.info("basket %d on %s, broker %s:%d%s, items from %s", cfg.basket_id, cfg.topic,
             cfg.host, cfg.port, " (TLS)" if cfg.tls else "", cfg.item_source)
    rt.run()
    return 0


try:
    code = main(sys.argv[1:])
except KeyboardInterrupt:
    code = 0
except Exception as e:  # a bug: show it, exit non-zero so a supervisor restarts us
    print_exception(e)
    code = 1
sys.exit(code)
