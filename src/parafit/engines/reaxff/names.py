"""ReaxFF parameter names, and the parameter interface built from an ``ffield``.

Every value of a :class:`~parafit.io.ffield.ForceField` gets a unique, ParAMS-style
name ``<atoms>:<symbol>`` (general parameters have no prefix):

============  ======================  =========================================
block         example name            prefix
============  ======================  =========================================
``GEN``       ``p_boc1``              none
``ATM``       ``O:r_0^sigma``         the atom symbol
``BND``       ``H.O:p_bo2``           the pair, in file order
``OFD``       ``C.H:r_0^sigma``       the pair, in file order
``ANG``       ``C.H.O:theta_00``      ``i.j.k`` (j is the central atom)
``TOR``       ``0.C.C.0:V_2``         ``i.j.k.l``; ``0`` is the file's wildcard
``HBD``       ``O.H.O:r_hb^0``        donor, hydrogen, acceptor
============  ======================  =========================================

The wildcard is written ``0``, as in the file, because real force fields have an atom
type called ``X`` (the usual wildcard letter). The symbols per block and position
follow the ReaxFF manual (Chenoweth et al. 2008 SI) as summarized in the project's
notes on the format; positions that LAMMPS does not read are named ``unused_<pos>``.

Names are unique: an atom symbol that appears twice in the atom block is labelled
``O#2`` from its second occurrence on, and an entry whose atoms repeat an earlier
entry of the same block gets ``#2``, ``#3``, ... after its prefix (``C.H#2:p_bo1``).
Entries that refer to an atom type beyond the atom block (LAMMPS skips them) have no
parameters.

Each position has a category:

- ``"standard"``: a fit parameter; active by default;
- ``"setting"``: a switch, a flag, a cutoff, a mass or a valence count that is not
  usually fitted; inactive by default;
- ``"unused"``: not read by LAMMPS, or read only for options parafit does not
  support (eReaxFF, ACKS2, lg dispersion); inactive by default.

``Parameter.block_index`` is the 1-based position of the value in its entry, as in
the legacy ``params`` file and the notes' tables (for ``GEN``: the line number in the
general block); the entry itself is encoded in the name.
"""

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

from parafit.errors import InputError
from parafit.io.ffield import BLOCK_CODES, WILDCARD, ForceField
from parafit.parameters import Parameter, ParameterInterface

__all__ = [
    "CATEGORIES",
    "LEGACY_BLOCKS",
    "SPECS",
    "WILDCARD_LABEL",
    "ParamSpec",
    "ParameterLocation",
    "atom_labels",
    "entry_prefixes",
    "ffield_with_values",
    "general_spec",
    "interface_from_ffield",
    "parameter_locations",
]

#: How the torsion wildcard (file index 0) is written in names.
WILDCARD_LABEL = "0"

#: Parameter categories (see the module docstring).
CATEGORIES: tuple[str, ...] = ("standard", "setting", "unused")

#: Block numbers of the legacy ``params`` file.
LEGACY_BLOCKS: Mapping[int, str] = MappingProxyType(
    {k + 1: code for k, code in enumerate(BLOCK_CODES)}
)


class ParamSpec(NamedTuple):
    """What one position of a block means.

    Attributes:
        symbol: the name after the prefix, e.g. ``"p_bo2"``.
        category: ``"standard"``, ``"setting"`` or ``"unused"``.
        description: what the value is, with its unit where it has one.
        equation: the equation number (Chenoweth 2008 SI numbering) or the formula
            the value enters.
    """

    symbol: str
    category: str
    description: str
    equation: str = ""


_S, _SET, _U = "standard", "setting", "unused"

