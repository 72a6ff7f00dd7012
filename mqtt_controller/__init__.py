"""Smart basket controller: one code base for CPython 3.9+ and MicroPython 1.22+."""

# The project's one version: pyproject.toml reads it here, package.json must match it.
__version__ = "0.1.0"
