"""Rigid PES scans in the JAX ReaxFF engine, shared compiled functions, chunking.

A rigid scan (``relaxed=False``) is evaluated as batched single points; it must equal
the reference path (``run_job`` point by point through ASE with the calculator) and
its ``pes`` gradient must equal central differences. Uses the H/O water force field
of examples/reaxff_water.
"""

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from parafit.engines.reaxff.calculator import ReaxFFCalculator
from parafit.engines.reaxff.engine import ReaxFFEngine, _chunks
from parafit.engines.relax import rigid_scan_geometries, run_job
from parafit.jobs import Job, PESScan, ScanCoordinate

FFIELD = Path(__file__).resolve().parents[1] / "examples" / "reaxff_water" / "ffield"


def _water() -> Atoms:
    t = np.radians(104.52)
    r = 0.9572
    return Atoms(
        "OHH", positions=[[0, 0, 0], [r, 0, 0], [r * np.cos(t), r * np.sin(t), 0]]
    )


def _scans() -> list[Job]:
    one = PESScan(
        (ScanCoordinate("distance", (0, 1), tuple(np.linspace(0.8, 2.4, 9))),),
        relaxed=False,
    )
    values = tuple(np.linspace(0.85, 1.25, 5))
    both = PESScan(
        (
            ScanCoordinate("distance", (0, 1), values),
            ScanCoordinate("distance", (0, 2), values),
        ),
        relaxed=False,
    )
    bend = PESScan(
        (ScanCoordinate("angle", (1, 0, 2), (90.0, 104.52, 120.0, 150.0)),),
        relaxed=False,
    )
    return [
        Job("oh", _water(), one),
        Job("sym", _water(), both),
        Job("bend", _water(), bend),
    ]


@pytest.fixture(scope="module")
def water_fn():
    engine = ReaxFFEngine(FFIELD)
    iface = engine.default_interface()
    jobs = _scans()
    return iface, engine.setup(jobs, iface.names), jobs


def test_rigid_scan_geometries_set_the_coordinates() -> None:
    job = _scans()[1]
    positions, measured = rigid_scan_geometries(job)
    assert positions.shape == (5, 3, 3)
    d1 = np.linalg.norm(positions[:, 1] - positions[:, 0], axis=1)
    d2 = np.linalg.norm(positions[:, 2] - positions[:, 0], axis=1)
    np.testing.assert_allclose(d1, np.linspace(0.85, 1.25, 5), atol=1e-12)
    np.testing.assert_allclose(d2, d1, atol=1e-12)
    np.testing.assert_allclose(measured[:, 0], d1, atol=1e-12)
    with pytest.raises(ValueError, match="not a rigid PES scan"):
        rigid_scan_geometries(Job("x", _water()))


def test_rigid_scan_equals_the_ase_path(water_fn) -> None:
    iface, fn, jobs = water_fn
    got = fn(iface.values[None])
    calculator = ReaxFFCalculator(ffield=FFIELD)
    for job in jobs:
        ref = run_job(job, calculator, properties=("forces", "charges"))
        r = got[job.id]
        np.testing.assert_allclose(
            r.scan_energies, ref.scan_energies, rtol=0, atol=1e-9
        )
        np.testing.assert_allclose(r.scan_coordinates, ref.scan_coordinates, atol=1e-10)
        np.testing.assert_allclose(r.scan_positions, ref.scan_positions, atol=1e-12)
        np.testing.assert_allclose(r.energy, ref.energy, atol=1e-9)
        np.testing.assert_allclose(r.forces, ref.forces, atol=1e-8)
        np.testing.assert_allclose(r.charges, ref.charges, atol=1e-9)
        np.testing.assert_allclose(r.positions, ref.positions, atol=1e-12)
        assert r.status.tolist() == ref.status.tolist() == [0]


