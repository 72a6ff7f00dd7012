# The one tiny logger: a line per event on stderr, level from LOG_LEVEL. Never pass secrets.
from mqtt_controller.compat import stderr_write

DEBUG = 10
INFO = 20
WARNING = 30
ERROR = 40
_NAMES = {"DEBUG": DEBUG, "INFO": INFO, "WARNING": WARNING, "WARN": WARNING, "ERROR": ERROR}

level = INFO


def set_level(name):
    """Sets the level from a name such as "debug"; raises ValueError for an unknown one."""
    global level
    n = _NAMES.get(str(name).strip().upper())
    if n is None:
        raise ValueError("LOG_LEVEL must be one of debug, info, warning, error (got %r)" % name)
    level = n


def _emit(lvl, tag, msg, args):
    if lvl < level:
        return
    if args:
        try:
            msg = msg % args
        except (TypeError, ValueError):
            msg = "%s %r" % (msg, args)
    stderr_write("%s %s\n" % (tag, msg))


def debug(msg, *args):
    _emit(DEBUG, "DEBUG", msg, args)


def info(msg, *args):
    _emit(INFO, "INFO", msg, args)


def warning(msg, *args):
    _emit(WARNING, "WARNING", msg, args)


def error(msg, *args):
    _emit(ERROR, "ERROR", msg, args)
