"""ASEEngine: any ASE calculator with numeric constructor parameters."""

import pickle

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.lj import LennardJones
from ase.calculators.morse import MorsePotential

from parafit.engines.ase import ASEEngine
from parafit.engines.base import ENGINES, Engine, EngineFn, Status
from parafit.engines.lj import LJEngine
from parafit.errors import EngineError, InputError
from parafit.jobs import GeometryOptimization, Job, PESScan, ScanCoordinate

MORSE = "ase.calculators.morse:MorsePotential"
FIXED = {"rcut1": 5.0, "rcut2": 6.0}
START = {"epsilon": 0.5, "r0": 2.4, "rho0": 5.0}
NAMES = ["epsilon", "r0", "rho0"]
BATCH = np.array([[0.5, 2.4, 5.0], [0.7, 2.2, 6.0], [0.3, 2.7, 4.0]])


def cluster() -> Atoms:
    rng = np.random.default_rng(5)
    positions = np.array(
        [[0, 0, 0], [2.4, 0, 0], [0, 2.5, 0], [2.3, 2.6, 0.4], [1.1, 1.2, 2.2]],
        dtype=float,
    )
    return Atoms("Cu5", positions=positions + rng.normal(0, 0.05, positions.shape))


def periodic() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.positions += np.random.default_rng(6).normal(0, 0.05, atoms.positions.shape)
    return atoms


def picky_morse(
    epsilon: float, r0: float, rho0: float, **fixed: float
) -> MorsePotential:
    """A module-level factory that refuses some parameter values (as a real model might)."""
    if epsilon < 0.4:
        raise ValueError(f"epsilon too small: {epsilon}")
    return MorsePotential(epsilon=epsilon, r0=r0, rho0=rho0, **fixed)


def direct(
    atoms: Atoms, **kwargs: float
) -> tuple[float, np.ndarray, np.ndarray | None]:
    a = atoms.copy()
    a.calc = MorsePotential(**kwargs, **FIXED)
    return (
        a.get_potential_energy(),
        a.get_forces(),
        a.get_stress() if a.pbc.any() else None,
    )


def test_morse_matches_direct_ase_calls():
    engine = ASEEngine(
        MORSE, fixed=FIXED, parameters=START, properties=("energy", "forces", "stress")
    )
    fn = engine.setup([Job("cluster", cluster()), Job("bulk", periodic())], NAMES)
    out = fn(BATCH)
    for job_id, atoms in (("cluster", cluster()), ("bulk", periodic())):
        res = out[job_id]
        assert res.energy.shape == (3,) and np.all(res.status == Status.OK)
        for k, row in enumerate(BATCH):
            energy, forces, stress = direct(atoms, **dict(zip(NAMES, row, strict=True)))
            assert res.energy[k] == energy
            np.testing.assert_array_equal(res.forces[k], forces)
            if stress is None:
                assert res.stress is None
            else:
                np.testing.assert_array_equal(res.stress[k], stress)


def test_vector_order_does_not_matter():
    fn = ASEEngine(MORSE, fixed=FIXED).setup([Job("c", cluster())], NAMES)
    forward, backward = fn(BATCH)["c"], fn(BATCH[::-1])["c"]
    np.testing.assert_array_equal(forward.energy, backward.energy[::-1])


def test_factory_that_raises_fails_only_that_vector():
    engine = ASEEngine(picky_morse, fixed=FIXED)
    fn = engine.setup(
        [
            Job("c", cluster()),
            Job("go", cluster(), GeometryOptimization(max_iterations=20)),
        ],
        NAMES,
    )
    out = fn(BATCH)  # epsilon 0.3 in the third vector is refused
    for res in out.values():
        np.testing.assert_array_equal(
            (res.status & Status.FAILED) != 0, [False, False, True]
        )
        assert np.all(np.isfinite(res.energy[:2])) and np.isnan(res.energy[2])
        assert np.all(np.isnan(res.forces[2]))
    assert out["c"].energy[0] == direct(cluster(), **START)[0]


def test_non_finite_results_fail():
    engine = ASEEngine("ase.calculators.lj:LennardJones", fixed={"rc": 6.0})
    fn = engine.setup([Job("c", cluster())], ["epsilon", "sigma"])
    res = fn(np.array([[0.1, 2.2], [0.1, np.nan]]))["c"]
    np.testing.assert_array_equal(res.status, [Status.OK, Status.FAILED])
    assert np.isnan(res.energy[1]) and np.isfinite(res.energy[0])


