"""Tests for parafit.jobs: validation of tasks and jobs, and the YAML round trip."""

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from parafit.errors import InputError
from parafit.jobs import (
    GeometryOptimization,
    Job,
    JobCollection,
    PESScan,
    ScanCoordinate,
    SinglePoint,
)


def _water() -> Atoms:
    return Atoms(
        "OH2",
        positions=[
            [0.0, 0.0, 0.119262],
            [0.0, 0.763239, -0.477047],
            [0.0, -0.763239, -0.477047],
        ],
    )


def _collection() -> JobCollection:
    rng = np.random.default_rng(7)
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.positions += rng.normal(scale=0.01, size=cu.positions.shape)
    slab = Atoms(
        "Ar2",
        positions=[[0.1, 0.2, 0.3], [1.1, 2.2, 3.3]],
        cell=[4.0, 5.0, 0.0],
        pbc=[True, True, False],
    )
    scan = PESScan(
        coordinates=(
            ScanCoordinate("distance", (0, 1), tuple(np.linspace(0.9, 1.1, 5))),
            ScanCoordinate("angle", (1, 0, 2), (100.0, 102.5, 105.0, 107.5, 110.0)),
        ),
        relaxed=False,
        optimizer="bfgs",
        max_iterations=50,
        fmax=0.02,
    )
    return JobCollection(
        [
            Job("dimer_3.8", Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.8]])),
            Job(
                "water_go",
                _water(),
                GeometryOptimization(
                    optimizer="fire",
                    max_iterations=7,
                    fmax=1 / 3,
                    pretend_converged=False,
                ),
                reference_engine="dft",
                metadata={
                    "source": "doi:10/x",
                    "weights": [1.0, 0.1],
                    "nested": {"a": 1},
                },
            ),
            Job("cu_cell", cu, GeometryOptimization(relax_cell=True)),
            Job("slab", slab),
            Job("water_scan", _water(), scan),
        ]
    )


# -- task validation -------------------------------------------------------------------


def test_bad_optimizer_name():
    with pytest.raises(InputError, match="unknown geometry optimizer 'newton'") as info:
        GeometryOptimization(optimizer="newton")  # type: ignore[arg-type]
    assert info.value.key == "optimizer"


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"max_iterations": -1}, "max_iterations"),
        ({"fmax": 0.0}, "fmax"),
        ({"fmax": -1e-3}, "fmax"),
    ],
)
def test_bad_optimization_settings(kwargs, key):
    with pytest.raises(InputError) as info:
        GeometryOptimization(**kwargs)
    assert info.value.key == key


def test_scan_coordinate_validation():
    with pytest.raises(InputError, match="a angle scan needs 3 atoms") as info:
        ScanCoordinate("angle", (0, 1), (1.0,))
    assert info.value.key == "atoms"
    with pytest.raises(InputError, match="unknown scan coordinate 'torsion'"):
        ScanCoordinate("torsion", (0, 1, 2, 3), (1.0,))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="at least one value"):
        ScanCoordinate("distance", (0, 1), ())
    c = ScanCoordinate("distance", (np.int64(0), 1), [np.float64(1.5), 2])  # type: ignore[arg-type]
    assert c.atoms == (0, 1) and c.values == (1.5, 2.0)
    assert all(type(v) is float for v in c.values)


def test_scan_needs_equal_point_counts():
    a = ScanCoordinate("distance", (0, 1), (1.0, 2.0))
    b = ScanCoordinate("distance", (1, 2), (1.0, 2.0, 3.0))
    with pytest.raises(InputError, match="same number of points"):
        PESScan(coordinates=(a, b))
    with pytest.raises(InputError, match="at least one coordinate"):
        PESScan(coordinates=())
    assert PESScan(coordinates=[a]).n_points == 2  # type: ignore[arg-type]


def test_scan_atom_out_of_range():
    scan = PESScan(coordinates=(ScanCoordinate("distance", (0, 3), (1.0, 2.0)),))
    with pytest.raises(
        InputError, match="scan atom index 3 out of range for 3 atoms"
    ) as info:
        Job("w", _water(), scan)
    assert info.value.key == "w"