_GENERAL: tuple[ParamSpec, ...] = (
    ParamSpec(
        "p_boc1", _S, "bond-order correction for over-coordination (f2)", "Eq. 4c"
    ),
    ParamSpec(
        "p_boc2", _S, "bond-order correction for over-coordination (f3)", "Eq. 4d"
    ),
    ParamSpec(
        "p_coa2",
        _S,
        "valence-angle conjugation (coalition): exponent of the valence deviation",
        "Eq. 15",
    ),
    ParamSpec("p_trip4", _S, "triple-bond stabilisation", "Eq. 20"),
    ParamSpec("p_trip3", _S, "triple-bond stabilisation", "Eq. 20"),
    ParamSpec("k_c2", _S, "C2 correction (C-C bonds only)", "Eq. 19"),
    ParamSpec("p_ovun6", _S, "under-coordination energy", "Eq. 12"),
    ParamSpec("p_trip2", _S, "triple-bond stabilisation", "Eq. 20"),
    ParamSpec("p_ovun7", _S, "under-coordination energy", "Eq. 12"),
    ParamSpec("p_ovun8", _S, "under-coordination energy", "Eq. 12"),
    ParamSpec("p_trip1", _S, "triple-bond stabilisation energy", "Eq. 20"),
    ParamSpec(
        "R_taper_low", _SET, "lower taper radius; must be 0 (Angstrom)", "Eq. 21"
    ),
    ParamSpec(
        "R_cut",
        _SET,
        "upper taper radius: cutoff of vdW, Coulomb and charge equilibration (Angstrom)",
        "Eq. 21",
    ),
    ParamSpec("p_fe1", _U, "Fe-dimer correction; not used by LAMMPS", "Eq. 6a"),
    ParamSpec("p_val6", _S, "valence angle: under-coordination", "Eq. 13c"),
    ParamSpec("p_lp1", _S, "lone-pair count", "Eq. 8"),
    ParamSpec("p_val9", _S, "valence angle: exponent of SBO2", "Eq. 13f"),
    ParamSpec("p_val10", _S, "valence angle: dependence of theta_0 on SBO", "Eq. 13g"),
    ParamSpec("p_fe2", _U, "Fe-dimer correction; not used by LAMMPS", ""),
    ParamSpec("p_pen2", _S, "double-bond/angle penalty", "Eq. 14a"),
    ParamSpec("p_pen3", _S, "double-bond/angle penalty: over-coordination", "Eq. 14a"),
    ParamSpec("p_pen4", _S, "double-bond/angle penalty: over-coordination", "Eq. 14a"),
    ParamSpec("p_fe3", _U, "Fe-dimer correction; not used by LAMMPS", ""),
    ParamSpec("p_tor2", _S, "torsion: bond-order dependence", "Eq. 16b"),
    ParamSpec("p_tor3", _S, "torsion: over-coordination", "Eq. 16c"),
    ParamSpec("p_tor4", _S, "torsion: over-coordination", "Eq. 16c"),
    ParamSpec("p_elho", _U, "eReaxFF only; not used by LAMMPS", "Eq. 26a"),
    ParamSpec("p_cot2", _S, "4-body conjugation", "Eq. 17b"),
    ParamSpec("p_vdW1", _S, "vdW shielding exponent", "Eq. 23b"),
    ParamSpec(
        "bo_cut_x100",
        _SET,
        "bond-order cutoff times 100 (LAMMPS uses 0.01 * value)",
        "BO' >= 0.01 * value",
    ),
    ParamSpec("p_coa4", _S, "valence-angle conjugation (coalition)", "Eq. 15"),
    ParamSpec("p_ovun4", _S, "over/under-coordination", "Eq. 11b"),
    ParamSpec("p_ovun3", _S, "over/under-coordination", "Eq. 11b"),
    ParamSpec("p_val8", _S, "valence angle / lone pair (SBO)", "Eq. 13d"),
    ParamSpec("X_soft", _U, "ACKS2 bond softness; not used with QEq", "Eq. 25"),
    ParamSpec(
        "d", _U, "scale factor of the lg dispersion (only with lgvdw)", "Eq. 23d"
    ),
    ParamSpec("p_val", _U, "eReaxFF Gaussian exponent; not used by LAMMPS", "Eq. 27"),
    ParamSpec(
        "flag_13e",
        _SET,
        "flag: (int)value == 2 makes LAMMPS apply triple-bond stabilisation to all bonds",
        "Eq. 13e",
    ),
    ParamSpec("p_coa3", _S, "valence-angle conjugation (coalition)", "Eq. 15"),
)

