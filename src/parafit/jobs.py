"""Job collection: structures plus the task to run on each.

A :class:`Job` is an ``ase.Atoms`` (positions in Å, cell, pbc) plus a task:
:class:`SinglePoint`, :class:`GeometryOptimization` or :class:`PESScan`. Jobs never
hold model parameters. A :class:`JobCollection` is an ordered map of job id -> job.

Our own YAML format (``JobCollection.save``/``load``) is documented in
``docs/file-formats.md``; ParAMS ``job_collection.yml`` files and ASE-readable files
are imported by :mod:`parafit.io`.
"""

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import ase
import numpy as np

from parafit.errors import InputError

__all__ = [
    "AngleRestraint",
    "BondRestraint",
    "GeometryOptimization",
    "Job",
    "JobCollection",
    "PESScan",
    "Restraint",
    "ScanCoordinate",
    "SinglePoint",
    "Task",
    "TorsionRestraint",
]

OptimizerName = Literal["lbfgs", "bfgs", "fire", "bfgslinesearch"]


@dataclass(frozen=True, slots=True)
class SinglePoint:
    """Energy (and forces, stress, charges) at the given geometry."""

    kind: Literal["single_point"] = "single_point"


def _restraint_atoms(kind: str, atoms: tuple[object, ...]) -> tuple[int, ...]:
    """Validated 0-based atom indices of a restraint: integers >= 0, all distinct."""
    out = []
    for a in atoms:
        if isinstance(a, bool) or not isinstance(a, int | np.integer):
            raise InputError(
                f"{kind} restraint: atom index must be an integer; got {a!r}.",
                key="atoms",
            )
        if int(a) < 0:
            raise InputError(
                f"{kind} restraint: atom index must be >= 0 (indices are 0-based); got {a!r}.",
                key="atoms",
            )
        out.append(int(a))
    if len(set(out)) != len(out):
        raise InputError(
            f"{kind} restraint: atom indices must be distinct; got {out!r}.",
            key="atoms",
        )
    return tuple(out)


