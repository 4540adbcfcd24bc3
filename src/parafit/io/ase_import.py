"""Import ASE-readable files (extxyz, ASE trajectories and databases, ...) as jobs and data.

The equivalent of ParAMS's ``ResultsImporter`` for files ASE can read: each frame
becomes a single-point :class:`~parafit.jobs.Job`, and the frame's reference
energy [eV], forces [eV/Å] and stress [eV/Å^3, Voigt 6] become data-set entries
``energy('<id>')``, ``forces('<id>')`` and ``stress('<id>')``.

Reference values come from the frame's calculator results (what ``ase.io.read``
gives for extxyz and trajectories), else from tolerant aliases in ``atoms.info``
and ``atoms.arrays`` (``Energy``, ``REF_energy``, ``force``, ``virial``, ...).
A quantity missing from a frame is skipped for that frame, listed in the job's
metadata ``missing_reference`` and counted in a log warning.
"""

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ase
import numpy as np
from ase.stress import full_3x3_to_voigt_6_stress

from parafit.errors import FormatError, InputError
from parafit.jobs import Job, JobCollection, SinglePoint
from parafit.units import EV, EV_PER_ANGSTROM, EV_PER_ANGSTROM3

if TYPE_CHECKING:
    from parafit.dataset import DataSet

__all__ = [
    "ENERGY_KEYS",
    "FORCES_KEYS",
    "ID_KEYS",
    "STRESS_KEYS",
    "import_ase_file",
    "read_ase_jobs",
]

logger = logging.getLogger(__name__)

ID_KEYS: tuple[str, ...] = ("id", "name", "ID")
ENERGY_KEYS: tuple[str, ...] = (
    "energy",
    "Energy",
    "total_energy",
    "free_energy",
    "E",
    "REF_energy",
    "ref_energy",
    "dft_energy",
)
FORCES_KEYS: tuple[str, ...] = (
    "forces",
    "force",
    "Forces",
    "REF_forces",
    "ref_forces",
    "dft_forces",
)
STRESS_KEYS: tuple[str, ...] = (
    "stress",
    "virial",
)  # virial [eV]: stress = -virial / volume

_DB_SUFFIXES = {".db", ".json"}


@dataclass
class _Frame:
    """One structure read from the file, with what it carries."""

    atoms: ase.Atoms
    number: int  # frame index in the file (or in the selection, see _frame_numbers)
    results: Mapping[str, Any]  # calculator results
    info: dict[str, Any]
    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------
# public API


def read_ase_jobs(
    path: str | Path,
    *,
    index: str | int = ":",
    id_prefix: str | None = None,
    format: str | None = None,
) -> JobCollection:
    """Read an ASE-readable file as single-point jobs (no reference data).

    Args:
        path: any file ``ase.io.read`` reads (extxyz, traj, cif, pdb, ...), or an ASE
            database (``.db``, ``.json``).
        index: which frames, in ASE's syntax (``":"`` all, ``"-1"`` last, ``"0:10:2"``).
        id_prefix: prefix of generated job ids (default: the file's stem).
        format: ASE format name, when the extension does not tell.

    Returns:
        One single-point job per frame; ids from ``atoms.info`` keys ``id``,
        ``name`` or ``ID`` (database: key-value pairs ``name``/``ID``), else
        ``<prefix>_<frame:04d>``.

    Raises:
        InputError: the file does not exist.
        FormatError: ASE cannot read it, or two frames have the same id.

    Example:
        >>> import tempfile, os, ase.io
        >>> from ase import Atoms
        >>> p = os.path.join(tempfile.mkdtemp(), "dimers.xyz")
        >>> ase.io.write(p, [Atoms("Ar2", positions=[[0, 0, 0], [0, 0, d]]) for d in (3.6, 3.8)])
        >>> read_ase_jobs(p).ids
        ('dimers_0000', 'dimers_0001')
    """
    path = Path(path)
    frames = _read_frames(path, index=index, format=format)
    jobs = _make_jobs(frames, path, id_prefix, {})
    return JobCollection(jobs)


