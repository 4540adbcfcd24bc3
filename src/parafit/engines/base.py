"""The engine contract: batches of parameter vectors in, per-job results out.

An engine is set up once for a job collection and the model's parameter names
(:meth:`Engine.setup`), which returns an :class:`EngineFn`: a callable from a batch of
full parameter vectors, shape ``(n_vectors, n_params)``, to one :class:`JobResults`
per job. Nothing in an evaluation raises for a bad parameter vector: the affected
results are NaN and the job's ``status`` carries :class:`Status` flags.

Differentiable engines (``is_differentiable = True``) return a
:class:`DifferentiableEngineFn`: called with ``grad_indices`` (columns of the full
parameter vector), it also fills :attr:`JobResults.jacobians`, the exact derivatives of
its results with respect to those parameters (see docs/gradients.md).
"""

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from parafit._registry import Registry

if TYPE_CHECKING:
    from parafit.jobs import Job
    from parafit.parameters import ParameterInterface

__all__ = [
    "ENGINES",
    "JACOBIAN_FIELDS",
    "DifferentiableEngineFn",
    "Engine",
    "EngineFn",
    "JobResults",
    "Status",
    "register_engine",
]


class Status(enum.IntFlag):
    """Per (vector, job) status bits; ``OK`` is 0."""

    OK = 0
    FAILED = 1  # the engine raised or returned non-finite values
    GEOOPT_NOT_CONVERGED = 2
    SCF_NOT_CONVERGED = 4
    NEIGHBOUR_OVERFLOW = 8


# JobResults fields an engine may give parameter jacobians for.
JACOBIAN_FIELDS: frozenset[str] = frozenset(
    {"energy", "forces", "stress", "charges", "positions", "scan_energies"}
)


@dataclass(frozen=True, slots=True)
class JobResults:
    """Results of one job for a batch of parameter vectors (internal units).

    Attributes:
        energy: (n_vectors,) [eV]; for a PES scan the energy of its lowest point.
        forces: (n_vectors, n_atoms, 3) [eV/Å] at the final geometry, or None.
        stress: (n_vectors, 6) Voigt [eV/Å^3] at the final geometry, or None.
        charges: (n_vectors, n_atoms) [e], or None.
        positions: (n_vectors, n_atoms, 3) [Å] final geometry (input geometry for
            single points).
        cell: (n_vectors, 3, 3) [Å] final cell.
        pbc: (3,) periodic directions.
        scan_energies: (n_vectors, n_points) [eV] energy at each scan point, or None.
        scan_coordinates: (n_vectors, n_points, n_coordinates) actual coordinate
            values [Å or degrees] at each point, or None.
        scan_positions: (n_vectors, n_points, n_atoms, 3) [Å] geometry at each point, or None.
        status: (n_vectors,) int array of :class:`Status` flags.
        n_steps: (n_vectors,) optimizer steps used (0 for single points).
        jacobians: None, or field name -> ``d field / d params[grad_indices]`` of shape
            ``field.shape + (n_grad,)`` (e.g. energy (n_vectors, n_grad) [eV per
            parameter unit], positions (n_vectors, n_atoms, 3, n_grad)) for the fields
            of :data:`JACOBIAN_FIELDS` a differentiable engine computes; only when
            asked for with ``grad_indices``. NaN for failed vectors, and for vectors or
            fields whose derivative the engine cannot give (the objective then falls
            back to finite differences for those vectors).
    """

    energy: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    status: np.ndarray
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    charges: np.ndarray | None = None
    scan_energies: np.ndarray | None = None
    scan_coordinates: np.ndarray | None = None
    scan_positions: np.ndarray | None = None
    n_steps: np.ndarray | None = None
    jacobians: Mapping[str, np.ndarray] | None = None

    @property
    def n_vectors(self) -> int:
        return int(self.energy.shape[0])

    @property
    def is_ok(self) -> np.ndarray:
        """(n_vectors,) bool: no FAILED bit and a finite energy."""
        return ((self.status & Status.FAILED) == 0) & np.isfinite(self.energy)


