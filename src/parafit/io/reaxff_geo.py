"""Read classic ReaxFF ``geo`` files (BGF blocks) and ``control`` files into jobs.

A ``geo`` file is a sequence of BGF blocks, each from a ``BIOGRF 200`` or ``XTLGRF
200`` line to an ``END`` line; lines starting with ``#`` and blank lines between
blocks are skipped. Each block becomes one :class:`~parafit.jobs.Job` whose id is
the block's ``DESCRP`` name (the key used in ``trainset.in``). Keywords read:

* ``DESCRP name``: job id (first word; unique in the file).
* ``HETATM`` / ``ATOM``: one atom, fixed BGF columns
  ``(a6,1x,i5,1x,a5,1x,a3,1x,a1,1x,a5,3f10.5,1x,a5,i3,i2,1x,f8.5)``: atom number
  (1, 2, 3, ... in order), name (columns 14-18), Cartesian x, y, z [Å] (columns
  31-60) and force-field type (columns 62-66). Lines whose coordinates do not sit in
  those columns (some hand-written files) are read by whitespace: the first three
  numbers with a decimal point after the name. The element comes from the type field
  (``S_3`` -> S, ``Co`` -> Co, ``C_R`` -> C) or, when it is empty, from the atom name
  (``S1`` -> S); ``type_map`` overrides both (e.g. ``{"Ow": "O"}``).
* ``CRYSTX a b c alpha beta gamma`` [Å, degrees]: periodic cell (pbc in all three
  directions), oriented as ReaxFF does: ``c`` along z, ``b`` in the yz plane (the
  coordinates in geo files are Cartesian in that frame). Without ``CRYSTX`` a block
  is non-periodic.
* ``RUTYPE ...``: what to run (see :func:`rutype_task`).
* ``BOND RESTRAINT i j r0 F1 F2 [dr]``, ``ANGLE RESTRAINT i j k theta0 F1 F2 [d]``,
  ``TORSION RESTRAINT i j k l phi0 F1 F2 [d]``: harmonic restraints of the geometry
  optimization (1-based atoms -> 0-based; see :func:`reaxff_restraint`).
* ``VCHANGE x``: a block without atoms that repeats the previous (periodic) block with
  its volume scaled by ``x`` (cell and atoms scaled by ``x**(1/3)``), without cell
  optimization.
* ``REMARK``, ``MOLCHARGE``, ``UNIT ENERGY`` and ``ENERGY`` are kept in the job's
  metadata (``remark``, ``molcharge`` as 0-based ``[first, last, charge]``,
  ``energy`` with ``energy_unit``); ``FORMAT``, ``CONECT`` and ``ORDER`` are ignored,
  as ReaxFF does. ``MASCEN RESTRAINT`` is not supported (ignored with a warning).

Units: positions and cell in Å, as in the file. Sources: ReaxFF user manual (2017),
section "geo"; SCM "OldReaxFF" documentation; ParAMS ``geo_to_params`` output for the
disulfide benchmark (``job_collection.yml``), which this reader reproduces.
"""

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ase
import numpy as np
from ase.data import atomic_numbers

from parafit.errors import FormatError, InputError, ParafitWarning
from parafit.jobs import (
    AngleRestraint,
    BondRestraint,
    GeometryOptimization,
    Job,
    JobCollection,
    Restraint,
    SinglePoint,
    Task,
    TorsionRestraint,
)
from parafit.units import KCAL_PER_MOL

__all__ = [
    "ReaxFFControl",
    "read_control",
    "read_geo",
    "reaxff_cell",
    "reaxff_restraint",
    "rutype_task",
]

_BLOCK_STARTS = ("BIOGRF", "XTLGRF")
_RESTRAINT_ATOMS = {"BOND": 2, "ANGLE": 3, "TORSION": 4}
_NUMBER_WITH_POINT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eEdD][+-]?\d+)?$")


@dataclass(frozen=True, slots=True)
class ReaxFFControl:
    """The settings of a ReaxFF ``control`` file that decide how geo blocks run.

    Defaults are ReaxFF's (manual, table "MM-related keywords") for a missing file or
    keyword.

    Attributes:
        max_iterations: ``imaxit``, maximum energy-minimization steps (default 50).
        rmsg: ``endmm``, minimization end criterion, RMS gradient [kcal/mol/Å]
            (default 1.0).
        cell_optimization: ``icelop``, 0: no cell optimization of periodic
            ``NORMAL RUN`` blocks (default), else cell optimization.
        values: every ``value keyword`` pair of the file, as text.
    """

    max_iterations: int = 50
    rmsg: float = 1.0
    cell_optimization: int = 0
    values: Mapping[str, str] = field(default_factory=dict)


