# Runs the pure tests (tests/unit/test_*.py) without pytest, e.g. under the MicroPython unix port:
#   micropython tests/mp_runner.py [test_module ...]
# Ends with "N passed, N failed, N skipped" and exits 1 on any failure.
# MICROPYTHON_FROZEN=1: the interpreter has the package frozen in (make firmware-unix): the
# checkout is not put on sys.path, and the run fails unless mqtt_controller comes from no file.
import os
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
ROOT = HERE + "/.."
UNIT = HERE + "/unit"
FROZEN = os.getenv("MICROPYTHON_FROZEN") not in (None, "", "0")
sys.path.insert(0, UNIT)
if not FROZEN:
    sys.path.insert(0, ROOT)

from _util import Skip  # noqa: E402

try:
    from sys import print_exception
except ImportError:
    import traceback

    def print_exception(e):
        traceback.print_exception(type(e), e, e.__traceback__)


def modules(argv):
    if argv:
        return [a.rsplit("/", 1)[-1].replace(".py", "") for a in argv]
    names = [n[:-3] for n in os.listdir(UNIT) if n.startswith("test_") and n.endswith(".py")]
    names.sort()
    return names


def package_origin():
    """Where mqtt_controller was loaded from: its __file__, and whether that is a real file
    (a frozen module's __file__ names no file)."""
    import mqtt_controller

    where = getattr(mqtt_controller, "__file__", None)
    try:
        os.stat(where)
        return where, True
    except (OSError, TypeError):
        return where, False


def main(argv):
    passed = failed = skipped = 0
    where, is_file = package_origin()
    print("package: %s (%s)" % (where, "file" if is_file else "frozen"))
    if FROZEN and is_file:
        print("FAIL MICROPYTHON_FROZEN=1 but mqtt_controller comes from a file")
        return 1
    for name in modules(argv):
        mod = __import__(name)
        tests = [n for n in dir(mod) if n.startswith("test_")]
        tests.sort()
        for t in tests:
            fn = getattr(mod, t)
            if not callable(fn):
                continue
            try:
                fn()
            except Skip as e:
                skipped += 1
                print("SKIP %s.%s: %s" % (name, t, e))
            except Exception as e:
                failed += 1
                print("FAIL %s.%s" % (name, t))
                print_exception(e)
            else:
                passed += 1
                print("ok   %s.%s" % (name, t))
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


sys.exit(main(sys.argv[1:]))