def import_ase_file(
    path: str | Path,
    *,
    index: str | int = ":",
    id_prefix: str | None = None,
    energy: bool = True,
    forces: bool = True,
    stress: bool = False,
    energy_sigma: float | None = None,
    forces_sigma: float | None = None,
    relative_energies: bool = False,
    format: str | None = None,
) -> "tuple[JobCollection, DataSet]":
    """Import an ASE-readable file as single-point jobs plus a data set of references.

    Args:
        path: any file ``ase.io.read`` reads, or an ASE database (``.db``, ``.json``).
        index: which frames, in ASE's syntax (``":"`` all).
        id_prefix: prefix of generated job ids (default: the file's stem).
        energy: add energy entries (``energy('<id>')``, unit eV).
        forces: add force entries (``forces('<id>')``, reference of shape
            (n_atoms, 3) [eV/Å]).
        stress: add stress entries (``stress('<id>')``, Voigt 6 [eV/Å^3]).
        energy_sigma: sigma of energy entries [eV]; None: the extractor's default.
        forces_sigma: sigma of force entries [eV/Å]; None: the extractor's default.
        relative_energies: instead of absolute energies, add
            ``energy('<id>') - energy('<ref>')`` relative to the lowest-energy frame
            (that frame gets no energy entry).
        format: ASE format name, when the extension does not tell.

    Returns:
        ``(jobs, data_set)``. A frame lacking a requested quantity gets no entry
        for it; the job's metadata ``missing_reference`` lists what was missing.

    Raises:
        InputError: the file does not exist.
        FormatError: ASE cannot read it, a reference has the wrong shape, or two
            frames have the same id.

    Example:
        >>> import tempfile, os, ase.io
        >>> from ase import Atoms
        >>> from ase.calculators.singlepoint import SinglePointCalculator
        >>> a = Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.8]])
        >>> a.calc = SinglePointCalculator(a, energy=-0.01, forces=[[0, 0, 0.1], [0, 0, -0.1]])
        >>> p = os.path.join(tempfile.mkdtemp(), "ar.extxyz")
        >>> ase.io.write(p, a)
        >>> jobs, ds = import_ase_file(p)
        >>> [e.expression for e in ds]
        ["energy('ar_0000')", "forces('ar_0000')"]
    """
    from parafit.dataset import DataSet

    path = Path(path)
    for name, sigma in (("energy_sigma", energy_sigma), ("forces_sigma", forces_sigma)):
        if sigma is not None and (
            isinstance(sigma, bool)
            or not isinstance(sigma, int | float)
            or not sigma > 0
        ):
            raise InputError(
                f"import_ase_file({name}=...) must be > 0 or None; got {sigma!r}.",
                key=name,
            )
    frames = _read_frames(path, index=index, format=format)

    refs: list[dict[str, Any]] = []
    for frame in frames:
        ref: dict[str, Any] = {}
        if energy:
            ref["energy"] = _find_energy(frame)
        if forces:
            ref["forces"] = _find_forces(frame, path)
        if stress:
            ref["stress"] = _find_stress(frame, path)
        refs.append(ref)
    missing_by_frame = [[q for q, v in ref.items() if v is None] for ref in refs]
    jobs = _make_jobs(frames, path, id_prefix, dict(enumerate(missing_by_frame)))

    missing: dict[str, list[str]] = {}
    for job, missed in zip(jobs, missing_by_frame, strict=True):
        for q in missed:
            missing.setdefault(q, []).append(job.id)
    for q, ids in missing.items():
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        logger.warning(
            "%s: %d of %d frames have no %s reference; their %s entries are skipped (%s).",
            path,
            len(ids),
            len(frames),
            q,
            q,
            shown,
        )

    ds = DataSet()
    ref_id = None
    ref_energy = 0.0
    if energy and relative_energies:
        with_energy = [
            (ref["energy"], job.id)
            for job, ref in zip(jobs, refs, strict=True)
            if ref["energy"] is not None
        ]
        if with_energy:
            ref_energy, ref_id = min(with_energy, key=lambda t: t[0])
            formulas = {
                jobs[i].atoms.get_chemical_formula()
                for i, r in enumerate(refs)
                if r["energy"] is not None
            }
            if len(formulas) > 1:
                logger.warning(
                    "%s: relative energies across %d different compositions (%s); they are "
                    "only meaningful for frames of one composition.",
                    path,
                    len(formulas),
                    ", ".join(sorted(formulas)),
                )
    for job, ref in zip(jobs, refs, strict=True):
        meta = {"source": str(path), "frame": job.metadata.get("frame")}
        e = ref.get("energy")
        if e is not None:
            if not relative_energies:
                ds.add_entry(
                    f"energy({_quote(job.id)})",
                    e,
                    sigma=energy_sigma,
                    unit=EV,
                    metadata=meta,
                )
            elif job.id != ref_id:
                ds.add_entry(
                    f"energy({_quote(job.id)}) - energy({_quote(ref_id or '')})",
                    e - ref_energy,
                    sigma=energy_sigma,
                    unit=EV,
                    metadata={**meta, "relative_to": ref_id},
                )
        f = ref.get("forces")
        if f is not None:
            ds.add_entry(
                f"forces({_quote(job.id)})",
                f,
                sigma=forces_sigma,
                unit=EV_PER_ANGSTROM,
                metadata=meta,
            )
        s = ref.get("stress")
        if s is not None:
            ds.add_entry(
                f"stress({_quote(job.id)})", s, unit=EV_PER_ANGSTROM3, metadata=meta
            )
    return JobCollection(jobs), ds


