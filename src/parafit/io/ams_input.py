"""ParAMS ``job_collection.yml`` files and the AMS text input inside them.

A ParAMS job collection is a multi-document YAML file: each document has ``ID``,
``ReferenceEngineID`` (the string ``None`` for none), ``AMSInput`` (AMS text input)
and free metadata keys, which are kept in :attr:`parafit.jobs.Job.metadata`.

From the AMS text (keys case-insensitive, blocks closed by ``End``) parafit reads
``Task`` (SinglePoint, GeometryOptimization, PESScan), ``System`` (``Atoms``,
``Lattice``, ``Charge``, ``FractionalCoords``), the ``GeometryOptimization``
settings, one ``PESScan%ScanCoordinate`` block and fixed atoms from ``Constraints``.
Other AMS keys are ignored; what cannot be expressed raises :class:`FormatError`.
AMS atom indices are 1-based and become 0-based; AMS gradient thresholds
(Hartree/Å) become ``fmax`` [eV/Å].
"""

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ase
import numpy as np
import yaml
from ase.data import atomic_numbers

from parafit.errors import FormatError, InputError
from parafit.io.jobs_yaml import _child, _line, _Loader, _read_text, _yaml_error
from parafit.jobs import (
    GeometryOptimization,
    Job,
    JobCollection,
    OptimizerName,
    PESScan,
    ScanCoordinate,
    SinglePoint,
    Task,
)
from parafit.units import BOHR, HARTREE, KCAL_PER_MOL, KJ_PER_MOL

__all__ = ["job_from_ams_input", "parse_ams_input", "read_params_job_collection"]

logger = logging.getLogger(__name__)

# AMS GeometryOptimization%Convergence%Gradients default [Hartree/Å]
AMS_DEFAULT_GRADIENTS = 1e-3
# AMS Convergence%Quality -> Gradients [Hartree/Å]
_QUALITY_GRADIENTS = {
    "verybasic": 1e-1,
    "basic": 1e-2,
    "normal": 1e-3,
    "good": 1e-4,
    "verygood": 1e-5,
}
AMS_DEFAULT_SCAN_POINTS = 10

_LENGTH_UNITS = {
    "angstrom": 1.0,
    "a": 1.0,
    "bohr": BOHR,
    "au": BOHR,
    "a.u.": BOHR,
    "nm": 10.0,
}
_ANGLE_UNITS = {
    "degree": 1.0,
    "degrees": 1.0,
    "deg": 1.0,
    "radian": 180.0 / math.pi,
    "rad": 180.0 / math.pi,
}
_FORCE_UNITS = {  # value in unit -> eV/Å
    "hartree/angstrom": HARTREE,
    "hartree/bohr": HARTREE / BOHR,
    "au": HARTREE / BOHR,
    "a.u.": HARTREE / BOHR,
    "ev/angstrom": 1.0,
    "ev/bohr": 1.0 / BOHR,
    "kcal/mol/angstrom": KCAL_PER_MOL,
    "kj/mol/angstrom": KJ_PER_MOL,
}
_METHODS: dict[str, OptimizerName] = {
    "fire": "fire",
    "auto": "lbfgs",
    "quasi-newton": "lbfgs",
    "quasinewton": "lbfgs",
    "qn": "lbfgs",
    "l-bfgs": "lbfgs",
    "lbfgs": "lbfgs",
    "bfgs": "bfgs",
}
_TASKS = {
    "singlepoint": "single_point",
    "geometryoptimization": "geometry_optimization",
    "pesscan": "pes_scan",
}

