"""Job collections in parafit's YAML format, and the reader that picks the format.

Our format is one YAML mapping ``{format: parafit-jobs, version: 1, jobs: [...]}``;
each job gives ``id``, ``task``, ``symbols``, ``positions`` [Å] and optionally
``cell`` [Å], ``pbc``, ``reference_engine`` and ``metadata`` (documented in
``docs/file-formats.md``, section "Job collection"). Floats are written with
``repr`` so that a save + load round trip is exact.

:func:`read_job_collection` also reads ParAMS ``job_collection.yml`` files
(:mod:`parafit.io.ams_input`) and any ASE-readable structure file
(:mod:`parafit.io.ase_import`), each frame becoming a single-point job.
"""

import datetime
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ase
import numpy as np
import yaml
from ase.data import atomic_numbers

from parafit._atomic import write_text_atomic
from parafit.errors import FormatError, InputError
from parafit.jobs import (
    AngleRestraint,
    BondRestraint,
    GeometryOptimization,
    Job,
    JobCollection,
    PESScan,
    Restraint,
    ScanCoordinate,
    SinglePoint,
    Task,
    TorsionRestraint,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "job_collection_to_yaml",
    "read_job_collection",
    "write_job_collection",
]

FORMAT_NAME = "parafit-jobs"
FORMAT_VERSION = 1

_YAML_SUFFIXES = {".yaml", ".yml"}
_TOP_KEYS = ("format", "version", "jobs")
_JOB_KEYS = (
    "id",
    "task",
    "symbols",
    "positions",
    "cell",
    "pbc",
    "reference_engine",
    "metadata",
)
_TASK_KEYS: dict[str, tuple[str, ...]] = {
    "single_point": ("type",),
    "geometry_optimization": (
        "type",
        "optimizer",
        "max_iterations",
        "fmax",
        "relax_cell",
        "pretend_converged",
        "restraints",
    ),
    "pes_scan": (
        "type",
        "relaxed",
        "optimizer",
        "max_iterations",
        "fmax",
        "coordinates",
    ),
}
_COORD_KEYS = ("kind", "atoms", "values")
_RESTRAINT_KEYS = ("kind", "atoms", "target", "force_constant")
# restraint kind -> (class, number of atoms)
_RESTRAINTS: dict[str, tuple[type, int]] = {
    "bond": (BondRestraint, 2),
    "angle": (AngleRestraint, 3),
    "torsion": (TorsionRestraint, 4),
}
_RANGE_KEYS = ("start", "stop", "n_points")
_SNIFF_BYTES = 8192
# libyaml when available (much faster; same nodes, marks and values)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# extensions handed to ASE without looking inside (lowercase, with the dot)
_ASE_SUFFIXES = {
    ".xyz",
    ".extxyz",
    ".traj",
    ".db",
    ".json",
    ".cif",
    ".pdb",
    ".vasp",
    ".poscar",
    ".xsf",
    ".cube",
    ".gen",
    ".lammps-data",
    ".lmp",
    ".res",
    ".sdf",
    ".mol",
    ".con",
    ".cfg",
    ".gro",
    ".in",
    ".out",
    ".xml",
    ".nc",
    ".bgf",
}


# --------------------------------------------------------------------------------------
# public API


