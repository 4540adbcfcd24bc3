"""ReaxFF ``ffield`` reading and writing: exact round trips and located errors."""

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parafit.errors import FormatError, InputError
from parafit.io.ffield import (
    WILDCARD,
    ForceField,
    format_ffield,
    format_value,
    parse_ffield,
    read_ffield,
    write_ffield,
)


def _shared_ffields(shared_data: Path) -> list[Path]:
    files = sorted(shared_data.glob("reaxff-benchmarks/*/ffield*"))
    files += sorted(shared_data.glob("params-format/*/ffield*"))
    files += sorted(shared_data.glob("reaxff-golden/*/ffield"))
    assert len(files) >= 16
    return files


@pytest.fixture(scope="module")
def disulfide_text(shared_data: Path) -> str:
    return (shared_data / "reaxff-benchmarks" / "disulfide" / "ffield_lit").read_text()


def _sub(text: str, old: str, new: str) -> str:
    """``text.replace(old, new, 1)``, insisting that ``old`` is there."""
    assert old in text, old
    return text.replace(old, new, 1)


def _small_ff(**changes: object) -> ForceField:
    """A 2-atom force field with one entry in every block, built in code."""
    rng = np.random.default_rng(0)
    fields: dict[str, object] = dict(
        header="test force field",
        general=np.round(rng.normal(size=39), 4),
        atom_symbols=("C", "H"),
        atom_params=np.round(rng.normal(size=(2, 32)), 4),
        bond_pairs=[[0, 1]],
        bond_params=np.round(rng.normal(size=(1, 16)), 4),
        offdiag_pairs=[[0, 1]],
        offdiag_params=np.round(rng.normal(size=(1, 6)), 4),
        angle_triples=[[1, 0, 1]],
        angle_params=np.round(rng.normal(size=(1, 7)), 4),
        torsion_quads=[[WILDCARD, 0, 0, WILDCARD]],
        torsion_params=np.round(rng.normal(size=(1, 7)), 4),
        hbond_triples=np.zeros((0, 3), dtype=int),
        hbond_params=np.zeros((0, 4)),
    )
    fields.update(changes)
    return ForceField(**fields)  # type: ignore[arg-type]


# ---- round trips ------------------------------------------------------------------------
def test_every_shared_ffield_is_rewritten_line_for_line(shared_data: Path) -> None:
    """Values survive read + write: the written text equals the file (trailing blanks aside)."""
    for path in _shared_ffields(shared_data):
        ff = read_ffield(path)
        text = format_ffield(ff)
        original = [line.rstrip() for line in path.read_text().splitlines()]
        assert [line.rstrip() for line in text.splitlines()] == original, path
        assert parse_ffield(text).same_values(ff), path


def test_shared_ffield_sizes(shared_data: Path) -> None:
    ff = read_ffield(shared_data / "reaxff-benchmarks" / "disulfide" / "ffield_lit")
    assert ff.atom_symbols == ("C", "H", "O", "S")
    assert (ff.n_general, ff.n_bonds, ff.n_offdiag) == (39, 10, 6)
    assert (ff.n_angles, ff.n_torsions, ff.n_hbonds) == (31, 15, 4)
    assert ff.atom_params.shape == (4, 32) and ff.bond_params.shape == (10, 16)
    # values by position: S line 2 value 6 is chi; bond 10 is S-S; torsion 6 is 0-1-1-0
    assert ff.atom_params[3, 13] == 6.5
    assert ff.bond_pairs[9].tolist() == [3, 3] and ff.bond_params[9, 0] == 117.1855
    assert ff.torsion_quads[5].tolist() == [WILDCARD, 0, 0, WILDCARD]
    assert ff.hbond_triples[0].tolist() == [2, 1, 2]
    assert ff.general_comments[0] == " !Overcoordination parameter"
    best = read_ffield(shared_data / "reaxff-benchmarks" / "cobalt" / "ffield_best")
    assert best.n_general == 41 and best.general[40] == 0.0


def test_written_file_reads_back(tmp_path: Path, shared_data: Path) -> None:
    ff = read_ffield(shared_data / "reaxff-golden" / "silica_600" / "ffield")
    out = tmp_path / "sub" / "ffield"
    write_ffield(ff, out)
    assert read_ffield(out).same_values(ff)
    assert not list(out.parent.glob(".*tmp"))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        min_size=39,
        max_size=39,
    ),
    st.lists(
        st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
        min_size=7,
        max_size=7,
    ),
)
def test_any_finite_values_round_trip_bit_for_bit(
    general: list[float], torsion: list[float]
) -> None:
    ff = _small_ff(general=general, torsion_params=[torsion])
    back = parse_ffield(format_ffield(ff))
    assert back.same_values(ff)


