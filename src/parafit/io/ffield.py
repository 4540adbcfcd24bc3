"""ReaxFF force-field files (``ffield``) as read by LAMMPS ``pair_style reaxff``.

The file is parsed **by position**, never by the ``!`` comments (which often do not
match the columns). Layout, as LAMMPS reads it:

- line 1: free text (kept verbatim as :attr:`ForceField.header`);
- general block: a count line ``n ! comment``, then ``n`` lines of one value and a
  comment;
- atom block: a count line, **3** header lines, then 4 lines per atom type: the
  symbol and 8 values, then 3 lines of 8 values (32 values per atom);
- bond block: a count line, **1** header line, then 2 lines per pair: two 1-based
  atom-type indices and 8 values, then 8 values (16 values per pair);
- off-diagonal block: a count line, then ``i j`` and 6 values per line;
- valence-angle block: a count line, then ``i j k`` and 7 values per line;
- torsion block: a count line, then ``i j k l`` and 7 values per line; ``0`` as the
  first or last index is a wildcard (stored here as :data:`WILDCARD` = -1);
- hydrogen-bond block: a count line, then ``i j k`` and 4 values per line.

Blank lines before count and data lines are skipped (as LAMMPS does); the header
lines after the atom and bond count lines are kept verbatim whatever they hold.
Everything after the hydrogen-bond block is ignored. Numbers are separated by
whitespace; a field that Fortran wrote without a separating blank before a negative
number (``1.0000-100.0000``) is split into its numbers. Files with ``lgvdw``
(5-line atom records) are not supported.

Writing uses the classic fixed columns (``(1x,a2,8f9.4)``, ``(2i3,8f9.4)``, ...) when
a value is exactly representable with 4 decimals, and otherwise the fewest decimals
(up to 17) that give back the same double, in a wider field that still starts with
a blank; so ``parse_ffield(format_ffield(ff))`` gives bit-identical arrays. LAMMPS
reads whitespace-separated numbers, so wider fields are fine there (Fortran ReaxFF,
which reads fixed columns, needs the 4-decimal layout).

Indices in memory are **0-based** atom-type indices; the file's are 1-based.
"""

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from parafit._atomic import write_text_atomic
from parafit.errors import FormatError, InputError

__all__ = [
    "BLOCK_CODES",
    "BLOCK_TITLES",
    "DEFAULT_COMMENTS",
    "N_VALUES",
    "WILDCARD",
    "ForceField",
    "format_ffield",
    "format_value",
    "parse_ffield",
    "read_ffield",
    "write_ffield",
]

#: Torsion index meaning "any atom type" (``0`` in the file).
WILDCARD = -1

#: Block codes in file order (ParAMS's metadata names).
BLOCK_CODES: tuple[str, ...] = ("GEN", "ATM", "BND", "OFD", "ANG", "TOR", "HBD")

#: Human titles of the blocks, for messages.
BLOCK_TITLES: Mapping[str, str] = MappingProxyType(
    {
        "GEN": "general",
        "ATM": "atom",
        "BND": "bond",
        "OFD": "off-diagonal",
        "ANG": "valence-angle",
        "TOR": "torsion",
        "HBD": "hydrogen-bond",
    }
)

#: Values per entry in each block (the general block has one value per line).
N_VALUES: Mapping[str, int] = MappingProxyType(
    {"GEN": 1, "ATM": 32, "BND": 16, "OFD": 6, "ANG": 7, "TOR": 7, "HBD": 4}
)

_N_INDICES = {"BND": 2, "OFD": 2, "ANG": 3, "TOR": 4, "HBD": 3}
_N_HEADER_LINES = {"ATM": 3, "BND": 1}  # extra header lines after the count line