@runtime_checkable
class EngineFn(Protocol):
    """A set-up engine: ``fn(params) -> {job_id: JobResults}``.

    ``params`` has shape (n_vectors, n_params), in the order of the parameter names
    the engine was set up with. Must not raise for a bad vector.
    """

    def __call__(self, params: np.ndarray, /) -> dict[str, JobResults]: ...


@runtime_checkable
class DifferentiableEngineFn(Protocol):
    """The set-up function of an engine whose ``is_differentiable`` is True.

    ``fn(params, grad_indices=None)``: as :class:`EngineFn`; with ``grad_indices``
    (a sequence of n_grad column indices into the full parameter vector, shape
    (n_params,)), every returned :class:`JobResults` also has ``jacobians``: for each
    field of :data:`JACOBIAN_FIELDS` the engine computes, ``d field / d
    params[:, grad_indices]`` with shape ``field.shape + (n_grad,)``, in internal units
    per parameter unit. ``grad_indices=None`` gives no jacobians (``jacobians`` None),
    so a plain evaluation costs nothing extra.

    Rules for tasks that move atoms (the objective relies on them):

    * geometry optimization: ``positions`` is the derivative of the relaxed geometry,
      ``dx*/dθ = -H^-1 d(grad_x E)/dθ`` (implicit function theorem, H the Hessian at
      the minimum; rigid-body modes projected out), and the energy's is the partial
      derivative at fixed positions (envelope theorem: the forces vanish there).
    * a field whose derivative the engine cannot give (a cell relaxation, a relaxed
      scan, a geometry that did not converge) is NaN (or missing from ``jacobians``);
      never an approximate value. The objective then takes that vector's gradient by
      finite differences and says so in the log.

    Must not raise for a bad vector (its jacobians are NaN); may raise ValueError for
    ``grad_indices`` out of range.
    """

    def __call__(
        self, params: np.ndarray, /, *, grad_indices: Sequence[int] | None = None
    ) -> dict[str, JobResults]: ...


@runtime_checkable
class Engine(Protocol):
    """A model that can be fitted.

    Attributes:
        implemented_properties: ASE names of what it computes, e.g.
            ``frozenset({"energy", "forces", "stress"})``.
        is_differentiable: whether it provides exact parameter gradients: then
            :meth:`setup` returns a :class:`DifferentiableEngineFn`.
    """

    implemented_properties: frozenset[str]
    is_differentiable: bool

    def default_interface(self) -> "ParameterInterface":
        """A parameter interface with this engine's parameters and default values/ranges."""
        ...

    def setup(
        self, jobs: Sequence["Job"], parameter_names: Sequence[str], /
    ) -> EngineFn:
        """Prepare for repeated evaluation of ``jobs`` (neighbour lists, arrays).

        Raises:
            EngineError: if the engine cannot handle these jobs or parameter names.
        """
        ...

    def to_dict(self) -> dict[str, object]:
        """Settings as plain data; ``ENGINES.get(type)(**d)`` rebuilds the engine."""
        ...


ENGINES: Registry[Callable[..., Engine]] = Registry(
    "engine", hint="Register your own with parafit.register_engine."
)
ENGINES.register(
    "lj", "parafit.engines.lj:LJEngine", aliases=("lennard-jones", "lennardjones")
)
ENGINES.register("ase", "parafit.engines.ase:ASEEngine")
ENGINES.register("reaxff", "parafit.engines.reaxff.engine:ReaxFFEngine")
ENGINES.register(
    "reaxff-lammps",
    "parafit.engines.reaxff.lammps:LAMMPSReaxFFEngine",
    aliases=("lammps-reaxff",),
)


