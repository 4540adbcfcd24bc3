"""Import of classic ReaxFF training sets (geo + trainset.in) and harmonic restraints.

Covers parafit.io.reaxff_geo, parafit.io.trainset, parafit.io.reaxff_import, the
restraints of GeometryOptimization (jobs.py, their YAML round trip, relax.py) and
``parafit import --reaxff``. The ParAMS conversion of the disulfide set
(shared/data/params-format/disulfide) is the reference for the conversion rules.
"""

import collections
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.lj import LennardJones
from ase.geometry import cellpar_to_cell
from ase.neighborlist import neighbor_list
from typer.testing import CliRunner

from parafit.cli import app
from parafit.dataset import DataSet
from parafit.engines.base import JobResults, Status
from parafit.engines.relax import (
    RestrainedCalculator,
    restraint_energy_and_forces,
    run_job,
)
from parafit.errors import FormatError, InputError, ParafitWarning
from parafit.expressions import parse_expression
from parafit.io.reaxff_geo import (
    ReaxFFControl,
    read_control,
    read_geo,
    reaxff_cell,
    rutype_task,
)
from parafit.io.reaxff_import import import_reaxff_directory
from parafit.io.trainset import KCAL_UNIT, fold_dihedral, read_trainset
from parafit.jobs import (
    AngleRestraint,
    BondRestraint,
    GeometryOptimization,
    Job,
    JobCollection,
    SinglePoint,
    TorsionRestraint,
)
from parafit.loss import compute_loss
from parafit.units import KCAL_PER_MOL

SQRT3 = math.sqrt(3.0)


def _extractor_counts(ds: DataSet) -> dict[str, int]:
    return dict(collections.Counter(p.calls[0].extractor for p in ds.plans))


def _task_counts(jc: JobCollection) -> dict[tuple[str, bool], int]:
    return dict(
        collections.Counter(
            (type(j.task).__name__, bool(getattr(j.task, "relax_cell", False)))
            for j in jc
        )
    )


def _block(
    name: str, atoms: str, *, rutype: str = "SINGLE POINT", extra: str = ""
) -> str:
    return (
        f"BIOGRF 200\nDESCRP {name}\nRUTYPE {rutype}\n{extra}"
        "FORMAT ATOM   (a6,1x,i5,1x,a5,1x,a3,1x,a1,1x,a5,3f10.5,1x,a5,i3,i2,1x,f8.5)\n"
        f"{atoms}FORMAT CONECT (a6,12i6)\nEND\n\n"
    )


def _hetatm(n: int, name: str, x: float, y: float, z: float, ff_type: str) -> str:
    return (
        f"HETATM {n:5d} {name:<5s}{'':15s}{x:10.5f}{y:10.5f}{z:10.5f} {ff_type:<5s}"
        "  1 0  0.00000\n"
    )