#: Comment text written after each count (and the header lines that follow) when a
#: :class:`ForceField` carries none, e.g. one built in code.
DEFAULT_COMMENTS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "GEN": ("       ! Number of general parameters",),
        "ATM": (
            "    ! Nr of atoms; cov.r; valency;a.m;Rvdw;Evdw;gammaEEM;cov.r2;#",
            "            alfa;gammavdW;valency;Eunder;Eover;chiEEM;etaEEM;n.u.",
            "            cov r3;Elp;Heat inc.;n.u.;n.u.;n.u.;n.u.",
            "            ov/un;val1;n.u.;val3,vval4",
        ),
        "BND": (
            "      ! Nr of bonds; Edis1;LPpen;n.u.;pbe1;pbo5;13corr;pbo6",
            "                         pbe2;pbo3;pbo4;n.u.;pbo1;pbo2;ovcorr",
        ),
        "OFD": ("    ! Nr of off-diagonal terms; Ediss;Ro;gamma;rsigma;rpi;rpi2",),
        "ANG": ("    ! Nr of angles;at1;at2;at3;Thetao,o;ka;kb;pv1;pv2",),
        "TOR": ("    ! Nr of torsions;at1;at2;at3;at4;;V1;V2;V3;V2(BO);vconj;n.u;n",),
        "HBD": ("    ! Nr of hydrogen bonds;at1;at2;at3;Rhb;Dehb;vhb1",),
    }
)

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_GLUED_PIECE = re.compile(r"[+-]?\d*\.\d+(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class ForceField:
    """A ReaxFF force field: every block of an ``ffield`` file as numpy arrays.

    Arrays are copied and made read-only at construction; change values with
    :func:`dataclasses.replace` (validated again) or
    :func:`parafit.engines.reaxff.names.ffield_with_values`. Index arrays hold
    **0-based** atom-type indices (file index − 1); in ``torsion_quads`` the file's
    wildcard ``0`` is :data:`WILDCARD` (-1), allowed in the first and last column.
    Indices ``>= n_atoms`` are kept (LAMMPS silently skips such entries).

    Attributes:
        header: first line of the file, verbatim (without the newline).
        general: general parameters, shape (n_general,).
        atom_symbols: atom-type symbols as written, length n_atoms.
        atom_params: atom parameters, shape (n_atoms, 32); column c is position c+1.
        bond_pairs: atom-type indices, shape (n_bonds, 2), int.
        bond_params: bond parameters, shape (n_bonds, 16).
        offdiag_pairs: shape (n_offdiag, 2), int.
        offdiag_params: shape (n_offdiag, 6).
        angle_triples: shape (n_angles, 3), int; the middle index is the central atom.
        angle_params: shape (n_angles, 7).
        torsion_quads: shape (n_torsions, 4), int; -1 = wildcard.
        torsion_params: shape (n_torsions, 7).
        hbond_triples: shape (n_hbonds, 3), int: donor X, hydrogen, acceptor Z.
        hbond_params: shape (n_hbonds, 4).
        general_comments: text after each general value (e.g. ``" !Overcoordination
            parameter"``), length n_general; ``""`` writes the value alone.
        comments: per block code, the text after the count on its count line,
            followed by the verbatim header lines of that block (3 for ``"ATM"``, 1 for
            ``"BND"``); missing blocks use :data:`DEFAULT_COMMENTS`.
    """

    header: str
    general: np.ndarray
    atom_symbols: tuple[str, ...]
    atom_params: np.ndarray
    bond_pairs: np.ndarray
    bond_params: np.ndarray
    offdiag_pairs: np.ndarray
    offdiag_params: np.ndarray
    angle_triples: np.ndarray
    angle_params: np.ndarray
    torsion_quads: np.ndarray
    torsion_params: np.ndarray
    hbond_triples: np.ndarray
    hbond_params: np.ndarray
    general_comments: tuple[str, ...] = ()
    comments: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.header, str) or "\n" in self.header:
            raise InputError(
                f"ForceField.header must be one line of text; got {self.header!r}."
            )
        general = np.array(self.general, dtype=float).reshape(-1)
        set_(self, "general", _readonly(general))
        symbols = tuple(str(s) for s in self.atom_symbols)
        for s in symbols:
            if not s or any(c.isspace() for c in s) or _NUMBER.fullmatch(s):
                raise InputError(
                    f"atom symbol {s!r} must be non-empty text without blanks, not a number."
                )
        set_(self, "atom_symbols", symbols)
        n_atoms = len(symbols)
        for code, idx_name, par_name in _ENTRY_FIELDS:
            n_val = N_VALUES[code]
            n_idx = _N_INDICES.get(code, 0)
            raw_par = getattr(self, par_name)
            par = np.array(raw_par, dtype=float)
            if par.size == 0:
                par = par.reshape(0, n_val)
            expected_rows = n_atoms if idx_name is None else None
            if par.ndim != 2 or par.shape[1] != n_val:
                raise InputError(
                    f"ForceField.{par_name} must have shape (n, {n_val}); got {par.shape}."
                )
            if not np.all(np.isfinite(par)):
                raise InputError(f"ForceField.{par_name} holds non-finite values.")
            if expected_rows is not None and par.shape[0] != expected_rows:
                raise InputError(
                    f"ForceField.{par_name} has {par.shape[0]} rows for {expected_rows} atom symbols."
                )
            set_(self, par_name, _readonly(par))
            if idx_name is None:
                continue
            raw_idx = np.asarray(getattr(self, idx_name))
            if raw_idx.size == 0:
                raw_idx = raw_idx.reshape(0, n_idx)
            if raw_idx.dtype.kind not in "iu" and not (
                raw_idx.dtype.kind == "f"
                and np.all(raw_idx == np.round(raw_idx))
                and np.all(np.isfinite(raw_idx))
            ):
                raise InputError(
                    f"ForceField.{idx_name} must hold integer atom-type indices."
                )
            idx = raw_idx.astype(np.int64)
            if idx.ndim != 2 or idx.shape[1] != n_idx or idx.shape[0] != par.shape[0]:
                raise InputError(
                    f"ForceField.{idx_name} must have shape ({par.shape[0]}, {n_idx}); got {idx.shape}."
                )
            low = np.zeros(n_idx, dtype=np.int64)
            if code == "TOR":
                low[[0, 3]] = WILDCARD
            bad = np.argwhere(idx < low)
            if bad.size:
                r, c = bad[0]
                raise InputError(
                    f"ForceField.{idx_name}[{r}, {c}] = {idx[r, c]} is not a valid 0-based atom-type index"
                    + (
                        " (-1, the wildcard, is allowed only in the first and last column)."
                        if code == "TOR"
                        else "."
                    )
                )
            set_(self, idx_name, _readonly(idx))
        gc = tuple(str(c) for c in self.general_comments)
        if gc and len(gc) != general.size:
            raise InputError(
                f"ForceField.general_comments has {len(gc)} items for {general.size} general parameters."
            )
        if any("\n" in c for c in gc):
            raise InputError("ForceField.general_comments must be single lines.")
        set_(self, "general_comments", gc or ("",) * general.size)
        comments: dict[str, tuple[str, ...]] = {}
        for code in BLOCK_CODES:
            given = self.comments.get(code) if self.comments else None
            if given is None:
                comments[code] = DEFAULT_COMMENTS[code]
                continue
            lines = tuple(str(s) for s in given)
            want = 1 + _N_HEADER_LINES.get(code, 0)
            if len(lines) != want or any("\n" in s for s in lines):
                raise InputError(
                    f"ForceField.comments[{code!r}] must be {want} single line(s); got {lines!r}."
                )
            comments[code] = lines
        unknown = set(self.comments or {}) - set(BLOCK_CODES)
        if unknown:
            raise InputError(
                f"ForceField.comments has unknown block(s) {sorted(unknown)}; allowed: {', '.join(BLOCK_CODES)}."
            )
        set_(self, "comments", comments)

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        # rebuild through __init__ so that a pickled copy is validated and read-only too
        return (
            type(self),
            tuple(getattr(self, f.name) for f in dataclasses.fields(self)),
        )

    # ---- sizes --------------------------------------------------------------------
    @property
    def n_general(self) -> int:
        return int(self.general.size)

    @property
    def n_atoms(self) -> int:
        return len(self.atom_symbols)

    @property
    def n_bonds(self) -> int:
        return int(self.bond_params.shape[0])

    @property
    def n_offdiag(self) -> int:
        return int(self.offdiag_params.shape[0])

    @property
    def n_angles(self) -> int:
        return int(self.angle_params.shape[0])

    @property
    def n_torsions(self) -> int:
        return int(self.torsion_params.shape[0])

    @property
    def n_hbonds(self) -> int:
        return int(self.hbond_params.shape[0])

    def n_entries(self, block: str) -> int:
        """Number of entries of a block (``"GEN"``: general parameters)."""
        if block == "GEN":
            return self.n_general
        return int(self.block_params(block).shape[0])

    def block_params(self, block: str) -> np.ndarray:
        """The value array of a block code: (n_general,) for GEN, else (n_entries, n_values)."""
        try:
            return getattr(self, _PARAM_FIELD[block])
        except KeyError:
            raise InputError(
                f"unknown ReaxFF block {block!r}; expected one of {', '.join(BLOCK_CODES)}."
            ) from None

    def block_indices(self, block: str) -> np.ndarray | None:
        """The 0-based atom-type index array of a block code, or None for GEN and ATM."""
        name = _INDEX_FIELD.get(block)
        return None if name is None else getattr(self, name)

    def same_values(self, other: "ForceField") -> bool:
        """True if every array, symbol and index equals ``other``'s bit for bit."""
        if self.atom_symbols != other.atom_symbols:
            return False
        for name in _ARRAY_FIELDS:
            a, b = getattr(self, name), getattr(other, name)
            if a.shape != b.shape or a.dtype != b.dtype:
                return False
            if a.dtype.kind == "f":
                if not np.array_equal(a.view(np.uint64), b.view(np.uint64)):
                    return False
            elif not np.array_equal(a, b):
                return False
        return True

    def replace(self, **changes: Any) -> "ForceField":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def restrict_to(
        self, symbols: Sequence[str], header: str | None = None
    ) -> "ForceField":
        """The force field for the atom types ``symbols`` only (in that order).

        Entries (bonds, off-diagonal, angles, torsions, H-bonds) that name only these
        types (or the torsion wildcard) are kept, in their original order; general
        parameters are unchanged. Energies of structures made of these elements are
        the same as with the full force field.

        Raises:
            InputError: a symbol is not an atom type here, or is given twice.
        """
        symbols = tuple(symbols)
        missing = [s for s in symbols if s not in self.atom_symbols]
        if missing or len(set(symbols)) != len(symbols):
            raise InputError(
                f"cannot restrict the force field to {list(symbols)!r}: "
                + (
                    f"{missing} not among its atom types {list(self.atom_symbols)}."
                    if missing
                    else "a symbol is given twice."
                )
            )
        old = np.array([self.atom_symbols.index(s) for s in symbols])
        new_of = np.full(self.n_atoms + 1, -2, dtype=np.int64)  # -2: dropped type
        new_of[old] = np.arange(len(old))
        changes: dict[str, Any] = {
            "atom_symbols": symbols,
            "atom_params": self.atom_params[old],
        }
        for _code, idx_name, par_name in _ENTRY_FIELDS[1:]:
            idx = getattr(self, idx_name)
            in_range = np.where((idx >= 0) & (idx < self.n_atoms), idx, self.n_atoms)
            mapped = np.where(idx == WILDCARD, WILDCARD, new_of[in_range])
            keep = np.all(mapped != -2, axis=1)
            changes[idx_name] = mapped[keep]
            changes[par_name] = getattr(self, par_name)[keep]
        if header is not None:
            changes["header"] = header
        return self.replace(**changes)


