"""Tests for parafit.io.jobs_yaml (our format, format dispatch) and parafit.io.ams_input (ParAMS)."""

import logging
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from parafit import units
from parafit.errors import FormatError, InputError
from parafit.io.ams_input import (
    job_from_ams_input,
    parse_ams_input,
    read_params_job_collection,
)
from parafit.io.jobs_yaml import read_job_collection
from parafit.jobs import GeometryOptimization, JobCollection, PESScan, SinglePoint

DISULFIDE = (
    Path(__file__).parents[2]
    / "shared"
    / "data"
    / "params-format"
    / "disulfide"
    / "job_collection.yml"
)


def _write(tmp_path: Path, text: str, name: str = "jobs.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def _line_of(path: Path, fragment: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if fragment in line:
            return i
    raise AssertionError(fragment)


# -- our format ------------------------------------------------------------------------

GOOD = """
# parafit job collection
format: parafit-jobs
version: 1
jobs:
- id: dimer_3.8
  task: {type: single_point}
  symbols: [Ar, Ar]
  positions: [[0.0, 0.0, 0.0], [0.0, 0.0, 3.8]]
- id: relaxed
  task: {type: geometry_optimization, optimizer: lbfgs, max_iterations: 100, fmax: 1e-3,
         relax_cell: false, pretend_converged: true}
  symbols: [O, H, H]
  positions: [[0, 0, 0.12], [0, 0.76, -0.48], [0, -0.76, -0.48]]
  reference_engine: dft
  metadata: {source: hand, n: 3}
- id: scan
  task: {type: pes_scan, relaxed: true, optimizer: lbfgs, max_iterations: 100, fmax: 0.01,
         coordinates: [{kind: distance, atoms: [0, 1], values: [0.9, 1.0, 1.1]}]}
  symbols: [O, H, H]
  positions: [[0, 0, 0.12], [0, 0.76, -0.48], [0, -0.76, -0.48]]
- id: range_scan
  task:
    type: pes_scan
    relaxed: false
    coordinates:
    - kind: angle
      atoms: [1, 0, 2]
      values: {start: 0.9, stop: 1.5, n_points: 7}
  symbols: [O, H, H]
  positions: [[0, 0, 0.12], [0, 0.76, -0.48], [0, -0.76, -0.48]]
- id: bulk
  symbols: [Cu]
  positions: [[0, 0, 0]]
  cell: [[0, 1.8, 1.8], [1.8, 0, 1.8], [1.8, 1.8, 0]]
  pbc: true
- id: box
  symbols: [Ne]
  positions: [[1, 1, 1]]
  cell: [2.0, 3.0, 4.0]
"""


def test_read_our_format(tmp_path: Path):
    jc = read_job_collection(_write(tmp_path, GOOD))
    assert jc.ids == ("dimer_3.8", "relaxed", "scan", "range_scan", "bulk", "box")
    assert jc["dimer_3.8"].atoms.get_distance(0, 1) == 3.8
    go = jc["relaxed"]
    assert go.task == GeometryOptimization(
        fmax=1e-3
    )  # "1e-3" (a YAML 1.1 string) read as a number
    assert go.reference_engine == "dft" and go.metadata == {"source": "hand", "n": 3}
    scan = jc["scan"].task
    assert isinstance(scan, PESScan) and scan.coordinates[0].values == (0.9, 1.0, 1.1)
    rng = jc["range_scan"].task
    assert isinstance(rng, PESScan) and not rng.relaxed
    assert rng.coordinates[0].values == tuple(np.linspace(0.9, 1.5, 7))
    assert jc["bulk"].task == SinglePoint() and jc["bulk"].atoms.pbc.all()
    assert jc["bulk"].atoms.get_volume() == pytest.approx(2 * 1.8**3)
    np.testing.assert_array_equal(jc["box"].atoms.cell.lengths(), [2.0, 3.0, 4.0])
    assert not jc["box"].atoms.pbc.any()


def test_round_trip_through_params_import(tmp_path: Path):
    jc = read_params_job_collection(DISULFIDE)
    path = tmp_path / "jc.yaml"
    jc.save(path)
    back = JobCollection.load(path)
    assert back.ids == jc.ids
    assert all(a == b for a, b in zip(jc, back, strict=True))


BAD_CASES = [
    # (replace this, with that, error fragment, line fragment or None)
    (
        "format: parafit-jobs",
        "format: parafit-job",
        "unknown format 'parafit-job'",
        "format:",
    ),
    ("version: 1", "version: 2", "version 2 is not supported", "version:"),
    ("jobs:", "jbos: []\njobs:", "unknown key 'jbos' in the top level", "jbos"),
    (
        "task: {type: single_point}",
        "task: {type: single_pont}",
        "unknown task type 'single_pont'",
        "single_pont",
    ),
    (
        "relax_cell: false,",
        "relax_cel: false,",
        "job 'relaxed': unknown key 'relax_cel' in a geometry_optimization task",
        "relax_cel",
    ),
    (
        "optimizer: lbfgs, max_iterations: 100, fmax: 1e-3",
        "optimizer: newton, max_iterations: 100, fmax: 1e-3",
        "job 'relaxed': unknown geometry optimizer 'newton'",
        "newton",
    ),
    (
        "max_iterations: 100, fmax: 1e-3",
        "max_iterations: ten, fmax: 1e-3",
        "max_iterations: expected an integer; got 'ten'",
        "ten",
    ),
    (
        "symbols: [Ar, Ar]",
        "symbols: [Ar, Xy]",
        "job 'dimer_3.8': unknown element symbol 'Xy' at symbols[1]",
        "Xy",
    ),
    ("symbols: [Ar, Ar]", "symbols: [Ar, ar]", "did you mean 'Ar'", "[Ar, ar]"),
    (
        "symbols: [Ar, Ar]",
        "symbols: [Ar, Ar, Ar]",
        "'positions' has 2 rows but 'symbols' has 3 atoms",
        "[[0.0, 0.0, 0.0], [0.0, 0.0, 3.8]]",
    ),
    (
        "[[0.0, 0.0, 0.0], [0.0, 0.0, 3.8]]",
        "[[0.0, 0.0, 0.0], [0.0, 3.8]]",
        "positions[1] must be [x, y, z]",
        "[0.0, 3.8]",
    ),
    (
        "atoms: [0, 1], values",
        "atoms: [0, 5], values",
        "job 'scan': scan atom index 5 out of range for 3 atoms",
        None,
    ),
    (
        "atoms: [0, 1], values",
        "atoms: [0, 1, 2], values",
        "a distance scan needs 2 atoms",
        None,
    ),
    (
        "values: {start: 0.9, stop: 1.5, n_points: 7}",
        "values: {start: 0.9, n_points: 7}",
        "missing stop",
        "start: 0.9",
    ),
    (
        "- id: box",
        "- id: bulk",
        "duplicate job id 'bulk' (first defined at line",
        "- id: bulk\n",
    ),
    ("pbc: true", "pbc: yes please", "'pbc' must be true/false", "pbc:"),
    (
        "  reference_engine: dft",
        "  reference_engine: dft\n  referenceengine: x",
        "unknown key 'referenceengine' in a job; allowed",
        "referenceengine",
    ),
    (
        "- id: dimer_3.8\n  task",
        "- id: dimer_3.8\n  id: again\n  task",
        "key 'id' appears twice",
        "id: again",
    ),
]


@pytest.mark.parametrize(("old", "new", "message", "line_text"), BAD_CASES)
def test_format_errors(tmp_path: Path, old, new, message, line_text):
    text = textwrap.dedent(GOOD)
    assert old in text
    path = _write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(FormatError, match=re.escape(message)) as info:
        read_job_collection(path)
    err = info.value
    assert err.path == str(path)
    assert err.line is not None
    if line_text is not None:
        lines = path.read_text().splitlines()
        if line_text.endswith("\n"):  # the last occurrence
            expected = max(i for i, s in enumerate(lines, 1) if line_text.strip() in s)
        else:
            expected = _line_of(path, line_text)
        assert err.line == expected
    assert str(err).startswith(f"{path}:{err.line}: ")


def test_error_key_is_job_id(tmp_path: Path):
    path = _write(
        tmp_path,
        textwrap.dedent(GOOD).replace("relax_cell: false,", "relax_cel: false,"),
    )
    with pytest.raises(FormatError) as info:
        read_job_collection(path)
    assert info.value.key == "relaxed"


def test_malformed_yaml(tmp_path: Path):
    path = _write(
        tmp_path,
        "format: parafit-jobs\njobs:\n- id: a\n  symbols: [Ar\n  positions: x\n",
    )
    with pytest.raises(FormatError, match="invalid YAML") as info:
        read_job_collection(path)
    assert info.value.path == str(path) and info.value.line == 5


def test_not_a_job_collection(tmp_path: Path):
    path = _write(tmp_path, "just: a mapping\n")
    with pytest.raises(FormatError, match="not a job collection"):
        read_job_collection(path)


def test_missing_file(tmp_path: Path):
    with pytest.raises(InputError, match="not found") as info:
        JobCollection.load(tmp_path / "nope.yaml")
    assert info.value.path == str(tmp_path / "nope.yaml")


def test_pickle_refused(tmp_path: Path):
    path = tmp_path / "job_collection.pkl"
    path.write_bytes(b"\x80\x04.")
    with pytest.raises(FormatError, match="pickled"):
        read_job_collection(path)


def test_dispatch_without_extension(tmp_path: Path):
    ours = _write(tmp_path, GOOD, name="jobs_ours")
    assert len(read_job_collection(ours)) == 6
    params = tmp_path / "jobs_params"
    params.write_text(DISULFIDE.read_text())
    assert len(read_job_collection(params)) == 232


# -- ParAMS job_collection.yml ---------------------------------------------------------


def test_disulfide_params_collection():
    jc = JobCollection.load(DISULFIDE)
    assert len(jc) == 232
    gos = [j for j in jc if isinstance(j.task, GeometryOptimization)]
    assert len(gos) == 10
    assert sum(isinstance(j.task, SinglePoint) for j in jc) == 222
    # AMS Convergence%Gradients is in Hartree/Angstrom (AMS manual); fmax is in eV/Å
    fmax = 0.00027601986582642706 * units.HARTREE
    for job in gos:
        assert job.task == GeometryOptimization(
            optimizer="fire", max_iterations=3000, fmax=fmax, pretend_converged=True
        )
    assert all(j.reference_engine is None and j.metadata == {} for j in jc)
    bnz = jc["bnz"]
    assert bnz.atoms.get_chemical_formula() == "C6H6"
    np.testing.assert_array_equal(bnz.atoms.positions[0], [-0.75929, 1.16804, -0.0016])
    np.testing.assert_array_equal(
        bnz.atoms.positions[11], [-2.46941, -0.13362, -0.00172]
    )
    assert not bnz.atoms.pbc.any()


def test_disulfide_positions_match_raw_text():
    """Every atom of a few jobs equals the numbers in the raw AMS text."""
    text = DISULFIDE.read_text()
    jc = read_params_job_collection(DISULFIDE)
    for job_id in ("dmds", "s8", "mdt-CS2.5"):
        block = text.split(f"ID: '{job_id}'\n", 1)[1].split("---", 1)[0]
        atoms_text = block.split("Atoms\n", 1)[1].split("End", 1)[0]
        rows = [line.split() for line in atoms_text.strip().splitlines()]
        job = jc[job_id]
        assert job.atoms.get_chemical_symbols() == [r[0] for r in rows]
        np.testing.assert_array_equal(
            job.atoms.positions, [[float(x) for x in r[1:4]] for r in rows]
        )


PARAMS = """
# 0.5.0
---
ID: 'scan'
ReferenceEngineID: 'dftb'
Source: https://doi.org/10.0/x
PlotIt: True
AMSInput: |
   Task PESScan
   System
       Atoms
           O 0.0 0.0 0.0   region=water
           H 0.0 0.0 0.96  adf.f=frag1
           H 0.93 0.0 -0.24
       End
       Charge -1
   End
   GeometryOptimization
       MaxIterations 50
       Method Quasi-Newton
       Convergence
           Gradients 1e-4
       End
   End
   PESScan
       ScanCoordinate
           nPoints 5
           Distance 1 2 0.9 1.3
           Angle 2 1 3 100 120
       End
   End
   Properties
       Gradients Yes
   End
---
ID: 1.5
ReferenceEngineID: None
AMSInput: |
   task geometryoptimization
   system
     atoms
       Cu 0.0 0.0 0.0
       Cu 1.8 1.8 0.0
     end
     lattice
       3.6 0.0 0.0
       0.0 3.6 0.0
       0.0 0.0 3.6
     end
   end
   GeometryOptimization
     OptimizeLattice Yes
     PretendConverged No
     Method FIRE
     Convergence
       Quality Good
     End
   End
   Constraints
     Atom 2
   End
---
ID: slab
ReferenceEngineID: None
AMSInput: |
   System
       Atoms [Bohr]
           C 0.0 0.0 0.0
       End
       Lattice [Bohr]
           4.0 0.0 0.0
           0.0 5.0 0.0
       End
   End
   Engine ReaxFF
       ForceField CHO.ff
   EndEngine
...
"""


def test_params_hand_written(tmp_path: Path):
    jc = read_params_job_collection(_write(tmp_path, PARAMS, "job_collection.yml"))
    assert jc.ids == ("scan", "1.5", "slab")

    scan = jc["scan"]
    assert scan.reference_engine == "dftb"
    assert scan.metadata == {
        "Source": "https://doi.org/10.0/x",
        "PlotIt": True,
        "charge": -1.0,
    }
    task = scan.task
    assert isinstance(task, PESScan) and task.relaxed and task.n_points == 5
    assert task.optimizer == "lbfgs" and task.max_iterations == 50
    assert task.fmax == 1e-4 * units.HARTREE
    d, a = task.coordinates
    assert d.kind == "distance" and d.atoms == (0, 1)  # AMS 1-based -> 0-based
    assert d.values == tuple(np.linspace(0.9, 1.3, 5))
    assert (
        a.kind == "angle"
        and a.atoms == (1, 0, 2)
        and a.values == (100.0, 105.0, 110.0, 115.0, 120.0)
    )
    np.testing.assert_array_equal(scan.atoms.positions[2], [0.93, 0.0, -0.24])

    cu = jc["1.5"]  # an unquoted number as ID keeps its text
    assert cu.reference_engine is None
    assert cu.task == GeometryOptimization(
        optimizer="fire",
        fmax=1e-4 * units.HARTREE,
        relax_cell=True,
        pretend_converged=False,
    )
    assert cu.metadata == {"fixed_atoms": [1]}
    assert cu.atoms.pbc.all()
    np.testing.assert_array_equal(cu.atoms.cell[:], np.diag([3.6, 3.6, 3.6]))

    slab = jc["slab"]
    assert slab.task == SinglePoint()
    assert list(slab.atoms.pbc) == [True, True, False]
    np.testing.assert_allclose(
        slab.atoms.cell.lengths(), [4 * units.BOHR, 5 * units.BOHR, 0.0]
    )


def test_params_defaults():
    atoms, task, meta = parse_ams_input(
        "Task GeometryOptimization\nSystem\n  Atoms\n    He 0 0 0\n    He 0 0 3\n  End\nEnd\n"
    )
    # AMS defaults: Gradients 0.001 Hartree/Å, PretendConverged No; parafit's max_iterations
    assert task == GeometryOptimization(
        fmax=1e-3 * units.HARTREE, pretend_converged=False
    )
    assert meta == {}
    atoms, task, meta = parse_ams_input(
        "Task PESScan\nSystem\n Atoms\n  He 0 0 0\n  He 0 0 3\n End\nEnd\n"
        "PESScan\n Optimize False\n ScanCoordinate\n  Distance 1 2 2.5 4.0\n End\nEnd\n"
    )
    assert isinstance(task, PESScan) and task.n_points == 10 and not task.relaxed


def test_params_unmapped_method_noted(tmp_path: Path, caplog):
    text = (
        textwrap.dedent(PARAMS)
        .lstrip("\n")
        .replace("Method FIRE", "Method ConjugateGradients")
    )
    path = tmp_path / "job_collection.yml"
    path.write_text(text)
    with caplog.at_level(logging.WARNING, logger="parafit.io.ams_input"):
        jc = read_params_job_collection(path)
    job = jc["1.5"]
    assert isinstance(job.task, GeometryOptimization) and job.task.optimizer == "lbfgs"
    assert job.metadata["ams_method"] == "ConjugateGradients"
    assert any(
        "1 of 3 jobs use an AMS geometry optimizer" in r.getMessage()
        for r in caplog.records
    )


PARAMS_ERRORS = [
    # (text to replace in PARAMS, replacement, message fragment, line fragment)
    (
        "Task PESScan",
        "Task MolecularDynamics",
        "AMS Task 'MolecularDynamics' is not supported",
        "Task MolecularDynamics",
    ),
    (
        "           Distance 1 2 0.9 1.3",
        "           Distance 1 4 0.9 1.3",
        "ScanCoordinate%Distance atom 4 out of range for 3 atoms (AMS indices are 1-based)",
        "Distance 1 4",
    ),
    (
        "           Angle 2 1 3 100 120\n       End\n",
        "           Angle 2 1 3 100 120\n       End\n       ScanCoordinate\n           Distance 1 3 1 2\n       End\n",
        "grid scan",
        "ScanCoordinate\n",
    ),
    (
        "           Angle 2 1 3 100 120",
        "           SumDist 1 2 2 3 1 2",
        "scan coordinate 'SumDist' is not supported",
        "SumDist",
    ),
    (
        "           H 0.93 0.0 -0.24",
        "           Hx 0.93 0.0 -0.24",
        "unknown element symbol 'Hx'",
        "Hx 0.93",
    ),
    (
        "           H 0.93 0.0 -0.24",
        "           H 0.93 0.0",
        "needs 'Element x y z'",
        "H 0.93 0.0",
    ),
    (
        "           H 0.93 0.0 -0.24",
        "           H 0.93 0.0 abc",
        "expected a number; got 'abc'",
        "abc",
    ),
    (
        "       Charge -1",
        "       SuperCell 2 2 2",
        "System%SuperCell changes the geometry",
        "SuperCell",
    ),
    (
        "     Atom 2",
        "     Distance 1 2 2.5",
        "constraint 'Distance' is not supported",
        "Distance 1 2 2.5",
    ),
    (
        "     Atom 2",
        "     Atom 3",
        "Constraints%Atom atom 3 out of range for 2 atoms",
        "Atom 3",
    ),
    (
        "           Gradients 1e-4",
        "           Gradients [furlong] 1e-4",
        "unknown unit [furlong]",
        "furlong",
    ),
    (
        "       Quality Good",
        "       Quality Great",
        "unknown GeometryOptimization%Convergence%Quality 'Great'",
        "Quality Great",
    ),
    (
        "     OptimizeLattice Yes",
        "     OptimizeLattice Maybe",
        "expected Yes or No; got 'Maybe'",
        "Maybe",
    ),
    ("ID: slab", "ID: scan", "duplicate job ID 'scan'", "ID: scan\n"),
    (
        "       Charge -1\n   End\n",
        "       Charge -1\n",
        "AMS block 'System' has no 'End'",
        "   System",
    ),
    (
        "   Properties\n       Gradients Yes\n   End\n",
        "   End\n",
        "'End' without an open block",
        None,
    ),
    ("   EndEngine\n", "", "'Engine' block has no 'EndEngine'", "Engine ReaxFF"),
    (
        "   Properties\n",
        "   Restraints\n       Distance 1 2 1.0\n   End\n   Properties\n",
        "restraints change the energy",
        "Restraints",
    ),
]


@pytest.mark.parametrize(("old", "new", "message", "line_text"), PARAMS_ERRORS)
def test_params_errors(tmp_path: Path, old, new, message, line_text):
    text = textwrap.dedent(PARAMS).lstrip("\n")
    assert old in text, old
    path = tmp_path / "job_collection.yml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(FormatError, match=re.escape(message)) as info:
        read_params_job_collection(path)
    err = info.value
    assert err.path == str(path) and err.line is not None
    assert err.key in ("scan", "1.5", "slab")
    if line_text is not None:
        lines = path.read_text().splitlines()
        if line_text.endswith("\n"):
            expected = max(i for i, s in enumerate(lines, 1) if line_text.strip() in s)
        else:
            expected = _line_of(path, line_text)
        assert err.line == expected, (err.line, expected, str(err))


def test_params_relax_cell_needs_lattice(tmp_path: Path):
    text = textwrap.dedent(PARAMS).lstrip("\n")
    bad = text.replace(
        "     lattice\n       3.6 0.0 0.0\n       0.0 3.6 0.0\n       0.0 0.0 3.6\n     end\n",
        "",
    ).replace("     Atom 2\n", "")
    path = tmp_path / "job_collection.yml"
    path.write_text(bad)
    with pytest.raises(
        FormatError, match="OptimizeLattice needs a periodic system"
    ) as info:
        read_params_job_collection(path)
    assert info.value.line == _line_of(path, "OptimizeLattice Yes")
    assert info.value.key == "1.5"


def test_params_missing_keys(tmp_path: Path):
    path = _write(
        tmp_path, "---\nID: a\nReferenceEngineID: None\n---\n", "job_collection.yml"
    )
    with pytest.raises(FormatError, match="job 'a': 'AMSInput'") as info:
        read_params_job_collection(path)
    assert info.value.line == 2
    path = _write(
        tmp_path, "---\nAMSInput: |\n  Task SinglePoint\n", "job_collection.yml"
    )
    with pytest.raises(FormatError, match="no 'ID'"):
        read_params_job_collection(path)
    path = _write(
        tmp_path, "---\nID: a\nAMSInput: |\n  Task SinglePoint\n", "job_collection.yml"
    )
    with pytest.raises(FormatError, match="no System block") as info:
        read_params_job_collection(path)
    assert info.value.line == 4  # the first line of the AMS text


def test_params_inline_ams_input_error_points_at_key(tmp_path: Path):
    path = _write(
        tmp_path,
        '---\nID: a\nAMSInput: "System\\n Atoms\\n  Qq 0 0 0\\n End\\nEnd"\n',
        "jc.yml",
    )
    with pytest.raises(FormatError, match="unknown element symbol 'Qq'") as info:
        read_params_job_collection(path)
    assert info.value.line == 3


def test_job_from_ams_input_lines():
    text = "System\n  Atoms\n    He 0 0 zero\n  End\nEnd\n"
    with pytest.raises(FormatError, match="expected a number; got 'zero'") as info:
        job_from_ams_input("he", text, path="in.yml", first_line=10)
    assert (info.value.path, info.value.line, info.value.key) == ("in.yml", 12, "he")
    job = job_from_ams_input(
        "he", text.replace("zero", "0"), metadata={"a": 1}, reference_engine="x"
    )
    assert job.metadata == {"a": 1} and job.reference_engine == "x"
