"""parafit's batched JAX ReaxFF engine: golden per-term energies, equality with the
LAMMPS engine on benchmark structures, parameter jacobians against central finite
differences, bad vectors, batching, and the ASE calculator."""

import json

import numpy as np
import pytest
from ase import units
from ase.io import read

from parafit.engines.base import Status
from parafit.engines.reaxff.calculator import ReaxFFCalculator
from parafit.engines.reaxff.engine import ReaxFFEngine
from parafit.engines.reaxff.model import TERMS
from parafit.jobs import GeometryOptimization, Job, SinglePoint

KCAL = units.kcal / units.mol
GOLDEN_C_ELE, LAMMPS_C_ELE = 332.0638, 332.06371
GOLDEN_KEYS = {
    "E_bonded": ("E_bond",),
    "E_atom": ("E_over", "E_under"),
    "E_lone_pair": ("E_lone_pair",),
    "E_val": ("E_val", "E_pen"),
    "E_coa": ("E_coa",),
    "E_tors": ("E_tors",),
    "E_hb": ("E_hb",),
    "E_conj": ("E_conj",),
    "E_vdw": ("E_vdw",),
    "E_charge": ("E_charge",),
}


@pytest.mark.parametrize("system", ["ammonia", "isobutene", "water_300_no_pbc"])
def test_calculator_terms_equal_golden(shared_data, system: str) -> None:
    """Every term within max(1e-6 relative, 1e-4 kcal/mol); Coulomb after the constant."""
    root = shared_data / "reaxff-golden" / system
    gold = json.loads((root / "results.json").read_text())
    atoms = read(root / "geo.pdb")
    atoms.pbc = False
    atoms.calc = ReaxFFCalculator(root / "ffield")
    energy = atoms.get_potential_energy()
    terms = atoms.calc.results["energy_terms"]
    assert set(terms) == set(TERMS)
    for key, parts in GOLDEN_KEYS.items():
        ours = sum(terms[p] for p in parts)
        assert abs(ours - gold[key]) <= max(1e-6 * abs(gold[key]), 1e-4), key
    coul = terms["E_coul"] * GOLDEN_C_ELE / LAMMPS_C_ELE
    assert abs(coul - gold["E_coul"]) <= 1e-9 * abs(gold["E_coul"])
    assert energy == pytest.approx(sum(terms.values()) * KCAL, rel=1e-12)
    q = atoms.calc.results["charges"]
    assert abs(q.sum()) < 1e-10


def _pick(jobs, ids):
    return [jobs[i] for i in ids]


@pytest.fixture(scope="module")
def small_set(disulfide_jobs):
    """Three small disulfide molecules: two single points and one FIRE relaxation."""
    root, jobs = disulfide_jobs
    sp = [j for j in jobs if isinstance(j.task, SinglePoint) and len(j.atoms) <= 4][:2]
    go = next(
        j
        for j in jobs
        if isinstance(j.task, GeometryOptimization) and len(j.atoms) <= 4
    )
    return root, [*sp, go]


@pytest.fixture(scope="module")
def small_fn(small_set):
    root, jobs = small_set
    engine = ReaxFFEngine(root / "ffield_lit", max_chunk=1)  # one compiled batch size
    iface = engine.default_interface()
    return engine, iface, engine.setup(jobs, iface.names), jobs


def test_engine_batches_and_survives_bad_vectors(small_fn) -> None:
    engine, iface, fn, jobs = small_fn
    x0 = iface.values
    names = list(iface.names)
    x1 = x0.copy()
    x1[names.index("H.S:D_e^sigma")] *= 1.05
    bad = np.full_like(x0, np.nan)
    res = fn(np.stack([x0, x1, bad]))
    single = fn(x0[None])
    for job in jobs:
        r = res[job.id]
        assert r.energy.shape == (3,)
        assert np.isfinite(r.energy[:2]).all() and np.isnan(r.energy[2])
        assert r.status[2] & Status.FAILED
        assert r.energy[0] != r.energy[1]
        np.testing.assert_allclose(single[job.id].energy, r.energy[:1], rtol=1e-12)
        assert r.charges.shape == (3, len(job.atoms))


def test_engine_equals_lammps_engine(small_fn) -> None:
    pytest.importorskip("lammps")
    from parafit.engines.reaxff.lammps import LAMMPSReaxFFEngine

    engine, iface, fn, jobs = small_fn
    sp = [j for j in jobs if isinstance(j.task, SinglePoint)]
    ref_engine = LAMMPSReaxFFEngine(engine.path)
    ref = ref_engine.setup(sp, iface.names)(iface.values[None])
    ours = fn(iface.values[None])
    for job in sp:
        e_ref, e = ref[job.id].energy[0], ours[job.id].energy[0]
        assert abs(e - e_ref) <= max(1e-6 * abs(e_ref), 1e-4 * KCAL), job.id
        np.testing.assert_allclose(
            ours[job.id].forces[0], ref[job.id].forces[0], atol=1e-4 * KCAL
        )
        np.testing.assert_allclose(
            ours[job.id].charges[0], ref[job.id].charges[0], atol=1e-6
        )