def read_job_collection(path: str | Path) -> JobCollection:
    """Read a job collection, choosing the format from the file.

    * ``*.yaml``/``*.yml`` (or a text file that looks like one): our format (a mapping
      with ``format: parafit-jobs``) or a ParAMS ``job_collection.yml`` (documents
      with ``AMSInput``).
    * anything else (``.xyz``, ``.extxyz``, ``.traj``, ``.db``, ``.json``, ``.cif``,
      ``.pdb``, ...): read with ASE, each frame a single-point job (see
      :func:`parafit.io.ase_import.read_ase_jobs`).

    Args:
        path: the file.

    Returns:
        The job collection, in file order.

    Raises:
        InputError: the file does not exist.
        FormatError: the file cannot be parsed; ``.path`` and, where known, ``.line``
            and ``.key`` (the job id) say where.

    Example:
        >>> import tempfile, os
        >>> from ase import Atoms
        >>> jc = JobCollection([Job("dimer", Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.8]]))])
        >>> p = os.path.join(tempfile.mkdtemp(), "jobs.yaml")
        >>> write_job_collection(jc, p)
        >>> float(read_job_collection(p)["dimer"].atoms.get_distance(0, 1))
        3.8
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            "job collection file not found. Check the path (in parafit.yaml, paths "
            "are relative to the input file).",
            path=path,
        )
    suffix = path.suffix.lower()
    if suffix == ".pkl":
        raise FormatError(
            "pickled (.pkl) ParAMS job collections are not read (unpickling runs "
            "arbitrary code); use the job_collection.yaml that ParAMS stores beside it.",
            path=path,
        )
    if suffix in _YAML_SUFFIXES or (
        suffix not in _ASE_SUFFIXES and _looks_like_yaml(path)
    ):
        text = _read_text(path)
        kind = _yaml_kind(text, path)
        if kind == "params":
            from parafit.io.ams_input import read_params_job_collection

            return read_params_job_collection(path)
        return _parse_parafit_jobs(text, path)
    from parafit.io.ase_import import read_ase_jobs

    return read_ase_jobs(path)


def write_job_collection(jc: JobCollection, path: str | Path) -> None:
    """Write ``jc`` in our YAML format, atomically (temp file + rename).

    Args:
        jc: the jobs.
        path: target file (parent folders are created).

    Raises:
        InputError: a job's metadata holds a value YAML cannot store.
    """
    write_text_atomic(path, job_collection_to_yaml(jc))


def job_collection_to_yaml(jc: JobCollection) -> str:
    """The text :func:`write_job_collection` writes (our format, version 1)."""
    doc = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "jobs": [_job_to_dict(job) for job in jc],
    }
    body = yaml.dump(
        doc,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=None,
        allow_unicode=True,
        width=100,
    )
    return "# parafit job collection (positions and cell in Å)\n" + body


# --------------------------------------------------------------------------------------
# writing


def _job_to_dict(job: Job) -> dict[str, Any]:
    atoms = job.atoms
    out: dict[str, Any] = {
        "id": job.id,
        "task": _task_to_dict(job.task),
        "symbols": list(atoms.get_chemical_symbols()),
        "positions": [[float(x) for x in row] for row in atoms.positions],
    }
    cell = np.asarray(atoms.cell[:], dtype=float)
    if np.any(cell != 0.0):
        out["cell"] = [[float(x) for x in row] for row in cell]
    if bool(np.any(atoms.pbc)):
        out["pbc"] = [bool(p) for p in atoms.pbc]
    if job.reference_engine is not None:
        out["reference_engine"] = job.reference_engine
    if job.metadata:
        out["metadata"] = _plain(dict(job.metadata), job.id, "metadata")
    return out


def _task_to_dict(task: Task) -> dict[str, Any]:
    if isinstance(task, SinglePoint):
        return {"type": "single_point"}
    if isinstance(task, GeometryOptimization):
        out: dict[str, Any] = {
            "type": "geometry_optimization",
            "optimizer": task.optimizer,
            "max_iterations": int(task.max_iterations),
            "fmax": float(task.fmax),
            "relax_cell": bool(task.relax_cell),
            "pretend_converged": bool(task.pretend_converged),
        }
        if task.restraints:
            out["restraints"] = [_restraint_to_dict(r) for r in task.restraints]
        return out
    if isinstance(task, PESScan):
        return {
            "type": "pes_scan",
            "relaxed": bool(task.relaxed),
            "optimizer": task.optimizer,
            "max_iterations": int(task.max_iterations),
            "fmax": float(task.fmax),
            "coordinates": [
                {
                    "kind": c.kind,
                    "atoms": [int(a) for a in c.atoms],
                    "values": [float(v) for v in c.values],
                }
                for c in task.coordinates
            ],
        }
    raise TypeError(f"unknown task type {type(task).__name__}")


def _restraint_to_dict(r: Restraint) -> dict[str, Any]:
    return {
        "kind": r.kind,
        "atoms": [int(a) for a in r.atoms],
        "target": float(r.target),
        "force_constant": float(r.force_constant),
    }


def _plain(value: Any, job_id: str, where: str) -> Any:
    """Turn metadata into plain YAML-safe Python (numpy -> lists/scalars)."""
    if value is None or isinstance(value, bool | int | str | datetime.date):
        return value  # dates: YAML timestamps, as PyYAML reads them
    if isinstance(value, float):
        return float(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), job_id, where)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, job_id, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, job_id, f"{where}[{i}]") for i, v in enumerate(value)]
    raise InputError(
        f"job {job_id!r}: {where} holds a {type(value).__name__}, which the job "
        "collection YAML cannot store; use numbers, strings, lists or mappings.",
        key=job_id,
    )


# --------------------------------------------------------------------------------------
# YAML helpers shared with parafit.io.ams_input


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise FormatError(f"not a UTF-8 text file ({err.reason}).", path=path) from err


def _yaml_error(err: yaml.YAMLError, path: Path) -> FormatError:
    """A FormatError with the path and 1-based line of a PyYAML error."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    line = None if mark is None else mark.line + 1
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    what = f"{context}: {problem}" if context else problem
    return FormatError(f"invalid YAML ({what}).", path=path, line=line)


