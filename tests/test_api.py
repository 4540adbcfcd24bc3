"""The Python API as the README documents it, on the argon example and the ParAMS files."""

from pathlib import Path

import numpy as np

import parafit
from parafit import DataSet, JobCollection, ParameterInterface
from parafit.engines.lj import LJEngine

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "argon_lj"


def test_load_save_len_round_trip(tmp_path: Path) -> None:
    jobs = JobCollection.load(EXAMPLE / "job_collection.yaml")
    training = DataSet.load(EXAMPLE / "training_set.yaml")
    params = ParameterInterface.load(EXAMPLE / "parameter_interface.yaml")
    assert (len(jobs), len(training), len(params)) == (50, 49, 2)
    jobs.save(tmp_path / "j.yaml")
    training.save(tmp_path / "t.yaml")
    params.save(tmp_path / "p.yaml")
    assert len(JobCollection.load(tmp_path / "j.yaml")) == 50
    assert len(DataSet.load(tmp_path / "t.yaml")) == 49
    assert ParameterInterface.load(tmp_path / "p.yaml") == params


def test_load_chooses_the_format_from_the_file(shared_data: Path) -> None:
    disulfide = shared_data / "params-format" / "disulfide"
    assert len(JobCollection.load(disulfide / "job_collection.yml")) == 232
    assert len(DataSet.load(disulfide / "data_set.yml")) == 4875
    assert len(JobCollection.load(EXAMPLE / "reference.extxyz")) == 50


def test_objective_batch_and_run_task(tmp_path: Path) -> None:
    jobs = JobCollection.load(EXAMPLE / "job_collection.yaml")
    training = DataSet.load(EXAMPLE / "training_set.yaml")
    params = ParameterInterface.load(EXAMPLE / "parameter_interface.yaml")
    objective = parafit.Objective(
        LJEngine(["Ar"], cutoff=12.0, shift=False), params, jobs, training
    )
    x = np.vstack([objective.x0_scaled(), np.full(2, 0.5)])
    losses = objective(x)
    assert losses.shape == (2,) and np.all(np.isfinite(losses))
    single = parafit.run_task(
        EXAMPLE / "parafit.yaml", None
    )  # in memory, nothing written
    assert single.n_evaluations > 1 and single.best_loss < losses[0]
