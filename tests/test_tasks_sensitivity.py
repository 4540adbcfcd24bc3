"""Sensitivity task end to end on a Lennard-Jones problem (real engine, real files).

The engine knows Ar and Ne, but the data set has only argon structures: the two
Ar-Ar parameters must rank first and the four Ne parameters must get (almost) no
sensitivity.
"""

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CUTOFF, write_lj_problem
from typer.testing import CliRunner

from parafit.cli import app
from parafit.config import load_config
from parafit.dataset import DataSet
from parafit.engines.lj import LJEngine
from parafit.errors import ConfigError, InputError, ResultsError
from parafit.parameters import ParameterInterface
from parafit.sensitivity import HSICResult
from parafit.sensitivity.samples import load_samples
from parafit.tasks import run_task
from parafit.tasks import sensitivity as task

SENS = {
    "number_samples": 400,
    "samples_per_repeat": 200,
    "repeats": 3,
    "batch_size": 60,
    "save_residuals": True,
}


def write_problem(directory: Path, **sens: object) -> Path:
    path = write_lj_problem(
        directory,
        extra_config={
            "task": "sensitivity",
            "engine": {
                "type": "lj",
                "elements": ["Ar", "Ne"],
                "cutoff": CUTOFF,
                "shift": True,
            },
            "sensitivity": {**SENS, **sens},
        },
        forces=False,
    )
    iface = LJEngine(["Ar", "Ne"]).default_interface(
        values={"Ar.Ar:eps": 0.0104, "Ar.Ar:rmin": 3.82}
    )
    iface = iface.replace("Ar.Ar:eps", range=(0.009, 0.012))
    iface = iface.replace("Ar.Ar:rmin", range=(3.7, 3.95))
    iface.save(directory / "parameter_interface.yaml")
    return path


@pytest.fixture(scope="module")
def sampled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, object]:
    base = tmp_path_factory.mktemp("sens")
    inp = write_problem(base / "inputs")
    out = base / "results"
    run = run_task(inp, out)
    return inp, out, run


def test_sampling_run_ranks_argon_parameters_first(sampled) -> None:
    _, out, run = sampled
    assert run.n_engine_evaluations == 400
    order = run.result.get_ordered_parameters()
    assert set(order[:2]) == {"Ar.Ar:eps", "Ar.Ar:rmin"}
    mean = dict(zip(run.result.labels, run.result.sensitivity_mean, strict=True))
    assert mean["Ar.Ar:eps"] + mean["Ar.Ar:rmin"] > 0.8
    for name in run.result.labels:
        if "Ne" in name:
            assert mean[name] < 0.1
    assert run.result.groups[0] in ("Ar.Ar LJ", "Ar.Ne LJ", "Ne.Ne LJ")


def test_results_layout(sampled) -> None:
    _, out, run = sampled
    opt = out / "sampling_results" / "optimization"
    assert (opt / "evaluations.h5").is_file()
    assert (opt / "training_set_results" / "running_loss.txt").is_file()
    assert (opt / "training_set_results" / "best" / "loss.txt").is_file()
    sens = out / "sensitivity"
    for name in (
        "calculation_result.npz",
        "parameter_interface_with_sensitivities.yaml",
        "sensitivity_summary.txt",
        "sensitivity_per_parameter.png",
        "sensitivity_summary.png",
    ):
        assert (sens / name).is_file(), name
    with np.load(sens / "calculation_result.npz", allow_pickle=False) as data:
        for key in (
            "labels",
            "x_bounds",
            "hsic",
            "sensitivities",
            "sensitivity_mean",
            "sensitivity_std",
            "n_samples",
            "samples_per_repeat",
            "repeats",
            "seed",
            "kernel_x",
            "kernel_y",
            "estimator",
            "normalization",
        ):
            assert key in data.files, key
        assert data["hsic"].shape == (3, 6)
        np.testing.assert_allclose(
            data["x_bounds"][list(data["labels"]).index("Ar.Ar:rmin")], [3.7, 3.95]
        )
    iface = ParameterInterface.load(
        sens / "parameter_interface_with_sensitivities.yaml"
    )
    assert all(p.sensitivity is not None for p in iface)
    summary = (sens / "sensitivity_summary.txt").read_text()
    assert "repeats:            3 x 200 samples" in summary
    assert "exp(-(a-b)^2 / (2*0.3^2))" in summary
    assert HSICResult.load(out).get_ordered_parameters() == (
        run.result.get_ordered_parameters()
    )