def test_geometry_optimization_and_scan_agree_with_lj_engine():
    """ASE's LennardJones through ASEEngine and our LJEngine relax to the same geometry."""
    atoms = Atoms(
        "Ar4", positions=[[0, 0, 0], [3.9, 0, 0], [1.8, 3.5, 0], [1.9, 1.2, 3.2]]
    )
    scan = PESScan(
        (ScanCoordinate("distance", (0, 1), (3.6, 4.0, 4.4)),),
        fmax=1e-4,
        max_iterations=300,
    )
    jobs = [
        Job("go", atoms, GeometryOptimization(fmax=1e-5, max_iterations=300)),
        Job("scan", atoms, scan),
    ]
    eps, rmin, cutoff = 0.0104, 3.82, 8.5
    ase_fn = ASEEngine(
        "ase.calculators.lj:LennardJones", fixed={"rc": cutoff, "smooth": False}
    ).setup(jobs, ["epsilon", "sigma"])
    lj_fn = LJEngine(["Ar"], cutoff=cutoff).setup(jobs, ["Ar.Ar:eps", "Ar.Ar:rmin"])
    a, b = (
        ase_fn(np.array([[eps, rmin / 2 ** (1 / 6)]])),
        lj_fn(np.array([[eps, rmin]])),
    )
    assert a["go"].status[0] == b["go"].status[0] == Status.OK
    assert a["go"].energy[0] == pytest.approx(b["go"].energy[0], abs=1e-9)
    np.testing.assert_allclose(
        a["scan"].scan_energies, b["scan"].scan_energies, atol=1e-8
    )
    np.testing.assert_allclose(
        a["scan"].scan_coordinates, b["scan"].scan_coordinates, atol=1e-6
    )


def test_properties_select_outputs():
    fn = ASEEngine(MORSE, fixed=FIXED, properties=("energy",)).setup(
        [Job("b", periodic())], NAMES
    )
    res = fn(BATCH[:1])["b"]
    assert res.forces is None and res.stress is None and np.isfinite(res.energy[0])
    fn = ASEEngine(MORSE, fixed=FIXED, properties=("energy", "forces", "stress")).setup(
        [Job("c", cluster())], NAMES
    )
    assert fn(BATCH[:1])["c"].stress is None  # no stress without periodicity


def test_setup_errors():
    with pytest.raises(EngineError, match="sigmaa"):
        ASEEngine("ase.calculators.lj:LennardJones").setup(
            [Job("c", cluster())], ["sigmaa"]
        )
    with pytest.raises(EngineError, match="cannot import"):
        ASEEngine("ase.calculators.nonexistent:Calc").setup(
            [Job("c", cluster())], ["x"]
        )
    with pytest.raises(EngineError, match="fixed"):
        ASEEngine(MORSE, fixed={"r0": 2.0}).setup([Job("c", cluster())], ["r0"])
    with pytest.raises(EngineError, match="twice"):
        ASEEngine(MORSE).setup([Job("c", cluster())], ["r0", "r0"])


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"factory": "MorsePotential"}, "factory"),
        ({"factory": 3}, "factory"),
        ({"factory": MORSE, "properties": ("energy", "dipole")}, "properties"),
        ({"factory": MORSE, "parameters": {"r0": float("nan")}}, "r0"),
        ({"factory": MORSE, "parameters": {"r0": 2.0}, "fixed": {"r0": 2.0}}, "r0"),
    ],
)
def test_constructor_checks(kwargs: dict, key: str):
    with pytest.raises(InputError) as info:
        ASEEngine(**kwargs)
    assert info.value.key == key


def test_default_interface_round_trip_and_protocol():
    engine = ASEEngine(MORSE, fixed=FIXED, parameters=START)
    iface = engine.default_interface()
    assert iface.names == ("epsilon", "r0", "rho0")
    assert iface["r0"].value == 2.4 and iface["r0"].range == pytest.approx((1.92, 2.88))
    assert ASEEngine(**engine.to_dict()) == engine
    assert (
        ASEEngine(MorsePotential, fixed=FIXED, parameters=START).to_dict()["factory"]
        == MORSE
    )
    assert isinstance(engine, Engine) and ENGINES.get("ase") is ASEEngine
    assert engine.implemented_properties == frozenset({"energy", "forces"})
    with pytest.raises(InputError, match="parameters"):
        ASEEngine(MORSE).default_interface()


@pytest.mark.parametrize("factory", [MORSE, picky_morse])
def test_pickle_round_trip(factory: object):
    fn = ASEEngine(factory, fixed=FIXED).setup([Job("c", cluster())], NAMES)  # type: ignore[arg-type]
    assert isinstance(fn, EngineFn)
    fn2 = pickle.loads(pickle.dumps(fn))
    np.testing.assert_array_equal(fn(BATCH[:2])["c"].energy, fn2(BATCH[:2])["c"].energy)


def test_lennard_jones_matches_lj_engine_single_points():
    atoms = periodic()
    atoms.symbols[:] = "Ar"
    atoms.set_cell(atoms.cell * 1.45, scale_atoms=True)
    ase_fn = ASEEngine(
        LennardJones, fixed={"rc": 8.5}, properties=("energy", "forces", "stress")
    ).setup([Job("b", atoms)], ["epsilon", "sigma"])
    lj_fn = LJEngine(["Ar"]).setup([Job("b", atoms)], ["Ar.Ar:eps", "Ar.Ar:rmin"])
    a = ase_fn(np.array([[0.0104, 3.4]]))["b"]
    b = lj_fn(np.array([[0.0104, 3.4 * 2 ** (1 / 6)]]))["b"]
    assert a.energy[0] == pytest.approx(b.energy[0], rel=1e-10)
    np.testing.assert_allclose(a.stress, b.stress, atol=1e-12)
