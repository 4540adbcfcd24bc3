"""Extractors: functions that read one quantity from one job's results.

An extractor is called in a data-set expression as ``name('job_id', *args,
**kwargs)``, e.g. ``energy('h2o')`` or ``distance('h2o', 0, 1)``. It is a plain
function ``fn(results, job, *args, **kwargs) -> array`` that works on a whole batch of
parameter vectors at once: its value has the leading axis ``n_vectors``. Each
extractor carries its default sigma (internal units), display unit, physical
dimension and the unit ParAMS assumes when an entry has no ``Unit``. Atom indices
are 0-based (as in ParAMS and ASE). Register your own with :func:`register_extractor`.

Derivatives (:meth:`Extractor.jacobian`) map the parameter jacobians a differentiable
engine puts in ``JobResults.jacobians`` to the extracted value: exactly for extractors
declared ``linear`` in the fields they read (energy, forces, charges, stress), by an
extractor's own ``derivative`` function where it has one, and otherwise by central
differences in results space along each jacobian column (see docs/gradients.md).
"""

import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from parafit._registry import Registry
from parafit.errors import InputError
from parafit.jobs import PESScan
from parafit.units import _DIMENSIONS, BOHR, HARTREE, Unit

if TYPE_CHECKING:
    from parafit.engines.base import JobResults
    from parafit.jobs import Job

__all__ = [
    "EXTRACTORS",
    "INTERNAL_UNITS",
    "Extractor",
    "register_extractor",
]

# Label of the internal unit of each dimension (value factor 1.0).
INTERNAL_UNITS: dict[str, Unit] = {
    "energy": Unit("eV", 1.0),
    "forces": Unit("eV/angstrom", 1.0),
    "stress": Unit("eV/angstrom^3", 1.0),
    "length": Unit("angstrom", 1.0),
    "volume": Unit("angstrom^3", 1.0),
    "angle": Unit("degree", 1.0),
    "charge": Unit("e", 1.0),
}

# The unit ParAMS extractors return (so the unit of an entry without ``Unit``):
# energies in atomic units, geometry in Å and degrees (PLAMS), charges in e.
_PARAMS_DEFAULT_UNITS: dict[str, Unit] = {
    "energy": Unit("Ha", 1.0 / HARTREE),
    "forces": Unit("Ha/bohr", BOHR / HARTREE),
    "stress": Unit("Ha/bohr^3", BOHR**3 / HARTREE),
    "length": Unit("angstrom", 1.0),
    "volume": Unit("angstrom^3", 1.0),
    "angle": Unit("degree", 1.0),
    "charge": Unit("e", 1.0),
}

CheckFn = Callable[["Job", tuple[Any, ...], dict[str, Any]], None]
ShapeFn = Callable[["Job", tuple[Any, ...], dict[str, Any]], tuple[int, ...]]
NormalizeFn = Callable[
    [tuple[Any, ...], dict[str, Any]], tuple[tuple[Any, ...], dict[str, Any]]
]
DerivativeFn = Callable[
    ["JobResults", "Job", tuple[Any, ...], dict[str, Any], int], np.ndarray
]

# The JobResults field whose parameter jacobian stands for each ``needs`` name.
_GRAD_FIELD = {
    "energy": "energy",
    "forces": "forces",
    "stress": "stress",
    "charges": "charges",
    "positions": "positions",
    "scan": "scan_energies",
}
# Central differences in results space: the step along a jacobian column moves each
# perturbed field by at most FD_RELATIVE * max(floor, max |field|) (internal units), and
# positions by at most FD_POSITIONS [Å].
FD_RELATIVE = 1e-6
FD_POSITIONS = 1e-6  # Å
_FD_FLOOR = {
    "energy": 1.0,  # eV
    "scan_energies": 1.0,  # eV
    "forces": 1.0,  # eV/Å
    "stress": 1e-2,  # eV/Å^3
    "charges": 1.0,  # e
}


