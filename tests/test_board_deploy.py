"""make deploy: the file list (against the README), a deploy onto a fake board (a folder played
by a stand-in mpremote) that then boots and shops, and the errors when no board answers."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.board_proc import STUBS, BoardProc
from tests.support.broker import Broker
from tests.support.peer import Peer
from tests.support.process import MICROPYTHON, ROOT

PY = sys.executable


def deploy(*args: str, env: dict[str, str] | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "tools/deploy.py", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=timeout)


def readme_board_files() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Flash an ESP32 basket", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"```text\n# on the board \(make deploy-list\)\n(.*?)```", section, re.S)
    assert m, "README: no file list in 'Flash an ESP32 basket'"
    return m.group(1).split()


def test_deploy_list_is_what_the_readme_says() -> None:
    out = subprocess.run(["make", "-s", "deploy-list"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    listed = out.stdout.split()
    assert listed == readme_board_files()
    # every controller module but the host's command line (and its --help table), once; nothing
    # from tests/ or tools/
    modules = sorted(p.name for p in (ROOT / "mqtt_controller").glob("*.py"))
    assert sorted(x.split("/")[1] for x in listed if x.startswith("mqtt_controller/")) == \
        [m for m in modules if m not in ("__main__.py", "helptext.py")]
    assert not [x for x in listed if x.startswith(("tests", "tools", "lib"))]
    assert listed[-1] == "config.json"


def test_deploy_list_with_mpy_and_umqtt() -> None:
    plain = deploy("--list").stdout.split()
    mpy = deploy("--list", "--mpy", "--umqtt").stdout.split()
    assert mpy[:2] == ["boot.py", "main.py"]  # the firmware runs these by name
    assert [x.replace(".mpy", ".py") for x in mpy if x != "lib/umqtt/simple.mpy"] == plain
    assert "lib/umqtt/simple.mpy" in mpy


@pytest.fixture
def broker() -> Iterator[Broker]:
    b = Broker.with_acl().start()
    yield b
    b.close()


@pytest.mark.parametrize("mpy", [False, True], ids=["source", "mpy"])
def test_deploy_onto_a_fake_board_which_then_boots(broker: Broker, tmp_path: Path,
                                                   mpy: bool) -> None:
    flash = tmp_path / "flash"
    (flash / "mqtt_controller").mkdir(parents=True)
    # left over from an older deploy: would shadow the new .mpy files
    (flash / "mqtt_controller" / "runtime.py").write_text("raise ImportError('stale')\n")
    config = tmp_path / "basket-1.json"
    config.write_text(json.dumps({
        "WIFI_SSID": "shop-floor", "WIFI_PASSWORD": "x", "MQTT_HOST": "127.0.0.1",
        "MQTT_PORT": str(broker.port), "MQTT_USER": "basket1", "MQTT_PASSWORD": "basket1-pw",
        "MQTT_TOPIC": "basket/1", "ITEM_SOURCE": "none", "SAFE_PIN": "none"}))
    env = dict(os.environ, MPREMOTE=str(STUBS / "fake_mpremote.py"), FAKE_BOARD_DIR=str(flash),
               FAKE_BOARD_PORT="/dev/ttyFAKE0", MICROPYTHON=MICROPYTHON)
    args = ["--port", "/dev/ttyFAKE0", "--config", str(config), "--umqtt"]
    out = deploy(*args, *(["--mpy"] if mpy else []), env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "deploy: done" in out.stdout
    copied = sorted(str(p.relative_to(flash)) for p in flash.rglob("*") if p.is_file())
    expected = deploy("--list", "--umqtt", *(["--mpy"] if mpy else [])).stdout.split()
    assert copied == sorted(expected)
    log = (tmp_path / "mpremote.log").read_text()
    assert log.rstrip().endswith("reset")

    peer = Peer(broker.port)
    peer.subscribe("basket/1/#")
    # the stand-ins and what is on the fake flash, no repo
    proc = BoardProc(flash, repo=False).start()
    try:
        peer.wait_payload("basket/1/availability", b"online")
        peer.publish("basket/1/status", b"start")
        peer.wait_payload("basket/1/update", b'{"id":1,"list":{}}')
    finally:
        proc.stop()
        peer.close()
    assert "Traceback" not in proc.output(), proc.output()


def test_make_deploy_without_a_board_says_so(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"MQTT_TOPIC": "basket/1"}')
    out = subprocess.run(["make", "-s", "deploy", "PORT=/dev/ttyNONE9", "CONFIG=%s" % config],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "deploy: error: no MicroPython board answers on /dev/ttyNONE9 (mpremote exit " \
           "status 1)" in out.stderr, out.stdout + out.stderr


def test_deploy_to_a_silent_port_times_out(tmp_path: Path) -> None:
    master, slave = pty.openpty()  # a serial port where nothing ever answers
    name = os.ttyname(slave)
    try:
        config = tmp_path / "c.json"
        config.write_text('{"MQTT_TOPIC": "basket/1"}')
        out = deploy("--port", name, "--config", str(config), "--timeout", "3")
    finally:
        os.close(master)
        os.close(slave)
    assert out.returncode == 1
    assert "no MicroPython board answers on %s (timed out after 3 s)" % name in out.stderr, \
        out.stderr


def test_deploy_without_config_json_explains(tmp_path: Path) -> None:
    out = deploy("--port", "/dev/ttyNONE9", "--config", str(tmp_path / "config.json"))
    assert out.returncode == 1
    assert "config.json not found: copy config.example.json to config.json" in out.stderr


def test_config_example_is_valid_for_the_board() -> None:
    data = json.loads((ROOT / "config.example.json").read_text())
    code = ("import sys; sys.path.insert(0, '.'); from mqtt_controller import config\n"
            "get = config.load_file('config.example.json')\n"
            "config.board_settings(get); c = config.load(get); print('ok', c.basket_id)")
    out = subprocess.run([MICROPYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.stdout.strip() == "ok 1", out.stdout + out.stderr
    assert "unknown key" not in out.stderr
    assert all(isinstance(v, str) for v in data.values())


def test_package_json_and_manifest_carry_the_same_files() -> None:
    board = deploy("--list").stdout.split()[:-1]  # all but config.json
    pkg = json.loads((ROOT / "package.json").read_text())
    assert [dst for dst, _ in pkg["urls"]] == board
    assert all(src == dst and (ROOT / src).exists() for dst, src in pkg["urls"])
    frozen: list[str] = []

    def package(name: str, files: tuple[str, ...], base_path: str = ".", opt: int = 0) -> None:
        frozen.extend("%s/%s" % (name, f) for f in files)

    code = (ROOT / "manifest.py").read_text()
    exec(compile(code, "manifest.py", "exec"), {"include": lambda path: None, "package": package})
    assert frozen == [f for f in board if f.startswith("mqtt_controller/")]
