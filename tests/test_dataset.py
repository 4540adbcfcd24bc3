"""Tests for parafit.dataset and parafit.io.dataset_yaml (both YAML flavours)."""

import re
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from hypothesis import given, settings
from hypothesis import strategies as st

from parafit.dataset import CompiledDataSet, DataSet, Entry
from parafit.engines.base import JobResults, Status
from parafit.errors import ExpressionError, FormatError, InputError
from parafit.extractors import EXTRACTORS
from parafit.io.dataset_yaml import (
    data_set_to_yaml,
    parse_array_literal,
    read_data_set,
    write_data_set,
)
from parafit.jobs import Job, JobCollection, PESScan, ScanCoordinate
from parafit.units import BOHR, HARTREE, Unit

KCAL = Unit("kcal/mol", 627.5096 / HARTREE)


# ----------------------------------------------------------------------- helpers


def _parse_ams_atoms(text: str) -> dict[str, Atoms]:
    """Tiny reader of ParAMS job_collection.yml: ID and the System/Atoms block."""
    jobs = {}
    for block in text.split("\n---")[0:]:
        m = re.search(r"^ID: '?([^'\n]+)'?", block, re.M)
        atoms = re.search(r"^\s*Atoms\n(.*?)^\s*End", block, re.M | re.S)
        if m and atoms:
            rows = [ln.split() for ln in atoms.group(1).splitlines() if ln.strip()]
            jobs[m.group(1)] = Atoms(
                [r[0] for r in rows],
                positions=[[float(x) for x in r[1:4]] for r in rows],
            )
    return jobs


def _disulfide_jobs(folder: Path) -> JobCollection:
    try:
        return JobCollection.load(folder / "job_collection.yml")
    except ImportError:  # parafit.io.jobs_yaml not available
        atoms = _parse_ams_atoms((folder / "job_collection.yml").read_text())
        return JobCollection(Job(i, a) for i, a in atoms.items())


def _results(
    frames: list[Atoms], seed: int, *, status: np.ndarray | None = None
) -> JobResults:
    rng = np.random.default_rng(seed)
    n, m = len(frames), len(frames[0])
    return JobResults(
        energy=rng.normal(size=n),
        positions=np.stack([f.positions for f in frames]),
        cell=np.stack([f.cell[:] for f in frames]),
        pbc=np.asarray(frames[0].pbc),
        status=np.zeros(n, dtype=int) if status is None else status,
        forces=rng.normal(size=(n, m, 3)),
        charges=rng.normal(size=(n, m)),
        stress=rng.normal(size=(n, 6)),
    )


def _frames(atoms: Atoms, seed: int, n: int = 3) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = atoms.copy()
        a.positions += rng.normal(scale=0.2, size=a.positions.shape)
        out.append(a)
    return out


@pytest.fixture(scope="module")
def disulfide(shared_data: Path) -> Path:
    return shared_data / "params-format" / "disulfide"


@pytest.fixture(scope="module")
def disulfide_set(disulfide: Path) -> DataSet:
    return DataSet.load(disulfide / "data_set.yml")


def _assert_same_entries(a: DataSet, b: DataSet) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.expression == y.expression
        np.testing.assert_array_equal(np.asarray(x.reference), np.asarray(y.reference))
        assert np.shape(x.reference) == np.shape(y.reference)
        assert x.sigma == y.sigma
        np.testing.assert_array_equal(np.asarray(x.weight), np.asarray(y.weight))
        assert x.unit.label == y.unit.label
        assert x.unit.factor == pytest.approx(y.unit.factor, rel=1e-12)
        assert dict(x.metadata) == dict(y.metadata)


# ----------------------------------------------------------------------- disulfide