_ATOM: tuple[ParamSpec, ...] = (
    ParamSpec(
        "r_0^sigma",
        _S,
        "sigma-bond covalent radius (Angstrom)",
        "BO'_sigma = exp(p_bo1 (r/r_0^sigma)^p_bo2), pair radius = mean of the two atoms",
    ),
    ParamSpec("Val", _SET, "valency Val_i", "Delta_i = sum BO - Val_i"),
    ParamSpec(
        "mass",
        _SET,
        "atomic mass (amu); LAMMPS uses it for first-row rules (mass < 21) and to detect C-O",
        "",
    ),
    ParamSpec("r_vdW", _S, "vdW radius (Angstrom)", "pair r_vdW = 2 sqrt(r_i r_j)"),
    ParamSpec(
        "epsilon", _S, "vdW well depth D_ij (kcal/mol)", "pair D = sqrt(eps_i eps_j)"
    ),
    ParamSpec(
        "gamma",
        _S,
        "EEM shielding gamma (1/Angstrom)",
        "E_coul ~ 1/(r^3 + gamma_ij^-3)^(1/3)",
    ),
    ParamSpec(
        "r_0^pi",
        _S,
        "pi-bond covalent radius (Angstrom); <= 0 switches pi bonds off",
        "BO'_pi = exp(p_bo3 (r/r_0^pi)^p_bo4)",
    ),
    ParamSpec(
        "Val^e",
        _SET,
        "number of valence electrons Val_i^e",
        "nlp_opt = (Val^e - Val)/2",
    ),
    ParamSpec(
        "alpha",
        _S,
        "vdW alpha",
        "E_vdW = D (exp(alpha (1 - f13/r_vdW)) - 2 exp(alpha/2 (1 - f13/r_vdW)))",
    ),
    ParamSpec(
        "gamma_w",
        _S,
        "vdW shielding gamma_w; shielding is on when > 0.5",
        "f13 = (r^p_vdW1 + (1/gamma_w)^p_vdW1)^(1/p_vdW1)",
    ),
    ParamSpec(
        "Val^boc",
        _SET,
        "valency for the bond-order correction Val_i^boc",
        "Delta'_boc = sum BO' - Val^boc",
    ),
    ParamSpec(
        "p_ovun5",
        _S,
        "under-coordination energy",
        "E_under = -p_ovun5 (1 - exp(p_ovun6 Delta)) / ...",
    ),
    ParamSpec("unused_13", _U, "not used", ""),
    ParamSpec("chi", _S, "EEM electronegativity chi (eV)", "H s = -chi"),
    ParamSpec(
        "eta",
        _S,
        "EEM hardness eta (eV); LAMMPS uses 2 * value",
        "E_self = chi q + eta q^2",
    ),
    ParamSpec(
        "p_hbond", _SET, "hydrogen-bond flag: 1 = H, 2 = donor/acceptor, 0 = other", ""
    ),
    ParamSpec(
        "r_0^pipi",
        _S,
        "double-pi-bond covalent radius (Angstrom); <= 0 switches them off",
        "BO'_pipi = exp(p_bo5 (r/r_0^pipi)^p_bo6)",
    ),
    ParamSpec(
        "p_lp2",
        _S,
        "lone-pair energy",
        "E_lp = p_lp2 Delta_lp / (1 + exp(-75 Delta_lp))",
    ),
    ParamSpec("heat_increment", _U, "heat increment; not used in the energy", ""),
    ParamSpec(
        "p_boc4",
        _S,
        "1-3 bond-order correction (pair value: geometric mean)",
        "f4, f5 of Delta'_boc",
    ),
    ParamSpec(
        "p_boc3",
        _S,
        "1-3 bond-order correction (pair value: geometric mean)",
        "f4, f5 of Delta'_boc",
    ),
    ParamSpec(
        "p_boc5",
        _S,
        "1-3 bond-order correction (pair value: geometric mean)",
        "f4, f5 of Delta'_boc",
    ),
    ParamSpec("bcut_acks2", _U, "ACKS2 bond-softness cutoff; not used with QEq", ""),
    ParamSpec("unused_24", _U, "not used", ""),
    ParamSpec(
        "p_ovun2",
        _S,
        "over/under-coordination",
        "E_over ~ 1/(1 + exp(p_ovun2 Delta_lpcorr))",
    ),
    ParamSpec("p_val3", _S, "valence angle", "f7 = 1 - exp(-p_val3 BO^p_val4)"),
    ParamSpec("unused_27", _U, "not used", ""),
    ParamSpec(
        "Val^val",
        _SET,
        "valency for the valence angle Val_i^val; LAMMPS sets it to Val^boc when mass < 21",
        "",
    ),
    ParamSpec("p_val5", _S, "valence angle", "f8 = p_val5 - (p_val5 - 1) (...)"),
    ParamSpec(
        "rcore",
        _S,
        "inner-wall radius (Angstrom); inner wall is on when rcore > 0.01 and acore > 0.01",
        "E_core = ecore exp(acore (1 - r/rcore))",
    ),
    ParamSpec(
        "ecore",
        _S,
        "inner-wall energy (kcal/mol)",
        "E_core = ecore exp(acore (1 - r/rcore))",
    ),
    ParamSpec(
        "acore", _S, "inner-wall exponent", "E_core = ecore exp(acore (1 - r/rcore))"
    ),
)