WATER = (
    _hetatm(1, "O", 0.0, 0.0, 0.119, "O_3")
    + _hetatm(2, "H", 0.0, 0.763, -0.477, "H_")
    + _hetatm(3, "H", 0.0, -0.763, -0.477, "H_")
)
CH4 = (
    _hetatm(1, "C", 0.0, 0.0, 0.0, "C_3")
    + _hetatm(2, "H", 0.63, 0.63, 0.63, "H_")
    + _hetatm(3, "H", -0.63, -0.63, 0.63, "H_")
    + _hetatm(4, "H", -0.63, 0.63, -0.63, "H_")
    + _hetatm(5, "H", 0.63, -0.63, -0.63, "H_")
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# -- the benchmark sets -----------------------------------------------------------------


def test_cobalt_import(shared_data: Path) -> None:
    jobs, train, val = import_reaxff_directory(shared_data / "reaxff-benchmarks/cobalt")
    assert (len(jobs), len(train), val) == (147, 144, None)
    assert _extractor_counts(train) == {"energy": 144}
    # MAXIT 0 -> single point; CELL OPT -> cell relaxation; NORMAL RUN -> relaxation
    assert _task_counts(jobs) == {
        ("GeometryOptimization", False): 124,
        ("SinglePoint", False): 17,
        ("GeometryOptimization", True): 6,
    }
    assert sum(bool(j.atoms.pbc.all()) for j in jobs) == 136  # XTLGRF + CRYSTX
    assert isinstance(jobs["Co_1_atom"].task, SinglePoint)  # RUTYPE MAXIT 0
    # no control file: ReaxFF's defaults imaxit 50, endmm 1.0 kcal/mol/Å
    go = jobs["Co_2_atom"].task
    assert isinstance(go, GeometryOptimization)
    assert (go.optimizer, go.max_iterations, go.pretend_converged) == ("fire", 50, True)
    assert go.fmax == pytest.approx(SQRT3 * 1.0 * KCAL_PER_MOL, rel=1e-15)
    hcp = jobs["hcp_opt"]  # ENDPO 0.050, MAXMOV 0, CELL OPT 0
    assert hcp.task.relax_cell  # type: ignore[union-attr]
    assert hcp.task.fmax == pytest.approx(SQRT3 * 0.05 * KCAL_PER_MOL)  # type: ignore[union-attr]
    assert hcp.metadata["energy"] == -206.836407
    assert hcp.metadata["energy_unit"] == "kcal"
    first = train[0]
    assert first.expression == "+energy('Co_2_atom')/2 - energy('Co_1_atom')/1"
    assert (first.reference, first.sigma, first.weight) == (-29.79, 2.0, 1.0)
    assert first.unit == KCAL_UNIT
    assert KCAL_UNIT.factor == pytest.approx(1.0 / KCAL_PER_MOL, rel=1e-15)
    assert train.lines[0] == 3 and train.path.endswith("cobalt/trainset.in")  # type: ignore[union-attr]


def test_periodic_cell_follows_reaxff_orientation(shared_data: Path) -> None:
    """hcp Co: c along z, b in the yz plane; only then are the geo coordinates hcp."""
    jobs = read_geo(shared_data / "reaxff-benchmarks/cobalt/geo")
    atoms = jobs["hcp_opt"].atoms
    np.testing.assert_allclose(
        atoms.cell.cellpar(), [2.50846, 2.50846, 4.06872, 90, 90, 120], atol=1e-10
    )
    assert atoms.cell[2, 0] == atoms.cell[2, 1] == atoms.cell[1, 0] == 0.0
    i, _, d = neighbor_list("ijd", atoms, 2.6)
    assert np.bincount(i).tolist() == [12, 12]  # 12 nearest neighbours each
    assert d.min() > 2.49
    ase_frame = atoms.copy()  # same cell parameters, ASE's orientation (a along x)
    ase_frame.set_cell(cellpar_to_cell([2.50846, 2.50846, 4.06872, 90, 90, 120]))
    assert neighbor_list("d", ase_frame, 2.6).size != 24


def test_disulfide_import_with_validation(shared_data: Path) -> None:
    root = shared_data / "reaxff-benchmarks/disulfide"
    jobs, train, val = import_reaxff_directory(root)
    assert val is not None
    # 232 training + 230 validation structures, 4 of them (s8, dmds, dpds, dpods) in both
    assert (len(jobs), len(train), len(val)) == (458, 4875, 970)
    assert _extractor_counts(train) == {
        "distance": 94,
        "angle": 85,
        "dihedral": 76,
        "forces": 4401,
        "energy": 219,
    }
    assert _extractor_counts(val) == {
        "distance": 281,
        "angle": 257,
        "dihedral": 233,
        "energy": 199,
    }
    assert _task_counts(jobs) == {
        ("GeometryOptimization", False): 10 + 29 - 4,
        ("SinglePoint", False): 222 + 201,
    }
    assert val.path == str(root / "valSet/trainset.in")
    assert val.job_ids <= set(jobs.ids) and train.job_ids <= set(jobs.ids)
    # valSet/geo has coordinates outside the BGF columns (read by whitespace)
    assert jobs["ssgr"].atoms.positions[0].tolist() == [52.125, 50.0, 50.0]
    assert jobs["ssgr"].atoms.get_chemical_formula() == "C12H10S2"
    # ReaxFF's signed torsions follow ASE's (IUPAC) sign, as TorsionRestraint does:
    # trainset.in has "mdtBase 3.00 3 1 2 5 -122.148" for the (optimized) geo geometry
    signed = jobs["mdtBase"].atoms.get_dihedral(2, 0, 1, 4) - 360.0
    assert signed == pytest.approx(-122.148, abs=0.01)
    entry = train["dihedral('mdtBase', 2, 0, 1, 4)"]
    assert entry.reference == pytest.approx(122.148, abs=1e-12)  # folded, unsigned


def test_equivalence_with_the_params_conversion(shared_data: Path) -> None:
    """Same entries and jobs as ParAMS's geo_to_params + trainset_to_params.

    Remaining differences (none changes an entry, a job or the loss beyond 1e-6):
    - expression text: ParAMS writes ``angles("j",(1,0,2))`` and
      ``+energy("a")/1-energy("b")/1``, we write ``angle('j', 1, 0, 2)`` and
      ``+energy('a')/1 - energy('b')/1``: the parsed canonical forms are equal.
    - job order: ParAMS sorts the ids, we keep the geo order.
    - unit factors: ParAMS's kcal/mol is 627.5096 per Hartree, ours ASE's (CODATA
      2014) 1/KCAL_PER_MOL per eV: relative difference 2.0e-7 (energies) and 4.0e-8
      (forces, 1185.821 per Ha/bohr); labels are equal.
    - fmax of relaxations: ParAMS's sqrt(3) x endmm / 627.5096 Ha/Å read back in eV/Å
      vs sqrt(3) x endmm x KCAL_PER_MOL: relative difference 1.8e-10.
    """
    root = shared_data / "params-format/disulfide"
    jobs = read_geo(root / "geo", root / "control")
    ours = read_trainset(root / "trainset.in", jobs)
    ref_jobs = JobCollection.load(root / "job_collection.yml")
    ref = DataSet.load(root / "data_set.yml")

    assert len(ours) == len(ref) == 4875
    for a, pa, b, pb in zip(ours, ours.plans, ref, ref.plans, strict=True):
        assert pa.canonical == pb.canonical, (a.expression, b.expression)
        assert a.reference == pytest.approx(b.reference, rel=1e-12, abs=1e-12)
        assert a.sigma == pytest.approx(b.sigma, rel=1e-12)
        assert a.weight == pytest.approx(b.weight, rel=1e-12)
        assert a.unit.label == b.unit.label
        assert a.unit.factor == pytest.approx(b.unit.factor, rel=3e-7)

    assert sorted(jobs.ids) == list(ref_jobs.ids)
    for job in jobs:
        other = ref_jobs[job.id]
        assert job.atoms.get_chemical_symbols() == other.atoms.get_chemical_symbols()
        np.testing.assert_array_equal(job.atoms.positions, other.atoms.positions)
        np.testing.assert_array_equal(job.atoms.cell[:], other.atoms.cell[:])
        assert job.atoms.pbc.tolist() == other.atoms.pbc.tolist()
        assert type(job.task) is type(other.task)
        if isinstance(job.task, GeometryOptimization):
            assert isinstance(other.task, GeometryOptimization)
            assert job.task.max_iterations == other.task.max_iterations == 3000
            assert job.task.optimizer == other.task.optimizer == "fire"
            assert job.task.pretend_converged and other.task.pretend_converged
            assert job.task.relax_cell == other.task.relax_cell
            assert job.task.fmax == pytest.approx(other.task.fmax, rel=1e-9)

    # the same loss for the same (synthetic) engine results
    rng = np.random.default_rng(0)
    results = {}
    for job in jobs:
        n = len(job.atoms)
        results[job.id] = JobResults(
            energy=rng.normal(-50.0, 5.0, 2),
            positions=job.atoms.positions[None] + rng.normal(0, 0.05, (2, n, 3)),
            cell=np.broadcast_to(job.atoms.cell[:], (2, 3, 3)).copy(),
            pbc=job.atoms.pbc.copy(),
            status=np.zeros(2, dtype=np.int64),
            forces=rng.normal(0, 0.3, (2, n, 3)),
        )
    loss_ours = compute_loss(
        ours.compile(jobs).predict(results), ours.compile(jobs)
    ).loss
    compiled_ref = ref.compile(ref_jobs)
    loss_ref = compute_loss(compiled_ref.predict(results), compiled_ref).loss
    np.testing.assert_allclose(loss_ours, loss_ref, rtol=1e-5)
    same_units = DataSet(
        [replace(b, unit=a.unit) for a, b in zip(ours, ref, strict=True)]
    ).compile(ref_jobs)
    np.testing.assert_allclose(
        loss_ours,
        compute_loss(same_units.predict(results), same_units).loss,
        rtol=1e-12,
    )


def test_read_control(shared_data: Path) -> None:
    control = read_control(shared_data / "params-format/disulfide/control")
    assert (control.max_iterations, control.rmsg, control.cell_optimization) == (
        3000,
        0.1,
        0,
    )
    assert control.values["imetho"] == "1"


# -- geo details ------------------------------------------------------------------------


def test_geo_restraints_and_rutype(tmp_path: Path) -> None:
    restraints = (
        "BOND RESTRAINT   1   2  1.0900 7500.00 0.25000 0.0000000\n"
        "ANGLE RESTRAINT   2   1   3  120.00  250.00 1.00000  0.0000\n"
        "TORSION RESTRAINT   2   1   3   4  -45.00  250.00 1.00000  0.0000\n"
    )
    text = (
        _block("ch4_r", CH4, rutype="NORMAL RUN", extra=restraints)
        + _block("ch4_maxit", CH4, rutype="MAXIT 7")
        + _block("ch4_dp", CH4, rutype="DOUBLE PRECISION")
        + _block("ch4_lp", CH4, rutype="LOW PRECISION")
    )
    jobs = read_geo(
        _write(tmp_path / "geo", text), ReaxFFControl(max_iterations=40, rmsg=0.5)
    )
    task = jobs["ch4_r"].task
    assert isinstance(task, GeometryOptimization)
    k_bond = 2 * 7500.0 * 0.25 * KCAL_PER_MOL  # k = 2 F1 F2, kcal/mol/Å^2 -> eV/Å^2
    k_angle = 2 * 250.0 * 1.0 * KCAL_PER_MOL  # eV/rad^2
    assert task.restraints == (
        BondRestraint(0, 1, 1.09, k_bond),
        AngleRestraint(1, 0, 2, 120.0, k_angle),
        TorsionRestraint(1, 0, 2, 3, -45.0, k_angle),
    )
    assert (task.max_iterations, task.fmax) == (
        40,
        pytest.approx(SQRT3 * 0.5 * KCAL_PER_MOL),
    )
    assert jobs["ch4_maxit"].task.max_iterations == 7  # type: ignore[union-attr]
    dp = jobs["ch4_dp"].task
    assert (dp.max_iterations, dp.fmax) == (
        80,
        pytest.approx(SQRT3 * 0.25 * KCAL_PER_MOL),
    )  # type: ignore[union-attr]
    assert jobs["ch4_lp"].task.max_iterations == 20  # type: ignore[union-attr]
    assert jobs["ch4_r"].atoms.get_chemical_formula() == "CH4"
    assert not jobs["ch4_r"].atoms.pbc.any()


def test_rutype_keywords() -> None:
    assert isinstance(rutype_task(["SINGLE POINT"]), SinglePoint)
    assert isinstance(rutype_task(["MAXIT 0"]), SinglePoint)
    assert rutype_task(["CELL OPT 3"], periodic=True).relax_cell  # type: ignore[union-attr]
    assert not rutype_task(["CELL OPT 0", "NO CELL OPT"], periodic=True).relax_cell  # type: ignore[union-attr]
    assert rutype_task([], ReaxFFControl(cell_optimization=1), periodic=True).relax_cell  # type: ignore[union-attr]
    with pytest.raises(InputError, match="CRYSTX"):
        rutype_task(["CELL OPT"], periodic=False)
    with pytest.warns(ParafitWarning, match="^unknown RUTYPE 'WARP SPEED'"):
        rutype_task(["WARP SPEED"])


def test_geo_unknown_rutype_warns_with_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "geo", _block("w", WATER, rutype="WARP SPEED"))
    with pytest.warns(ParafitWarning, match=f"^{path}:3: unknown RUTYPE"):
        jobs = read_geo(path)
    assert isinstance(jobs["w"].task, GeometryOptimization)