# Names that always open a block (``End`` closes it), by enclosing block ("" = top).
# A key with no value whose next line is indented deeper is also read as a block.
_KNOWN_BLOCKS: dict[str, frozenset[str]] = {
    "": frozenset(
        {
            "system",
            "geometryoptimization",
            "pesscan",
            "properties",
            "constraints",
            "restraints",
            "engineaddons",
            "loadsystem",
            "moleculardynamics",
            "transitionstatesearch",
            "normalmodes",
            "neb",
            "irc",
            "gcmc",
        }
    ),
    "system": frozenset({"atoms", "lattice", "bondorders", "electrostaticembedding"}),
    "geometryoptimization": frozenset(
        {"convergence", "fire", "quasinewton", "hessianfree"}
    ),
    "pesscan": frozenset({"scancoordinate"}),
    "scancoordinate": frozenset({"fromlattice", "tolattice"}),
}
# Blocks whose lines are data (never keys that open blocks).
_DATA_BLOCKS = frozenset({"atoms", "lattice", "bondorders", "fromlattice", "tolattice"})
# Top-level blocks that change the energy or the system and cannot be expressed.
_UNSUPPORTED_BLOCKS = {
    "restraints": "restraints change the energy and are not supported",
    "engineaddons": "engine add-ons (e.g. D3 dispersion) change the energy and are not supported",
    "loadsystem": "LoadSystem (a system from an .rkf file) is not supported; put the atoms in System%Atoms",
}
# System keys that change the geometry; ignoring them would silently give another structure.
_UNSUPPORTED_SYSTEM_KEYS = frozenset(
    {
        "supercell",
        "supercelltrafo",
        "perturbcoordinates",
        "perturblattice",
        "shiftcoordinates",
        "geometryfile",
        "latticestrain",
        "symmetrize",
    }
)


@dataclass
class _Key:
    name: str  # lowercase
    raw: str  # as written
    value: str
    line: int  # 0-based line in the AMS text


@dataclass
class _Block:
    name: str
    raw: str
    header: str
    line: int
    items: "list[_Key | _Block]" = field(default_factory=list)

    def keys(self, name: str) -> list[_Key]:
        return [i for i in self.items if isinstance(i, _Key) and i.name == name]

    def key(self, name: str) -> _Key | None:
        found = self.keys(name)
        return found[-1] if found else None

    def blocks(self, name: str) -> "list[_Block]":
        return [i for i in self.items if isinstance(i, _Block) and i.name == name]

    def block(self, name: str) -> "_Block | None":
        found = self.blocks(name)
        return found[0] if found else None


_ErrFn = Callable[[str, int | None], FormatError]


# --------------------------------------------------------------------------------------
# public API


