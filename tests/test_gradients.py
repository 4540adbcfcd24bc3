"""Exact parameter gradients: LJ engine jacobians, extractor and expression derivatives,
loss gradients and Objective.value_and_grad against central finite differences.

The data set is the committed argon example (examples/argon_lj: Aziz HFDID1 reference
energies and forces of dimers, trimers, Ar13 clusters and liquid frames), plus an Ar13
cluster relaxed by the engine with a distance, an angle and a non-affine entry.
"""

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.cluster import Icosahedron

from parafit import DataSet, JobCollection
from parafit.constraints import parse_constraints
from parafit.engines.base import JobResults, Status, merge_batches, stack_results
from parafit.engines.lj import LJEngine
from parafit.errors import InputError
from parafit.expressions import parse_expression
from parafit.extractors import EXTRACTORS, register_extractor
from parafit.jobs import GeometryOptimization, Job, PESScan, ScanCoordinate
from parafit.loss import compute_loss, loss_gradient
from parafit.objective import Objective
from parafit.parameters import Parameter, ParameterInterface
from parafit.units import Unit

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "argon_lj"
TIGHT = GeometryOptimization(fmax=1e-8, max_iterations=5000)


def ar13(seed: int = 3, stdev: float = 0.05) -> Atoms:
    cluster = Icosahedron("Ar", 2, latticeconstant=5.3)
    cluster.rattle(stdev, seed=seed)
    return cluster