def test_geo_single_point_restraints_are_ignored_with_a_warning(tmp_path: Path) -> None:
    text = _block("w", WATER, extra="BOND RESTRAINT   1   2  1.0000  100.00 0.25000\n")
    with pytest.warns(ParafitWarning, match="restraints of the single-point"):
        jobs = read_geo(_write(tmp_path / "geo", text))
    assert isinstance(jobs["w"].task, SinglePoint)


def test_geo_whitespace_atoms_type_map_and_vchange(tmp_path: Path) -> None:
    text = (
        "XTLGRF 200\nDESCRP box\nRUTYPE NORMAL RUN\n"
        "CRYSTX     4.00000    5.00000    6.00000   90.00000   90.00000   90.00000\n"
        "HETATM     1 Ow                  1.000000 2.000000 3.000000\n"
        "HETATM     2 Hw                  1.500000 2.000000 3.000000\n"
        "END\n\nXTLGRF 200\nDESCRP box_80\nVCHANGE 0.80\nEND\n"
    )
    jobs = read_geo(_write(tmp_path / "geo", text), type_map={"Hw": "H", "Ow": "O"})
    box = jobs["box"].atoms
    assert box.get_chemical_symbols() == ["O", "H"]
    np.testing.assert_array_equal(box.positions, [[1, 2, 3], [1.5, 2, 3]])
    np.testing.assert_array_equal(box.cell[:], np.diag([4.0, 5.0, 6.0]))
    scaled = jobs["box_80"]
    assert scaled.atoms.get_volume() == pytest.approx(0.8 * box.get_volume())
    np.testing.assert_allclose(
        scaled.atoms.get_scaled_positions(), box.get_scaled_positions()
    )
    assert isinstance(scaled.task, GeometryOptimization) and not scaled.task.relax_cell
    assert scaled.metadata["vchange"] == {"of": "box", "volume_factor": 0.8}


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        (_block("w", WATER) + _block("w", WATER), 12, "duplicate DESCRP 'w'"),
        (
            _block("w", WATER.replace("HETATM     2", "HETATM     3")),
            6,
            "atom number 3",
        ),
        (_block("w", WATER.replace("H_   ", "Qq   ")), 6, "unknown element"),
        (_block("w", WATER).replace("END\n", ""), 1, "has no END"),
        (_block("w", WATER).replace("END\n", "") + _block("v", WATER), 10, "no END"),
        (_block("w", "", extra=""), 6, "no HETATM atoms"),
        (_block("w", WATER, extra="CRYSTX 4.0 4.0\n"), 4, "CRYSTX needs"),
        (
            _block(
                "w",
                WATER,
                rutype="NORMAL RUN",
                extra="BOND RESTRAINT 1 9 1.0 10.0 0.2\n",
            ),
            4,
            "atom 9 out of range",
        ),
        (
            _block("w", WATER, extra="BOND RESTRAINT 1 x 1.0\n"),
            4,
            "needs 2 atom numbers",
        ),
        (_block("w", WATER, rutype="CELL OPT"), 3, "CRYSTX"),
        (_block("w", WATER, rutype="MAXIT many"), 3, "needs a number"),
        ("DESCRP w\n", 1, "expected a BIOGRF or XTLGRF"),
        (_block("w", WATER).replace("DESCRP w\n", ""), 1, "no DESCRP"),
        (_block("w", _hetatm(1, "O", 0, 0, 0, "O")[:40] + "\n"), 5, "coordinates"),
    ],
)
def test_geo_errors_have_file_and_line(
    tmp_path: Path, text: str, line: int, match: str
) -> None:
    path = _write(tmp_path / "geo", text)
    with pytest.raises(FormatError, match=match) as info:
        read_geo(path)
    assert info.value.path == str(path) and info.value.line == line
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_reaxff_cell_rejects_impossible_angles() -> None:
    with pytest.raises(ValueError, match="do not make a cell"):
        reaxff_cell(3.0, 3.0, 3.0, 90.0, 90.0, 179.99999999)
    np.testing.assert_allclose(
        Atoms(cell=reaxff_cell(3.0, 4.0, 5.0, 70.0, 80.0, 100.0)).cell.cellpar(),
        [3.0, 4.0, 5.0, 70.0, 80.0, 100.0],
    )


