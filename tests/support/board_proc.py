"""Board runs for the tests: main.py (through tests/board_stubs/run_board.py, with stand-in
`machine`, `network` and a fake flash folder) or `-m mqtt_controller` under the MicroPython unix
port. `BoardProc` is the one process wrapper (tests.support.process.Process) on such a run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.support.process import MICROPYTHON, ROOT, Process, clean_env, mp_path

STUBS = ROOT / "tests" / "board_stubs"


def mp_env(**extra: str) -> dict[str, str]:
    """Environment for the MicroPython unix port: frozen modules, the repo (not for a build with
    the package frozen in) and lib/ on MICROPYPATH, nothing of the caller's controller
    settings."""
    return clean_env(MICROPYPATH=mp_path(ROOT / "lib"), **extra)


def make_flash(tmp_path: Path, broker_port: int, **settings: str) -> Path:
    """A fake flash folder `flash` under tmp_path: boot.py and main.py, and a config.json for
    basket 1 on a loopback broker (Wi-Fi up, no items, no display) with `settings` on top."""
    flash = tmp_path / "flash"
    flash.mkdir()
    for name in ("boot.py", "main.py"):
        shutil.copy(ROOT / name, flash / name)
    config = {"WIFI_SSID": "shop-floor", "WIFI_PASSWORD": "wifi-secret",
              "WIFI_TIMEOUT_MS": "1000", "MQTT_HOST": "127.0.0.1", "MQTT_PORT": str(broker_port),
              "MQTT_USER": "basket1", "MQTT_PASSWORD": "basket1-pw", "MQTT_TOPIC": "basket/1",
              "ITEM_SOURCE": "none", "DISPLAY": "none"}
    config.update(settings)
    (flash / "config.json").write_text(json.dumps(config))
    return flash


class BoardProc(Process):
    """main.py on a fake flash folder `flash` (BOARD_STUB_DIR): the stand-ins first on
    MICROPYPATH, then (`repo`) the repository (`mp_path()`: not when the package is frozen
    in) and lib/, else only what is on the flash."""

    name = "board"

    def __init__(self, flash: Path, repo: bool = True, **env: str) -> None:
        e = mp_env(BOARD_STUB_DIR=str(flash), **env)
        e["MICROPYPATH"] = "%s:%s" % (STUBS, e["MICROPYPATH"]) if repo else str(STUBS)
        super().__init__([MICROPYTHON, str(STUBS / "run_board.py")], e, cwd=flash)
