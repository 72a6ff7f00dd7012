"""Every benchmark script runs end to end in its quick mode (BENCH_QUICK=1). This proves the
scripts work; it asserts nothing about speed (the figures of a smoke run mean nothing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHES = ["roundtrip", "idle", "footprint", "fleet", "scale", "reconnect", "flood"]


@pytest.mark.timeout(600)  # a loaded machine stretches even the quick runs
@pytest.mark.parametrize("name", BENCHES)
def test_bench_script_runs_in_quick_mode(name: str, tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    env = dict(os.environ, BENCH_QUICK="1", BENCH_RESULTS=str(results))
    res = subprocess.run([sys.executable, str(ROOT / "bench" / ("bench_%s.py" % name))],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "target" in out, out[-3000:]
    rows = [ln for ln in results.read_text().splitlines() if ln.startswith("| 20")]
    assert len(rows) == 1, results.read_text()
    assert "cores" in rows[0]  # the machine description is in the row


def test_simulate_rejects_bad_arguments() -> None:
    res = subprocess.run([sys.executable, "-m", "tools.simulate", "--provisioned", "/nonexistent",
                          "--baskets", "0"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 2
    assert "--baskets" in res.stderr