def test_read_disulfide(disulfide_set: DataSet) -> None:
    ds = disulfide_set
    assert len(ds) == 4875
    counts: dict[str, int] = {}
    for plan in ds.plans:
        counts[plan.calls[0].extractor] = counts.get(plan.calls[0].extractor, 0) + 1
    assert counts == {
        "energy": 219,
        "forces": 4401,
        "distance": 94,
        "angle": 85,
        "dihedral": 76,
    }
    assert ds.extractors == {"energy", "forces", "distance", "angle", "dihedral"}
    assert ds.lines[0] == 2 and ds.path.endswith("data_set.yml")

    energy = ds['+energy("mdt-SCS160")/1-energy("mdtBase")/1']
    assert energy.unit.label == "kcal/mol"
    assert energy.unit.factor == pytest.approx(627.5096 / HARTREE, rel=1e-14)
    assert energy.reference == 33.42632 and energy.sigma == 1.0 and energy.weight == 1.0

    force = ds['forces("dmds-SS2.042", 0, 0)']
    assert force.unit.label == "kcal/(mol*angstrom)"
    assert force.unit.factor == pytest.approx(1185.821 * BOHR / HARTREE, rel=1e-14)
    assert force.reference == -3.3665432031454 and force.sigma == 11.86

    distance = ds[0]
    assert distance.expression == 'distance("hsshGeo",1,0)'
    assert distance.unit == Unit("angstrom", 1.0)
    assert (distance.reference, distance.sigma) == (2.066, 0.01)
    angle = ds['angles("hsshGeo",(1,0,2))']
    assert angle.unit == Unit("degree", 1.0) and angle.reference == 97.793
    assert ds.index("angle('hsshGeo', 1, 0, 2)") == ds.index(
        'angles("hsshGeo",(1,0,2))'
    )


@pytest.mark.parametrize("flavor", ["params", "parafit"])
def test_disulfide_round_trip(
    disulfide_set: DataSet, tmp_path: Path, flavor: str
) -> None:
    path = tmp_path / f"ds_{flavor}.yaml"
    disulfide_set.save(path, flavor=flavor)  # type: ignore[arg-type]
    again = DataSet.load(path)
    _assert_same_entries(disulfide_set, again)
    text = path.read_text()
    if flavor == "params":
        assert "Unit: kcal/mol, 627.5096\n" in text
        assert "Unit: kcal/(mol*angstrom), 1185.821\n" in text
        assert "format: parafit" not in text
    else:
        assert text.startswith("---\ndtype: DataSet\nformat: parafit\nversion: 1\n")
        assert "Unit: angstrom, 1.0\n" in text
    # a second round trip gives the same text
    assert data_set_to_yaml(again, flavor=flavor) == text  # type: ignore[arg-type]


def test_disulfide_compile_and_predict(disulfide: Path, disulfide_set: DataSet) -> None:
    jobs = _disulfide_jobs(disulfide)
    compiled = disulfide_set.compile(jobs)
    assert compiled.n_entries == compiled.n_values == 4875
    assert compiled.needs == {"energy", "forces", "positions"}
    n = 4
    rng = np.random.default_rng(0)
    results = {}
    for job in jobs:
        m = job.n_atoms
        results[job.id] = JobResults(
            energy=rng.normal(size=n),
            positions=job.atoms.positions + rng.normal(scale=0.02, size=(n, m, 3)),
            cell=np.zeros((n, 3, 3)),
            pbc=np.zeros(3, bool),
            status=np.zeros(n, dtype=int),
            forces=rng.normal(size=(n, m, 3)),
        )
    pred = compiled.predict(results)
    assert pred.shape == (n, 4875) and np.isfinite(pred).all()
    i = disulfide_set.index('forces("dmds-SS2.042", 1, 2)')
    f = results["dmds-SS2.042"].forces[:, 1, 2]
    np.testing.assert_allclose(pred[:, i], f * 1185.821 * BOHR / HARTREE, rtol=1e-12)
    i = disulfide_set.index('+energy("mdt-SCS160")/1-energy("mdtBase")/1')
    e = results["mdt-SCS160"].energy - results["mdtBase"].energy
    np.testing.assert_allclose(pred[:, i], e * 627.5096 / HARTREE, rtol=1e-12)
    i = disulfide_set.index('distance("hsshGeo",1,0)')
    p = results["hsshGeo"].positions
    np.testing.assert_allclose(
        pred[:, i], np.linalg.norm(p[:, 1] - p[:, 0], axis=1), rtol=1e-12
    )
    # the job geometries reproduce the distance references closely
    at_input = {
        j.id: JobResults(
            energy=np.zeros(1),
            positions=j.atoms.positions[None],
            cell=np.zeros((1, 3, 3)),
            pbc=np.zeros(3, bool),
            status=np.zeros(1, int),
            forces=np.zeros((1, j.n_atoms, 3)),
        )
        for j in jobs
    }
    row = compiled.predict(at_input)[0]
    is_distance = np.array([x == "distance" for x in compiled.extractor_of_entry])
    assert np.median(np.abs(row - compiled.reference)[is_distance]) < 0.05
    per_entry = compiled.predictions_per_entry(row)
    assert len(per_entry) == 4875 and all(isinstance(v, float) for v in per_entry)


