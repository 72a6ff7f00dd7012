"""`make firmware-unix` and the tests' runs on its builds (docs/firmware.md): manifest.py under
MicroPython's own manifest tool for esp32 and the unix port, the two 32-bit builds (plain, and
with the package frozen in), the interpreter the tests' children get (MICROPYTHON,
MICROPYTHON_FROZEN), and the selection `make test-firmware` runs again on those builds.

The builds come from `make test` (before pytest, when a MicroPython source is at hand) or
`make firmware-unix MICROPYTHON_SRC=...`; without them these tests skip, except under CI
(CI=true), which must have them."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.board_proc import BoardProc
from tests.support.process import MICROPYTHON, MP_FROZEN, ROOT, ControllerProc
from tools import deploy

FIRMWARE = ROOT / "build" / "firmware-unix"
MP32 = FIRMWARE / "micropython-32"
MP32_FROZEN = FIRMWARE / "micropython-32-frozen"
CI = os.environ.get("CI") == "true"
# What the frozen build is made of (the Makefile's dependencies of it).
FROZEN_SOURCES = [ROOT / "manifest.py", ROOT / "tools" / "deploy.py",
                  *(ROOT / "mqtt_controller").glob("*.py")]


def missing(why: str) -> None:
    """A build or source that is not there: an error under CI, else a skip."""
    if CI:
        pytest.fail("CI=true: " + why)
    pytest.skip(why)


def build(path: Path, sources: Sequence[Path] = ()) -> Path:
    if not path.exists():
        missing("%s missing: make firmware-unix MICROPYTHON_SRC=/path/to/micropython" % path)
    newer = [p.name for p in sources if p.stat().st_mtime > path.stat().st_mtime]
    if newer:
        missing("%s is older than %s: make firmware-unix MICROPYTHON_SRC=..." % (
            path, ", ".join(sorted(newer))))
    return path


def source_tree() -> Path:
    """The MicroPython tree the builds came from (named in build/firmware-unix/src.stamp)."""
    stamp = FIRMWARE / "src.stamp"
    tree = Path(stamp.read_text().strip()) if stamp.exists() else None
    if tree is None or not (tree / "tools" / "manifestfile.py").exists():
        missing("no MicroPython source tree recorded in %s" % stamp)
    assert tree is not None
    return tree


def run_mp(interp: Path | str, code: str, cwd: Path,
           **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run([str(interp), "-c", code], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=30)


def board_package() -> list[str]:
    """The package's files a board gets (tools/deploy.py, `make deploy`)."""
    return sorted(dst for _, dst in deploy.board_files() if dst.startswith("mqtt_controller/"))


# -- manifest.py under MicroPython's manifest tool -------------------------------------------------

