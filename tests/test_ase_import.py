"""Tests for parafit.io.ase_import: ASE-readable files -> jobs and reference data."""

import logging
from pathlib import Path

import ase.db
import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.cluster import Icosahedron
from ase.constraints import FixAtoms

from parafit.errors import FormatError, InputError
from parafit.io.ase_import import import_ase_file, read_ase_jobs
from parafit.jobs import JobCollection, SinglePoint
from parafit.units import EV, EV_PER_ANGSTROM, EV_PER_ANGSTROM3


def _emt_frames() -> list[tuple[Atoms, float, np.ndarray]]:
    """Four rattled Cu13 clusters and one periodic Cu cell, with EMT energy and forces."""
    rng = np.random.default_rng(42)
    out = []
    for _ in range(4):
        a = Icosahedron("Cu", 2)
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        a.calc = EMT()
        out.append((a, float(a.get_potential_energy()), a.get_forces().copy()))
    return out


def _emt_bulk() -> tuple[Atoms, np.ndarray]:
    a = bulk("Cu", "fcc", a=3.65, cubic=True)
    a.positions += np.random.default_rng(3).normal(scale=0.03, size=a.positions.shape)
    a.calc = EMT()
    return a, a.get_stress(voigt=True).copy()


@pytest.fixture(scope="module")
def emt():
    return _emt_frames(), _emt_bulk()


def _plain(atoms: Atoms) -> Atoms:
    return Atoms(
        atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc
    )


def _write_extxyz(path: Path, emt) -> None:
    frames, (cu, stress) = emt
    images = []
    # 0: calculator results (extxyz stores them as energy= / forces), with a name
    a = _plain(frames[0][0])
    a.calc = SinglePointCalculator(a, energy=frames[0][1], forces=frames[0][2])
    a.info["name"] = "cluster_a"
    images.append(a)
    # 1: aliases Energy / force, and extra info kept as metadata
    b = _plain(frames[1][0])
    b.info["Energy"] = frames[1][1]
    b.info["config_type"] = "cluster"
    b.arrays["force"] = frames[1][2]
    images.append(b)
    # 2: aliases REF_energy / REF_forces
    c = _plain(frames[2][0])
    c.info["REF_energy"] = frames[2][1]
    c.arrays["REF_forces"] = frames[2][2]
    images.append(c)
    # 3: energy only (dft_energy): no forces
    d = _plain(frames[3][0])
    d.info["dft_energy"] = frames[3][1]
    images.append(d)
    # 4: periodic, energy, forces and a virial instead of a stress
    e = _plain(cu)
    e.info["energy"] = float(cu.get_potential_energy())
    e.arrays["dft_forces"] = cu.get_forces()
    e.info["virial"] = -cu.get_stress(voigt=False) * cu.get_volume()
    images.append(e)
    ase.io.write(path, images, format="extxyz")