def test_relax_cell_needs_periodic():
    with pytest.raises(
        InputError, match="relax_cell needs a periodic structure"
    ) as info:
        Job("w", _water(), GeometryOptimization(relax_cell=True))
    assert info.value.key == "w"
    Job("cu", bulk("Cu"), GeometryOptimization(relax_cell=True))  # fine


def test_job_validation():
    with pytest.raises(InputError, match="non-empty string"):
        Job("", _water())
    with pytest.raises(InputError, match="non-empty ase.Atoms"):
        Job("empty", Atoms())
    job = Job("w", _water())
    assert job.task == SinglePoint() and job.n_atoms == 3


# -- collection ------------------------------------------------------------------------


def test_duplicate_id():
    jc = JobCollection([Job("a", _water())])
    with pytest.raises(InputError, match="duplicate job id 'a'") as info:
        jc.add(Job("a", _water()))
    assert info.value.key == "a"
    with pytest.raises(TypeError, match="takes Job objects"):
        jc.add(_water())  # type: ignore[arg-type]


def test_unknown_id_suggests():
    jc = _collection()
    with pytest.raises(
        InputError, match=r"unknown job id 'water_og'; did you mean 'water_go'\?"
    ) as info:
        jc["water_og"]
    assert info.value.key == "water_og"
    with pytest.raises(InputError, match=r"unknown job id 'zzz'\.$"):
        jc["zzz"]
    with pytest.raises(InputError, match="unknown job id 'nope'"):
        jc.subset(["dimer_3.8", "nope"])


def test_collection_access():
    jc = _collection()
    assert len(jc) == 5 and "slab" in jc and "x" not in jc
    assert jc.ids[0] == "dimer_3.8"
    sub = jc.subset(["slab", "dimer_3.8"])
    assert sub.ids == ("dimer_3.8", "slab")  # collection order, not argument order
    both = sub + JobCollection([Job("extra", _water())])
    assert both.ids == ("dimer_3.8", "slab", "extra")
    with pytest.raises(InputError, match="duplicate"):
        sub + sub


# -- YAML round trip -------------------------------------------------------------------


def test_yaml_round_trip(tmp_path: Path):
    jc = _collection()
    path = tmp_path / "sub" / "jobs.yaml"
    jc.save(path)
    back = JobCollection.load(path)
    assert back.ids == jc.ids
    for a, b in zip(jc, back, strict=True):
        assert a.task == b.task
        assert a.reference_engine == b.reference_engine
        assert dict(a.metadata) == dict(b.metadata)
        np.testing.assert_array_equal(
            a.atoms.positions, b.atoms.positions
        )  # exact floats
        np.testing.assert_array_equal(a.atoms.cell[:], b.atoms.cell[:])
        np.testing.assert_array_equal(a.atoms.pbc, b.atoms.pbc)
        assert a.atoms.get_chemical_symbols() == b.atoms.get_chemical_symbols()
        assert a == b
    # the second save is byte-identical to the first
    again = tmp_path / "again.yaml"
    back.save(again)
    assert again.read_text() == path.read_text()
    # no temp files left behind by the atomic write
    assert sorted(p.name for p in path.parent.iterdir()) == ["jobs.yaml"]


def test_yaml_text_is_readable(tmp_path: Path):
    path = tmp_path / "jobs.yaml"
    _collection().save(path)
    text = path.read_text()
    assert text.startswith("# parafit job collection")
    assert "format: parafit-jobs" in text and "version: 1" in text
    assert "- id: dimer_3.8\n  task: {type: single_point}" in text
    assert (
        "cell:" not in text.split("- id: water_go")[0]
    )  # no cell, no pbc for a molecule
    assert "pbc: [true, true, false]" in text


def test_with_frozen_geometries_turns_only_relaxations_into_single_points() -> None:
    jc = _collection()
    frozen = jc.with_frozen_geometries()
    assert frozen.ids == jc.ids
    for job in jc:
        out = frozen[job.id]
        expected = (
            SinglePoint
            if isinstance(job.task, GeometryOptimization)
            else type(job.task)
        )
        assert isinstance(out.task, expected)
        assert out.atoms is job.atoms and out.metadata == job.metadata
    assert isinstance(jc["water_go"].task, GeometryOptimization)  # original unchanged
