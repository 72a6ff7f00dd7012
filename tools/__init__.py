"""Host tools, each a module with a main(): run one as `python -m tools.<name>` from the
repository root, or as its console script (`basket-provision`, `basket-simulate`, ...; see
pyproject.toml) once the project is installed (`make venv` installs it in editable mode).
provision.py needs only the standard library, so it also runs as a plain file on a broker host."""
