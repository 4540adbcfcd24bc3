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


def test_fit_reaxff_prepares_a_frozen_prefit_and_a_second_stage(
    tmp_path: Path, shared_data: Path
) -> None:
    """The two input files of ``fit_reaxff.py --frozen-prefit`` load and differ as meant."""
    sys.path.insert(0, str(BENCHMARKS[0].parent))
    try:
        import fit_reaxff
    finally:
        sys.path.pop(0)
    from parafit.config import load_config
    from parafit.parameters import ParameterInterface

    exits = {"max_evaluations": 10}
    first = fit_reaxff.prepare(
        "cobalt",
        tmp_path,
        {"type": "cma"},
        exits,
        frozen_geometries=True,
        filename="prefit.yaml",
        seed=3,
    )
    config = load_config(first)
    assert config.frozen_geometries and config.seed == 3
    # stage 2 starts from the first stage's best interface, with relaxations
    start = ParameterInterface.load(tmp_path / "parameter_interface.yaml")
    name = start.active_names[0]
    low, high = start[name].range
    start.replace(name, value=0.5 * (low + high)).save(tmp_path / "prefit_best.yaml")
    second = fit_reaxff.prepare(
        "cobalt",
        tmp_path,
        {"type": "l-bfgs-b"},
        exits,
        interface_path=tmp_path / "prefit_best.yaml",
    )
    assert not load_config(second).frozen_geometries
    used = ParameterInterface.load(tmp_path / "parameter_interface.yaml")
    assert used[name].value == 0.5 * (low + high)
