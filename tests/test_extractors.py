"""Tests for parafit.extractors: values against ASE, checks, registry metadata."""

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.units import Bohr, Hartree

from parafit.engines.base import JobResults, Status
from parafit.errors import InputError, UnknownNameError
from parafit.extractors import EXTRACTORS, register_extractor
from parafit.jobs import Job, PESScan, ScanCoordinate
from parafit.units import Unit

N_VECTORS = 3


def _frames(atoms: Atoms, seed: int) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(N_VECTORS):
        a = atoms.copy()
        a.positions += rng.normal(scale=0.3, size=a.positions.shape)
        if a.pbc.any():
            a.set_cell(
                a.cell[:] @ (np.eye(3) + rng.normal(scale=0.03, size=(3, 3))),
                scale_atoms=False,
            )
        out.append(a)
    return out


def _results(frames: list[Atoms], seed: int = 0) -> JobResults:
    rng = np.random.default_rng(seed)
    n, m = len(frames), len(frames[0])
    return JobResults(
        energy=rng.normal(size=n),
        positions=np.stack([f.positions for f in frames]),
        cell=np.stack([f.cell[:] for f in frames]),
        pbc=np.asarray(frames[0].pbc),
        status=np.zeros(n, dtype=int),
        forces=rng.normal(size=(n, m, 3)),
        stress=rng.normal(size=(n, 6)),
        charges=rng.normal(size=(n, m)),
    )


@pytest.fixture(scope="module")
def periodic() -> tuple[Job, list[Atoms], JobResults]:
    atoms = bulk("Si", "diamond", a=5.43).repeat((2, 2, 1))
    atoms.set_cell(
        atoms.cell[:] + [[0, 0, 0], [1.0, 0, 0], [0.5, 0.8, 0]], scale_atoms=True
    )
    frames = _frames(atoms, 1)
    return Job("si", atoms), frames, _results(frames)


@pytest.fixture(scope="module")
def slab() -> tuple[Job, list[Atoms], JobResults]:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.pbc = (True, True, False)
    frames = _frames(atoms, 2)
    return Job("slab", atoms), frames, _results(frames, 1)


@pytest.fixture(scope="module")
def ethanol() -> tuple[Job, list[Atoms], JobResults]:
    atoms = molecule("CH3CH2OH")
    frames = _frames(atoms, 3)
    return Job("etoh", atoms), frames, _results(frames, 2)


def _call(
    name: str, results: JobResults, job: Job, *args: object, **kwargs: object
) -> np.ndarray:
    return EXTRACTORS.get(name).function(results, job, *args, **kwargs)


@pytest.mark.parametrize("case", ["periodic", "slab", "ethanol"])
def test_geometry_extractors_match_ase(
    case: str, request: pytest.FixtureRequest
) -> None:
    job, frames, res = request.getfixturevalue(case)
    n = job.n_atoms
    rng = np.random.default_rng(7)
    for _ in range(6):
        i, j, k, q = rng.choice(n, size=4, replace=False)
        for mic in (True, False):
            d = _call("distance", res, job, i, j, mic=mic)
            a = _call("angle", res, job, i, j, k, mic=mic)
            t = _call("dihedral", res, job, i, j, k, q, mic=mic, unsigned=False)
            assert d.shape == a.shape == t.shape == (N_VECTORS,)
            for v, f in enumerate(frames):
                assert d[v] == pytest.approx(f.get_distance(i, j, mic=mic), rel=1e-12)
                assert a[v] == pytest.approx(f.get_angle(i, j, k, mic=mic), rel=1e-10)
                assert t[v] == pytest.approx(
                    f.get_dihedral(i, j, k, q, mic=mic), rel=1e-10
                )
                assert 0 <= t[v] < 360
            unsigned = _call("dihedral", res, job, i, j, k, q, mic=mic, unsigned=True)
            np.testing.assert_allclose(
                unsigned, np.where(t > 180, 360 - t, t), rtol=1e-12
            )


def test_batched_calls_equal_single_calls(periodic: tuple) -> None:
    job, _, res = periodic
    i, j, k = np.array([0, 1, 2, 5]), np.array([3, 4, 6, 7]), np.array([1, 2, 3, 4])
    batch = _call("angle", res, job, i, j, k)
    assert batch.shape == (N_VECTORS, 4)
    for m in range(4):
        np.testing.assert_allclose(
            batch[:, m], _call("angle", res, job, int(i[m]), int(j[m]), int(k[m]))
        )
    atoms, xyz = np.array([0, 0, 3]), np.array([2, 0, 1])
    np.testing.assert_array_equal(
        _call("forces", res, job, atoms, xyz), res.forces[:, atoms, xyz]
    )


