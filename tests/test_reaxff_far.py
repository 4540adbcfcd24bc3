"""Far bond candidates: pairs within the bond cutoff whose uncorrected bond order is far
below ``bo_cut`` are checked, not carried through the bond orders.

They are no bonds (LAMMPS drops pairs with BO' < bo_cut), so leaving them out of the
bond-order arrays must change nothing; and one that does reach ``bo_cut`` for some
parameters must flag the lists, so the engine redoes that vector with lists built for
it.
"""

import logging

import numpy as np
import pytest

from parafit.engines.reaxff.calculator import ReaxFFCalculator
from parafit.engines.reaxff.engine import ReaxFFEngine
from parafit.engines.relax import run_job
from parafit.jobs import GeometryOptimization


@pytest.fixture(scope="module")
def disulfide(shared_data):
    from parafit.io.reaxff_import import import_reaxff_directory

    root = shared_data / "reaxff-benchmarks" / "disulfide"
    jobs, _, _ = import_reaxff_directory(root)
    return root, jobs


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