def test_jacobians_equal_central_differences(small_fn) -> None:
    engine, iface, fn, jobs = small_fn
    names = list(iface.names)
    picked = [
        names.index(n)
        for n in ("H.S:D_e^sigma", "H.S:p_bo2", "H:chi", "S:eta", "S:gamma")
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
            jac = res[job.id].jacobians
            assert jac is not None
            fd = (both[job.id].energy[0] - both[job.id].energy[1]) / (2 * h)
            scale = max(1.0, abs(fd))
            if isinstance(job.task, GeometryOptimization):
                # the relaxation stops at fmax, so finite differences carry its noise
                assert abs(jac["energy"][0, k] - fd) <= 2e-3 * scale, (
                    job.id,
                    names[col],
                )
                continue
            assert abs(jac["energy"][0, k] - fd) <= 1e-6 * scale, (job.id, names[col])
            fd_f = (both[job.id].forces[0] - both[job.id].forces[1]) / (2 * h)
            np.testing.assert_allclose(
                jac["forces"][0, ..., k], fd_f, atol=1e-6 * max(1, np.abs(fd_f).max())
            )
            fd_q = (both[job.id].charges[0] - both[job.id].charges[1]) / (2 * h)
            np.testing.assert_allclose(jac["charges"][0, ..., k], fd_q, atol=1e-7)


def test_relaxed_positions_jacobian_matches_tight_relaxation(small_set) -> None:
    """Implicit derivative of a relaxed geometry vs differences of tightly converged relaxations."""
    root, jobs = small_set
    go = next(j for j in jobs if isinstance(j.task, GeometryOptimization))
    tight = Job(
        go.id,
        go.atoms,
        GeometryOptimization(optimizer="lbfgs", fmax=1e-6, max_iterations=2000),
    )
    engine = ReaxFFEngine(root / "ffield_lit", max_chunk=1)
    iface = engine.default_interface()
    fn = engine.setup([tight], iface.names)
    names = list(iface.names)
    col = names.index("H.S:p_bo2")
    x0 = iface.values.copy()
    res = fn(x0[None], grad_indices=[col])
    h = 1e-4
    up, down = x0.copy(), x0.copy()
    up[col] += h
    down[col] -= h
    both = fn(np.stack([up, down]))
    r = both[tight.id]
    assert (r.status & Status.GEOOPT_NOT_CONVERGED == 0).all()

    def bond_lengths(p):
        d = p[:, None, :] - p[None, :, :]
        return np.linalg.norm(d, axis=-1)

    pos = res[tight.id].positions[0]
    dpos = res[tight.id].jacobians["positions"][0, ..., 0]
    d0 = bond_lengths(pos)
    eps = 1e-6
    deriv = (bond_lengths(pos + eps * dpos) - bond_lengths(pos - eps * dpos)) / (
        2 * eps
    )
    fd = (bond_lengths(r.positions[0]) - bond_lengths(r.positions[1])) / (2 * h)
    assert np.abs(fd).max() > 1e-3  # the parameter moves the geometry
    np.testing.assert_allclose(deriv, fd, atol=1e-3 * np.abs(fd).max() + 1e-6)
    fd_e = (r.energy[0] - r.energy[1]) / (2 * h)
    assert res[tight.id].jacobians["energy"][0, 0] == pytest.approx(
        fd_e, rel=1e-4, abs=1e-8
    )
    assert d0.shape == (len(go.atoms), len(go.atoms))


def test_buckets_cut_where_they_pad_least(disulfide_jobs) -> None:
    """Disulfide's nine relaxations (3-26 atoms) in two buckets: the seven small
    molecules together and the two 24/26-atom ones apart (not {<= 8}, {9..26})."""
    root, jobs = disulfide_jobs
    ids = ["hsshGeo", "h2sGeo", "mdtBase", "dmteBase", "dmds", "s8", "bnz"]
    relax = _pick(jobs, [*ids, "dpds", "dpods"])  # the training set's relaxations
    assert all(isinstance(j.task, GeometryOptimization) for j in relax)
    fn = ReaxFFEngine(root / "ffield_lit").setup(relax, [])
    groups = sorted(
        (sorted(len(p.job.atoms) for p in b.plans) for b in fn.buckets), key=len
    )
    assert [len(g) for g in groups] == [2, 7]
    assert groups[0] == [24, 26] and max(groups[1]) == 12
    from parafit.engines.reaxff.engine import _padded_cost, _partition, _plan_sizes

    plans = [p for b in fn.buckets for p in b.plans]
    one = _partition(plans, 1)
    assert len(one) == 1 and len(one[0]) == 9
    parts = _partition(plans, 3)
    assert sorted(id(p) for part in parts for p in part) == sorted(map(id, plans))

    def work(part):
        return _padded_cost(len(part), np.max([_plan_sizes(p) for p in part], axis=0))

    assert sum(map(work, parts)) <= sum(work(b.plans) for b in fn.buckets)


def test_cpu_single_point_calls_stay_small_for_big_buckets(disulfide_jobs) -> None:
    """On a CPU, vectors per single-point call shrink as a bucket's work grows (its
    arrays stay in cache): one vector for 10-atom molecules, many for 3-atom ones."""
    import jax

    if jax.default_backend() != "cpu":
        pytest.skip("the rule is for CPUs")
    root, jobs = disulfide_jobs
    sp = [j for j in jobs if isinstance(j.task, SinglePoint)]
    fn = ReaxFFEngine(root / "ffield_lit", max_chunk=16).setup(sp, [])
    chunks = {b.n_atoms: fn._chunk_size(b) for b in fn.buckets}
    big = max(chunks)
    assert big >= 10 and chunks[big] == 1
    tiny = [j for j in sp if len(j.atoms) <= 3][:4]
    fn_tiny = ReaxFFEngine(root / "ffield_lit", max_chunk=16).setup(tiny, [])
    assert [fn_tiny._chunk_size(b) for b in fn_tiny.buckets] == [16]