_ENTRY_FIELDS: tuple[tuple[str, str | None, str], ...] = (
    ("ATM", None, "atom_params"),
    ("BND", "bond_pairs", "bond_params"),
    ("OFD", "offdiag_pairs", "offdiag_params"),
    ("ANG", "angle_triples", "angle_params"),
    ("TOR", "torsion_quads", "torsion_params"),
    ("HBD", "hbond_triples", "hbond_params"),
)
_PARAM_FIELD = {"GEN": "general"} | {c: p for c, _, p in _ENTRY_FIELDS}
_INDEX_FIELD = {c: i for c, i, _ in _ENTRY_FIELDS if i is not None}
_ARRAY_FIELDS = ("general",) + tuple(
    n for _, i, p in _ENTRY_FIELDS for n in ((i, p) if i else (p,))
)


# ---- numbers ------------------------------------------------------------------------
def format_value(value: float, width: int = 9) -> str:
    """One value as a field that reads back to the same double.

    Uses ``%.4f`` right-aligned in ``width`` characters when that is exact (the
    classic layout), else the fewest decimals (5..17) that are exact, else ``repr``;
    a result as wide as ``width`` or wider gets one leading blank so that fields never
    touch.

    Args:
        value: a finite float.
        width: the classic field width (9 for data lines, 10 for general lines).

    Returns:
        The field text, at least ``width`` characters, starting with a blank.
    """
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"cannot write the non-finite value {value!r} to an ffield.")
    text = None
    for decimals in range(4, 18):
        s = f"{v:.{decimals}f}"
        back = float(s)
        if back == v and math.copysign(1.0, back) == math.copysign(1.0, v):
            text = s
            break
    if text is None:
        text = repr(v)
    if len(text) < width:
        return text.rjust(width)
    return " " + text


