"""Far bond candidates: pairs within the bond cutoff whose uncorrected bond order is far
below ``bo_cut`` are checked, not carried through the bond orders.

They are no bonds (LAMMPS drops pairs with BO' < bo_cut), so leaving them out of the
bond-order arrays must change nothing; and one that does reach ``bo_cut`` for some
parameters must flag the lists, so the engine redoes that vector with lists built for
it.
"""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import parafit.engines.reaxff.model as reaxff_model
from parafit.engines.reaxff.bonded import far_bond_overflow
from parafit.engines.reaxff.calculator import ReaxFFCalculator
from parafit.engines.reaxff.engine import ReaxFFEngine
from parafit.engines.relax import run_job
from parafit.jobs import GeometryOptimization, SinglePoint
from parafit.reaxff import ffield_with_values, interface_from_ffield, read_ffield


@pytest.fixture(scope="module")
def disulfide(shared_data):
    from parafit.io.reaxff_import import import_reaxff_directory

    root = shared_data / "reaxff-benchmarks" / "disulfide"
    jobs, _, _ = import_reaxff_directory(root)
    return root, jobs


def _evaluate(ffield, atoms):
    atoms = atoms.copy()
    calc = ReaxFFCalculator(ffield=ffield)
    atoms.calc = calc
    return (
        atoms.get_potential_energy(),
        atoms.get_forces(),
        calc.results["charges"],
        calc._lists.topology,
    )


def test_far_candidates_change_no_energy_force_or_charge(disulfide, monkeypatch):
    root, jobs = disulfide
    biggest = max(jobs, key=lambda j: len(j.atoms))
    small = next(
        j for j in jobs if isinstance(j.task, SinglePoint) and len(j.atoms) > 6
    )
    for job in (biggest, small):
        e, f, q, top = _evaluate(root / "ffield_lit", job.atoms)
        with monkeypatch.context() as m:
            m.setattr(reaxff_model, "NEAR_FRACTION", 0.0)  # every candidate computed
            e_all, f_all, q_all, top_all = _evaluate(root / "ffield_lit", job.atoms)
        assert top.far_i.size > 0 and top_all.far_i.size == 0
        assert top.bond_i.size + top.far_i.size == top_all.bond_i.size
        assert top.bond_i.size < top_all.bond_i.size
        assert e == pytest.approx(e_all, abs=1e-9)
        np.testing.assert_allclose(f, f_all, atol=1e-9)
        np.testing.assert_allclose(q, q_all, atol=1e-12)


def test_a_far_candidate_reaching_bo_cut_flags_the_lists(disulfide, caplog):
    root, jobs = disulfide
    ff = read_ffield(root / "ffield_lit")
    job = next(j for j in jobs if isinstance(j.task, SinglePoint) and len(j.atoms) > 6)
    engine = ReaxFFEngine(ff)
    iface = interface_from_ffield(ff)
    names = list(iface.names)
    fn = engine.setup([job], names)
    # bo_cut from 1e-3 to 1e-9: pairs that were far below it become (weak) bonds
    x = np.repeat(iface.values[None], 2, axis=0)
    x[1, names.index("bo_cut_x100")] = 1e-7
    plan = fn.buckets[0].plans[0]
    top = plan.lists.topology
    assert top.far_i.size > 0
    with jax.enable_x64(True):
        flags = [
            bool(
                far_bond_overflow(
                    fn.model.tables(jnp.asarray(xv)).bonded,
                    jnp.asarray(plan.types),
                    jnp.asarray(job.atoms.positions),
                    top,
                )
            )
            for xv in x
        ]
    assert flags == [False, True]
    with caplog.at_level(logging.INFO, logger="parafit.engines.reaxff.engine"):
        got = fn(x)[job.id]
    assert "redone in JAX" in caplog.text
    # the same force field with the low cutoff as its own values: lists built for it
    low = ffield_with_values(ff, {"bo_cut_x100": 1e-7})
    exact = ReaxFFEngine(low).setup([job], names)(x[1:])[job.id]
    base = ReaxFFEngine(ff).setup([job], names)(x[:1])[job.id]
    assert got.energy[1] != pytest.approx(base.energy[0], abs=1e-6)
    np.testing.assert_allclose(got.energy, [base.energy[0], exact.energy[0]], atol=1e-9)
    np.testing.assert_allclose(got.forces[1], exact.forces[0], atol=1e-8)


def test_relaxation_lists_carry_every_candidate_and_equal_ase(disulfide, caplog):
    """A relaxation's lists carry every candidate (its atoms may move beyond the
    skin); it takes the same steps to the same geometry as ASE's FIRE."""
    root, jobs = disulfide
    job = max(
        (j for j in jobs if isinstance(j.task, GeometryOptimization)),
        key=lambda j: len(j.atoms),
    )
    engine = ReaxFFEngine(root / "ffield_lit", max_restarts=0)
    iface = engine.default_interface()
    fn = engine.setup([job], iface.names)
    assert fn.buckets[0].plans[0].lists.topology.far_i.size == 0
    with caplog.at_level(logging.INFO, logger="parafit.engines.reaxff.engine"):
        got = fn(iface.values[None])[job.id]
    assert "outgrew" not in caplog.text and "redone" not in caplog.text
    ref = run_job(job, ReaxFFCalculator(root / "ffield_lit"), properties=("forces",))
    assert got.n_steps[0] == ref.n_steps[0]
    assert got.energy[0] == pytest.approx(ref.energy[0], abs=1e-8)
    np.testing.assert_allclose(got.positions[0], ref.positions[0], atol=1e-7)
    np.testing.assert_allclose(got.forces[0], ref.forces[0], atol=1e-7)
