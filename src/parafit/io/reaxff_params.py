"""Which ReaxFF parameters to fit, and their ranges: legacy ``params`` files and the
ParAMS ``ffield_min`` / ``ffield_max`` / ``ffield_bool`` triple.

**Legacy ``params`` file** (Fortran ReaxFF, JAX-ReaxFF, ParAMS ``read_paramsfile``):
one parameter per line, ``block entry position step min max``, all 1-based:

- ``block``: 1 general, 2 atom, 3 bond, 4 off-diagonal, 5 valence angle, 6 torsion,
  7 hydrogen bond;
- ``entry``: the entry of that block in file order (for the general block: the line
  of the parameter, with ``position`` 1);
- ``position``: the value in the entry (1..32 for atoms, 1..16 for bonds, ...);
- ``step``: the optimizer step of the old Fortran code; read and ignored, as ParAMS
  does;
- ``min max``: the range.

Text after the six numbers (usually ``! comment``) is ignored; lines starting with
``#`` and blank lines are skipped. Applying the file activates exactly the listed
parameters with the listed ranges (``min`` and ``max`` are sorted, since some files
write them the wrong way round) and deactivates every other one, as ParAMS does.

**ParAMS triple**: three files in ``ffield`` format with the same entries as the force
field: ``ffield_bool`` holds 1 for an active parameter and 0 otherwise,
``ffield_min`` and ``ffield_max`` the ranges.
"""

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from parafit.engines.reaxff.names import (
    LEGACY_BLOCKS,
    SPECS,
    ParameterLocation,
    interface_from_ffield,
    parameter_locations,
)
from parafit.errors import FormatError, InputError
from parafit.io.ffield import BLOCK_TITLES, ForceField, read_ffield
from parafit.parameters import ParameterInterface, default_range

__all__ = [
    "ParamsRecord",
    "apply_params_file",
    "apply_params_records",
    "interface_from_ffield_triple",
    "parse_params_file",
    "read_params_file",
]

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True, slots=True)
class ParamsRecord:
    """One line of a legacy ``params`` file.

    Attributes:
        block: block number, 1 (general) .. 7 (hydrogen bond).
        entry: 1-based entry of the block (general block: the parameter's line).
        position: 1-based value in the entry (general block: 1).
        step: the Fortran optimizer step (ignored by parafit).
        min: lower end of the range as written.
        max: upper end of the range as written (may be below ``min``).
        line: 1-based line number in the file.
        comment: text after the six numbers, without a leading ``!``.
    """

    block: int
    entry: int
    position: int
    step: float
    min: float
    max: float
    line: int
    comment: str = ""

    @property
    def key(self) -> tuple[int, int, int]:
        """``(block, entry, position)``."""
        return (self.block, self.entry, self.position)


def parse_params_file(
    text: str, path: str | Path | None = None
) -> tuple[ParamsRecord, ...]:
    """Parse the text of a legacy ``params`` file (see the module docstring).

    Args:
        text: the file's text.
        path: where it came from, for messages.

    Returns:
        One record per parameter line, in file order.

    Raises:
        FormatError: a line without six numbers, a non-integer block/entry/position,
            a block outside 1..7, a non-finite min or max; the message names the file
            and the 1-based line.
    """

    def error(message: str, line: int) -> FormatError:
        if path is None:
            message = f"line {line}: {message}"
        return FormatError(message, path=path, line=line)

    records: list[ParamsRecord] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        body, _, comment = stripped.partition("!")
        tokens = body.split()
        if len(tokens) < 6:
            raise error(
                f"a params line needs 6 numbers 'block entry position step min max'; "
                f"found {len(tokens)} in {stripped!r}",
                number,
            )
        head, rest = tokens[:6], tokens[6:]
        for k, name in enumerate(("block", "entry", "position")):
            if not _INTEGER.fullmatch(head[k]):
                raise error(
                    f"{name} must be an integer; got {head[k]!r} in {stripped!r}",
                    number,
                )
        for k, name in ((3, "step"), (4, "min"), (5, "max")):
            if not _NUMBER.fullmatch(head[k]):
                raise error(
                    f"{name} must be a number; got {head[k]!r} in {stripped!r}",
                    number,
                )
        block, entry, position = (int(t) for t in head[:3])
        if block not in LEGACY_BLOCKS:
            raise error(
                f"block must be 1 (general) .. 7 (hydrogen bond); got {block}", number
            )
        if entry < 1 or position < 1:
            raise error(
                f"entry and position are 1-based; got entry {entry}, position {position}",
                number,
            )
        lo, hi = float(head[4]), float(head[5])
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise error(f"min and max must be finite; got {lo}, {hi}", number)
        text_after = " ".join(rest)
        comment = (text_after + " " + comment if text_after else comment).strip()
        records.append(
            ParamsRecord(
                block=block,
                entry=entry,
                position=position,
                step=float(head[3]),
                min=lo,
                max=hi,
                line=number,
                comment=comment,
            )
        )
    return tuple(records)


