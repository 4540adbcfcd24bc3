"""Read classic ReaxFF ``trainset.in`` files into a :class:`~parafit.dataset.DataSet`.

A ``trainset.in`` has sections, each from a start keyword to its end keyword
(``CHARGE``/``ENDCHARGE``, ``HEATFO``/``ENDHEATFO``, ``GEOMETRY``/``ENDGEOMETRY``,
``FORCES``/``ENDFORCES``, ``CELL PARAMETERS``/``END CELL PARAMETERS``,
``ENERGY``/``ENDENERGY``). Fields are separated by spaces; ``#`` starts a comment
line, ``!`` an inline comment. Every data line has an accuracy ``acc`` that enters
ReaxFF's error ``sum ((y - y_ref) / acc)^2``; it becomes the entry's ``sigma`` (in the
entry's unit) with weight 1, so parafit's loss has the same terms. Atom numbers are
1-based in the file and 0-based in the expressions. The conversion, which reproduces
ParAMS ``trainset_to_params`` for the sections of the ParAMS disulfide example:

==================================  ================================================  ===================
trainset.in line                    expression                                        unit (reference)
==================================  ================================================  ===================
``acc + a/1 - b/2 ref`` (ENERGY)    ``+energy('a')/1 - energy('b')/2``                kcal/mol
``job acc i j ref`` (GEOMETRY)      ``distance('job', i-1, j-1)``                     Å
``job acc i j k ref``               ``angle('job', i-1, j-1, k-1)`` (vertex j)        degree
``job acc i j k l ref``             ``dihedral('job', i-1, j-1, k-1, l-1)``           degree, folded
                                                                                      into [0, 180]
``job acc ref`` (GEOMETRY, RMSG)    skipped with a warning (no RMS-gradient
                                    extractor)
``job acc n fx fy fz`` (FORCES)     ``forces('job', n-1, 0)``, ``..., 1)``,           kcal/(mol*angstrom)
                                    ``..., 2)``: three entries
``job acc n q`` (CHARGE)            ``charges('job', n-1)``                           e
``job acc a|b|c ref`` (CELL         ``cell_lengths('job', 0|1|2)``                    Å
PARAMETERS)
``job acc alpha|beta|gamma ref``    ``cell_angles('job', 0|1|2)``                     degree
``job acc ref`` (HEATFO)            skipped with a warning (``heatfo="skip"``), or    kcal/mol
                                    ``energy('job')`` (``heatfo="energy"``)
==================================  ================================================  ===================

Energy terms keep the sign and divisor as written (``+ a/1`` -> ``+energy('a')/1``;
a name without ``/n`` is divided by nothing). Dihedral references are folded as
ParAMS does (``r = ref mod 360``; ``360 - r`` if ``r > 180``) to match the unsigned
:func:`~parafit.extractors.dihedral` extractor. Heats of formation are skipped by
default because ReaxFF adds the force field's per-atom heat increments to the energy
for them, which parafit's energies do not include.
"""

import difflib
import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from parafit.dataset import DataSet, Entry
from parafit.errors import ExpressionError, FormatError, InputError, ParafitWarning
from parafit.expressions import parse_expression
from parafit.units import ANGSTROM, DEGREE, ELEMENTARY_CHARGE, KCAL_PER_MOL, Unit

if TYPE_CHECKING:
    from parafit.jobs import Job, JobCollection

__all__ = [
    "FORCE_UNIT",
    "KCAL_UNIT",
    "fold_dihedral",
    "read_trainset",
]

#: kcal/mol as a display unit (value_in_unit = factor * value_in_eV).
KCAL_UNIT = Unit("kcal/mol", 1.0 / KCAL_PER_MOL)
#: kcal/(mol Å) as a display unit for forces (label as in ParAMS data sets).
FORCE_UNIT = Unit("kcal/(mol*angstrom)", 1.0 / KCAL_PER_MOL)

HeatfoMode = Literal["skip", "energy"]