# --------------------------------------------------------------------------------------
# reading frames


def _read_frames(path: Path, *, index: str | int, format: str | None) -> list[_Frame]:
    if not path.is_file():
        raise InputError("structure file not found.", path=path)
    is_db = format in ("db", "json") or (
        format is None and path.suffix.lower() in _DB_SUFFIXES
    )
    try:
        frames = _read_db(path, index) if is_db else _read_ase_io(path, index, format)
    except (InputError, FormatError):
        raise
    except Exception as err:  # ASE raises many types for a malformed file
        raise FormatError(
            f"ASE cannot read this file ({type(err).__name__}: {err}). Check the file, or "
            "pass format= (an ASE format name) if the extension is misleading.",
            path=path,
        ) from err
    if not frames:
        raise FormatError(f"no structures found (index={index!r}).", path=path)
    return frames


def _frame_numbers(index: str | int, n_selected: int) -> list[int]:
    """Frame numbers in the file for a selection, where the index tells them.

    A non-negative int or a slice with non-negative start and positive step gives
    the file's frame numbers; otherwise the positions in the selection are used.
    """
    from ase.io.formats import string2index

    sel = string2index(index) if isinstance(index, str) else index
    if isinstance(sel, int):
        return [sel] if sel >= 0 else list(range(n_selected))
    start = 0 if sel.start is None else sel.start
    step = 1 if sel.step is None else sel.step
    if start >= 0 and step > 0:
        return [start + k * step for k in range(n_selected)]
    return list(range(n_selected))


def _read_ase_io(path: Path, index: str | int, format: str | None) -> list[_Frame]:
    import ase.io

    read = ase.io.read(path, index=index, format=format)
    images = [read] if isinstance(read, ase.Atoms) else list(read)
    numbers = _frame_numbers(index, len(images))
    frames = []
    for number, atoms in zip(numbers, images, strict=True):
        results = dict(getattr(atoms.calc, "results", None) or {})
        frames.append(
            _Frame(
                atoms=atoms,
                number=number,
                results=results,
                info=dict(atoms.info),
                arrays={
                    k: v
                    for k, v in atoms.arrays.items()
                    if k not in ("numbers", "positions")
                },
            )
        )
    return frames


def _read_db(path: Path, index: str | int) -> list[_Frame]:
    import ase.db
    from ase.io.formats import string2index

    with ase.db.connect(path) as db:
        rows = list(db.select())
    sel = string2index(index) if isinstance(index, str) else index
    picked = [rows[sel]] if isinstance(sel, int) else rows[sel]
    numbers = _frame_numbers(index, len(picked))
    frames = []
    for number, row in zip(numbers, picked, strict=True):
        atoms = row.toatoms()
        results = {
            k: row.get(k)
            for k in ("energy", "free_energy", "forces", "stress")
            if row.get(k) is not None
        }
        kvp = dict(row.key_value_pairs)
        data = dict(row.get("data") or {})
        arrays = {k: np.asarray(v) for k, v in data.items() if np.ndim(v) == 2}
        info = {**{k: v for k, v in data.items() if np.ndim(v) != 2}, **kvp}
        frames.append(
            _Frame(
                atoms=atoms,
                number=number,
                results=results,
                info=info,
                arrays=arrays,
                metadata={"db_id": int(row.id), "key_value_pairs": kvp}
                if kvp
                else {"db_id": int(row.id)},
            )
        )
    return frames


# --------------------------------------------------------------------------------------
# jobs


def _make_jobs(
    frames: Sequence[_Frame],
    path: Path,
    id_prefix: str | None,
    missing: Mapping[int, list[str]],
) -> list[Job]:
    prefix = path.stem if id_prefix is None else id_prefix
    jobs: list[Job] = []
    seen: dict[str, int] = {}
    for k, frame in enumerate(frames):
        job_id = _frame_id(frame) or f"{prefix}_{frame.number:04d}"
        if job_id in seen:
            raise FormatError(
                f"frames {seen[job_id]} and {frame.number} both have id {job_id!r}; make "
                "the names unique, or remove them so ids are generated from id_prefix.",
                path=path,
                key=job_id,
            )
        seen[job_id] = frame.number
        _check_id(job_id, path)
        metadata: dict[str, Any] = {
            "source": str(path),
            "frame": frame.number,
            **frame.metadata,
        }
        extra = _scalar_info(frame.info)
        if extra and "key_value_pairs" not in metadata:
            metadata["info"] = extra
        fixed = _fixed_atoms(frame.atoms)
        if fixed:
            metadata["fixed_atoms"] = fixed
        if missing.get(k):
            metadata["missing_reference"] = list(missing[k])
        a = frame.atoms
        atoms = ase.Atoms(
            numbers=a.numbers.copy(),
            positions=np.array(a.positions, dtype=float),
            cell=np.array(a.cell[:], dtype=float),
            pbc=a.pbc.copy(),
        )
        jobs.append(Job(id=job_id, atoms=atoms, task=SinglePoint(), metadata=metadata))
    return jobs