def _format_index(i: int) -> str:
    s = str(int(i))
    return s.rjust(3) if len(s) < 3 else " " + s


def _format_count(n: int, rest: str) -> str:
    if rest and not (rest[0].isspace() or rest[0] == "!"):
        rest = " " + rest
    return str(int(n)).rjust(3) + rest


# ---- writing --------------------------------------------------------------------------
def format_ffield(ff: ForceField) -> str:
    """The text of an ``ffield`` file for ``ff`` (LAMMPS and Fortran ReaxFF layout).

    ``parse_ffield(format_ffield(ff))`` reproduces every array bit for bit.
    """
    out: list[str] = [ff.header]
    com = ff.comments
    out.append(_format_count(ff.n_general, com["GEN"][0]))
    for v, c in zip(ff.general, ff.general_comments, strict=True):
        if c and not c[0].isspace():
            c = " " + c
        out.append(format_value(v, 10) + c)
    out.append(_format_count(ff.n_atoms, com["ATM"][0]))
    out.extend(com["ATM"][1:])
    for sym, row in zip(ff.atom_symbols, ff.atom_params, strict=True):
        for k in range(4):
            vals = "".join(format_value(v) for v in row[8 * k : 8 * k + 8])
            out.append((f" {sym:<2}" if k == 0 else "   ") + vals)
    out.append(_format_count(ff.n_bonds, com["BND"][0]))
    out.extend(com["BND"][1:])
    for idx, row in zip(ff.bond_pairs, ff.bond_params, strict=True):
        out.append(
            "".join(_format_index(i + 1) for i in idx)
            + "".join(format_value(v) for v in row[:8])
        )
        out.append("      " + "".join(format_value(v) for v in row[8:]))
    for code in ("OFD", "ANG", "TOR", "HBD"):
        idx_arr = ff.block_indices(code)
        par = ff.block_params(code)
        assert idx_arr is not None
        out.append(_format_count(par.shape[0], com[code][0]))
        for idx, row in zip(idx_arr, par, strict=True):
            out.append(
                "".join(_format_index(i + 1) for i in idx)
                + "".join(format_value(v) for v in row)
            )
    return "\n".join(out) + "\n"


