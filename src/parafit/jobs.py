"""Job collection: structures plus the task to run on each.

A :class:`Job` is an ``ase.Atoms`` (positions in Å, cell, pbc) plus a task:
:class:`SinglePoint`, :class:`GeometryOptimization` or :class:`PESScan`. Jobs never
hold model parameters. A :class:`JobCollection` is an ordered map of job id -> job.

Our own YAML format (``JobCollection.save``/``load``) is documented in
``docs/file-formats.md``; ParAMS ``job_collection.yml`` files and ASE-readable files
are imported by :mod:`parafit.io`.
"""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import ase

from parafit.errors import InputError

__all__ = [
    "GeometryOptimization",
    "Job",
    "JobCollection",
    "PESScan",
    "ScanCoordinate",
    "SinglePoint",
    "Task",
]

OptimizerName = Literal["lbfgs", "bfgs", "fire", "bfgslinesearch"]


@dataclass(frozen=True, slots=True)
class SinglePoint:
    """Energy (and forces, stress, charges) at the given geometry."""

    kind: Literal["single_point"] = "single_point"


@dataclass(frozen=True, slots=True)
class GeometryOptimization:
    """Relax the geometry with an ASE optimizer.

    Attributes:
        optimizer: ASE optimizer: ``lbfgs`` (default), ``bfgs``, ``fire``, ``bfgslinesearch``.
        max_iterations: maximum optimizer steps (default 100); when reached the job's
            status gets ``GEOOPT_NOT_CONVERGED`` but its results are still used (as
            ParAMS's ``PretendConverged``) unless ``pretend_converged`` is False.
        fmax: force tolerance [eV/Å] (default 0.01).
        relax_cell: also relax the cell (ASE ``FrechetCellFilter``); periodic jobs only.
        pretend_converged: use the last geometry when not converged (default True).
    """

    optimizer: OptimizerName = "lbfgs"
    max_iterations: int = 100
    fmax: float = 0.01
    relax_cell: bool = False
    pretend_converged: bool = True
    kind: Literal["geometry_optimization"] = "geometry_optimization"

    def __post_init__(self) -> None:
        if self.optimizer not in ("lbfgs", "bfgs", "fire", "bfgslinesearch"):
            raise InputError(
                f"unknown geometry optimizer {self.optimizer!r}; use one of lbfgs, bfgs, fire, bfgslinesearch.",
                key="optimizer",
            )
        if int(self.max_iterations) < 0:
            raise InputError(
                f"max_iterations must be >= 0; got {self.max_iterations!r}.",
                key="max_iterations",
            )
        if not float(self.fmax) > 0:
            raise InputError(f"fmax must be > 0 [eV/Å]; got {self.fmax!r}.", key="fmax")


@dataclass(frozen=True, slots=True)
class ScanCoordinate:
    """One scanned internal coordinate.

    Attributes:
        kind: ``distance`` (Å), ``angle`` or ``dihedral`` (degrees).
        atoms: 0-based atom indices (2, 3 or 4 of them).
        values: the coordinate's value at each scan point, shape (n_points,).
    """

    kind: Literal["distance", "angle", "dihedral"]
    atoms: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        needed = {"distance": 2, "angle": 3, "dihedral": 4}.get(self.kind)
        if needed is None:
            raise InputError(
                f"unknown scan coordinate {self.kind!r}; use distance, angle or dihedral.",
                key="kind",
            )
        if len(self.atoms) != needed:
            raise InputError(
                f"a {self.kind} scan needs {needed} atoms; got {list(self.atoms)!r}.",
                key="atoms",
            )
        if len(self.values) < 1:
            raise InputError("a scan needs at least one value.", key="values")
        object.__setattr__(self, "atoms", tuple(int(a) for a in self.atoms))
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))