def read_params_file(path: str | Path) -> tuple[ParamsRecord, ...]:
    """Read a legacy ``params`` file (see :func:`parse_params_file`)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"params file not found: {str(path)!r}.", path=path)
    return parse_params_file(path.read_text(encoding="utf-8"), path=path)


def _legacy_table(ff: ForceField) -> dict[tuple[int, int, int], ParameterLocation]:
    return {loc.legacy: loc for loc in parameter_locations(ff)}


def _locate(
    record: ParamsRecord,
    ff: ForceField,
    table: dict[tuple[int, int, int], ParameterLocation],
    path: str | Path | None,
) -> ParameterLocation:
    loc = table.get(record.key)
    if loc is not None:
        return loc
    code = LEGACY_BLOCKS[record.block]
    title = BLOCK_TITLES[code]
    n = ff.n_entries(code)
    where = f"params line ({record.block} {record.entry} {record.position})"
    if code == "GEN":
        if record.entry > n:
            msg = f"{where}: the force field has {n} general parameters, not {record.entry}"
        else:
            msg = f"{where}: general parameters are addressed as (1, line, 1); position must be 1"
    elif record.entry > n:
        msg = f"{where}: the {title} block has {n} entries, not {record.entry}"
    elif record.position > len(SPECS[code]):
        msg = f"{where}: a {title} entry has {len(SPECS[code])} values, not {record.position}"
    else:
        msg = (
            f"{where}: {title} entry {record.entry} refers to an atom type beyond the "
            f"{ff.n_atoms} of the atom block (LAMMPS skips it), so it has no parameters"
        )
    if path is None:
        msg = f"line {record.line}: {msg}"
    raise FormatError(msg, path=path, line=record.line)


def apply_params_records(
    interface: ParameterInterface,
    ff: ForceField,
    records: Sequence[ParamsRecord],
    *,
    path: str | Path | None = None,
) -> ParameterInterface:
    """Activate exactly the parameters of ``records``, with their ranges.

    Args:
        interface: an interface built from ``ff`` (e.g. by ``interface_from_ffield``).
        ff: the force field the entry numbers refer to.
        records: the parsed lines of a params file.
        path: the params file, for messages.

    Returns:
        A copy of ``interface``: listed parameters active with range
        ``(min(min, max), max(min, max))``, all others inactive; values unchanged.

    Raises:
        FormatError: a record names a block entry or position the force field does
            not have, has ``min == max``, or repeats a parameter with another range;
            the message names the file and line.
    """
    table = _legacy_table(ff)
    chosen: dict[str, tuple[float, float, ParamsRecord]] = {}
    for rec in records:
        loc = _locate(rec, ff, table, path)
        lo, hi = sorted((rec.min, rec.max))
        if lo == hi:
            msg = f"params line for {loc.name!r} has min == max == {lo}; a range needs min < max"
            raise FormatError(
                msg if path is not None else f"line {rec.line}: {msg}",
                path=path,
                line=rec.line,
                key=loc.name,
            )
        if loc.name in chosen and chosen[loc.name][:2] != (lo, hi):
            first = chosen[loc.name][2]
            msg = (
                f"params line repeats {loc.name!r} (first on line {first.line}) with another range "
                f"[{lo}, {hi}] instead of [{chosen[loc.name][0]}, {chosen[loc.name][1]}]"
            )
            raise FormatError(
                msg if path is not None else f"line {rec.line}: {msg}",
                path=path,
                line=rec.line,
                key=loc.name,
            )
        chosen[loc.name] = (lo, hi, rec)
        if loc.name not in interface:
            raise InputError(
                f"parameter {loc.name!r} (params line {rec.line}) is not in the interface; "
                "build the interface from the same ffield.",
                path=path,
                line=rec.line,
                key=loc.name,
            )
    params = []
    for p in interface:
        if p.name in chosen:
            lo, hi, _ = chosen[p.name]
            params.append(dataclasses.replace(p, is_active=True, range=(lo, hi)))
        else:
            params.append(dataclasses.replace(p, is_active=False))
    return ParameterInterface(params, model=interface.model)


def apply_params_file(
    interface: ParameterInterface, ff: ForceField, path: str | Path
) -> ParameterInterface:
    """Read a legacy ``params`` file and apply it (see :func:`apply_params_records`).

    Example:
        >>> ff = read_ffield("ffield")  # doctest: +SKIP
        >>> iface = apply_params_file(interface_from_ffield(ff), ff, "params")  # doctest: +SKIP
    """
    return apply_params_records(interface, ff, read_params_file(path), path=path)


def _as_ffield(ff: ForceField | str | Path) -> ForceField:
    return ff if isinstance(ff, ForceField) else read_ffield(ff)


def _check_same_layout(ff: ForceField, other: ForceField, what: str) -> None:
    if other.atom_symbols != ff.atom_symbols:
        raise FormatError(
            f"{what} has atom types {list(other.atom_symbols)}; the ffield has {list(ff.atom_symbols)}."
        )
    if other.n_general != ff.n_general:
        raise FormatError(
            f"{what} has {other.n_general} general parameters; the ffield has {ff.n_general}."
        )
    for code in ("BND", "OFD", "ANG", "TOR", "HBD"):
        a, b = ff.block_indices(code), other.block_indices(code)
        assert a is not None and b is not None
        if a.shape != b.shape or not (a == b).all():
            raise FormatError(
                f"{what}: the {BLOCK_TITLES[code]} block does not list the same entries as the ffield "
                f"({b.shape[0]} vs {a.shape[0]} entries, or other atom types)."
            )


def interface_from_ffield_triple(
    ffield: ForceField | str | Path,
    ffield_min: ForceField | str | Path,
    ffield_max: ForceField | str | Path,
    ffield_bool: ForceField | str | Path,
) -> ParameterInterface:
    """The interface of ``ffield`` with active flags and ranges from a ParAMS triple.

    Args:
        ffield: the force field (values), or its path.
        ffield_min: the lower ends of the ranges (same layout), or its path.
        ffield_max: the upper ends, or its path.
        ffield_bool: 1 for active and 0 for inactive parameters, or its path.

    Returns:
        A ParameterInterface (``model="reaxff"``): a parameter is active where
        ``ffield_bool`` is 1, with range ``(min, max)`` sorted. Inactive parameters get
        ``(min, max)`` when ``min < max`` and the default ±20 % range otherwise (the
        triple usually repeats the value there).

    Raises:
        FormatError: the files do not list the same atom types and entries, a bool
            value is neither 0 nor 1, or an active parameter has ``min == max``.
    """
    ff = _as_ffield(ffield)
    lo_ff, hi_ff, on_ff = (_as_ffield(f) for f in (ffield_min, ffield_max, ffield_bool))
    for other, what, src in (
        (lo_ff, "ffield_min", ffield_min),
        (hi_ff, "ffield_max", ffield_max),
        (on_ff, "ffield_bool", ffield_bool),
    ):
        label = what if isinstance(src, ForceField) else f"{what} {str(src)!r}"
        _check_same_layout(ff, other, label)
    base = interface_from_ffield(ff, active=False)
    locs = {loc.name: loc for loc in parameter_locations(ff)}
    params = []
    for p in base:
        loc = locs[p.name]
        flag = loc.value(on_ff)
        if flag not in (0.0, 1.0):
            raise FormatError(
                f"ffield_bool holds {flag} for {p.name!r}; it must be 0 (inactive) or 1 (active).",
                key=p.name,
            )
        lo, hi = sorted((loc.value(lo_ff), loc.value(hi_ff)))
        active = flag == 1.0
        if lo == hi:
            if active:
                raise FormatError(
                    f"active parameter {p.name!r} has ffield_min == ffield_max == {lo}; a range needs min < max.",
                    key=p.name,
                )
            rng = default_range(p.value)
        else:
            rng = (lo, hi)
        params.append(dataclasses.replace(p, is_active=active, range=rng))
    return ParameterInterface(params, model="reaxff")
