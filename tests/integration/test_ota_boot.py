"""The loader (mqtt_controller/otaboot.py) on real OTA_DIR folders laid out by hand (releases
copied into v/<V>/ as a download leaves them, each saying __version__ = V), the controller as a real
process under both interpreters against a real Mosquitto: a staged trial runs; a trial that
raises at import is rolled back to the current version in the same process; a trial that
crashed is rolled back at the next start; a missing version folder falls back; what a kill -9
of the loader's own writes or of a download leaves behind always boots a complete version; the
exit status 3 comes through. A board run (main.py, the stand-in `machine`) does the same from
/ota with .mpy files and resets for exit code 3."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mqtt_controller import __version__ as FACTORY
from mqtt_controller import ota
from tests.support.board_proc import BoardProc, make_flash
from tests.support.broker import Broker, free_port
from tests.support.ota_release import make_release
from tests.support.peer import Peer
from tests.support.process import ROOT, ControllerProc, run_once

HEALTH = "basket/1/health"
BROKEN_IMPORT = "\nraise ImportError(\"no module named 'mqtt_controller.v3only'\")\n"
# A runtime that asks for a restart (exit code 3) as soon as it runs.
RESTART_AT_ONCE = ("\n\ndef _restart(self, *a, **k):\n    self.exit_code = 3\n\n\n"
                   "Runtime.run = _restart\n")


def release(ota_dir: Path, version: str, runtime_tail: str = "", mpy: bool = False) -> Path:
    """Installs release `version` (tests.support.ota_release, the service's layout) the way a
    download leaves it: its py (or mpy: a board's) files as <ota_dir>/v/<version>/, with
    runtime_tail added to runtime.py."""
    changes = None
    if runtime_tail:
        rt = "mqtt_controller/runtime.py"
        changes = {rt: (ROOT / rt).read_text() + runtime_tail}
    made = make_release(ota_dir.parent / "releases", version, changes=changes)
    dest = ota_dir / "v" / version
    shutil.copytree(made / ("mpy" if mpy else "py"), dest)
    return dest


def put_state(ota_dir: Path, **fields: Any) -> None:
    s = ota.new_state()
    s.update(fields)
    (ota_dir / "state.json").write_text(json.dumps(s))


def get_state(ota_dir: Path) -> dict[str, Any]:
    return json.loads((ota_dir / "state.json").read_text())  # type: ignore[no-any-return]


def rolled_back(version: str, error: str) -> dict[str, Any]:
    return {"state": "rolled_back", "version": version, "error": error}


@pytest.fixture
def ota_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ota"
    d.mkdir()
    return d


@pytest.fixture
def service(broker: Broker) -> Iterator[Peer]:
    p = Peer(broker.port, "service", "service-pw")
    p.subscribe(HEALTH)
    yield p
    p.close()


def reported_version(service: Peer, start: int = 0) -> str:
    """The version of the next health report at or after message `start`."""
    def find() -> str | None:
        with service.cond:
            for t, p, _ in service.messages[start:]:
                if t == HEALTH:
                    return str(json.loads(p)["version"])
        return None
    return service.wait_for(find, 15, "a health report")  # type: ignore[no-any-return]


def version_of(interp: str, ota_dir: Path | None) -> str:
    """What `--version` prints (it looks, and never counts a trial)."""
    env = {"ARGS": "--version"}
    if ota_dir is not None:
        env["OTA_DIR"] = str(ota_dir)
    res = run_once(interp, env)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stdout + res.stderr
    m = re.fullmatch(r"mqtt_controller (\S+)\n", res.stdout)
    assert m, res.stdout
    return m.group(1)


# -- the host ---------------------------------------------------------------------------------
def test_version_reports_what_the_loader_would_start(interp: str, ota_dir: Path) -> None:
    assert version_of(interp, None) == FACTORY
    assert version_of(interp, ota_dir) == FACTORY  # no state.json: the factory code
    release(ota_dir, "1.0")
    release(ota_dir, "2.0")
    release(ota_dir, "3.0")
    put_state(ota_dir, current="2.0", previous="1.0")
    assert version_of(interp, ota_dir) == "2.0"
    put_state(ota_dir, current="2.0", previous="1.0", trial="3.0")
    assert version_of(interp, ota_dir) == "3.0"
    assert get_state(ota_dir)["tries"] == 0  # --version counted nothing
    put_state(ota_dir, current="2.0", previous="1.0", trial="3.0", tries=1)
    assert version_of(interp, ota_dir) == "2.0"
    shutil.rmtree(ota_dir / "v" / "2.0")
    assert version_of(interp, ota_dir) == "1.0"
    shutil.rmtree(ota_dir / "v" / "1.0")
    assert version_of(interp, ota_dir) == FACTORY
    # a pending trial that does not even import: said so, no traceback, nothing counted
    (ota_dir / "v" / "3.0" / "mqtt_controller" / "__init__.py").write_text(
        "raise RuntimeError('3.0 is broken')\n")
    put_state(ota_dir, trial="3.0")
    res = run_once(interp, {"ARGS": "--version", "OTA_DIR": str(ota_dir)})
    assert res.returncode == 1, res.stdout + res.stderr
    assert "does not import: RuntimeError: 3.0 is broken" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr and get_state(ota_dir)["tries"] == 0


def test_a_staged_trial_starts_and_reports_its_version(
        interp: str, controller: Callable[..., ControllerProc], service: Peer,
        ota_dir: Path) -> None:
    release(ota_dir, "2.0")
    release(ota_dir, "3.0")
    put_state(ota_dir, current="2.0", trial="3.0")
    c = controller(OTA_DIR=str(ota_dir), DISPLAY="none").start()
    c.wait_log("INFO ota: starting 3.0 on trial")
    assert reported_version(service) == "3.0"
    s = get_state(ota_dir)
    # counted before it ran (tries 1), or already confirmed by the trial itself once connected
    assert (s["trial"], s["tries"]) == ("3.0", 1) or s["current"] == "3.0", s
    c.assert_no_traceback()


def test_a_trial_that_raises_at_import_is_rolled_back_in_the_same_process(
        interp: str, controller: Callable[..., ControllerProc], service: Peer,
        ota_dir: Path) -> None:
    release(ota_dir, "2.0")
    release(ota_dir, "3.0", runtime_tail=BROKEN_IMPORT)
    put_state(ota_dir, current="2.0", trial="3.0")
    c = controller(OTA_DIR=str(ota_dir), DISPLAY="none").start()  # connects: one process
    reason = "ImportError: no module named 'mqtt_controller.v3only'"
    c.wait_log("WARNING ota: trial of 3.0 failed at start (%s): rolled back to 2.0" % reason)
    assert reported_version(service) == "2.0"
    assert get_state(ota_dir) == dict(ota.new_state(), current="2.0",
                                      last=rolled_back("3.0", reason))
    assert c.alive()
    c.assert_no_traceback()


def test_a_trial_that_crashed_is_rolled_back_at_the_next_start(
        interp: str, controller: Callable[..., ControllerProc], service: Peer,
        ota_dir: Path) -> None:
    release(ota_dir, "2.0")
    release(ota_dir, "3.0")
    put_state(ota_dir, current="2.0", trial="3.0")
    # The trial on a broker that is not there: it runs, never connects, and dies (kill -9).
    trial = ControllerProc(interp, free_port(), OTA_DIR=str(ota_dir), DISPLAY="none")
    try:
        trial.start(wait_connected=False)
        trial.wait_log("INFO ota: starting 3.0 on trial")
        trial.wait_log("basket 1 on basket/1")  # built: the trial's runtime runs
        trial.kill()
    finally:
        trial.close()
    assert get_state(ota_dir)["tries"] == 1
    c = controller(OTA_DIR=str(ota_dir), DISPLAY="none").start()
    c.wait_log("WARNING ota: 3.0 rolled back: " + ota.STRANDED)
    assert reported_version(service) == "2.0"
    assert get_state(ota_dir) == dict(ota.new_state(), current="2.0",
                                      last=rolled_back("3.0", ota.STRANDED))
    c.assert_no_traceback()


def test_a_missing_version_folder_falls_back_to_the_previous_version(
        interp: str, controller: Callable[..., ControllerProc], service: Peer,
        ota_dir: Path) -> None:
    release(ota_dir, "1.0")
    put_state(ota_dir, current="2.0", previous="1.0")  # v/2.0 is gone
    c = controller(OTA_DIR=str(ota_dir), DISPLAY="none").start()
    c.wait_log("WARNING ota: 2.0 failed: v/2.0 is missing")
    assert reported_version(service) == "1.0"
    assert get_state(ota_dir) == dict(ota.new_state(), current="1.0", last={
        "state": "failed", "version": "2.0", "error": "v/2.0 is missing"})
    c.assert_no_traceback()


def test_what_a_kill_9_leaves_behind_always_boots_a_complete_version(
        interp: str, controller: Callable[..., ControllerProc], service: Peer,
        ota_dir: Path) -> None:
    release(ota_dir, "2.0")
    put_state(ota_dir, current="2.0")
    # killed while writing the next state (a trial of 3.0) and while downloading 3.0
    (ota_dir / "state.json.tmp").write_text('{"current": "2.0", "trial": "3.')
    half = ota_dir / "staging" / "mqtt_controller"
    half.mkdir(parents=True)
    (half / "__init__.py").write_text('__version__ = "3.0"\n')
    (half / "runtime.py").write_text("import sel")  # cut off mid-file
    assert version_of(interp, ota_dir) == "2.0"
    c = controller(OTA_DIR=str(ota_dir), DISPLAY="none").start()
    assert reported_version(service) == "2.0"
    c.stop()
    # FAT caught between removing state.json and renaming the complete temp file into place
    m = service.mark()
    (ota_dir / "state.json").unlink()
    (ota_dir / "state.json.tmp").write_text(json.dumps(dict(ota.new_state(), current="2.0")))
    c.start()
    assert reported_version(service, m) == "2.0"
    c.stop()
    # a state.json damaged beyond reading: the factory code, never a crash
    m = service.mark()
    (ota_dir / "state.json.tmp").unlink()
    (ota_dir / "state.json").write_text("\x00\x00\x00")
    c.start()
    assert reported_version(service, m) == FACTORY
    c.assert_no_traceback()


def test_exit_status_3_of_the_runtime_comes_through_the_loader(interp: str,
                                                               ota_dir: Path) -> None:
    release(ota_dir, "2.0", runtime_tail=RESTART_AT_ONCE)
    put_state(ota_dir, current="2.0")
    res = run_once(interp, {"OTA_DIR": str(ota_dir), "MQTT_HOST": "127.0.0.1",
                            "MQTT_PORT": str(free_port()), "MQTT_TOPIC": "basket/1",
                            "ITEM_SOURCE": "none", "DISPLAY": "none"})
    assert res.returncode == 3, res.stdout + res.stderr
    assert "INFO ota: starting 2.0" in res.stderr


# -- a board ----------------------------------------------------------------------------------
def flash_with(tmp_path: Path, broker: Broker) -> Path:
    return make_flash(tmp_path, broker.port)


def test_a_board_rolls_a_broken_trial_in_ota_back_to_the_update_before_it(
        tmp_path: Path, broker: Broker, service: Peer) -> None:
    flash = flash_with(tmp_path, broker)
    ota_dir = flash / "ota"  # a board's default OTA_DIR
    release(ota_dir, "2.0", mpy=True)
    release(ota_dir, "3.0", runtime_tail=BROKEN_IMPORT, mpy=True)
    put_state(ota_dir, current="2.0", trial="3.0")
    proc = BoardProc(flash)
    proc.start(stdin=True)
    try:
        proc.wait_log("INFO ota: starting 3.0 on trial")
        proc.wait_line(r"WARNING ota: trial of 3\.0 failed at start \(ImportError: .*\): "
                       r"rolled back to 2\.0")
        assert reported_version(service) == "2.0"
        s = get_state(ota_dir)
        assert s["current"] == "2.0" and s["trial"] is None, s
        assert s["last"]["state"] == "rolled_back" and "ImportError" in s["last"]["error"], s
    finally:
        proc.stop()
    proc.assert_no_traceback()


def test_a_board_resets_when_the_runtime_asks_for_a_restart(tmp_path: Path,
                                                           broker: Broker) -> None:
    flash = flash_with(tmp_path, broker)
    release(flash / "ota", "2.0", runtime_tail=RESTART_AT_ONCE, mpy=True)
    put_state(flash / "ota", current="2.0")
    proc = BoardProc(flash)
    proc.start(stdin=True)
    try:
        assert proc.wait(30) == 86  # the stand-in machine.reset()
    finally:
        proc.stop()
    assert "machine.reset" in (flash / "calls.log").read_text()
    assert "INFO ota: starting 2.0" in proc.output()