def test_extxyz_import(tmp_path: Path, emt, caplog):
    frames, (cu, stress) = emt
    path = tmp_path / "cu.extxyz"
    _write_extxyz(path, emt)
    with caplog.at_level(logging.WARNING, logger="parafit.io.ase_import"):
        jobs, ds = import_ase_file(
            path, stress=True, energy_sigma=0.05, forces_sigma=0.2
        )

    assert jobs.ids == ("cluster_a", "cu_0001", "cu_0002", "cu_0003", "cu_0004")
    assert all(isinstance(j.task, SinglePoint) for j in jobs)
    for job, (atoms, _, _) in zip(jobs, frames, strict=False):
        np.testing.assert_allclose(job.atoms.positions, atoms.positions, atol=1e-7)
        assert job.atoms.calc is None and not job.atoms.pbc.any()
    assert jobs["cu_0004"].atoms.pbc.all()
    np.testing.assert_allclose(jobs["cu_0004"].atoms.cell[:], cu.cell[:], atol=1e-7)
    assert jobs["cu_0001"].metadata["info"] == {"config_type": "cluster"}
    assert jobs["cu_0001"].metadata["frame"] == 1
    assert jobs["cu_0003"].metadata["missing_reference"] == ["forces", "stress"]

    by_expr = {e.expression: e for e in ds}
    ids = jobs.ids
    for k in range(4):
        e = by_expr[f"energy('{ids[k]}')"]
        assert e.reference == pytest.approx(frames[k][1], abs=1e-9)
        assert e.unit == EV and e.sigma == 0.05
    for k in range(3):
        f = by_expr[f"forces('{ids[k]}')"]
        assert f.reference.shape == (13, 3)
        np.testing.assert_allclose(f.reference, frames[k][2], atol=1e-7)
        assert f.unit == EV_PER_ANGSTROM and f.sigma == 0.2
    assert "forces('cu_0003')" not in by_expr  # skipped: no forces in that frame
    s = by_expr["stress('cu_0004')"]
    assert s.unit == EV_PER_ANGSTROM3
    np.testing.assert_allclose(s.reference, stress, atol=1e-9)  # -virial / volume
    assert len(ds) == 5 + 4 + 1

    warnings = [r.getMessage() for r in caplog.records]
    assert any(
        "1 of 5 frames have no forces reference" in m and "cu_0003" in m
        for m in warnings
    )
    assert any("4 of 5 frames have no stress reference" in m for m in warnings)


def test_relative_energies(tmp_path: Path, emt):
    frames, _ = emt
    path = tmp_path / "clusters.extxyz"
    images = []
    for atoms, energy, forces in frames:
        a = _plain(atoms)
        a.calc = SinglePointCalculator(a, energy=energy, forces=forces)
        images.append(a)
    ase.io.write(path, images, format="extxyz")
    jobs, ds = import_ase_file(path, forces=False, relative_energies=True)
    energies = [f[1] for f in frames]
    k_min = int(np.argmin(energies))
    ref = jobs.ids[k_min]
    assert len(ds) == 3
    for entry in ds:
        job_id = entry.expression.split("'")[1]
        assert entry.expression == f"energy('{job_id}') - energy('{ref}')"
        k = jobs.ids.index(job_id)
        assert entry.reference == pytest.approx(energies[k] - energies[k_min], abs=1e-9)
        assert entry.reference > 0
        assert entry.metadata["relative_to"] == ref


def test_index_selection_keeps_frame_numbers(tmp_path: Path, emt):
    path = tmp_path / "sel.extxyz"
    _write_extxyz(path, emt)
    jobs = read_ase_jobs(path, index="2:5", id_prefix="f")
    assert jobs.ids == ("f_0002", "f_0003", "f_0004")
    last = read_ase_jobs(path, index=-1)
    assert len(last) == 1 and last.ids == ("sel_0000",)


def test_load_extxyz_as_jobs(tmp_path: Path, emt):
    path = tmp_path / "cu.extxyz"
    _write_extxyz(path, emt)
    jc = JobCollection.load(path)
    assert len(jc) == 5 and jc.ids[0] == "cluster_a"
    # and those jobs survive our YAML format
    out = tmp_path / "jobs.yaml"
    jc.save(out)
    back = JobCollection.load(out)
    assert all(a == b for a, b in zip(jc, back, strict=True))