# ----------------------------------------------------------------------- YAML reading


def test_params_header_comment_and_trailing_marker() -> None:
    text = (
        "# 0.5.0\n---\nExpression: energy('a')\nWeight: 1\nReferenceValue: 0.5\n"
        "...\n# 0.5.0\n"
    )
    ds = DataSet.from_yaml(text)
    assert len(ds) == 1 and ds.header == {}
    entry = ds[0]
    assert entry.unit.label == "Ha" and entry.unit.factor == pytest.approx(1 / HARTREE)
    assert entry.sigma == pytest.approx(0.002)  # default 0.002 Ha, in Ha
    assert ds.lines == (3,)


def test_params_header_document_and_metadata() -> None:
    text = """---
dtype: DataSet
version: 0.5.1
Comment: made by hand
---
Expression: energy('w')/2.0 - energy('rs')
Weight: 0.5
Sigma: 0.002
ReferenceValue: 0.0369
Unit: Ha, 1.0
Source: DFT
Group: lattice
INFO_ReferenceEngineIDs: [a, b]
---
Expression: forces('w')
Weight: |
  array([[1., 0., 2.],
         [1., 1., 1.]])
ReferenceValue: |
  array([[ 1.0e-03, -2.5e-01,  3.0],
         [-1.,  0.,  nan]])
Unit: eV/angstrom, 51.422067
"""
    ds = DataSet.from_yaml(text, path="ts.yaml")
    assert ds.header == {
        "dtype": "DataSet",
        "version": "0.5.1",
        "Comment": "made by hand",
    }
    e0, e1 = ds
    assert e0.metadata == {
        "Source": "DFT",
        "Group": "lattice",
        "INFO_ReferenceEngineIDs": ["a", "b"],
    }
    assert e0.weight == 0.5 and e0.unit.factor == pytest.approx(1 / HARTREE)
    assert e1.unit.factor == pytest.approx(51.422067 * BOHR / HARTREE)
    assert e1.reference.shape == (2, 3) and np.isnan(e1.reference[1, 2])
    np.testing.assert_array_equal(e1.weight, [[1, 0, 2], [1, 1, 1]])
    assert e1.sigma == pytest.approx(
        0.003 * 51.422067
    )  # default 0.003 Ha/bohr in the entry unit
    assert ds.lines == (6, 15)
    # written back in ParAMS flavour: literal block arrays and the header kept
    out = data_set_to_yaml(ds, flavor="params")
    assert "Comment: made by hand" in out and "ReferenceValue: |\n  array([[" in out
    _assert_same_entries(ds, DataSet.from_yaml(out))


def test_parafit_flavour_units_and_arrays(tmp_path: Path) -> None:
    ds = DataSet(header={"Comment": "x"})
    ds.add_entry("energy('a') - energy('b')", 1.5, unit=KCAL, metadata={"Group": "g"})
    ds.add_entry(
        "forces('a')",
        np.arange(6.0).reshape(2, 3) / 7,
        weight=np.array([[1.0, 0.0, 2.0]] * 2),
    )
    ds.add_entry("pes('scan', relative_to='first')", [0.0, 0.1, 1e-20], sigma=0.01)
    ds.add_entry("distance('a', 0, 1)", None)
    path = tmp_path / "ts.yaml"
    ds.save(path)
    text = path.read_text()
    assert "Unit: kcal/mol, 23.06" in text
    assert "ReferenceValue: [[0.0, 0.14285714285714285, " in text
    assert "1.0e-20]" in text  # PyYAML reads 1e-20 (no dot) as a string
    again = read_data_set(path)
    _assert_same_entries(ds, again)
    assert again.header == {
        "dtype": "DataSet",
        "format": "parafit",
        "version": 1,
        "units": "internal eV/angstrom",
        "Comment": "x",
    }
    # same entries through the ParAMS flavour, factors converted both ways
    write_data_set(again, tmp_path / "params.yaml", flavor="params")
    params_text = (tmp_path / "params.yaml").read_text()
    assert "Unit: kcal/mol, 627.5096\n" in params_text
    assert "Unit: eV, 27.21" in params_text  # eV relative to Hartree
    _assert_same_entries(ds, read_data_set(tmp_path / "params.yaml"))


