"""Far bond candidates: pairs within the bond cutoff whose uncorrected bond order is far
below ``bo_cut`` are not carried through the bond orders.

They are no bonds (LAMMPS drops pairs with BO' < bo_cut), so leaving them out of the
bond-order arrays must change nothing. A single point checks them: one that reaches
``bo_cut`` for some parameters flags the lists, and the engine redoes that vector with
lists built for it. A relaxation watches them: one that becomes a bond on the way joins
its lists (the cobalt slab of ``test_reaxff_watch.py`` shows dozens doing so).
"""

import logging

import jax
import numpy as np
import pytest

import parafit.engines.reaxff.model as reaxff_model
from parafit.engines.reaxff.calculator import ReaxFFCalculator
from parafit.engines.reaxff.engine import ReaxFFEngine
from parafit.engines.relax import run_job
from parafit.jobs import GeometryOptimization, SinglePoint
from parafit.reaxff import ffield_with_values, interface_from_ffield, read_ffield


def _single_points(jobs, n: int = 12):
    """The ``n`` largest single points of a job collection."""
    sps = [j for j in jobs if isinstance(j.task, SinglePoint)]
    return sorted(sps, key=lambda j: -len(j.atoms))[:n]


def test_far_candidates_change_no_energy_force_or_charge(disulfide_jobs, monkeypatch):
    root, jobs = disulfide_jobs
    picked = _single_points(jobs)
    engine = ReaxFFEngine(root / "ffield_lit")
    iface = engine.default_interface()
    x = iface.values[None]
    split = engine.setup(picked, iface.names)
    with monkeypatch.context() as m:
        m.setattr(reaxff_model, "NEAR_FRACTION", 0.0)  # every candidate computed
        whole = engine.setup(picked, iface.names)
    n_far = sum(p.lists.topology.far_i.size for b in split.buckets for p in b.plans)
    assert n_far > 0
    assert all(p.lists.topology.far_i.size == 0 for b in whole.buckets for p in b.plans)
    got, ref = split(x), whole(x)
    for job in picked:
        a, b = got[job.id], ref[job.id]
        assert a.energy[0] == pytest.approx(b.energy[0], abs=1e-9)
        np.testing.assert_allclose(a.forces, b.forces, atol=1e-9)
        np.testing.assert_allclose(a.charges, b.charges, atol=1e-12)


def test_a_far_candidate_reaching_bo_cut_flags_and_redoes_the_single_point(
    disulfide_jobs, caplog
):
    root, jobs = disulfide_jobs
    ff = read_ffield(root / "ffield_lit")
    job = _single_points(jobs, 1)[0]
    engine = ReaxFFEngine(ff)
    iface = interface_from_ffield(ff)
    names = list(iface.names)
    fn = engine.setup([job], names)
    assert fn.buckets[0].plans[0].lists.topology.far_i.size > 0
    # bo_cut from 1e-3 to 1e-9: pairs that were far below it become (weak) bonds
    x = np.repeat(iface.values[None], 2, axis=0)
    x[1, names.index("bo_cut_x100")] = 1e-7
    with caplog.at_level(logging.INFO, logger="parafit.engines.reaxff.engine"):
        got = fn(x)[job.id]
    assert "1 parameter vector(s) outgrew" in caplog.text
    assert "1 redone in JAX" in caplog.text
    # equal to an engine whose lists were built for that cutoff
    low = ffield_with_values(ff, {"bo_cut_x100": 1e-7})
    ref = ReaxFFEngine(low).setup([job], names)(x[1:])[job.id]
    assert got.energy[1] == pytest.approx(ref.energy[0], abs=1e-9)
    np.testing.assert_allclose(got.forces[1], ref.forces[0], atol=1e-9)
    assert abs(got.energy[1] - got.energy[0]) > 1e-6  # the new bonds count


def test_relaxation_watches_its_far_candidates_and_equals_ase(disulfide_jobs, caplog):
    """A relaxation's far candidates are watched, not in its bond arrays; it takes
    the same steps to the same geometry as ASE's FIRE with the calculator, whose
    lists carry every candidate."""
    root, jobs = disulfide_jobs
    job = max(
        (j for j in jobs if isinstance(j.task, GeometryOptimization)),
        key=lambda j: len(j.atoms),
    )
    engine = ReaxFFEngine(root / "ffield_lit", max_restarts=0)
    iface = engine.default_interface()
    fn = engine.setup([job], iface.names)
    bucket = fn.buckets[0]
    top = bucket.plans[0].lists.topology
    assert top.far_i.size > top.bond_i.size  # most candidates are far
    assert not np.any(bucket.arrays["top"].far_mask)  # watched, not checked
    assert bucket.arrays["watch_bonds"]["mask"].sum() >= top.far_i.size
    with caplog.at_level(logging.INFO, logger="parafit.engines.reaxff.engine"):
        got = fn(iface.values[None])[job.id]
    assert "outgrew" not in caplog.text
    ref = run_job(job, ReaxFFCalculator(root / "ffield_lit"), properties=("forces",))
    assert got.n_steps[0] == ref.n_steps[0]
    assert got.energy[0] == pytest.approx(ref.energy[0], abs=1e-8)
    np.testing.assert_allclose(got.positions[0], ref.positions[0], atol=1e-7)
    np.testing.assert_allclose(got.forces[0], ref.forces[0], atol=1e-7)


def test_lowering_bo_cut_makes_relaxations_join_or_restart_and_stay_exact(
    disulfide_jobs,
):
    """bo_cut 1e-9: many far candidates of a relaxation are bonds from the start;
    they join its lists or the relaxation restarts with lists built for that
    vector, and it ends where ASE with that force field ends."""
    root, jobs = disulfide_jobs
    ff = read_ffield(root / "ffield_lit")
    job = min(
        (j for j in jobs if isinstance(j.task, GeometryOptimization)),
        key=lambda j: len(j.atoms),
    )
    iface = interface_from_ffield(ff)
    names = list(iface.names)
    x = iface.values[None].copy()
    x[0, names.index("bo_cut_x100")] = 1e-7
    with jax.enable_x64(True):
        got = ReaxFFEngine(ff).setup([job], names)(x)[job.id]
    low = ffield_with_values(ff, {"bo_cut_x100": 1e-7})
    ref = run_job(job, ReaxFFCalculator(low), properties=("forces",))
    assert got.n_steps[0] == ref.n_steps[0]
    assert got.energy[0] == pytest.approx(ref.energy[0], abs=1e-8)
    np.testing.assert_allclose(got.positions[0], ref.positions[0], atol=1e-7)