def _line(node: yaml.Node | None) -> int | None:
    return None if node is None else node.start_mark.line + 1


def _child(node: yaml.Node | None, key: str | int) -> yaml.Node | None:
    """The value node under ``key`` (mapping) or at index ``key`` (sequence)."""
    if isinstance(node, yaml.MappingNode) and isinstance(key, str):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int):
        if 0 <= key < len(node.value):
            return node.value[key]
    return None


def _key_node(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k
    return None


def _duplicate_key(node: yaml.Node | None) -> tuple[str, int | None] | None:
    """The first key that appears twice in a mapping node, with its line."""
    if not isinstance(node, yaml.MappingNode):
        return None
    seen: set[str] = set()
    for k, _ in node.value:
        if isinstance(k, yaml.ScalarNode):
            if k.value in seen:
                return k.value, _line(k)
            seen.add(k.value)
    return None


def _looks_like_yaml(path: Path) -> bool:
    """A file without a known extension: is it a job-collection YAML?"""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
        text = head.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return bool(
        re.search(r"^format:\s*['\"]?parafit-jobs", text, re.MULTILINE)
        or re.search(r"^AMSInput\s*:", text, re.MULTILINE)
    )


def _yaml_kind(text: str, path: Path) -> str:
    """``"parafit"`` or ``"params"``, from the first YAML document."""
    loader = _Loader(text)
    try:
        node = None
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                break
    except yaml.YAMLError as err:
        raise _yaml_error(err, path) from err
    finally:
        loader.dispose()
    if isinstance(node, yaml.MappingNode):
        fmt = _child(node, "format")
        if isinstance(fmt, yaml.ScalarNode):
            if fmt.value == FORMAT_NAME:
                return "parafit"
            raise FormatError(
                f"unknown format {fmt.value!r}; a parafit job collection has "
                f"'format: {FORMAT_NAME}'.",
                path=path,
                line=_line(fmt),
                key="format",
            )
        if _child(node, "AMSInput") is not None or _child(node, "ID") is not None:
            return "params"
    raise FormatError(
        "not a job collection: expected a mapping with 'format: parafit-jobs' or "
        "ParAMS job documents with 'ID' and 'AMSInput'.",
        path=path,
        line=_line(node),
    )


# --------------------------------------------------------------------------------------
# reading our format


class _Ctx:
    """Where we are while reading one job: path, job id, and its YAML node."""

    def __init__(self, path: Path, job_id: str | None, node: yaml.Node | None) -> None:
        self.path = path
        self.job_id = job_id
        self.node = node

    def error(self, message: str, node: yaml.Node | None = None) -> FormatError:
        prefix = f"job {self.job_id!r}: " if self.job_id is not None else ""
        line = _line(node) if node is not None else _line(self.node)
        return FormatError(prefix + message, path=self.path, line=line, key=self.job_id)


def _parse_parafit_jobs(text: str, path: Path) -> JobCollection:
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as err:
        raise _yaml_error(err, path) from err
    finally:
        loader.dispose()
    top = _Ctx(path, None, root)
    if not isinstance(data, dict):
        raise top.error(
            "a parafit job collection is a mapping with keys format, version, jobs."
        )
    _check_keys(data, root, _TOP_KEYS, "the top level", top)
    version = data.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise FormatError(
            f"job collection format version {version!r} is not supported by this "
            f"parafit (it reads version {FORMAT_VERSION}); upgrade parafit.",
            path=path,
            line=_line(_child(root, "version")),
            key="version",
        )
    jobs_node = _child(root, "jobs")
    jobs_data = data.get("jobs")
    if jobs_data is None:
        jobs_data = []
    if not isinstance(jobs_data, list):
        raise top.error("'jobs' must be a list of job mappings.", jobs_node)
    jc = JobCollection()
    lines: dict[str, int | None] = {}
    for i, item in enumerate(jobs_data):
        node = _child(jobs_node, i)
        job = _parse_job(item, node, i, path)
        if job.id in jc:
            raise FormatError(
                f"duplicate job id {job.id!r} (first defined at line {lines[job.id]}).",
                path=path,
                line=_line(node),
                key=job.id,
            )
        jc.add(job)
        lines[job.id] = _line(node)
    return jc


def _check_keys(
    data: Mapping[str, Any],
    node: yaml.Node | None,
    allowed: Sequence[str],
    where: str,
    ctx: _Ctx,
) -> None:
    dup = _duplicate_key(node)
    if dup is not None:
        raise FormatError(
            (f"job {ctx.job_id!r}: " if ctx.job_id else "")
            + f"key {dup[0]!r} appears twice in {where}.",
            path=ctx.path,
            line=dup[1],
            key=ctx.job_id,
        )
    for key in data:
        if key not in allowed:
            import difflib

            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ctx.error(
                f"unknown key {key!r} in {where}; allowed: {', '.join(allowed)}.{hint}",
                _key_node(node, str(key)),
            )


def _parse_job(item: Any, node: yaml.Node | None, index: int, path: Path) -> Job:
    ctx = _Ctx(path, None, node)
    if not isinstance(item, dict):
        raise ctx.error(
            f"jobs[{index}] must be a mapping with id, task, symbols, positions."
        )
    raw_id = item.get("id")
    id_node = _child(node, "id")
    if raw_id is None:
        raise ctx.error(f"jobs[{index}] has no 'id'.")
    # keep the id exactly as written (an unquoted 1.0 stays "1.0")
    job_id = id_node.value if isinstance(id_node, yaml.ScalarNode) else None
    if (
        not isinstance(raw_id, str | int | float)
        or isinstance(raw_id, bool)
        or not job_id
    ):
        raise ctx.error(
            f"jobs[{index}]: 'id' must be a non-empty string; got {raw_id!r}.", id_node
        )
    ctx.job_id = job_id
    _check_keys(item, node, _JOB_KEYS, "a job", ctx)

    symbols = _parse_symbols(item.get("symbols"), _child(node, "symbols"), ctx)
    positions = _parse_matrix(
        item.get("positions"), _child(node, "positions"), ctx, "positions", len(symbols)
    )
    cell_data = item.get("cell")
    cell = None
    if cell_data is not None:
        cell_node = _child(node, "cell")
        if (
            isinstance(cell_data, list)
            and len(cell_data) == 3
            and not any(isinstance(x, list) for x in cell_data)
        ):
            cell = np.diag(
                [
                    _as_float(x, _child(cell_node, i), ctx, "cell")
                    for i, x in enumerate(cell_data)
                ]
            )
        else:
            cell = _parse_matrix(cell_data, cell_node, ctx, "cell", 3)
    pbc = _parse_pbc(item.get("pbc", False), _child(node, "pbc"), ctx)
    reference_engine = item.get("reference_engine")
    if reference_engine is not None and not isinstance(reference_engine, str):
        raise ctx.error(
            f"'reference_engine' must be a string or null; got {reference_engine!r}.",
            _child(node, "reference_engine"),
        )
    metadata = item.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ctx.error(
            f"'metadata' must be a mapping; got {metadata!r}.", _child(node, "metadata")
        )
    task = _parse_task(item.get("task"), _child(node, "task"), ctx)
    atoms = ase.Atoms(symbols=symbols, positions=positions, cell=cell, pbc=pbc)
    try:
        return Job(
            id=job_id,
            atoms=atoms,
            task=task,
            reference_engine=reference_engine,
            metadata=metadata,
        )
    except InputError as err:
        raise ctx.error(
            _strip_job_prefix(err.message, job_id), _child(node, "task")
        ) from err


def _strip_job_prefix(message: str, job_id: str) -> str:
    prefix = f"job {job_id!r}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _parse_symbols(data: Any, node: yaml.Node | None, ctx: _Ctx) -> list[str]:
    if data is None:
        raise ctx.error(
            "'symbols' is missing (a list of element symbols, e.g. [Ar, Ar])."
        )
    if not isinstance(data, list) or not data:
        raise ctx.error(
            f"'symbols' must be a non-empty list of element symbols; got {data!r}.",
            node,
        )
    out = []
    for i, s in enumerate(data):
        if not isinstance(s, str) or s not in atomic_numbers or s == "X":
            raise ctx.error(
                f"unknown element symbol {s!r} at symbols[{i}]"
                + _symbol_hint(s)
                + " Use symbols such as H, C, Ar, Cu.",
                _child(node, i),
            )
        out.append(s)
    return out


def _symbol_hint(s: Any) -> str:
    if (
        isinstance(s, str)
        and s.capitalize() in atomic_numbers
        and s.capitalize() != "X"
    ):
        return f"; did you mean {s.capitalize()!r}?"
    return "."


def _as_float(value: Any, node: yaml.Node | None, ctx: _Ctx, what: str) -> float:
    if isinstance(value, bool):
        raise ctx.error(f"{what}: expected a number; got {value!r}.", node)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    raise ctx.error(f"{what}: expected a number; got {value!r}.", node)


def _as_int(value: Any, node: yaml.Node | None, ctx: _Ctx, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.error(f"{what}: expected an integer; got {value!r}.", node)
    return int(value)


def _as_bool(value: Any, node: yaml.Node | None, ctx: _Ctx, what: str) -> bool:
    if not isinstance(value, bool):
        raise ctx.error(f"{what}: expected true or false; got {value!r}.", node)
    return value


def _parse_matrix(
    data: Any, node: yaml.Node | None, ctx: _Ctx, what: str, n_rows: int
) -> np.ndarray:
    if data is None:
        raise ctx.error(f"'{what}' is missing.")
    if not isinstance(data, list):
        raise ctx.error(
            f"'{what}' must be a list of [x, y, z] rows; got {data!r}.", node
        )
    if len(data) != n_rows:
        if what == "positions":
            msg = f"'positions' has {len(data)} rows but 'symbols' has {n_rows} atoms."
        else:
            msg = f"'{what}' must have {n_rows} rows of [x, y, z]; got {len(data)}."
        raise ctx.error(msg, node)
    out = np.empty((n_rows, 3), dtype=float)
    for i, row in enumerate(data):
        row_node = _child(node, i)
        if not isinstance(row, list) or len(row) != 3:
            raise ctx.error(f"{what}[{i}] must be [x, y, z]; got {row!r}.", row_node)
        for j, x in enumerate(row):
            v = _as_float(x, _child(row_node, j), ctx, f"{what}[{i}][{j}]")
            if not math.isfinite(v):
                raise ctx.error(
                    f"{what}[{i}][{j}] must be finite; got {v!r}.", row_node
                )
            out[i, j] = v
    return out


def _parse_pbc(data: Any, node: yaml.Node | None, ctx: _Ctx) -> list[bool]:
    if isinstance(data, bool):
        return [data] * 3
    if (
        isinstance(data, list)
        and len(data) == 3
        and all(isinstance(p, bool) for p in data)
    ):
        return list(data)
    raise ctx.error(
        f"'pbc' must be true/false or a list of 3 of them; got {data!r}.", node
    )


def _parse_task(data: Any, node: yaml.Node | None, ctx: _Ctx) -> Task:
    if data is None:
        return SinglePoint()
    if isinstance(data, str):  # shorthand: task: single_point
        data = {"type": data}
        node = None
    if not isinstance(data, dict):
        raise ctx.error(f"'task' must be a mapping with a 'type'; got {data!r}.", node)
    kind = data.get("type")
    if kind not in _TASK_KEYS:
        raise ctx.error(
            f"unknown task type {kind!r}; use one of {', '.join(_TASK_KEYS)}.",
            _child(node, "type") or node,
        )
    _check_keys(data, node, _TASK_KEYS[kind], f"a {kind} task", ctx)
    try:
        if kind == "single_point":
            return SinglePoint()
        common: dict[str, Any] = {}
        if "optimizer" in data:
            common["optimizer"] = data["optimizer"]
        if "max_iterations" in data:
            common["max_iterations"] = _as_int(
                data["max_iterations"],
                _child(node, "max_iterations"),
                ctx,
                "max_iterations",
            )
        if "fmax" in data:
            common["fmax"] = _as_float(data["fmax"], _child(node, "fmax"), ctx, "fmax")
        if kind == "geometry_optimization":
            for key in ("relax_cell", "pretend_converged"):
                if key in data:
                    common[key] = _as_bool(data[key], _child(node, key), ctx, key)
            if data.get("restraints") is not None:
                common["restraints"] = _parse_restraints(
                    data["restraints"], _child(node, "restraints"), ctx
                )
            return GeometryOptimization(**common)
        if "relaxed" in data:
            common["relaxed"] = _as_bool(
                data["relaxed"], _child(node, "relaxed"), ctx, "relaxed"
            )
        coords = _parse_coordinates(
            data.get("coordinates"), _child(node, "coordinates"), ctx
        )
        return PESScan(coordinates=coords, **common)
    except InputError as err:
        if isinstance(err, FormatError):
            raise
        bad = _child(node, err.key) if err.key else None
        raise ctx.error(err.message, bad or node) from err


def _parse_coordinates(
    data: Any, node: yaml.Node | None, ctx: _Ctx
) -> tuple[ScanCoordinate, ...]:
    if not isinstance(data, list) or not data:
        raise ctx.error(
            "a pes_scan task needs 'coordinates': a list of {kind, atoms, values}.",
            node,
        )
    out = []
    for i, c in enumerate(data):
        cnode = _child(node, i)
        if not isinstance(c, dict):
            raise ctx.error(
                f"coordinates[{i}] must be a mapping with kind, atoms, values.", cnode
            )
        _check_keys(c, cnode, _COORD_KEYS, f"coordinates[{i}]", ctx)
        atoms = c.get("atoms")
        anode = _child(cnode, "atoms")
        if not isinstance(atoms, list):
            raise ctx.error(
                f"coordinates[{i}].atoms must be a list of 0-based atom indices.",
                anode or cnode,
            )
        idx = tuple(
            _as_int(a, _child(anode, j), ctx, f"coordinates[{i}].atoms[{j}]")
            for j, a in enumerate(atoms)
        )
        values = _parse_values(c.get("values"), _child(cnode, "values"), ctx, i)
        try:
            out.append(ScanCoordinate(kind=c.get("kind"), atoms=idx, values=values))
        except InputError as err:
            bad = _child(cnode, err.key) if err.key else None
            raise ctx.error(f"coordinates[{i}]: {err.message}", bad or cnode) from err
    return tuple(out)


def _parse_restraints(
    data: Any, node: yaml.Node | None, ctx: _Ctx
) -> tuple[Restraint, ...]:
    """``restraints: [{kind, atoms, target, force_constant}, ...]`` -> restraint objects."""
    if not isinstance(data, list):
        raise ctx.error(
            "'restraints' must be a list of {kind, atoms, target, force_constant}.",
            node,
        )
    out: list[Restraint] = []
    for i, r in enumerate(data):
        rnode = _child(node, i)
        what = f"restraints[{i}]"
        if not isinstance(r, dict):
            raise ctx.error(
                f"{what} must be a mapping with kind, atoms, target, force_constant.",
                rnode,
            )
        _check_keys(r, rnode, _RESTRAINT_KEYS, what, ctx)
        missing = [k for k in _RESTRAINT_KEYS if k not in r]
        if missing:
            raise ctx.error(f"{what} is missing {', '.join(missing)}.", rnode)
        kind = r["kind"]
        if kind not in _RESTRAINTS:
            raise ctx.error(
                f"{what}: unknown restraint kind {kind!r}; use bond, angle or torsion.",
                _child(rnode, "kind"),
            )
        cls, n_atoms = _RESTRAINTS[kind]
        anode = _child(rnode, "atoms")
        atoms = r["atoms"]
        if not isinstance(atoms, list) or len(atoms) != n_atoms:
            raise ctx.error(
                f"{what}: a {kind} restraint needs a list of {n_atoms} 0-based atom "
                f"indices; got {atoms!r}.",
                anode or rnode,
            )
        idx = [
            _as_int(a, _child(anode, j), ctx, f"{what}.atoms[{j}]")
            for j, a in enumerate(atoms)
        ]
        target = _as_float(r["target"], _child(rnode, "target"), ctx, f"{what}.target")
        k = _as_float(
            r["force_constant"],
            _child(rnode, "force_constant"),
            ctx,
            f"{what}.force_constant",
        )
        try:
            out.append(cls(*idx, target, k))
        except InputError as err:
            bad = _child(rnode, err.key) if err.key else None
            raise ctx.error(f"{what}: {err.message}", bad or rnode) from err
    return tuple(out)


def _parse_values(
    data: Any, node: yaml.Node | None, ctx: _Ctx, i: int
) -> tuple[float, ...]:
    what = f"coordinates[{i}].values"
    if isinstance(data, dict):
        _check_keys(data, node, _RANGE_KEYS, what, ctx)
        missing = [k for k in _RANGE_KEYS if k not in data]
        if missing:
            raise ctx.error(
                f"{what} needs start, stop and n_points; missing {', '.join(missing)}.",
                node,
            )
        start = _as_float(data["start"], _child(node, "start"), ctx, f"{what}.start")
        stop = _as_float(data["stop"], _child(node, "stop"), ctx, f"{what}.stop")
        n = _as_int(data["n_points"], _child(node, "n_points"), ctx, f"{what}.n_points")
        if n < 1:
            raise ctx.error(
                f"{what}.n_points must be >= 1; got {n}.", _child(node, "n_points")
            )
        return tuple(float(v) for v in np.linspace(start, stop, n))
    if isinstance(data, list) and data:
        return tuple(
            _as_float(v, _child(node, j), ctx, f"{what}[{j}]")
            for j, v in enumerate(data)
        )
    raise ctx.error(
        f"{what} must be a list of numbers or {{start, stop, n_points}}; got {data!r}.",
        node,
    )