def _frame_id(frame: _Frame) -> str | None:
    for key in ID_KEYS:
        value = frame.info.get(key)
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str) and value:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def _check_id(job_id: str, path: Path) -> None:
    if ("'" in job_id and '"' in job_id) or "\n" in job_id:
        raise FormatError(
            f"job id {job_id!r} cannot be written in a data-set expression (it holds both "
            "quote characters or a newline); rename the frame.",
            path=path,
            key=job_id,
        )


def _quote(job_id: str) -> str:
    return f'"{job_id}"' if "'" in job_id else f"'{job_id}'"


_USED_INFO_KEYS = frozenset(ID_KEYS) | frozenset(ENERGY_KEYS) | frozenset(STRESS_KEYS)


def _scalar_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """Plain scalar entries of ``atoms.info`` (e.g. ``config_type``) worth keeping."""
    out: dict[str, Any] = {}
    for k, v in info.items():
        if k in _USED_INFO_KEYS:
            continue
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, bool | int | str) or (
            isinstance(v, float) and math.isfinite(v)
        ):
            out[str(k)] = v
    return out


def _fixed_atoms(atoms: ase.Atoms) -> list[int]:
    from ase.constraints import FixAtoms

    fixed: set[int] = set()
    for c in atoms.constraints:
        if isinstance(c, FixAtoms):
            fixed.update(int(i) for i in c.get_indices())
    return sorted(fixed)


# --------------------------------------------------------------------------------------
# reference values


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(np.asarray(value, dtype=float).reshape(()))
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _find_energy(frame: _Frame) -> float | None:
    """Energy [eV]: calculator results, then ``atoms.info`` aliases (ENERGY_KEYS)."""
    e = _scalar(frame.results.get("energy"))
    if e is not None:
        return e
    for key in ENERGY_KEYS:
        e = _scalar(frame.info.get(key))
        if e is not None:
            return e
    return _scalar(frame.results.get("free_energy"))


def _find_forces(frame: _Frame, path: Path) -> np.ndarray | None:
    """Forces (n_atoms, 3) [eV/Å]: calculator results, then ``atoms.arrays`` aliases."""
    n = len(frame.atoms)
    candidates = [("forces", frame.results.get("forces"))]
    candidates += [(key, frame.arrays.get(key)) for key in FORCES_KEYS]
    for key, value in candidates:
        if value is None:
            continue
        f = np.array(value, dtype=float)
        if f.shape != (n, 3):
            raise FormatError(
                f"frame {frame.number}: forces {key!r} have shape {f.shape}, expected ({n}, 3).",
                path=path,
                key=key,
            )
        if not np.all(np.isfinite(f)):
            return None
        return f
    return None


def _find_stress(frame: _Frame, path: Path) -> np.ndarray | None:
    """Stress, Voigt 6 [eV/Å^3]: results, ``info['stress']``, or ``-info['virial']/volume``."""
    for key, value in (
        ("stress", frame.results.get("stress")),
        ("stress", frame.info.get("stress")),
    ):
        if value is not None:
            return _voigt(value, key, frame, path)
    virial = frame.info.get("virial")
    if virial is None:
        return None
    volume = abs(float(np.linalg.det(frame.atoms.cell[:])))
    if not volume > 0:
        raise FormatError(
            f"frame {frame.number}: a virial needs a cell with a volume to give a stress.",
            path=path,
            key="virial",
        )
    v = _voigt(virial, "virial", frame, path)
    return None if v is None else -v / volume


def _voigt(value: Any, key: str, frame: _Frame, path: Path) -> np.ndarray | None:
    s = np.array(value, dtype=float)
    if s.shape == (9,):
        s = s.reshape(3, 3)
    if s.shape == (3, 3):
        s = full_3x3_to_voigt_6_stress(s)
    elif s.shape != (6,):
        raise FormatError(
            f"frame {frame.number}: {key!r} has shape {s.shape}, expected (6,), (9,) or (3, 3).",
            path=path,
            key=key,
        )
    return s if np.all(np.isfinite(s)) else None
