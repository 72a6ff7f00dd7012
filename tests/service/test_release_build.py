"""`release add` (docs/ota.md, "Releasing"), the command line as a process: exactly the
basket's file set (tools/deploy.py's board_files) as .py and as .mpy, the manifest's lines,
sizes and hashes, the version patched into the release's copy, the .mpy files loaded by
MicroPython, and the refusals (an existing version, a bad name, a DIR without the package,
mpy-cross missing or failing) that never leave a half release behind."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from basket_service import releases
from tests.support import process
from tests.support.service_proc import cli
from tools import deploy

ROOT = Path(__file__).resolve().parents[2]
# The interpreters a release is loaded with: $MICROPYTHON (a 32-bit `make firmware-unix`
# build, the board's word size), the venv's unix port, and this workplace's 32-bit build.
MP32 = Path("/work/mpsrc/micropython/ports/unix/build-32/micropython")
MICROPYTHON = list(dict.fromkeys(str(p) for p in (Path(process.MICROPYTHON), MP32,
                                                  Path(sys.executable).parent / "micropython")
                                 if p.exists()))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No broker needed: `release add` only writes RELEASE_DIR."""
    out = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "RELEASE_DIR", "RELEASE_URL", "OTA_KEYS_FILE",
                        "MPY_CROSS")}
    out.update({"BASKET_DB": str(tmp_path / "basket.db"),
                "RELEASE_DIR": str(tmp_path / "releases")})
    return out


def manifest_lines(release: Path) -> list[str]:
    data = (release / "manifest.txt").read_bytes()
    assert b"\r" not in data and data.endswith(b"\n")
    assert len(data) <= releases.MAX_MANIFEST
    return data.decode("utf-8").split("\n")[:-1]


def test_release_add_builds_the_board_file_set(env, tmp_path):
    r = cli(env, "release", "add", "--version", "2.0.0-rc.1+ota")
    assert r.returncode == 0, r.stderr
    rel = tmp_path / "releases" / "2.0.0-rc.1+ota"
    assert "release 2.0.0-rc.1+ota built in %s" % rel in r.stdout
    lines = manifest_lines(rel)
    assert lines[:2] == ["smart-basket-release 1", "version 2.0.0-rc.1+ota"]
    files = [ln.split(" ") for ln in lines[2:]]
    assert all(f[0] == "file" and len(f) == 5 for f in files)
    assert len([f for f in files if f[1] == "py"]) <= releases.MAX_FILE_LINES  # per flavour
    # Exactly `make deploy-list` (py) and `deploy-list MPY=1` (mpy), in that order.
    want_py = [dst for _, dst in deploy.board_files(mpy=False)]
    want_mpy = [dst for _, dst in deploy.board_files(mpy=True)]
    assert [f[4] for f in files if f[1] == "py"] == want_py
    assert [f[4] for f in files if f[1] == "mpy"] == want_mpy
    assert [f[1] for f in files] == ["py"] * len(want_py) + ["mpy"] * len(want_mpy)
    assert "config.json" not in want_py and "mqtt_controller/__main__.py" not in want_py
    assert "mqtt_controller/helptext.py" not in want_py
    # Sizes and hashes are the files' own; the folders hold nothing else.
    for _, flavour, size, sha, path in files:
        data = (rel / flavour / path).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (int(size), sha), path
        assert releases.valid_path(path) and len(data) <= releases.MAX_FILE
    on_disk = sorted(str(p.relative_to(rel)) for p in rel.rglob("*") if p.is_file())
    assert on_disk == sorted(["manifest.txt"] + ["%s/%s" % (f[1], f[4]) for f in files])
    # The sources are the checkout's, but __init__.py names the release's version.
    for path in want_py:
        got = (rel / "py" / path).read_text()
        if path == "mqtt_controller/__init__.py":
            assert re.search(r'^__version__ = "2\.0\.0-rc\.1\+ota"$', got, re.M), got
            assert got.count("__version__ =") == 1
        else:
            assert got == (ROOT / path).read_text(), path
    assert (rel / "mpy" / "boot.py").read_bytes() == (ROOT / "boot.py").read_bytes()
    for path in want_mpy:
        if path.endswith(".mpy"):
            head = (rel / "mpy" / path).read_bytes()[:4]
            assert head[:2] == b"M\x06" and head[3] == 31, (path, head)  # mpy v6, 31-bit ints
    # Files read-only for others; no build folder left behind.
    assert oct(os.stat(rel / "manifest.txt").st_mode & 0o777) == "0o644"
    assert [p.name for p in (tmp_path / "releases").iterdir()] == ["2.0.0-rc.1+ota"]
    listed = cli(env, "release", "list")
    assert listed.returncode == 0 and listed.stdout.split() == ["2.0.0-rc.1+ota"]