# -- trainset.in details ----------------------------------------------------------------


def _small_jobs(tmp_path: Path) -> JobCollection:
    cryst = (
        "CRYSTX     5.00000    5.00000    5.00000   90.00000   90.00000   90.00000\n"
    )
    text = (
        _block("w", WATER)
        + _block("ch4", CH4, rutype="NORMAL RUN")
        + _block("cryst", WATER, extra=cryst).replace("BIOGRF", "XTLGRF")
    )
    return read_geo(_write(tmp_path / "geo", text))


def test_trainset_all_sections(tmp_path: Path) -> None:
    jobs = _small_jobs(tmp_path)
    text = """# a comment
CHARGE
w 0.05 1 -0.8   ! inline comment
ENDCHARGE
CELL PARAMETERS
cryst 0.1 a 5.1
cryst 0.5 gamma 90.0
END CELL PARAMETERS
GEOMETRY
ch4 0.01 1 2 1.09
ch4 1.0 2 1 3 109.5
ch4 2.0 2 1 3 4 -120.0
ENDGEOMETRY
FORCES
w 2.0 2 0.5 -1.0 1.5
ENDFORCES
ENERGY
 1.5  w/1  -  ch4 /2 + cryst/ 3  -12.0
 2.0 - w -ch4/1 0.5
ENDENERGY
"""
    ds = read_trainset(_write(tmp_path / "trainset.in", text), jobs)
    got = [(e.expression, e.reference, e.sigma, e.unit.label) for e in ds]
    assert got == [
        ("charges('w', 0)", -0.8, 0.05, "e"),
        ("cell_lengths('cryst', 0)", 5.1, 0.1, "angstrom"),
        ("cell_angles('cryst', 2)", 90.0, 0.5, "degree"),
        ("distance('ch4', 0, 1)", 1.09, 0.01, "angstrom"),
        ("angle('ch4', 1, 0, 2)", 109.5, 1.0, "degree"),
        ("dihedral('ch4', 1, 0, 2, 3)", 120.0, 2.0, "degree"),
        ("forces('w', 1, 0)", 0.5, 2.0, "kcal/(mol*angstrom)"),
        ("forces('w', 1, 1)", -1.0, 2.0, "kcal/(mol*angstrom)"),
        ("forces('w', 1, 2)", 1.5, 2.0, "kcal/(mol*angstrom)"),
        ("energy('w')/1 - energy('ch4')/2 + energy('cryst')/3", -12.0, 1.5, "kcal/mol"),
        ("-energy('w') - energy('ch4')/1", 0.5, 2.0, "kcal/mol"),
    ]
    assert ds.lines == (3, 6, 7, 10, 11, 12, 15, 15, 15, 18, 19)
    assert all(e.weight == 1.0 for e in ds)
    ds.validate(jobs)
    plan = parse_expression(ds[9].expression)
    assert plan.linear == ((1.0, 0), (-0.5, 1), (pytest.approx(1 / 3), 2))


