"""Relaxations keep exact lists while atoms move far: watched pairs join the lists.

The cobalt ``Surface_sc110`` slab (7 atoms, a simple-cubic surface) reconstructs when it
relaxes with ``ffield_lit``: atoms move 2.6 Å and over a hundred atom pairs come from
beyond the list skin into the bond and non-bonded cutoffs, and dozens of far bond
candidates become bonds. The engine must follow that in JAX (the watched pairs join
the lists at every step), with no restart and no ASE
fallback, and end where ASE with the calculator (which rebuilds its lists) ends.
"""

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from parafit.engines.reaxff.bonded import bond_order_cutoff, uncorrected_bond_orders
from parafit.engines.reaxff.calculator import ReaxFFCalculator
from parafit.engines.reaxff.engine import ReaxFFEngine
from parafit.engines.reaxff.topology import pairs_within, watch_list
from parafit.engines.relax import run_job


@pytest.fixture(scope="module")
def cobalt(shared_data: Path):
    from parafit.io.reaxff_import import import_reaxff_directory

    root = shared_data / "reaxff-benchmarks" / "cobalt"
    jobs, _, _ = import_reaxff_directory(root)
    return root / "ffield_lit", jobs


def test_watch_list_holds_the_pairs_between_skin_and_reach(cobalt) -> None:
    _, jobs = cobalt
    atoms = jobs["Surface_sc110"].atoms
    i, j, shift, cut = watch_list(
        atoms.positions, atoms.cell.array, atoms.pbc, (5.0, 10.0), 1.0, 6.0
    )
    r = np.linalg.norm(atoms.positions[j] + shift - atoms.positions[i], axis=1)
    for c in (5.0, 10.0):
        mine = cut == c
        assert np.all((r[mine] > c + 1.0) & (r[mine] <= c + 6.0))
        a, b, image = pairs_within(atoms.positions, atoms.cell.array, atoms.pbc, c + 6)
        r_all = np.linalg.norm(
            atoms.positions[b] + image @ atoms.cell.array - atoms.positions[a], axis=1
        )
        assert mine.sum() == np.sum(r_all > c + 1.0)
    empty = watch_list(atoms.positions, atoms.cell.array, atoms.pbc, (5.0,), 2.0, 2.0)
    assert all(a.shape[0] == 0 for a in empty)


def test_reconstructing_slab_relaxes_in_jax_and_equals_ase(cobalt, caplog) -> None:
    ffield, jobs = cobalt
    job = jobs["Surface_sc110"]
    engine = ReaxFFEngine(ffield, max_restarts=0)
    iface = engine.default_interface()
    fn = engine.setup([job], iface.names)
    with caplog.at_level(logging.INFO, logger="parafit.engines.reaxff.engine"):
        got = fn(iface.values[None])[job.id]
    assert "outgrew" not in caplog.text  # neither restarted nor sent to ASE
    # far bond candidates (BO' < 1e-3 bo_cut at the start, not in the bond arrays)
    # became bonds on the way and joined the lists
    plan = fn.buckets[0].plans[0]
    far = plan.lists.topology

    def far_bonds(where: np.ndarray) -> int:
        tables = fn.model.tables(jnp.asarray(iface.values)).bonded
        r = np.linalg.norm(where[far.far_j] + far.far_shift - where[far.far_i], axis=1)
        raw = uncorrected_bond_orders(
            tables, jnp.asarray(r), plan.types[far.far_i], plan.types[far.far_j]
        )
        return int(np.sum((np.asarray(raw) >= bond_order_cutoff(tables)) & (r <= 5)))

    with jax.enable_x64(True):
        assert far.far_i.size > 0 and far_bonds(job.atoms.positions) == 0
        assert far_bonds(got.positions[0]) >= 10
    start = job.atoms.positions
    moved = np.linalg.norm(got.positions[0] - start, axis=1).max()
    assert moved > 2.0  # far beyond half the 1 Å skin
    # pairs came into the non-bonded cutoff from beyond cutoff + skin
    i, j, image = pairs_within(start, job.atoms.cell.array, job.atoms.pbc, 16.0)
    shift = image @ job.atoms.cell.array
    r0 = np.linalg.norm(start[j] + shift - start[i], axis=1)
    r1 = np.linalg.norm(got.positions[0][j] + shift - got.positions[0][i], axis=1)
    assert np.sum((r0 > 11.0) & (r1 < 10.0)) > 50
    ref = run_job(job, ReaxFFCalculator(ffield), properties=("forces",))
    assert got.n_steps[0] == ref.n_steps[0]
    assert got.energy[0] == pytest.approx(ref.energy[0], abs=1e-8)
    np.testing.assert_allclose(got.positions[0], ref.positions[0], atol=1e-7)
    np.testing.assert_allclose(got.forces[0], ref.forces[0], atol=1e-7)