def test_parse_array_literal() -> None:
    np.testing.assert_array_equal(
        parse_array_literal("array([1., -2.5e+3, 3])"), [1.0, -2500.0, 3.0]
    )
    np.testing.assert_array_equal(
        parse_array_literal("[[1, 2], [3, 4]]"), [[1, 2], [3, 4]]
    )
    assert parse_array_literal("array([1.0, 2.0], dtype=float32)").shape == (2,)
    assert np.isinf(parse_array_literal("array([inf, -inf])")).all()
    for bad in [
        "array([1, 2], [3])",
        "array([[1, 2], [3]])",
        "array([1, 2, ..., 9])",
        "array([1 2])",
        "array([1, 2]",
        "__import__('os').system('x')",
        "array([1, x])",
    ]:
        with pytest.raises(ValueError):
            parse_array_literal(bad)


# ----------------------------------------------------------------------- bad input


def test_malformed_yaml_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("---\nExpression: energy('a')\nWeight: [1, 2\nSigma: 1\n")
    with pytest.raises(FormatError, match="invalid YAML") as info:
        DataSet.load(path)
    assert info.value.path == str(path) and info.value.line in (3, 4, 5)


def test_unknown_extractor_names_entry_and_line(tmp_path: Path) -> None:
    path = tmp_path / "ts.yaml"
    path.write_text(
        "---\nExpression: energy('a')\nWeight: 1\n---\nExpression: enrgy('h2o')\nWeight: 1\n"
    )
    with pytest.raises(ExpressionError, match="did you mean 'energy'") as info:
        DataSet.load(path)
    err = info.value
    assert (err.path, err.line, err.key, err.entry) == (
        str(path),
        5,
        "enrgy('h2o')",
        "enrgy('h2o')",
    )
    assert err.column == 1  # type: ignore[attr-defined]
    assert str(err).startswith(f"{path}:5: ")