def test_dihedral_references_are_folded_as_params_does() -> None:
    assert fold_dihedral(-63.463) == pytest.approx(63.463, abs=1e-12)
    assert fold_dihedral(-63.463) == 360.0 - (-63.463 % 360.0)  # bit for bit
    assert fold_dihedral(179.674) == 179.674
    assert fold_dihedral(200.0) == pytest.approx(160.0)
    assert fold_dihedral(-180.0) == 180.0


def test_trainset_skips_heatfo_and_rmsg_with_warnings(tmp_path: Path) -> None:
    jobs = _small_jobs(tmp_path)
    text = "HEATFO\nw 2.0 -57.8\nENDHEATFO\nGEOMETRY\nch4 1.0 0.01\nENDGEOMETRY\n"
    path = _write(tmp_path / "trainset.in", text)
    with pytest.warns(ParafitWarning) as record:
        ds = read_trainset(path, jobs)
    assert len(ds) == 0
    messages = sorted(str(w.message) for w in record)
    assert "1 GEOMETRY RMSG line(s) skipped" in messages[0] and "lines 5" in messages[0]
    assert "1 HEATFO line(s) skipped" in messages[1] and "lines 2" in messages[1]
    with pytest.warns(ParafitWarning, match="RMSG"):
        ds = read_trainset(path, jobs, heatfo="energy")
    assert [(e.expression, e.reference, e.unit.label) for e in ds] == [
        ("energy('w')", -57.8, "kcal/mol")
    ]
    assert ds[0].metadata == {"reaxff_section": "HEATFO"}


