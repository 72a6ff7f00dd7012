"""Packaging: one version (mqtt_controller/__init__.py) that pyproject.toml and package.json
share, a console script for the service and for every host tool with a main(), no sys.path or
PYTHONPATH tricks left for the install to make unneeded, `make help` naming every target, and
manifest.py freezing the package's files as the folder holds them (esp32 and the unix port)."""

from __future__ import annotations

import ast
import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import tomllib

import basket_service
import mqtt_controller
from tools import deploy

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
SCRIPTS: dict[str, str] = PROJECT["scripts"]


def board_version() -> str:
    """The version as the board has it: a literal in mqtt_controller/__init__.py."""
    tree = ast.parse((ROOT / "mqtt_controller" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [
                "__version__"]:
            assert isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            return node.value.value
    raise AssertionError("mqtt_controller/__init__.py has no __version__ literal")


def test_one_version_everywhere() -> None:
    version = board_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "mqtt_controller.__version__"}
    assert json.loads((ROOT / "package.json").read_text())["version"] == version
    assert mqtt_controller.__version__ == basket_service.__version__ == version


def test_dependencies_are_ranges_and_cover_the_service_pins() -> None:
    pinned = set()
    for line in (ROOT / "requirements-service.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert "==" in line, line
            pinned.add(line.split("==")[0].lower())
    declared = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower(): d for d in PROJECT["dependencies"]}
    assert pinned <= set(declared), pinned - set(declared)
    assert not [d for d in declared.values() if "==" in d], "pins belong in requirements-*.txt"
    assert PROJECT["requires-python"] == ">=3.11"


def test_every_tool_with_a_main_has_a_console_script() -> None:
    targets = set(SCRIPTS.values())
    assert SCRIPTS["basket-service"] == "basket_service.cli:main"
    for path in sorted((ROOT / "tools").glob("*.py")):
        if path.name != "__init__.py" and re.search(r"^def main\(", path.read_text(), re.M):
            assert "tools.%s:main" % path.stem in targets, path.name
    for name, target in SCRIPTS.items():
        assert name.startswith("basket-"), name
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), target


def test_packages_cover_what_the_scripts_import() -> None:
    packages = set(PYPROJECT["tool"]["setuptools"]["packages"])
    for directory in ("mqtt_controller", "basket_service", "tools"):
        for init in (ROOT / directory).rglob("__init__.py"):
            assert ".".join(init.parent.relative_to(ROOT).parts) in packages, init
    assert {t.split(":")[0].rsplit(".", 1)[0] for t in SCRIPTS.values()} <= packages


def test_no_path_tricks_left() -> None:
    """The tools import the project as installed (or with the repository root as the working
    directory, `python -m tools.<name>`); the Makefile runs them that way."""
    for path in sorted((ROOT / "tools").glob("*.py")):
        assert "sys.path" not in path.read_text(), path.name
    makefile = (ROOT / "Makefile").read_text()
    assert "PYTHONPATH" not in makefile
    assert not re.search(r"\$\(PY\) tools/", makefile), "run tools as `$(PY) -m tools.<name>`"


def makefile_targets() -> set[str]:
    """Every rule a user can name: plain `name:` lines (not variables, files or patterns)."""
    text = (ROOT / "Makefile").read_text()
    found = set(re.findall(r"^([a-z][a-z0-9-]*)\s*:(?!=)", text, re.M))
    phony = set(" ".join(re.findall(r"^\.PHONY:((?:.*\\\n)*.*)", text, re.M))
                .replace("\\", " ").split())
    assert found == phony, ("rules not in .PHONY", found - phony, ".PHONY without a rule",
                            phony - found)
    return found


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_target() -> None:
    out = subprocess.run(["make", "--no-print-directory", "-s", "help"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    named = set(re.findall(r"\bmake ([a-z][a-z0-9-]*)", out))
    targets = makefile_targets()
    assert targets - named == set(), "missing from `make help`: %s" % sorted(targets - named)
    assert named - targets == set(), "`make help` names no such target: %s" % sorted(
        named - targets)


class FakeManifestTool:
    """What MicroPython's manifest tool gives manifest.py: include() and package(), bound to the
    object that keeps the path variables."""

    def __init__(self, port_dir: Path) -> None:
        self._path_vars = {"PORT_DIR": str(port_dir), "MPY_DIR": "/mp"}
        self.included: list[str] = []
        self.packages: list[tuple[str, tuple[str, ...], str, int | None]] = []

    def include(self, path: str) -> None:
        self.included.append(path)

    def package(self, name: str, files: tuple[str, ...] = (), base_path: str = ".",
                opt: int | None = None) -> None:
        self.packages.append((name, files, base_path, opt))


def run_manifest(port_dir: Path, monkeypatch: pytest.MonkeyPatch) -> FakeManifestTool:
    tool = FakeManifestTool(port_dir)
    monkeypatch.chdir(ROOT)  # the manifest tool runs a manifest in its own folder
    exec(compile((ROOT / "manifest.py").read_text(), "manifest.py", "exec"),
         {"include": tool.include, "package": tool.package})
    return tool


@pytest.mark.parametrize("port", ["esp32", "unix"])
def test_manifest_freezes_the_package_from_its_folder(port: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    own = "boards/manifest.py" if port == "esp32" else "variants/standard/manifest.py"
    (tmp_path / own).parent.mkdir(parents=True)
    (tmp_path / own).write_text("")
    tool = run_manifest(tmp_path, monkeypatch)
    assert tool.included == ["$(PORT_DIR)/" + own]
    [(name, files, base, opt)] = tool.packages
    assert (name, base, opt) == ("mqtt_controller", ".", 3)
    every = sorted(p.name for p in (ROOT / "mqtt_controller").glob("*.py"))
    board = sorted(dst.split("/", 1)[1] for _, dst in deploy.board_files()
                   if dst.startswith("mqtt_controller/"))
    assert board == sorted(set(every) - deploy.NOT_ON_BOARD)
    assert sorted(files) == (board if port == "esp32" else every)


def test_manifest_without_the_tools_path_variables_freezes_for_a_board(
        monkeypatch: pytest.MonkeyPatch) -> None:
    included: list[str] = []
    frozen: list[tuple[str, ...]] = []
    monkeypatch.chdir(ROOT)
    exec(compile((ROOT / "manifest.py").read_text(), "manifest.py", "exec"),
         {"include": included.append, "package": lambda name, files, **kw: frozen.append(files)})
    assert included == ["$(PORT_DIR)/boards/manifest.py"]
    assert ["mqtt_controller/" + f for f in frozen[0]] == [
        dst for _, dst in deploy.board_files() if dst.startswith("mqtt_controller/")]


def test_manifest_names_a_port_it_cannot_freeze_for(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match="neither boards/manifest.py .* nor "
                                           "variants/standard/manifest.py"):
        run_manifest(tmp_path, monkeypatch)
