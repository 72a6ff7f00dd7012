"""Raspberry Pi deployment: the systemd unit (systemd-analyze verify where it exists), and
install-pi / uninstall-pi into a staging tree, the installed copy run by the system's python3
with no site-packages against a real Mosquitto, stopped with SIGTERM as systemd does."""

from __future__ import annotations

import configparser
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.broker import Broker
from tests.support.peer import Peer
from tests.support.process import ROOT, Process

UNIT = ROOT / "deploy" / "basket.service"
SYSTEM_PYTHON = "/usr/bin/python3"


def unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(UNIT.read_text())
    return cp


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed here (package systemd)")
    copy = tmp_path / "basket.service"
    shutil.copy(UNIT, copy)
    out = subprocess.run([tool, "verify", str(copy)], capture_output=True, text=True,
                         timeout=60)
    # verify exits 0 on mere parse warnings: any word about our unit is a failure too
    noise = [ln for ln in (out.stdout + out.stderr).splitlines() if "basket.service" in ln]
    assert out.returncode == 0 and not noise, out.stdout + out.stderr


def test_unit_settings() -> None:
    s = unit()["Service"]
    assert s["Restart"] == "always"
    assert s["User"] == "basket" and s["Group"] == "basket"
    assert set(s["SupplementaryGroups"].split()) == {"dialout", "i2c"}
    assert s["EnvironmentFile"] == "/etc/smart-basket/basket.env"
    assert s["ExecStart"] == SYSTEM_PYTHON + " -m mqtt_controller"
    assert s["WorkingDirectory"] == "/opt/smart-basket"
    assert s["StandardOutput"] == "journal" and s["StandardError"] == "journal"
    # updates: the versions folder is the one writable place under the code (ProtectSystem)
    assert "OTA_DIR=/opt/smart-basket/ota" in s["Environment"].split("\n")
    assert s["ReadWritePaths"] == "/opt/smart-basket/ota" and s["ProtectSystem"] == "strict"
    assert unit()["Install"]["WantedBy"] == "multi-user.target"


def install(dest: Path, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", "%s-pi" % action], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, DESTDIR=str(dest)), timeout=120)


def read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="no /usr/bin/python3 here")
def test_install_run_and_uninstall(tmp_path: Path) -> None:
    dest = tmp_path / "root"
    out = install(dest, "install")
    assert out.returncode == 0, out.stdout + out.stderr
    code = dest / "opt" / "smart-basket"
    assert sorted(p.name for p in (code / "mqtt_controller").glob("*.py")) == sorted(
        p.name for p in (ROOT / "mqtt_controller").glob("*.py"))
    assert (dest / "etc/systemd/system/basket.service").read_text() == UNIT.read_text()
    assert (code / "ota").is_dir()  # OTA_DIR, which the unit's ReadWritePaths needs to exist
    env_file = dest / "etc/smart-basket/basket.env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o640"

    broker = Broker.with_acl().start()
    peer = Peer(broker.port)
    peer.subscribe("basket/1/#")
    settings = read_env(env_file)  # the example's keys, pointed at the test broker
    settings.update(MQTT_HOST="127.0.0.1", MQTT_PORT=str(broker.port),
                    MQTT_PASSWORD="basket1-pw", ITEM_SOURCE="none", DISPLAY="console",
                    CART_STATE_FILE=str(tmp_path / "state.json"), PYTHONUNBUFFERED="1")
    env = {"PATH": "/usr/bin:/bin", **settings}
    # -S: no site-packages at all; the code needs the standard library only
    proc = Process([SYSTEM_PYTHON, "-S", "-m", "mqtt_controller"], env, cwd=code).start()
    try:
        peer.wait_payload("basket/1/availability", b"online")
        proc.wait_line(r"INFO connected to 127\.0\.0\.1:\d+ as basket-1")
        m = peer.mark()
        proc.signal(signal.SIGTERM)  # systemctl stop
        assert proc.wait(15) == 0, proc.output()
        peer.wait_payload("basket/1/availability", b"offline", start=m)
    finally:
        proc.stop()
        peer.close()
        broker.close()

    # re-install keeps the edited settings
    env_file.write_text("MQTT_TOPIC=basket/7\n")
    assert install(dest, "install").returncode == 0
    assert env_file.read_text() == "MQTT_TOPIC=basket/7\n"

    out = install(dest, "uninstall")
    assert out.returncode == 0, out.stdout + out.stderr
    assert not code.exists()
    assert not (dest / "etc/systemd/system/basket.service").exists()
    assert env_file.exists()  # settings survive an uninstall