def write_ffield(ff: ForceField, path: str | Path) -> None:
    """Write ``ff`` to ``path`` atomically (readers see the old or the new file)."""
    write_text_atomic(path, format_ffield(ff))


# ---- reading --------------------------------------------------------------------------
class _Lines:
    """The lines of a file with 1-based line numbers and located errors."""

    def __init__(self, text: str, path: str | Path | None) -> None:
        self.lines = text.splitlines()
        self.pos = 0  # index of the next line
        self.path = None if path is None else str(path)

    def error(self, message: str, line: int | None) -> FormatError:
        if self.path is None and line is not None:
            message = f"line {line}: {message}"
        return FormatError(message, path=self.path, line=line)

    def raw(self, what: str) -> tuple[str, int]:
        """The next line whatever it holds (header lines)."""
        if self.pos >= len(self.lines):
            raise self.error(
                f"the file ends where {what} was expected; is the file truncated?",
                len(self.lines) + 1,
            )
        self.pos += 1
        return self.lines[self.pos - 1], self.pos

    def next(self, what: str) -> tuple[str, list[str], int]:
        """The next non-blank line, its whitespace tokens and its line number."""
        while self.pos < len(self.lines) and not self.lines[self.pos].strip():
            self.pos += 1
        line, number = self.raw(what)
        return line, line.split(), number


