"""PES scans through the whole stack (job, pes extractor, predictions file, plot) and the
progress callback of the optimization task."""

from pathlib import Path

import numpy as np
import yaml
from ase import Atoms
from conftest import CUTOFF, TRUE_EPS, TRUE_RMIN, write_lj_problem

from parafit import DataSet, Job, JobCollection, PESScan, ScanCoordinate
from parafit.tasks import run_task


def _lj(r: np.ndarray, eps: float = TRUE_EPS, rmin: float = TRUE_RMIN) -> np.ndarray:
    shift = eps * ((rmin / CUTOFF) ** 12 - 2 * (rmin / CUTOFF) ** 6)
    return eps * ((rmin / r) ** 12 - 2 * (rmin / r) ** 6) - shift


def test_pes_scan_predictions_and_plot(tmp_path: Path) -> None:
    inp = write_lj_problem(
        tmp_path / "in",
        start=(TRUE_EPS, TRUE_RMIN),
        extra_config={"task": "single_point"},
    )
    jobs = JobCollection.load(tmp_path / "in/job_collection.yaml")
    values = (3.4, 3.6, 3.8, 4.0, 4.5, 5.0)
    trimer = Atoms("Ar3", positions=[[0, 0, 0], [3.8, 0, 0], [0, 3.8, 0]])
    jobs.add(
        Job(
            "scan",
            trimer,
            PESScan((ScanCoordinate("distance", (0, 1), values),), relaxed=False),
        )
    )
    jobs.save(tmp_path / "in/job_collection.yaml")
    ds = DataSet.load(tmp_path / "in/training_set.yaml")
    # reference: rigid scan of atom 1 along x; atom 2 stays, so all three pairs change only via d01, d12
    r = np.array(values)
    d12 = np.sqrt(r**2 + 3.8**2)
    energies = _lj(r) + _lj(d12) + _lj(np.full_like(r, 3.8))
    ds.add_entry("pes('scan')", energies - energies.min(), sigma=1e-3)
    ds.save(tmp_path / "in/training_set.yaml")
    result = run_task(inp, tmp_path / "out")
    assert result.training_loss < 1e-10
    d = tmp_path / "out/single_point/training_set_results"
    table = np.loadtxt(d / "pes_predictions/scan.txt")
    np.testing.assert_allclose(table[:, 0], values)
    np.testing.assert_allclose(table[:, 1], table[:, 2], atol=1e-9)
    assert (d / "pes_predictions/scan.png").exists()


def test_progress_events(tmp_path: Path) -> None:
    inp = write_lj_problem(tmp_path / "in", exit_conditions={"max_evaluations": 50})
    events = []
    run_task(inp, tmp_path / "out", progress=events.append)
    counts = [e.n_evaluations for e in events]
    assert counts == sorted(counts) and counts[-1] == 50
    assert all(e.max_evaluations == 50 for e in events)
    assert all(
        np.isfinite(e.best_loss) and e.evaluations_per_second > 0 for e in events
    )
    best = [e.best_loss for e in events]
    assert best == sorted(best, reverse=True)
    assert yaml.safe_load(inp.read_text())["task"] == "optimization"