def test_injected_code_in_file_is_rejected(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    path = tmp_path / "ts.yaml"
    path.write_text(
        f"---\nExpression: __import__('os').system('touch {target}')\nReferenceValue: 1\n"
    )
    with pytest.raises(ExpressionError, match="attribute access") as info:
        DataSet.load(path)
    assert info.value.line == 2
    path.write_text(
        f"---\nExpression: energy('a')\nReferenceValue: \"__import__('os').system('touch {target}')\"\n"
    )
    with pytest.raises(FormatError, match="ReferenceValue"):
        DataSet.load(path)
    path.write_text(
        "---\nExpression: energy('a')\nReferenceValue: !!python/object/apply:os.system ['true']\n"
    )
    with pytest.raises(FormatError, match="invalid YAML"):
        DataSet.load(path)
    assert not target.exists()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found") as info:
        DataSet.load(tmp_path / "nope.yaml")
    assert info.value.path == str(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("body", "key", "line", "fragment"),
    [
        ("Expression: energy('a')\nSigma: abc\n", "Sigma", 3, "expected a number"),
        ("Expression: energy('a')\nSigma: true\n", "Sigma", 3, "expected a number"),
        ("Expression: energy('a')\nWeight: [1, a]\n", "Weight", 3, "list of numbers"),
        (
            "Expression: energy('a')\nReferenceValue: {a: 1}\n",
            "ReferenceValue",
            3,
            "expected a number",
        ),
        ("Expression: energy('a')\nUnit: kcal/mol\n", "Unit", 3, "label, factor"),
        ("Expression: energy('a')\nUnit: kcal/mol, -1\n", "Unit", 3, "> 0"),
        ("Expression: [energy('a')]\n", "Expression", 2, "non-empty string"),
        ("Weight: 1\nSigma: 2\n", "Expression", 2, "without Expression"),
    ],
)
def test_wrong_key_types(body: str, key: str, line: int, fragment: str) -> None:
    with pytest.raises(FormatError, match=fragment) as info:
        DataSet.from_yaml("---\n" + body, path="ts.yaml")
    assert (info.value.key, info.value.line, info.value.path) == (key, line, "ts.yaml")


def test_not_a_mapping_and_wrong_dtype() -> None:
    with pytest.raises(FormatError, match="mapping") as info:
        DataSet.from_yaml("---\n- 1\n- 2\n")
    assert info.value.line == 2
    with pytest.raises(FormatError, match="dtype") as info:
        DataSet.from_yaml(
            "---\ndtype: JobCollection\nversion: 1\n---\nExpression: energy('a')\n"
        )
    assert info.value.key == "dtype" and info.value.line == 2


def test_duplicate_expression_in_file() -> None:
    text = "---\nExpression: energy('a')\n---\nExpression: energy(\"a\")\n"
    with pytest.raises(InputError, match="duplicate expression") as info:
        DataSet.from_yaml(text, path="ts.yaml")
    assert (info.value.line, info.value.key) == (4, 'energy("a")')


# ----------------------------------------------------------------------- DataSet API


def test_add_entry_defaults_and_lookup() -> None:
    ds = DataSet()
    e = ds.add_entry("energy('a')", 1.0)
    assert (
        e.unit == Unit("eV", 1.0)
        and e.sigma == pytest.approx(0.002 * HARTREE)
        and e.weight == 1.0
    )
    e = ds.add_entry("energy('b')", 1.0, unit=KCAL)
    assert e.sigma == pytest.approx(0.002 * 627.5096)
    e = ds.add_entry("forces('a', 1)", [1, 2, 3], unit=("kcal/mol/A", 23.06), sigma=0.5)
    assert isinstance(e.reference, np.ndarray) and e.unit == Unit("kcal/mol/A", 23.06)
    with pytest.raises(ValueError):
        e.reference[0] = 5  # entries hold read-only arrays
    with pytest.raises(InputError, match="duplicate"):
        ds.add_entry("energy( 'a' )", 2.0)
    with pytest.raises(ExpressionError):
        ds.add_entry("energy('a') + x")
    with pytest.raises(ExpressionError, match="no extractor call"):
        ds.add_entry("1 + 2")
    with pytest.raises(InputError, match="reference"):
        ds.add_entry("energy('c')", "abc")  # type: ignore[arg-type]
    assert len(ds) == 3
    assert ds["energy('b')"] is ds[1] and ds[-1].expression == "forces('a', 1)"
    assert ds['energy("b")'] is ds[1]
    assert "energy('a')" in ds and "energy('zz')" not in ds
    with pytest.raises(KeyError, match="did you mean"):
        ds["energy('bb')"]
    assert ds.job_ids == {"a", "b"} and ds.extractors == {"energy", "forces"}
    assert [p.text for p in ds.plans] == [x.expression for x in ds.entries]


def test_entry_objects_get_defaults() -> None:
    ds = DataSet(
        [
            Entry("distance('a', 0, 1)", 1.0, None),
            Entry("energy('a')", 0.5, 0.1, unit=KCAL),
        ]
    )  # type: ignore[arg-type]
    assert ds[0].unit == Unit("angstrom", 1.0) and ds[0].sigma == 0.05
    assert ds[1].unit == KCAL


def test_subsets_and_split() -> None:
    ds = DataSet()
    for i in range(10):
        ds.add_entry(
            f"energy('j{i}') - energy('base')",
            float(i),
            metadata={"Group": "even" if i % 2 == 0 else "odd"},
        )
    ds.add_entry("distance('j1', 0, 1)", 1.0)
    assert len(ds.from_job_ids(["j1", "base"])) == 2
    assert len(ds.from_extractors("distance")) == 1
    assert len(ds.from_extractors(["energy"])) == 10
    assert len(ds.from_metadata("Group", "even")) == 5
    assert len(ds.from_metadata("Group", "^o", regex=True)) == 5
    a, b = ds.split(0.7, 0.3, seed=1)
    assert len(a) + len(b) == 11 and not {e.expression for e in a} & {
        e.expression for e in b
    }
    a2, _ = ds.split(0.7, 0.3, seed=1)
    assert [e.expression for e in a] == [e.expression for e in a2]
    refs = ds.with_references([None] * 11)
    assert all(e.reference is None for e in refs)


# ----------------------------------------------------------------------- validation


@pytest.fixture(scope="module")
def small_jobs() -> JobCollection:
    si = bulk("Si", "diamond", a=5.43).repeat((2, 2, 1))
    si.set_cell(si.cell[:] + [[0, 0, 0], [0.8, 0, 0], [0.3, 0.5, 0]], scale_atoms=True)
    scan = PESScan((ScanCoordinate("distance", (0, 1), (0.6, 0.7, 0.8)),))
    return JobCollection(
        [
            Job("w", molecule("H2O")),
            Job("m", molecule("CH3OH")),
            Job("si", si),
            Job("scan", Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), task=scan),
        ]
    )


