"""Geometry optimizations and PES scans (engines/relax.py) through the LJ engine."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import Calculator
from ase.calculators.lj import LennardJones
from ase.cluster import Icosahedron
from ase.optimize import LBFGS

from parafit.engines.base import Status
from parafit.engines.lj import LJEngine
from parafit.engines.relax import moving_atoms, run_job, validate_job
from parafit.errors import EngineError
from parafit.jobs import GeometryOptimization, Job, PESScan, ScanCoordinate, SinglePoint

EPS, RMIN, CUTOFF = 0.0104, 3.82, 8.5
NAMES = ["Ar.Ar:eps", "Ar.Ar:rmin"]


def lj13() -> Atoms:
    atoms = Icosahedron("Ar", 2, latticeconstant=5.4)
    atoms.positions += np.random.default_rng(2).normal(0.0, 0.1, atoms.positions.shape)
    return atoms


def trimer() -> Atoms:
    return Atoms("Ar3", positions=[[0, 0, 0], [3.8, 0, 0], [1.7, 3.4, 0.2]])


def ase_calc(eps: float = EPS, rmin: float = RMIN) -> LennardJones:
    return LennardJones(sigma=rmin / 2 ** (1 / 6), epsilon=eps, rc=CUTOFF, smooth=False)


def run(jobs: list[Job], batch: np.ndarray | None = None):
    engine = LJEngine(["Ar"], cutoff=CUTOFF)
    if batch is None:
        batch = np.array([[EPS, RMIN]])
    return engine.setup(jobs, NAMES)(batch)


def test_geometry_optimization_matches_ase_lbfgs():
    atoms = lj13()
    task = GeometryOptimization(optimizer="lbfgs", fmax=1e-4, max_iterations=500)
    batch = np.array([[EPS, RMIN], [0.012, 3.6]])
    res = run([Job("go", atoms, task)], batch)["go"]
    assert np.all(res.status == Status.OK)
    for k, (eps, rmin) in enumerate(batch):
        ref = atoms.copy()
        ref.calc = ase_calc(eps, rmin)
        opt = LBFGS(ref, logfile=None)
        assert opt.run(fmax=1e-4, steps=500)
        assert res.energy[k] == pytest.approx(ref.get_potential_energy(), abs=1e-8)
        assert res.n_steps[k] == opt.nsteps
        np.testing.assert_allclose(res.positions[k], ref.positions, atol=1e-6)
        assert np.abs(res.forces[k]).max() < 1e-4
    assert res.stress is None


@pytest.mark.parametrize("optimizer", ["bfgs", "fire", "bfgslinesearch"])
def test_other_optimizers_reach_the_same_minimum(optimizer: str):
    atoms = lj13()
    ref = run([Job("go", atoms, GeometryOptimization(fmax=1e-4, max_iterations=1000))])[
        "go"
    ]
    res = run(
        [
            Job(
                "go",
                atoms,
                GeometryOptimization(
                    optimizer=optimizer, fmax=1e-4, max_iterations=1000
                ),
            )
        ]
    )["go"]
    assert res.status[0] == Status.OK
    assert res.energy[0] == pytest.approx(
        ref.energy[0], abs=1e-6
    )  # both stop at fmax = 1e-4 eV/Å


def test_not_converged_flag_and_pretend_converged():
    atoms = lj13()
    kept = run([Job("go", atoms, GeometryOptimization(max_iterations=2))])["go"]
    assert kept.status[0] == Status.GEOOPT_NOT_CONVERGED
    assert kept.n_steps[0] == 2 and np.isfinite(kept.energy[0])
    dropped = run(
        [
            Job(
                "go",
                atoms,
                GeometryOptimization(max_iterations=2, pretend_converged=False),
            )
        ]
    )["go"]
    assert dropped.status[0] == Status.GEOOPT_NOT_CONVERGED | Status.FAILED
    assert np.isnan(dropped.energy[0]) and dropped.n_steps[0] == 2


def test_fixed_atoms_stay_put():
    atoms = lj13()
    job = Job(
        "go",
        atoms,
        GeometryOptimization(fmax=1e-3, max_iterations=500),
        metadata={"fixed_atoms": [0, 5]},
    )
    res = run([job])["go"]
    assert res.status[0] == Status.OK
    np.testing.assert_array_equal(res.positions[0, [0, 5]], atoms.positions[[0, 5]])
    assert not np.allclose(res.positions[0, 1], atoms.positions[1])
    with pytest.raises(EngineError, match="fixed atom index 13"):
        validate_job(Job("bad", atoms, metadata={"fixed_atoms": [13]}))


def test_cell_relaxation_changes_the_cell():
    atoms = bulk("Ar", "fcc", a=5.6, cubic=True)
    task = GeometryOptimization(relax_cell=True, fmax=1e-4, max_iterations=300)
    res = run([Job("cell", atoms, task)])["cell"]
    assert res.status[0] == Status.OK
    volume = abs(np.linalg.det(res.cell[0]))
    assert (
        volume < 0.95 * atoms.get_volume()
    )  # 5.6 Å is far above the LJ lattice constant
    assert np.abs(res.stress[0]).max() * volume < 1e-3
    # the relaxed cell stays cubic, and its lattice constant is the minimum of E(a)
    a = res.cell[0, 0, 0]
    np.testing.assert_allclose(res.cell[0], a * np.eye(3), atol=1e-8)
    strained = [
        Job(f"a{k}", bulk("Ar", "fcc", a=a * (1 + k * 2e-3), cubic=True))
        for k in (-1, 0, 1)
    ]
    energies = [r.energy[0] for r in run(strained).values()]
    assert energies[1] < energies[0] and energies[1] < energies[2]
    assert res.energy[0] == pytest.approx(energies[1], abs=1e-9)


def test_relaxed_distance_scan_holds_the_coordinate():
    values = tuple(np.linspace(3.4, 4.6, 7))
    task = PESScan(
        (ScanCoordinate("distance", (0, 1), values),),
        relaxed=True,
        fmax=1e-4,
        max_iterations=300,
    )
    res = run([Job("scan", trimer(), task)])["scan"]
    assert res.status[0] == Status.OK
    assert res.scan_energies.shape == (1, 7) and res.scan_coordinates.shape == (1, 7, 1)
    assert res.scan_positions.shape == (1, 7, 3, 3)
    np.testing.assert_allclose(res.scan_coordinates[0, :, 0], values, atol=1e-6)
    d = np.linalg.norm(
        res.scan_positions[0, :, 1] - res.scan_positions[0, :, 0], axis=1
    )
    np.testing.assert_allclose(d, values, atol=1e-6)
    best = int(np.argmin(res.scan_energies[0]))
    assert res.energy[0] == res.scan_energies[0, best]
    np.testing.assert_array_equal(res.positions[0], res.scan_positions[0, best])
    # relaxing lowers every point's energy below the rigid scan's
    rigid = run([Job("rigid", trimer(), PESScan(task.coordinates, relaxed=False))])[
        "rigid"
    ]
    assert np.all(res.scan_energies[0] <= rigid.scan_energies[0] + 1e-12)
    assert res.n_steps[0] > 0 and rigid.n_steps[0] == 0


@pytest.mark.parametrize(
    ("coordinate", "atoms"),
    [
        (ScanCoordinate("angle", (0, 1, 2), (50.0, 60.0, 75.0, 90.0)), trimer()),
        (
            ScanCoordinate("dihedral", (0, 1, 2, 3), (-60.0, 0.0, 90.0, 150.0)),
            Atoms(
                "Ar4",
                positions=[[0, 0, 0], [3.8, 0, 0], [3.8, 3.8, 0], [5.0, 4.5, 2.8]],
            ),
        ),
    ],
    ids=["angle", "dihedral"],
)
def test_relaxed_angle_and_dihedral_scans_hold_the_coordinate(
    coordinate: ScanCoordinate, atoms: Atoms
):
    # ASE's LBFGS converges slowly under FixInternals angle/dihedral constraints; BFGS is fast
    task = PESScan(
        (coordinate,), relaxed=True, optimizer="bfgs", fmax=1e-3, max_iterations=500
    )
    res = run([Job("scan", atoms, task)])["scan"]
    assert res.status[0] == Status.OK
    np.testing.assert_allclose(
        res.scan_coordinates[0, :, 0], coordinate.values, atol=1e-6
    )
    for k, value in enumerate(coordinate.values):
        moved = atoms.copy()
        moved.positions = res.scan_positions[0, k]
        measured = (
            moved.get_angle(*coordinate.atoms)
            if coordinate.kind == "angle"
            else moved.get_dihedral(*coordinate.atoms)
        )
        assert (measured - value + 180) % 360 - 180 == pytest.approx(0.0, abs=1e-6)


def test_rigid_scan_equals_single_points():
    values = (3.3, 3.6, 3.9, 4.4, 5.0)
    atoms = trimer()
    res = run(
        [
            Job(
                "rigid",
                atoms,
                PESScan((ScanCoordinate("distance", (0, 1), values),), relaxed=False),
            )
        ]
    )["rigid"]
    assert res.status[0] == Status.OK
    for k, value in enumerate(values):
        ref = atoms.copy()
        ref.set_distance(0, 1, value, fix=0)  # argon has no bonds: only atom 1 moves
        np.testing.assert_allclose(res.scan_positions[0, k], ref.positions, atol=1e-12)
        ref.calc = ase_calc()
        assert res.scan_energies[0, k] == pytest.approx(
            ref.get_potential_energy(), rel=1e-10
        )
    best = int(np.argmin(res.scan_energies[0]))
    sp = run([Job("sp", Atoms("Ar3", positions=res.scan_positions[0, best]))])["sp"]
    assert res.energy[0] == pytest.approx(sp.energy[0], rel=1e-12)
    np.testing.assert_allclose(res.forces[0], sp.forces[0], atol=1e-12)


def test_rigid_scans_move_the_last_atoms_fragment():
    ethane = molecule("C2H6")  # C0 C1, H2-H4 on C0, H5-H7 on C1
    dihedral = ScanCoordinate("dihedral", (2, 0, 1, 5), (60.0, 120.0, 180.0, 240.0))
    angle = ScanCoordinate("angle", (2, 0, 1), (100.0, 110.0, 125.0))
    distance = ScanCoordinate("distance", (0, 1), (1.4, 1.6, 1.8))
    assert set(moving_atoms(ethane, dihedral)) == {1, 5, 6, 7}
    assert set(moving_atoms(ethane, angle)) == {1, 5, 6, 7}
    assert set(moving_atoms(ethane, distance)) == {1, 5, 6, 7}
    engine = LJEngine(["C", "H"], cutoff=6.0)
    iface = engine.default_interface(eps=0.002, rmin=2.5)
    jobs = [
        Job(c.kind, ethane, PESScan((c,), relaxed=False))
        for c in (dihedral, angle, distance)
    ]
    out = engine.setup(jobs, iface.names)(iface.values[None])
    first = ethane.get_all_distances()[np.ix_([0, 2, 3, 4], [0, 2, 3, 4])]
    second = ethane.get_all_distances()[np.ix_([1, 5, 6, 7], [1, 5, 6, 7])]
    for c in (dihedral, angle, distance):
        res = out[c.kind]
        assert res.status[0] == Status.OK
        np.testing.assert_allclose(res.scan_coordinates[0, :, 0], c.values, atol=1e-8)
        for k in range(len(c.values)):
            moved = ethane.copy()
            moved.positions = res.scan_positions[0, k]
            np.testing.assert_array_equal(
                moved.positions[[0, 2, 3, 4]], ethane.positions[[0, 2, 3, 4]]
            )
            # both methyl groups move rigidly
            np.testing.assert_allclose(
                moved.get_all_distances()[np.ix_([0, 2, 3, 4], [0, 2, 3, 4])],
                first,
                atol=1e-10,
            )
            np.testing.assert_allclose(
                moved.get_all_distances()[np.ix_([1, 5, 6, 7], [1, 5, 6, 7])],
                second,
                atol=1e-10,
            )
            ref = moved.copy()
            ref.calc = engine.calculator(iface.values, iface.names)
            assert res.scan_energies[0, k] == pytest.approx(
                ref.get_potential_energy(), rel=1e-12
            )
    # in a ring only the last atom moves
    benzene = molecule("C6H6")
    assert list(moving_atoms(benzene, ScanCoordinate("distance", (0, 1), (1.5,)))) == [
        1
    ]


class Exploding(Calculator):
    """A real calculator that fails on every call (stands in for a crashing model)."""

    implemented_properties = ("energy", "forces")

    def calculate(self, atoms=None, properties=None, system_changes=None):
        raise RuntimeError("model exploded")


class NotANumber(Calculator):
    implemented_properties = ("energy", "forces")

    def calculate(self, atoms=None, properties=None, system_changes=None):
        super().calculate(atoms, properties, system_changes)
        self.results = {
            "energy": float("nan"),
            "forces": np.zeros((len(self.atoms), 3)),
        }


@pytest.mark.parametrize("calc_class", [Exploding, NotANumber])
@pytest.mark.parametrize(
    "task",
    [
        SinglePoint(),
        GeometryOptimization(max_iterations=5),
        PESScan((ScanCoordinate("distance", (0, 1), (3.5, 4.0)),), max_iterations=5),
    ],
    ids=["sp", "go", "scan"],
)
def test_failures_give_nan_and_failed_with_all_fields(calc_class: type, task):
    job = Job("j", trimer(), task)
    res = run_job(job, calc_class())
    assert res.status[0] & Status.FAILED
    assert np.isnan(res.energy[0]) and res.n_vectors == 1
    good = run_job(job, LJEngine(["Ar"]).calculator([EPS, RMIN], NAMES))
    assert good.status[0] == Status.OK
    for field in (
        "energy",
        "positions",
        "cell",
        "forces",
        "scan_energies",
        "scan_coordinates",
        "scan_positions",
        "stress",
    ):
        a, b = getattr(res, field), getattr(good, field)
        assert (a is None) == (b is None), field
        if a is not None:
            assert a.shape == b.shape, field


def test_invalid_vector_in_a_geometry_optimization_batch():
    res = run(
        [Job("go", lj13(), GeometryOptimization(max_iterations=50))],
        np.array([[EPS, RMIN], [EPS, -1.0]]),
    )["go"]
    assert res.status[1] == Status.FAILED and np.isnan(res.energy[1])
    assert (res.status[0] & Status.FAILED) == 0 and np.isfinite(res.energy[0])
