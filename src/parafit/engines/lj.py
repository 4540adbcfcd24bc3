"""Lennard-Jones pair potential, batched over parameter vectors.

One (epsilon, rmin) pair per unordered element pair (A, B)::

    u_AB(r) = eps_AB * ((rmin_AB / r)^12 - 2 (rmin_AB / r)^6)          r < cutoff
            = 0                                                         r >= cutoff

with ``eps`` [eV] the well depth and ``rmin = 2^(1/6) sigma`` [Å] the position of the
minimum. With ``shift=True`` (default) each pair energy is shifted by ``-u_AB(cutoff)``
so the energy is continuous at the cutoff and the forces jump there: exactly ASE's
``LennardJones(sigma=rmin / 2**(1/6), epsilon=eps, rc=cutoff, smooth=False)``.
``shift=False`` is plain truncation. Source: J. E. Lennard-Jones, Proc. R. Soc. A 106,
463 (1924); conventions of ``ase/calculators/lj.py``.

The energy, forces and stress of a fixed geometry are linear in the two coefficients
``c12 = eps rmin^12`` and ``c6 = 2 eps rmin^6`` of each pair type
(``u = c12 r^-12 - c6 r^-6``). :meth:`LJEngine.setup` therefore builds, once per
single-point job, the pair list within the cutoff (all periodic images) and reduces it
to a small matrix ``M`` (2 n_types, 1 + 3 n_atoms + 6) of pair sums; a batch of
parameter vectors is then one matrix product ``C @ M`` with ``C`` (n_vectors,
2 n_types). Geometry optimizations and PES scans run through
:mod:`parafit.engines.relax` with an ASE calculator made from the same kernel.

Exact parameter jacobians (``fn(params, grad_indices=...)``, see
:class:`~parafit.engines.base.DifferentiableEngineFn`): with ``dC/dθ`` from
``dc12/deps = rmin^12``, ``dc12/drmin = 12 eps rmin^11``, ``dc6/deps = 2 rmin^6``,
``dc6/drmin = 12 eps rmin^5``, the energy, forces and stress of a fixed geometry have
jacobian ``dC/dθ @ M`` (single points, and each point of a rigid PES scan; positions
have jacobian 0). A relaxed geometry (geometry optimization at fixed cell, without
restraints, converged) gets ``dx*/dθ = H^-1 dF/dθ`` (implicit differentiation of
``F(x*, θ) = 0``) with the analytic pair Hessian ``H`` of the free atoms, rigid-body
modes (translations; rotations of clusters) projected out; the energy's jacobian is
the partial derivative at fixed positions (envelope theorem), the forces' and
stress's the total derivative (partial plus the change through ``dx*/dθ``). Cell
relaxations, restrained optimizations, relaxed scans and unconverged geometries give
NaN jacobians (the objective then uses finite differences for them).
"""

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, final

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.data import atomic_numbers

from parafit.engines.base import JobResults, Status, stack_results
from parafit.engines.relax import (
    _fixed_atoms,
    failed_job_results,
    has_stress,
    run_job,
    validate_job,
)
from parafit.errors import EngineError, InputError
from parafit.jobs import GeometryOptimization, Job, PESScan, SinglePoint
from parafit.parameters import Parameter, ParameterInterface

__all__ = ["LJEngine", "LJFn", "half_pair_list", "make_lj_calculator"]

logger = logging.getLogger(__name__)

EQUATION = "u(r) = eps*((rmin/r)^12 - 2*(rmin/r)^6), shifted so u(cutoff) = 0 if shift"

# Voigt order of ASE: xx, yy, zz, yz, xz, xy.
_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def _pair_name(a: str, b: str) -> str:
    return ".".join(sorted((a, b)))