_BOND: tuple[ParamSpec, ...] = (
    ParamSpec(
        "D_e^sigma",
        _S,
        "sigma-bond dissociation energy (kcal/mol)",
        "E_bond = -D_e^sigma BO_sigma exp(p_be1 (1 - BO_sigma^p_be2)) - ...",
    ),
    ParamSpec(
        "D_e^pi",
        _S,
        "pi-bond dissociation energy (kcal/mol)",
        "E_bond = ... - D_e^pi BO_pi",
    ),
    ParamSpec(
        "D_e^pipi",
        _S,
        "double-pi-bond dissociation energy (kcal/mol)",
        "E_bond = ... - D_e^pipi BO_pipi",
    ),
    ParamSpec(
        "p_be1",
        _S,
        "bond energy",
        "E_bond = -D_e^sigma BO_sigma exp(p_be1 (1 - BO_sigma^p_be2))",
    ),
    ParamSpec(
        "p_bo5", _S, "double-pi bond order", "BO'_pipi = exp(p_bo5 (r/r_0^pipi)^p_bo6)"
    ),
    ParamSpec(
        "v13cor", _SET, "switch of the 1-3 bond-order correction (on when >= 0.001)", ""
    ),
    ParamSpec(
        "p_bo6", _S, "double-pi bond order", "BO'_pipi = exp(p_bo5 (r/r_0^pipi)^p_bo6)"
    ),
    ParamSpec(
        "p_ovun1",
        _S,
        "over-coordination energy",
        "E_over = sum p_ovun1 D_e^sigma BO ...",
    ),
    ParamSpec(
        "p_be2",
        _S,
        "bond energy",
        "E_bond = -D_e^sigma BO_sigma exp(p_be1 (1 - BO_sigma^p_be2))",
    ),
    ParamSpec("p_bo3", _S, "pi bond order", "BO'_pi = exp(p_bo3 (r/r_0^pi)^p_bo4)"),
    ParamSpec("p_bo4", _S, "pi bond order", "BO'_pi = exp(p_bo3 (r/r_0^pi)^p_bo4)"),
    ParamSpec("unused_12", _U, "not used", ""),
    ParamSpec(
        "p_bo1", _S, "sigma bond order", "BO'_sigma = exp(p_bo1 (r/r_0^sigma)^p_bo2)"
    ),
    ParamSpec(
        "p_bo2", _S, "sigma bond order", "BO'_sigma = exp(p_bo1 (r/r_0^sigma)^p_bo2)"
    ),
    ParamSpec(
        "ovc",
        _SET,
        "switch of the over-coordination bond-order correction f1 (on when >= 0.001)",
        "",
    ),
    ParamSpec("unused_16", _U, "not used", ""),
)

_OFFDIAG: tuple[ParamSpec, ...] = (
    ParamSpec(
        "D_ij",
        _S,
        "pair vdW well depth (kcal/mol); used only if > 0",
        "replaces sqrt(eps_i eps_j)",
    ),
    ParamSpec(
        "r_vdW",
        _S,
        "pair vdW radius (Angstrom); LAMMPS uses 2 * value; used only if > 0",
        "replaces 2 sqrt(r_i r_j)",
    ),
    ParamSpec(
        "alpha_ij",
        _S,
        "pair vdW alpha; used only if > 0",
        "replaces sqrt(alpha_i alpha_j)",
    ),
    ParamSpec(
        "r_0^sigma",
        _S,
        "pair sigma-bond length (Angstrom); used only if > 0",
        "BO'_sigma = exp(p_bo1 (r/r_0^sigma)^p_bo2)",
    ),
    ParamSpec(
        "r_0^pi",
        _S,
        "pair pi-bond length (Angstrom); used only if > 0",
        "BO'_pi = exp(p_bo3 (r/r_0^pi)^p_bo4)",
    ),
    ParamSpec(
        "r_0^pipi",
        _S,
        "pair double-pi-bond length (Angstrom); used only if > 0",
        "BO'_pipi = exp(p_bo5 (r/r_0^pipi)^p_bo6)",
    ),
)