def read_params_job_collection(path: str | Path) -> JobCollection:
    """Read a ParAMS ``job_collection.yml`` (multi-document YAML with ``AMSInput``).

    Args:
        path: the file.

    Returns:
        One :class:`~parafit.jobs.Job` per document, in file order. Metadata keys
        other than ``ID``, ``ReferenceEngineID`` and ``AMSInput`` are kept in
        ``Job.metadata``, plus ``charge`` (from ``System%Charge``) and
        ``fixed_atoms`` (0-based, from ``Constraints%Atom``) where given.

    Raises:
        InputError: the file does not exist.
        FormatError: bad YAML, a missing key, or AMS input parafit cannot express;
            ``.path``, ``.line`` (in the YAML file) and ``.key`` (the job ID) say where.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> p = Path(tempfile.mkdtemp()) / "job_collection.yml"
        >>> _ = p.write_text(
        ...     "---\\nID: 'h2'\\nReferenceEngineID: None\\nAMSInput: |\\n"
        ...     "  Task SinglePoint\\n  System\\n    Atoms\\n"
        ...     "      H 0.0 0.0 0.0\\n      H 0.0 0.0 0.74\\n    End\\n  End\\n...\\n"
        ... )
        >>> float(read_params_job_collection(p)["h2"].atoms.get_distance(0, 1))
        0.74
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("ParAMS job collection file not found.", path=path)
    text = _read_text(path)
    loader = _Loader(text)
    docs: list[tuple[yaml.Node, Any]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            docs.append((node, loader.construct_document(node)))
    except yaml.YAMLError as err:
        raise _yaml_error(err, path) from err
    finally:
        loader.dispose()

    jc = JobCollection()
    first_line: dict[str, int | None] = {}
    n_unmapped = 0
    for node, data in docs:
        if data is None:
            continue
        job = _job_from_document(node, data, path)
        if job.id in jc:
            raise FormatError(
                f"duplicate job ID {job.id!r} (first defined at line {first_line[job.id]}).",
                path=path,
                line=_line(_child(node, "ID")) or _line(node),
                key=job.id,
            )
        jc.add(job)
        first_line[job.id] = _line(node)
        n_unmapped += "ams_method" in job.metadata
    if n_unmapped:
        logger.warning(
            "%s: %d of %d jobs use an AMS geometry optimizer parafit does not have; they "
            "run with lbfgs (the AMS name is kept in metadata 'ams_method').",
            path,
            n_unmapped,
            len(jc),
        )
    return jc


def job_from_ams_input(
    job_id: str,
    text: str,
    *,
    reference_engine: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    path: str | Path | None = None,
    first_line: int | None = None,
) -> Job:
    """Build a :class:`~parafit.jobs.Job` from AMS text input.

    Args:
        job_id: the job's id.
        text: AMS input (``Task``, ``System``, ``GeometryOptimization``, ...).
        reference_engine: id of the engine that made the reference, or None.
        metadata: free metadata to keep (copied; ``charge``/``fixed_atoms`` added).
        path: file the text came from, for error messages.
        first_line: 1-based line of the text's first line in ``path``, so that errors
            point at the offending line; None when unknown.

    Raises:
        FormatError: AMS input parafit cannot read or express.

    Example:
        >>> job = job_from_ams_input("co", "System\\n Atoms\\n  C 0 0 0\\n  O 0 0 1.13\\n End\\nEnd")
        >>> job.task, job.n_atoms
        (SinglePoint(kind='single_point'), 2)
    """
    atoms, task, extra = parse_ams_input(
        text, job_id=job_id, path=path, first_line=first_line
    )
    meta = dict(metadata or {})
    meta.update(extra)
    try:
        return Job(
            id=job_id,
            atoms=atoms,
            task=task,
            reference_engine=reference_engine,
            metadata=meta,
        )
    except InputError as err:
        prefix = f"job {job_id!r}: "
        message = (
            err.message if err.message.startswith(prefix) else prefix + err.message
        )
        raise FormatError(message, path=path, line=first_line, key=job_id) from err


def parse_ams_input(
    text: str,
    *,
    job_id: str | None = None,
    path: str | Path | None = None,
    first_line: int | None = None,
) -> tuple[ase.Atoms, Task, dict[str, Any]]:
    """Read the structure, the task and extra metadata from AMS text input.

    Args:
        text: AMS input.
        job_id: for error messages.
        path: for error messages.
        first_line: 1-based line of ``text``'s first line in ``path``; None if unknown.

    Returns:
        ``(atoms, task, metadata)``: positions and cell in Å; the task with ``fmax``
        in eV/Å; metadata with ``charge`` [e], ``fixed_atoms`` (0-based) and
        ``ams_method`` (an AMS optimizer that ran as lbfgs) when present.

    Raises:
        FormatError: AMS input parafit cannot read or express.
    """

    def err(message: str, text_line: int | None) -> FormatError:
        line = (
            first_line
            if text_line is None or first_line is None
            else first_line + text_line
        )
        prefix = f"job {job_id!r}: " if job_id is not None else ""
        return FormatError(prefix + message, path=path, line=line, key=job_id)

    root = _parse_blocks(text, err)
    for name, why in _UNSUPPORTED_BLOCKS.items():
        block = root.block(name)
        if block is not None:
            raise err(f"AMS block {block.raw!r}: {why}.", block.line)

    task_key = root.key("task")
    task_name = "single_point"
    if task_key is not None:
        task_name = _TASKS.get(task_key.value.replace(" ", "").lower(), "")
        if not task_name:
            raise err(
                f"AMS Task {task_key.value!r} is not supported; use SinglePoint, "
                "GeometryOptimization or PESScan.",
                task_key.line,
            )

    atoms = _read_system(root, err)
    metadata: dict[str, Any] = {}
    system = _the_system(root, err)
    charge = system.key("charge")
    if charge is not None:
        metadata["charge"] = _float(charge.value, charge, err, "System%Charge")
    fixed = _read_constraints(root, len(atoms), err)
    if fixed:
        metadata["fixed_atoms"] = fixed

    task: Task
    if task_name == "single_point":
        task = SinglePoint()
    else:
        settings, ams_method = _read_go_settings(root, err)
        if ams_method is not None:
            metadata["ams_method"] = ams_method
        go = root.block("geometryoptimization")
        if task_name == "geometry_optimization":
            if settings.get("relax_cell") and not atoms.pbc.any():
                key = go.key("optimizelattice") if go is not None else None
                raise err(
                    "GeometryOptimization%OptimizeLattice needs a periodic system "
                    "(a System%Lattice block).",
                    None if key is None else key.line,
                )
            task = _make(GeometryOptimization, settings, err, go)
        else:
            settings.pop("relax_cell", None)
            settings.pop("pretend_converged", None)
            coords, relaxed, scan_block = _read_scan(root, len(atoms), err)
            task = _make(
                PESScan,
                {"coordinates": coords, "relaxed": relaxed, **settings},
                err,
                scan_block,
            )
    return atoms, task, metadata


# --------------------------------------------------------------------------------------
# reading one ParAMS document


def _job_from_document(node: yaml.Node, data: Any, path: Path) -> Job:
    line = _line(node)
    if not isinstance(data, dict):
        raise FormatError(
            "a ParAMS job document must be a mapping with ID, ReferenceEngineID and AMSInput.",
            path=path,
            line=line,
        )
    id_node = _child(node, "ID")
    if (
        "ID" not in data
        or data["ID"] is None
        or not isinstance(id_node, yaml.ScalarNode)
    ):
        raise FormatError("job document has no 'ID'.", path=path, line=line)
    job_id = id_node.value  # as written: an unquoted 1.0 stays "1.0"
    if not job_id:
        raise FormatError("job 'ID' is empty.", path=path, line=_line(id_node))
    ams_node = _child(node, "AMSInput")
    text = data.get("AMSInput")
    if not isinstance(text, str):
        raise FormatError(
            f"job {job_id!r}: 'AMSInput' (AMS text input) is missing or not text.",
            path=path,
            line=_line(ams_node) or line,
            key=job_id,
        )
    ref = data.get("ReferenceEngineID")
    if ref is not None and not isinstance(ref, str | int | float):
        raise FormatError(
            f"job {job_id!r}: 'ReferenceEngineID' must be a string; got {ref!r}.",
            path=path,
            line=_line(_child(node, "ReferenceEngineID")),
            key=job_id,
        )
    reference_engine = None if ref is None or str(ref) == "None" else str(ref)
    metadata = {
        k: v
        for k, v in data.items()
        if k not in ("ID", "ReferenceEngineID", "AMSInput")
    }
    # a literal block (AMSInput: |) starts on the line after the key
    first = None
    if isinstance(ams_node, yaml.ScalarNode) and ams_node.style == "|":
        first = ams_node.start_mark.line + 2
    try:
        return job_from_ams_input(
            job_id,
            text,
            reference_engine=reference_engine,
            metadata=metadata,
            path=path,
            first_line=first,
        )
    except FormatError as err:
        if err.line is not None:
            raise
        # AMSInput not a literal block: point at its key
        raise FormatError(
            err.message, path=path, line=_line(ams_node) or line, key=job_id
        ) from err


# --------------------------------------------------------------------------------------
# AMS text -> blocks


def _split_first(s: str) -> tuple[str, str]:
    parts = s.split(None, 1)
    return parts[0], (parts[1].strip() if len(parts) > 1 else "")


def _parse_blocks(text: str, err: _ErrFn) -> _Block:
    """Parse AMS text input into nested blocks (no grammar, see ``_KNOWN_BLOCKS``)."""
    sig: list[tuple[int, int, str]] = []  # (line index, indentation, content)
    for i, raw in enumerate(text.split("\n")):
        content = re.split(r"[#!]|::", raw, maxsplit=1)[0].expandtabs(4)
        stripped = content.strip()
        if stripped:
            sig.append((i, len(content) - len(content.lstrip()), stripped))
    root = _Block("", "", "", -1)
    stack = [root]
    k = 0
    while k < len(sig):
        i, indent, content = sig[k]
        first, rest = _split_first(content)
        name = first.lower()
        cur = stack[-1]
        k += 1
        if name in ("end", "subend") and not rest:
            if cur is root:
                raise err("'End' without an open block; is a block line missing?", i)
            stack.pop()
            continue
        if cur.name in _DATA_BLOCKS:
            cur.items.append(_Key(name, first, rest, i))
            continue
        if name == "engine" and cur is root:  # ParAMS supplies the engine; skip it
            while k < len(sig) and _split_first(sig[k][2])[0].lower() != "endengine":
                k += 1
            if k == len(sig):
                raise err("'Engine' block has no 'EndEngine'.", i)
            k += 1
            continue
        is_block = name in _KNOWN_BLOCKS.get(cur.name, frozenset())
        if not is_block and not rest and k < len(sig):
            nxt_indent, nxt = sig[k][1], sig[k][2]
            is_block = nxt_indent > indent and _split_first(nxt)[0].lower() != "end"
        if is_block:
            block = _Block(name, first, rest, i)
            cur.items.append(block)
            stack.append(block)
        else:
            cur.items.append(_Key(name, first, rest, i))
    if len(stack) > 1:
        raise err(f"AMS block {stack[-1].raw!r} has no 'End'.", stack[-1].line)
    return root


# --------------------------------------------------------------------------------------
# value helpers


def _strip_unit(value: str) -> tuple[str, str | None]:
    """``"[Bohr] 1.0"`` or ``"1.0 [Bohr]"`` -> ``("1.0", "bohr")``."""
    m = re.search(r"\[([^\]]*)\]", value)
    if m is None:
        return value.strip(), None
    unit = m.group(1).strip().lower().replace(" ", "")
    return (value[: m.start()] + value[m.end() :]).strip(), unit


def _unit_factor(
    unit: str | None, table: dict[str, float], what: str, line: int, err: _ErrFn
) -> float:
    if unit is None or unit == "":
        return 1.0 if what != "gradients" else table["hartree/angstrom"]
    if unit not in table:
        raise err(
            f"unknown unit [{unit}] for {what}; use one of {', '.join(sorted(table))}.",
            line,
        )
    return table[unit]


def _float(token: str, where: _Key | int, err: _ErrFn, what: str) -> float:
    line = where.line if isinstance(where, _Key) else where
    try:
        value = float(token)
    except ValueError:
        raise err(f"{what}: expected a number; got {token!r}.", line) from None
    if not math.isfinite(value):
        raise err(f"{what}: expected a finite number; got {token!r}.", line)
    return value


def _int(token: str, where: _Key | int, err: _ErrFn, what: str) -> int:
    line = where.line if isinstance(where, _Key) else where
    try:
        return int(token)
    except ValueError:
        raise err(f"{what}: expected an integer; got {token!r}.", line) from None


def _yes_no(key: _Key, err: _ErrFn, what: str) -> bool:
    v = key.value.strip().lower()
    if v in ("", "yes", "true"):
        return True
    if v in ("no", "false"):
        return False
    raise err(f"{what}: expected Yes or No; got {key.value!r}.", key.line)


def _element(token: str, line: int, err: _ErrFn) -> str:
    base = token.split(".")[0]
    if base.lower() == "gh":
        raise err(f"ghost atom {token!r} is not supported.", line)
    symbol = base[:1].upper() + base[1:].lower()
    if symbol not in atomic_numbers or symbol == "X":
        raise err(f"unknown element symbol {token!r} in System%Atoms.", line)
    return symbol


# --------------------------------------------------------------------------------------
# System


def _data_lines(block: _Block) -> list[_Key]:
    """Lines of a data block (Atoms, Lattice); the parser never nests blocks there."""
    return [item for item in block.items if isinstance(item, _Key)]


def _the_system(root: _Block, err: _ErrFn) -> _Block:
    systems = root.blocks("system")
    if not systems:
        raise err("AMS input has no System block (with Atoms).", None)
    unnamed = [s for s in systems if not s.header]
    if len(unnamed) > 1:
        raise err("AMS input has more than one System block.", unnamed[1].line)
    if unnamed:
        return unnamed[0]
    if len(systems) == 1:
        return systems[0]
    raise err(
        "AMS input has several named System blocks and no main (unnamed) one.",
        systems[0].line,
    )


def _read_system(root: _Block, err: _ErrFn) -> ase.Atoms:
    system = _the_system(root, err)
    for item in system.items:
        if item.name in _UNSUPPORTED_SYSTEM_KEYS:
            raise err(
                f"System%{item.raw} changes the geometry and is not supported; give the final "
                "atoms (and lattice) explicitly.",
                item.line,
            )
    atoms_block = system.block("atoms")
    if atoms_block is None or not atoms_block.items:
        raise err("System has no Atoms block (or it is empty).", system.line)
    scale = _unit_factor(
        _strip_unit(atoms_block.header)[1],
        _LENGTH_UNITS,
        "System%Atoms",
        atoms_block.line,
        err,
    )
    symbols: list[str] = []
    coords = np.empty((len(atoms_block.items), 3))
    for n, item in enumerate(_data_lines(atoms_block)):
        symbols.append(_element(item.raw, item.line, err))
        tokens = item.value.split()
        if len(tokens) < 3:
            raise err(
                f"System%Atoms line needs 'Element x y z'; got {item.raw} {item.value!r}.",
                item.line,
            )
        coords[n] = [
            _float(t, item, err, "System%Atoms coordinate") for t in tokens[:3]
        ]

    cell = np.zeros((3, 3))
    pbc = [False, False, False]
    lattice = system.block("lattice")
    if lattice is not None:
        lscale = _unit_factor(
            _strip_unit(lattice.header)[1],
            _LENGTH_UNITS,
            "System%Lattice",
            lattice.line,
            err,
        )
        if not 1 <= len(lattice.items) <= 3:
            raise err(
                f"System%Lattice needs 1 to 3 vectors; got {len(lattice.items)}.",
                lattice.line,
            )
        for n, item in enumerate(_data_lines(lattice)):
            tokens = [item.raw, *item.value.split()]
            if len(tokens) != 3:
                raise err(
                    f"a System%Lattice vector needs 3 numbers; got {' '.join(tokens)!r}.",
                    item.line,
                )
            cell[n] = [_float(t, item, err, "System%Lattice") * lscale for t in tokens]
            pbc[n] = True
    frac = system.key("fractionalcoords")
    if frac is not None and _yes_no(frac, err, "System%FractionalCoords"):
        if lattice is None:
            raise err("System%FractionalCoords needs a Lattice block.", frac.line)
        basis = np.eye(3)
        basis[: len(lattice.items)] = cell[: len(lattice.items)]
        positions = coords @ basis
        positions[:, len(lattice.items) :] *= scale
    else:
        positions = coords * scale
    return ase.Atoms(symbols=symbols, positions=positions, cell=cell, pbc=pbc)


def _read_constraints(root: _Block, n_atoms: int, err: _ErrFn) -> list[int]:
    fixed: set[int] = set()
    for block in root.blocks("constraints"):
        for item in block.items:
            if isinstance(item, _Block) or item.name not in ("atom", "atomlist"):
                raise err(
                    f"AMS constraint {item.raw!r} is not supported; parafit reads only fixed "
                    "atoms ('Atom i' or 'AtomList i j ...').",
                    item.line,
                )
            tokens = item.value.replace("[", " ").replace("]", " ").split()
            if not tokens or (item.name == "atom" and len(tokens) != 1):
                raise err(
                    f"Constraints%{item.raw} needs atom indices; got {item.value!r}.",
                    item.line,
                )
            for t in tokens:
                i = _int(t, item, err, f"Constraints%{item.raw}")
                if not 1 <= i <= n_atoms:
                    raise err(
                        f"Constraints%{item.raw} atom {i} out of range for {n_atoms} atoms "
                        "(AMS indices are 1-based).",
                        item.line,
                    )
                fixed.add(i - 1)
    return sorted(fixed)


# --------------------------------------------------------------------------------------
# tasks


def _read_go_settings(root: _Block, err: _ErrFn) -> tuple[dict[str, Any], str | None]:
    """GeometryOptimization block -> (keyword arguments, AMS method run as lbfgs).

    Also used for the relaxations of a PES scan, as AMS does.
    """
    go = root.block("geometryoptimization")
    settings: dict[str, Any] = {
        "fmax": AMS_DEFAULT_GRADIENTS * HARTREE,
        "pretend_converged": False,  # the AMS default
    }
    ams_method = None
    if go is None:
        return settings, ams_method
    key = go.key("maxiterations")
    if key is not None:
        n = _int(key.value, key, err, "GeometryOptimization%MaxIterations")
        if n < 0:
            raise err(
                f"GeometryOptimization%MaxIterations must be >= 0; got {n}.", key.line
            )
        settings["max_iterations"] = n
    key = go.key("method")
    if key is not None:
        method = key.value.strip().lower()
        if method in _METHODS:
            settings["optimizer"] = _METHODS[method]
        else:
            settings["optimizer"] = "lbfgs"
            ams_method = key.value.strip()
    key = go.key("optimizelattice")
    if key is not None:
        settings["relax_cell"] = _yes_no(
            key, err, "GeometryOptimization%OptimizeLattice"
        )
    key = go.key("pretendconverged")
    if key is not None:
        settings["pretend_converged"] = _yes_no(
            key, err, "GeometryOptimization%PretendConverged"
        )
    conv = go.block("convergence")
    if conv is not None:
        quality = conv.key("quality")
        q = quality.value.strip().lower() if quality is not None else "custom"
        if q in _QUALITY_GRADIENTS:
            settings["fmax"] = _QUALITY_GRADIENTS[q] * HARTREE
        elif quality is not None and q != "custom":
            raise err(
                f"unknown GeometryOptimization%Convergence%Quality {quality.value!r}; use "
                "VeryBasic, Basic, Normal, Good, VeryGood or Custom.",
                quality.line,
            )
        else:
            key = conv.key("gradients")
            if key is not None:
                value, unit = _strip_unit(key.value)
                factor = _unit_factor(unit, _FORCE_UNITS, "gradients", key.line, err)
                g = _float(
                    value, key, err, "GeometryOptimization%Convergence%Gradients"
                )
                if not g > 0:
                    raise err(
                        f"Convergence%Gradients must be > 0; got {g!r}.", key.line
                    )
                settings["fmax"] = g * factor
    return settings, ams_method


def _read_scan(
    root: _Block, n_atoms: int, err: _ErrFn
) -> tuple[tuple[ScanCoordinate, ...], bool, _Block]:
    scan = root.block("pesscan")
    if scan is None:
        raise err(
            "Task PESScan needs a PESScan block with a ScanCoordinate block.", None
        )
    relaxed = True
    key = scan.key("optimize")
    if key is not None:
        relaxed = _yes_no(key, err, "PESScan%Optimize")
    blocks = scan.blocks("scancoordinate")
    if not blocks:
        raise err("PESScan has no ScanCoordinate block.", scan.line)
    if len(blocks) > 1:
        raise err(
            "PESScan with more than one ScanCoordinate block (a grid scan) is not supported; "
            "put coordinates scanned together in one ScanCoordinate block, or make one job "
            "per scan.",
            blocks[1].line,
        )
    block = blocks[0]
    n_points = AMS_DEFAULT_SCAN_POINTS
    key = block.key("npoints")
    if key is not None:
        n_points = _int(key.value, key, err, "ScanCoordinate%nPoints")
        if n_points < 1:
            raise err(f"ScanCoordinate%nPoints must be >= 1; got {n_points}.", key.line)
    needed = {"distance": 2, "angle": 3, "dihedral": 4}
    coords: list[ScanCoordinate] = []
    for item in block.items:
        if isinstance(item, _Key) and item.name == "npoints":
            continue
        if isinstance(item, _Block) or item.name not in needed:
            raise err(
                f"scan coordinate {item.raw!r} is not supported; use Distance, Angle or Dihedral.",
                item.line,
            )
        value, unit = _strip_unit(item.value)
        tokens = value.split()
        n = needed[item.name]
        if len(tokens) != n + 2:
            raise err(
                f"ScanCoordinate%{item.raw} needs {n} atom indices, a start and an end value; "
                f"got {item.value!r}.",
                item.line,
            )
        idx = []
        for t in tokens[:n]:
            i = _int(t, item, err, f"ScanCoordinate%{item.raw}")
            if not 1 <= i <= n_atoms:
                raise err(
                    f"ScanCoordinate%{item.raw} atom {i} out of range for {n_atoms} atoms "
                    "(AMS indices are 1-based).",
                    item.line,
                )
            idx.append(i - 1)
        table = _LENGTH_UNITS if item.name == "distance" else _ANGLE_UNITS
        factor = _unit_factor(unit, table, f"ScanCoordinate%{item.raw}", item.line, err)
        start, end = (
            _float(t, item, err, f"ScanCoordinate%{item.raw}") * factor
            for t in tokens[n:]
        )
        values = tuple(float(v) for v in np.linspace(start, end, n_points))
        coords.append(ScanCoordinate(kind=item.name, atoms=tuple(idx), values=values))  # type: ignore[arg-type]
    if not coords:
        raise err("ScanCoordinate has no Distance, Angle or Dihedral line.", block.line)
    return tuple(coords), relaxed, block


def _make(cls: type, kwargs: dict[str, Any], err: _ErrFn, block: _Block | None) -> Any:
    try:
        return cls(**kwargs)
    except InputError as e:
        raise err(e.message, None if block is None else block.line) from e