@pytest.mark.parametrize(
    ("text", "line", "error", "match"),
    [
        (
            "ENERGY\n1.0 + w/1 - nope/1 2.0\nENDENERGY\n",
            2,
            InputError,
            "unknown structure 'nope'",
        ),
        (
            "GEOMETRY\nch4 0.1 1 6 1.0\nENDGEOMETRY\n",
            2,
            InputError,
            "atom number 6 out of range",
        ),
        ("GEOMETRY\nch4 0.1 0 1 1.0\nENDGEOMETRY\n", 2, InputError, "1-based"),
        ("CHARGE\nw 0.1 4 0.3\nENDCHARGE\n", 2, InputError, "out of range"),
        (
            "CELL PARAMETERS\nw 0.1 a 5.0\nENDCELL PARAMETERS\n",
            2,
            InputError,
            "no cell",
        ),
        (
            "CELL PARAMETERS\ncryst 0.1 d 5.0\nENDCELL PARAMETERS\n",
            2,
            FormatError,
            "unknown cell",
        ),
        (
            "ENERGY\n1.0 + w/1 - + ch4/1 2.0\nENDENERGY\n",
            2,
            FormatError,
            "two operators",
        ),
        ("ENERGY\n1.0 + w/0 2.0\nENDENERGY\n", 2, FormatError, "division by zero"),
        ("ENERGY\n1.0 + w/1 - ch4/1\nENDENERGY\n", 2, FormatError, "reference energy"),
        ("ENERGY\n-1.0 + w/1 2.0\nENDENERGY\n", 2, FormatError, "accuracy must be > 0"),
        (
            "ENERGY\n1.0 w 1.0\n1.0 w 2.0\nENDENERGY\n",
            3,
            InputError,
            "already defined at line 2",
        ),
        ("FORCES\nw 1.0 1 0.5 0.5\nENDFORCES\n", 2, FormatError, "fx fy fz"),
        (
            "GEOMETRY\nch4 0.1 1 2 3 4 5 1.0\nENDGEOMETRY\n",
            2,
            FormatError,
            "2 \\(distance\\)",
        ),
        ("w 0.1 1 2 1.0\n", 1, FormatError, "outside a section"),
        ("\nENERGY\n1.0 w 1.0\n", 2, FormatError, "has no ENDENERGY"),
        ("ENERGY\nGEOMETRY\n", 2, FormatError, "inside the section ENERGY"),
    ],
)
def test_trainset_errors_have_file_and_line(
    tmp_path: Path, text: str, line: int, error: type, match: str
) -> None:
    jobs = _small_jobs(tmp_path)
    path = _write(tmp_path / "trainset.in", text)
    with pytest.raises(error, match=match) as info:
        read_trainset(path, jobs)
    assert info.value.path == str(path) and info.value.line == line


def test_trainset_unknown_section_is_skipped_with_a_warning(tmp_path: Path) -> None:
    text = "FREQUENCIES\nw 1.0 1 1600\nENDFREQUENCIES\nENERGY\n1.0 w 1.0\nENDENERGY\n"
    with pytest.warns(
        ParafitWarning, match="unknown trainset.in section 'FREQUENCIES'"
    ):
        ds = read_trainset(
            _write(tmp_path / "trainset.in", text), _small_jobs(tmp_path)
        )
    assert [e.expression for e in ds] == ["energy('w')"]


def test_validation_geo_must_agree_with_training_geo(tmp_path: Path) -> None:
    _write(tmp_path / "geo", _block("w", WATER))
    _write(tmp_path / "trainset.in", "ENERGY\n1.0 w 1.0\nENDENERGY\n")
    (tmp_path / "valSet").mkdir()
    _write(tmp_path / "valSet/geo", _block("w", WATER, rutype="NORMAL RUN"))
    _write(tmp_path / "valSet/trainset.in", "ENERGY\n1.0 w 1.0\nENDENERGY\n")
    with pytest.raises(FormatError, match="structure 'w' differs"):
        import_reaxff_directory(tmp_path)
    _write(tmp_path / "valSet/geo", _block("w", WATER) + _block("v", WATER))
    jobs, train, val = import_reaxff_directory(tmp_path)
    assert jobs.ids == ("w", "v") and len(train) == len(val) == 1  # type: ignore[arg-type]


# -- restraints: jobs, YAML, relaxation -------------------------------------------------


def test_restraint_validation() -> None:
    with pytest.raises(InputError, match="distinct"):
        BondRestraint(1, 1, 1.0, 1.0)
    with pytest.raises(InputError, match="0-based"):
        AngleRestraint(-1, 0, 2, 100.0, 1.0)
    with pytest.raises(InputError, match="from 0 to 180"):
        AngleRestraint(0, 1, 2, 190.0, 1.0)
    with pytest.raises(InputError, match="force_constant must be >= 0"):
        TorsionRestraint(0, 1, 2, 3, 60.0, -1.0)
    with pytest.raises(InputError, match="must be BondRestraint"):
        GeometryOptimization(restraints=("bond",))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="restraint atom index 5 out of range for 3"):
        Job(
            "w",
            Atoms("OH2"),
            GeometryOptimization(restraints=[BondRestraint(0, 5, 1.0, 1.0)]),
        )
    task = GeometryOptimization(restraints=[BondRestraint(0, 1, 1.0, 1.0)])
    assert (
        isinstance(task.restraints, tuple) and GeometryOptimization().restraints == ()
    )