def central(fn, p0: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Central differences of fn along each coordinate k of p0's last axis, stacked on a
    new last axis (for a batch p0 (n, m) and fn -> (n,): the (n, m) gradients)."""
    cols = []
    for k, h in enumerate(steps):
        e = np.zeros_like(p0)
        e[..., k] = h
        cols.append((fn(p0 + e) - fn(p0 - e)) / (2 * h))
    return np.stack(cols, axis=-1)


# ---- engine -------------------------------------------------------------------------


def test_lj_single_point_jacobians_match_central_differences():
    engine = LJEngine(["Ar", "Ne"], cutoff=8.0)
    names = list(engine.parameter_names)
    periodic = bulk("Ar", "fcc", a=5.3, cubic=True).repeat(2)
    periodic.rattle(0.05, seed=1)
    periodic.symbols[[0, 3, 5]] = "Ne"
    cluster = ar13()
    cluster.symbols[[1, 4]] = "Ne"
    fn = engine.setup([Job("bulk", periodic), Job("cluster", cluster)], names)
    p0 = np.array([0.0104, 3.82, 0.006, 3.5, 0.004, 3.1])
    grad_indices = [5, 0, 1, 3, 2]  # any subset, any order
    res = fn(np.stack([p0, 1.1 * p0]), grad_indices=grad_indices)
    for job_id, fields in (
        ("bulk", ("energy", "forces", "stress", "positions")),
        ("cluster", ("energy", "forces", "positions")),
    ):
        r = res[job_id]
        assert r.stress is None or "stress" in r.jacobians
        for field in fields:
            J = r.jacobians[field]
            assert J.shape == (2, *getattr(r, field).shape[1:], len(grad_indices))

            def value(p, field=field, job_id=job_id):
                return getattr(fn(p[None])[job_id], field)[0]

            fd = central(
                lambda q, f=field, j=job_id: value(_put(p0, grad_indices, q), f, j),
                p0[grad_indices],
                1e-6 * p0[grad_indices],
            )
            scale = max(np.abs(fd).max(), 1e-30)
            assert np.abs(J[0] - fd).max() <= 1e-7 * scale, (job_id, field)
    assert fn(p0[None])["bulk"].jacobians is None  # nothing asked, nothing computed


def _put(p0: np.ndarray, indices: list[int], q: np.ndarray) -> np.ndarray:
    p = p0.copy()
    p[indices] = q
    return p


def test_lj_failed_vector_has_nan_jacobians_and_bad_indices_raise():
    engine = LJEngine(["Ar"], cutoff=8.0)
    fn = engine.setup(
        [Job("c", ar13()), Job("g", ar13(), task=TIGHT)], engine.parameter_names
    )
    res = fn(np.array([[0.0104, 3.82], [-0.01, 3.82]]), grad_indices=[0, 1])
    for r in res.values():
        assert list(r.status & Status.FAILED) == [0, 1]
        for J in r.jacobians.values():
            assert np.isfinite(J[0]).all() and np.isnan(J[1]).all()
    with pytest.raises(ValueError, match="grad_indices"):
        fn(np.array([[0.0104, 3.82]]), grad_indices=[2])


def test_relaxed_cluster_scaling_law():
    """With shift=False and every pair inside the cutoff, E = eps f(x / rmin): the relaxed
    geometry scales with rmin and does not depend on eps, and E* = eps f*."""
    engine = LJEngine(["Ar"], cutoff=20.0, shift=False)
    eps, rmin = 0.0104, 3.82
    job = Job("g", ar13(), task=GeometryOptimization(fmax=1e-11, max_iterations=5000))
    fn = engine.setup([job], engine.parameter_names)
    r = fn(np.array([[eps, rmin]]), grad_indices=[0, 1])["g"]
    assert r.status[0] == Status.OK
    J = r.jacobians
    # no dependence on eps (up to the relaxation residual, fmax / eps / stiffness)
    assert np.abs(J["positions"][0, ..., 0]).max() < 1e-7
    np.testing.assert_allclose(J["forces"][0], 0.0, atol=1e-7)  # stays a minimum
    # distances: d d_ij / d rmin = d_ij / rmin (exact to the relaxation's tolerance)
    distance = EXTRACTORS.get("distance")
    i, j = np.triu_indices(13, 1)
    d = distance.function(r, None, i, j, mic=False)[0]
    dd = distance.jacobian(r, job, (i, j), {"mic": False}, n_grad=2)
    np.testing.assert_allclose(dd[0, :, 1], d / rmin, rtol=1e-8)
    np.testing.assert_allclose(dd[0, :, 0], 0.0, atol=1e-7)
    np.testing.assert_allclose(J["energy"][0], [r.energy[0] / eps, 0.0], atol=1e-9)


def test_relaxed_periodic_geometry_matches_central_differences():
    """Ar/Ne crystal relaxed at fixed cell: positions, stress and energy jacobians.

    The tolerance reflects the relaxation (fmax 1e-8 eV/Å), which limits both the
    implicit derivative at the relaxed point and the finite differences through it.
    """
    engine = LJEngine(["Ar", "Ne"], cutoff=7.0)
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True).repeat((2, 1, 1))
    atoms.symbols[[0, 3]] = "Ne"  # the minimum is not fixed by symmetry
    atoms.rattle(0.05, seed=1)
    fn = engine.setup([Job("g", atoms, task=TIGHT)], engine.parameter_names)
    p0 = np.array([0.0104, 3.82, 0.006, 3.5, 0.004, 3.1])
    columns = [1, 2]  # Ar.Ar:rmin, Ar.Ne:eps
    r = fn(p0[None], grad_indices=columns)["g"]
    assert r.status[0] == Status.OK
    fields = ("positions", "stress", "energy")
    plus_minus = {}
    for k, c in enumerate(columns):
        h = 1e-4 * p0[c]
        for sign in (1, -1):
            p = p0.copy()
            p[c] += sign * h
            plus_minus[k, sign] = fn(p[None])["g"]
    for field, rtol in zip(fields, (1e-3, 1e-4, 1e-5), strict=True):
        J = r.jacobians[field][0]
        for k, c in enumerate(columns):
            a = getattr(plus_minus[k, 1], field)[0]
            b = getattr(plus_minus[k, -1], field)[0]
            fd = (a - b) / (2e-4 * p0[c])
            got = J[..., k]
            if field == "positions":  # compare without the rigid translation
                fd, got = fd - fd.mean(axis=0), got - got.mean(axis=0)
            assert np.abs(got - fd).max() <= rtol * np.abs(fd).max(), (field, c)


def test_relaxed_cluster_with_fixed_atoms():
    """Two fixed atoms leave one rigid rotation (about their axis); distances of the
    relaxed Ar/Ne cluster follow central differences through the relaxation."""
    engine = LJEngine(["Ar", "Ne"], cutoff=20.0)
    cluster = ar13(seed=2, stdev=0.1)
    cluster.symbols[[1, 4]] = "Ne"
    task = GeometryOptimization(fmax=1e-10, max_iterations=5000)
    job = Job("g", cluster, task=task, metadata={"fixed_atoms": [0, 5]})
    fn = engine.setup([job], engine.parameter_names)
    p0 = np.array([0.0104, 3.82, 0.006, 3.5, 0.004, 3.1])
    r = fn(p0[None], grad_indices=[2, 3])["g"]
    J = r.jacobians["positions"][0]
    assert np.abs(J[[0, 5]]).max() == 0.0
    i, j = np.triu_indices(13, 1)
    distance = EXTRACTORS.get("distance")
    dd = distance.jacobian(r, job, (i, j), {"mic": False}, n_grad=2)[0]
    for k, c in enumerate([2, 3]):
        h = 1e-3 * p0[c]
        plus, minus = p0.copy(), p0.copy()
        plus[c] += h
        minus[c] -= h
        fd = (
            distance.function(fn(plus[None])["g"], job, i, j, mic=False)[0]
            - distance.function(fn(minus[None])["g"], job, i, j, mic=False)[0]
        ) / (2 * h)
        assert np.abs(dd[:, k] - fd).max() <= 1e-4 * np.abs(fd).max()


def test_lj_fallback_cases_give_nan_and_rigid_scan_is_exact():
    engine = LJEngine(["Ar"], cutoff=8.0)
    crystal = bulk("Ar", "fcc", a=5.3, cubic=True)
    crystal.rattle(0.02, seed=4)
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.9]])
    scan = PESScan(
        coordinates=(ScanCoordinate("distance", (0, 1), (3.6, 3.8, 4.2)),),
        relaxed=False,
    )
    jobs = [
        Job(
            "cell",
            crystal,
            task=GeometryOptimization(fmax=1e-2, relax_cell=True, max_iterations=20),
        ),
        Job("loose", ar13(stdev=0.2), task=GeometryOptimization(max_iterations=2)),
        Job("scan", dimer, task=scan),
    ]
    fn = engine.setup(jobs, engine.parameter_names)
    p0 = np.array([0.0104, 3.82])
    res = fn(p0[None], grad_indices=[0, 1])
    assert res["cell"].status[0] == Status.OK  # converged, but the cell moved
    assert np.isnan(res["cell"].jacobians["positions"]).all()
    assert res["loose"].status[0] & Status.GEOOPT_NOT_CONVERGED
    assert np.isnan(res["loose"].jacobians["energy"]).all()
    J = res["scan"].jacobians["scan_energies"][0]
    scan_fn = engine.setup(jobs[2:], engine.parameter_names)
    fd = central(lambda p: scan_fn(p[None])["scan"].scan_energies[0], p0, 1e-6 * p0)
    np.testing.assert_allclose(J, fd, rtol=1e-7, atol=1e-12)


def test_stack_and_merge_carry_jacobians():
    engine = LJEngine(["Ar"], cutoff=8.0)
    fn = engine.setup([Job("c", ar13())], engine.parameter_names)
    a = fn(np.array([[0.0104, 3.82]]), grad_indices=[1])
    b = fn(np.array([[0.009, 3.7], [0.011, 3.9]]), grad_indices=[1])
    merged = merge_batches([a, b])["c"]
    assert merged.jacobians["forces"].shape == (3, 13, 3, 1)
    np.testing.assert_array_equal(
        merged.jacobians["energy"][1:], b["c"].jacobians["energy"]
    )
    plain = fn(np.array([[0.0104, 3.82]]))["c"]
    mixed = stack_results([a["c"], plain])  # a part without jacobians is NaN
    assert np.isfinite(mixed.jacobians["energy"][0]).all()
    assert np.isnan(mixed.jacobians["energy"][1]).all()


# ---- extractors and expressions ------------------------------------------------------


def _fake_results(positions: np.ndarray, jac: np.ndarray, **fields) -> JobResults:
    n = positions.shape[0]
    return JobResults(
        energy=np.zeros(n),
        positions=positions,
        cell=np.zeros((n, 3, 3)),
        pbc=np.zeros(3, dtype=bool),
        status=np.zeros(n, dtype=int),
        jacobians={"positions": jac, **fields},
    )


@pytest.mark.parametrize(
    "name, args",
    [
        ("distance", (0, 3)),
        ("angle", (0, 1, 2)),
        ("dihedral", (0, 1, 2, 3)),
    ],
)
def test_geometric_extractor_derivatives_are_accurate(name, args):
    """Central differences in results space against a directional derivative taken
    with a much larger, Richardson-extrapolated step."""
    rng = np.random.default_rng(5)
    positions = rng.normal(0.0, 1.5, (2, 5, 3))
    jac = rng.normal(0.0, 1.0, (2, 5, 3, 4))
    job = Job("j", Atoms("Ar5", positions=positions[0]))
    ext = EXTRACTORS.get(name)
    got = ext.jacobian(
        _fake_results(positions, jac), job, args, {"mic": False}, n_grad=4
    )
    assert got.shape == (2, 4)

    def along(t, k):
        r = _fake_results(positions + t * jac[..., k], jac)
        return ext.function(r, job, *args, mic=False)

    for k in range(4):
        d1 = (along(1e-3, k) - along(-1e-3, k)) / 2e-3
        d2 = (along(5e-4, k) - along(-5e-4, k)) / 1e-3
        reference = (4 * d2 - d1) / 3
        np.testing.assert_allclose(got[:, k], reference, rtol=1e-8, atol=1e-9)


def test_linear_extractors_map_columns_exactly_and_missing_jacobians_are_nan():
    rng = np.random.default_rng(6)
    forces = rng.normal(size=(3, 4, 3))
    jf = rng.normal(size=(3, 4, 3, 2))
    r = replace(
        _fake_results(np.zeros((3, 4, 3)), np.zeros((3, 4, 3, 2)), forces=jf),
        forces=forces,
    )
    job = Job("j", Atoms("Ar4", positions=np.eye(4, 3) * 3))
    ext = EXTRACTORS.get("forces")
    np.testing.assert_array_equal(ext.jacobian(r, job, (), {}, n_grad=2), jf)
    atoms = np.array([2, 0])
    np.testing.assert_array_equal(
        ext.jacobian(r, job, (atoms, np.array([1, 2])), {}, n_grad=2),
        jf[:, [2, 0], [1, 2], :],
    )
    energy = EXTRACTORS.get("energy").jacobian(r, job, (), {}, n_grad=2)
    assert energy.shape == (3, 2) and np.isnan(energy).all()  # no energy jacobian
    volume = EXTRACTORS.get("cell_volume")
    assert volume.jacobian(r, job, (), {}, n_grad=2).shape == (3, 2)


def test_plan_forward_mode_matches_central_differences():
    plan = parse_expression(
        "(energy('a') - 2*energy('b')) / (energy('c') * energy('a')) + 1"
    )
    rng = np.random.default_rng(7)
    v = [rng.uniform(1, 2, (3,)), rng.uniform(1, 2, (3,)), rng.uniform(1, 2, (3, 4))]
    t = [rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), rng.normal(size=(3, 4, 2))]
    value, tangent = plan.evaluate_jvp(v, t)
    np.testing.assert_array_equal(value, plan.evaluate(v))
    assert tangent.shape == (3, 4, 2)
    for k in range(2):
        h = 1e-6
        plus = plan.evaluate([a + h * d[..., k] for a, d in zip(v, t, strict=True)])
        minus = plan.evaluate([a - h * d[..., k] for a, d in zip(v, t, strict=True)])
        np.testing.assert_allclose(
            tangent[..., k], (plus - minus) / (2 * h), rtol=1e-6, atol=1e-9
        )


@pytest.mark.parametrize("kind", ["sse", "sae", "mae", "rmse"])
def test_loss_gradient_matches_central_differences(kind):
    jobs = JobCollection(
        [Job("a", Atoms("Ar")), Job("b", Atoms("Ar2", positions=np.eye(2, 3) * 4))]
    )
    ds = DataSet()
    ds.add_entry("energy('a')", 1.0, sigma=0.5, weight=2.0)
    ds.add_entry(
        "forces('b')",
        np.arange(6.0).reshape(2, 3),
        sigma=0.2,
        weight=np.array([1, 0, 1, 1, 2, 1.0]),
    )
    ds.add_entry("energy('b') - energy('a')", -0.5, sigma=0.1, weight=0.0)
    compiled = ds.compile(jobs)
    y = np.random.default_rng(8).normal(size=(2, compiled.n_values)) + 0.3
    result, grad = loss_gradient(y, compiled, kind)
    np.testing.assert_array_equal(result.loss, compute_loss(y, compiled, kind).loss)
    fd = central(
        lambda q: compute_loss(q, compiled, kind).loss, y, np.full(y.shape[1], 1e-6)
    )
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
    y[1, 0] = np.nan
    _, grad = loss_gradient(y, compiled, kind)
    assert np.isfinite(grad[0]).all() and np.isnan(grad[1]).all()


# ---- objective ------------------------------------------------------------------------


def argon_problem() -> tuple[JobCollection, DataSet, ParameterInterface]:
    jobs = JobCollection.load(EXAMPLE / "job_collection.yaml")
    ds = DataSet.load(EXAMPLE / "training_set.yaml")
    iface = ParameterInterface.load(EXAMPLE / "parameter_interface.yaml")
    jobs.add(Job("ar13_relaxed", ar13(), task=TIGHT))
    ds.add_entry("distance('ar13_relaxed', 0, 1)", 3.70, sigma=0.02)
    ds.add_entry("angle('ar13_relaxed', 1, 0, 2)", 61.0, sigma=1.0)
    ds.add_entry(
        "energy('ar13_relaxed') * energy('trimer_01') / energy('dimer_3.80')",
        0.1,
        sigma=0.01,
    )
    return jobs, ds, iface


@pytest.fixture(scope="module")
def argon():
    return argon_problem()


ENGINE = LJEngine(["Ar"], cutoff=12.0, shift=False)  # the example's convention


@pytest.mark.parametrize("kind", ["sse", "sae", "rmse"])
def test_value_and_grad_matches_central_differences(argon, kind):
    jobs, ds, iface = argon
    objective = Objective(ENGINE, iface, jobs, ds, loss=kind)
    assert objective.is_differentiable
    x = np.array([[0.4, 0.45], [0.62, 0.3]])
    loss, grad = objective.value_and_grad(x)
    np.testing.assert_array_equal(loss, objective(x))
    fd = central(objective, x, np.full(2, 1e-6))
    np.testing.assert_allclose(grad, fd, rtol=1e-6)


def test_failed_and_infeasible_vectors_give_inf_and_nan(argon, caplog):
    jobs, ds, _ = argon
    iface = ParameterInterface(
        [
            Parameter("Ar.Ar:eps", 0.01, range=(-0.005, 0.02)),
            Parameter("Ar.Ar:rmin", 3.7, range=(3.3, 4.2)),
        ],
        model="lj",
    )
    constraints = parse_constraints(["p['Ar.Ar:rmin'] < 4.1"], iface)
    objective = Objective(ENGINE, iface, jobs, ds, constraints=constraints)
    x = np.array([[0.0, 0.5], [0.6, 0.5], [0.6, 0.95]])  # eps < 0, fine, rmin > 4.1
    with caplog.at_level(logging.WARNING):
        loss, grad = objective.value_and_grad(x)
    assert np.isinf(loss[[0, 2]]).all() and np.isnan(grad[[0, 2]]).all()
    assert np.isfinite(loss[1]) and np.isfinite(grad[1]).all()
    np.testing.assert_allclose(
        grad[1], objective.value_and_grad(x[1:2])[1][0], rtol=1e-12
    )
    assert "finite differences" not in caplog.text  # failures are not a fallback case
    # outside the cube: clipped, and the clipped coordinate has a 0 gradient
    loss_out, grad_out = objective.value_and_grad(np.array([[0.6, -0.2]]))
    assert np.isfinite(loss_out[0]) and grad_out[0, 1] == 0.0 and grad_out[0, 0] != 0


def _energy_without_derivative(results, job):
    """energy(), but declared as reading a field without jacobians."""
    return np.asarray(results.energy, dtype=float)


register_extractor(
    "test_energy_without_derivative",
    default_sigma=0.01,
    unit=Unit("eV", 1.0),
    dimension="energy",
    needs=frozenset({"energy", "something_else"}),
)(_energy_without_derivative)


def test_missing_derivatives_fall_back_to_finite_differences(argon, caplog):
    jobs, ds, iface = argon
    ds = ds.select(range(30))
    ds.add_entry("test_energy_without_derivative('trimer_02')", -0.03, sigma=0.001)
    objective = Objective(ENGINE, iface, jobs, ds)
    x = np.array([[0.45, 0.5]])
    with caplog.at_level(logging.WARNING, logger="parafit.objective"):
        loss, grad = objective.value_and_grad(x)
    assert "central finite differences" in caplog.text
    fd = central(objective, x, np.full(2, 1e-5))
    np.testing.assert_allclose(grad, fd, rtol=1e-7)


def test_engine_without_jacobians_for_a_job_is_named_in_the_log(caplog):
    crystal = bulk("Ar", "fcc", a=5.4, cubic=True)
    crystal.rattle(0.02, seed=9)
    task = GeometryOptimization(fmax=1e-2, relax_cell=True, max_iterations=20)
    jobs = JobCollection([Job("bulk_relaxed", crystal, task=task)])
    ds = DataSet()
    ds.add_entry("cell_volume('bulk_relaxed')", 150.0, sigma=1.0)
    iface = ParameterInterface.load(EXAMPLE / "parameter_interface.yaml")
    objective = Objective(LJEngine(["Ar"], cutoff=8.0), iface, jobs, ds)
    with caplog.at_level(logging.WARNING, logger="parafit.objective"):
        loss, grad = objective.value_and_grad(np.array([[0.45, 0.5]]))
    assert "'bulk_relaxed'" in caplog.text and "4 extra evaluations" in caplog.text
    assert np.isfinite(loss).all() and np.isfinite(grad).all()


def test_not_differentiable_engine_raises():
    from parafit.engines.ase import ASEEngine

    engine = ASEEngine(
        "ase.calculators.lj:LennardJones",
        fixed={"rc": 8.0},
        parameters={"epsilon": 0.0104, "sigma": 3.4},
    )
    jobs = JobCollection([Job("d", Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.8]]))])
    ds = DataSet()
    ds.add_entry("energy('d')", -0.01, sigma=0.001)
    objective = Objective(engine, engine.default_interface(), jobs, ds)
    assert not objective.is_differentiable
    with pytest.raises(InputError, match="not differentiable"):
        objective.value_and_grad(np.array([[0.5, 0.5]]))