def test_validate_reports_all_problems(small_jobs: JobCollection) -> None:
    text = """---
Expression: energy('sii')
ReferenceValue: 1.0
---
Expression: distance('w', 0, 7)
ReferenceValue: 1.0
---
Expression: energy('m')
ReferenceValue: .nan
---
Expression: energy('si')
---
Expression: angle('w', 1, 0, 2)
ReferenceValue: 104.0
Sigma: -1.0
---
Expression: forces('w')
ReferenceValue: [1.0, 2.0]
---
Expression: charges('w')
ReferenceValue: [0.1, 0.2, 0.3]
Weight: [1.0, 2.0]
---
Expression: energy('w')
ReferenceValue: 1.0
"""
    ds = DataSet.from_yaml(text, path="ts.yaml")
    with pytest.raises(InputError) as info:
        ds.validate(small_jobs)
    err = info.value
    assert (err.path, err.line, err.key) == ("ts.yaml", 2, "energy('sii')")
    message = str(err)
    assert message.startswith("ts.yaml:2: 7 problems in the data set:")
    assert "unknown job id 'sii'; did you mean 'si'?" in message
    assert (
        "ts.yaml:5: \"distance('w', 0, 7)\": distance: atom index 7 out of range"
        in message
    )
    assert "ts.yaml:8: \"energy('m')\": reference value is not finite" in message
    assert "ts.yaml:11: \"energy('si')\": missing reference value" in message
    assert "sigma must be a finite number > 0" in message
    assert (
        "reference value has shape (2,), the expression gives shape (3, 3)" in message
    )
    assert "weight has shape (2,)" in message
    assert [p[0] for p in err.problems] == [0, 1, 2, 3, 4, 5, 6]  # type: ignore[attr-defined]
    # without references required, only the other problems remain
    with pytest.raises(InputError) as info:
        ds.validate(small_jobs, require_reference=False)
    assert "missing reference" not in str(info.value)
    with pytest.raises(InputError, match="7 problems"):
        ds.compile(small_jobs)


def test_validate_single_problem_message(small_jobs: JobCollection) -> None:
    ds = DataSet()
    ds.add_entry("energy('x')", 1.0)
    with pytest.raises(
        InputError, match=r"^entry 0: \"energy\('x'\)\": unknown job id 'x'\.$"
    ) as info:
        ds.validate(small_jobs)
    assert info.value.line is None and info.value.key == "energy('x')"


# ----------------------------------------------------------------------- compile / predict


@pytest.fixture(scope="module")
def batch(
    small_jobs: JobCollection,
) -> tuple[dict[str, list[Atoms]], dict[str, JobResults]]:
    frames = {
        j.id: _frames(j.atoms, k) for k, j in enumerate(small_jobs) if j.id != "scan"
    }
    for f in frames["si"]:
        f.set_cell(f.cell[:] * 1.01, scale_atoms=False)
    results = {
        jid: _results(fr, seed=10 + k) for k, (jid, fr) in enumerate(frames.items())
    }
    return frames, results