# start keyword -> (section, accepted end keywords)
_SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "CHARGE": ("CHARGE", ("ENDCHARGE", "ENDCHARGES")),
    "CHARGES": ("CHARGE", ("ENDCHARGE", "ENDCHARGES")),
    "HEATFO": ("HEATFO", ("ENDHEATFO",)),
    "GEOMETRY": ("GEOMETRY", ("ENDGEOMETRY",)),
    "FORCES": ("FORCES", ("ENDFORCES",)),
    "CELL PARAMETERS": (
        "CELL PARAMETERS",
        ("ENDCELL PARAMETERS", "END CELL PARAMETERS", "ENDCELL"),
    ),
    "ENERGY": ("ENERGY", ("ENDENERGY",)),
}
_CELL_TYPES = {
    "A": ("cell_lengths", 0),
    "B": ("cell_lengths", 1),
    "C": ("cell_lengths", 2),
    "ALPHA": ("cell_angles", 0),
    "BETA": ("cell_angles", 1),
    "GAMMA": ("cell_angles", 2),
}
_GEOMETRY = {2: ("distance", ANGSTROM), 3: ("angle", DEGREE), 4: ("dihedral", DEGREE)}


def fold_dihedral(value: float) -> float:
    """A dihedral reference [degrees] folded into [0, 180], as ParAMS converts them.

    ``r = value mod 360``, then ``360 - r`` if ``r > 180`` (-63.463 -> 63.463...).
    """
    r = float(value) % 360.0
    return 360.0 - r if r > 180.0 else r