def test_rigid_scan_batches_and_survives_a_bad_vector(water_fn) -> None:
    iface, fn, _ = water_fn
    x = np.repeat(iface.values[None], 3, axis=0)
    x[1, iface.names.index("H.O:D_e^sigma")] *= 1.1
    x[2, 0] = np.nan
    r = fn(x)["oh"]
    assert r.scan_energies.shape == (3, 9)
    assert np.all(np.isfinite(r.scan_energies[:2]))
    assert not np.allclose(r.scan_energies[0], r.scan_energies[1])
    assert np.isnan(r.scan_energies[2]).all() and r.status[2] != 0


def test_rigid_scan_energy_jacobian_equals_central_differences(water_fn) -> None:
    iface, fn, jobs = water_fn
    names = list(iface.names)
    picked = [
        names.index(n) for n in ("H.O:D_e^sigma", "H.O:p_bo1", "H.O:p_bo2", "O:chi")
    ]
    x0 = iface.values.copy()
    res = fn(x0[None], grad_indices=picked)
    for k, col in enumerate(picked):
        h = 1e-6 * max(1.0, abs(x0[col]))
        up, down = x0.copy(), x0.copy()
        up[col] += h
        down[col] -= h
        both = fn(np.stack([up, down]))
        for job in jobs:
            jac = res[job.id].jacobians["scan_energies"][0, :, k]
            fd = (both[job.id].scan_energies[0] - both[job.id].scan_energies[1]) / (
                2 * h
            )
            np.testing.assert_allclose(jac, fd, atol=1e-6 * max(1.0, np.abs(fd).max()))
    # the geometry of a rigid scan does not depend on the parameters
    assert np.all(res["oh"].jacobians["positions"] == 0)


def test_engines_of_one_force_field_share_compiled_functions(water_fn) -> None:
    iface, fn, jobs = water_fn
    fn(iface.values[None])
    other = ReaxFFEngine(FFIELD).setup(jobs[:1], iface.names)
    other(iface.values[None])
    assert other.model is fn.model
    assert other.buckets[0].fns["values", True] is fn.buckets[0].fns["values", True]


def test_large_batches_are_cut_into_chunks_of_one_shape() -> None:
    assert _chunks(5, 64) == [(0, 5, 8)]
    assert _chunks(64, 64) == [(0, 64, 64)]
    assert _chunks(70, 64) == [(0, 64, 64), (64, 70, 64)]
    assert _chunks(2000, 64)[-1] == (1984, 2000, 64)


def test_forces_stay_finite_for_a_positive_p_bo5_at_long_range() -> None:
    """p_bo5 > 0 (sampled in its default range [-1, 1]) made the switched-off double-pi
    bond order overflow at 2.5 Å and its masked gradient NaN; the forces must be
    finite, equal to those with p_bo5 = 0 (the component is off for H), and equal to
    central differences of the energy within LAMMPS's QEq convention (forces without
    the charge response, here 0.5 % off)."""
    engine = ReaxFFEngine(FFIELD)
    iface = engine.default_interface()
    values = iface.values.copy()
    values[iface.names.index("H.O:p_bo5")] = 0.99
    values[iface.names.index("H.O:p_bo6")] = 7.2
    atoms = _water()
    atoms.positions[1] = [2.5, 0.0, 0.0]
    from parafit.engines.reaxff.engine import shared_model

    calc = ReaxFFCalculator.from_model(
        shared_model(engine.forcefield, iface.names), values
    )
    atoms.calc = calc
    forces = atoms.get_forces()
    assert np.all(np.isfinite(forces))
    values[iface.names.index("H.O:p_bo5")] = 0.0
    plain = atoms.copy()
    plain.calc = ReaxFFCalculator.from_model(
        shared_model(engine.forcefield, iface.names), values
    )
    np.testing.assert_array_equal(forces, plain.get_forces())
    h = 1e-5
    for i, k in ((0, 0), (1, 0), (2, 1)):
        up, down = atoms.copy(), atoms.copy()
        up.positions[i, k] += h
        down.positions[i, k] -= h
        up.calc = down.calc = calc
        fd = -(up.get_potential_energy() - down.get_potential_energy()) / (2 * h)
        assert forces[i, k] == pytest.approx(fd, rel=1e-2)


