"""LJEngine against ASE's LennardJones (live) and a direct double loop over images."""

import itertools
import pickle

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.lj import LennardJones

from parafit.engines.base import ENGINES, Engine, EngineFn, Status
from parafit.engines.lj import LJEngine, half_pair_list
from parafit.errors import EngineError, InputError
from parafit.jobs import Job

CUTOFF = 8.5
# (eps [eV], rmin [Å]) per vector: a batch of several vectors evaluated at once
BATCH = np.array([[0.0104, 3.82], [0.012, 3.6], [0.008, 4.05], [0.0104, 3.4]])


def ase_lj(
    atoms: Atoms, eps: float, rmin: float, cutoff: float = CUTOFF
) -> tuple[float, np.ndarray, np.ndarray | None]:
    a = atoms.copy()
    a.calc = LennardJones(
        sigma=rmin / 2 ** (1 / 6), epsilon=eps, rc=cutoff, smooth=False
    )
    stress = a.get_stress() if a.pbc.any() else None
    return a.get_potential_energy(), a.get_forces(), stress


def random_cluster(
    symbols: str | list[str], n: int, seed: int, d_min: float = 3.0, radius: float = 7.5
) -> Atoms:
    """n atoms at random in a sphere, no two closer than d_min [Å] (rejection sampling)."""
    rng = np.random.default_rng(seed)
    pos: list[np.ndarray] = []
    while len(pos) < n:
        p = rng.uniform(-radius, radius, 3)
        if np.linalg.norm(p) <= radius and all(
            np.linalg.norm(p - q) >= d_min for q in pos
        ):
            pos.append(p)
    if isinstance(symbols, str):
        symbols = [symbols] * n
    return Atoms(symbols, positions=pos)


def rattled(atoms: Atoms, seed: int, stdev: float = 0.05) -> Atoms:
    atoms = atoms.copy()
    atoms.positions += np.random.default_rng(seed).normal(
        0.0, stdev, atoms.positions.shape
    )
    return atoms


def argon_256() -> Atoms:
    return rattled(bulk("Ar", "fcc", a=5.26, cubic=True).repeat(4), seed=1)


def evaluate(atoms: Atoms, batch: np.ndarray = BATCH, **engine_kw: object):
    engine = LJEngine(["Ar"], cutoff=CUTOFF, **engine_kw)
    fn = engine.setup([Job("j", atoms)], ["Ar.Ar:eps", "Ar.Ar:rmin"])
    return fn(batch)["j"]


def check_against_ase(atoms: Atoms, batch: np.ndarray = BATCH) -> None:
    res = evaluate(atoms, batch)
    assert res.energy.shape == (len(batch),)
    assert res.forces is not None and res.forces.shape == (len(batch), len(atoms), 3)
    assert np.all(res.status == Status.OK)
    for k, (eps, rmin) in enumerate(batch):
        energy, forces, stress = ase_lj(atoms, eps, rmin)
        assert res.energy[k] == pytest.approx(energy, rel=1e-10, abs=1e-12)
        np.testing.assert_allclose(
            res.forces[k], forces, rtol=0, atol=1e-10 * max(1.0, np.abs(forces).max())
        )
        if stress is None:
            assert res.stress is None
        else:
            assert res.stress is not None
            np.testing.assert_allclose(
                res.stress[k], stress, rtol=0, atol=1e-10 * np.abs(stress).max()
            )


def test_dimer_matches_ase():
    check_against_ase(Atoms("Ar2", positions=[[0, 0, 0], [0.3, -0.2, 3.7]]))


def test_random_cluster_matches_ase():
    check_against_ase(random_cluster("Ar", 38, seed=3))


def test_periodic_256_argon_matches_ase():
    check_against_ase(argon_256())


