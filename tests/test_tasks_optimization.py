"""End-to-end optimization runs on a small LJ argon problem (engine, data set, loss,
optimizers, recorder, checkpoints), through the Python API."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from conftest import TRUE_EPS, TRUE_RMIN, write_lj_problem

from parafit.errors import ResultsError
from parafit.parameters import ParameterInterface
from parafit.recorder import read_evaluations, read_running_loss
from parafit.tasks import run_task


def test_parameter_recovery_to_1e4_relative(tmp_path: Path) -> None:
    inp = write_lj_problem(
        tmp_path / "in",
        start=(0.0092, 3.98),
        optimizers=[{"type": "cma", "sigma0": 0.25, "tolfun": 1e-22, "tolx": 1e-14}],
        exit_conditions={"max_evaluations": 2500},
    )
    result = run_task(inp, tmp_path / "out")
    eps = result.interface["Ar.Ar:eps"].value
    rmin = result.interface["Ar.Ar:rmin"].value
    assert abs(eps / TRUE_EPS - 1) < 1e-4
    assert abs(rmin / TRUE_RMIN - 1) < 1e-4
    best = ParameterInterface.load(
        tmp_path / "out/optimization/training_set_results/best/parameter_interface.yaml"
    )
    assert best["Ar.Ar:eps"].value == pytest.approx(eps, rel=1e-12)


def test_results_layout(tmp_path: Path) -> None:
    inp = write_lj_problem(tmp_path / "in", exit_conditions={"max_evaluations": 60})
    result = run_task(inp, tmp_path / "out")
    opt = tmp_path / "out" / "optimization"
    train = opt / "training_set_results"
    assert (tmp_path / "out/settings_and_initial_data/parafit.yaml").exists()
    for name in (
        "running_loss.txt",
        "running_active_parameters.txt",
        "running_stats.txt",
    ):
        assert (train / name).exists(), name
    for kind in ("initial", "best", "latest"):
        for name in (
            "parameter_interface.yaml",
            "loss.txt",
            "stats.txt",
            "data_set_predictions.yaml",
        ):
            assert (train / kind / name).exists(), (kind, name)
    assert (train / "best" / "scatter_energy.png").exists()
    assert (train / "best" / "scatter_forces.png").exists()
    assert (opt / "loss.png").exists()
    ev, loss = read_running_loss(train / "running_loss.txt")
    assert ev.tolist() == list(range(result.n_evaluations))
    assert result.n_evaluations == 60
    assert np.nanmin(loss) == pytest.approx(result.best_loss)
    with h5py.File(opt / "evaluations.h5") as f:
        assert f["evaluation"].shape == (60,)
        assert f["active_values"].shape == (60, 2)
        assert list(f.attrs["active_names"]) == ["Ar.Ar:eps", "Ar.Ar:rmin"]
    params = np.loadtxt(train / "running_active_parameters.txt")
    assert params.shape == (60, 3)
    header = (train / "running_stats.txt").read_text().splitlines()[0]
    assert "energy_mae" in header and "forces_rmse" in header


def test_existing_results_are_not_overwritten(tmp_path: Path) -> None:
    inp = write_lj_problem(tmp_path / "in", exit_conditions={"max_evaluations": 10})
    run_task(inp, tmp_path / "out")
    with pytest.raises(ResultsError, match="--overwrite"):
        run_task(inp, tmp_path / "out")
    run_task(inp, tmp_path / "out", overwrite=True)


def test_resume_continues_counter_and_keeps_best(tmp_path: Path) -> None:
    inp = write_lj_problem(
        tmp_path / "in",
        exit_conditions={"max_evaluations": 40},
        extra_config={"checkpoint": {"every_seconds": 0}},
    )
    first = run_task(inp, tmp_path / "out")
    assert first.n_evaluations == 40
    cfg = yaml.safe_load(inp.read_text())
    cfg["exit_conditions"]["max_evaluations"] = 90
    inp.write_text(yaml.safe_dump(cfg))
    second = run_task(inp, tmp_path / "out", resume=True)
    assert second.n_evaluations == 90
    assert second.best_loss <= first.best_loss
    ev, _ = read_running_loss(
        tmp_path / "out/optimization/training_set_results/running_loss.txt"
    )
    assert ev.tolist() == list(range(90))
    data = read_evaluations(tmp_path / "out/optimization")
    assert data["evaluation"].tolist() == list(range(90))


def test_validation_set_and_early_stopping(tmp_path: Path) -> None:
    from parafit.dataset import DataSet

    inp = write_lj_problem(tmp_path / "in", exit_conditions={"max_evaluations": 400})
    train = DataSet.load(tmp_path / "in/training_set.yaml")
    val = DataSet(entries=[e for e in train if "cluster13" in e.expression])
    val.save(tmp_path / "in/validation_set.yaml")
    cfg = yaml.safe_load(inp.read_text())
    cfg["validation_set"] = {
        "path": "validation_set.yaml",
        "every": 5,
        "early_stopping_patience": 40,
    }
    inp.write_text(yaml.safe_dump(cfg))
    result = run_task(inp, tmp_path / "out")
    vdir = tmp_path / "out/optimization/validation_set_results"
    ev, vloss = read_running_loss(vdir / "running_loss.txt")
    assert len(ev) >= 2 and np.all(np.diff(ev) > 0)
    assert result.best_validation_loss == pytest.approx(np.min(vloss))
    assert (vdir / "best" / "data_set_predictions.yaml").exists()
    assert (vdir / "initial" / "stats.txt").exists()
    if "early_stopping" in result.stop_reasons:
        assert result.n_evaluations < 400


def test_scipy_and_sampling_and_several_optimizers_at_once(tmp_path: Path) -> None:
    inp = write_lj_problem(
        tmp_path / "in",
        optimizers=[
            {"type": "scipy", "method": "Nelder-Mead"},
            {"type": "lhs", "n_samples": 40, "batch_size": 8},
            {"type": "random", "n_samples": 24, "batch_size": 8},
        ],
        exit_conditions={"max_evaluations": 150},
    )
    result = run_task(inp, tmp_path / "out")
    data = read_evaluations(tmp_path / "out/optimization")
    owners = set(data["optimizer"].tolist())
    assert {-1, 0, 1, 2} <= owners
    assert result.n_evaluations <= 150
    assert (
        "all_optimizers_stopped" in result.stop_reasons or result.n_evaluations == 150
    )
    assert result.best_loss < data["training_loss"][0]


def test_lbfgsb_with_batched_fd_gradient(tmp_path: Path) -> None:
    inp = write_lj_problem(
        tmp_path / "in",
        start=(0.0098, 3.9),
        optimizers=[{"type": "scipy", "method": "L-BFGS-B"}],
        exit_conditions={"max_evaluations": 300},
    )
    result = run_task(inp, tmp_path / "out")
    assert abs(result.interface["Ar.Ar:rmin"].value / TRUE_RMIN - 1) < 1e-3


def test_target_loss_and_time_limit(tmp_path: Path) -> None:
    inp = write_lj_problem(
        tmp_path / "in", exit_conditions={"target_loss": 1e9, "max_evaluations": 1000}
    )
    result = run_task(inp, tmp_path / "out")
    assert "target_loss" in result.stop_reasons
    assert result.n_evaluations < 50
    inp2 = write_lj_problem(
        tmp_path / "in2",
        optimizers=[{"type": "random", "n_samples": 10**7, "batch_size": 16}],
        exit_conditions={"time_limit": 0.5},
    )
    result2 = run_task(inp2, tmp_path / "out2")
    assert "time_limit" in result2.stop_reasons


def test_constraints_make_violating_points_infinite(tmp_path: Path) -> None:
    inp = write_lj_problem(
        tmp_path / "in",
        optimizers=[{"type": "random", "n_samples": 60, "batch_size": 20}],
        exit_conditions={"max_evaluations": 61},
        extra_config={"constraints": ["p['Ar.Ar:rmin'] < 3.85"]},
    )
    run_task(inp, tmp_path / "out")
    data = read_evaluations(tmp_path / "out/optimization")
    rmin = data["active_values"][:, 1]
    loss = data["training_loss"]
    assert np.all(np.isinf(loss[rmin >= 3.85]))
    assert np.all(np.isfinite(loss[rmin < 3.85]))


def test_parallel_workers_give_the_same_losses(tmp_path: Path) -> None:
    common = dict(
        optimizers=[{"type": "random", "n_samples": 32, "batch_size": 16}],
        exit_conditions={"max_evaluations": 33},
    )
    serial = write_lj_problem(tmp_path / "s", **common)
    parallel = write_lj_problem(
        tmp_path / "p", **common, extra_config={"parallel": {"workers": 2}}
    )
    run_task(serial, tmp_path / "out_s")
    run_task(parallel, tmp_path / "out_p")
    a = read_evaluations(tmp_path / "out_s/optimization")
    b = read_evaluations(tmp_path / "out_p/optimization")
    np.testing.assert_allclose(a["training_loss"], b["training_loss"], rtol=1e-12)


def test_engine_failure_gives_infinite_loss_and_run_goes_on(tmp_path: Path) -> None:
    """rmin ranges crossing zero make the LJ engine fail for some vectors."""
    from parafit.parameters import Parameter

    inp = write_lj_problem(
        tmp_path / "in",
        optimizers=[{"type": "random", "n_samples": 40, "batch_size": 10}],
        exit_conditions={"max_evaluations": 41},
    )
    iface = ParameterInterface(
        [
            Parameter("Ar.Ar:eps", 0.01, range=(0.008, 0.013)),
            Parameter("Ar.Ar:rmin", 3.8, range=(-1.0, 4.2)),
        ]
    )
    iface.save(tmp_path / "in/parameter_interface.yaml")
    result = run_task(inp, tmp_path / "out")
    data = read_evaluations(tmp_path / "out/optimization")
    assert result.n_evaluations == 41
    bad = data["active_values"][:, 1] <= 0
    assert bad.any()
    assert np.all(np.isinf(data["training_loss"][bad]))
    assert np.isfinite(result.best_loss)


def test_single_point_task(tmp_path: Path) -> None:
    inp = write_lj_problem(
        tmp_path / "in",
        start=(TRUE_EPS, TRUE_RMIN),
        extra_config={"task": "single_point"},
    )
    result = run_task(inp, tmp_path / "out")
    assert result.training_loss < 1e-12
    d = tmp_path / "out/single_point/training_set_results"
    assert (d / "stats.txt").exists() and (d / "scatter_energy.png").exists()


def test_frozen_geometries_run_relaxations_as_single_points(tmp_path: Path) -> None:
    """``frozen_geometries: true`` scores a relaxation job at its input geometry."""
    from dataclasses import replace

    from parafit.jobs import GeometryOptimization, JobCollection

    losses = {}
    for frozen in (False, True):
        inp = write_lj_problem(
            tmp_path / f"in_{frozen}",
            start=(TRUE_EPS, TRUE_RMIN),
            extra_config={"task": "single_point", "frozen_geometries": frozen},
        )
        path = inp.parent / "job_collection.yaml"
        jobs = JobCollection.load(path)
        relaxing = JobCollection(
            replace(j, task=GeometryOptimization(max_iterations=50, fmax=1e-4))
            if j.id == "trimer"
            else j
            for j in jobs
        )
        relaxing.save(path)
        losses[frozen] = run_task(inp, tmp_path / f"out_{frozen}").training_loss
    # the references are the input geometries' energies and forces: relaxing the
    # trimer moves it away from them, freezing it reproduces them
    assert losses[False] > 1.0
    assert losses[True] < 1e-12