@pytest.mark.skipif(not MICROPYTHON, reason="no MicroPython unix build")
@pytest.mark.parametrize("flavour", ["mpy", "py"])
def test_the_release_loads_on_micropython_and_reports_its_version(env, tmp_path, flavour):
    assert cli(env, "release", "add", "--version", "7.1").returncode == 0
    code = ("import sys\nsys.path.insert(0, %r)\nimport mqtt_controller, mqtt_controller.cart,"
            " mqtt_controller.protocol\nprint(mqtt_controller.__version__,"
            " mqtt_controller.cart.__file__)\n" % str(tmp_path / "releases" / "7.1" / flavour))
    for mp in MICROPYTHON:  # the 32-bit build (the board's word size) and the 64-bit one
        out = subprocess.run([mp, "-c", code], capture_output=True, text=True, timeout=30,
                             cwd=tmp_path)
        assert out.returncode == 0, (mp, out.stderr)
        version, where = out.stdout.split()
        assert version == "7.1" and where.endswith("/7.1/%s/mqtt_controller/cart.%s"
                                                   % (flavour, flavour)), out.stdout


def test_release_add_refusals_leave_nothing_behind(env, tmp_path):
    releases_dir = tmp_path / "releases"
    assert cli(env, "release", "add", "--version", "1.0").returncode == 0
    before = (releases_dir / "1.0" / "manifest.txt").read_bytes()

    again = cli(env, "release", "add", "--version", "1.0")
    assert again.returncode == 1 and "release 1.0 exists already" in again.stderr, again.stderr
    assert (releases_dir / "1.0" / "manifest.txt").read_bytes() == before

    for bad in (".hidden", "a/b", "x" * 33, "..", "sp ace", ""):
        r = cli(env, "release", "add", "--version", bad)
        assert r.returncode == 2 and "--version must be" in r.stderr, (bad, r.stderr)
        assert "Traceback" not in r.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli(env, "release", "add", "--version", "2.0", "--from", str(empty))
    assert r.returncode == 1 and "holds no basket package" in r.stderr, r.stderr

    r = cli(dict(env, MPY_CROSS=str(tmp_path / "no-such-mpy-cross")), "release", "add",
            "--version", "2.0")
    assert r.returncode == 1 and "MPY_CROSS" in r.stderr and "not an executable" in r.stderr

    # mpy-cross failing half-way: no release 2.0, no build folder.
    failing = tmp_path / "mpy-cross-fails"
    failing.write_text("#!/bin/sh\necho 'boom: out of memory' >&2\nexit 1\n")
    failing.chmod(0o755)
    r = cli(dict(env, MPY_CROSS=str(failing)), "release", "add", "--version", "2.0")
    assert r.returncode == 1 and "mpy-cross failed" in r.stderr and "boom" in r.stderr
    assert sorted(p.name for p in releases_dir.iterdir()) == ["1.0"]
    assert "Traceback" not in r.stderr


def test_mpy_cross_is_found_beside_python_or_on_path(monkeypatch, tmp_path):
    monkeypatch.delenv("MPY_CROSS", raising=False)
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.exists():
        assert releases.find_mpy_cross() == str(beside)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(releases.ReleaseError, match="mpy-cross not found next to"):
        releases.find_mpy_cross()
    (tmp_path / "mpy-cross").write_text("#!/bin/sh\n")
    (tmp_path / "mpy-cross").chmod(0o755)
    assert releases.find_mpy_cross() == str(tmp_path / "mpy-cross")


def test_release_from_another_checkout(env, tmp_path):
    """--from DIR: DIR's files (the same rule as board_files), not this checkout's."""
    other = tmp_path / "other"
    other.mkdir()
    for name in ("boot.py", "main.py"):
        shutil.copy(ROOT / name, other / name)
    shutil.copytree(ROOT / "mqtt_controller", other / "mqtt_controller",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (other / "mqtt_controller" / "cart.py").write_text(
        (ROOT / "mqtt_controller" / "cart.py").read_text() + "\nFIXED = 1\n")
    (other / "mqtt_controller" / "helptext.py").unlink()
    r = cli(env, "release", "add", "--version", "1.0.1", "--from", str(other))
    assert r.returncode == 0, r.stderr
    rel = tmp_path / "releases" / "1.0.1"
    assert (rel / "py" / "mqtt_controller" / "cart.py").read_text().endswith("FIXED = 1\n")
    paths = [ln.split(" ")[4] for ln in manifest_lines(rel)[2:]]
    assert "mqtt_controller/__main__.py" not in paths and "mqtt_controller/cart.mpy" in paths
    assert releases.file_set(other) == releases.file_set(ROOT)  # the rule is board_files'