def _small_set() -> DataSet:
    ds = DataSet()
    ds.add_entry("energy('w') - energy('si')/2", 1.0, unit=KCAL)
    ds.add_entry(
        "forces('si')", np.zeros((8, 3)), weight=np.tile([1.0, 2.0, 0.0], (8, 1))
    )
    ds.add_entry("forces('w', 1, 2)", 0.1)
    ds.add_entry("distance('si', 0, 5)", 2.3)
    ds.add_entry("distance('si', 0, 5, mic=False)", 2.3)
    ds.add_entry("distance('si', 1, 6)", 2.3)
    ds.add_entry("angles('w', (1, 0, 2))", 104.5)
    ds.add_entry("dihedral('m', 2, 0, 1, 5)", 60.0)
    ds.add_entry("energy('w') * energy('m')", 0.0)
    ds.add_entry("charges('w')", [0.1, -0.2, 0.1])
    ds.add_entry("forces('w', 0) - forces('m', 1)", [0.0, 0.0, 0.0])
    ds.add_entry("cell_volume('si')", 300.0)
    ds.add_entry("energy('w')/energy('m') + forces('w', 0)", [0.0, 0.0, 0.0])
    ds.add_entry("-2 * energy('m') + 1", 0.0)
    return ds


def _expected(
    frames: dict[str, list[Atoms]], res: dict[str, JobResults]
) -> list[np.ndarray]:
    w, m, si = res["w"], res["m"], res["si"]
    rows = []
    for v in range(3):
        fsi, fw, fm = frames["si"][v], frames["w"][v], frames["m"][v]
        rows.append(
            np.concatenate(
                [
                    [(w.energy[v] - si.energy[v] / 2) * KCAL.factor],
                    si.forces[v].ravel(),
                    [w.forces[v, 1, 2]],
                    [fsi.get_distance(0, 5, mic=True)],
                    [fsi.get_distance(0, 5, mic=False)],
                    [fsi.get_distance(1, 6, mic=True)],
                    [fw.get_angle(1, 0, 2)],
                    [fm.get_dihedral(2, 0, 1, 5)],
                    [w.energy[v] * m.energy[v]],
                    w.charges[v],
                    w.forces[v, 0] - m.forces[v, 1],
                    [fsi.get_volume()],
                    w.energy[v] / m.energy[v] + w.forces[v, 0],
                    [-2 * m.energy[v] + 1],
                ]
            )
        )
    return rows


def test_compile_and_predict_against_ase(
    small_jobs: JobCollection, batch: tuple
) -> None:
    frames, results = batch
    ds = _small_set()
    compiled = ds.compile(small_jobs)
    assert isinstance(compiled, CompiledDataSet)
    assert (
        compiled.n_entries == 14
        and compiled.n_values == 1 + 24 + 1 + 3 + 1 + 1 + 1 + 3 + 3 + 1 + 3 + 1
    )
    assert compiled.entry_shapes[1] == (8, 3) and compiled.entry_sizes[1] == 24
    assert compiled.extractor_of_entry[:3] == ("energy", "forces", "forces")
    assert compiled.extractor_of_entry[6] == "angle"
    assert compiled.unit_of_entry[0] == KCAL
    assert set(compiled.job_ids) == {"w", "si", "m"}
    assert compiled.needs == {"energy", "forces", "positions", "charges"}
    np.testing.assert_array_equal(compiled.weight[1:25], np.tile([1.0, 2.0, 0.0], 8))
    assert compiled.sigma[0] == pytest.approx(0.002 * 627.5096)
    np.testing.assert_array_equal(compiled.entry_of_value[:3], [0, 1, 1])

    pred = compiled.predict(results)
    assert pred.shape == (3, compiled.n_values)
    expected = _expected(frames, results)
    for v in range(3):
        np.testing.assert_allclose(pred[v], expected[v], rtol=1e-10, atol=1e-12)
    per_entry = compiled.predictions_per_entry(pred[0])
    assert isinstance(per_entry[0], float) and per_entry[1].shape == (8, 3)
    np.testing.assert_allclose(per_entry[1], results["si"].forces[0])
    with pytest.raises(ValueError):
        compiled.predictions_per_entry(pred)


