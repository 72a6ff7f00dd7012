"""Runs every pure test module under the MicroPython unix port as well."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MICROPYTHON = str(Path(sys.executable).parent / "micropython")


def test_pure_tests_pass_under_micropython() -> None:
    proc = subprocess.run([MICROPYTHON, "tests/mp_runner.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
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