_ANGLE: tuple[ParamSpec, ...] = (
    ParamSpec(
        "theta_00",
        _S,
        "equilibrium angle Theta_0,0 (degrees)",
        "theta_0 = 180 - theta_00 (1 - exp(-p_val10 (2 - SBO2)))",
    ),
    ParamSpec(
        "p_val1",
        _S,
        "valence-angle energy (kcal/mol); angle, penalty and coalition terms are on only if |p_val1| > 0.001",
        "E_val = f7 f7 f8 p_val1 (1 - exp(-p_val2 (theta_0 - theta)^2))",
    ),
    ParamSpec(
        "p_val2",
        _S,
        "valence-angle width",
        "E_val = ... p_val1 (1 - exp(-p_val2 (theta_0 - theta)^2))",
    ),
    ParamSpec(
        "p_coa1",
        _S,
        "valence-angle conjugation (coalition) energy (kcal/mol)",
        "E_coa = p_coa1 / (1 + exp(p_coa2 Delta_val)) ...",
    ),
    ParamSpec(
        "p_val7", _S, "valence angle: under-coordination", "f8 = ... exp(-p_val7 Delta)"
    ),
    ParamSpec(
        "p_pen1",
        _S,
        "double-bond/angle penalty energy (kcal/mol)",
        "E_pen = p_pen1 f9 exp(-p_pen2 (BO_ij - 2)^2) exp(-p_pen2 (BO_jk - 2)^2)",
    ),
    ParamSpec(
        "p_val4",
        _S,
        "valence angle: bond-order exponent",
        "f7 = 1 - exp(-p_val3 BO^p_val4)",
    ),
)

_TORSION: tuple[ParamSpec, ...] = (
    ParamSpec(
        "V_1",
        _S,
        "torsion barrier V1 (kcal/mol)",
        "E_tor = f10 sin sin 1/2 [V1 (1 + cos w) + ...]",
    ),
    ParamSpec(
        "V_2",
        _S,
        "torsion barrier V2 (kcal/mol)",
        "E_tor = ... V2 exp(p_tor1 (2 - BO_pi - f11)^2) (1 - cos 2w) ...",
    ),
    ParamSpec(
        "V_3", _S, "torsion barrier V3 (kcal/mol)", "E_tor = ... V3 (1 + cos 3w)"
    ),
    ParamSpec(
        "p_tor1",
        _S,
        "torsion: pi-bond-order dependence of V2",
        "exp(p_tor1 (2 - BO_pi - f11)^2)",
    ),
    ParamSpec(
        "p_cot1",
        _S,
        "4-body conjugation energy (kcal/mol)",
        "E_con = p_cot1 prod exp(-p_cot2 (BO - 1.5)^2) (...)",
    ),
    ParamSpec("unused_6", _U, "not used", ""),
    ParamSpec("unused_7", _U, "not used", ""),
)

_HBOND: tuple[ParamSpec, ...] = (
    ParamSpec(
        "r_hb^0",
        _S,
        "hydrogen-bond equilibrium distance H-Z (Angstrom)",
        "exp(-p_hb3 (r0/r + r/r0 - 2))",
    ),
    ParamSpec(
        "p_hb1",
        _S,
        "hydrogen-bond energy (kcal/mol, negative)",
        "E_hb = p_hb1 (1 - exp(-p_hb2 BO_XH)) exp(-p_hb3 (...)) sin^4(theta/2)",
    ),
    ParamSpec(
        "p_hb2", _S, "hydrogen bond: bond-order dependence", "1 - exp(-p_hb2 BO_XH)"
    ),
    ParamSpec(
        "p_hb3",
        _S,
        "hydrogen bond: distance dependence",
        "exp(-p_hb3 (r0/r + r/r0 - 2))",
    ),
)

#: Position specs per block code; ``SPECS[code][pos - 1]``. The general block may hold
#: more than 39 values; see :func:`general_spec`.
SPECS: Mapping[str, tuple[ParamSpec, ...]] = MappingProxyType(
    {
        "GEN": _GENERAL,
        "ATM": _ATOM,
        "BND": _BOND,
        "OFD": _OFFDIAG,
        "ANG": _ANGLE,
        "TOR": _TORSION,
        "HBD": _HBOND,
    }
)


