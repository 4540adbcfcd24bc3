"""Packed relaxations: a bucket of molecules relaxed together as one system.

``pack_relaxations`` changes the schedule only: each structure takes the steps it
takes alone (its own optimizer, step cap, fixed atoms and restraints), its lists follow
its own atoms, and a structure that outgrows its lists is flagged alone. So packed and
one-by-one relaxations must give the same results, restarts included.
"""

import logging

import numpy as np
import pytest

from parafit.engines.reaxff.engine import ReaxFFEngine
from parafit.jobs import BondRestraint, GeometryOptimization, Job

SMALL = ["hsshGeo", "h2sGeo", "mdtBase", "dmteBase", "dmds", "s8", "bnz"]


def _variants(jobs) -> list[Job]:
    """Disulfide's small relaxations (FIRE), plus two LBFGS ones of 9 and 10 atoms
    (one bucket): one with a restraint, one with a fixed atom."""
    restrained = Job(  # C-S bond (1.81 Å) pulled towards 2.1 Å
        "dmte_restrained",
        jobs["dmteBase"].atoms,
        GeometryOptimization(
            optimizer="lbfgs",
            max_iterations=60,
            fmax=0.02,
            restraints=(BondRestraint(0, 1, target=2.1, force_constant=3.0),),
        ),
    )
    fixed = Job(
        "dmds_fixed",
        jobs["dmds"].atoms,
        GeometryOptimization(optimizer="lbfgs", max_iterations=40),
        metadata={"fixed_atoms": [0]},
    )
    return [*(jobs[i] for i in SMALL), restrained, fixed]


def _run(root, jobs, x, **options):
    engine = ReaxFFEngine(root / "ffield_lit", **options)
    iface = engine.default_interface()
    fn = engine.setup(jobs, iface.names)
    return fn, fn(iface.values[None] if x is None else x)


def _assert_same(jobs, a, b) -> None:
    for job in jobs:
        p, q = a[job.id], b[job.id]
        np.testing.assert_array_equal(p.n_steps, q.n_steps)
        np.testing.assert_array_equal(p.status, q.status)
        np.testing.assert_allclose(p.energy, q.energy, rtol=0, atol=1e-9)
        np.testing.assert_allclose(p.forces, q.forces, atol=1e-8)
        np.testing.assert_allclose(p.positions, q.positions, atol=1e-9)
        np.testing.assert_allclose(p.charges, q.charges, atol=1e-10)


def test_packed_relaxations_equal_one_by_one(disulfide_jobs) -> None:
    root, jobs = disulfide_jobs
    picked = _variants(jobs)
    # buckets evaluated at once in two threads, or one after another: the same
    packed_fn, packed = _run(root, picked, None, pack_relaxations=True, threads=2)
    _, serial = _run(root, picked, None, pack_relaxations=True, threads=1)
    _assert_same(picked, packed, serial)
    assert all(b.packed is not None for b in packed_fn.buckets if len(b.plans) > 1)
    assert sum(len(b.plans) for b in packed_fn.buckets if b.packed) == len(picked)
    assert {b.kind for b in packed_fn.buckets} == {"fire", "lbfgs"}
    single_fn, single = _run(
        root, picked, None, pack_relaxations=False, relax_sequential=True
    )
    assert all(b.packed is None for b in single_fn.buckets)
    _assert_same(picked, packed, single)
    steps = {int(packed[j.id].n_steps[0]) for j in picked}
    assert len(steps) > 3  # members stopped at different steps
    restrained = packed["dmte_restrained"].positions[0]
    assert np.linalg.norm(restrained[1] - restrained[0]) > 1.85
    np.testing.assert_array_equal(
        packed["dmds_fixed"].positions[0, 0], jobs["dmds"].atoms.positions[0]
    )


def test_packed_relaxations_flag_and_restart_each_structure_alone(
    disulfide_jobs, caplog
) -> None:
    """A small skin and no watch: structures whose atoms move more than 0.1 Å are
    flagged and restarted, the others not; as one by one."""
    root, jobs = disulfide_jobs
    picked = [jobs[i] for i in SMALL]
    iface = ReaxFFEngine(root / "ffield_lit").default_interface()
    names = list(iface.names)
    x = np.repeat(iface.values[None], 2, axis=0)
    x[1, names.index("S.S:D_e^sigma")] *= 1.1
    logs = {}
    out = {}
    for pack in (True, False):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="parafit.engines.reaxff.engine"):
            _, out[pack] = _run(
                root,
                picked,
                x,
                skin=0.2,
                watch=0.0,
                max_restarts=1,
                pack_relaxations=pack,
            )
        logs[pack] = sorted(
            r.getMessage() for r in caplog.records if "outgrew" in r.getMessage()
        )
    assert logs[True] == logs[False]
    assert 0 < len(logs[True]) < len(picked)  # some structures flagged, not all
    _assert_same(picked, out[True], out[False])


def test_schedule_settings_are_checked(disulfide_jobs) -> None:
    from parafit.errors import EngineError

    root, _ = disulfide_jobs
    for bad in ({"threads": 0}, {"threads": 1.5}, {"pack_relaxations": "yes"}):
        with pytest.raises(EngineError, match=next(iter(bad))):
            ReaxFFEngine(root / "ffield_lit", **bad)
    settings = ReaxFFEngine(root / "ffield_lit", threads=3).to_dict()
    assert settings["threads"] == 3 and settings["pack_relaxations"] is None
