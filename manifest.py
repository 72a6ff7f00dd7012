# Freezes the basket controller into a MicroPython firmware (docs/firmware.md):
#   esp32:      make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=/path/to/this/manifest.py
#   unix port:  make firmware-unix MICROPYTHON_SRC=/path/to/micropython (a 32-bit test build)
# The port's own frozen modules stay in: $(PORT_DIR)/boards/manifest.py where the port has one
# (esp32), else the unix port's $(PORT_DIR)/variants/standard/manifest.py.
# The package's files come from the folder, so a new module is frozen without editing this: on a
# board every mqtt_controller/*.py that tools/deploy.py copies (its NOT_ON_BOARD, the command line
# and its --help table, left out); the unix port is a host (`micropython -m mqtt_controller`), so
# it freezes those two as well.
# On a board copy only boot.py, main.py and config.json: a mqtt_controller/ folder in its file
# system would come first on sys.path and shadow the frozen package. Updates over the air
# (OTA_DIR) are put first on sys.path on purpose and win over it the same way.
# ruff: noqa: F821 - include() and package() are given by MicroPython's manifest tool
import importlib.util
import os

# The manifest tool runs this under CPython with the working directory set to this file's
# folder. It substitutes $(PORT_DIR) only in the paths handed to include(), package(), ...; the
# values themselves are kept by the ManifestFile object behind include(). A tool that keeps
# none (or keeps them elsewhere) gets what this file was first written for: a board port.
PORT_DIR = getattr(getattr(include, "__self__", None), "_path_vars", {}).get("PORT_DIR")
BOARD_PORT = PORT_DIR is None or os.path.exists(os.path.join(PORT_DIR, "boards", "manifest.py"))
if BOARD_PORT:
    include("$(PORT_DIR)/boards/manifest.py")
elif os.path.exists(os.path.join(PORT_DIR, "variants", "standard", "manifest.py")):
    include("$(PORT_DIR)/variants/standard/manifest.py")
else:
    raise RuntimeError("%s has neither boards/manifest.py (a board port such as esp32) nor "
                       "variants/standard/manifest.py (the unix port)" % PORT_DIR)

# tools/deploy.py's board_files(): what `make deploy` copies, the one list of the board's files.
_spec = importlib.util.spec_from_file_location("basket_deploy", os.path.abspath("tools/deploy.py"))
_deploy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_deploy)
FILES = [dst.split("/", 1)[1] for _, dst in _deploy.board_files()
         if dst.startswith("mqtt_controller/")]
if not BOARD_PORT:
    FILES += sorted(n for n in _deploy.NOT_ON_BOARD if os.path.exists("mqtt_controller/" + n))
package("mqtt_controller", files=tuple(FILES), base_path=".", opt=3)