def analysis_only(directory: Path, samples: Path, **sens: object) -> Path:
    """An input file with nothing but the samples directory (no engine, no jobs)."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = {
        "task": "sensitivity",
        "sensitivity": {
            "run_sampling": False,
            "samples_directory": str(samples),
            "repeats": 4,
            "samples_per_repeat": 100,
            **sens,
        },
    }
    path = directory / "parafit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_reanalysis_runs_no_engine_and_needs_no_inputs(sampled, tmp_path) -> None:
    _, out, first = sampled
    inp = analysis_only(
        tmp_path / "in",
        out,
        loss_kernel={"type": "gaussian", "sigma": 0.5},
        estimator="v",
    )
    run = run_task(inp, tmp_path / "again")
    assert run.n_engine_evaluations == 0
    assert run.result.kernel_y.startswith("k(a,b) = exp(")
    assert run.result.estimator == "v"
    assert run.result.repeats == 4
    # without an interface the bounds are the sample min/max
    rmin = run.result.labels.index("Ar.Ar:rmin")
    assert 3.7 <= run.result.x_bounds[rmin, 0] < run.result.x_bounds[rmin, 1] <= 3.95
    assert set(run.result.get_ordered_parameters()[:2]) == {"Ar.Ar:eps", "Ar.Ar:rmin"}


def test_samples_from_text_logs_only(sampled, tmp_path) -> None:
    import shutil

    _, out, _ = sampled
    copy = tmp_path / "copy"
    shutil.copytree(out / "sampling_results", copy)
    for name in ("evaluations.h5", ".evaluations.journal"):
        (copy / "optimization" / name).unlink()
    from_h5 = load_samples(out / "sampling_results")
    from_txt = load_samples(copy)
    assert from_txt.names == from_h5.names
    np.testing.assert_allclose(from_txt.x, from_h5.x, rtol=1e-11)
    np.testing.assert_allclose(from_txt.loss, from_h5.loss, rtol=1e-9)
    assert from_txt.residuals is None


def test_samples_from_an_optimization(tmp_path) -> None:
    inp = write_lj_problem(
        tmp_path / "in",
        exit_conditions={"max_evaluations": 60},
        extra_config={"logging": {"save_residuals": True}},
    )
    run_task(inp, tmp_path / "opt")
    samples = load_samples(tmp_path / "opt")
    assert samples.x.shape == (60, 2)
    assert samples.residuals is not None and samples.layout is not None
    ana = analysis_only(tmp_path / "ana", tmp_path / "opt", samples_per_repeat=40)
    run = run_task(ana, tmp_path / "sens")
    assert run.result.n_samples == 60


def edited_training_set(inp: Path) -> DataSet:
    ds = DataSet.load(inp.parent / "training_set.yaml")
    edited = DataSet()
    for i, e in enumerate(ds.entries):
        if i == 1:
            continue  # dropped entry
        edited.add_entry(
            e.expression,
            e.reference,
            sigma=e.sigma * (2.0 if i == 0 else 1.0),
            weight=3.0 if i == 2 else 1.0,
            unit=e.unit,
        )
    return edited


def test_reweight_equals_a_fresh_evaluation(sampled, tmp_path) -> None:
    """Losses re-scored from residuals equal the objective on the edited data set."""
    from parafit.objective import Objective
    from parafit.tasks._setup import build_engine

    inp, out, _ = sampled
    edited = edited_training_set(inp)
    edited.save(tmp_path / "edited.yaml")
    cfg = yaml.safe_load(inp.read_text())
    cfg["training_set"] = {"path": str(tmp_path / "edited.yaml"), "loss": "rmse"}
    cfg["job_collection"] = str(inp.parent / "job_collection.yaml")
    cfg["parameter_interface"] = str(inp.parent / "parameter_interface.yaml")
    cfg["sensitivity"] = {
        "run_sampling": False,
        "samples_directory": str(out),
        "reweight": True,
        "repeats": 2,
        "samples_per_repeat": 100,
    }
    path = tmp_path / "reweight.yaml"
    path.write_text(yaml.safe_dump(cfg))
    config = load_config(path)
    samples = load_samples(out)
    loss, report, balanced = task._reweighted_losses(config, samples)
    from parafit.jobs import JobCollection

    iface = ParameterInterface.load(config.parameter_interface)
    objective = Objective(
        build_engine(config.engine),
        iface,
        JobCollection.load(config.job_collection),
        edited,
        None,
        loss="rmse",
    )
    x_scaled = iface.to_scaled(samples.x[:20])
    direct = objective.evaluate(x_scaled).training.loss
    np.testing.assert_allclose(loss[:20], direct, rtol=1e-10)
    assert len(report.expressions) == len(edited)
    run = run_task(path, tmp_path / "rw")
    assert run.n_engine_evaluations == 0
    assert run.result.is_reweighted
    assert (tmp_path / "rw" / "sensitivity" / "reweight_report.txt").is_file()
    assert (
        tmp_path / "rw" / "sensitivity" / "training_set_balanced_weights.yaml"
    ).is_file()


def test_balanced_weights_equalize_shares(sampled, tmp_path) -> None:
    inp, out, _ = sampled
    cfg = yaml.safe_load(inp.read_text())
    cfg["sensitivity"] = {
        "run_sampling": False,
        "samples_directory": str(out),
        "reweight": "balanced",
        "repeats": 2,
        "samples_per_repeat": 100,
    }
    for key in ("job_collection", "parameter_interface"):
        cfg[key] = str(inp.parent / cfg[key])
    cfg["training_set"]["path"] = str(inp.parent / "training_set.yaml")
    path = tmp_path / "balanced.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = run_task(path, tmp_path / "bal")
    report = run.reweight
    n = len(report.expressions)
    np.testing.assert_allclose(report.share_after, np.full(n, 1.0 / n), rtol=1e-9)
    assert report.share_before.max() > 1.5 / n  # the data set was not balanced before
    assert "share %" in report.to_text()


def test_reweight_without_residuals_is_a_clear_error(tmp_path) -> None:
    inp = write_problem(
        tmp_path / "in", save_residuals=False, number_samples=40, samples_per_repeat=40
    )
    run_task(inp, tmp_path / "out")
    ana = analysis_only(tmp_path / "ana", tmp_path / "out", reweight=True)
    with pytest.raises(ConfigError, match="save_residuals"):
        run_task(ana, tmp_path / "rw")
    assert not (tmp_path / "rw").exists()


def test_config_errors(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"task": "sensitivity", "sensitivity": {"run_sampling": False}})
    )
    with pytest.raises(ConfigError, match="samples_directory"):
        load_config(bad)
    bad.write_text(
        yaml.safe_dump(
            {
                "task": "sensitivity",
                "sensitivity": {
                    "run_sampling": False,
                    "samples_directory": ".",
                    "loss_kernel": {"type": "conjunctiv_gaussian"},
                },
            }
        )
    )
    with pytest.raises(ConfigError, match="did you mean 'conjunctive_gaussian'"):
        load_config(bad)
    bad.write_text(
        yaml.safe_dump(
            {
                "task": "sensitivity",
                "sensitivity": {"run_sampling": False, "samples_directory": "nope"},
            }
        )
    )
    with pytest.raises(ConfigError, match="directory not found"):
        load_config(bad)
    inp = write_problem(tmp_path / "p", analyze="validation_set")
    with pytest.raises(ConfigError, match="validation_set"):
        load_config(inp)


def test_empty_samples_directory(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    ana = analysis_only(tmp_path / "ana", tmp_path / "empty")
    with pytest.raises(ResultsError, match="no samples found"):
        run_task(ana, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_sensitivity_then_select(tmp_path) -> None:
    inp = write_problem(tmp_path / "in", number_samples=120, samples_per_repeat=60)
    runner = CliRunner()
    res = runner.invoke(app, ["sensitivity", str(inp), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "parafit select" in res.output
    res = runner.invoke(
        app,
        [
            "select",
            str(tmp_path / "out"),
            "--top",
            "2",
            "-o",
            str(tmp_path / "top2.yaml"),
        ],
    )
    assert res.exit_code == 0, res.output
    iface = ParameterInterface.load(tmp_path / "top2.yaml")
    assert set(iface.active_names) == {"Ar.Ar:eps", "Ar.Ar:rmin"}
    assert iface["Ne.Ne:eps"].sensitivity is not None
    # reuse the samples with other kernels from the CLI: no engine, new directory
    res = runner.invoke(
        app,
        [
            "sensitivity",
            str(inp),
            "--samples",
            str(tmp_path / "out"),
            "-o",
            str(tmp_path / "again"),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["select", str(tmp_path / "out"), "-o", str(tmp_path / "x.yaml")]
    )
    assert res.exit_code == 2
    assert "--top" in res.output


def test_select_threshold_api(sampled, tmp_path) -> None:
    from parafit.sensitivity.select import select_interface

    _, out, run = sampled
    chosen, iface = select_interface(out, None, threshold=0.2)
    assert set(chosen) <= {"Ar.Ar:eps", "Ar.Ar:rmin"} and chosen
    assert set(iface.active_names) == set(chosen)
    with pytest.raises(InputError):
        select_interface(out, None, top=0)