def test_ase_db(tmp_path: Path, emt):
    frames, (cu, stress) = emt
    path = tmp_path / "ref.db"
    with ase.db.connect(path) as db:
        for k, (atoms, energy, forces) in enumerate(frames):
            a = _plain(atoms)
            a.calc = SinglePointCalculator(a, energy=energy, forces=forces)
            if k == 0:
                db.write(a, name="first", config="ico", temperature=300.0)
            else:
                db.write(a, config="ico")
        b = _plain(cu)
        b.set_constraint(FixAtoms(indices=[0, 2]))
        b.calc = SinglePointCalculator(
            b, energy=cu.get_potential_energy(), stress=stress
        )
        db.write(b, name="bulk")
    jobs, ds = import_ase_file(path, stress=True)
    assert jobs.ids == ("first", "ref_0001", "ref_0002", "ref_0003", "bulk")
    assert jobs["first"].metadata["key_value_pairs"] == {
        "name": "first",
        "config": "ico",
        "temperature": 300.0,
    }
    assert jobs["first"].metadata["db_id"] == 1
    assert jobs["bulk"].metadata["fixed_atoms"] == [0, 2]
    assert jobs["bulk"].metadata["missing_reference"] == ["forces"]
    by_expr = {e.expression: e for e in ds}
    for k, job_id in enumerate(jobs.ids[:4]):
        assert (
            by_expr[f"energy('{job_id}')"].reference == frames[k][1]
        )  # exact through the db
        np.testing.assert_array_equal(
            by_expr[f"forces('{job_id}')"].reference, frames[k][2]
        )
        np.testing.assert_array_equal(
            jobs[job_id].atoms.positions, frames[k][0].positions
        )
    np.testing.assert_array_equal(by_expr["stress('bulk')"].reference, stress)
    # JobCollection.load reads a database too (jobs only)
    assert JobCollection.load(path).ids == jobs.ids


def test_duplicate_frame_names(tmp_path: Path):
    path = tmp_path / "dup.extxyz"
    images = [Atoms("Ar", positions=[[0, 0, 0]]) for _ in range(2)]
    for a in images:
        a.info["name"] = "same"
    ase.io.write(path, images, format="extxyz")
    with pytest.raises(FormatError, match="frames 0 and 1 both have id 'same'") as info:
        read_ase_jobs(path)
    assert info.value.key == "same" and info.value.path == str(path)


def test_missing_file(tmp_path: Path):
    path = tmp_path / "missing.extxyz"
    with pytest.raises(InputError, match="not found") as info:
        import_ase_file(path)
    assert info.value.path == str(path)
    assert "missing.extxyz" in str(info.value)


def test_malformed_file(tmp_path: Path):
    path = tmp_path / "broken.extxyz"
    path.write_text("3\nProperties=species:S:1:pos:R:3\nAr 0 0 0\nAr 0 0\n")
    with pytest.raises(FormatError, match="ASE cannot read this file") as info:
        import_ase_file(path)
    assert info.value.path == str(path)
    bad_db = tmp_path / "broken.db"
    bad_db.write_text("not a database")
    with pytest.raises(FormatError, match="ASE cannot read this file"):
        JobCollection.load(bad_db)


def test_bad_arguments(tmp_path: Path):
    path = tmp_path / "ar.xyz"
    ase.io.write(path, Atoms("Ar", positions=[[0, 0, 0]]))
    with pytest.raises(InputError, match="energy_sigma") as info:
        import_ase_file(path, energy_sigma=-1.0)
    assert info.value.key == "energy_sigma"


def test_wrong_force_shape(tmp_path: Path):
    path = tmp_path / "f.db"
    a = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.8]])
    with ase.db.connect(path) as db:
        db.write(a, data={"REF_energy": -0.01, "REF_forces": np.zeros((3, 3))})
    with pytest.raises(
        FormatError, match=r"forces 'REF_forces' have shape \(3, 3\), expected \(2, 3\)"
    ) as info:
        import_ase_file(path)
    assert info.value.key == "REF_forces"
    jobs, ds = import_ase_file(path, forces=False)  # the energy alias in data is found
    assert [(e.expression, e.reference) for e in ds] == [("energy('f_0000')", -0.01)]


def test_trajectory(tmp_path: Path, emt):
    frames, _ = emt
    path = tmp_path / "md.traj"
    images = []
    for atoms, energy, forces in frames[:2]:
        a = _plain(atoms)
        a.calc = SinglePointCalculator(a, energy=energy, forces=forces)
        images.append(a)
    ase.io.write(path, images)
    jobs, ds = import_ase_file(path)
    assert jobs.ids == ("md_0000", "md_0001")
    by_expr = {e.expression: e for e in ds}
    assert by_expr["energy('md_0001')"].reference == frames[1][1]
    np.testing.assert_array_equal(by_expr["forces('md_0000')"].reference, frames[0][2])
