"""Smart basket controller: one code base for CPython 3.9+ and MicroPython 1.22+."""

__version__ = "0.1.0"
