"""Batched geometry optimization in pure JAX: ASE's FIRE, LBFGS and BFGS, plus restraints.

:func:`minimize` relaxes one structure with an energy function closed over by the caller
(parameters captured). It is a pure function of arrays, written for one structure and one
parameter set; batch it with ``jax.vmap`` (over geometries, parameter vectors or both) and
compile it with ``jax.jit``. The loop is a ``jax.lax.while_loop`` capped at ``max_steps``;
under ``vmap`` it runs until every member has stopped, and a member that stopped is frozen
(its positions and results are masked), so each member gives what its unbatched run gives.
:func:`minimize_many` relaxes several structures with *one* energy function of all of
them (e.g. structures packed into one system), each member with its own optimizer state,
step count and convergence, as :func:`minimize` relaxes it alone; ``minimize`` is that
with one member.

The three methods follow ASE's optimizers step for step, with ASE's defaults and units
(eV, Å), so they reach the same minima as ``parafit.engines.relax.run_job``:

* ``fire``: ``ase.optimize.FIRE`` (Bitzek et al. 2006): dt 0.1, dtmax 1.0, Nmin 5,
  finc 1.1, fdec 0.5, astart 0.1, fa 0.99; the velocity is mixed with the force while
  P = F.v > 0, else zeroed with dt *= fdec and a = astart; the step dt*v is scaled so
  that its norm over *all* coordinates is at most ``maxstep`` (0.2 Å).
* ``lbfgs``: ``ase.optimize.LBFGS``: memory 100, initial inverse Hessian I/alpha with
  alpha 70 eV/Å², no line search; the step is scaled so that the longest per-atom step
  is at most ``maxstep``. The inverse-Hessian product uses the compact representation
  of Byrd, Nocedal and Schnabel (1994) (matrix products and two triangular solves
  instead of ASE's two-loop recursion; equal in exact arithmetic).
* ``bfgs``: ``ase.optimize.BFGS``: Hessian 70 I eV/Å², BFGS update (skipped when no
  coordinate moved by 1e-7 Å), step -V (V^T g / |omega|) from the eigenpairs of the
  Hessian, longest per-atom step at most ``maxstep``.

``bfgslinesearch`` has no counterpart here. The default is ``lbfgs`` (as
:class:`~parafit.jobs.GeometryOptimization`). On the 185 ReaxFF molecules of 3-26 atoms
of the disulfide benchmark (LAMMPS ReaxFF through ASE, fmax 0.01 eV/Å, no restraints)
ASE's FIRE took a median of 69 steps (90th percentile 228; 4 unconverged after 500),
LBFGS 24 (58; 2) and BFGS 23 (56; 0); FIRE also stopped a median 1e-4 eV higher. BFGS
diagonalises a (3 n_atoms)^2 matrix per step; LBFGS costs O(memory x 3 n_atoms) per step
plus two (memory x memory) triangular solves.

Convergence is ASE's: the largest per-atom force norm over free atoms is *strictly*
below ``fmax`` [eV/Å], tested before the first step and after each step (so a member
evaluates its energy ``n_steps + 1`` times). A non-finite energy or force stops that
member at once with ``converged = False``; the non-finite values are returned so that
the caller can flag the result as failed.

Harmonic restraints (:class:`RestraintArrays`, built by :func:`restraint_arrays`) use
the definitions of :func:`parafit.engines.relax.restraint_energy_and_forces`. They are
added to the model while relaxing only; the reported energy and forces are the model's.

Reverse-mode differentiation through :func:`minimize` is not supported (``while_loop``);
differentiate the energy at the returned geometry instead.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from parafit.errors import InputError
from parafit.jobs import AngleRestraint, BondRestraint, Restraint, TorsionRestraint

__all__ = [
    "ANGLE",
    "BOND",
    "TORSION",
    "FireParameters",
    "Method",
    "RelaxResult",
    "RestraintArrays",
    "minimize",
    "minimize_many",
    "restraint_arrays",
    "restraint_energy",
    "restraint_energy_and_forces",
]

Method = Literal["fire", "lbfgs", "bfgs"]
METHODS: tuple[str, ...] = ("fire", "lbfgs", "bfgs")

#: Restraint kinds in :attr:`RestraintArrays.kind`.
BOND, ANGLE, TORSION = 0, 1, 2


# ---- restraints ----------------------------------------------------------------------


@dataclass(frozen=True)
class RestraintArrays:
    """Harmonic restraints of one structure as padded arrays (stack them to batch).

    Slot ``r`` is used when ``mask[r]``; unused slots have index 0, zero force constant
    and give no energy. Atom ``q`` of restraint ``r`` sits at
    ``positions[atoms[r, q]] + shifts[r, q]``, so a periodic caller can pass the image
    shifts it wants (no minimum image is taken here).

    Attributes:
        kind: (n_max,) int, :data:`BOND`, :data:`ANGLE` or :data:`TORSION`.
        atoms: (n_max, 4) int, 0-based atom indices (bond: 2 used, angle: 3, j the
            vertex; torsion: 4).
        target: (n_max,) target distance [Å] or angle / dihedral [rad].
        k: (n_max,) force constant [eV/Å²] or [eV/rad²].
        mask: (n_max,) bool, which slots hold a restraint.
        shifts: (n_max, 4, 3) image shift added to each atom's position [Å].
    """

    kind: jax.Array
    atoms: jax.Array
    target: jax.Array
    k: jax.Array
    mask: jax.Array
    shifts: jax.Array


jax.tree_util.register_dataclass(
    RestraintArrays,
    data_fields=["kind", "atoms", "target", "k", "mask", "shifts"],
    meta_fields=[],
)


def restraint_arrays(
    restraints: Sequence[Restraint],
    n_max: int,
    *,
    shifts: np.ndarray | None = None,
) -> RestraintArrays:
    """Padded arrays for ``restraints`` (parafit.jobs Bond/Angle/TorsionRestraint).

    Args:
        restraints: the restraints (0-based atom indices; targets in Å or degrees).
        n_max: number of slots (>= len(restraints)); the same for every structure
            that is stacked.
        shifts: optional (len(restraints), 4, 3) image shifts [Å] (see
            :class:`RestraintArrays`); zero by default.

    Returns:
        RestraintArrays of NumPy arrays (float64, int32), angles in radians.

    Raises:
        InputError: more restraints than ``n_max``, an unknown restraint type, or
            ``shifts`` of the wrong shape.
    """
    n = len(restraints)
    if n > n_max:
        raise InputError(
            f"restraint_arrays: {n} restraints do not fit in n_max={n_max} slots; "
            "pass n_max >= the largest restraint count of the structures stacked.",
            key="n_max",
        )
    kind = np.zeros(n_max, dtype=np.int32)
    atoms = np.zeros((n_max, 4), dtype=np.int32)
    target = np.zeros(n_max)
    k = np.zeros(n_max)
    mask = np.zeros(n_max, dtype=bool)
    out_shifts = np.zeros((n_max, 4, 3))
    for slot, r in enumerate(restraints):
        if isinstance(r, BondRestraint):
            kind[slot], idx, target[slot] = BOND, (r.i, r.j), r.target
        elif isinstance(r, AngleRestraint):
            kind[slot], idx = ANGLE, (r.i, r.j, r.k)
            target[slot] = np.radians(r.target)
        elif isinstance(r, TorsionRestraint):
            kind[slot], idx = TORSION, (r.i, r.j, r.k, r.l)
            target[slot] = np.radians(r.target)
        else:
            raise InputError(
                "restraint_arrays: restraints must be BondRestraint, AngleRestraint or "
                f"TorsionRestraint; got {type(r).__name__} at position {slot}.",
                key="restraints",
            )
        atoms[slot, : len(idx)] = idx
        k[slot] = r.force_constant
        mask[slot] = True
    if shifts is not None:
        s = np.asarray(shifts, dtype=float)
        if s.shape != (n, 4, 3):
            raise InputError(
                f"restraint_arrays: shifts must have shape ({n}, 4, 3) [Å]; got "
                f"{s.shape}.",
                key="shifts",
            )
        out_shifts[:n] = s
    return RestraintArrays(
        kind=kind, atoms=atoms, target=target, k=k, mask=mask, shifts=out_shifts
    )


def _safe_norm(v: jax.Array) -> jax.Array:
    """Euclidean norm over the last axis, with a zero (not NaN) gradient at 0."""
    sq = jnp.sum(v * v, axis=-1)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _restraint_slot_energies(
    positions: jax.Array, restraints: RestraintArrays
) -> jax.Array:
    """(n_max,) energy of each slot [eV]; zero for unused slots."""
    p = positions[restraints.atoms] + restraints.shifts  # (n_max, 4, 3)
    k, target = restraints.k, restraints.target
    # bond: distance between atoms 0 and 1
    dist = _safe_norm(p[:, 1] - p[:, 0])
    e_bond = 0.5 * k * (dist - target) ** 2
    # angle at atom 1 between u = r0 - r1 and v = r2 - r1; atan2 is exact near 0 and pi
    u, v = p[:, 0] - p[:, 1], p[:, 2] - p[:, 1]
    sin_uv = _safe_norm(jnp.cross(u, v))
    cos_uv = jnp.sum(u * v, axis=-1)
    undefined = (sin_uv == 0) & (cos_uv == 0)  # a zero-length arm: no force
    theta = jnp.arctan2(sin_uv, jnp.where(undefined, 1.0, cos_uv))
    e_angle = 0.5 * k * (theta - target) ** 2
    # torsion, IUPAC sign as ASE: b1 = r1 - r0, b2 = r2 - r1, b3 = r3 - r2
    b1, b2, b3 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 1], p[:, 3] - p[:, 2]
    m, n = jnp.cross(b1, b2), jnp.cross(b2, b3)
    nb2 = _safe_norm(b2)
    defined = (nb2 > 0) & (jnp.sum(m * m, -1) > 0) & (jnp.sum(n * n, -1) > 0)
    y = jnp.where(defined, nb2 * jnp.sum(b1 * n, -1), 0.0)
    x = jnp.where(defined, jnp.sum(m * n, -1), 1.0)
    phi = jnp.arctan2(y, x)
    delta = jnp.mod(phi - target + jnp.pi, 2 * jnp.pi) - jnp.pi
    e_torsion = jnp.where(defined, 0.5 * k * delta**2, 0.0)
    kind = restraints.kind
    e = jnp.where(kind == BOND, e_bond, jnp.where(kind == ANGLE, e_angle, e_torsion))
    return jnp.where(restraints.mask, e, 0.0)


def restraint_energy(positions: jax.Array, restraints: RestraintArrays) -> jax.Array:
    """Total harmonic restraint energy [eV] at ``positions`` (n_atoms, 3) [Å].

    ``E = sum k/2 (x - target)^2`` (bond: x the distance [Å]; angle and torsion: x in
    radians, torsion differences wrapped to [-pi, pi)), as
    :func:`parafit.engines.relax.restraint_energy_and_forces`. An undefined angle or
    torsion (zero-length arm, collinear atoms) gives no force. Differentiable (the
    gradient is finite everywhere).
    """
    return jnp.sum(_restraint_slot_energies(positions, restraints))


def restraint_energy_and_forces(
    positions: jax.Array, restraints: RestraintArrays
) -> tuple[jax.Array, jax.Array]:
    """Restraint energy [eV] and forces (n_atoms, 3) [eV/Å] = -grad of :func:`restraint_energy`."""
    e, g = jax.value_and_grad(restraint_energy)(positions, restraints)
    return e, -g


# ---- minimizer -----------------------------------------------------------------------


@dataclass(frozen=True)
class FireParameters:
    """FIRE settings, ASE's defaults (``ase.optimize.FIRE``); times in ASE's units."""

    dt: float = 0.1
    dtmax: float = 1.0
    nmin: int = 5
    finc: float = 1.1
    fdec: float = 0.5
    astart: float = 0.1
    fa: float = 0.99


@dataclass(frozen=True)
class RelaxResult:
    """Outcome of :func:`minimize` for one structure (leading batch axes under vmap).

    Attributes:
        positions: (n_atoms, 3) final geometry [Å].
        energy: () the model's energy there [eV] (energy_fn's value times
            ``energy_unit``), restraints excluded.
        forces: (n_atoms, 3) the model's forces there [eV/Å], all atoms, restraints
            excluded, fixed atoms not zeroed (as ASE's ``apply_constraint=False``).
        max_force: () largest per-atom norm of the forces the optimizer saw (model plus
            restraints, free atoms only) [eV/Å].
        n_steps: () int32, optimizer steps taken (ASE's ``nsteps``).
        converged: () bool, ``max_force < fmax`` with finite values.
        watched: () bool, the flag of ``energy_fn`` (with ``watch=True``) was true
            at some geometry the optimizer evaluated (False without ``watch``).
        aux: what ``energy_fn`` returned besides the energy at the final geometry
            (:func:`minimize_many` with ``aux=True``; None otherwise).
    """

    positions: jax.Array
    energy: jax.Array
    forces: jax.Array
    max_force: jax.Array
    n_steps: jax.Array
    converged: jax.Array
    watched: jax.Array
    aux: Any = None


jax.tree_util.register_dataclass(
    RelaxResult,
    data_fields=[
        "positions",
        "energy",
        "forces",
        "max_force",
        "n_steps",
        "converged",
        "watched",
        "aux",
    ],
    meta_fields=[],
)


class _Carry(NamedTuple):
    x: jax.Array  # (n, 3) current positions [Å]
    k: jax.Array  # steps taken
    done: jax.Array
    energy: jax.Array  # model energy at x [eV] (after the first evaluation)
    forces: jax.Array  # model forces at x [eV/Å]
    max_force: jax.Array
    converged: jax.Array
    watched: jax.Array  # energy_fn's flag was true at some evaluated geometry
    aux: Any  # energy_fn's auxiliary output at x (None without aux)
    opt: tuple[jax.Array, ...]


_RESULTS = (
    "x",
    "k",
    "done",
    "energy",
    "forces",
    "max_force",
    "converged",
    "watched",
    "aux",
)

# Each method: init(x) -> state; step(state, x, f, k) -> (dx, state), with f the
# optimizer's forces (n, 3) [eV/Å] (zero on fixed atoms) and k the step index.


def _fire(p: FireParameters, maxstep: jax.Array, dtype: jnp.dtype):
    def init(x: jax.Array) -> tuple[jax.Array, ...]:
        zero = jnp.zeros((), dtype)
        return (jnp.zeros_like(x), zero + p.dt, zero + p.astart, jnp.int32(0))

    def step(state, x, f, k):
        v, dt, a, n_pos = state
        vf = jnp.vdot(f, v)
        f2 = jnp.vdot(f, f)
        v_norm = jnp.sqrt(jnp.vdot(v, v))
        f_norm = jnp.sqrt(jnp.where(f2 > 0, f2, 1.0))
        downhill = vf > 0.0
        grow = n_pos > p.nmin
        v_mix = (1.0 - a) * v + a * f / f_norm * v_norm
        v_new = jnp.where(downhill, v_mix, jnp.zeros_like(v))
        dt_new = jnp.where(
            downhill,
            jnp.where(grow, jnp.minimum(dt * p.finc, p.dtmax), dt),
            dt * p.fdec,
        )
        a_new = jnp.where(downhill, jnp.where(grow, a * p.fa, a), p.astart)
        n_new = jnp.where(downhill, n_pos + 1, 0)
        first = k == 0  # ASE: no velocity yet, nothing mixed or reset
        v = jnp.where(first, v, v_new)
        dt = jnp.where(first, dt, dt_new)
        a = jnp.where(first, a, a_new)
        n_pos = jnp.where(first, n_pos, n_new)
        v = v + dt * f
        dr = dt * v
        dr_norm = jnp.sqrt(jnp.vdot(dr, dr))
        too_long = dr_norm > maxstep
        dr = jnp.where(too_long, dr * (maxstep / jnp.where(too_long, dr_norm, 1.0)), dr)
        return dr, (v, dt, a, n_pos)

    return init, step


def _limit_longest(dr: jax.Array, maxstep: jax.Array) -> jax.Array:
    """Scale the (n, 3) step so the longest per-atom step is at most maxstep (ASE)."""
    longest = jnp.max(jnp.sqrt(jnp.sum(dr * dr, axis=1)), initial=0.0)
    too_long = longest >= maxstep
    return jnp.where(too_long, dr * (maxstep / jnp.where(too_long, longest, 1.0)), dr)


def _lbfgs(memory: int, alpha: float, maxstep: jax.Array, dtype: jnp.dtype):
    gamma = 1.0 / alpha  # initial inverse Hessian H0 = gamma I [Å²/eV]
    m = memory

    def init(x: jax.Array) -> tuple[jax.Array, ...]:
        d = x.size
        return (
            jnp.zeros((m, d), dtype),  # S: position differences, oldest first
            jnp.zeros((m, d), dtype),  # Y: gradient differences
            jnp.zeros((m, m), dtype),  # SY[i, j] = s_i . y_j
            jnp.int32(0),  # pairs stored
            jnp.zeros(d, dtype),  # previous positions
            jnp.zeros(d, dtype),  # previous gradient
        )

    def step(state, x, f, k):
        S, Y, SY, n_stored, x0, g0 = state
        xf, g = x.reshape(-1), -f.reshape(-1)
        # ASE stores a pair from the second step on; at k = 0 a zero pair is rolled
        # into the all-zero buffers instead, which changes nothing.
        first = k == 0
        s_new = jnp.where(first, 0.0, xf - x0)
        y_new = jnp.where(first, 0.0, g - g0)
        n_stored = jnp.where(first, n_stored, jnp.minimum(n_stored + 1, m))
        S = jnp.concatenate([S[1:], s_new[None]])
        Y = jnp.concatenate([Y[1:], y_new[None]])
        SY = jnp.pad(SY[1:, 1:], ((0, 1), (0, 1)))
        SY = SY.at[-1, :].set(Y @ s_new).at[:, -1].set(S @ y_new)
        # H g = gamma g + S^T R^-T ((D + gamma Y Y^T) p - gamma Y g) - gamma Y^T p,
        # p = R^-1 S g, R = triu(S Y^T), D = diag(S Y^T) (rows of S, Y are pairs).
        # Unused slots (the oldest, all-zero rows) get R_ii = 1: they contribute 0.
        unused = jnp.arange(m) < m - n_stored
        R = jnp.triu(SY) + jnp.diag(unused.astype(dtype))
        p = jax.scipy.linalg.solve_triangular(R, S @ g, lower=False)
        yp = p @ Y  # Y^T p; Y Y^T p = Y @ yp without storing Y Y^T
        rhs = jnp.diagonal(SY) * p + gamma * (Y @ yp) - gamma * (Y @ g)
        w = jax.scipy.linalg.solve_triangular(R, rhs, trans="T", lower=False)
        # w @ S rather than S.T @ w: the same product, compiled much faster by XLA:CPU
        hg = gamma * g + w @ S - gamma * yp
        dr = _limit_longest(-hg.reshape(x.shape), maxstep)
        return dr, (S, Y, SY, n_stored, xf, g)

    return init, step


def _bfgs(alpha: float, maxstep: jax.Array, dtype: jnp.dtype):
    def init(x: jax.Array) -> tuple[jax.Array, ...]:
        d = x.size
        return (
            alpha * jnp.eye(d, dtype=dtype),  # Hessian [eV/Å²]
            jnp.zeros(d, dtype),  # previous positions
            jnp.zeros(d, dtype),  # previous gradient
        )

    def step(state, x, f, k):
        H, x0, g0 = state
        xf, g = x.reshape(-1), -f.reshape(-1)
        dpos, dgrad = xf - x0, g - g0
        dg = H @ dpos
        a, b = dpos @ dgrad, dpos @ dg
        H_new = H + jnp.outer(dgrad, dgrad) / a - jnp.outer(dg, dg) / b
        update = (k > 0) & (jnp.max(jnp.abs(dpos)) >= 1e-7)
        H = jnp.where(update, H_new, H)
        omega, V = jnp.linalg.eigh(H, symmetrize_input=False)  # H is symmetric
        dr = -V @ ((g @ V) / jnp.abs(omega))
        return _limit_longest(dr.reshape(x.shape), maxstep), (H, xf, g)

    return init, step


def _check_method(method: str, name: str) -> None:
    if method not in METHODS:
        raise InputError(
            f"{name}: method must be one of {', '.join(METHODS)}; got {method!r}. "
            "(ASE's bfgslinesearch has no JAX counterpart: use 'bfgs' or 'lbfgs'.)",
            key="method",
        )


def _as_positions(positions0: jax.Array) -> jax.Array:
    x0 = jnp.asarray(positions0)
    if not jnp.issubdtype(x0.dtype, jnp.floating):
        x0 = x0.astype(jnp.result_type(float))
    return x0


def minimize(
    energy_fn: Callable[[jax.Array], jax.Array],
    positions0: jax.Array,
    *,
    fixed: jax.Array | None = None,
    fmax: float | jax.Array = 0.01,
    max_steps: int | jax.Array = 100,
    method: Method = "lbfgs",
    restraints: RestraintArrays | None = None,
    energy_unit: float | jax.Array = 1.0,
    maxstep: float | jax.Array = 0.2,
    fire: FireParameters | None = None,
    memory: int = 100,
    alpha: float = 70.0,
    watch: bool = False,
) -> RelaxResult:
    """Relax ``positions0`` to a local minimum of ``energy_fn`` (plus ``restraints``).

    Pure and traceable: call it inside ``jax.jit`` / ``jax.vmap``; forces are
    ``-jax.grad(energy_fn)``. Padding atoms must be marked ``fixed`` (and ignored by
    ``energy_fn``).

    Args:
        energy_fn: positions (n_atoms, 3) [Å] -> scalar energy, in the unit that
            ``energy_unit`` converts to eV; parameters are closed over by the caller.
        positions0: (n_atoms, 3) start geometry [Å].
        fixed: (n_atoms,) bool, atoms that never move (ASE ``FixAtoms``); default none.
        fmax: force tolerance [eV/Å]; converged when every free atom's force norm is
            below it (ASE's criterion). May be traced.
        max_steps: step cap (ASE's ``steps``); may be traced.
        method: ``fire``, ``lbfgs`` or ``bfgs`` (static), ASE's algorithm of that name.
        restraints: harmonic restraints added while relaxing (see
            :func:`restraint_arrays`); reported energy and forces exclude them.
        energy_unit: factor converting energy_fn's output to eV (e.g. 1/23.06 for
            kcal/mol), so that ``fmax`` and the step dynamics are ASE's.
        maxstep: largest step [Å]: FIRE limits the norm of the whole step, LBFGS and
            BFGS the longest per-atom step (as ASE). Default 0.2.
        fire: FIRE settings (``method="fire"``); default ASE's.
        memory: LBFGS memory (static; ASE's default 100). With a Python int
            ``max_steps`` at most ``max_steps - 1`` pairs are ever stored, and the
            memory is cut to that (same results, less work).
        alpha: initial Hessian guess [eV/Å²] for LBFGS and BFGS (ASE's 70).
        watch: ``energy_fn`` returns ``(energy, flag)``, the flag a () bool computed
            with the energy (e.g. an atom pair entering a cutoff its lists do not
            cover); ``RelaxResult.watched`` says whether it was ever true.

    Returns:
        RelaxResult (model energy [eV] and forces [eV/Å] at the final geometry,
        n_steps, converged).

    Raises:
        InputError: unknown ``method``, ``positions0`` not (n_atoms, 3), ``fixed`` of
            another length, ``memory < 1``, or ``energy_fn`` not returning a scalar
            (all at trace time).
    """
    _check_method(method, "minimize")
    x0 = _as_positions(positions0)
    if x0.ndim != 2 or x0.shape[1] != 3:
        raise InputError(
            f"minimize: positions0 must have shape (n_atoms, 3); got {x0.shape}.",
            key="positions0",
        )
    n_atoms = x0.shape[0]
    if fixed is not None:
        fixed = jnp.asarray(fixed, dtype=bool)
        if fixed.shape != (n_atoms,):
            raise InputError(
                f"minimize: fixed must have shape ({n_atoms},) like positions0; got "
                f"{fixed.shape}.",
                key="fixed",
            )
        fixed = fixed[None]
    e_out = jax.eval_shape(energy_fn, x0)
    e_shape = (e_out[0] if watch else e_out).shape
    if e_shape != ():
        raise InputError(
            f"minimize: energy_fn must return a scalar energy; got shape {e_shape}.",
            key="energy_fn",
        )

    def energies(x: jax.Array) -> Any:
        out = energy_fn(x[0])
        if watch:
            return out[0][None], jnp.asarray(out[1], bool)[None]
        return out[None]

    result = minimize_many(
        energies,
        x0[None],
        fixed=fixed,
        fmax=fmax,
        max_steps=max_steps,
        method=method,
        restraints=None
        if restraints is None
        else jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], restraints),
        energy_unit=energy_unit,
        maxstep=maxstep,
        fire=fire,
        memory=memory,
        alpha=alpha,
        watch=watch,
    )
    return jax.tree_util.tree_map(lambda a: a[0], result)


def minimize_many(
    energy_fn: Callable[[jax.Array], Any],
    positions0: jax.Array,
    *,
    fixed: jax.Array | None = None,
    fmax: float | jax.Array = 0.01,
    max_steps: int | jax.Array = 100,
    method: Method = "lbfgs",
    restraints: RestraintArrays | None = None,
    energy_unit: float | jax.Array = 1.0,
    maxstep: float | jax.Array = 0.2,
    fire: FireParameters | None = None,
    memory: int = 100,
    alpha: float = 70.0,
    watch: bool = False,
    aux: bool = False,
) -> RelaxResult:
    """Relax S structures at once with one energy function of all of them.

    Each member takes the steps :func:`minimize` takes for it alone (its own
    optimizer state, step count and convergence); the loop runs until every member
    has stopped, a stopped member frozen. Where the energy of several structures
    costs little more than one (e.g. structures packed into one system, whose
    interaction lists never connect two of them) this is much cheaper than relaxing
    them one by one or under ``vmap``.

    Args:
        energy_fn: positions (S, n_atoms, 3) [Å] -> (S,) energies (member s's
            depending on ``positions[s]`` only), in the unit that ``energy_unit``
            converts to eV; with ``watch``, a pair (energies, (S,) bool flags).
        positions0: (S, n_atoms, 3) start geometries [Å].
        fixed: (S, n_atoms) bool, atoms that never move; default none.
        fmax: () or (S,) force tolerance [eV/Å].
        max_steps: () or (S,) step caps.
        restraints: :class:`RestraintArrays` with a leading (S,) axis.
        method, energy_unit, maxstep, fire, memory, alpha: as :func:`minimize`.
        watch: ``energy_fn`` also returns a flag per member;
            ``RelaxResult.watched`` says whether it was ever true for that member.
        aux: ``energy_fn`` returns one more item last, a pytree of arrays with a
            leading (S,) axis computed with the energies (e.g. charges);
            ``RelaxResult.aux`` holds it at each member's final geometry, so the
            caller need not evaluate there again.

    Returns:
        RelaxResult with a leading (S,) axis.

    Raises:
        InputError: unknown ``method``, ``positions0`` not (S, n_atoms, 3),
            ``fixed`` of another shape, ``memory < 1``, or ``energy_fn`` not
            returning (S,) energies (all at trace time).
    """
    _check_method(method, "minimize_many")
    x0 = _as_positions(positions0)
    if x0.ndim != 3 or x0.shape[2] != 3:
        raise InputError(
            "minimize_many: positions0 must have shape (n_structures, n_atoms, 3); "
            f"got {x0.shape}.",
            key="positions0",
        )
    n_members, n_atoms, _ = x0.shape
    dtype = x0.dtype
    if fixed is None:
        free = jnp.ones((n_members, n_atoms), dtype=bool)
    else:
        fixed = jnp.asarray(fixed, dtype=bool)
        if fixed.shape != (n_members, n_atoms):
            raise InputError(
                f"minimize_many: fixed must have shape ({n_members}, {n_atoms}) like "
                f"positions0; got {fixed.shape}.",
                key="fixed",
            )
        free = ~fixed
    if memory < 1:
        raise InputError(
            f"minimize: memory must be >= 1; got {memory!r}.", key="memory"
        )
    if isinstance(max_steps, int | np.integer):
        memory = max(1, min(memory, int(max_steps) - 1))
    unit = jnp.asarray(energy_unit, dtype)
    fmax = jnp.broadcast_to(jnp.asarray(fmax, dtype), (n_members,))
    maxstep = jnp.asarray(maxstep, dtype)
    max_steps = jnp.broadcast_to(jnp.asarray(max_steps, jnp.int32), (n_members,))
    free3 = free[..., None]

    e_out = jax.eval_shape(energy_fn, x0)
    e_shape = (e_out[0] if watch or aux else e_out).shape
    if e_shape != (n_members,):
        raise InputError(
            f"minimize_many: energy_fn must return ({n_members},) energies; got shape "
            f"{e_shape}.",
            key="energy_fn",
        )

    def split(out: Any) -> tuple[jax.Array, jax.Array, Any]:
        """(energies, flags, aux) of an output of energy_fn."""
        if not (watch or aux):
            return out, jnp.zeros(n_members, bool), None
        flag = jnp.asarray(out[1], bool) if watch else jnp.zeros(n_members, bool)
        return out[0], flag, out[-1] if aux else None

    def total(x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array, Any]]:
        e, flag, extra = split(energy_fn(x))
        return jnp.sum(e), (e, flag, extra)

    energy_and_grad = jax.value_and_grad(total, has_aux=True)

    def evaluate(x: jax.Array):
        (_, (e, flag, extra)), de = energy_and_grad(x)
        e, f_model = e * unit, -de * unit
        f_opt = f_model
        finite = jnp.isfinite(e) & jnp.all(jnp.isfinite(f_model), axis=(1, 2))
        if restraints is not None:
            _, f_restraint = jax.vmap(restraint_energy_and_forces)(x, restraints)
            f_opt = f_opt + f_restraint
            finite &= jnp.all(jnp.isfinite(f_restraint), axis=(1, 2))
        f_opt = jnp.where(free3, f_opt, 0.0)
        max_force = jnp.max(
            jnp.sqrt(jnp.sum(f_opt * f_opt, axis=2)), axis=1, initial=0.0
        )
        return e, f_model, f_opt, finite, max_force, flag, extra

    if method == "fire":
        init, step = _fire(fire or FireParameters(), maxstep, dtype)
    elif method == "lbfgs":
        init, step = _lbfgs(memory, alpha, maxstep, dtype)
    else:
        init, step = _bfgs(alpha, maxstep, dtype)

    def per_member(mask: jax.Array, a: Any, b: Any) -> Any:
        """``a`` where the (S,) ``mask`` holds, else ``b`` (arrays or pytrees)."""
        return jax.tree_util.tree_map(
            lambda p, q: jnp.where(
                mask.reshape(mask.shape + (1,) * (p.ndim - 1)), p, q
            ),
            a,
            b,
        )

    def body(c: _Carry) -> _Carry:
        e, f_model, f_opt, finite, max_force, flag, extra = evaluate(c.x)
        watched = c.watched | flag
        converged = finite & (max_force < fmax)
        stop = converged | ~finite | (c.k >= max_steps)
        dx, opt = jax.vmap(step)(c.opt, c.x, f_opt, c.k)
        dx = jnp.where(free3, dx, 0.0)
        new = _Carry(
            x=per_member(stop, c.x, c.x + dx),
            k=jnp.where(stop, c.k, c.k + 1),
            done=stop,
            energy=e,
            forces=f_model,
            max_force=max_force,
            converged=converged,
            watched=watched,
            aux=extra,
            opt=opt,  # not needed once stopped: left unmasked (it may be large)
        )
        # a member that had already stopped stays frozen
        frozen = {
            f: per_member(c.done, getattr(c, f), getattr(new, f)) for f in _RESULTS
        }
        return new._replace(**frozen)

    nan = jnp.full((n_members,), jnp.nan, dtype)
    carry = _Carry(
        x=x0,
        k=jnp.zeros(n_members, jnp.int32),
        done=jnp.zeros(n_members, bool),
        energy=nan,
        forces=jnp.full_like(x0, jnp.nan),
        max_force=nan,
        converged=jnp.zeros(n_members, bool),
        watched=jnp.zeros(n_members, bool),
        aux=jax.tree_util.tree_map(
            lambda a: jnp.zeros(a.shape, a.dtype), e_out[-1] if aux else None
        ),
        opt=jax.vmap(init)(x0),
    )
    out = jax.lax.while_loop(lambda c: ~jnp.all(c.done), body, carry)
    return RelaxResult(
        positions=out.x,
        energy=out.energy,
        forces=out.forces,
        max_force=out.max_force,
        n_steps=out.k,
        converged=out.converged,
        watched=out.watched,
        aux=out.aux,
    )