def _restraint_number(kind: str, what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise InputError(
            f"{kind} restraint: {what} must be a number; got {value!r}.", key=what
        )
    v = float(value)  # type: ignore[arg-type]
    if not math.isfinite(v):
        raise InputError(
            f"{kind} restraint: {what} must be finite; got {value!r}.", key=what
        )
    if what == "force_constant" and v < 0:
        raise InputError(
            f"{kind} restraint: force_constant must be >= 0; got {value!r}.", key=what
        )
    return v


@dataclass(frozen=True, slots=True)
class BondRestraint:
    """Harmonic distance restraint ``E = k/2 (r - target)^2`` between atoms i and j.

    Used only to drive a :class:`GeometryOptimization`; the reported energy and
    forces are the model's, without the restraint. Distances are minimum-image in
    periodic cells.

    Attributes:
        i, j: 0-based atom indices.
        target: target distance [Å] (> 0).
        force_constant: k [eV/Å^2] (>= 0).
    """

    i: int
    j: int
    target: float
    force_constant: float
    kind: Literal["bond"] = "bond"

    def __post_init__(self) -> None:
        i, j = _restraint_atoms("bond", (self.i, self.j))
        object.__setattr__(self, "i", i)
        object.__setattr__(self, "j", j)
        target = _restraint_number("bond", "target", self.target)
        if not target > 0:
            raise InputError(
                f"bond restraint: target must be > 0 [Å]; got {self.target!r}.",
                key="target",
            )
        object.__setattr__(self, "target", target)
        object.__setattr__(
            self,
            "force_constant",
            _restraint_number("bond", "force_constant", self.force_constant),
        )

    @property
    def atoms(self) -> tuple[int, int]:
        return (self.i, self.j)


@dataclass(frozen=True, slots=True)
class AngleRestraint:
    """Harmonic angle restraint ``E = k/2 (theta - target)^2``, angle i-j-k with vertex j.

    The deviation is taken in radians. Used only to drive a
    :class:`GeometryOptimization` (the reported energy is the model's).

    Attributes:
        i, j, k: 0-based atom indices (j is the vertex).
        target: target angle [degrees, 0 to 180].
        force_constant: k [eV/rad^2] (>= 0).
    """

    i: int
    j: int
    k: int
    target: float
    force_constant: float
    kind: Literal["angle"] = "angle"

    def __post_init__(self) -> None:
        i, j, k = _restraint_atoms("angle", (self.i, self.j, self.k))
        object.__setattr__(self, "i", i)
        object.__setattr__(self, "j", j)
        object.__setattr__(self, "k", k)
        target = _restraint_number("angle", "target", self.target)
        if not 0.0 <= target <= 180.0:
            raise InputError(
                f"angle restraint: target must be from 0 to 180 degrees; got {self.target!r}.",
                key="target",
            )
        object.__setattr__(self, "target", target)
        object.__setattr__(
            self,
            "force_constant",
            _restraint_number("angle", "force_constant", self.force_constant),
        )

    @property
    def atoms(self) -> tuple[int, int, int]:
        return (self.i, self.j, self.k)


@dataclass(frozen=True, slots=True)
class TorsionRestraint:
    """Harmonic torsion restraint ``E = k/2 d^2`` on the dihedral angle i-j-k-l.

    ``d`` is the signed difference between the dihedral (IUPAC sign convention, as
    ``ase.Atoms.get_dihedral``) and ``target``, wrapped to [-180, 180) degrees and
    taken in radians. Used only to drive a :class:`GeometryOptimization`.

    Attributes:
        i, j, k, l: 0-based atom indices.
        target: target dihedral [degrees]; any value, e.g. -60 and 300 are the same.
        force_constant: k [eV/rad^2] (>= 0).
    """

    i: int
    j: int
    k: int
    l: int  # noqa: E741
    target: float
    force_constant: float
    kind: Literal["torsion"] = "torsion"

    def __post_init__(self) -> None:
        atoms = _restraint_atoms("torsion", (self.i, self.j, self.k, self.l))
        for name, value in zip("ijkl", atoms, strict=True):
            object.__setattr__(self, name, value)
        object.__setattr__(
            self, "target", _restraint_number("torsion", "target", self.target)
        )
        object.__setattr__(
            self,
            "force_constant",
            _restraint_number("torsion", "force_constant", self.force_constant),
        )

    @property
    def atoms(self) -> tuple[int, int, int, int]:
        return (self.i, self.j, self.k, self.l)


Restraint = BondRestraint | AngleRestraint | TorsionRestraint


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
        restraints: harmonic :class:`BondRestraint`, :class:`AngleRestraint` and
            :class:`TorsionRestraint` added to the model while relaxing (default
            none); the reported energy and forces are the model's own.
    """

    optimizer: OptimizerName = "lbfgs"
    max_iterations: int = 100
    fmax: float = 0.01
    relax_cell: bool = False
    pretend_converged: bool = True
    restraints: tuple[Restraint, ...] = ()
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
        restraints = tuple(self.restraints)
        for r in restraints:
            if not isinstance(r, BondRestraint | AngleRestraint | TorsionRestraint):
                raise InputError(
                    "restraints must be BondRestraint, AngleRestraint or TorsionRestraint "
                    f"objects; got {type(r).__name__}.",
                    key="restraints",
                )
        object.__setattr__(self, "restraints", restraints)


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
        if isinstance(self.task, GeometryOptimization):
            for r in self.task.restraints:
                bad = [a for a in r.atoms if not 0 <= a < n]
                if bad:
                    raise InputError(
                        f"job {self.id!r}: {r.kind} restraint atom index {bad[0]} out of range "
                        f"for {n} atoms (indices are 0-based).",
                        key=self.id,
                    )
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

    def with_frozen_geometries(self) -> "JobCollection":
        """A copy in which every geometry optimization is a single point at its input geometry.

        The cheap first stage of a fit ("frozen geometries"): no relaxation, so the
        loss costs one energy-and-force call per job. PES scans are kept as they are.
        What a data set reads of a relaxed geometry (distances, cell) is then the
        input geometry's, a constant of the fit.
        """
        return JobCollection(
            replace(j, task=SinglePoint())
            if isinstance(j.task, GeometryOptimization)
            else j
            for j in self
        )

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