def test_without_watch_the_same_slab_is_flagged(cobalt, caplog) -> None:
    """With ``watch`` at most the skin, only the displacement test remains."""
    ffield, jobs = cobalt
    job = jobs["Surface_sc110"]
    engine = ReaxFFEngine(ffield, watch=0.0, max_restarts=0)
    iface = engine.default_interface()
    with caplog.at_level(logging.INFO, logger="parafit.engines.reaxff.engine"):
        engine.setup([job], iface.names)(iface.values[None])
    assert "1 recomputed through ASE" in caplog.text


def test_watch_must_be_non_negative(cobalt) -> None:
    from parafit.errors import EngineError

    with pytest.raises(EngineError, match="watch"):
        ReaxFFEngine(cobalt[0], watch=-1.0)


def test_relaxations_run_one_vector_per_call_on_cpu(cobalt) -> None:
    """``relax_chunk``: relaxation buckets on CPU are not batched over vectors (a
    batched loop runs until its slowest member stops); single points are."""
    import jax

    ffield, jobs = cobalt
    engine = ReaxFFEngine(ffield)
    iface = engine.default_interface()
    fn = engine.setup([jobs["Surface_sc110"], jobs["sc_opt"]], iface.names)
    relax = [b for b in fn.buckets if b.kind != "sp"]
    assert relax
    expected = 1 if jax.default_backend() == "cpu" else engine.max_chunk
    assert all(fn._chunk_size(b) == expected for b in relax)
    pinned = ReaxFFEngine(ffield, relax_chunk=8)
    fn8 = pinned.setup([jobs["Surface_sc110"]], iface.names)
    assert fn8._chunk_size(fn8.buckets[0]) == 8
    assert pinned.to_dict()["relax_chunk"] == 8
    from parafit.errors import EngineError

    with pytest.raises(EngineError, match="relax_chunk"):
        ReaxFFEngine(ffield, relax_chunk=0)


def test_relaxations_one_after_another_equal_lock_step(cobalt) -> None:
    """``relax_sequential`` changes the schedule only: the same steps and results."""
    path, jobs = cobalt
    picked = [jobs["Surface_sc110"], *[j for j in jobs if j.id.startswith("hcp")][:2]]
    picked = [j for j in picked if type(j.task).__name__ == "GeometryOptimization"]
    assert len(picked) >= 2
    out = {
        flag: ReaxFFEngine(path, relax_sequential=flag).setup(picked, [])(
            np.zeros((1, 0))
        )
        for flag in (True, False)
    }
    for job in picked:
        a, b = out[True][job.id], out[False][job.id]
        assert a.n_steps[0] == b.n_steps[0]
        np.testing.assert_allclose(a.energy, b.energy, rtol=1e-12)
        np.testing.assert_allclose(a.forces, b.forces, atol=1e-9)
    with pytest.raises(Exception, match="relax_sequential"):
        ReaxFFEngine(path, relax_sequential="yes")


def test_cell_that_expands_keeps_its_lists_and_equals_ase(cobalt, caplog) -> None:
    """A cell relaxation outgrows its lists only through displacements beyond the
    cell's affine deformation (and by less for a compressed cell): an hcp cell that
    swells by half at a parameter vector far from ``ffield_lit`` stays in JAX, with
    no restart and no ASE fallback, and ends where ASE with the calculator ends.
    (The old test, atoms' Cartesian displacement plus half the longest lattice shift
    times the strain, sent it to ASE.)"""
    ffield, jobs = cobalt
    job = jobs["hcp_opt"]
    assert job.task.relax_cell
    # a CMA-ES draw with sigma 0.3 of the params ranges around ffield_lit (its 12th
    # active parameter, Co:p_ovun2, stayed at ffield_lit's value)
    far = {
        "Co:r_0^sigma": 1.993,
        "Co:r_vdW": 1.7,
        "Co:epsilon": 0.195,
        "Co:alpha": 12.86,
        "Co:gamma_w": 37.948,
        "Co.Co:D_e^sigma": 41.807,
        "Co.Co:p_be1": -0.826,
        "Co.Co:p_ovun1": 0.494,
        "Co.Co:p_be2": 9.694,
        "Co.Co:p_bo1": -0.04,
        "Co.Co:p_bo2": 5.846,
    }
    names = list(far)
    x = np.array([list(far.values())])
    engine = ReaxFFEngine(ffield, max_restarts=0)
    fn = engine.setup([job], names)
    with caplog.at_level(logging.INFO, logger="parafit.engines.reaxff.engine"):
        got = fn(x)[job.id]
    assert "outgrew" not in caplog.text
    swell = abs(np.linalg.det(got.cell[0]) / np.linalg.det(job.atoms.cell.array))
    assert swell > 1.3
    ref = run_job(
        job, ReaxFFCalculator.from_model(fn.model, x[0]), properties=("forces",)
    )
    assert got.n_steps[0] == ref.n_steps[0] > 10
    assert got.energy[0] == pytest.approx(ref.energy[0], abs=1e-9)
    np.testing.assert_allclose(got.cell[0], ref.cell[0], atol=1e-8)
    np.testing.assert_allclose(got.forces[0], ref.forces[0], atol=1e-8)