@dataclass(frozen=True, slots=True)
class Extractor:
    """A registered extractor and its metadata.

    Attributes:
        name: canonical (registered) name, e.g. ``"energy"``.
        function: ``fn(results, job, *args, **kwargs) -> (n_vectors, *value_shape)``
            array in internal units.
        default_sigma: default acceptable error, internal units (e.g. eV).
        unit: default display unit of our own data-set format (e.g. ``Unit('eV', 1.0)``).
        dimension: physical dimension, a key of ``parafit.units._DIMENSIONS``
            (``energy, forces, stress, length, volume, angle, charge``).
        params_default_unit: unit of a ParAMS entry that has no ``Unit`` key, in our
            convention (e.g. ``Unit('Ha', 1/27.211...)`` for energies).
        check: ``check(job, args, kwargs)``; raises InputError for bad arguments
            (atom index out of range, ...). None: no check.
        value_shape: ``value_shape(job, args, kwargs) -> tuple``; None: scalar ``()``.
        needs: the :class:`~parafit.engines.base.JobResults` fields it reads
            (``energy, forces, stress, charges, positions, scan``).
        batchable: the function accepts 1-D integer arrays (all of the same length m)
            in place of its integer positional arguments and then returns
            ``(n_vectors, m)``; lets a compiled data set evaluate many scalar calls on
            one job in one call.
        normalize: ``normalize(args, kwargs) -> (args, kwargs)`` applied when an
            expression is parsed (e.g. old ``angles('j', (1, 0, 2))`` -> ``(1, 0, 2)``).
        linear: the value is a linear function (no constant) of the fields in
            ``needs`` (energy, forces: selections of one field); its jacobian is the
            function applied to the fields' jacobian columns, exactly.
        derivative: ``derivative(results, job, args, kwargs, n_grad) -> (n_vectors,
            *value_shape, n_grad)``, the extractor's own parameter derivative; None:
            ``linear`` or central differences (see :meth:`jacobian`).
    """

    name: str
    function: Callable[..., np.ndarray]
    default_sigma: float
    unit: Unit
    dimension: str
    params_default_unit: Unit
    check: CheckFn | None = None
    value_shape: ShapeFn | None = None
    needs: frozenset[str] = frozenset({"energy"})
    batchable: bool = False
    normalize: NormalizeFn | None = None
    linear: bool = False
    derivative: DerivativeFn | None = None
    signature: inspect.Signature = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "signature", inspect.signature(self.function))

    @property
    def params_default_factor(self) -> float:
        """Our factor of the unit ParAMS uses for an entry without ``Unit`` (e.g. 1/HARTREE)."""
        return self.params_default_unit.factor

    def shape(
        self, job: "Job", args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[int, ...]:
        """Shape of one value (without the ``n_vectors`` axis)."""
        if self.value_shape is None:
            return ()
        return tuple(int(s) for s in self.value_shape(job, args, kwargs))

    def usage(self) -> str:
        """Call signature as written in expressions, e.g. ``distance('job_id', i, j, mic=True)``."""
        params = list(self.signature.parameters.values())[2:]
        parts = ["'job_id'"]
        for p in params:
            if p.kind is p.VAR_POSITIONAL:
                parts.append(f"*{p.name}")
            elif p.kind is p.VAR_KEYWORD:
                parts.append(f"**{p.name}")
            elif p.default is p.empty:
                parts.append(p.name)
            else:
                parts.append(f"{p.name}={p.default!r}")
        return f"{self.name}({', '.join(parts)})"

    def jacobian(
        self,
        results: "JobResults",
        job: "Job",
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        n_grad: int,
    ) -> np.ndarray:
        """Derivative of the value with respect to the engine's ``grad_indices`` parameters.

        Args:
            results: one job's results with ``jacobians`` (see
                :class:`~parafit.engines.base.JobResults`).
            job: the job.
            args, kwargs: the call's arguments (index arrays for batched calls).
            n_grad: number of jacobian columns.

        Returns:
            (n_vectors, *value_shape, n_grad) in internal units per parameter unit.
            ``derivative`` when the extractor has one; for a ``linear`` extractor the
            function applied to the jacobian columns packed along the n_vectors axis
            (exact); otherwise central differences in results space: the function on
            ``results ± t_vk J[..., k]`` (all fields it reads that have jacobians moved
            together, every column and both signs packed into one call), with ``t_vk``
            such that no field moves by more than its step (``FD_POSITIONS`` = 1e-6 Å
            for positions, ``FD_RELATIVE`` = 1e-6 times the field's scale otherwise):
            about 1e-9 relative for smooth geometric quantities. NaN where a needed
            jacobian is missing or NaN, where the extractor reads no differentiable
            field, and for geometric extractors of a job that relaxes its cell (cell
            changes are not differentiated).
        """
        return differentiate(
            self.function,
            self.needs,
            self.linear,
            self.derivative,
            results,
            job,
            args,
            {} if kwargs is None else kwargs,
            n_grad,
        )


def differentiate(
    function: Callable[..., np.ndarray],
    needs: frozenset[str],
    linear: bool,
    derivative: DerivativeFn | None,
    results: "JobResults",
    job: "Job",
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    n_grad: int,
) -> np.ndarray:
    """:meth:`Extractor.jacobian` of an extractor given by its parts (picklable with
    :func:`functools.partial`, unlike an :class:`Extractor` whose checks are closures)."""
    if derivative is not None:
        return np.asarray(derivative(results, job, args, kwargs, n_grad), dtype=float)
    fields = sorted({_GRAD_FIELD[n] for n in needs if n in _GRAD_FIELD})
    jac = results.jacobians
    usable = (
        bool(fields)
        and len(fields) == len(needs)
        and jac is not None
        and all(f in jac for f in fields)
        and not ("positions" in fields and _cell_moves(job))
    )
    if not usable or jac is None:
        value = np.asarray(function(results, job, *args, **kwargs), dtype=float)
        return np.full((*value.shape, n_grad), np.nan)
    n = results.n_vectors
    columns = {f: np.asarray(jac[f], dtype=float) for f in fields}
    with np.errstate(all="ignore"):
        if linear:
            packed = _packed_results(
                results, n_grad, {f: _columns_first(J) for f, J in columns.items()}
            )
            value = np.asarray(function(packed, job, *args, **kwargs), dtype=float)
            value = value.reshape(n, n_grad, *value.shape[1:])
            return np.moveaxis(value, 1, -1)
        # t[v, k]: the largest step along column k that moves no field by more than its step
        t = np.full((n, n_grad), np.inf)
        for f, J in columns.items():
            step = _fd_step(f, getattr(results, f))  # (n,)
            size = np.abs(J).reshape(n, -1, n_grad).max(axis=1)  # (n, n_grad)
            t = np.minimum(t, np.where(size > 0, step[:, None] / size, np.inf))
        t = np.where(np.isinf(t), 1.0, t)  # a zero column: derivative 0
        signed = np.concatenate([t, -t], axis=1).reshape(-1)  # (n * 2 n_grad,)
        moved = {}
        for f, J in columns.items():
            base = np.repeat(
                np.asarray(getattr(results, f), dtype=float), 2 * n_grad, axis=0
            )
            both = _columns_first(np.concatenate([J, J], axis=-1))
            moved[f] = base + signed.reshape((-1,) + (1,) * (both.ndim - 1)) * both
        packed = _packed_results(results, 2 * n_grad, moved)
        value = np.asarray(function(packed, job, *args, **kwargs), dtype=float)
        value = value.reshape(n, 2, n_grad, *value.shape[1:])
        deriv = (value[:, 0] - value[:, 1]) / (
            2.0 * t.reshape((n, n_grad) + (1,) * (value.ndim - 3))
        )
        return np.moveaxis(deriv, 1, -1)


def _columns_first(J: np.ndarray) -> np.ndarray:
    """(n, *shape, K) -> (n * K, *shape): column k of vector v at row v * K + k."""
    return np.moveaxis(J, -1, 1).reshape(-1, *J.shape[1:-1])


def _packed_results(
    results: "JobResults", k: int, replaced: dict[str, np.ndarray]
) -> "JobResults":
    """``results`` with every row repeated k times and the ``replaced`` fields swapped in."""
    from dataclasses import fields as dc_fields
    from dataclasses import replace as dc_replace

    changes: dict[str, Any] = {"jacobians": None}
    for f in dc_fields(results):
        if f.name in ("pbc", "jacobians"):
            continue
        value = getattr(results, f.name)
        if f.name in replaced:
            changes[f.name] = replaced[f.name]
        elif value is not None:
            changes[f.name] = np.repeat(np.asarray(value), k, axis=0)
    return dc_replace(results, **changes)


def _fd_step(field_name: str, value: np.ndarray | None) -> np.ndarray:
    """(n_vectors,) largest change of ``field_name`` in a central difference."""
    arr = np.asarray(value, dtype=float)
    n = arr.shape[0]
    if field_name == "positions":
        return np.full(n, FD_POSITIONS)
    floor = _FD_FLOOR.get(field_name, 1.0)
    with np.errstate(all="ignore"):
        scale = np.abs(arr).reshape(n, -1).max(axis=1, initial=0.0)
    return FD_RELATIVE * np.maximum(floor, np.where(np.isfinite(scale), scale, floor))


def _cell_moves(job: "Job") -> bool:
    """Whether the job's task changes the cell (a cell relaxation)."""
    from parafit.jobs import GeometryOptimization

    return isinstance(job.task, GeometryOptimization) and bool(job.task.relax_cell)


EXTRACTORS: Registry[Extractor] = Registry(
    "extractor", hint="Register your own with parafit.register_extractor."
)


def register_extractor(
    name: str,
    *,
    default_sigma: float,
    unit: Unit,
    dimension: str,
    aliases: tuple[str, ...] = (),
    check: CheckFn | None = None,
    value_shape: ShapeFn | None = None,
    needs: frozenset[str] = frozenset({"energy"}),
    params_default_unit: Unit | None = None,
    batchable: bool = False,
    normalize: NormalizeFn | None = None,
    linear: bool = False,
    derivative: DerivativeFn | None = None,
) -> Callable[[Callable[..., np.ndarray]], Callable[..., np.ndarray]]:
    """Decorator that registers ``fn(results, job, *args, **kwargs)`` as an extractor.

    Args:
        name: the name used in expressions (lowercase).
        default_sigma: default sigma in internal units (> 0).
        unit: default display unit (our format), e.g. ``Unit('eV', 1.0)``.
        dimension: ``energy, forces, stress, length, volume, angle`` or ``charge``.
        aliases: other names (old spellings).
        check: argument check against the job; raises InputError.
        value_shape: shape of one value; None for scalars.
        needs: JobResults fields read.
        params_default_unit: the unit ParAMS assumes without a ``Unit`` key; default:
            atomic units for energy-like dimensions, else the internal unit.
        batchable: see :class:`Extractor`.
        normalize: see :class:`Extractor`.
        linear: the value is linear in the fields of ``needs`` (exact parameter
            derivatives); see :class:`Extractor`.
        derivative: the extractor's own parameter derivative; see :class:`Extractor`.
            Without ``linear`` or ``derivative``, derivatives are central differences
            in results space (:meth:`Extractor.jacobian`).

    Returns:
        The decorator; it returns the function unchanged.

    Example:
        >>> import numpy as np
        >>> from parafit.units import Unit
        >>> @register_extractor("n_atoms_demo", default_sigma=1.0, unit=Unit("", 1.0), dimension="charge")
        ... def n_atoms_demo(results, job):
        ...     return np.full(results.n_vectors, float(job.n_atoms))
        >>> EXTRACTORS.get("n_atoms_demo").default_sigma
        1.0
    """
    if dimension not in _DIMENSIONS:
        raise ValueError(
            f"unknown dimension {dimension!r}; use one of {', '.join(_DIMENSIONS)}"
        )
    if not float(default_sigma) > 0:
        raise ValueError(f"default_sigma must be > 0; got {default_sigma!r}")
    if params_default_unit is None:
        params_default_unit = _PARAMS_DEFAULT_UNITS[dimension]

    def decorator(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        EXTRACTORS.register(
            name,
            Extractor(
                name=name,
                function=fn,
                default_sigma=float(default_sigma),
                unit=unit,
                dimension=dimension,
                params_default_unit=params_default_unit,
                check=check,
                value_shape=value_shape,
                needs=frozenset(needs),
                batchable=batchable,
                normalize=normalize,
                linear=linear,
                derivative=derivative,
            ),
            aliases=aliases,
        )
        return fn

    return decorator


# --------------------------------------------------------------------------- helpers


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_atoms(job: "Job", extractor: str, *indices: object) -> None:
    n = job.n_atoms
    for a in indices:
        if not _is_int(a):
            raise InputError(
                f"{extractor}: atom index must be an integer; got {a!r}.", key=job.id
            )
        if not 0 <= int(a) < n:  # type: ignore[call-overload]
            raise InputError(
                f"{extractor}: atom index {a} out of range for job {job.id!r} with {n} atoms; "
                "indices are 0-based.",
                key=job.id,
            )
    if len({int(a) for a in indices}) != len(indices):  # type: ignore[call-overload]
        raise InputError(
            f"{extractor}: atom indices must be distinct; got {list(indices)!r}.",
            key=job.id,
        )


def _check_index(
    job: "Job", extractor: str, what: str, value: object, size: int
) -> None:
    if not _is_int(value) or not 0 <= int(value) < size:  # type: ignore[call-overload]
        raise InputError(
            f"{extractor}: {what} must be an integer from 0 to {size - 1}; got {value!r}.",
            key=job.id,
        )


def _check_mic(job: "Job", extractor: str, kwargs: dict[str, Any]) -> None:
    for flag in ("mic", "unsigned"):
        if not isinstance(kwargs.get(flag, True), bool):
            raise InputError(
                f"{extractor}: {flag} must be True or False; got {kwargs[flag]!r}.",
                key=job.id,
            )


def _check_periodic(job: "Job", extractor: str) -> None:
    if not job.atoms.pbc.any():
        raise InputError(f"{extractor}: job {job.id!r} is not periodic.", key=job.id)


def _flatten_tuple(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Old ParAMS spelling ``angles('job', (1, 0, 2))`` -> ``(1, 0, 2)``."""
    if len(args) == 1 and isinstance(args[0], tuple):
        return tuple(args[0]), kwargs
    return args, kwargs


def _index_shape(*indices: object) -> tuple[int, ...]:
    """() for integer indices, (m,) for 1-D index arrays (batched calls)."""
    return np.broadcast(*[np.asarray(i) for i in indices]).shape if indices else ()


def _nan(results: "JobResults", shape: tuple[int, ...]) -> np.ndarray:
    return np.full((results.n_vectors, *shape), np.nan)


def _mic(d: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Minimum-image vectors.

    Args:
        d: (n_vectors, ..., 3) difference vectors [Å].
        cell: (n_vectors, 3, 3) cells [Å].
        pbc: (3,) periodic directions; a zero cell vector counts as non-periodic (ASE).

    Returns:
        (n_vectors, ..., 3) array: each vector wrapped by the periodic lattice vectors
        (fractional coordinates rounded, as ASE's ``naive_find_mic``), then the
        shortest of its 3^k neighbouring images (k periodic directions). This equals
        ASE's ``find_mic`` for all but extremely skewed (non-reduced) cells.
    """
    cell = np.asarray(cell, dtype=float)
    pbc = np.asarray(pbc, dtype=bool)
    if not pbc.any():
        return d
    finite = np.isfinite(cell).all(axis=(1, 2))
    safe_cell = np.where(finite[:, None, None], cell, 0.0)
    rows = np.flatnonzero(pbc & (np.abs(safe_cell).sum(axis=(0, 2)) > 0))
    if rows.size == 0:
        return d
    n = d.shape[0]
    flat = d.reshape(n, -1, 3)
    lattice = safe_cell[:, rows, :]  # (n, k, 3)
    inverse = np.linalg.pinv(lattice)  # (n, 3, k)
    frac = flat @ inverse  # (n, M, k)
    wrapped = flat - np.floor(frac + 0.5) @ lattice
    shifts = np.array(
        list(itertools.product((-1.0, 0.0, 1.0), repeat=rows.size))
    )  # (s, k)
    images = shifts @ lattice  # (n, s, 3)
    candidates = wrapped[:, :, None, :] + images[:, None, :, :]  # (n, M, s, 3)
    norm2 = np.einsum("nmsi,nmsi->nms", candidates, candidates)
    best = np.argmin(np.where(np.isnan(norm2), np.inf, norm2), axis=2)  # (n, M)
    out = np.take_along_axis(candidates, best[:, :, None, None], axis=2)[:, :, 0, :]
    out[~finite] = np.nan
    return out.reshape(d.shape)


def _vec(results: "JobResults", i: Any, j: Any, mic: bool) -> np.ndarray:
    """Vector from atom i to atom j, (n_vectors, [m,] 3) [Å]."""
    p = results.positions
    d = p[:, j] - p[:, i]
    if mic:
        d = _mic(d, results.cell, results.pbc)
    return d


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("...i,...i->...", a, b)


# --------------------------------------------------------------------------- built-ins

_ENERGY_SIGMA = 0.002 * HARTREE  # 0.002 Ha [eV]


@register_extractor(
    "energy",
    default_sigma=_ENERGY_SIGMA,
    unit=Unit("eV", 1.0),
    dimension="energy",
    needs=frozenset({"energy"}),
    linear=True,
)
def energy(results: "JobResults", job: "Job") -> np.ndarray:
    """Total energy, (n_vectors,) [eV]; for a PES scan the energy of its lowest point."""
    return np.asarray(results.energy, dtype=float)


def _forces_check(job: "Job", args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    atom, xyz = (list(args) + [None, None])[:2]
    if atom is not None:
        _check_atoms(job, "forces", atom)
    if xyz is not None:
        _check_index(job, "forces", "component xyz", xyz, 3)


def _forces_shape(
    job: "Job", args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[int, ...]:
    return ((job.n_atoms, 3), (3,), ())[min(len(args), 2)]


@register_extractor(
    "forces",
    default_sigma=0.003 * HARTREE / BOHR,  # 0.003 Ha/bohr
    unit=Unit("eV/angstrom", 1.0),
    dimension="forces",
    check=_forces_check,
    value_shape=_forces_shape,
    needs=frozenset({"forces"}),
    batchable=True,
    linear=True,
)
def forces(
    results: "JobResults", job: "Job", atom: Any = None, xyz: Any = None
) -> np.ndarray:
    """Forces at the final geometry [eV/Å].

    ``forces(job)``: (n_vectors, n_atoms, 3); ``forces(job, atom)``: (n_vectors, 3);
    ``forces(job, atom, xyz)``: (n_vectors,) (old ParAMS per-component spelling;
    ``xyz`` 0, 1, 2 for x, y, z). Indices are 0-based.
    """
    f = results.forces
    if atom is None:
        return (
            _nan(results, (job.n_atoms, 3)) if f is None else np.asarray(f, dtype=float)
        )
    if f is None:
        shape = _index_shape(atom) if xyz is None else _index_shape(atom, xyz)
        return _nan(results, shape + ((3,) if xyz is None else ()))
    if xyz is None:
        return f[:, atom]
    return f[:, atom, xyz]


def _charges_check(job: "Job", args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if args and args[0] is not None:
        _check_atoms(job, "charges", args[0])


def _charges_shape(
    job: "Job", args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[int, ...]:
    return () if args and args[0] is not None else (job.n_atoms,)


@register_extractor(
    "charges",
    default_sigma=0.1,
    unit=Unit("e", 1.0),
    dimension="charge",
    check=_charges_check,
    value_shape=_charges_shape,
    needs=frozenset({"charges"}),
    batchable=True,
    linear=True,
)
def charges(results: "JobResults", job: "Job", atom: Any = None) -> np.ndarray:
    """Atomic charges [e]: (n_vectors, n_atoms), or (n_vectors,) for one ``atom``."""
    q = results.charges
    if q is None:
        return _nan(results, (job.n_atoms,) if atom is None else _index_shape(atom))
    return np.asarray(q, dtype=float) if atom is None else q[:, atom]


def _geometry_check(name: str, n: int) -> CheckFn:
    def check(job: "Job", args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if len(args) != n:
            raise InputError(
                f"{name} needs {n} atom indices; got {list(args)!r}.", key=job.id
            )
        _check_atoms(job, name, *args)
        _check_mic(job, name, kwargs)

    return check


@register_extractor(
    "distance",
    default_sigma=0.05,
    unit=Unit("angstrom", 1.0),
    dimension="length",
    check=_geometry_check("distance", 2),
    needs=frozenset({"positions"}),
    batchable=True,
    normalize=_flatten_tuple,
)
def distance(
    results: "JobResults", job: "Job", i: Any, j: Any, *, mic: bool = True
) -> np.ndarray:
    """Distance between atoms i and j of the final geometry, (n_vectors,) [Å].

    With ``mic`` (default) and a periodic job, the minimum-image distance.
    """
    return np.linalg.norm(_vec(results, i, j, mic), axis=-1)


@register_extractor(
    "angle",
    default_sigma=2.0,
    unit=Unit("degree", 1.0),
    dimension="angle",
    aliases=("angles",),
    check=_geometry_check("angle", 3),
    needs=frozenset({"positions"}),
    batchable=True,
    normalize=_flatten_tuple,
)
def angle(
    results: "JobResults", job: "Job", i: Any, j: Any, k: Any, *, mic: bool = True
) -> np.ndarray:
    """Angle i-j-k with vertex j, (n_vectors,) [degrees, 0 to 180].

    As ``ase.Atoms.get_angle(i, j, k, mic=mic)``. The old ParAMS spelling
    ``angles('job', (i, j, k))`` is accepted. NaN if two atoms coincide.
    """
    v0 = _vec(results, j, i, mic)
    v1 = _vec(results, j, k, mic)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = _dot(v0, v1) / np.sqrt(_dot(v0, v0) * _dot(v1, v1))
        return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


@register_extractor(
    "dihedral",
    default_sigma=2.0,
    unit=Unit("degree", 1.0),
    dimension="angle",
    check=_geometry_check("dihedral", 4),
    needs=frozenset({"positions"}),
    batchable=True,
    normalize=_flatten_tuple,
)
def dihedral(
    results: "JobResults",
    job: "Job",
    i: Any,
    j: Any,
    k: Any,
    l: Any,  # noqa: E741
    *,
    mic: bool = True,
    unsigned: bool = True,
) -> np.ndarray:
    """Dihedral angle i-j-k-l, (n_vectors,) [degrees].

    By default (``unsigned=True``) the magnitude of the torsion, in [0, 180]: what
    classic ReaxFF training sets and ParAMS data sets converted from them give (all 76
    dihedral references of the ParAMS disulfide set are unsigned; 25 of them would be
    off by 360 - 2x in a signed convention). With ``unsigned=False``, ASE's signed
    convention and range, [0, 360), as ``ase.Atoms.get_dihedral(i, j, k, l, mic=mic)``.
    NaN where undefined (collinear atoms). Residuals are not wrapped.
    """
    v0 = _vec(results, i, j, mic)
    v1 = _vec(results, j, k, mic)
    v2 = _vec(results, k, l, mic)
    with np.errstate(invalid="ignore", divide="ignore"):
        v1n = v1 / np.sqrt(_dot(v1, v1))[..., None]
        v = -v0 + _dot(v0, v1n)[..., None] * v1n
        w = v2 - _dot(v2, v1n)[..., None] * v1n
        x = _dot(v, w)
        y = _dot(np.cross(v1n, v), w)
        out = np.degrees(np.arctan2(y, x))
    undefined = np.all(v == 0.0, axis=-1) | np.all(w == 0.0, axis=-1)
    if unsigned:
        out = np.abs(out)
    else:
        out = np.where(out < 0.0, out + 360.0, out)
    return np.where(undefined, np.nan, out)


def _pes_check(job: "Job", args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if not isinstance(job.task, PESScan):
        raise InputError(f"pes: job {job.id!r} is not a PES scan.", key=job.id)
    if kwargs.get("relative_to", "min") not in ("min", "first", "none"):
        raise InputError(
            f"pes: relative_to must be 'min', 'first' or 'none'; got {kwargs['relative_to']!r}.",
            key=job.id,
        )


def _pes_shape(
    job: "Job", args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[int, ...]:
    task = job.task
    return (task.n_points,) if isinstance(task, PESScan) else (0,)


@register_extractor(
    "pes",
    default_sigma=_ENERGY_SIGMA,
    unit=Unit("eV", 1.0),
    dimension="energy",
    check=_pes_check,
    value_shape=_pes_shape,
    needs=frozenset({"scan"}),
)
def pes(results: "JobResults", job: "Job", *, relative_to: str = "min") -> np.ndarray:
    """Energies along a PES scan, (n_vectors, n_points) [eV].

    ``relative_to``: ``'min'`` (default) subtracts each vector's lowest scan energy,
    ``'first'`` the first point's, ``'none'`` nothing. NaN if any point is NaN (min).
    """
    e = results.scan_energies
    if e is None:
        return _nan(results, _pes_shape(job, (), {}))
    e = np.asarray(e, dtype=float)
    if relative_to == "min":
        return e - np.min(e, axis=1, keepdims=True)
    if relative_to == "first":
        return e - e[:, :1]
    return e


def _component_check(name: str, size: int, periodic: bool = True) -> CheckFn:
    def check(job: "Job", args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if periodic:
            _check_periodic(job, name)
        if args and args[0] is not None:
            _check_index(job, name, "index", args[0], size)

    return check


def _component_shape(size: int) -> ShapeFn:
    def shape(
        job: "Job", args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[int, ...]:
        return () if args and args[0] is not None else (size,)

    return shape


@dataclass(frozen=True, slots=True)
class _CellDerivative:
    """Derivative of a cell extractor: 0 when the job keeps its cell, NaN when it relaxes it."""

    name: str

    def __call__(
        self,
        results: "JobResults",
        job: "Job",
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        n_grad: int,
    ) -> np.ndarray:
        value = np.asarray(
            EXTRACTORS.get(self.name).function(results, job, *args, **kwargs),
            dtype=float,
        )
        fill = np.nan if _cell_moves(job) else 0.0
        return np.where(
            np.isfinite(value)[..., None], np.full((*value.shape, n_grad), fill), np.nan
        )


@register_extractor(
    "cell_lengths",
    default_sigma=0.05,
    unit=Unit("angstrom", 1.0),
    dimension="length",
    aliases=("lattice",),
    check=_component_check("cell_lengths", 3),
    value_shape=_component_shape(3),
    needs=frozenset({"positions"}),
    batchable=True,
    derivative=_CellDerivative("cell_lengths"),
)
def cell_lengths(results: "JobResults", job: "Job", i: Any = None) -> np.ndarray:
    """Lengths a, b, c of the final cell, (n_vectors, 3), or (n_vectors,) for ``i`` [Å].

    The old ParAMS ``lattice(job, i)`` is this extractor.
    """
    lengths = np.linalg.norm(np.asarray(results.cell, dtype=float), axis=-1)
    return lengths if i is None else lengths[:, i]


@register_extractor(
    "cell_angles",
    default_sigma=2.0,
    unit=Unit("degree", 1.0),
    dimension="angle",
    check=_component_check("cell_angles", 3),
    value_shape=_component_shape(3),
    needs=frozenset({"positions"}),
    batchable=True,
    derivative=_CellDerivative("cell_angles"),
)
def cell_angles(results: "JobResults", job: "Job", i: Any = None) -> np.ndarray:
    """Cell angles alpha (b, c), beta (a, c), gamma (a, b), (n_vectors, 3) [degrees].

    As ``ase.cell.Cell.angles()``; ``i`` selects one, giving (n_vectors,).
    """
    cell = np.asarray(results.cell, dtype=float)
    a, b = cell[:, [1, 0, 0]], cell[:, [2, 2, 1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = _dot(a, b) / np.sqrt(_dot(a, a) * _dot(b, b))
        angles = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return angles if i is None else angles[:, i]


@register_extractor(
    "cell_volume",
    default_sigma=50.0,
    unit=Unit("angstrom^3", 1.0),
    dimension="volume",
    check=_component_check("cell_volume", 1),
    needs=frozenset({"positions"}),
    derivative=_CellDerivative("cell_volume"),
)
def cell_volume(results: "JobResults", job: "Job") -> np.ndarray:
    """Volume of the final cell, (n_vectors,) [Å^3]."""
    cell = np.asarray(results.cell, dtype=float)
    good = np.isfinite(cell).all(axis=(1, 2))
    volume = np.abs(np.linalg.det(np.where(good[:, None, None], cell, 0.0)))
    return np.where(good, volume, np.nan)


@register_extractor(
    "stress",
    default_sigma=1e-4 * HARTREE / BOHR**3,  # 0.0001 Ha/bohr^3
    unit=Unit("eV/angstrom^3", 1.0),
    dimension="stress",
    check=_component_check("stress", 6),
    value_shape=_component_shape(6),
    needs=frozenset({"stress"}),
    batchable=True,
    linear=True,
)
def stress(results: "JobResults", job: "Job", i: Any = None) -> np.ndarray:
    """Stress in Voigt order (xx, yy, zz, yz, xz, xy), (n_vectors, 6) [eV/Å^3].

    ``i`` selects one component, giving (n_vectors,). ASE's sign convention.
    """
    s = results.stress
    if s is None:
        return _nan(results, (6,) if i is None else _index_shape(i))
    s = np.asarray(s, dtype=float)
    return s if i is None else s[:, i]