def test_forces_charges_stress_energy(periodic: tuple) -> None:
    job, _, res = periodic
    np.testing.assert_array_equal(_call("energy", res, job), res.energy)
    np.testing.assert_array_equal(_call("forces", res, job), res.forces)
    np.testing.assert_array_equal(_call("forces", res, job, 2), res.forces[:, 2])
    np.testing.assert_array_equal(_call("forces", res, job, 2, 1), res.forces[:, 2, 1])
    np.testing.assert_array_equal(_call("charges", res, job), res.charges)
    np.testing.assert_array_equal(_call("charges", res, job, 3), res.charges[:, 3])
    np.testing.assert_array_equal(_call("stress", res, job), res.stress)
    np.testing.assert_array_equal(_call("stress", res, job, 4), res.stress[:, 4])


def test_missing_fields_give_nan() -> None:
    job = Job("h2", Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]))
    res = JobResults(
        energy=np.zeros(2),
        positions=np.zeros((2, 2, 3)),
        cell=np.zeros((2, 3, 3)),
        pbc=np.zeros(3, bool),
        status=np.zeros(2, int),
    )
    assert _call("forces", res, job).shape == (2, 2, 3)
    assert np.isnan(_call("forces", res, job, 1)).all() and _call(
        "forces", res, job, 1
    ).shape == (2, 3)
    assert np.isnan(_call("charges", res, job, 0)).all()
    assert np.isnan(_call("stress", res, job)).all()
    assert np.isnan(
        _call("forces", res, job, np.array([0, 1]), np.array([0, 2]))
    ).shape == (2, 2)


def test_cell_extractors_match_ase(periodic: tuple) -> None:
    job, frames, res = periodic
    lengths = _call("cell_lengths", res, job)
    angles = _call("cell_angles", res, job)
    volume = _call("cell_volume", res, job)
    for v, f in enumerate(frames):
        np.testing.assert_allclose(lengths[v], f.cell.lengths(), rtol=1e-12)
        np.testing.assert_allclose(angles[v], f.cell.angles(), rtol=1e-12)
        assert volume[v] == pytest.approx(f.get_volume(), rel=1e-12)
    np.testing.assert_array_equal(_call("cell_lengths", res, job, 2), lengths[:, 2])
    np.testing.assert_array_equal(_call("cell_angles", res, job, 1), angles[:, 1])


def test_non_finite_cell_gives_nan_not_error(periodic: tuple) -> None:
    job, _, res = periodic
    cell = res.cell.copy()
    cell[1, 0, 0] = np.nan
    bad = JobResults(
        energy=res.energy,
        positions=res.positions,
        cell=cell,
        pbc=res.pbc,
        status=res.status,
    )
    d = _call("distance", bad, job, 0, 1)
    assert np.isfinite(d[[0, 2]]).all() and np.isnan(d[1])
    assert np.isnan(_call("cell_volume", bad, job)[1])


def _scan_job() -> Job:
    scan = PESScan((ScanCoordinate("distance", (0, 1), (0.6, 0.7, 0.8, 0.9)),))
    return Job("scan", Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), task=scan)


def test_pes_relative_to() -> None:
    job = _scan_job()
    e = np.array([[3.0, 1.0, 2.0, 5.0], [0.0, -1.0, np.nan, 1.0]])
    res = JobResults(
        energy=e.min(axis=1),
        positions=np.zeros((2, 2, 3)),
        cell=np.zeros((2, 3, 3)),
        pbc=np.zeros(3, bool),
        status=np.zeros(2, int),
        scan_energies=e,
    )
    out = _call("pes", res, job)
    np.testing.assert_array_equal(out[0], [2.0, 0.0, 1.0, 4.0])
    assert np.isnan(out[1]).all()
    np.testing.assert_array_equal(
        _call("pes", res, job, relative_to="first")[0], [0.0, -2.0, -1.0, 2.0]
    )
    np.testing.assert_array_equal(_call("pes", res, job, relative_to="none"), e)
    assert EXTRACTORS.get("pes").shape(job, (), {}) == (4,)