def test_classic_columns_and_wider_fields() -> None:
    assert format_value(1.3763) == "   1.3763"
    assert format_value(-100.0) == " -100.0000"  # never touches the previous field
    assert format_value(-0.0) == "  -0.0000"
    assert format_value(0.1 + 0.2) == " 0.30000000000000004"
    assert format_value(50.0, 10) == "   50.0000"
    for v in (1e-300, 1e300, -2.5e-17, 123456.78901):
        assert float(format_value(v)) == v
    with pytest.raises(InputError):
        format_value(math.inf)


def test_fortran_fields_that_touch_are_split(disulfide_text: str) -> None:
    text = _sub(
        disulfide_text,
        "  1  1  1  1   0.0000  23.2168",
        "  1  1  1  1   0.0000-123.2168",
    )
    ff = parse_ffield(text)
    assert ff.torsion_params[0, 1] == -123.2168


def test_blank_lines_between_blocks_are_skipped(disulfide_text: str) -> None:
    text = _sub(disulfide_text, " 10      ! Nr of bonds", "\n\n 10      ! Nr of bonds")
    ff = parse_ffield(text)
    assert ff.same_values(parse_ffield(disulfide_text))


def test_arrays_are_read_only_and_copied() -> None:
    general = np.zeros(39)
    ff = _small_ff(general=general)
    general[0] = 5.0
    assert ff.general[0] == 0.0
    with pytest.raises(ValueError):
        ff.general[0] = 1.0
    changed = ff.replace(general=np.ones(39))
    assert changed.general[0] == 1.0 and ff.general[0] == 0.0


def test_force_field_validation() -> None:
    with pytest.raises(InputError, match=r"atom_params must have shape \(n, 32\)"):
        _small_ff(atom_params=np.zeros((2, 31)))
    with pytest.raises(InputError, match="rows for 2 atom symbols"):
        _small_ff(atom_params=np.zeros((3, 32)))
    with pytest.raises(InputError, match="wildcard"):
        _small_ff(torsion_quads=[[0, WILDCARD, 0, 1]])
    with pytest.raises(InputError, match="not a valid 0-based"):
        _small_ff(bond_pairs=[[WILDCARD, 1]])
    with pytest.raises(InputError, match="non-finite"):
        _small_ff(bond_params=np.full((1, 16), np.nan))
    with pytest.raises(InputError, match="general_comments"):
        _small_ff(general_comments=("a",))
    with pytest.raises(InputError, match="unknown block"):
        _small_ff(comments={"XYZ": ("",)})


# ---- located errors -----------------------------------------------------------------------
def _lines(text: str) -> list[str]:
    return text.splitlines()


def _error(text: str, tmp_path: Path) -> FormatError:
    path = tmp_path / "ffield"
    path.write_text(text)
    with pytest.raises(FormatError) as info:
        read_ffield(path)
    assert info.value.path == str(path)
    return info.value


def test_truncated_file_names_the_end(disulfide_text: str, tmp_path: Path) -> None:
    lines = _lines(disulfide_text)
    err = _error("\n".join(lines[:70]) + "\n", tmp_path)  # inside the bond block
    assert err.line == 71
    assert "truncated" in str(err) and "line 2 of bond entry 4 of 10" in str(err)
    assert str(err).startswith(f"{err.path}:71: ")


def test_wrapped_line_is_named(disulfide_text: str, tmp_path: Path) -> None:
    lines = _lines(disulfide_text)
    number = lines.index(next(ln for ln in lines if ln.startswith("  1  3 171.0470")))
    lines[number] = lines[number].rsplit(" ", 1)[0].rstrip()  # drop the 8th value
    err = _error("\n".join(lines), tmp_path)
    assert err.line == number + 1
    assert (
        "bond block line 1 expects 8 numbers per line, found 7; is a line wrapped?"
        in str(err)
    )


def test_non_number_is_named(disulfide_text: str, tmp_path: Path) -> None:
    lines = _lines(disulfide_text)
    number = lines.index(
        " H    0.6646   1.0000   1.0080   1.6030   0.0600   0.7625  -0.1000   1.0000"
    )
    lines[number + 1] = lines[number + 1].replace("9.3951", "9.39x1")
    err = _error("\n".join(lines), tmp_path)
    assert err.line == number + 2
    assert "'9.39x1'" in str(err) and "not a number" in str(err)