def register_engine(
    name: str, factory: Callable[..., Engine] | str, *, aliases: tuple[str, ...] = ()
) -> None:
    """Make an engine available under ``name`` in input files (``engine: {type: name}``)."""
    ENGINES.register(name, factory, aliases=aliases)


def failed_results(
    job: "Job", n_vectors: int, *, n_points: int | None = None
) -> JobResults:
    """All-NaN results with the FAILED bit, shaped for ``job`` (scan fields for PES scans)."""
    from parafit.jobs import PESScan

    n = len(job.atoms)
    nan = np.full
    if n_points is None and isinstance(job.task, PESScan):
        n_points = job.task.n_points
    n_coords = len(job.task.coordinates) if isinstance(job.task, PESScan) else 0
    return JobResults(
        energy=nan((n_vectors,), np.nan),
        positions=np.broadcast_to(job.atoms.positions, (n_vectors, n, 3)).copy(),
        cell=np.broadcast_to(np.asarray(job.atoms.cell), (n_vectors, 3, 3)).copy(),
        pbc=np.asarray(job.atoms.pbc, dtype=bool),
        status=np.full((n_vectors,), int(Status.FAILED)),
        forces=nan((n_vectors, n, 3), np.nan),
        stress=nan((n_vectors, 6), np.nan),
        scan_energies=None if n_points is None else nan((n_vectors, n_points), np.nan),
        scan_coordinates=None
        if n_points is None
        else nan((n_vectors, n_points, n_coords), np.nan),
        scan_positions=None
        if n_points is None
        else nan((n_vectors, n_points, n, 3), np.nan),
        n_steps=np.zeros((n_vectors,), dtype=int),
    )


def stack_results(per_vector: Sequence[JobResults]) -> JobResults:
    """Concatenate results for the same job along the n_vectors axis."""
    first = per_vector[0]

    def cat(name: str) -> np.ndarray | None:
        values = [getattr(r, name) for r in per_vector]
        if any(v is None for v in values):
            return None
        return np.concatenate(values, axis=0)

    return JobResults(
        energy=cat("energy"),  # type: ignore[arg-type]
        positions=cat("positions"),  # type: ignore[arg-type]
        cell=cat("cell"),  # type: ignore[arg-type]
        pbc=first.pbc,
        status=cat("status"),  # type: ignore[arg-type]
        forces=cat("forces"),
        stress=cat("stress"),
        charges=cat("charges"),
        scan_energies=cat("scan_energies"),
        scan_coordinates=cat("scan_coordinates"),
        scan_positions=cat("scan_positions"),
        n_steps=cat("n_steps"),
        jacobians=_stack_jacobians(per_vector),
    )


def _stack_jacobians(per_vector: Sequence[JobResults]) -> dict[str, np.ndarray] | None:
    """Concatenated jacobians; a field missing from some part is NaN for its rows.

    None when no part has jacobians.
    """
    parts = [r.jacobians for r in per_vector]
    if all(p is None for p in parts):
        return None
    names = [n for n in JACOBIAN_FIELDS if any(p is not None and n in p for p in parts)]
    out: dict[str, np.ndarray] = {}
    for name in sorted(names):
        like = next(p[name] for p in parts if p is not None and name in p)
        arrays = []
        for r, p in zip(per_vector, parts, strict=True):
            if p is not None and name in p:
                arrays.append(np.asarray(p[name], dtype=float))
            else:
                field = getattr(r, name)
                shape = (
                    (r.n_vectors, *like.shape[1:])
                    if field is None
                    else (*np.shape(field), like.shape[-1])
                )
                arrays.append(np.full(shape, np.nan))
        out[name] = np.concatenate(arrays, axis=0)
    return out


def merge_batches(batches: Sequence[Mapping[str, JobResults]]) -> dict[str, JobResults]:
    """Merge engine outputs computed on consecutive chunks of a parameter batch."""
    return {
        job_id: stack_results([b[job_id] for b in batches]) for job_id in batches[0]
    }