class _Reader:
    def __init__(
        self,
        path: Path,
        jobs: "JobCollection | Mapping[str, Job] | None",
        heatfo: HeatfoMode,
    ) -> None:
        self.path = path
        self.jobs = jobs
        self.known = (
            None
            if jobs is None
            else list(jobs.ids)
            if hasattr(jobs, "ids")
            else list(jobs)
        )
        self.heatfo = heatfo
        self.entries: list[Entry] = []
        self.lines: list[int] = []
        self.seen: dict[str, int] = {}
        self.skipped: dict[str, list[int]] = {}

    # ---- helpers

    def error(self, message: str, line: int, key: str | None = None) -> InputError:
        return InputError(message, path=self.path, line=line, key=key)

    def format_error(self, message: str, line: int) -> FormatError:
        return FormatError(message, path=self.path, line=line)

    def number(self, text: str, line: int, what: str) -> float:
        try:
            value = float(text.replace("d", "e").replace("D", "e"))
        except ValueError:
            raise self.format_error(
                f"{what} must be a number; got {text!r}.", line
            ) from None
        if not math.isfinite(value):
            raise self.format_error(f"{what} must be finite; got {text!r}.", line)
        return value

    def accuracy(self, text: str, line: int) -> float:
        acc = self.number(text, line, "the accuracy (weight)")
        if not acc > 0:
            raise self.format_error(
                f"the accuracy must be > 0 (it is the sigma of the entry); got {text!r}.",
                line,
            )
        return acc

    def atom_number(self, text: str, line: int) -> int:
        try:
            return int(text)
        except ValueError:
            raise self.format_error(
                f"atom numbers must be integers (1-based); got {text!r}.", line
            ) from None

    def job(self, name: str, line: int) -> "Job | None":
        if self.jobs is None:
            return None
        if name not in self.jobs:
            close = difflib.get_close_matches(name, self.known or [], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise self.error(
                f"unknown structure {name!r}: no geo block has DESCRP {name}{hint}",
                line,
                name,
            )
        return self.jobs[name]

    def check_atoms(self, name: str, atoms: list[int], line: int) -> list[int]:
        job = self.job(name, line)
        n = None if job is None else len(job.atoms)
        for a in atoms:
            if a < 1 or (n is not None and a > n):
                limit = f" for structure {name!r} with {n} atoms" if n else ""
                raise self.error(
                    f"atom number {a} out of range{limit}; trainset.in atom numbers "
                    "are 1-based.",
                    line,
                    name,
                )
        if len(set(atoms)) != len(atoms):
            raise self.error(f"atom numbers must be distinct; got {atoms}.", line, name)
        return [a - 1 for a in atoms]

    def add(
        self,
        expression: str,
        reference: float,
        sigma: float,
        unit: Unit,
        line: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            canonical = parse_expression(expression).canonical
        except ExpressionError as err:
            raise self.error(err.message, line, expression) from err
        if canonical in self.seen:
            raise self.error(
                f"the entry {expression!r} is already defined at line "
                f"{self.seen[canonical]}; entries must be unique (merge or delete one).",
                line,
                expression,
            )
        self.seen[canonical] = line
        self.entries.append(
            Entry(
                expression=expression,
                reference=reference,
                sigma=sigma,
                weight=1.0,
                unit=unit,
                metadata=dict(metadata or {}),
            )
        )
        self.lines.append(line)

    def skip(self, what: str, line: int) -> None:
        self.skipped.setdefault(what, []).append(line)

    # ---- sections

    def parse(self, text: str) -> None:
        section: str | None = None
        ends: tuple[str, ...] = ()
        start = 0
        unknown: str | None = None
        for n, raw in enumerate(text.splitlines(), 1):
            data = raw.split("!", 1)[0]
            data = re.split(r"\s#", data, maxsplit=1)[0].strip()
            if not data or data.startswith("#"):
                continue
            head = " ".join(data.upper().split())
            if unknown is not None:
                if head in (f"END{unknown}", f"END {unknown}"):
                    unknown = None
                continue
            if section is None:
                if head in _SECTIONS:
                    section, ends = _SECTIONS[head]
                    start = n
                    continue
                if re.fullmatch(r"[A-Z_]+( [A-Z_]+)?", head) and not head.startswith(
                    "END"
                ):
                    warnings.warn(
                        f"{self.path}:{n}: unknown trainset.in section {head!r} "
                        f"skipped; known: {', '.join(sorted(set(_SECTIONS)))}.",
                        ParafitWarning,
                        stacklevel=3,
                    )
                    unknown = head
                    continue
                raise self.format_error(
                    f"data outside a section: {data[:40]!r}; lines must be inside e.g. "
                    "ENERGY ... ENDENERGY.",
                    n,
                )
            if head in ends:
                section = None
                continue
            if head in _SECTIONS or re.fullmatch(r"END[A-Z ]*", head):
                raise self.format_error(
                    f"{head!r} inside the section {section} that starts at line {start}; "
                    f"close it with {ends[0]} first.",
                    n,
                )
            tokens = data.split()
            if section == "ENERGY":
                self.energy(data, n)
            elif section == "GEOMETRY":
                self.geometry(tokens, n)
            elif section == "FORCES":
                self.forces(tokens, n)
            elif section == "CHARGE":
                self.charge(tokens, n)
            elif section == "CELL PARAMETERS":
                self.cell(tokens, n)
            else:
                self.heat(tokens, n)
        if section is not None:
            raise self.format_error(
                f"the section {section} that starts at line {start} has no {ends[0]}.",
                start,
            )
        if unknown is not None:
            raise self.format_error(
                f"the unknown section {unknown} has no END{unknown}.", len(text)
            )

    def energy(self, data: str, n: int) -> None:
        tokens = re.sub(r"\s*/\s*", "/", data).split()
        if len(tokens) < 3:
            raise self.format_error(
                "an ENERGY line is 'accuracy [+-] name/divisor [+-] name/divisor ... "
                f"reference'; got {data!r}.",
                n,
            )
        sigma = self.accuracy(tokens[0], n)
        reference = self.number(tokens[-1], n, "the reference energy [kcal/mol]")
        terms: list[str] = []
        op: str | None = None
        for token in tokens[1:-1]:
            if token in ("+", "-"):
                if op is not None:
                    raise self.format_error(f"two operators in a row in {data!r}.", n)
                op = token
                continue
            if token[0] in "+-" and len(token) > 1:
                if op is not None:
                    raise self.format_error(f"two operators in a row in {data!r}.", n)
                op, token = token[0], token[1:]
            name, _, divisor = token.partition("/")
            if not name:
                raise self.format_error(f"missing structure name in {data!r}.", n)
            self.job(name, n)
            call = f"energy({name!r})"
            if divisor:
                value = self.number(divisor, n, f"the divisor of {name!r}")
                if value == 0:
                    raise self.format_error(f"division by zero for {name!r}.", n)
                call += f"/{divisor}"
            if terms:
                terms.append(f" {op or '+'} {call}")
            else:
                terms.append(f"{op or ''}{call}")
            op = None
        if op is not None or not terms:
            raise self.format_error(f"an operator without a structure in {data!r}.", n)
        if len(terms) > 5:
            warnings.warn(
                f"{self.path}:{n}: an ENERGY line with {len(terms)} structures "
                "(ReaxFF reads at most 5).",
                ParafitWarning,
                stacklevel=4,
            )
        self.add("".join(terms), reference, sigma, KCAL_UNIT, n)

    def geometry(self, tokens: list[str], n: int) -> None:
        if len(tokens) < 3:
            raise self.format_error(
                "a GEOMETRY line is 'name accuracy [atoms...] reference'.", n
            )
        name = tokens[0]
        sigma = self.accuracy(tokens[1], n)
        reference = self.number(tokens[-1], n, "the reference value")
        numbers = tokens[2:-1]
        if not numbers:  # RMS gradient of the forces: no extractor
            self.job(name, n)
            self.skip("GEOMETRY RMSG", n)
            return
        if len(numbers) not in _GEOMETRY:
            raise self.format_error(
                f"a GEOMETRY line needs 2 (distance), 3 (angle) or 4 (dihedral) atom "
                f"numbers; got {len(numbers)}.",
                n,
            )
        atoms = self.check_atoms(name, [self.atom_number(t, n) for t in numbers], n)
        extractor, unit = _GEOMETRY[len(atoms)]
        if extractor == "dihedral":
            reference = fold_dihedral(reference)
        args = ", ".join(str(a) for a in atoms)
        self.add(f"{extractor}({name!r}, {args})", reference, sigma, unit, n)

    def forces(self, tokens: list[str], n: int) -> None:
        if len(tokens) != 6:
            raise self.format_error(
                "a FORCES line is 'name accuracy atom fx fy fz' [kcal/mol/Å]; got "
                f"{len(tokens)} fields.",
                n,
            )
        name = tokens[0]
        sigma = self.accuracy(tokens[1], n)
        (atom,) = self.check_atoms(name, [self.atom_number(tokens[2], n)], n)
        for xyz in range(3):
            value = self.number(tokens[3 + xyz], n, "the force")
            self.add(f"forces({name!r}, {atom}, {xyz})", value, sigma, FORCE_UNIT, n)

    def charge(self, tokens: list[str], n: int) -> None:
        if len(tokens) != 4:
            raise self.format_error(
                f"a CHARGE line is 'name accuracy atom charge'; got {len(tokens)} fields.",
                n,
            )
        name = tokens[0]
        sigma = self.accuracy(tokens[1], n)
        (atom,) = self.check_atoms(name, [self.atom_number(tokens[2], n)], n)
        value = self.number(tokens[3], n, "the charge [e]")
        self.add(f"charges({name!r}, {atom})", value, sigma, ELEMENTARY_CHARGE, n)

    def cell(self, tokens: list[str], n: int) -> None:
        if len(tokens) != 4:
            raise self.format_error(
                "a CELL PARAMETERS line is 'name accuracy a|b|c|alpha|beta|gamma "
                f"reference'; got {len(tokens)} fields.",
                n,
            )
        name = tokens[0]
        sigma = self.accuracy(tokens[1], n)
        kind = _CELL_TYPES.get(tokens[2].upper())
        if kind is None:
            raise self.format_error(
                f"unknown cell parameter {tokens[2]!r}; use a, b, c, alpha, beta or gamma.",
                n,
            )
        job = self.job(name, n)
        if job is not None and not job.atoms.pbc.any():
            raise self.error(
                f"structure {name!r} has no cell (no CRYSTX line in geo).", n, name
            )
        value = self.number(tokens[3], n, "the reference value")
        extractor, index = kind
        unit = ANGSTROM if extractor == "cell_lengths" else DEGREE
        self.add(f"{extractor}({name!r}, {index})", value, sigma, unit, n)

    def heat(self, tokens: list[str], n: int) -> None:
        if len(tokens) != 3:
            raise self.format_error(
                f"a HEATFO line is 'name accuracy reference'; got {len(tokens)} fields.",
                n,
            )
        name = tokens[0]
        sigma = self.accuracy(tokens[1], n)
        value = self.number(tokens[2], n, "the heat of formation [kcal/mol]")
        self.job(name, n)
        if self.heatfo == "skip":
            self.skip("HEATFO", n)
            return
        self.add(
            f"energy({name!r})",
            value,
            sigma,
            KCAL_UNIT,
            n,
            metadata={"reaxff_section": "HEATFO"},
        )


def read_trainset(
    path: str | Path,
    jobs: "JobCollection | Mapping[str, Job] | None" = None,
    *,
    heatfo: HeatfoMode = "skip",
) -> DataSet:
    """Read a ReaxFF ``trainset.in`` into a data set (see the module docstring).

    Args:
        path: the file.
        jobs: the jobs of the matching geo file (e.g. from
            :func:`parafit.io.reaxff_geo.read_geo`); when given, every structure name
            must be one of them and atom numbers must be in range.
        heatfo: ``"skip"`` (default) HEATFO lines with a warning, or ``"energy"`` to
            turn them into ``energy('name')`` entries in kcal/mol (only right if the
            engine's energies include ReaxFF's heat increments).

    Returns:
        The data set: one entry per line (three per FORCES line), weight 1, sigma the
        line's accuracy, references and sigmas in the entry's unit. ``DataSet.lines``
        gives each entry's line in ``path``.

    Raises:
        InputError: the file does not exist, an unknown structure name or an atom
            number out of range (``.path``, ``.line``, ``.key``), a duplicate entry.
        FormatError: a malformed line or section.

    Skipped lines (RMS-gradient GEOMETRY lines, HEATFO with ``heatfo="skip"``) give
    one :class:`~parafit.errors.ParafitWarning` per kind.

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "trainset.in"
        >>> _ = p.write_text("ENERGY\\n 1.0 + a/1 - b/2  -3.5\\nENDENERGY\\n")
        >>> ds = read_trainset(p)
        >>> ds[0].expression, ds[0].reference, ds[0].sigma, ds[0].unit.label
        ("+energy('a')/1 - energy('b')/2", -3.5, 1.0, 'kcal/mol')
    """
    if heatfo not in ("skip", "energy"):
        raise InputError(f"heatfo must be 'skip' or 'energy'; got {heatfo!r}.")
    path = Path(path)
    if not path.is_file():
        raise InputError("ReaxFF trainset.in file not found.", path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise FormatError(f"not a UTF-8 text file ({err.reason}).", path=path) from err
    reader = _Reader(path, jobs, heatfo)
    reader.parse(text)
    for what, lines in reader.skipped.items():
        why = (
            "parafit has no RMS-gradient extractor"
            if what == "GEOMETRY RMSG"
            else "heats of formation need ReaxFF's per-atom heat increments; pass "
            "heatfo='energy' to import them as energies"
        )
        shown = ", ".join(str(n) for n in lines[:5]) + (
            " ..." if len(lines) > 5 else ""
        )
        warnings.warn(
            f"{path}: {len(lines)} {what} line(s) skipped ({why}); lines {shown}.",
            ParafitWarning,
            stacklevel=2,
        )
    return DataSet(reader.entries, path=path, lines=reader.lines)