@pytest.mark.parametrize(
    "atoms",
    [
        rattled(
            bulk("Ar", "fcc", a=5.26, cubic=True), seed=2
        ),  # 4 atoms, cell 5.26 Å < 2 cutoff
        bulk("Ar", "fcc", a=5.26),  # 1 atom, triclinic: only its own images
        rattled(bulk("Ar", "fcc", a=5.26).repeat((2, 1, 1)), seed=4),
        rattled(bulk("Ar", "hcp", a=3.7, c=6.0).repeat((1, 1, 2)), seed=5),
    ],
    ids=["cubic4", "primitive1", "triclinic2", "hcp4"],
)
def test_small_periodic_cells_count_several_images(atoms: Atoms):
    assert min(atoms.cell.lengths()) < CUTOFF  # several images of each atom interact
    check_against_ase(atoms)


@pytest.mark.parametrize(
    "atoms",
    [
        random_cluster("Ar", 30, seed=8),
        argon_256(),
        bulk("Ar", "fcc", a=5.26),
        rattled(bulk("Ar", "hcp", a=3.7, c=6.0).repeat((2, 1, 1)), seed=9),
    ],
    ids=["cluster", "argon256", "primitive1", "hcp"],
)
def test_half_pair_list_matches_ase_neighbor_list(atoms: Atoms):
    from ase.neighborlist import neighbor_list

    i, j, D = half_pair_list(atoms, CUTOFF)
    fi, fd = neighbor_list("id", atoms, CUTOFF)
    assert 2 * len(i) == len(fi)
    assert np.all((i < j) | (i == j))
    np.testing.assert_allclose(
        np.sort(np.repeat(np.linalg.norm(D, axis=1), 2)), np.sort(fd), atol=1e-12
    )
    n = len(atoms)
    np.testing.assert_array_equal(
        np.bincount(i, minlength=n) + np.bincount(j, minlength=n),
        np.bincount(fi, minlength=n),
    )


def test_slab_partial_pbc_matches_ase():
    slab = rattled(bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 1)), seed=6)
    slab.center(vacuum=6.0, axis=2)
    slab.pbc = (True, True, False)
    check_against_ase(slab)


# ---- several elements: direct double loop over periodic images ------------------------


def direct_lj(
    atoms: Atoms,
    pair_params: dict[tuple[str, str], tuple[float, float]],
    cutoff: float,
    shift: bool,
):
    """Energy, forces and stress by looping over every pair and every image in range."""
    pos, sym, n = atoms.positions, atoms.get_chemical_symbols(), len(atoms)
    cell = np.asarray(atoms.cell)
    reps = (
        [
            int(
                np.ceil(
                    cutoff
                    * np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
                    / atoms.get_volume()
                )
            )
            if atoms.pbc[k]
            else 0
            for k in range(3)
        ]
        if atoms.pbc.any()
        else [0, 0, 0]
    )
    energy, forces, virial = 0.0, np.zeros((n, 3)), np.zeros((3, 3))
    for i, j in itertools.product(range(n), range(n)):
        eps, rmin = pair_params[tuple(sorted((sym[i], sym[j])))]  # type: ignore[index]
        for shift_vec in itertools.product(*(range(-r, r + 1) for r in reps)):
            d = pos[j] + np.asarray(shift_vec) @ cell - pos[i]
            r = np.linalg.norm(d)
            if r == 0 or r >= cutoff:
                continue
            u = eps * ((rmin / r) ** 12 - 2 * (rmin / r) ** 6)
            if shift:
                u -= eps * ((rmin / cutoff) ** 12 - 2 * (rmin / cutoff) ** 6)
            du_dr = eps * (-12 * rmin**12 / r**13 + 12 * rmin**6 / r**7)
            energy += 0.5 * u
            forces[i] += du_dr / r * d
            virial += 0.5 * du_dr / r * np.outer(d, d)
    stress = None
    if atoms.pbc.any():
        s = virial / atoms.get_volume()
        stress = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
    return energy, forces, stress


NE_AR = {
    ("Ar", "Ar"): (0.0104, 3.82),
    ("Ar", "Ne"): (0.0061, 3.45),
    ("Ne", "Ne"): (0.0031, 3.09),
}