def test_registry_metadata_and_defaults() -> None:
    energy = EXTRACTORS.get("energy")
    assert energy.default_sigma == pytest.approx(0.002 * Hartree)
    assert energy.unit == Unit("eV", 1.0) and energy.dimension == "energy"
    assert energy.params_default_factor == pytest.approx(1 / Hartree)
    assert energy.params_default_unit.label == "Ha"
    forces = EXTRACTORS.get("forces")
    assert forces.default_sigma == pytest.approx(0.003 * Hartree / Bohr)
    assert forces.params_default_factor == pytest.approx(Bohr / Hartree)
    assert EXTRACTORS.get("stress").default_sigma == pytest.approx(
        1e-4 * Hartree / Bohr**3
    )
    assert EXTRACTORS.get("stress").params_default_factor == pytest.approx(
        Bohr**3 / Hartree
    )
    assert EXTRACTORS.get("pes").default_sigma == pytest.approx(0.002 * Hartree)
    expected = {
        "charges": (0.1, 1.0),
        "distance": (0.05, 1.0),
        "angle": (2.0, 1.0),
        "dihedral": (2.0, 1.0),
        "cell_lengths": (0.05, 1.0),
        "cell_angles": (2.0, 1.0),
        "cell_volume": (50.0, 1.0),
    }
    for name, (sigma, factor) in expected.items():
        ex = EXTRACTORS.get(name)
        assert ex.default_sigma == sigma and ex.params_default_factor == factor
    assert EXTRACTORS.canonical("angles") == "angle"
    assert EXTRACTORS.canonical("lattice") == "cell_lengths"
    assert EXTRACTORS.get("forces").needs == frozenset({"forces"})
    assert EXTRACTORS.get("distance").usage() == "distance('job_id', i, j, mic=True)"
    with pytest.raises(UnknownNameError, match="did you mean 'distance'"):
        EXTRACTORS.get("distanse")


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "fragment"),
    [
        ("forces", (5,), {}, "out of range"),
        ("forces", (-1,), {}, "out of range"),
        ("forces", (0, 3), {}, "component xyz"),
        ("forces", (1.0,), {}, "must be an integer"),
        ("charges", (9,), {}, "out of range"),
        ("distance", (0, 0), {}, "distinct"),
        ("distance", (0, 5), {}, "out of range"),
        ("distance", (0, 1), {"mic": 1}, "mic must be True or False"),
        ("angle", (0, 1, 7), {}, "out of range"),
        ("dihedral", (0, 1, 2, 5), {}, "out of range"),
        ("dihedral", (0, 1, 2, 3), {"unsigned": "yes"}, "unsigned"),
        ("pes", (), {}, "not a PES scan"),
        ("cell_lengths", (), {}, "not periodic"),
        ("cell_volume", (), {}, "not periodic"),
        ("stress", (), {}, "not periodic"),
    ],
)
def test_checks_raise_input_error(
    name: str, args: tuple, kwargs: dict, fragment: str
) -> None:
    job = Job("ch4", molecule("CH4"))
    with pytest.raises(InputError, match=fragment) as info:
        EXTRACTORS.get(name).check(job, args, kwargs)
    assert info.value.key == "ch4"


def test_checks_accept_valid_arguments(periodic: tuple) -> None:
    job, _, _ = periodic
    for name, args, kwargs in [
        ("forces", (), {}),
        ("forces", (3, 2), {}),
        ("stress", (5,), {}),
        ("cell_angles", (2,), {}),
        ("dihedral", (0, 1, 2, 3), {"mic": False, "unsigned": True}),
    ]:
        EXTRACTORS.get(name).check(job, args, kwargs)
    EXTRACTORS.get("pes").check(_scan_job(), (), {"relative_to": "first"})
    with pytest.raises(InputError, match="relative_to"):
        EXTRACTORS.get("pes").check(_scan_job(), (), {"relative_to": "max"})


def test_register_custom_extractor_and_duplicate() -> None:
    @register_extractor(
        "test_n_atoms", default_sigma=0.5, unit=Unit("", 1.0), dimension="charge"
    )
    def n_atoms(results: JobResults, job: Job) -> np.ndarray:
        return np.full(results.n_vectors, float(job.n_atoms))

    ex = EXTRACTORS.get("test_n_atoms")
    assert (
        ex.function is n_atoms
        and ex.default_sigma == 0.5
        and ex.shape(None, (), {}) == ()
    )  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already registered"):
        register_extractor(
            "test_n_atoms", default_sigma=1.0, unit=Unit("", 1.0), dimension="charge"
        )(n_atoms)
    with pytest.raises(ValueError, match="unknown dimension"):
        register_extractor(
            "test_bad", default_sigma=1.0, unit=Unit("", 1.0), dimension="mass"
        )
    with pytest.raises(ValueError, match="default_sigma"):
        register_extractor(
            "test_bad", default_sigma=0.0, unit=Unit("", 1.0), dimension="energy"
        )


def test_status_is_not_read_by_extractors() -> None:
    """Extractors are pure reads; masking failed vectors is the data set's job."""
    job = Job("h2", Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]))
    res = JobResults(
        energy=np.array([1.0, np.nan]),
        positions=np.zeros((2, 2, 3)) + [[[0, 0, 0], [0, 0, 0.74]]],
        cell=np.zeros((2, 3, 3)),
        pbc=np.zeros(3, bool),
        status=np.array([0, int(Status.FAILED)]),
    )
    np.testing.assert_allclose(_call("distance", res, job, 0, 1), [0.74, 0.74])