def manifest_tool(tree: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("mp_manifestfile",
                                                  tree / "tools" / "manifestfile.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def frozen_by_manifest(tree: Path, port: str) -> dict[str, int | None]:
    mf = manifest_tool(tree)
    m = mf.ManifestFile(mf.MODE_FREEZE, {
        "MPY_DIR": str(tree), "MPY_LIB_DIR": str(tree / "lib" / "micropython-lib"),
        "PORT_DIR": str(tree / "ports" / port), "BOARD_DIR": None})
    m.execute(str(ROOT / "manifest.py"))
    return {f.target_path: f.opt for f in m.files()}


def test_manifest_freezes_the_board_files_on_esp32_and_the_host_entry_too_on_unix() -> None:
    tree = source_tree()
    esp32 = frozen_by_manifest(tree, "esp32")
    ours = sorted(p for p in esp32 if p.startswith("mqtt_controller/"))
    assert ours == board_package(), ours
    assert {esp32[p] for p in ours} == {3}
    assert "umqtt/simple.py" in esp32 and "_boot.py" in esp32  # the esp32 port's own modules

    unix = frozen_by_manifest(tree, "unix")
    ours = sorted(p for p in unix if p.startswith("mqtt_controller/"))
    every = sorted("mqtt_controller/" + p.name for p in (ROOT / "mqtt_controller").glob("*.py"))
    assert ours == every, ours  # `micropython -m mqtt_controller` and --help need the two
    assert sorted(set(every) - set(board_package())) == [
        "mqtt_controller/" + n for n in sorted(deploy.NOT_ON_BOARD)]
    assert "asyncio/core.py" in unix  # the unix port's standard variant's own


# -- the two builds --------------------------------------------------------------------------------

def test_both_builds_are_32_bit_and_only_one_has_the_package_frozen_in(tmp_path: Path) -> None:
    code = ("import sys\nprint(sys.maxsize)\ntry:\n import mqtt_controller\n"
            " print('package', mqtt_controller.__file__, mqtt_controller.__version__)\n"
            "except ImportError:\n print('no package')\n")
    plain = run_mp(build(MP32), code, tmp_path, MICROPYPATH=".frozen")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split() == ["2147483647", "no", "package"], plain.stdout
    frozen = run_mp(build(MP32_FROZEN, FROZEN_SOURCES), code, tmp_path, MICROPYPATH=".frozen")
    assert frozen.returncode == 0, frozen.stderr
    bits, word, where, version = frozen.stdout.split()
    assert (bits, word) == ("2147483647", "package"), frozen.stdout
    # A frozen module's __file__ names no file: the scratch folder holds nothing.
    assert where == "mqtt_controller/__init__.py" and not (tmp_path / where).exists()
    init = (ROOT / "mqtt_controller" / "__init__.py").read_text()
    assert '__version__ = "%s"' % version in init


def test_the_frozen_build_holds_every_module_of_the_package() -> None:
    data = build(MP32_FROZEN, FROZEN_SOURCES).read_bytes()
    names = {m.decode() for m in re.findall(rb"mqtt_controller/(\w+)\.py\x00", data)}
    assert names == {p.stem for p in (ROOT / "mqtt_controller").glob("*.py")}, names


@pytest.mark.parametrize(("src", "expected"), [
    ("", "MICROPYTHON_SRC is not set: make firmware-unix MICROPYTHON_SRC="),
    ("/nonexistent/micropython", "MICROPYTHON_SRC=/nonexistent/micropython: no such folder"),
    ("tests", "MICROPYTHON_SRC=tests is not a MicroPython source tree (py/mpconfig.h missing)"),
])
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_firmware_unix_needs_a_source_tree(src: str, expected: str) -> None:
    proc = subprocess.run(["make", "--no-print-directory", "firmware-unix",
                           "MICROPYTHON_SRC=" + src], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0
    assert "firmware-unix: error: " + expected in proc.stderr, proc.stderr
    assert "bash tools/build_firmware.sh" not in proc.stdout  # nothing was built


# -- the children of the tests ---------------------------------------------------------------------

PROBE = ("import sys\nimport mqtt_controller\nprint('PROBE', mqtt_controller.__file__)\n"
         "print('PATH', ':'.join(sys.path))\n")


def check_origin(out: str, cwd: Path) -> None:
    where = re.search(r"^PROBE (.+)$", out, re.M)
    path = re.search(r"^PATH (.*)$", out, re.M)
    assert where and path, out
    entries = path.group(1).split(":")
    if MP_FROZEN:
        assert not (cwd / where.group(1)).exists() and not where.group(1).startswith("/"), out
        assert str(ROOT) not in entries, out
    else:
        assert (cwd / where.group(1)).resolve() == ROOT / "mqtt_controller" / "__init__.py", out


def test_micropython_children_load_the_package_under_test(tmp_path: Path) -> None:
    """The controller's child (ControllerProc) and a board run (BoardProc) under this run's
    MicroPython: the checkout's package, or with MICROPYTHON_FROZEN=1 the frozen one and the
    checkout nowhere on sys.path."""
    c = ControllerProc("micropython", 1, workdir=tmp_path / "basket")
    try:
        proc = subprocess.run([MICROPYTHON, "-c", PROBE], cwd=c.dir, env=c.env,
                              capture_output=True, text=True, timeout=30)
    finally:
        c.close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    check_origin(proc.stdout, c.dir)

    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "main.py").write_text(PROBE)
    board = BoardProc(flash).start()
    assert board.wait(30) == 0, board.output()
    check_origin(board.output(), flash)


# -- what make test-firmware runs ------------------------------------------------------------------

def collect(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [ln for ln in proc.stdout.splitlines() if "::" in ln]


def test_make_test_firmware_selects_every_test_run_on_that_interpreter() -> None:
    m = re.search(r"^MP_TESTS \?= (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert m, "the Makefile's MP_TESTS selection"
    chosen = set(collect("-k", m.group(1)))
    everything = collect()
    on_mp = {t for t in everything if re.search(r"\[(.+-)?micropython(-.+)?\]$", t)}
    assert on_mp and on_mp <= chosen, sorted(on_mp - chosen)
    assert not [t for t in chosen if re.search(r"\[(.+-)?cpython(-.+)?\]$", t)]
    assert "tests/test_micropython_unit.py::test_pure_tests_pass_under_micropython" in chosen
    for module in ("test_board_firmware", "test_board_umqtt", "test_board_deploy"):
        every = {t for t in everything if t.startswith("tests/%s.py::" % module)}
        assert every and every <= chosen, module