def test_job_yaml_round_trip_with_restraints(tmp_path: Path) -> None:
    task = GeometryOptimization(
        optimizer="fire",
        restraints=(
            BondRestraint(0, 1, 1.2, 5.0),
            AngleRestraint(1, 0, 2, 104.5, 2.0),
            TorsionRestraint(3, 0, 1, 2, -170.25, 0.5),
        ),
    )
    atoms = Atoms("OH3", positions=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    jc = JobCollection([Job("a", atoms, task), Job("b", atoms, GeometryOptimization())])
    jc.save(tmp_path / "jobs.yaml")
    text = (tmp_path / "jobs.yaml").read_text()
    assert text.count("restraints") == 1  # not written when there are none
    back = JobCollection.load(tmp_path / "jobs.yaml")
    assert back["a"].task == task and back["b"].task == GeometryOptimization()


@pytest.mark.parametrize(
    ("restraint", "match"),
    [
        (
            "{kind: spring, atoms: [0, 1], target: 1.0, force_constant: 1.0}",
            "unknown restraint kind",
        ),
        (
            "{kind: angle, atoms: [0, 1], target: 90.0, force_constant: 1.0}",
            "needs a list of 3",
        ),
        (
            "{kind: bond, atoms: [0, 7], target: 1.0, force_constant: 1.0}",
            "index 7 out of range",
        ),
        ("{kind: bond, atoms: [0, 1], target: 1.0}", "missing force_constant"),
        (
            "{kind: bond, atoms: [0, 1], target: -1.0, force_constant: 1.0}",
            "target must be > 0",
        ),
    ],
)
def test_job_yaml_restraint_errors(tmp_path: Path, restraint: str, match: str) -> None:
    text = (
        "format: parafit-jobs\nversion: 1\njobs:\n- id: d\n  symbols: [Ar, Ar]\n"
        "  positions: [[0, 0, 0], [0, 0, 3.8]]\n  task:\n    type: geometry_optimization\n"
        f"    restraints:\n    - {restraint}\n"
    )
    path = _write(tmp_path / "jobs.yaml", text)
    with pytest.raises(FormatError, match=match) as info:
        JobCollection.load(path)
    assert info.value.line is not None and 8 <= info.value.line <= 10


def _lj(eps: float = 0.0104) -> LennardJones:
    return LennardJones(sigma=3.82 / 2 ** (1 / 6), epsilon=eps, rc=9.0, smooth=False)


def test_relaxation_applies_a_bond_restraint() -> None:
    dimer = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.9]])
    free = run_job(
        Job("d", dimer, GeometryOptimization(fmax=1e-5, max_iterations=500)), _lj()
    )
    assert free.positions[0, 1, 2] - free.positions[0, 0, 2] == pytest.approx(
        3.82, abs=1e-3
    )
    task = GeometryOptimization(
        fmax=1e-5, max_iterations=500, restraints=(BondRestraint(0, 1, 4.6, 5.0),)
    )
    res = run_job(Job("d", dimer, task), _lj())
    assert res.status[0] == Status.OK
    r = float(np.linalg.norm(res.positions[0, 1] - res.positions[0, 0]))
    # equilibrium: k (r - 4.6) = LJ attraction at 4.6 Å (~0.011 eV/Å) -> r ~ 4.598
    assert r == pytest.approx(4.6, abs=0.005) and r < 4.6
    # reported energy and forces are the model's, without the restraint
    plain = Atoms("Ar2", positions=res.positions[0])
    plain.calc = _lj()
    assert res.energy[0] == pytest.approx(plain.get_potential_energy(), rel=1e-12)
    np.testing.assert_allclose(res.forces[0], plain.get_forces(), atol=1e-12)
    assert abs(res.forces[0, 1, 2]) > 1e-3  # the model alone is not at rest


def test_relaxation_applies_angle_and_torsion_restraints() -> None:
    atoms = Atoms(
        "Ar4",
        positions=[[0.1, 3.8, 0.2], [0, 0, 0], [3.8, 0, 0], [3.9, 3.7, 1.0]],
    )
    k = 20.0  # eV/rad^2, much stiffer than the LJ forces
    task = GeometryOptimization(
        optimizer="bfgs",
        fmax=1e-4,
        max_iterations=1000,
        restraints=(
            AngleRestraint(0, 1, 2, 75.0, k),
            TorsionRestraint(0, 1, 2, 3, -40.0, k),
            BondRestraint(1, 2, 3.8, 50.0),
        ),
    )
    res = run_job(Job("t", atoms, task), _lj())
    assert res.status[0] == Status.OK
    final = Atoms("Ar4", positions=res.positions[0])
    assert final.get_angle(0, 1, 2) == pytest.approx(75.0, abs=0.5)
    assert final.get_dihedral(0, 1, 2, 3) == pytest.approx(320.0, abs=0.5)  # -40 + 360