def _split_glued(token: str) -> list[str] | None:
    """``'1.0000-100.0000'`` -> ``['1.0000', '-100.0000']`` (Fortran fields that touch)."""
    pieces = _GLUED_PIECE.findall(token)
    if (
        len(pieces) >= 2
        and "".join(pieces) == token
        and all(p[0] in "+-" for p in pieces[1:])
    ):
        return pieces
    return None


def _numbers(
    tokens: Sequence[str],
    n: int,
    lines: _Lines,
    number: int,
    where: str,
    hint: str = "",
) -> list[float]:
    """Exactly ``n`` numbers from ``tokens`` (a trailing ``!`` comment is allowed)."""
    values: list[str] = []
    for k, tok in enumerate(tokens):
        if tok.startswith("!"):
            break
        if _NUMBER.fullmatch(tok):
            values.append(tok)
            continue
        split = _split_glued(tok)
        if split is not None:
            values.extend(split)
            continue
        if "!" in tok and _NUMBER.fullmatch(tok.split("!", 1)[0]):
            values.append(tok.split("!", 1)[0])
            break
        if len(values) >= n:  # free text after the values
            break
        raise lines.error(
            f"{where} expects {n} numbers; value {k + 1} is {tok!r}, not a number{hint}",
            number,
        )
    if len(values) != n:
        extra = (
            "; is a line wrapped?"
            if len(values) < n
            else "; are there extra columns (lgvdw files are not supported)?"
        )
        raise lines.error(
            f"{where} expects {n} numbers per line, found {len(values)}{extra}", number
        )
    return [float(v) for v in values]


def _count_line(lines: _Lines, code: str, after: str) -> tuple[int, str, int]:
    title = BLOCK_TITLES[code]
    what = f"the {title} count line"
    line, tokens, number = lines.next(what)
    first = tokens[0].split("!", 1)[0] if tokens else ""
    if not _INTEGER.fullmatch(first):
        raise lines.error(
            f"expected {what} (an integer, then a comment), found {line.strip()!r}{after}",
            number,
        )
    after_first = tokens[1:] if first == tokens[0] else []
    if after_first and _NUMBER.fullmatch(after_first[0]):
        raise lines.error(
            f"expected {what} (an integer, then a comment), found a data line {line.strip()!r}{after}",
            number,
        )
    count = int(first)
    if count < 0:
        raise lines.error(f"{title} count must be >= 0; got {count}.", number)
    start = line.index(first) + len(first)
    return count, line[start:].rstrip(), number