def general_spec(position: int) -> ParamSpec:
    """Spec of general parameter ``position`` (1-based); beyond 39: ``unused_<pos>``."""
    if position < 1:
        raise InputError(f"general parameter positions are 1-based; got {position}.")
    if position <= len(_GENERAL):
        return _GENERAL[position - 1]
    return ParamSpec(
        f"unused_{position}", _U, "extra general parameter; not used by LAMMPS", ""
    )


class ParameterLocation(NamedTuple):
    """Where one named parameter lives in a :class:`ForceField`.

    Attributes:
        name: the unique parameter name.
        block: block code (``"GEN"``, ``"ATM"``, ...).
        entry: 0-based entry of the block (for ``GEN``: the 0-based line).
        position: 1-based position of the value in the entry (for ``GEN``: the
            1-based line, i.e. ``entry + 1``); this is ``Parameter.block_index``.
        atoms: element symbols of the entry, without wildcards.
        spec: what the position means.
    """

    name: str
    block: str
    entry: int
    position: int
    atoms: tuple[str, ...]
    spec: ParamSpec

    @property
    def legacy(self) -> tuple[int, int, int]:
        """The ``(block, entry, position)`` triple of the legacy ``params`` file (1-based)."""
        number = BLOCK_CODES.index(self.block) + 1
        if self.block == "GEN":
            return (number, self.position, 1)
        return (number, self.entry + 1, self.position)

    def value(self, ff: ForceField) -> float:
        """The current value of this parameter in ``ff``."""
        if self.block == "GEN":
            return float(ff.general[self.entry])
        return float(ff.block_params(self.block)[self.entry, self.position - 1])


def atom_labels(ff: ForceField) -> tuple[str, ...]:
    """Unique labels of the atom types: the symbol, ``O#2`` for a repeated one."""
    seen: dict[str, int] = {}
    out = []
    for sym in ff.atom_symbols:
        seen[sym] = seen.get(sym, 0) + 1
        out.append(sym if seen[sym] == 1 else f"{sym}#{seen[sym]}")
    return tuple(out)


def entry_prefixes(ff: ForceField, block: str) -> tuple[str | None, ...]:
    """The name prefix of each entry of a block (``"C.H"``, ``"0.C.C.0"``, ``"C.H#2"``).

    Args:
        ff: the force field.
        block: a block code other than ``"GEN"``.

    Returns:
        One prefix per entry; None for an entry that refers to an atom type beyond
        the atom block (LAMMPS skips it).
    """
    labels = atom_labels(ff)
    if block == "ATM":
        return labels
    idx = ff.block_indices(block)
    if idx is None:
        raise InputError(f"block {block!r} has no entry prefixes.")
    seen: dict[str, int] = {}
    out: list[str | None] = []
    for row in idx:
        if np.any(row >= ff.n_atoms):
            out.append(None)
            continue
        prefix = ".".join(
            WILDCARD_LABEL if i == WILDCARD else labels[i] for i in row.tolist()
        )
        seen[prefix] = seen.get(prefix, 0) + 1
        out.append(prefix if seen[prefix] == 1 else f"{prefix}#{seen[prefix]}")
    return tuple(out)


def parameter_locations(ff: ForceField) -> tuple[ParameterLocation, ...]:
    """Every named parameter of ``ff``, in file order.

    Returns:
        One :class:`ParameterLocation` per value (entries that refer to atom types
        beyond the atom block are left out); names are unique.
    """
    out: list[ParameterLocation] = []
    for k in range(ff.n_general):
        spec = general_spec(k + 1)
        out.append(ParameterLocation(spec.symbol, "GEN", k, k + 1, (), spec))
    for block in BLOCK_CODES[1:]:
        prefixes = entry_prefixes(ff, block)
        idx = ff.block_indices(block)
        for e, prefix in enumerate(prefixes):
            if prefix is None:
                continue
            if idx is None:
                atoms: tuple[str, ...] = (ff.atom_symbols[e],)
            else:
                atoms = tuple(
                    ff.atom_symbols[i] for i in idx[e].tolist() if i != WILDCARD
                )
            for pos, spec in enumerate(SPECS[block], start=1):
                out.append(
                    ParameterLocation(
                        f"{prefix}:{spec.symbol}", block, e, pos, atoms, spec
                    )
                )
    return tuple(out)


