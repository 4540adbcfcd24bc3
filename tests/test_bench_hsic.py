"""``benchmarks/bench_hsic.py --quick`` runs, checks itself and reports every target.

No timings are asserted: the quick sizes say nothing about speed.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_hsic.py"
RESULTS = SCRIPT.parent / "results" / "cpu.jsonl"


def _run_quick(env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _records(stdout: str) -> dict[str, dict]:
    lines = (json.loads(line) for line in stdout.splitlines() if line.startswith("{"))
    return {rec["name"]: rec for rec in lines}


def _no_quick_record_appended() -> None:
    if not RESULTS.exists():
        return
    for line in RESULTS.read_text().splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            assert not (rec["name"].startswith("hsic_") and rec.get("quick")), rec


def test_bench_hsic_quick() -> None:
    out = _run_quick()
    assert out.returncode == 0, out.stderr
    records = _records(out.stdout)
    assert set(records) == {"hsic_large", "hsic_seed_sized", "hsic_vs_openturns"}
    assert all(rec["quick"] is True for rec in records.values())

    large = records["hsic_large"]
    assert (large["n_samples"], large["n_params"]) == (500, 20)
    assert large["max_rel_diff_vs_direct"] < 1e-10
    assert large["tracemalloc_peak_mib"] > 0
    assert "target < 15 s" in out.stdout
    assert "target < 2000 MiB" in out.stdout
    assert "target best < 100 ms" in out.stdout

    ot = records["hsic_vs_openturns"]
    if importlib.util.find_spec("openturns") is None:
        assert "skipped" in ot
        assert "skipped: openturns is not installed" in out.stdout
    else:
        assert ot["max_rel_diff"] < 1e-8
        assert ot["ratio"] > 0
        assert "ratio" in out.stdout and "target >= 50x" in out.stdout
        assert "max relative difference" in out.stdout
    _no_quick_record_appended()


def test_bench_hsic_quick_without_openturns(tmp_path: Path) -> None:
    """With openturns not importable (as in CI) the comparison is skipped, clearly."""
    blocker = tmp_path / "openturns"
    blocker.mkdir()
    (blocker / "__init__.py").write_text(
        'raise ImportError("openturns hidden by the test")\n'
    )
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    out = _run_quick(env)
    assert out.returncode == 0, out.stderr
    ot = _records(out.stdout)["hsic_vs_openturns"]
    assert ot["skipped"] == "openturns is not installed"
    assert ot["machine"]["openturns"] is None
    assert "hsic_vs_openturns    skipped: openturns is not installed" in out.stdout
    assert "target < 15 s" in out.stdout
    _no_quick_record_appended()
