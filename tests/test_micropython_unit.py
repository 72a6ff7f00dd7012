"""Runs every pure test module under the MicroPython unix port as well (the venv's, or
`MICROPYTHON=/path`; with `MICROPYTHON_FROZEN=1` against the package frozen into that build)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.process import MICROPYTHON, MP_FROZEN, ROOT, clean_env, mp_path


def test_pure_tests_pass_under_micropython(tmp_path: Path) -> None:
    # A scratch folder as the working directory: nothing of the checkout is found through it.
    env = clean_env(MICROPYPATH=mp_path(), MICROPYTHON_FROZEN="1" if MP_FROZEN else "0")
    proc = subprocess.run([MICROPYTHON, str(ROOT / "tests" / "mp_runner.py")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    m = re.search(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", out, re.M)
    assert m, out
    passed, failed = int(m.group(1)), int(m.group(2))
    print(out.splitlines()[-1])
    assert failed == 0 and proc.returncode == 0, out
    # Every pure test function must have run there (none silently lost to an import error).
    expected = sum(len(re.findall(r"^def test_", p.read_text(), re.M))
                   for p in (ROOT / "tests" / "unit").glob("test_*.py"))
    assert passed + int(m.group(3)) == expected, out
    # ... against the package it was meant to test.
    origin = re.search(r"^package: (.*) \((file|frozen)\)$", out, re.M)
    assert origin, out
    assert origin.group(2) == ("frozen" if MP_FROZEN else "file"), out
    if not MP_FROZEN:
        assert Path(origin.group(1)).resolve() == ROOT / "mqtt_controller" / "__init__.py", out