@pytest.mark.parametrize("pbc", [False, True])
def test_restraint_forces_and_stress_match_finite_differences(pbc: bool) -> None:
    rng = np.random.default_rng(3)
    atoms = Atoms(
        "C4",
        positions=rng.normal(size=(4, 3)) * 1.2,
        cell=np.eye(3) * 6 + rng.normal(size=(3, 3)) * 0.3,
        pbc=pbc,
    )
    restraints = [
        BondRestraint(0, 1, 1.1, 3.0),
        AngleRestraint(0, 1, 2, 100.0, 2.0),
        TorsionRestraint(0, 1, 2, 3, -60.0, 1.5),
    ]
    energy, forces, stress = restraint_energy_and_forces(restraints, atoms)
    assert energy > 0
    h = 1e-6
    numeric = np.zeros_like(forces)
    for i in range(4):
        for c in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, c] += h
            minus.positions[i, c] -= h
            numeric[i, c] = -(
                restraint_energy_and_forces(restraints, plus)[0]
                - restraint_energy_and_forces(restraints, minus)[0]
            ) / (2 * h)
    np.testing.assert_allclose(forces, numeric, atol=1e-7)
    if not pbc:
        assert not stress.any()
        return
    numeric_stress = np.zeros(6)
    for m, (a, b) in enumerate([(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]):
        strain = np.zeros((3, 3))
        strain[a, b] = strain[b, a] = h if a == b else h / 2
        plus, minus = atoms.copy(), atoms.copy()
        plus.set_cell(atoms.cell[:] @ (np.eye(3) + strain), scale_atoms=True)
        minus.set_cell(atoms.cell[:] @ (np.eye(3) - strain), scale_atoms=True)
        numeric_stress[m] = (
            restraint_energy_and_forces(restraints, plus)[0]
            - restraint_energy_and_forces(restraints, minus)[0]
        ) / (2 * h * atoms.get_volume())
    np.testing.assert_allclose(stress, numeric_stress, atol=1e-7)


def test_restrained_calculator_adds_to_the_model() -> None:
    atoms = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 4.0]], cell=[8, 8, 8], pbc=True)
    restraints = (BondRestraint(0, 1, 3.5, 2.0),)
    atoms.calc = RestrainedCalculator(_lj(), restraints)
    model = atoms.copy()
    model.calc = _lj()
    e, f, s = restraint_energy_and_forces(restraints, atoms)
    assert atoms.get_potential_energy() == pytest.approx(
        model.get_potential_energy() + e
    )
    np.testing.assert_allclose(atoms.get_forces(), model.get_forces() + f)
    np.testing.assert_allclose(atoms.get_stress(), model.get_stress() + s)
    assert e == pytest.approx(0.5 * 2.0 * 0.5**2)


# -- command line -----------------------------------------------------------------------


def test_cli_import_reaxff_writes_the_validation_set(
    shared_data: Path, tmp_path: Path
) -> None:
    source = shared_data / "reaxff-benchmarks/disulfide"
    out = tmp_path / "imported"
    runner = CliRunner()
    result = runner.invoke(app, ["import", "--reaxff", str(source), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "458 jobs" in result.output and "970 entries" in result.output
    jobs = JobCollection.load(out / "job_collection.yaml")
    train = DataSet.load(out / "training_set.yaml")
    val = DataSet.load(out / "validation_set.yaml")
    assert (len(jobs), len(train), len(val)) == (458, 4875, 970)
    assert train[len(train) - 1].unit.label == "kcal/mol"
    assert train[len(train) - 1].unit.factor == pytest.approx(
        1 / KCAL_PER_MOL, rel=1e-14
    )
    val.validate(jobs)
    again = runner.invoke(app, ["import", "--reaxff", str(source), "-o", str(out)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    no_flag = runner.invoke(app, ["import", str(source), "-o", str(tmp_path / "x")])
    assert no_flag.exit_code == 2 and "--reaxff" in no_flag.output


def test_trainset_naming_a_structure_missing_from_geo(
    shared_data: Path, tmp_path: Path
) -> None:
    """A trainset entry whose structure has no geo block: one error with file and line,
    and ``parafit import`` writes nothing."""
    source = tmp_path / "set"
    source.mkdir()
    geo = (shared_data / "reaxff-benchmarks" / "cobalt" / "geo").read_text()
    (source / "geo").write_text(geo)
    (source / "trainset.in").write_text(
        "ENERGY\n2.00  + Co_2_atom/2 - Co_nonexistent/1   -29.79\nENDENERGY\n"
    )
    with pytest.raises(InputError, match=r"trainset.in:2.*Co_nonexistent"):
        import_reaxff_directory(source)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["import", "--reaxff", str(source), "-o", str(out)]
    )
    assert result.exit_code != 0
    assert "trainset.in:2" in result.output
    assert not out.exists() or not any(out.iterdir())