@pytest.mark.parametrize("shift", [True, False])
@pytest.mark.parametrize("periodic", [False, True])
def test_ne_ar_mixture_matches_double_loop(shift: bool, periodic: bool):
    rng = np.random.default_rng(11)
    if periodic:
        atoms = rattled(bulk("Ar", "fcc", a=5.0, cubic=True), seed=12)
        atoms.symbols[[1, 3]] = "Ne"
        cutoff = 7.0
    else:
        symbols = list(rng.choice(["Ar", "Ne"], size=16))
        atoms = random_cluster(symbols, 16, seed=13, d_min=2.8, radius=6.0)
        cutoff = 6.5
    engine = LJEngine(["Ne", "Ar"], cutoff=cutoff, shift=shift)
    assert engine.parameter_names == (
        "Ar.Ar:eps",
        "Ar.Ar:rmin",
        "Ar.Ne:eps",
        "Ar.Ne:rmin",
        "Ne.Ne:eps",
        "Ne.Ne:rmin",
    )
    iface = engine.default_interface(
        values={
            f"{a}.{b}:{k}": v
            for (a, b), pv in NE_AR.items()
            for k, v in zip(("eps", "rmin"), pv, strict=True)
        }
    )
    # a second vector with every value scaled, and parameter columns in a shuffled order
    order = [4, 1, 5, 0, 3, 2]
    names = [iface.names[i] for i in order]
    batch = np.stack(
        [iface.values, iface.values * np.array([1.1, 0.95, 0.9, 1.05, 1.2, 1.0])]
    )[:, order]
    res = engine.setup([Job("mix", atoms)], names)(batch)["mix"]
    for k in range(2):
        values = dict(zip(names, batch[k], strict=True))
        params = {
            pair: (
                values[f"{pair[0]}.{pair[1]}:eps"],
                values[f"{pair[0]}.{pair[1]}:rmin"],
            )
            for pair in NE_AR
        }
        energy, forces, stress = direct_lj(atoms, params, cutoff, shift)
        assert res.energy[k] == pytest.approx(energy, rel=1e-10)
        np.testing.assert_allclose(
            res.forces[k], forces, rtol=0, atol=1e-10 * np.abs(forces).max()
        )
        if periodic:
            np.testing.assert_allclose(
                res.stress[k], stress, rtol=0, atol=1e-10 * np.abs(stress).max()
            )
        else:
            assert res.stress is None


# ---- failures and validation --------------------------------------------------------


def test_bad_vectors_fail_alone():
    atoms = argon_256()
    batch = np.array(
        [
            [0.0104, 3.82],
            [0.0104, -3.82],
            [np.nan, 3.82],
            [0.0104, 1e40],
            [-0.01, 3.8],
            [0.009, 3.9],
        ]
    )
    res = evaluate(atoms, batch)
    failed = (res.status & Status.FAILED) != 0
    np.testing.assert_array_equal(failed, [False, True, True, True, True, False])
    assert np.all(np.isnan(res.energy[failed]))
    assert np.all(np.isnan(res.forces[failed])) and np.all(np.isnan(res.stress[failed]))
    good = evaluate(atoms, batch[[0, 5]])
    np.testing.assert_array_equal(res.energy[[0, 5]], good.energy)
    np.testing.assert_array_equal(res.forces[[0, 5]], good.forces)
    assert not res.is_ok[1] and res.is_ok[0]


def test_unknown_element_is_engine_error():
    engine = LJEngine(["Ar"])
    with pytest.raises(EngineError, match="'Ne'"):
        engine.setup(
            [Job("mix", Atoms("ArNe", positions=[[0, 0, 0], [0, 0, 3.5]]))],
            engine.parameter_names,
        )