def test_count_larger_than_entries(disulfide_text: str, tmp_path: Path) -> None:
    text = _sub(disulfide_text, " 10      ! Nr of bonds", " 11      ! Nr of bonds")
    err = _error(text, tmp_path)
    assert "bond entry 11 of 11 expected" in str(err)
    assert "does the count 11 on line 62 match the bond entries" in str(err)
    assert err.line == 84


def test_count_smaller_than_entries(disulfide_text: str, tmp_path: Path) -> None:
    text = _sub(disulfide_text, " 31    ! Nr of angles", " 30    ! Nr of angles")
    err = _error(text, tmp_path)
    assert "expected the torsion count line" in str(err) and "found a data line" in str(
        err
    )
    assert "does the count 30 on line 91 match the valence-angle entries" in str(err)
    assert err.line == 122


def test_general_count_mismatch(disulfide_text: str, tmp_path: Path) -> None:
    err = _error(
        _sub(disulfide_text, " 39       ! Number", " 38       ! Number"), tmp_path
    )
    assert "expected the atom count line" in str(err) and err.line == 41
    assert "count 38 on line 2" in str(err)


def test_other_malformed_inputs(disulfide_text: str, tmp_path: Path) -> None:
    torsion_zero = _sub(
        disulfide_text, "  0  1  2  0   0.0000", "  0  0  2  0   0.0000"
    )
    assert "wildcard" in str(_error(torsion_zero, tmp_path))
    bond_zero = _sub(disulfide_text, "  1  2 167.1752", "  0  2 167.1752")
    assert "indices are 1-based" in str(_error(bond_zero, tmp_path))
    no_hbonds = disulfide_text.split("  4    ! Nr of hydrogen bonds")[0]
    assert "hydrogen-bond count line" in str(_error(no_hbonds, tmp_path))
    lines = _lines(disulfide_text)
    lg = lines[:49] + ["      1.0000   2.0000"] + lines[49:]  # a 5th line after atom C
    assert "lgvdw" in str(_error("\n".join(lg), tmp_path))
    with pytest.raises(FormatError, match=r"^line 2: expected the general count line"):
        parse_ffield("header\nabc\n")
    with pytest.raises(InputError, match="not found"):
        read_ffield(tmp_path / "missing")


def test_trailing_comments_and_text_after_the_block(disulfide_text: str) -> None:
    text = _sub(
        disulfide_text,
        "  3  2  3   2.0431  -6.6813   3.5000   1.7295",
        "  3  2  3   2.0431  -6.6813   3.5000   1.7295 ! O-H...O",
    )
    ff = parse_ffield(text + "anything after the last block is ignored\n")
    assert ff.hbond_params[0, 0] == 2.0431


def test_pickled_copy_is_validated_and_read_only() -> None:
    import pickle

    ff = _small_ff()
    back = pickle.loads(pickle.dumps(ff))
    assert back.same_values(ff) and back.comments == ff.comments
    assert not back.atom_params.flags.writeable


# ---- restricting a force field to some elements ----------------------------------------


def test_restrict_to_keeps_the_energy_of_structures_of_those_elements(
    shared_data: Path,
) -> None:
    from ase.build import molecule

    from parafit.engines.reaxff.calculator import ReaxFFCalculator
    from parafit.io.ffield import read_ffield

    full = read_ffield(shared_data / "reaxff-golden" / "water_300_no_pbc" / "ffield")
    assert len(full.atom_symbols) > 2
    small = full.restrict_to(["O", "H"], header="water only")
    assert small.atom_symbols == ("O", "H") and small.header == "water only"
    # every kept entry names only O and H (or the torsion wildcard)
    for block in ("BND", "OFD", "ANG", "TOR", "HBD"):
        idx = small.block_indices(block)
        assert np.all((idx >= -1) & (idx < 2)), block
    assert 0 < small.n_bonds < full.n_bonds
    energies = []
    for ff in (full, small):
        atoms = molecule("H2O")
        atoms.positions[1] += [0.0, 0.1, 0.05]
        atoms.calc = ReaxFFCalculator(ffield=ff)
        energies.append((atoms.get_potential_energy(), atoms.get_forces()))
    assert energies[0][0] == pytest.approx(energies[1][0], abs=1e-10)
    np.testing.assert_allclose(energies[0][1], energies[1][1], atol=1e-10)
    with pytest.raises(InputError, match=r"\['Xx'\] not among its atom types"):
        full.restrict_to(["O", "Xx"])
    with pytest.raises(InputError, match="given twice"):
        full.restrict_to(["O", "O"])