def test_energy_only_data_sets_get_the_energy_jacobian_alone() -> None:
    """A training set that reads only energies (here ``pes`` and ``energy``) of
    single points gets the cheap energy-only jacobian; the loss gradient still equals
    central differences of the loss."""
    from parafit.dataset import DataSet
    from parafit.jobs import JobCollection
    from parafit.objective import Objective

    jobs = JobCollection([*_scans()[:2], Job("eq", _water())])
    engine = ReaxFFEngine(FFIELD)
    names = ("H.O:D_e^sigma", "H.O:p_bo1", "H.O:p_bo2", "O:chi", "H:eta")
    iface = engine.default_interface().with_active(names)
    training = DataSet()
    training.add_entry("pes('oh')", np.linspace(0.0, 3.0, 9) ** 2, sigma=0.05)
    training.add_entry("pes('sym')", np.linspace(0.0, 1.0, 5), sigma=0.05)
    training.add_entry("energy('eq')", -10.5, sigma=0.1)
    objective = Objective(engine, iface, jobs, training)
    fn = objective._training_fn
    assert fn.jacobian_fields == {
        "oh": frozenset({"scan"}),
        "sym": frozenset({"scan"}),
        "eq": frozenset({"energy"}),
    }
    assert all(fn._energy_only(b) for b in fn.buckets)
    raw = fn(iface.values[None], grad_indices=iface.active_indices.tolist())
    assert set(raw["oh"].jacobians) == {"scan_energies", "energy"}
    x = np.full((1, len(names)), 0.4)
    loss, grad = objective.value_and_grad(x)
    h = 1e-6
    for k in range(len(names)):
        up, down = x.copy(), x.copy()
        up[0, k] += h
        down[0, k] -= h
        fd = (objective(up)[0] - objective(down)[0]) / (2 * h)
        assert grad[0, k] == pytest.approx(fd, rel=1e-5, abs=1e-6 * max(1.0, loss[0]))


def test_single_points_read_for_energies_and_charges_skip_their_forces() -> None:
    """Single points whose energies and charges alone are read compute no forces
    (``forces`` None, the gradient skipped) and the same energies and charges; a
    bucket with a job read for its forces keeps them."""
    from parafit.dataset import DataSet
    from parafit.jobs import JobCollection
    from parafit.objective import Objective

    stretched = _water()
    stretched.positions[1, 0] += 0.2
    jobs = JobCollection([Job("eq", _water()), Job("st", stretched)])
    engine = ReaxFFEngine(FFIELD)
    iface = engine.default_interface()
    x = np.repeat(iface.values[None], 2, axis=0)
    x[1, iface.names.index("H.O:D_e^sigma")] *= 1.05
    full = engine.setup(list(jobs), iface.names)(x)

    training = DataSet()
    training.add_entry("energy('st') - energy('eq')", 1.0, sigma=0.1)
    training.add_entry("charges('eq', 0)", -0.6, sigma=0.1)
    fn = Objective(engine, iface, jobs, training)._training_fn
    assert all(fn._skips_forces(b) for b in fn.buckets)
    got = fn(x)
    for job_id in ("eq", "st"):
        assert got[job_id].forces is None
        assert np.abs(full[job_id].forces).max() > 0
        np.testing.assert_allclose(got[job_id].energy, full[job_id].energy, rtol=1e-12)
        np.testing.assert_allclose(
            got[job_id].charges, full[job_id].charges, atol=1e-12
        )

    training.add_entry("forces('st', 1, 0)", 0.0, sigma=1.0)
    fn = Objective(engine, iface, jobs, training)._training_fn
    assert not any(fn._skips_forces(b) for b in fn.buckets)
    got = fn(x)
    np.testing.assert_allclose(got["st"].forces, full["st"].forces, rtol=1e-10)