def read_control(path: str | Path) -> ReaxFFControl:
    """Read a ReaxFF ``control`` file (lines ``value keyword [comment]``).

    Args:
        path: the file.

    Returns:
        The settings; keywords other than ``imaxit``, ``endmm`` and ``icelop`` are
        kept in ``values`` only.

    Raises:
        InputError: the file does not exist.
        FormatError: ``imaxit``, ``endmm`` or ``icelop`` is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("ReaxFF control file not found.", path=path)
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        tokens = raw.split()
        if len(tokens) < 2 or tokens[0].startswith("#"):
            continue
        values[tokens[1].lower()] = tokens[0]
        lines[tokens[1].lower()] = n
    kwargs: dict[str, Any] = {}
    for key, name, kind in (
        ("imaxit", "max_iterations", int),
        ("endmm", "rmsg", float),
        ("icelop", "cell_optimization", int),
    ):
        if key not in values:
            continue
        try:
            value = kind(float(values[key])) if kind is int else float(values[key])
        except ValueError:
            raise FormatError(
                f"{key} must be a number; got {values[key]!r}.",
                path=path,
                line=lines[key],
                key=key,
            ) from None
        if not math.isfinite(value) or value < 0:
            raise FormatError(
                f"{key} must be a finite number >= 0; got {values[key]!r}.",
                path=path,
                line=lines[key],
                key=key,
            )
        kwargs[name] = value
    return ReaxFFControl(**kwargs, values=values)


def reaxff_cell(
    a: float, b: float, c: float, alpha: float, beta: float, gamma: float
) -> np.ndarray:
    """Cell vectors from ReaxFF cell parameters, in ReaxFF's orientation.

    ReaxFF (and the AMS ReaxFF engine) put ``c`` along z and ``b`` in the yz plane;
    the Cartesian coordinates of a geo file are in that frame (ASE's ``cellpar_to_cell``
    puts ``a`` along x instead, which differs for non-orthogonal cells).

    Args:
        a, b, c: lengths [Å].
        alpha, beta, gamma: angles b-c, a-c, a-b [degrees].

    Returns:
        (3, 3) array, rows a, b, c [Å].

    Raises:
        ValueError: lengths not > 0, or angles that make no cell.
    """
    if not (a > 0 and b > 0 and c > 0):
        raise ValueError(f"cell lengths must be > 0; got {a}, {b}, {c}")
    # cos(90 degrees) is 6e-17 in floating point; make right angles exact
    ca, cb, cg = (
        0.0 if x == 90.0 else math.cos(math.radians(x)) for x in (alpha, beta, gamma)
    )
    sa = math.sin(math.radians(alpha))
    if not sa > 1e-8:
        raise ValueError(f"alpha must be between 0 and 180 degrees; got {alpha}")
    vc = np.array([0.0, 0.0, c])
    vb = np.array([0.0, b * sa, b * ca])
    az = a * cb
    ay = (a * b * cg - az * vb[2]) / vb[1]
    ax2 = a * a - ay * ay - az * az
    if not ax2 > 1e-12 * a * a:
        raise ValueError(
            f"the angles {alpha}, {beta}, {gamma} degrees do not make a cell"
        )
    return np.array([[math.sqrt(ax2), ay, az], vb, vc])


def reaxff_restraint(
    kind: str, atoms: Sequence[int], target: float, force1: float, force2: float
) -> Restraint:
    """A ReaxFF geo restraint as a harmonic restraint (1-based atoms -> 0-based).

    ReaxFF's restraint energy is ``F1 (1 - exp(-F2 (x - x0)^2))`` with ``F1`` in
    kcal/mol and ``F2`` in 1/Å^2 (bonds) or 1/rad^2 (angles, torsions; deviations in
    radians, as ReaxFF converts degrees). Near the target it is harmonic,
    ``F1 F2 (x - x0)^2 = k/2 (x - x0)^2`` with ``k = 2 F1 F2``, which is the force
    constant used here (converted from kcal/mol to eV); far from the target ReaxFF's
    restraint levels off at ``F1`` while the harmonic one keeps growing.

    Args:
        kind: ``BOND``, ``ANGLE`` or ``TORSION``.
        atoms: 1-based atom numbers (2, 3 or 4).
        target: r0 [Å] or angle [degrees].
        force1: F1 [kcal/mol].
        force2: F2 [1/Å^2 or 1/rad^2].

    Returns:
        The restraint: k in eV/Å^2 (bond) or eV/rad^2 (angle, torsion).

    Raises:
        InputError: bad atom numbers, target or force constants.
    """
    kind = kind.upper()
    if force1 < 0 or force2 < 0:
        raise InputError(
            f"restraint force constants must be >= 0; got {force1!r}, {force2!r}."
        )
    for a in atoms:
        if a < 1:
            raise InputError(
                f"restraint atom numbers are 1-based (1, 2, ...); got {a!r}."
            )
    k = 2.0 * force1 * force2 * KCAL_PER_MOL
    idx = [int(a) - 1 for a in atoms]
    if kind == "BOND":
        return BondRestraint(idx[0], idx[1], target, k)
    if kind == "ANGLE":
        return AngleRestraint(idx[0], idx[1], idx[2], target, k)
    if kind == "TORSION":
        return TorsionRestraint(idx[0], idx[1], idx[2], idx[3], target, k)
    raise InputError(f"unknown restraint kind {kind!r}; use BOND, ANGLE or TORSION.")


def rutype_task(
    keywords: Sequence[str],
    control: ReaxFFControl | None = None,
    *,
    periodic: bool = False,
    restraints: Sequence[Restraint] = (),
    where: str | None = None,
) -> Task:
    """The task for a geo block's ``RUTYPE`` lines.

    Starting from the ``control`` settings (``imaxit``, ``endmm``, ``icelop``), the
    keywords apply in order:

    ===================  ==========================================================
    ``NORMAL RUN``       energy minimization with the control settings
    ``SINGLE POINT``     single point
    ``MAXIT n``          at most n steps; ``MAXIT 0`` is a single point
    ``ENDPO x``          RMS-gradient end criterion x [kcal/mol/Å]
    ``DOUBLE PRECISION`` twice the steps, half the end criterion
    ``LOW PRECISION``    half the steps
    ``CELL OPT [n]``     also relax the cell (periodic blocks; mode n is ignored:
                         ASE's ``FrechetCellFilter`` relaxes the whole cell)
    ``NO CELL OPT``      do not relax the cell
    ``MAXMOV n``         ignored (ReaxFF step-size control)
    ===================  ==========================================================

    A minimization becomes :class:`~parafit.jobs.GeometryOptimization` with the FIRE
    optimizer, ``pretend_converged=True`` and ``fmax = sqrt(3) * endmm``
    converted to eV/Å (ReaxFF's criterion is the RMS gradient; ParAMS converts it to
    AMS's ``Convergence%Gradients`` the same way).

    Args:
        keywords: the text after ``RUTYPE`` of each line, in order.
        control: control-file settings (default: ReaxFF's defaults).
        periodic: whether the block has a cell.
        restraints: restraints of the minimization.
        where: ``file:line`` put in front of warnings.

    Returns:
        SinglePoint or GeometryOptimization.

    Raises:
        InputError: a malformed keyword value, or ``CELL OPT`` on a non-periodic
            block. Unknown keywords give a :class:`~parafit.errors.ParafitWarning`.
    """
    control = control or ReaxFFControl()
    single = False
    max_iterations = int(control.max_iterations)
    rmsg = float(control.rmsg)
    relax_cell = bool(control.cell_optimization) and periodic
    for text in keywords:
        words = text.upper().split()
        if not words:
            raise InputError("empty RUTYPE line; use e.g. RUTYPE SINGLE POINT.")
        head = " ".join(words[:2])
        if head == "NORMAL RUN":
            continue
        if head == "SINGLE POINT":
            single = True
        elif words[0] in ("MAXIT", "ENDPO", "MAXMOV"):
            if len(words) < 2:
                raise InputError(f"RUTYPE {words[0]} needs a number; got {text!r}.")
            try:
                value = float(words[1])
            except ValueError:
                raise InputError(
                    f"RUTYPE {words[0]} needs a number; got {words[1]!r}."
                ) from None
            if not (math.isfinite(value) and value >= 0):
                raise InputError(
                    f"RUTYPE {words[0]} must be a number >= 0; got {words[1]!r}."
                )
            if words[0] == "MAXIT":
                max_iterations = int(value)
            elif words[0] == "ENDPO":
                if value == 0:
                    raise InputError("RUTYPE ENDPO must be > 0 [kcal/mol/Å].")
                rmsg = value
        elif head == "DOUBLE PRECISION":
            max_iterations *= 2
            rmsg /= 2.0
        elif head == "LOW PRECISION":
            max_iterations //= 2
        elif head == "CELL OPT":
            if not periodic:
                raise InputError(
                    "RUTYPE CELL OPT needs a periodic block (a CRYSTX line)."
                )
            relax_cell = True
        elif " ".join(words[:3]) == "NO CELL OPT":
            relax_cell = False
        else:
            warnings.warn(
                (f"{where}: " if where else "")
                + f"unknown RUTYPE {text.strip()!r} ignored; known: NORMAL RUN, SINGLE "
                "POINT, MAXIT, ENDPO, MAXMOV, DOUBLE PRECISION, LOW PRECISION, CELL OPT, "
                "NO CELL OPT.",
                ParafitWarning,
                stacklevel=2,
            )
    if single or max_iterations == 0:
        return SinglePoint()
    return GeometryOptimization(
        optimizer="fire",
        max_iterations=max_iterations,
        fmax=math.sqrt(3.0) * rmsg * KCAL_PER_MOL,
        relax_cell=relax_cell,
        pretend_converged=True,
        restraints=tuple(restraints),
    )


# --------------------------------------------------------------------------------------
# parsing


@dataclass(slots=True)
class _Block:
    """One BGF block while it is read."""

    start: int  # line of BIOGRF/XTLGRF
    name: str | None = None
    name_line: int | None = None
    symbols: list[str] = field(default_factory=list)
    positions: list[tuple[float, float, float]] = field(default_factory=list)
    cell: np.ndarray | None = None
    rutype: list[tuple[str, int]] = field(default_factory=list)
    restraints: list[tuple[str, list[int], float, float, float, int]] = field(
        default_factory=list
    )
    remarks: list[str] = field(default_factory=list)
    molcharge: list[list[float]] = field(default_factory=list)
    energy: float | None = None
    energy_unit: str | None = None
    vchange: tuple[float, int] | None = None


class _Reader:
    def __init__(
        self, path: Path, control: ReaxFFControl | None, type_map: Mapping[str, str]
    ) -> None:
        self.path = path
        self.control = control
        self.type_map = dict(type_map)

    def error(
        self, message: str, line: int | None, key: str | None = None
    ) -> FormatError:
        return FormatError(message, path=self.path, line=line, key=key)

    # ---- atoms

    def element(self, text: str, line: int, what: str) -> str:
        text = text.strip()
        if text in self.type_map:
            symbol = self.type_map[text]
            if symbol not in atomic_numbers or symbol == "X":
                raise self.error(
                    f"type_map maps {text!r} to {symbol!r}, which is not an element symbol.",
                    line,
                )
            return symbol
        letters = re.match(r"[A-Za-z]*", text).group(0)  # type: ignore[union-attr]
        # two letters if they make an element (Co, Cl), else the first (C_R, Hw, S1)
        for candidate in (letters[:2].capitalize(), letters[:1].upper()):
            if candidate and candidate != "X" and candidate in atomic_numbers:
                return candidate
        raise self.error(
            f"unknown element in the atom {what} {text!r}; the element is read from the "
            "force-field type (columns 62-66, e.g. 'C_3', 'Co') or, if that is empty, "
            "from the atom name. Map other types with type_map, e.g. {'Ow': 'O'}.",
            line,
        )

    def atom(
        self, raw: str, n: int, expected: int
    ) -> tuple[str, tuple[float, float, float]]:
        line = raw.rstrip("\r\n")
        tokens = line.split()
        if len(tokens) < 2:
            raise self.error(f"cannot read the {tokens[0]} line: no atom number.", n)
        try:
            number = int(line[6:12]) if line[6:12].strip() else int(tokens[1])
        except ValueError:
            try:
                number = int(tokens[1])
            except ValueError:
                raise self.error(
                    f"cannot read the atom number of {line.strip()!r}.", n
                ) from None
        if number != expected:
            raise self.error(
                f"atom number {number} where {expected} was expected; atoms must be "
                "numbered 1, 2, 3, ... in order.",
                n,
            )
        xyz = None
        fields = [line[30 + 10 * k : 40 + 10 * k] for k in range(3)]
        if len(line) >= 60 and all(f.strip() and " " not in f.strip() for f in fields):
            try:
                xyz = tuple(float(f) for f in fields)
            except ValueError:
                xyz = None
        if xyz is not None:
            name, ff_type = line[13:18], line[61:66] if len(line) > 61 else ""
        else:  # not in the BGF columns: the first three numbers with a decimal point
            for k in range(3, len(tokens) - 2):
                run = tokens[k : k + 3]
                if all(_NUMBER_WITH_POINT.match(t) and "." in t for t in run):
                    xyz = tuple(
                        float(t.replace("d", "e").replace("D", "e")) for t in run
                    )
                    rest = tokens[k + 3 :]
                    name = tokens[2]
                    ff_type = rest[0] if rest and not _is_number(rest[0]) else ""
                    break
            else:
                raise self.error(
                    f"cannot read the coordinates of {line.strip()!r}; expected x, y, z "
                    "[Å] in columns 31-60 (BGF format 3f10.5).",
                    n,
                )
        if not all(math.isfinite(v) for v in xyz):
            raise self.error(f"coordinates must be finite; got {xyz!r}.", n)
        if ff_type.strip():
            symbol = self.element(ff_type, n, "type")
        else:
            symbol = self.element(name, n, "name")
        return symbol, xyz  # type: ignore[return-value]

    # ---- blocks

    def parse(self, text: str) -> list[tuple[_Block, int]]:
        blocks: list[tuple[_Block, int]] = []
        block: _Block | None = None
        for n, raw in enumerate(text.splitlines(), 1):
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            word = stripped.split()[0].upper()
            if block is None:
                if word in _BLOCK_STARTS:
                    block = _Block(start=n)
                    continue
                raise self.error(
                    f"expected a BIOGRF or XTLGRF line to start a structure; got {stripped[:40]!r}.",
                    n,
                )
            if word in _BLOCK_STARTS:
                raise self.error(
                    f"structure {block.name or '?'!r} (line {block.start}) has no END "
                    f"before the next {word} line.",
                    n,
                    block.name,
                )
            if word == "END":
                blocks.append((block, n))
                block = None
                continue
            self.keyword(block, word, raw, n)
        if block is not None:
            raise self.error(
                f"structure {block.name or '?'!r} (line {block.start}) has no END line.",
                block.start,
                block.name,
            )
        return blocks

    def keyword(self, block: _Block, word: str, raw: str, n: int) -> None:
        tokens = raw.split()
        rest = raw.strip()[len(tokens[0]) :].strip()
        if word == "DESCRP":
            if not rest:
                raise self.error("DESCRP needs a structure name.", n)
            if block.name is not None:
                raise self.error(
                    f"second DESCRP in structure {block.name!r} (first at line {block.name_line}).",
                    n,
                    block.name,
                )
            block.name, block.name_line = rest.split()[0], n
        elif word in ("HETATM", "ATOM"):
            symbol, xyz = self.atom(raw, n, len(block.symbols) + 1)
            block.symbols.append(symbol)
            block.positions.append(xyz)
        elif word == "CRYSTX":
            try:
                values = [float(t) for t in tokens[1:7]]
                if len(values) != 6:
                    raise ValueError("needs 6 numbers")
                block.cell = reaxff_cell(*values)
            except ValueError as err:
                raise self.error(
                    f"CRYSTX needs a b c [Å] alpha beta gamma [degrees] of a valid cell ({err}).",
                    n,
                    block.name,
                ) from None
        elif word == "RUTYPE":
            block.rutype.append((rest, n))
        elif word == "REMARK":
            block.remarks.append(rest)
        elif (
            word in _RESTRAINT_ATOMS
            and len(tokens) > 1
            and tokens[1].upper() == "RESTRAINT"
        ):
            self.restraint(block, word, tokens, raw, n)
        elif word == "MASCEN":
            warnings.warn(
                f"{self.path}:{n}: MASCEN RESTRAINT is not supported; ignored.",
                ParafitWarning,
                stacklevel=4,
            )
        elif word == "MOLCHARGE":
            try:
                first, last, q = int(tokens[1]), int(tokens[2]), float(tokens[3])
            except (IndexError, ValueError):
                raise self.error(
                    "MOLCHARGE needs first last charge.", n, block.name
                ) from None
            block.molcharge.append([first - 1, last - 1, q])
        elif word == "ENERGY":
            try:
                block.energy = float(tokens[1])
            except (IndexError, ValueError):
                raise self.error("ENERGY needs a number.", n, block.name) from None
        elif word == "UNIT":
            if len(tokens) >= 3 and tokens[1].upper() == "ENERGY":
                block.energy_unit = tokens[2]
        elif word == "VCHANGE":
            try:
                factor = float(tokens[1])
            except (IndexError, ValueError):
                raise self.error(
                    "VCHANGE needs a volume factor.", n, block.name
                ) from None
            if not (math.isfinite(factor) and factor > 0):
                raise self.error(
                    f"VCHANGE factor must be > 0; got {tokens[1]!r}.", n, block.name
                )
            block.vchange = (factor, n)
        # FORMAT, CONECT, ORDER and unknown BGF keywords are ignored (as ReaxFF does)

    def restraint(
        self, block: _Block, word: str, tokens: list[str], raw: str, n: int
    ) -> None:
        n_atoms = _RESTRAINT_ATOMS[word]
        values = tokens[2:]
        try:
            atoms = [int(v) for v in values[:n_atoms]]
            numbers = [float(v) for v in values[n_atoms : n_atoms + 3]]
            if len(atoms) != n_atoms or len(numbers) != 3:
                raise ValueError
        except ValueError:
            raise self.error(
                f"{word} RESTRAINT needs {n_atoms} atom numbers, the target, F1 and F2; "
                f"got {raw.strip()!r}.",
                n,
                block.name,
            ) from None
        block.restraints.append((word, atoms, numbers[0], numbers[1], numbers[2], n))

    # ---- jobs

    def job(self, block: _Block, end: int, previous: Job | None) -> Job:
        name = block.name
        if name is None:
            raise self.error(
                f"structure at line {block.start} has no DESCRP name.", block.start
            )
        metadata: dict[str, Any] = {}
        if block.remarks:
            metadata["remark"] = "\n".join(block.remarks)
        if block.rutype:
            metadata["rutype"] = [t for t, _ in block.rutype]
        if block.molcharge:
            metadata["molcharge"] = block.molcharge
        if block.energy is not None:
            metadata["energy"] = block.energy
            if block.energy_unit:
                metadata["energy_unit"] = block.energy_unit
        if block.vchange is not None and not block.symbols:
            factor, vline = block.vchange
            if previous is None or not previous.atoms.pbc.any():
                raise self.error(
                    "VCHANGE repeats the previous structure, which must be periodic.",
                    vline,
                    name,
                )
            atoms = previous.atoms.copy()
            atoms.set_cell(atoms.cell * factor ** (1.0 / 3.0), scale_atoms=True)
            metadata["vchange"] = {"of": previous.id, "volume_factor": factor}
            rutype = block.rutype or [
                (t, vline) for t in previous.metadata.get("rutype", [])
            ]
            task = self.task(block, rutype, periodic=True, n_atoms=len(atoms))
            if isinstance(task, GeometryOptimization) and task.relax_cell:
                task = GeometryOptimization(
                    optimizer=task.optimizer,
                    max_iterations=task.max_iterations,
                    fmax=task.fmax,
                    relax_cell=False,
                    pretend_converged=task.pretend_converged,
                    restraints=task.restraints,
                )
        else:
            if not block.symbols:
                raise self.error(
                    f"structure {name!r} (line {block.start}) has no HETATM atoms.",
                    end,
                    name,
                )
            periodic = block.cell is not None
            atoms = ase.Atoms(
                symbols=block.symbols,
                positions=np.array(block.positions, dtype=float),
                cell=block.cell,
                pbc=periodic,
            )
            task = self.task(block, block.rutype, periodic=periodic, n_atoms=len(atoms))
        for first, last, _ in block.molcharge:
            if not 0 <= first <= last < len(atoms):
                raise self.error(
                    f"MOLCHARGE atoms {first + 1}..{last + 1} out of range for {len(atoms)} atoms.",
                    block.start,
                    name,
                )
        try:
            return Job(id=name, atoms=atoms, task=task, metadata=metadata)
        except InputError as err:
            raise self.error(err.message, block.name_line, name) from err

    def task(
        self,
        block: _Block,
        rutype: list[tuple[str, int]],
        *,
        periodic: bool,
        n_atoms: int,
    ) -> Task:
        restraints = []
        for word, atoms, target, f1, f2, n in block.restraints:
            bad = [a for a in atoms if not 1 <= a <= n_atoms]
            if bad:
                raise self.error(
                    f"{word} RESTRAINT atom {bad[0]} out of range for {n_atoms} atoms "
                    "(atom numbers are 1-based).",
                    n,
                    block.name,
                )
            try:
                restraints.append(reaxff_restraint(word, atoms, target, f1, f2))
            except InputError as err:
                raise self.error(err.message, n, block.name) from err
        last_line = rutype[-1][1] if rutype else block.start
        try:
            task = rutype_task(
                [t for t, _ in rutype],
                self.control,
                periodic=periodic,
                restraints=restraints,
                where=f"{self.path}:{last_line}",
            )
        except InputError as err:
            raise self.error(err.message, last_line, block.name) from err
        if restraints and isinstance(task, SinglePoint):
            warnings.warn(
                f"{self.path}:{block.restraints[0][5]}: restraints of the single-point "
                f"structure {block.name!r} are ignored.",
                ParafitWarning,
                stacklevel=4,
            )
        return task


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_geo(
    path: str | Path,
    control: ReaxFFControl | str | Path | None = None,
    *,
    type_map: Mapping[str, str] | None = None,
) -> JobCollection:
    """Read a ReaxFF ``geo`` file (BGF blocks) into a job collection.

    Each block becomes a job named by its ``DESCRP``: ``RUTYPE SINGLE POINT`` (or
    ``MAXIT 0``) a :class:`~parafit.jobs.SinglePoint`, everything else (``NORMAL
    RUN``, ``MAXIT n``, ``CELL OPT``, ...) a :class:`~parafit.jobs.GeometryOptimization`
    built from the control settings (see :func:`rutype_task`), with the block's
    restraints.

    Args:
        path: the geo file.
        control: a :class:`ReaxFFControl`, the path of a ReaxFF ``control`` file, or
            None for ReaxFF's defaults (imaxit 50, endmm 1.0 kcal/mol/Å).
        type_map: force-field type or atom name -> element symbol, for types whose
            element cannot be read from their first letters.

    Returns:
        The jobs, in file order.

    Raises:
        InputError: the file does not exist.
        FormatError: a malformed block (missing DESCRP or END, duplicate DESCRP,
            unreadable HETATM, CRYSTX or restraint line, atoms numbered out of order,
            unknown element, restraint atom out of range); ``.path``, ``.line`` and
            ``.key`` (the structure name) say where.

    Example:
        >>> import pathlib, tempfile
        >>> text = '''BIOGRF 200
        ... DESCRP h2
        ... RUTYPE SINGLE POINT
        ... HETATM     1 H                   0.00000   0.00000   0.00000 H      1 0  0.00000
        ... HETATM     2 H                   0.74000   0.00000   0.00000 H      1 0  0.00000
        ... END
        ... '''
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "geo"
        >>> _ = p.write_text(text)
        >>> jc = read_geo(p)
        >>> jc.ids, type(jc["h2"].task).__name__
        (('h2',), 'SinglePoint')
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("ReaxFF geo file not found.", path=path)
    if isinstance(control, str | Path):
        control = read_control(control)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise FormatError(f"not a UTF-8 text file ({err.reason}).", path=path) from err
    reader = _Reader(path, control, type_map or {})
    jc = JobCollection()
    lines: dict[str, int | None] = {}
    previous: Job | None = None
    for block, end in reader.parse(text):
        job = reader.job(block, end, previous)
        if job.id in jc:
            raise reader.error(
                f"duplicate DESCRP {job.id!r} (first at line {lines[job.id]}); structure "
                "names must be unique.",
                block.name_line,
                job.id,
            )
        jc.add(job)
        lines[job.id] = block.name_line
        previous = job
    if not len(jc):
        raise FormatError(
            "no structures (BIOGRF/XTLGRF blocks) in the geo file.", path=path
        )
    return jc