def _indices(
    tokens: Sequence[str],
    n_idx: int,
    code: str,
    lines: _Lines,
    number: int,
    hint: str,
) -> list[int]:
    title = BLOCK_TITLES[code]
    if len(tokens) < n_idx or not all(_INTEGER.fullmatch(t) for t in tokens[:n_idx]):
        raise lines.error(
            f"{title} block expects {n_idx} integer atom-type indices at the start of the line, "
            f"found {' '.join(tokens[:n_idx])!r}{hint}",
            number,
        )
    idx = [int(t) for t in tokens[:n_idx]]
    for k, i in enumerate(idx):
        wildcard_ok = code == "TOR" and k in (0, n_idx - 1)
        if i < 0 or (i == 0 and not wildcard_ok):
            allowed = (
                " (0, the wildcard, is allowed only as the first or last torsion index)"
                if code == "TOR"
                else ""
            )
            raise lines.error(
                f"{title} entry has atom-type index {i}; indices are 1-based{allowed}.",
                number,
            )
    return [i - 1 for i in idx]


def parse_ffield(text: str, path: str | Path | None = None) -> ForceField:
    """Parse the text of an ``ffield`` file (see the module docstring for the layout).

    Args:
        text: the file's text.
        path: where the text came from, used in error messages.

    Returns:
        The :class:`ForceField`.

    Raises:
        FormatError: a truncated block, a count that does not match the entries, a
            value that is not a number, a wrong number of values on a line; the
            message names the file, the 1-based line and what was expected.
    """
    lines = _Lines(text, path)
    header, _ = lines.raw("the header line")
    comments: dict[str, tuple[str, ...]] = {}

    # general parameters
    n_gen, rest, count_line = _count_line(lines, "GEN", "")
    comments["GEN"] = (rest,)
    hint = f"; does the count {n_gen} on line {count_line} match the general parameter lines?"
    general: list[float] = []
    general_comments: list[str] = []
    for k in range(n_gen):
        line, tokens, number = lines.next(f"general parameter {k + 1} of {n_gen}")
        tok = tokens[0]
        value_text = tok.split("!", 1)[0] if "!" in tok else tok
        if not _NUMBER.fullmatch(value_text):
            raise lines.error(
                f"general block expects a number at the start of the line, found {tok!r}{hint}",
                number,
            )
        general.append(float(value_text))
        start = line.index(value_text) + len(value_text)
        general_comments.append(line[start:].rstrip())

    # atoms
    n_atoms, rest, count_line = _count_line(lines, "ATM", hint)
    headers = tuple(
        lines.raw("an atom-block header line")[0].rstrip() for _ in range(3)
    )
    comments["ATM"] = (rest, *headers)
    hint = f"; does the count {n_atoms} on line {count_line} match the atom records (4 lines each)?"
    symbols: list[str] = []
    atom_rows: list[list[float]] = []
    for a in range(n_atoms):
        line, tokens, number = lines.next(f"atom record {a + 1} of {n_atoms}")
        if not tokens or _NUMBER.fullmatch(tokens[0]) or _split_glued(tokens[0]):
            n_num = len(tokens)
            extra = (
                "; a 2-number line after an atom record is the lgvdw line 5, and lgvdw files are not supported"
                if a > 0 and n_num == 2
                else hint
            )
            raise lines.error(
                f"atom block expects a symbol and 8 numbers (record {a + 1} of {n_atoms}), "
                f"found {line.strip()!r}{extra}",
                number,
            )
        symbols.append(tokens[0])
        row = _numbers(tokens[1:], 8, lines, number, "atom block line 1", hint)
        for k in range(3):
            line, tokens, number = lines.next(
                f"line {k + 2} of atom record {a + 1} of {n_atoms}"
            )
            row += _numbers(tokens, 8, lines, number, f"atom block line {k + 2}", hint)
        atom_rows.append(row)

    # bonds
    n_bonds, rest, count_line = _count_line(lines, "BND", hint)
    comments["BND"] = (rest, lines.raw("the bond-block header line")[0].rstrip())
    hint = f"; does the count {n_bonds} on line {count_line} match the bond entries (2 lines each)?"
    bond_idx: list[list[int]] = []
    bond_rows: list[list[float]] = []
    for b in range(n_bonds):
        line, tokens, number = lines.next(f"bond entry {b + 1} of {n_bonds}")
        _reject_count_line(tokens, "BND", b, n_bonds, lines, number, hint)
        bond_idx.append(_indices(tokens, 2, "BND", lines, number, hint))
        row = _numbers(tokens[2:], 8, lines, number, "bond block line 1", hint)
        line, tokens, number = lines.next(f"line 2 of bond entry {b + 1} of {n_bonds}")
        row += _numbers(tokens, 8, lines, number, "bond block line 2", hint)
        bond_rows.append(row)

    # one-line blocks
    tables: dict[str, tuple[list[list[int]], list[list[float]]]] = {}
    for code in ("OFD", "ANG", "TOR", "HBD"):
        title = BLOCK_TITLES[code]
        if code == "HBD" and _at_end(lines):
            raise lines.error(
                "the file ends before the hydrogen-bond count line; add a line "
                "'  0    ! Nr of hydrogen bonds' if the force field has none",
                len(lines.lines) + 1,
            )
        n, rest, count_line = _count_line(lines, code, hint)
        comments[code] = (rest,)
        n_idx, n_val = _N_INDICES[code], N_VALUES[code]
        hint = f"; does the count {n} on line {count_line} match the {title} entries?"
        idx_rows: list[list[int]] = []
        rows: list[list[float]] = []
        for e in range(n):
            line, tokens, number = lines.next(f"{title} entry {e + 1} of {n}")
            _reject_count_line(tokens, code, e, n, lines, number, hint)
            idx_rows.append(_indices(tokens, n_idx, code, lines, number, hint))
            rows.append(
                _numbers(tokens[n_idx:], n_val, lines, number, f"{title} block", hint)
            )
        tables[code] = (idx_rows, rows)

    def arr(rows: list, width: int, dtype: type) -> np.ndarray:
        return np.array(rows, dtype=dtype).reshape(len(rows), width)

    return ForceField(
        header=header.rstrip("\r"),
        general=np.array(general, dtype=float),
        atom_symbols=tuple(symbols),
        atom_params=arr(atom_rows, 32, float),
        bond_pairs=arr(bond_idx, 2, np.int64),
        bond_params=arr(bond_rows, 16, float),
        offdiag_pairs=arr(tables["OFD"][0], 2, np.int64),
        offdiag_params=arr(tables["OFD"][1], 6, float),
        angle_triples=arr(tables["ANG"][0], 3, np.int64),
        angle_params=arr(tables["ANG"][1], 7, float),
        torsion_quads=arr(tables["TOR"][0], 4, np.int64),
        torsion_params=arr(tables["TOR"][1], 7, float),
        hbond_triples=arr(tables["HBD"][0], 3, np.int64),
        hbond_params=arr(tables["HBD"][1], 4, float),
        general_comments=tuple(general_comments),
        comments=comments,
    )


def _at_end(lines: _Lines) -> bool:
    return all(not line.strip() for line in lines.lines[lines.pos :])


def _reject_count_line(
    tokens: Sequence[str],
    code: str,
    entry: int,
    n: int,
    lines: _Lines,
    number: int,
    hint: str,
) -> None:
    """Name the likely mistake when an entry line is really the next block's count line."""
    if not tokens or not _INTEGER.fullmatch(tokens[0]):
        return
    if (
        len(tokens) == 1
        or tokens[1].startswith("!")
        or not _NUMBER.fullmatch(tokens[1])
    ):
        raise lines.error(
            f"{BLOCK_TITLES[code]} entry {entry + 1} of {n} expected, found what looks like "
            f"the next block's count line {' '.join(tokens)!r}{hint}",
            number,
        )


def read_ffield(path: str | Path) -> ForceField:
    """Read an ``ffield`` file (see :func:`parse_ffield`).

    Raises:
        InputError: the file does not exist.
        FormatError: the file cannot be parsed (message names file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ffield file not found: {str(path)!r}.", path=path)
    return parse_ffield(path.read_text(encoding="utf-8", errors="replace"), path=path)
