# Helpers for the pure tests that run under pytest (CPython) and tests/mp_runner.py (MicroPython).
import sys

MICROPYTHON = sys.implementation.name == "micropython"


class Skip(Exception):
    pass


def skip(reason):
    try:
        import pytest
    except ImportError:
        raise Skip(reason)
    pytest.skip(reason)


def raises(exc_type, fn, *args, **kw):
    """Calls fn and returns the exception it raised; fails unless it is an `exc_type`."""
    try:
        fn(*args, **kw)
    except exc_type as e:
        return e
    raise AssertionError("%s did not raise %s" % (getattr(fn, "__name__", fn), exc_type.__name__))