@pytest.mark.parametrize(
    ("names", "fragment"),
    [
        (["Ar.Ar:eps"], "missing"),
        (["Ar.Ar:eps", "Ar.Ar:rmin", "Ar.Ar:sigma"], "unknown"),
        (["Ar.Ar:eps", "Ar.Ar:eps", "Ar.Ar:rmin"], "twice"),
    ],
)
def test_parameter_names_checked(names: list[str], fragment: str):
    with pytest.raises(EngineError, match=fragment):
        LJEngine(["Ar"]).setup(
            [Job("d", Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.8]]))], names
        )


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"elements": []}, "elements"),
        ({"elements": ["Xx"]}, "elements"),
        ({"elements": ["Ar"], "cutoff": -1.0}, "cutoff"),
        ({"elements": ["Ar"], "cutoff": float("nan")}, "cutoff"),
    ],
)
def test_constructor_checks(kwargs: dict, key: str):
    with pytest.raises(InputError) as info:
        LJEngine(**kwargs)
    assert info.value.key == key


def test_default_interface_and_round_trip():
    engine = LJEngine(["H", "C"], cutoff=7.0, shift=False)
    iface = engine.default_interface(eps=0.01, rmin=3.5, values={"C.H:eps": 0.02})
    assert iface.names == (
        "C.C:eps",
        "C.C:rmin",
        "C.H:eps",
        "C.H:rmin",
        "H.H:eps",
        "H.H:rmin",
    )
    assert iface["C.H:eps"].value == 0.02 and iface["C.H:rmin"].value == 3.5
    assert iface["C.H:eps"].range == pytest.approx((0.016, 0.024))
    assert iface["C.H:eps"].atoms == ("C", "H") and iface["C.H:eps"].block == "LJ"
    assert iface["C.H:rmin"].equation
    with pytest.raises(InputError) as info:
        engine.default_interface(values={"H.C:eps": 1.0})
    assert info.value.key == "H.C:eps"
    assert LJEngine.from_dict(engine.to_dict()) == engine
    assert LJEngine(**engine.to_dict()) == engine
    assert ENGINES.get("lj") is LJEngine
    assert isinstance(engine, Engine)
    assert engine.implemented_properties == frozenset({"energy", "forces", "stress"})
    assert engine.is_differentiable is True


def test_pickle_round_trip():
    atoms = rattled(bulk("Ar", "fcc", a=5.26, cubic=True), seed=2)
    engine = LJEngine(["Ar"])
    fn = engine.setup([Job("bulk", atoms)], engine.parameter_names)
    assert isinstance(fn, EngineFn)
    engine2 = pickle.loads(pickle.dumps(engine))
    fn2 = pickle.loads(pickle.dumps(fn))
    assert engine2 == engine
    a, b = fn(BATCH)["bulk"], fn2(BATCH)["bulk"]
    np.testing.assert_array_equal(a.energy, b.energy)
    np.testing.assert_array_equal(a.forces, b.forces)
    np.testing.assert_array_equal(a.stress, b.stress)


def test_calculator_matches_ase_and_engine():
    atoms = argon_256()
    engine = LJEngine(["Ar"])
    calc = engine.calculator([0.012, 3.6], ["Ar.Ar:eps", "Ar.Ar:rmin"])
    a = atoms.copy()
    a.calc = calc
    energy, forces, stress = ase_lj(atoms, 0.012, 3.6)
    assert a.get_potential_energy() == pytest.approx(energy, rel=1e-10)
    np.testing.assert_allclose(
        a.get_forces(), forces, rtol=0, atol=1e-10 * np.abs(forces).max()
    )
    np.testing.assert_allclose(
        a.get_stress(), stress, rtol=0, atol=1e-10 * np.abs(stress).max()
    )
    with pytest.raises(EngineError):
        engine.calculator([0.012], ["Ar.Ar:eps"])


def test_atom_without_neighbours_and_single_vector():
    res = evaluate(Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 20.0]]), BATCH[0])
    assert res.energy.shape == (1,) and res.energy[0] == 0.0
    assert np.all(res.forces == 0.0) and res.status[0] == Status.OK