@final
@dataclass(frozen=True, slots=True, init=False)
class LJEngine:
    """Lennard-Jones engine: one (eps [eV], rmin [Å]) pair per unordered element pair.

    Args:
        elements: element symbols the model covers, e.g. ``["Ar"]`` or ``["Ar", "Ne"]``.
        cutoff: pair cutoff [Å], > 0 (default 8.5).
        shift: shift each pair energy so u(cutoff) = 0 (default True; forces then jump
            at the cutoff, as ASE's ``LennardJones(smooth=False)``); False truncates.

    Parameters are named ``"<A>.<B>:eps"`` and ``"<A>.<B>:rmin"`` with the two symbols
    sorted alphabetically (``"Ar.Ar:eps"``, ``"Ar.Ne:rmin"``). Valid values: eps >= 0 and
    rmin > 0, both finite; any other value fails that vector (NaN, ``Status.FAILED``).

    Example:
        >>> from ase import Atoms
        >>> from parafit.jobs import Job
        >>> engine = LJEngine(["Ar"], cutoff=8.5)
        >>> iface = engine.default_interface(eps=0.0104, rmin=3.82)
        >>> fn = engine.setup([Job("dimer", Atoms("Ar2", positions=[[0, 0, 0], [0, 0, 3.82]]))], iface.names)
        >>> round(float(fn(iface.values[None])["dimer"].energy[0]), 5)  # -eps - u(cutoff)
        -0.01023
    """

    elements: tuple[str, ...]
    cutoff: float
    shift: bool

    implemented_properties: ClassVar[frozenset[str]] = frozenset(
        {"energy", "forces", "stress"}
    )
    is_differentiable: ClassVar[bool] = True

    def __init__(
        self, elements: Sequence[str], *, cutoff: float = 8.5, shift: bool = True
    ) -> None:
        if isinstance(elements, str):
            elements = [elements]
        symbols = tuple(str(e) for e in elements)
        if not symbols:
            raise InputError(
                "LJEngine(elements=...): needs at least one element; got [].",
                key="elements",
            )
        unknown = [e for e in symbols if e not in atomic_numbers or e == "X"]
        if unknown:
            raise InputError(
                f"LJEngine(elements=...): unknown element symbol {unknown[0]!r}; use symbols such as 'Ar'.",
                key="elements",
            )
        if len(set(symbols)) != len(symbols):
            raise InputError(
                f"LJEngine(elements=...): duplicate elements in {list(symbols)!r}.",
                key="elements",
            )
        try:
            cut = float(cutoff)
        except (TypeError, ValueError):
            cut = math.nan
        if not (math.isfinite(cut) and cut > 0):
            raise InputError(
                f"LJEngine(cutoff=...): cutoff must be a finite number > 0 [Å]; got {cutoff!r}.",
                key="cutoff",
            )
        if not isinstance(shift, bool | np.bool_):
            raise InputError(
                f"LJEngine(shift=...): shift must be True or False; got {shift!r}.",
                key="shift",
            )
        object.__setattr__(self, "elements", symbols)
        object.__setattr__(self, "cutoff", cut)
        object.__setattr__(self, "shift", bool(shift))

    # ---- parameters ---------------------------------------------------------------
    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """Unordered element pairs (each sorted alphabetically), in parameter order."""
        order = sorted(self.elements)
        return tuple((a, b) for i, a in enumerate(order) for b in order[i:])

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """``("A.A:eps", "A.A:rmin", "A.B:eps", ...)``, shape (2 n_pairs,)."""
        return tuple(
            f"{_pair_name(a, b)}:{kind}"
            for a, b in self.pairs
            for kind in ("eps", "rmin")
        )

    def default_interface(
        self,
        eps: float = 0.01,
        rmin: float = 3.5,
        *,
        values: Mapping[str, float] | None = None,
    ) -> ParameterInterface:
        """A parameter interface with every pair's eps [eV] and rmin [Å], ranges value ± 20 %.

        Args:
            eps: well depth of every pair [eV] (default 0.01).
            rmin: position of the minimum of every pair [Å] (default 3.5).
            values: name -> value overrides, e.g. ``{"Ar.Ne:eps": 0.006}``.

        Raises:
            InputError: ``values`` names a parameter this engine does not have.
        """
        values = dict(values or {})
        names = set(self.parameter_names)
        for name in values:
            if name not in names:
                raise InputError(
                    f"LJEngine.default_interface(values=...): unknown parameter {name!r}; known: {', '.join(self.parameter_names)}.",
                    key=name,
                )
        params = []
        for a, b in self.pairs:
            pair = _pair_name(a, b)
            for kind, default, unit, what in (
                ("eps", eps, "eV", "well depth"),
                ("rmin", rmin, "Å", "distance of the minimum (2^(1/6) sigma)"),
            ):
                name = f"{pair}:{kind}"
                params.append(
                    Parameter(
                        name=name,
                        value=float(values.get(name, default)),
                        atoms=(a, b),
                        block="LJ",
                        category="LJ",
                        description=f"Lennard-Jones {what} of {a}-{b} pairs [{unit}]",
                        equation=EQUATION,
                    )
                )
        return ParameterInterface(params, model="lj")

    def to_dict(self) -> dict[str, object]:
        """Settings as plain data: ``LJEngine(**engine.to_dict()) == engine``."""
        return {
            "elements": list(self.elements),
            "cutoff": self.cutoff,
            "shift": self.shift,
        }

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> "LJEngine":
        """Inverse of :meth:`to_dict`."""
        return cls(**settings)

    # ---- set-up -------------------------------------------------------------------
    def _columns(self, parameter_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Column of each pair type's eps and rmin in a parameter vector; (n_types,) each."""
        names = list(parameter_names)
        known = self.parameter_names
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in seen:
                raise EngineError(
                    f"LJEngine.setup: parameter {name!r} is given twice (positions {seen[name]} and {i})."
                )
            seen[name] = i
        unknown = [n for n in names if n not in known]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise EngineError(
                f"LJEngine.setup: unknown parameter {unknown[0]!r} for elements {list(self.elements)!r}.{hint} "
                f"Known: {', '.join(known)}."
            )
        missing = [n for n in known if n not in seen]
        if missing:
            raise EngineError(
                f"LJEngine.setup: parameter {missing[0]!r} is missing; the interface must hold all of "
                f"{', '.join(known)} (use LJEngine.default_interface())."
            )
        eps_col = np.array([seen[f"{_pair_name(a, b)}:eps"] for a, b in self.pairs])
        rmin_col = np.array([seen[f"{_pair_name(a, b)}:rmin"] for a, b in self.pairs])
        return eps_col, rmin_col

    def _kernel(self) -> "_PairKernel":
        return _PairKernel(self.elements, self.pairs, self.cutoff, self.shift)

    def setup(self, jobs: Sequence[Job], parameter_names: Sequence[str], /) -> "LJFn":
        """Prepare ``jobs`` for repeated evaluation (pair lists and pair sums, once).

        Args:
            jobs: the jobs; single points are reduced to pair sums here, geometry
                optimizations and PES scans run through :mod:`parafit.engines.relax`.
            parameter_names: the order of the columns of the parameter batches; must
                be exactly :attr:`parameter_names` in any order.

        Returns:
            An :class:`LJFn`, ``fn(params, grad_indices=None) -> {job_id: JobResults}``.

        Raises:
            EngineError: a job has an element not in ``elements``, a periodic job has no
                3-D cell, or a parameter name is unknown, missing or repeated.
        """
        eps_col, rmin_col = self._columns(parameter_names)
        kernel = self._kernel()
        prepared: list[_SinglePointSums | Job] = []
        for job in jobs:
            symbols = set(job.atoms.get_chemical_symbols())
            unknown = sorted(symbols - set(self.elements))
            if unknown:
                raise EngineError(
                    f"job {job.id!r}: element {unknown[0]!r} has no Lennard-Jones parameters; "
                    f"the engine covers {list(self.elements)!r}. Add it to LJEngine(elements=...)."
                )
            validate_job(job)
            if isinstance(job.task, SinglePoint):
                prepared.append(_SinglePointSums.build(job, kernel))
            else:
                prepared.append(job)
        return LJFn(
            engine=self,
            names=tuple(parameter_names),
            eps_col=eps_col,
            rmin_col=rmin_col,
            jobs=tuple(prepared),
        )

    def calculator(
        self, param_vector: np.ndarray | Sequence[float], parameter_names: Sequence[str]
    ) -> Calculator:
        """An ASE calculator for one parameter vector, using the engine's kernel.

        Args:
            param_vector: (n_params,) values in the order of ``parameter_names``.
            parameter_names: as for :meth:`setup`.

        Raises:
            EngineError: a parameter name is unknown, missing or repeated.
        """
        eps_col, rmin_col = self._columns(parameter_names)
        vec = np.asarray(param_vector, dtype=float).reshape(-1)
        if vec.shape != (len(parameter_names),):
            raise ValueError(
                f"param_vector has {vec.size} values for {len(parameter_names)} parameter names"
            )
        return make_lj_calculator(self, vec[eps_col], vec[rmin_col])


def make_lj_calculator(
    engine: LJEngine, eps: np.ndarray, rmin: np.ndarray
) -> Calculator:
    """An ASE calculator for ``engine`` with per-pair-type eps (n_types,) [eV] and rmin (n_types,) [Å]."""
    return _LJCalculator(
        engine._kernel(), np.asarray(eps, dtype=float), np.asarray(rmin, dtype=float)
    )


def _coefficients(eps: np.ndarray, rmin: np.ndarray) -> np.ndarray:
    """``[c12 | c6]`` with c12 = eps rmin^12 [eV Å^12], c6 = 2 eps rmin^6 [eV Å^6]; (..., 2 n_types)."""
    with np.errstate(all="ignore"):
        r6 = rmin**6
        return np.concatenate([eps * r6 * r6, 2.0 * eps * r6], axis=-1)


def _coefficient_jacobian(
    eps: np.ndarray,
    rmin: np.ndarray,
    eps_col: np.ndarray,
    rmin_col: np.ndarray,
    grad_indices: np.ndarray,
) -> np.ndarray:
    """d[c12 | c6]/dθ for the parameter columns ``grad_indices``; (n_vectors, 2 n_types, n_grad).

    Args:
        eps, rmin: (n_vectors, n_types) [eV], [Å].
        eps_col, rmin_col: (n_types,) parameter column of each type's eps and rmin.
        grad_indices: (n_grad,) parameter columns.
    """
    n, n_types = eps.shape
    out = np.zeros((n, 2 * n_types, len(grad_indices)))
    with np.errstate(all="ignore"):
        r5 = rmin**5
        r6 = r5 * rmin
        for k, g in enumerate(grad_indices):
            for t in np.flatnonzero(eps_col == g):
                out[:, t, k] = r6[:, t] * r6[:, t]
                out[:, n_types + t, k] = 2.0 * r6[:, t]
            for t in np.flatnonzero(rmin_col == g):
                out[:, t, k] = 12.0 * eps[:, t] * r6[:, t] * r5[:, t]
                out[:, n_types + t, k] = 12.0 * eps[:, t] * r5[:, t]
    return out


def _valid(eps: np.ndarray, rmin: np.ndarray) -> np.ndarray:
    """eps >= 0 and rmin > 0, both finite; same shape as the inputs."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(eps) & np.isfinite(rmin) & (eps >= 0) & (rmin > 0)


def half_pair_list(
    atoms: Atoms, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of atoms closer than ``cutoff``, once, periodic images included.

    Periodic directions are wrapped into the cell and the cell is repeated
    ``ceil(cutoff / h_k)`` times each way along direction k (h_k the distance between
    the cell's faces), so cells of any size and shape are handled, including an atom's
    interactions with its own images. The search is a k-d tree
    (``scipy.spatial.cKDTree``), about 25x faster than ``ase.neighborlist.neighbor_list``
    for 256 argon atoms at 8.5 Å and giving the same pairs.

    Args:
        atoms: the structure; a periodic one needs a 3-D cell.
        cutoff: pair cutoff [Å].

    Returns:
        i, j: (n_pairs,) atom indices, i < j, or i == j for an atom and one of its
        images (each such pair once); D: (n_pairs, 3) vector from atom i to (the image
        of) atom j [Å].
    """
    from scipy.spatial import cKDTree

    pos = np.asarray(atoms.positions, dtype=float)
    n = len(pos)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if not pbc.any():
        pairs = cKDTree(pos).query_pairs(cutoff, output_type="ndarray")
        i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
        return i, j, pos[j] - pos[i]
    cell = np.asarray(atoms.cell, dtype=float)
    scaled = np.linalg.solve(cell.T, pos.T).T
    scaled[:, pbc] %= 1.0
    wrapped = scaled @ cell
    volume = abs(np.linalg.det(cell))
    reps = [
        int(
            np.ceil(
                cutoff
                * np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3]))
                / volume
            )
        )
        if pbc[k]
        else 0
        for k in range(3)
    ]
    grid = np.meshgrid(*(np.arange(-r, r + 1) for r in reps), indexing="ij")
    shifts = np.stack([g.ravel() for g in grid], axis=1)  # (n_shifts, 3)
    images = (wrapped[None] + (shifts @ cell)[:, None]).reshape(-1, 3)
    found = cKDTree(wrapped).sparse_distance_matrix(
        cKDTree(images), cutoff, output_type="ndarray"
    )
    i = found["i"].astype(np.int64)
    image = found["j"].astype(np.int64)
    j, s = image % n, shifts[image // n]
    # each pair appears as (i, j, S) and (j, i, -S): keep i < j, and for i == j the
    # shift whose first non-zero component is positive (this also drops S = 0)
    first = np.where(s[:, 0] != 0, s[:, 0], np.where(s[:, 1] != 0, s[:, 1], s[:, 2]))
    keep = (i < j) | ((i == j) & (first > 0))
    i, j, image = i[keep], j[keep], image[keep]
    return i, j, images[image] - wrapped[i]


@dataclass(frozen=True, slots=True)
class _PairKernel:
    """Reduces a geometry to the pair sums that the energy, forces and stress are linear in."""

    elements: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    cutoff: float
    shift: bool

    @property
    def n_types(self) -> int:
        return len(self.pairs)

    def type_matrix(self) -> np.ndarray:
        """(119, 119) pair-type index of two atomic numbers, -1 where not covered."""
        index = {p: t for t, p in enumerate(self.pairs)}
        out = np.full((119, 119), -1, dtype=np.int64)
        for a in self.elements:
            for b in self.elements:
                out[atomic_numbers[a], atomic_numbers[b]] = index[tuple(sorted((a, b)))]  # type: ignore[index]
        return out

    def types_of_elements(self, atoms: Atoms) -> np.ndarray:
        """Sorted pair types whose two elements both occur in ``atoms``."""
        z = np.unique(atoms.numbers)
        tm = self.type_matrix()
        return np.unique(tm[np.ix_(z, z)])

    def pair_sums(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray, bool]:
        """The matrix of pair sums of ``atoms``.

        With the half pair list (each pair within the cutoff once, periodic images
        included), d = r_j - r_i [Å], r = |d| and pair type t, the energy, forces and
        stress of a vector with coefficients C = [c12 | c6] (2 n_types,) are C @ M:

        * energy column: sum_t c12_t (S12_t - s n_t rc^-12) - c6_t (S6_t - s n_t rc^-6),
          S_k = sum r^-k over pairs of type t, n_t their count, s = 1 with ``shift``;
        * force columns (atom a): sum over pairs of g d (+1 if a = i, -1 if a = j) with
          g = du/dr / r = -12 c12 r^-14 + 6 c6 r^-8 (ASE's "pairwise force" du_ij);
        * stress columns (Voigt, periodic only): sum over pairs of g d (x) d / V.

        Returns:
            (types, M, has_stress): the pair types with at least one pair, shape
            (n_present,); M of shape (2 n_present, 1 + 3 n_atoms [+ 6]), rows c12 of
            each present type then c6; whether stress columns are present.
        """
        n = len(atoms)
        stress = has_stress(atoms)
        i, j, D = half_pair_list(atoms, self.cutoff)
        d = np.sqrt(np.einsum("pk,pk->p", D, D))
        t_all = self.type_matrix()[atoms.numbers[i], atoms.numbers[j]]
        counts = np.bincount(t_all, minlength=self.n_types)
        types = np.flatnonzero(counts)
        remap = np.full(self.n_types, -1, dtype=np.int64)
        remap[types] = np.arange(types.size)
        t = remap[t_all]
        nt = types.size

        inv2 = 1.0 / (d * d)
        inv6 = inv2 * inv2 * inv2
        inv12 = inv6 * inv6
        g12 = -12.0 * inv12 * inv2  # times c12
        g6 = 6.0 * inv6 * inv2  # times c6
        rc = self.cutoff
        s = 1.0 if self.shift else 0.0
        cnt = counts[types].astype(float)
        e12 = np.bincount(t, inv12, minlength=nt) - s * cnt * rc**-12
        e6 = -(np.bincount(t, inv6, minlength=nt) - s * cnt * rc**-6)

        n_cols = 1 + 3 * n + (6 if stress else 0)
        M = np.zeros((2 * nt, n_cols))
        M[:nt, 0] = e12
        M[nt:, 0] = e6
        rows_i = t * n + i
        rows_j = t * n + j
        for offset, g in ((0, g12), (nt, g6)):
            forces = np.empty((nt * n, 3))
            for k in range(3):
                w = g * D[:, k]
                forces[:, k] = np.bincount(rows_i, w, minlength=nt * n) - np.bincount(
                    rows_j, w, minlength=nt * n
                )
            M[offset : offset + nt, 1 : 1 + 3 * n] = forces.reshape(nt, 3 * n)
            if stress:
                volume = atoms.get_volume()
                for v, (a, b) in enumerate(_VOIGT):
                    M[offset : offset + nt, 1 + 3 * n + v] = (
                        np.bincount(t, g * D[:, a] * D[:, b], minlength=nt) / volume
                    )
        return types, M, stress


@dataclass(frozen=True, slots=True)
class _SinglePointSums:
    """A single-point job reduced to its pair sums (built once at set-up)."""

    job_id: str
    n_atoms: int
    positions: np.ndarray  # (n_atoms, 3)
    cell: np.ndarray  # (3, 3)
    pbc: np.ndarray  # (3,)
    types: np.ndarray  # (n_present,) pair types with pairs within the cutoff
    M: np.ndarray  # (2 n_present, 1 + 3 n_atoms [+ 6])
    has_stress: bool

    @classmethod
    def build(cls, job: Job, kernel: _PairKernel) -> "_SinglePointSums":
        types, M, stress = kernel.pair_sums(job.atoms)
        return cls(
            job_id=job.id,
            n_atoms=len(job.atoms),
            positions=np.array(job.atoms.positions, dtype=float),
            cell=np.array(job.atoms.cell, dtype=float),
            pbc=np.array(job.atoms.pbc, dtype=bool),
            types=types,
            M=M,
            has_stress=stress,
        )

    def evaluate(
        self, eps: np.ndarray, rmin: np.ndarray, dC: np.ndarray | None = None
    ) -> JobResults:
        """Results for eps, rmin of shape (n_vectors, n_types).

        ``dC``: (n_vectors, 2 n_types, n_grad) coefficient jacobian
        (:func:`_coefficient_jacobian`), or None for no jacobians.
        """
        n_vectors, n = eps.shape[0], self.n_atoms
        e, r = eps[:, self.types], rmin[:, self.types]
        with np.errstate(all="ignore"):
            out = _coefficients(e, r) @ self.M  # (n_vectors, n_cols)
        ok = _valid(e, r).all(axis=1) & np.isfinite(out).all(axis=1)
        if not ok.all():
            out[~ok] = np.nan
        jacobians = None
        if dC is not None:
            n_types = eps.shape[1]
            rows = np.concatenate([self.types, n_types + self.types])
            with np.errstate(all="ignore"):
                jac = np.einsum("vrk,rc->vck", dC[:, rows, :], self.M)
            jac[~ok] = np.nan
            jacobians = _split_columns(jac, n, self.has_stress)
            jacobians["positions"] = np.where(
                ok[:, None, None, None], 0.0, np.nan
            ) * np.ones((n_vectors, n, 3, dC.shape[2]))
        return JobResults(
            energy=out[:, 0],
            positions=np.broadcast_to(self.positions, (n_vectors, n, 3)),
            cell=np.broadcast_to(self.cell, (n_vectors, 3, 3)),
            pbc=self.pbc,
            status=np.where(ok, int(Status.OK), int(Status.FAILED)).astype(np.int64),
            forces=out[:, 1 : 1 + 3 * n].reshape(n_vectors, n, 3),
            stress=out[:, 1 + 3 * n :] if self.has_stress else None,
            n_steps=np.zeros(n_vectors, dtype=np.int64),
            jacobians=jacobians,
        )


def _split_columns(
    jac: np.ndarray, n_atoms: int, stress: bool
) -> dict[str, np.ndarray]:
    """Energy, forces (and stress) jacobians from (n_vectors, n_cols, n_grad) pair-sum columns."""
    n_vectors, _, k = jac.shape
    out = {
        "energy": jac[:, 0, :].copy(),
        "forces": jac[:, 1 : 1 + 3 * n_atoms, :]
        .reshape(n_vectors, n_atoms, 3, k)
        .copy(),
    }
    if stress:
        out["stress"] = jac[:, 1 + 3 * n_atoms :, :].copy()
    return out


@final
@dataclass(frozen=True, slots=True)
class LJFn:
    """A set-up :class:`LJEngine`: ``fn(params) -> {job_id: JobResults}`` (picklable).

    Attributes:
        engine: the engine.
        names: parameter names, the column order of ``params``.
        eps_col, rmin_col: (n_types,) column of each pair type's eps and rmin.
        jobs: per job, its pair sums (single points) or the job itself (tasks that
            move atoms, run through :func:`parafit.engines.relax.run_job`).
    """

    engine: LJEngine
    names: tuple[str, ...]
    eps_col: np.ndarray
    rmin_col: np.ndarray
    jobs: tuple["_SinglePointSums | Job", ...]

    def __call__(
        self, params: np.ndarray, /, *, grad_indices: Sequence[int] | None = None
    ) -> dict[str, JobResults]:
        """Evaluate every job for a batch of parameter vectors.

        Args:
            params: (n_vectors, n_params) in the order of ``names`` (a single vector
                of shape (n_params,) is taken as a batch of one).
            grad_indices: parameter columns (n_grad of them) to differentiate with
                respect to; None (default): no jacobians.

        Returns:
            job id -> JobResults with n_vectors rows: energy (n_vectors,) [eV], forces
            (n_vectors, n_atoms, 3) [eV/Å], stress (n_vectors, 6) Voigt [eV/Å^3] for
            periodic jobs (None otherwise). Invalid or non-finite vectors are NaN with
            ``Status.FAILED``. With ``grad_indices``, ``jacobians`` holds energy,
            forces, positions (and stress) derivatives (module docstring).

        Raises:
            ValueError: bad shapes, or ``grad_indices`` outside ``[0, n_params)``.
        """
        P = np.asarray(params, dtype=float)
        if P.ndim == 1:
            P = P[None]
        if P.ndim != 2 or P.shape[1] != len(self.names):
            raise ValueError(
                f"params must have shape (n_vectors, {len(self.names)}); got {np.shape(params)}"
            )
        if P.shape[0] == 0:
            raise ValueError("params holds no parameter vector (n_vectors = 0)")
        eps, rmin = P[:, self.eps_col], P[:, self.rmin_col]
        dC = None
        if grad_indices is not None:
            idx = np.asarray(grad_indices, dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < 0 or idx.max() >= len(self.names)):
                raise ValueError(
                    f"grad_indices must lie in [0, {len(self.names)}); got {idx.tolist()}"
                )
            dC = _coefficient_jacobian(eps, rmin, self.eps_col, self.rmin_col, idx)
        out: dict[str, JobResults] = {}
        for item in self.jobs:
            if isinstance(item, _SinglePointSums):
                out[item.job_id] = item.evaluate(eps, rmin, dC)
            else:
                out[item.id] = self._relax(item, eps, rmin, dC)
        n_failed = sum(
            int(((r.status & Status.FAILED) != 0).sum()) for r in out.values()
        )
        if n_failed:
            logger.debug(
                "LJ: %d of %d (vector, job) evaluations failed",
                n_failed,
                P.shape[0] * len(out),
            )
        return out

    def _relax(
        self, job: Job, eps: np.ndarray, rmin: np.ndarray, dC: np.ndarray | None
    ) -> JobResults:
        kernel = self.engine._kernel()
        types = kernel.types_of_elements(job.atoms)
        per_vector = []
        for v in range(eps.shape[0]):
            if not _valid(eps[v, types], rmin[v, types]).all():
                result = failed_job_results(job)
            else:
                result = run_job(job, _LJCalculator(kernel, eps[v], rmin[v]))
            if dC is not None:
                C = _coefficients(eps[v], rmin[v])
                result = replace(
                    result, jacobians=_moved_jacobians(kernel, job, result, C, dC[v])
                )
            per_vector.append(result)
        return stack_results(per_vector)


def _nan_jacobians(result: JobResults, n_grad: int) -> dict[str, np.ndarray]:
    """NaN jacobians for every differentiable field ``result`` has."""
    out = {}
    for name in ("energy", "forces", "stress", "positions", "scan_energies"):
        value = getattr(result, name)
        if value is not None:
            out[name] = np.full((*np.shape(value), n_grad), np.nan)
    return out


def _moved_jacobians(
    kernel: _PairKernel, job: Job, result: JobResults, C: np.ndarray, dC: np.ndarray
) -> dict[str, np.ndarray]:
    """Jacobians of one vector's results for a job that is not a single point.

    Args:
        kernel: the engine's kernel.
        job: a geometry optimization or PES scan.
        result: its results, n_vectors = 1.
        C: (2 n_types,) coefficients [c12 | c6]; dC: (2 n_types, n_grad) their jacobian.

    Returns:
        field -> (1, *shape, n_grad). Rigid scans and converged geometry optimizations
        at fixed cell without restraints get exact values (module docstring), anything
        else NaN.
    """
    n_grad = dC.shape[1]
    nan = _nan_jacobians(result, n_grad)
    task = job.task
    if not result.is_ok[0] or int(result.status[0]) != int(Status.OK):
        return nan
    atoms = job.atoms.copy()
    atoms.set_constraint()
    n = len(atoms)
    if isinstance(task, PESScan):
        if task.relaxed or result.scan_positions is None:
            return nan
        scan = np.empty((task.n_points, n_grad))
        for k in range(task.n_points):
            atoms.positions[:] = result.scan_positions[0, k]
            scan[k] = _fixed_geometry_jacobians(kernel, atoms, dC)["energy"][0]
        best = int(np.argmin(result.scan_energies[0]))  # type: ignore[index]
        atoms.positions[:] = result.scan_positions[0, best]
        out = _fixed_geometry_jacobians(kernel, atoms, dC)
        out["scan_energies"] = scan[None]
        out["positions"] = np.zeros((1, n, 3, n_grad))
        return out
    if not isinstance(task, GeometryOptimization) or task.relax_cell or task.restraints:
        return nan
    atoms.positions[:] = result.positions[0]
    partial = _fixed_geometry_jacobians(kernel, atoms, dC)
    hessian, pairs = _pair_hessian(kernel, atoms, C)
    free = np.ones(n, dtype=bool)
    free[_fixed_atoms(job)] = False
    dof = np.repeat(free, 3)
    dF = partial["forces"][0].reshape(3 * n, n_grad)  # ∂F/∂θ = -∂(grad_x E)/∂θ
    basis = _rigid_modes(atoms.positions, free, bool(atoms.pbc.any()))
    dx = np.zeros((3 * n, n_grad))
    dx[dof] = _solve_projected(hessian[np.ix_(dof, dof)], dF[dof], basis)
    out = {
        "energy": partial["energy"],  # envelope theorem: F(x*) = 0
        "positions": dx.reshape(1, n, 3, n_grad),
        "forces": (dF - hessian @ dx).reshape(1, n, 3, n_grad),
    }
    if "stress" in partial:
        out["stress"] = partial["stress"] + _stress_change(pairs, dx, atoms)[None]
    return out


def _fixed_geometry_jacobians(
    kernel: _PairKernel, atoms: Atoms, dC: np.ndarray
) -> dict[str, np.ndarray]:
    """Energy, forces (and stress) jacobians at the fixed geometry ``atoms``, ``dC @ M``.

    Args:
        dC: (2 n_types, n_grad) coefficient jacobian of one vector.

    Returns:
        field -> (1, *shape, n_grad).
    """
    types, M, stress = kernel.pair_sums(atoms)
    jac = (_rows(dC, types, kernel.n_types).T @ M).T  # (n_cols, n_grad)
    return _split_columns(jac[None], len(atoms), stress)


def _rows(dC: np.ndarray, types: np.ndarray, n_types: int) -> np.ndarray:
    """Rows of (2 n_types, n_grad) ``dC`` for the present ``types``, in pair-sum order."""
    return dC[np.concatenate([types, n_types + types])]


def _pair_terms(
    kernel: _PairKernel, atoms: Atoms, C: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Half pair list with u'(r) and u''(r) of each pair.

    Returns:
        i, j (n_pairs,), D (n_pairs, 3) [Å], r (n_pairs,) [Å], du = u'(r) [eV/Å],
        d2u = u''(r) [eV/Å^2], with u = c12 r^-12 - c6 r^-6.
    """
    i, j, D = half_pair_list(atoms, kernel.cutoff)
    r = np.sqrt(np.einsum("pk,pk->p", D, D))
    t = kernel.type_matrix()[atoms.numbers[i], atoms.numbers[j]]
    c12, c6 = C[t], C[kernel.n_types + t]
    inv = 1.0 / r
    inv6 = inv**6
    du = (-12.0 * c12 * inv6 + 6.0 * c6) * inv6 * inv
    d2u = (156.0 * c12 * inv6 - 42.0 * c6) * inv6 * inv * inv
    return i, j, D, r, du, d2u


def _pair_hessian(
    kernel: _PairKernel, atoms: Atoms, C: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Analytic Hessian d^2E/dx^2 of the pair energy, (3 n_atoms, 3 n_atoms) [eV/Å^2].

    Each pair with d = x_j - x_i (+ image shift) contributes the block
    ``K = u'' d̂ d̂ᵀ + (u'/r)(I - d̂ d̂ᵀ)`` to (i, i) and (j, j) and ``-K`` to (i, j) and
    (j, i); an atom's pairs with its own images cancel (fixed cell). Also returns the
    pair terms of :func:`_pair_terms`.
    """
    n = len(atoms)
    i, j, D, r, du, d2u = _pair_terms(kernel, atoms, C)
    unit = D / r[:, None]
    outer = unit[:, :, None] * unit[:, None, :]
    K = d2u[:, None, None] * outer + (du / r)[:, None, None] * (np.eye(3) - outer)
    H = np.zeros((n, 3, n, 3))
    np.add.at(H, (i, slice(None), i), K)
    np.add.at(H, (j, slice(None), j), K)
    np.add.at(H, (i, slice(None), j), -K)
    np.add.at(H, (j, slice(None), i), -K)
    return H.reshape(3 * n, 3 * n), (i, j, D, r, du, d2u)


def _rigid_modes(positions: np.ndarray, free: np.ndarray, periodic: bool) -> np.ndarray:
    """Orthonormal rigid-body motions that leave fixed atoms in place, on the free DOF.

    Translations, plus rotations about the centroid for non-periodic structures;
    combinations that move a fixed atom are dropped. Returns (3 n_free, n_modes).
    """
    n = len(positions)
    modes = [np.tile(np.eye(3)[a], n) for a in range(3)]
    if not periodic:
        centred = positions - positions.mean(axis=0)
        for a in range(3):
            modes.append(np.cross(np.eye(3)[a], centred).reshape(-1))
    R = np.array(modes).T  # (3n, m)
    dof = np.repeat(free, 3)
    fixed_rows = R[~dof]
    if fixed_rows.size:
        _, sv, vt = np.linalg.svd(fixed_rows)
        rank = int((sv > 1e-10 * max(sv.max(initial=0.0), 1.0)).sum())
        R = R @ vt[rank:].T
    R = R[dof]
    if R.size == 0:
        return R.reshape(int(dof.sum()), 0)
    u, sv, _ = np.linalg.svd(R, full_matrices=False)
    return u[:, sv > 1e-10 * max(sv.max(initial=0.0), 1.0)]


def _solve_projected(H: np.ndarray, rhs: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Solve ``H dx = rhs`` for dx orthogonal to the rigid modes ``basis`` (n, m).

    Uses ``(P H P + s Q Qᵀ) dx = P rhs`` with ``P = I - Q Qᵀ`` and ``s`` the Hessian's
    scale, which is regular when H is regular away from the rigid modes.
    """
    n = H.shape[0]
    if n == 0:
        return np.zeros_like(rhs)
    QQ = basis @ basis.T
    P = np.eye(n) - QQ
    scale = max(float(np.abs(np.diag(H)).max(initial=0.0)), 1e-12)
    A = P @ H @ P + scale * QQ
    try:
        return P @ np.linalg.solve(A, P @ rhs)
    except np.linalg.LinAlgError:
        return P @ np.linalg.lstsq(A, P @ rhs, rcond=None)[0]


def _stress_change(
    pairs: tuple[np.ndarray, ...], dx: np.ndarray, atoms: Atoms
) -> np.ndarray:
    """Change of the stress when the atoms move by ``dx`` (3 n_atoms, n_grad): (6, n_grad).

    sigma = (1/V) sum_pairs g(r) D (x) D with g = u'/r, so along dD = dx_j - dx_i:
    d(g D_a D_b) = g'(r) (D.dD / r) D_a D_b + g (dD_a D_b + D_a dD_b), g' = (u'' - g)/r.
    """
    i, j, D, r, du, d2u = pairs
    n_grad = dx.shape[1]
    move = dx.reshape(-1, 3, n_grad)
    dD = move[j] - move[i]  # (n_pairs, 3, n_grad)
    g = du / r
    dg = ((d2u - g) / (r * r))[:, None] * np.einsum(
        "pa,pak->pk", D, dD
    )  # (n_pairs, n_grad)
    volume = atoms.get_volume()
    out = np.empty((6, n_grad))
    for v, (a, b) in enumerate(_VOIGT):
        term = dg * (D[:, a] * D[:, b])[:, None] + g[:, None] * (
            dD[:, a] * D[:, b, None] + D[:, a, None] * dD[:, b]
        )
        out[v] = term.sum(axis=0) / volume
    return out


class _LJCalculator(Calculator):
    """ASE calculator for one LJ parameter vector, using :meth:`_PairKernel.pair_sums`.

    Args:
        kernel: the engine's kernel (elements, pairs, cutoff, shift).
        eps: (n_types,) well depths [eV]; rmin: (n_types,) [Å].
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress")
    nolabel = True

    def __init__(self, kernel: _PairKernel, eps: np.ndarray, rmin: np.ndarray) -> None:
        super().__init__()
        self.kernel = kernel
        self.eps = np.array(eps, dtype=float)
        self.rmin = np.array(rmin, dtype=float)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] | None = None,
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        current: Atoms = self.atoms  # type: ignore[assignment]  # set by Calculator.calculate
        n = len(current)
        types, M, stress = self.kernel.pair_sums(current)
        with np.errstate(all="ignore"):
            out = _coefficients(self.eps[types], self.rmin[types]) @ M  # (n_cols,)
        energy = float(out[0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": out[1 : 1 + 3 * n].reshape(n, 3),
        }
        if stress:
            self.results["stress"] = out[1 + 3 * n :].copy()
