"""Relaxation buckets on a CPU run one structure after another unless their last call
shows that lock-step would waste almost nothing (every structure took about as many
FIRE steps as the slowest); both ways give the same results."""

from pathlib import Path

import numpy as np
from ase import Atoms

from parafit.engines.reaxff.engine import ReaxFFEngine
from parafit.jobs import GeometryOptimization, Job

FFIELD = Path(__file__).resolve().parents[1] / "examples" / "reaxff_water" / "ffield"


def _water(job_id: str, r_oh: float, max_iterations: int) -> Job:
    t = np.radians(100.0)
    atoms = Atoms(
        "OHH",
        positions=[[0, 0, 0], [r_oh, 0, 0], [1.0 * np.cos(t), 1.0 * np.sin(t), 0]],
    )
    task = GeometryOptimization(
        optimizer="fire", fmax=1e-4, max_iterations=max_iterations
    )
    return Job(job_id, atoms, task)


def test_bucket_whose_relaxations_all_hit_their_limit_runs_in_lockstep() -> None:
    jobs = [_water("a", 1.05, 6), _water("b", 1.15, 6)]
    engine = ReaxFFEngine(FFIELD)
    iface = engine.default_interface()
    fn = engine.setup(jobs, iface.names)
    (bucket,) = fn.buckets
    x = np.repeat(iface.values[None], 2, axis=0)
    x[1, iface.names.index("H.O:D_e^sigma")] *= 1.05
    first = fn(x)  # one after another (the CPU default)
    assert bucket.lockstep  # both took their 6 steps
    second = fn(x)  # in lock-step
    assert ("values", True) in bucket.fns and ("values", False) in bucket.fns
    for job in jobs:
        assert first[job.id].n_steps.tolist() == second[job.id].n_steps.tolist()
        assert first[job.id].n_steps.tolist() == [6, 6]
        np.testing.assert_allclose(
            second[job.id].energy, first[job.id].energy, rtol=1e-12
        )
        np.testing.assert_allclose(
            second[job.id].positions, first[job.id].positions, atol=1e-10
        )


def test_bucket_with_unequal_relaxations_stays_one_after_another() -> None:
    engine = ReaxFFEngine(FFIELD)
    iface = engine.default_interface()
    relaxed = engine.setup([_water("r", 1.1, 400)], iface.names)(iface.values[None])
    at_minimum = _water("m", 1.1, 400)
    at_minimum.atoms.positions = relaxed["r"].positions[0]
    jobs = [at_minimum, _water("s", 1.3, 400)]
    fn = engine.setup(jobs, iface.names)
    out = fn(iface.values[None])
    steps = [int(out[j.id].n_steps[0]) for j in jobs]
    assert steps[0] < 0.5 * steps[1]
    assert not fn.buckets[0].lockstep
