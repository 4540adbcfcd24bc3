"""Every benchmark script runs in --quick mode, so the scripts do not rot."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted(
    (Path(__file__).resolve().parents[1] / "benchmarks").glob("bench_*.py")
)


@pytest.mark.slow
@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_benchmark_runs_quick(script: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(script), "--quick"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    lines = [
        json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")
    ]
    assert lines and all("name" in rec for rec in lines)