_SWITCHED_OFF_WHEN_NOT_POSITIVE = {
    ("ATM", 7),  # r_0^pi
    ("ATM", 17),  # r_0^pipi
    ("OFD", 1),
    ("OFD", 2),
    ("OFD", 3),
    ("OFD", 4),
    ("OFD", 5),
    ("OFD", 6),
}


def _default_active(loc: ParameterLocation, value: float) -> bool:
    """Standard parameters, except values <= 0 that only switch a term off."""
    if loc.spec.category != "standard":
        return False
    return not (
        (loc.block, loc.position) in _SWITCHED_OFF_WHEN_NOT_POSITIVE and value <= 0
    )


def interface_from_ffield(
    ff: ForceField, *, active: bool | Iterable[str] | None = None
) -> ParameterInterface:
    """The parameter interface of a force field: one :class:`Parameter` per value.

    Args:
        ff: the force field.
        active: None (default) activates the ``"standard"`` parameters except the
            off-diagonal values and the atom pi radii that are <= 0 (placeholders that
            switch a term off, which a ±20 % range never turns on); True activates all,
            False none; a collection of names activates exactly those.

    Returns:
        A ParameterInterface with ``model="reaxff"``; ranges are the default value ±20 %
        (``(-1, 1)`` for 0), ``block_index`` is the 1-based position (see the module
        docstring), ``category`` the position's category.

    Raises:
        InputError: ``active`` names a parameter the force field does not have.
    """
    locs = parameter_locations(ff)
    wanted: set[str] | None = None
    if active is not None and not isinstance(active, bool):
        if isinstance(active, str):
            raise InputError(
                f"active must be a collection of parameter names, not the string {active!r}; "
                f"write [{active!r}]."
            )
        wanted = set(active)
        known = {loc.name for loc in locs}
        unknown = sorted(wanted - known)
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise InputError(
                f"unknown ReaxFF parameter(s) {unknown} for this force field{hint}",
                key=unknown[0],
            )
    params = []
    for loc in locs:
        value = loc.value(ff)
        if wanted is not None:
            is_active = loc.name in wanted
        elif isinstance(active, bool):
            is_active = active
        else:
            is_active = _default_active(loc, value)
        params.append(
            Parameter(
                name=loc.name,
                value=value,
                is_active=is_active,
                atoms=loc.atoms,
                block=loc.block,
                block_index=loc.position,
                category=loc.spec.category,
                description=loc.spec.description,
                equation=loc.spec.equation,
            )
        )
    return ParameterInterface(params, model="reaxff")


def ffield_with_values(
    ff: ForceField, interface: ParameterInterface | Mapping[str, float]
) -> ForceField:
    """A copy of ``ff`` with the values of ``interface`` written back.

    Args:
        ff: the force field the interface was built from (same atom types and
            entries, so that names match).
        interface: a ParameterInterface (all its parameters are written, active or
            not) or a ``{name: value}`` mapping; it may cover a subset of ``ff``.

    Returns:
        The new ForceField; values not named keep ``ff``'s values.

    Raises:
        InputError: a name that ``ff`` does not have (e.g. an interface from another
            force field).
    """
    if isinstance(interface, ParameterInterface):
        values = {p.name: p.value for p in interface}
    else:
        values = {str(k): float(v) for k, v in interface.items()}
    by_name = {loc.name: loc for loc in parameter_locations(ff)}
    general = ff.general.copy()
    arrays = {code: ff.block_params(code).copy() for code in BLOCK_CODES[1:]}
    for name, value in values.items():
        loc = by_name.get(name)
        if loc is None:
            import difflib

            close = difflib.get_close_matches(name, list(by_name), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise InputError(
                f"parameter {name!r} is not in this force field (was the interface built from another ffield?){hint}",
                key=name,
            )
        if loc.block == "GEN":
            general[loc.entry] = value
        else:
            arrays[loc.block][loc.entry, loc.position - 1] = value
    return ff.replace(
        general=general,
        atom_params=arrays["ATM"],
        bond_params=arrays["BND"],
        offdiag_params=arrays["OFD"],
        angle_params=arrays["ANG"],
        torsion_params=arrays["TOR"],
        hbond_params=arrays["HBD"],
    )
