"""Relaxations that outgrow their interaction lists are redone in JAX with new lists.

A small list skin makes a stretched water molecule move further than half the skin
while it relaxes; the engine must then rebuild the lists at the geometry reached and go
on in JAX (not fall back to ASE), and end at the same minimum as the exact ASE path.
"""

import logging
from pathlib import Path

import jax
import numpy as np
import pytest
from ase import Atoms

from parafit.engines.reaxff.engine import ReaxFFEngine
from parafit.jobs import GeometryOptimization, Job

FFIELD = Path(__file__).resolve().parents[1] / "examples" / "reaxff_water" / "ffield"


def _stretched_water() -> Job:
    t = np.radians(100.0)
    atoms = Atoms(
        "OHH",
        positions=[[0, 0, 0], [1.35, 0, 0], [1.1 * np.cos(t), 1.1 * np.sin(t), 0]],
    )
    return Job(
        "w",
        atoms,
        GeometryOptimization(optimizer="fire", fmax=1e-3, max_iterations=400),
    )


def test_outgrown_relaxation_continues_in_jax_and_matches_ase(caplog) -> None:
    job = _stretched_water()
    restarted = ReaxFFEngine(FFIELD, skin=0.2)
    iface = restarted.default_interface()
    x = np.repeat(iface.values[None], 2, axis=0)
    x[1, iface.names.index("H.O:D_e^sigma")] *= 1.1
    with caplog.at_level(logging.INFO, logger="parafit.engines.reaxff.engine"):
        got = restarted.setup([job], iface.names)(x)["w"]
    assert "2 redone in JAX with new lists, 0 recomputed through ASE" in caplog.text
    exact = ReaxFFEngine(FFIELD, skin=0.2, max_restarts=0).setup([job], iface.names)(x)[
        "w"
    ]
    assert got.status.tolist() == exact.status.tolist() == [0, 0]
    moved = np.linalg.norm(got.positions - job.atoms.positions, axis=2).max()
    assert moved > 0.1  # more than half the skin: the first pass was flagged
    np.testing.assert_allclose(got.energy, exact.energy, atol=1e-6)
    np.testing.assert_allclose(got.positions, exact.positions, atol=2e-3)
    assert np.abs(got.forces).max() < 1e-3 * 1.01
    assert np.all(got.n_steps > 0)


def test_max_restarts_must_be_non_negative() -> None:
    from parafit.errors import EngineError

    with pytest.raises(EngineError, match="max_restarts"):
        ReaxFFEngine(FFIELD, max_restarts=-1)


def test_bonds_of_types_without_angle_parameters_never_overflow(shared_data) -> None:
    """Cobalt's force field has no angle, torsion or H-bond parameters: its bonds have
    nothing to list, so no parameter vector can make them outgrow the lists."""
    from ase.build import bulk

    from parafit.engines.reaxff.model import ReaxFFModel, structure_lists
    from parafit.io.ffield import read_ffield

    cobalt = ReaxFFModel(
        read_ffield(shared_data / "reaxff-benchmarks" / "cobalt" / "ffield_lit")
    )
    assert cobalt.type_in_lists.tolist() == [False]
    import jax

    atoms = bulk("Co", "hcp", a=2.5, c=4.06).repeat((2, 2, 2))
    with jax.enable_x64(True):
        lists = structure_lists(
            cobalt,
            atoms.positions,
            atoms.cell.array,
            atoms.pbc,
            np.zeros(len(atoms), np.int32),
        )
    top = lists.topology
    assert top.bond_mask.any() and top.listed[top.bond_mask].all()
    water = ReaxFFModel(read_ffield(FFIELD))
    assert water.type_in_lists.tolist() == [True, True]


def test_restarts_of_different_jobs_share_one_compiled_shape(caplog) -> None:
    """Restarted relaxations pad to one shape (at least their bucket's, and the
    largest restart's so far): a water molecule and a water dimer that both outgrow
    their lists compile one restart shape between them (the dimer restarts first; the
    water's restart fits its shape), and still end where ASE ends."""
    water = _stretched_water()
    dimer_atoms = water.atoms + water.atoms.copy()
    dimer_atoms.positions[3:] += [0.0, 0.0, 6.0]
    dimer = Job("dimer", dimer_atoms, water.task)
    # restarts (one structure each) are never packed: an unpacked bucket shares
    # their compiled function, so all shapes are counted in one place
    engine = ReaxFFEngine(FFIELD, skin=0.2, pack_relaxations=False)
    iface = engine.default_interface()
    x = iface.values[None]
    fn = engine.setup([dimer, water], iface.names)
    (bucket,) = fn.buckets
    values = fn._values_fn(bucket)  # shared by the engines of this force field
    jax.clear_caches()  # count only this test's compiled shapes
    with caplog.at_level(logging.INFO, logger="parafit.engines.reaxff.engine"):
        got = fn(x)
    assert caplog.text.count("1 redone in JAX with new lists") == 2
    assert len(fn._restart_sizes) == 1  # one kind of relaxation restarted
    (sizes,) = fn._restart_sizes.values()
    assert all(sizes[k] >= bucket.padded[k] for k in bucket.padded)
    # the bucket's shape and one restart shape for both jobs
    assert values._cache_size() == 2
    exact = ReaxFFEngine(FFIELD, skin=0.2, max_restarts=0).setup(
        [dimer, water], iface.names
    )(x)
    for job_id in ("w", "dimer"):
        np.testing.assert_allclose(got[job_id].energy, exact[job_id].energy, atol=1e-6)
        np.testing.assert_allclose(
            got[job_id].positions, exact[job_id].positions, atol=2e-3
        )