def test_predict_never_raises_for_missing_or_failed_jobs(
    small_jobs: JobCollection, batch: tuple
) -> None:
    frames, results = batch
    compiled = _small_set().compile(small_jobs)
    uses_m = np.array(["'m'" in e for e in compiled.expressions])[
        compiled.entry_of_value
    ]
    # a job missing from the results: NaN exactly for the values that use it
    partial = {k: v for k, v in results.items() if k != "m"}
    pred = compiled.predict(partial)
    assert np.isnan(pred[:, uses_m]).all() and np.isfinite(pred[:, ~uses_m]).all()
    # a failed vector (FAILED bit, input positions kept as failed_results does)
    m = results["m"]
    failed = JobResults(
        energy=m.energy,
        positions=m.positions,
        cell=m.cell,
        pbc=m.pbc,
        status=np.array([0, int(Status.FAILED), 0]),
        forces=m.forces,
        charges=m.charges,
    )
    pred = compiled.predict({**results, "m": failed})
    assert np.isnan(pred[1, uses_m]).all() and np.isfinite(pred[1, ~uses_m]).all()
    assert np.isfinite(pred[[0, 2]]).all()
    # non-finite energy for one vector
    nan_energy = JobResults(
        energy=np.array([np.nan, 1.0, 1.0]),
        positions=m.positions,
        cell=m.cell,
        pbc=m.pbc,
        status=np.zeros(3, int),
        forces=m.forces,
        charges=m.charges,
    )
    pred = compiled.predict({**results, "m": nan_energy})
    assert np.isnan(pred[0, uses_m]).all() and np.isfinite(pred[1:]).all()
    # nothing at all
    assert np.isnan(compiled.predict({}, n_vectors=2)).all()
    assert compiled.predict({}).shape == (1, compiled.n_values)


def test_compile_pes_entry(small_jobs: JobCollection) -> None:
    ds = DataSet()
    ds.add_entry("pes('scan')", [0.0, 0.5, 1.0], unit=KCAL)
    compiled = ds.compile(small_jobs)
    assert compiled.needs == {"scan"}
    e = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    res = JobResults(
        energy=e.min(axis=1),
        positions=np.zeros((2, 2, 3)),
        cell=np.zeros((2, 3, 3)),
        pbc=np.zeros(3, bool),
        status=np.zeros(2, int),
        scan_energies=e,
    )
    np.testing.assert_allclose(
        compiled.predict({"scan": res}),
        (e - e.min(axis=1, keepdims=True)) * KCAL.factor,
    )


def test_custom_extractor_in_data_set(small_jobs: JobCollection) -> None:
    from parafit.extractors import register_extractor

    if "test_mass" not in EXTRACTORS:

        @register_extractor(
            "test_mass", default_sigma=1.0, unit=Unit("amu", 1.0), dimension="charge"
        )
        def test_mass(results: JobResults, job: Job) -> np.ndarray:
            return np.full(results.n_vectors, job.atoms.get_masses().sum())

    ds = DataSet()
    ds.add_entry("test_mass('w') - 18", 0.0)
    pred = ds.compile(small_jobs).predict(
        {"w": _results(_frames(small_jobs["w"].atoms, 0), 0)}
    )
    np.testing.assert_allclose(pred[:, 0], molecule("H2O").get_masses().sum() - 18)


@settings(max_examples=60, deadline=None)
@given(
    st.text(min_size=1, max_size=12),
    st.text(max_size=12),
    st.sampled_from(["parafit", "params"]),
)
def test_any_job_id_unit_label_and_metadata_round_trip(
    job_id: str, label: str, flavor: str
) -> None:
    ds = DataSet()
    ds.add_entry(
        f"energy({job_id!r}) - 1", 0.5, unit=(label, 2.5), metadata={"Note": label}
    )
    again = DataSet.from_yaml(ds.to_yaml(flavor=flavor))  # type: ignore[arg-type]
    assert again[0].expression == ds[0].expression
    assert again[0].unit.label == label.strip()
    assert again[0].unit.factor == pytest.approx(2.5, rel=1e-14)
    assert dict(again[0].metadata) == {"Note": label}
    assert again.plans[0].job_ids == (job_id,)