@dataclass(frozen=True, slots=True)
class PESScan:
    """Scan one or more coordinates jointly (all with the same number of points).

    At each point the coordinates are set (moving the last atom together with its
    bonded fragment, minimum image in periodic cells; see ``parafit.engines.relax``)
    and, if ``relaxed``, the rest of the structure is relaxed with the coordinates held
    by ``ase.constraints.FixInternals``, starting from the previous point's geometry.

    Attributes:
        coordinates: the scanned coordinates.
        relaxed: relax the other degrees of freedom at each point (default True).
        optimizer: as :class:`GeometryOptimization`, but ``bfgs`` by default: ASE's
            LBFGS converges slowly under FixInternals angle/dihedral constraints.
        max_iterations, fmax: as :class:`GeometryOptimization`.
    """

    coordinates: tuple[ScanCoordinate, ...]
    relaxed: bool = True
    optimizer: OptimizerName = "bfgs"
    max_iterations: int = 100
    fmax: float = 0.01
    kind: Literal["pes_scan"] = "pes_scan"

    def __post_init__(self) -> None:
        coords = tuple(self.coordinates)
        if not coords:
            raise InputError(
                "a PES scan needs at least one coordinate.", key="coordinates"
            )
        n = {len(c.values) for c in coords}
        if len(n) != 1:
            raise InputError(
                f"all scan coordinates must have the same number of points; got {sorted(n)}.",
                key="coordinates",
            )
        object.__setattr__(self, "coordinates", coords)

    @property
    def n_points(self) -> int:
        return len(self.coordinates[0].values)


Task = SinglePoint | GeometryOptimization | PESScan


@dataclass(frozen=True, slots=True)
class Job:
    """A structure and the task to run on it.

    Attributes:
        id: unique job id, used in data-set expressions (``energy('id')``).
        atoms: the structure (treated as read-only; copy before changing it).
        task: what to compute.
        reference_engine: id of the engine that made the reference data, if known.
        metadata: free metadata (source, comments, ...).
    """

    id: str
    atoms: ase.Atoms
    task: Task = field(default_factory=SinglePoint)
    reference_engine: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InputError(f"job id must be a non-empty string; got {self.id!r}.")
        if not isinstance(self.atoms, ase.Atoms) or len(self.atoms) == 0:
            raise InputError(
                f"job {self.id!r}: atoms must be a non-empty ase.Atoms.", key=self.id
            )
        n = len(self.atoms)
        if isinstance(self.task, PESScan):
            for c in self.task.coordinates:
                bad = [a for a in c.atoms if not 0 <= a < n]
                if bad:
                    raise InputError(
                        f"job {self.id!r}: scan atom index {bad[0]} out of range for {n} atoms (indices are 0-based).",
                        key=self.id,
                    )
        if (
            isinstance(self.task, GeometryOptimization)
            and self.task.relax_cell
            and not self.atoms.pbc.any()
        ):
            raise InputError(
                f"job {self.id!r}: relax_cell needs a periodic structure.", key=self.id
            )

    @property
    def n_atoms(self) -> int:
        return len(self.atoms)


class JobCollection:
    """Ordered collection of :class:`Job` with unique ids.

    Example:
        >>> from ase import Atoms
        >>> jc = JobCollection([Job("dimer", Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.8]]))])
        >>> len(jc), "dimer" in jc
        (1, True)
    """

    def __init__(self, jobs: Iterable[Job] = ()) -> None:
        self._jobs: dict[str, Job] = {}
        for job in jobs:
            self.add(job)

    def add(self, job: Job) -> None:
        """Add a job; a duplicate id raises InputError."""
        if not isinstance(job, Job):
            raise TypeError(
                f"JobCollection takes Job objects; got {type(job).__name__}."
            )
        if job.id in self._jobs:
            raise InputError(f"duplicate job id {job.id!r}.", key=job.id)
        self._jobs[job.id] = job

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __getitem__(self, job_id: str) -> Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(job_id, list(self._jobs), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise InputError(f"unknown job id {job_id!r}{hint}", key=job_id) from None

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._jobs)

    def subset(self, ids: Iterable[str]) -> "JobCollection":
        """A new collection with only the given ids, in this collection's order."""
        wanted = set(ids)
        for i in wanted:
            self[i]
        return JobCollection(j for j in self if j.id in wanted)

    def __add__(self, other: "JobCollection") -> "JobCollection":
        return JobCollection([*self, *other])

    @classmethod
    def load(cls, path: str | Path) -> "JobCollection":
        """Read a job collection; the format is chosen from the file.

        ``*.yaml``/``*.yml``: our format, or ParAMS ``job_collection.yml`` (recognized by
        its ``AMSInput`` documents); anything else: any ASE-readable file (extxyz, ASE
        db, ...), each frame a single-point job.
        """
        from parafit.io.jobs_yaml import read_job_collection

        return read_job_collection(path)

    def save(self, path: str | Path) -> None:
        """Write our YAML format atomically."""
        from parafit.io.jobs_yaml import write_job_collection

        write_job_collection(self, path)
