"""ReaxFF parameter names, the interface from an ffield, params files and the ParAMS triple."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from parafit.engines.reaxff import ffield_with_values, interface_from_ffield
from parafit.engines.reaxff.names import (
    SPECS,
    WILDCARD_LABEL,
    entry_prefixes,
    parameter_locations,
)
from parafit.errors import FormatError, InputError
from parafit.io.ffield import (
    WILDCARD,
    ForceField,
    format_ffield,
    parse_ffield,
    read_ffield,
)
from parafit.io.reaxff_params import (
    apply_params_file,
    apply_params_records,
    interface_from_ffield_triple,
    parse_params_file,
    read_params_file,
)
from parafit.parameters import ParameterInterface


@pytest.fixture(scope="module")
def bench(shared_data: Path) -> Path:
    return shared_data / "reaxff-benchmarks"


@pytest.fixture(scope="module")
def disulfide(bench: Path) -> ForceField:
    return read_ffield(bench / "disulfide" / "ffield_lit")


@pytest.fixture(scope="module")
def cobalt(bench: Path) -> ForceField:
    return read_ffield(bench / "cobalt" / "ffield_lit")


# ---- names ------------------------------------------------------------------------------
def test_one_unique_name_per_value(disulfide: ForceField) -> None:
    iface = interface_from_ffield(disulfide)
    n = 39 + 4 * 32 + 10 * 16 + 6 * 6 + 31 * 7 + 15 * 7 + 4 * 4
    assert len(iface) == n == len(set(iface.names))
    assert iface.model == "reaxff"
    assert [len(SPECS[b]) for b in SPECS] == [39, 32, 16, 6, 7, 7, 4]
    for block, specs in SPECS.items():  # symbols are unique inside each block
        assert len({s.symbol for s in specs}) == len(specs), block


@pytest.mark.parametrize(
    ("name", "value", "block", "position", "atoms"),
    [
        ("p_boc1", 50.0, "GEN", 1, ()),
        ("p_coa2", 127.8302, "GEN", 3, ()),
        ("R_cut", 10.0, "GEN", 13, ()),
        ("p_coa3", 3.6942, "GEN", 39, ()),
        ("O:r_0^sigma", 1.2699, "ATM", 1, ("O",)),
        ("S:chi", 6.5, "ATM", 14, ("S",)),
        ("H:p_hbond", 1.0, "ATM", 16, ("H",)),
        ("C:acore", 0.0, "ATM", 32, ("C",)),
        ("C.C:D_e^sigma", 145.407, "BND", 1, ("C", "C")),
        ("H.O:p_bo2", 5.9451, "BND", 14, ("H", "O")),
        ("S.S:p_bo1", -0.2515, "BND", 13, ("S", "S")),
        ("C.H:r_0^sigma", 1.0379, "OFD", 4, ("C", "H")),
        ("O.S:r_0^pi", 1.305, "OFD", 5, ("O", "S")),
        ("C.C.C:theta_00", 70.0265, "ANG", 1, ("C", "C", "C")),
        ("O.C.O:p_pen1", -35.0, "ANG", 6, ("O", "C", "O")),
        ("C.S.S.C:V_2", -15.0361, "TOR", 2, ("C", "S", "S", "C")),
        ("0.C.C.0:V_2", 23.2168, "TOR", 2, ("C", "C")),
        ("0.S.S.0:p_tor1", -0.9578, "TOR", 4, ("S", "S")),
        ("O.H.O:r_hb^0", 2.0431, "HBD", 1, ("O", "H", "O")),
        ("S.H.O:p_hb1", -4.579, "HBD", 2, ("S", "H", "O")),
    ],
)
def test_exact_names(
    disulfide: ForceField,
    name: str,
    value: float,
    block: str,
    position: int,
    atoms: tuple[str, ...],
) -> None:
    p = interface_from_ffield(disulfide)[name]
    assert (p.value, p.block, p.block_index, p.atoms) == (value, block, position, atoms)
    assert p.description


def test_default_activity_follows_the_categories(disulfide: ForceField) -> None:
    iface = interface_from_ffield(disulfide)
    for name in ("p_boc1", "C:r_0^sigma", "H.O:p_bo2", "0.C.C.0:V_2", "O.H.O:p_hb1"):
        assert iface[name].is_active and iface[name].category == "standard"
    for name in ("R_cut", "C:mass", "C:Val", "C.C:ovc", "C.C:v13cor", "H:p_hbond"):
        assert not iface[name].is_active and iface[name].category == "setting"
    for name in ("p_fe1", "C:unused_13", "C.C:unused_12", "0.C.C.0:unused_7"):
        assert not iface[name].is_active and iface[name].category == "unused"
    # placeholders <= 0 that only switch a term off
    assert iface["C.H:r_0^pi"].value == -1.0 and not iface["C.H:r_0^pi"].is_active
    assert iface["H:r_0^pi"].value == -0.1 and not iface["H:r_0^pi"].is_active
    assert iface["C:r_0^pi"].is_active
    # ranges: value +-20 %, (-1, 1) at 0
    assert iface["p_boc1"].range == (40.0, 60.0)
    assert iface["C:acore"].range == (-1.0, 1.0)


def test_active_argument(disulfide: ForceField) -> None:
    assert interface_from_ffield(disulfide, active=True).n_active == 701
    assert interface_from_ffield(disulfide, active=False).n_active == 0
    chosen = interface_from_ffield(disulfide, active=["C:mass", "p_boc2"])
    assert chosen.active_names == ("p_boc2", "C:mass")
    with pytest.raises(InputError, match=r"did you mean 'C\.H:p_bo1'"):
        interface_from_ffield(disulfide, active=["C.H:p_bo_1"])
    with pytest.raises(InputError, match="not the string"):
        interface_from_ffield(disulfide, active="p_boc1")


def test_repeated_symbols_and_entries_get_numbered() -> None:
    """Real files list some angles twice (two parameter sets); names stay unique."""
    ff = ForceField(
        header="dup",
        general=np.zeros(39),
        atom_symbols=("O", "H", "O"),
        atom_params=np.ones((3, 32)),
        bond_pairs=[[0, 1], [2, 1]],
        bond_params=np.ones((2, 16)),
        offdiag_pairs=np.zeros((0, 2), dtype=int),
        offdiag_params=np.zeros((0, 6)),
        angle_triples=[[1, 0, 1], [1, 0, 1], [1, 0, 1]],
        angle_params=np.arange(21.0).reshape(3, 7),
        torsion_quads=[[WILDCARD, 0, 0, WILDCARD], [1, 0, 0, 1], [0, 0, 0, 5]],
        torsion_params=np.ones((3, 7)),
        hbond_triples=np.zeros((0, 3), dtype=int),
        hbond_params=np.zeros((0, 4)),
    )
    assert entry_prefixes(ff, "ATM") == ("O", "H", "O#2")
    assert entry_prefixes(ff, "BND") == ("O.H", "O#2.H")
    assert entry_prefixes(ff, "ANG") == ("H.O.H", "H.O.H#2", "H.O.H#3")
    # the last torsion names atom type 6 of 3: LAMMPS skips it, so no parameters
    assert entry_prefixes(ff, "TOR") == (
        f"{WILDCARD_LABEL}.O.O.{WILDCARD_LABEL}",
        "H.O.O.H",
        None,
    )
    iface = interface_from_ffield(ff)
    assert iface["H.O.H#3:theta_00"].value == 14.0
    assert iface["O#2.H:D_e^sigma"].atoms == ("O", "H")
    assert not any(name.startswith("O.O.O.") for name in iface.names)
    assert ffield_with_values(ff, iface).same_values(ff)


def test_golden_force_fields_have_unique_names(shared_data: Path) -> None:
    ff = read_ffield(shared_data / "reaxff-golden" / "silica_600" / "ffield")
    names = [loc.name for loc in parameter_locations(ff)]
    assert len(names) == len(set(names)) == 2773
    assert "C.H.N#2:theta_00" in names  # listed twice in the file
    assert "X:r_0^sigma" in names  # an atom type called X: hence the wildcard "0"


# ---- values back into the ffield -------------------------------------------------------
def test_values_go_back_into_the_ffield(disulfide: ForceField, tmp_path: Path) -> None:
    iface = interface_from_ffield(disulfide)
    new = iface.with_values({"p_boc1": 51.25, "S.S:p_bo1": -0.3, "0.S.S.0:V_2": 1e-7})
    ff = ffield_with_values(disulfide, new)
    assert ff.general[0] == 51.25
    assert ff.bond_params[9, 12] == -0.3
    assert ff.torsion_params[14, 1] == 1e-7
    back = parse_ffield(format_ffield(ff))
    again = interface_from_ffield(back)
    assert again.names == iface.names
    np.testing.assert_array_equal(again.values, new.values)
    # a mapping works too, and only the named values change
    partial = ffield_with_values(disulfide, {"C:r_0^sigma": 1.5})
    assert partial.atom_params[0, 0] == 1.5
    assert np.array_equal(partial.bond_params, disulfide.bond_params)


def test_active_vector_round_trip(disulfide: ForceField) -> None:
    iface = interface_from_ffield(disulfide)
    x = iface.from_scaled(np.full(iface.n_active, 0.25))
    ff = ffield_with_values(disulfide, iface.with_values(x))
    np.testing.assert_array_equal(interface_from_ffield(ff).active_values, x)


def test_interface_from_another_ffield_is_refused(
    disulfide: ForceField, cobalt: ForceField
) -> None:
    with pytest.raises(InputError, match="another ffield"):
        ffield_with_values(cobalt, interface_from_ffield(disulfide))


def test_interface_yaml_round_trip(disulfide: ForceField) -> None:
    iface = interface_from_ffield(disulfide)
    assert ParameterInterface.from_yaml(iface.to_yaml()) == iface


# ---- legacy params files --------------------------------------------------------------
@pytest.mark.parametrize("case", ["cobalt", "disulfide"])
def test_params_file_sets_active_flags_and_ranges(bench: Path, case: str) -> None:
    ff = read_ffield(bench / case / "ffield_lit")
    path = bench / case / "params"
    records = read_params_file(path)
    iface = apply_params_file(interface_from_ffield(ff), ff, path)
    assert iface.n_active == len({r.key for r in records}) == len(records)
    locs = {loc.legacy: loc.name for loc in parameter_locations(ff)}
    for rec in records:
        p = iface[locs[rec.key]]
        assert p.is_active
        assert p.range == (min(rec.min, rec.max), max(rec.min, rec.max))
    assert iface.values.tolist() == interface_from_ffield(ff).values.tolist()


def test_params_file_examples(
    bench: Path, cobalt: ForceField, disulfide: ForceField
) -> None:
    co = apply_params_file(
        interface_from_ffield(cobalt), cobalt, bench / "cobalt" / "params"
    )
    assert co.active_names[0] == "Co:r_0^sigma" and co["Co:r_0^sigma"].range == (
        1.7,
        2.6,
    )
    assert co["Co.Co:p_bo1"].range == (-0.2, -0.04)
    path = bench / "disulfide" / "params"
    di = apply_params_file(interface_from_ffield(disulfide), disulfide, path)
    assert di["S.S:D_e^sigma"].range == (116.0, 119.0)  # "3 10 1 ... ! SS-Bond"
    assert di["C.S.S.C:p_tor1"].range == (-10.0, 0.0)  # written as min 0, max -10
    assert di["0.S.S.0:V_1"].is_active  # torsion entry 15 is 0-4-4-0
    assert not di["C:r_0^sigma"].is_active
    records = read_params_file(path)
    assert records[0].line == 1 and records[0].comment == "C-Atom"
    assert sum(1 for r in records if r.block == 5) == 28


def _params_error(text: str, ff: ForceField, tmp_path: Path) -> FormatError:
    path = tmp_path / "params"
    path.write_text(text)
    with pytest.raises(FormatError) as info:
        apply_params_file(interface_from_ffield(ff), ff, path)
    assert info.value.path == str(path)
    return info.value


def test_params_file_errors_name_the_line(
    disulfide: ForceField, tmp_path: Path
) -> None:
    ok = "3 1 1 0.1 100 120\n"
    err = _params_error(ok + "# comment\n\n3 11 1 0.1 100 120\n", disulfide, tmp_path)
    assert err.line == 4 and "the bond block has 10 entries, not 11" in str(err)
    assert str(err).startswith(f"{err.path}:4: ")
    err = _params_error(ok + "3 1 17 0.1 1 2\n", disulfide, tmp_path)
    assert err.line == 2 and "has 16 values, not 17" in str(err)
    err = _params_error("1 40 1 0.1 1 2\n", disulfide, tmp_path)
    assert "39 general parameters, not 40" in str(err)
    err = _params_error("1 3 2 0.1 1 2\n", disulfide, tmp_path)
    assert "position must be 1" in str(err)
    err = _params_error("8 1 1 0.1 1 2\n", disulfide, tmp_path)
    assert "block must be 1 (general) .. 7" in str(err)
    err = _params_error("3 1.5 1 0.1 1 2\n", disulfide, tmp_path)
    assert "entry must be an integer" in str(err)
    err = _params_error("3 1 1 0.1 1\n", disulfide, tmp_path)
    assert "needs 6 numbers" in str(err)
    err = _params_error("3 1 1 0.1 1 abc\n", disulfide, tmp_path)
    assert "max must be a number" in str(err)
    err = _params_error("3 1 1 0.1 2 2\n", disulfide, tmp_path)
    assert "min == max" in str(err) and err.key == "C.C:D_e^sigma"
    err = _params_error(ok + "3 1 1 0.1 100 130\n", disulfide, tmp_path)
    assert err.line == 2 and "first on line 1" in str(err)
    # identical repeats are harmless
    path = tmp_path / "params"
    path.write_text(ok + ok)
    assert (
        apply_params_file(interface_from_ffield(disulfide), disulfide, path).n_active
        == 1
    )


def test_params_entry_of_a_skipped_atom_type(disulfide: ForceField) -> None:
    quads = disulfide.torsion_quads.copy()
    quads[0] = [0, 0, 0, 7]  # atom type 8 of 4: LAMMPS skips this torsion
    ff = disulfide.replace(torsion_quads=quads)
    records = parse_params_file("6 1 1 0.1 -1 1\n")
    with pytest.raises(FormatError, match=r"^line 1: .*beyond the 4 of the atom block"):
        apply_params_records(interface_from_ffield(ff), ff, records)


# ---- ParAMS ffield_min / ffield_max / ffield_bool ---------------------------------------
def test_triple_matches_the_params_file(shared_data: Path) -> None:
    d = shared_data / "params-format" / "disulfide"
    triple = interface_from_ffield_triple(
        d / "ffield", d / "ffield_min", d / "ffield_max", d / "ffield_bool"
    )
    ff = read_ffield(d / "ffield")
    legacy = apply_params_file(
        interface_from_ffield(ff),
        ff,
        shared_data / "reaxff-benchmarks" / "disulfide" / "params_orig",
    )
    assert triple.n_active == 87
    assert triple.active_names == legacy.active_names
    np.testing.assert_array_equal(triple.active_ranges, legacy.active_ranges)
    np.testing.assert_array_equal(triple.values, interface_from_ffield(ff).values)
    # inactive parameters whose min == max get the default range
    assert triple["p_boc1"].range == (40.0, 60.0) and not triple["p_boc1"].is_active


def _all_zero(ff: ForceField) -> ForceField:
    arrays = {
        name: np.zeros_like(getattr(ff, name))
        for name in (
            "general",
            "atom_params",
            "bond_params",
            "offdiag_params",
            "angle_params",
            "torsion_params",
            "hbond_params",
        )
    }
    return ff.replace(**arrays)


def test_triple_errors(disulfide: ForceField, cobalt: ForceField) -> None:
    on = _all_zero(disulfide).replace(general=np.r_[1.0, np.zeros(38)])
    lo = disulfide.replace(general=disulfide.general - 1.0)
    hi = disulfide.replace(general=disulfide.general + 1.0)
    iface = interface_from_ffield_triple(disulfide, lo, hi, on)
    assert iface.active_names == ("p_boc1",) and iface["p_boc1"].range == (49.0, 51.0)
    with pytest.raises(FormatError, match="atom types"):
        interface_from_ffield_triple(disulfide, lo, hi, cobalt)
    with pytest.raises(FormatError, match="0 \\(inactive\\) or 1"):
        interface_from_ffield_triple(
            disulfide, lo, hi, on.replace(general=np.full(39, 0.5))
        )
    with pytest.raises(FormatError, match="min == ffield_max"):
        interface_from_ffield_triple(disulfide, disulfide, disulfide, on)
    quads = disulfide.torsion_quads.copy()
    quads[0] = [1, 0, 0, 1]
    with pytest.raises(
        FormatError, match="torsion block does not list the same entries"
    ):
        interface_from_ffield_triple(
            disulfide, lo, hi, dataclasses.replace(on, torsion_quads=quads)
        )
