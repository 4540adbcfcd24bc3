"""The batched ReaxFF engine: many parameter vectors x many structures per call, in JAX.

Set-up (:meth:`ReaxFFEngine.setup`) builds the interaction lists of every job on the
host and groups jobs into *buckets* of equal padded shapes (task kind, atom count
rounded up, list sizes rounded up to at most 25 % padding). Each bucket is compiled
once: ``vmap`` over parameter vectors of (tables of that vector, ``vmap`` over the
bucket's structures of (relaxation, energy, forces, charges)). Geometry optimizations
run in JAX (:func:`parafit.engines.jax_relax.minimize`, ASE's algorithms and
criteria) with the job's restraints and fixed atoms.

Lists are parameter-aware: a bond gets angles, torsions and H-bonds when its bond
order exceeds 1e-4 for the force field's values; a vector for which a bond outside the
lists exceeds 1e-3, or a relaxation that moves an atom by more than half the skin,
is flagged and that (vector, job) is recomputed exactly through ASE with
:class:`~parafit.engines.reaxff.calculator.ReaxFFCalculator` (which rebuilds its
lists as it goes). PES scans and cell relaxations always take that path.

Exact parameter gradients (``grad_indices``): jacobians of the energy, forces,
charges and final positions. For relaxed geometries the positions' derivative comes
from the implicit-function theorem at the returned minimum,
``dx*/dθ = -(∂F/∂x)^+ ∂F/∂θ`` (pseudo-inverse over the free coordinates; rigid
motions of molecules drop out), and energies, forces and charges are differentiated
along it.
"""

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, final

import jax
import jax.numpy as jnp
import numpy as np
from ase.geometry import find_mic

from parafit.engines.base import JobResults, Status, stack_results
from parafit.engines.jax_relax import minimize, restraint_arrays, restraint_energy
from parafit.engines.reaxff.calculator import KCAL_MOL, ReaxFFCalculator
from parafit.engines.reaxff.model import (
    ReaxFFModel,
    StructureLists,
    Tables,
    structure_charges,
    structure_energy,
    structure_lists,
    structure_terms,
    total_energy,
)
from parafit.engines.reaxff.names import ffield_with_values, interface_from_ffield
from parafit.engines.reaxff.nonbonded import pad_pair_list
from parafit.engines.reaxff.topology import (
    ListSizes,
    pad_topology,
    round_size,
    topology_sizes,
)
from parafit.engines.relax import failed_job_results, run_job, validate_job
from parafit.errors import EngineError
from parafit.io.ffield import ForceField, format_ffield, parse_ffield, read_ffield
from parafit.jobs import GeometryOptimization, Job, PESScan
from parafit.parameters import ParameterInterface

__all__ = ["ReaxFFEngine", "ReaxFFFn"]

logger = logging.getLogger(__name__)

_PROPERTIES = ("forces", "charges")
_FAR = 1.0e4  # padding atoms sit this far apart, outside every list


def _size_class(n_atoms: int) -> int:
    """Bucket class of a structure: 8, 32, 128, ... atoms (few compiled shapes)."""
    size = 8
    while size < n_atoms:
        size *= 4
    return size


def _chunks(n_vectors: int, max_chunk: int) -> list[tuple[int, int, int]]:
    """(start, stop, padded size) chunks of the vector axis; padded sizes are powers
    of two up to ``max_chunk`` so that few shapes are compiled."""
    out = []
    start = 0
    while start < n_vectors:
        stop = min(start + max_chunk, n_vectors)
        size = 1
        while size < stop - start:
            size *= 2
        out.append((start, stop, min(size, max_chunk)))
        start = stop
    return out


def _total_charge(job: Job) -> float:
    rows = job.metadata.get("molcharge") if job.metadata else None
    if rows:
        return float(sum(float(r[2]) for r in rows))
    return float(job.atoms.info.get("charge", 0.0))


def _fixed(job: Job) -> np.ndarray:
    mask = np.zeros(len(job.atoms), bool)
    for i in (job.metadata or {}).get("fixed_atoms", None) or ():
        mask[int(i)] = True
    return mask


def _restraint_shifts(job: Job) -> np.ndarray | None:
    """Image shifts putting each restraint atom nearest to the previous one (periodic)."""
    task = job.task
    if not isinstance(task, GeometryOptimization) or not task.restraints:
        return None
    if not job.atoms.pbc.any():
        return None
    pos = job.atoms.positions
    out = np.zeros((len(task.restraints), 4, 3))
    for r, restraint in enumerate(task.restraints):
        atoms = restraint.atoms
        for q in range(1, len(atoms)):
            d = pos[atoms[q]] - pos[atoms[q - 1]]
            mic = find_mic(d[None], job.atoms.cell, job.atoms.pbc)[0][0]
            out[r, q] = out[r, q - 1] + (mic - d)
    return out


@dataclass
class _Plan:
    """One job prepared for a bucket."""

    job: Job
    types: np.ndarray
    lists: StructureLists
    charge: float
    fixed: np.ndarray


@dataclass
class _Bucket:
    """Jobs with one padded shape and one compiled function."""

    kind: str  # "sp" or an optimizer method
    plans: list[_Plan]
    n_atoms: int = 0
    sizes: ListSizes | None = None
    n_pairs: int = 0
    n_restraints: int = 0
    arrays: dict[str, Any] = field(default_factory=dict)
    fns: dict[str, Any] = field(default_factory=dict)

    def pad(self) -> None:
        """(Re)compute padded sizes and the stacked input arrays."""
        raw = [topology_sizes(p.lists.topology) for p in self.plans]
        self.n_atoms = round_size(max(len(p.job.atoms) for p in self.plans))
        self.sizes = ListSizes(
            atoms=self.n_atoms,
            bonds=round_size(max(s.bonds for s in raw)),
            angles=round_size(max(s.angles for s in raw)),
            torsions=round_size(max(s.torsions for s in raw)),
            hbonds=round_size(max(s.hbonds for s in raw)),
        )
        self.n_pairs = round_size(max(p.lists.pairs.i.size for p in self.plans))
        n_r = [
            len(p.job.task.restraints)
            if isinstance(p.job.task, GeometryOptimization)
            else 0
            for p in self.plans
        ]
        self.n_restraints = max(1, max(n_r))
        na = self.n_atoms
        types, pos, fixed, charge, tops, pairs, rest = [], [], [], [], [], [], []
        fmax, steps = [], []
        for p in self.plans:
            n = len(p.job.atoms)
            x = np.zeros((na, 3))
            x[:n] = p.job.atoms.positions
            x[n:, 0] = _FAR * (1 + np.arange(na - n))
            pos.append(x)
            types.append(np.concatenate([p.types, np.zeros(na - n, np.int32)]))
            fixed.append(np.concatenate([p.fixed, np.ones(na - n, bool)]))
            charge.append(p.charge)
            top = p.lists.topology
            top = type(top)(
                **{
                    **vars(top),
                    "atom_mask": np.concatenate(
                        [top.atom_mask, np.zeros(na - n, bool)]
                    ),
                }
            )
            tops.append(pad_topology(top, self.sizes))
            pairs.append(pad_pair_list(p.lists.pairs, self.n_pairs))
            task = p.job.task
            if isinstance(task, GeometryOptimization):
                rest.append(
                    restraint_arrays(
                        task.restraints,
                        self.n_restraints,
                        shifts=_restraint_shifts(p.job),
                    )
                )
                fmax.append(task.fmax)
                steps.append(task.max_iterations)
            else:
                rest.append(restraint_arrays((), self.n_restraints))
                fmax.append(1.0)
                steps.append(0)

        def stack(items: list[Any]) -> Any:
            return jax.tree_util.tree_map(lambda *a: np.stack(a), *items)

        self.arrays = {
            "types": np.stack(types),
            "positions": np.stack(pos),
            "fixed": np.stack(fixed),
            "charge": np.asarray(charge),
            "top": stack(tops),
            "pairs": stack(pairs),
            "restraints": stack(rest),
            "fmax": np.asarray(fmax, float),
            "max_steps": np.asarray(steps, np.int32),
        }
        self.fns.clear()


class ReaxFFFn:
    """A set-up ReaxFF engine: ``fn(params, grad_indices=None) -> {job_id: JobResults}``."""

    def __init__(
        self,
        engine: "ReaxFFEngine",
        jobs: Sequence[Job],
        parameter_names: Sequence[str],
    ) -> None:
        self.engine = engine
        self.model = ReaxFFModel(engine.forcefield, parameter_names)
        self.parameter_names = tuple(parameter_names)
        self.jobs = list(jobs)
        self._fallback: list[Job] = []
        groups: dict[tuple[str, int], list[_Plan]] = {}
        with jax.enable_x64(True):
            for job in self.jobs:
                validate_job(job)
                types = self.model.type_index(job.atoms.get_chemical_symbols())
                task = job.task
                if isinstance(task, PESScan) or (
                    isinstance(task, GeometryOptimization) and task.relax_cell
                ):
                    if isinstance(task, GeometryOptimization):
                        raise EngineError(
                            f"job {job.id!r}: relax_cell needs the stress, which parafit's ReaxFF "
                            "does not compute yet; relax the cell with fixed atoms or use "
                            "engine reaxff-lammps."
                        )
                    self._fallback.append(job)
                    continue
                skin = engine.skin if isinstance(task, GeometryOptimization) else 0.0
                lists = structure_lists(
                    self.model,
                    job.atoms.positions,
                    job.atoms.cell.array,
                    job.atoms.pbc,
                    types,
                    skin=skin,
                    margin=engine.list_margin,
                )
                kind = "sp"
                if isinstance(task, GeometryOptimization):
                    kind = (
                        "lbfgs"
                        if task.optimizer == "bfgslinesearch"
                        else task.optimizer
                    )
                plan = _Plan(job, types, lists, _total_charge(job), _fixed(job))
                groups.setdefault((kind, _size_class(len(job.atoms))), []).append(plan)
        self.buckets = [
            _Bucket(kind=kind, plans=plans)
            for (kind, _), plans in sorted(groups.items())
        ]
        for b in self.buckets:
            b.pad()

    # -- compiled functions --------------------------------------------------------

    def _values_fn(self, bucket: _Bucket) -> Any:
        if "values" in bucket.fns:
            return bucket.fns["values"]
        model, kind = self.model, bucket.kind

        def one(tables: Tables, s: dict[str, Any]) -> dict[str, jax.Array]:
            def energy(pos: jax.Array) -> tuple[jax.Array, Any]:
                terms, q, overflow = structure_energy(
                    model, tables, s["types"], pos, s["top"], s["pairs"], s["charge"]
                )
                return total_energy(terms), (q, overflow)

            pos = s["positions"]
            n_steps = jnp.zeros((), jnp.int32)
            converged = jnp.ones((), bool)
            if kind != "sp":
                res = minimize(
                    lambda x: energy(x)[0],
                    pos,
                    fixed=s["fixed"],
                    fmax=s["fmax"],
                    max_steps=s["max_steps"],
                    method=kind,
                    restraints=s["restraints"],
                    energy_unit=KCAL_MOL,
                )
                pos, n_steps, converged = res.positions, res.n_steps, res.converged
            (e, (q, overflow)), grad = jax.value_and_grad(energy, has_aux=True)(pos)
            moved = jnp.max(
                jnp.where(
                    s["top"].atom_mask,
                    jnp.linalg.norm(pos - s["positions"], axis=1),
                    0.0,
                )
            )
            return {
                "energy": e * KCAL_MOL,
                "forces": -grad * KCAL_MOL,
                "charges": q,
                "positions": pos,
                "overflow": overflow | (moved > 0.5 * self.engine.skin),
                "n_steps": n_steps,
                "converged": converged,
            }

        def batch(x: jax.Array, arrays: dict[str, Any]) -> dict[str, jax.Array]:
            def per_vector(xv: jax.Array) -> dict[str, jax.Array]:
                tables = model.tables(xv)
                return jax.vmap(lambda s: one(tables, s))(arrays)

            return jax.vmap(per_vector)(x)

        bucket.fns["values"] = jax.jit(batch)
        return bucket.fns["values"]

    def _jacobian_fn(self, bucket: _Bucket, grad_indices: tuple[int, ...]) -> Any:
        key = ("jac", grad_indices)
        if key in bucket.fns:
            return bucket.fns[key]
        model, relaxes = self.model, bucket.kind != "sp"
        idx = jnp.asarray(grad_indices)

        def one(
            xv: jax.Array, s: dict[str, Any], pos: jax.Array
        ) -> dict[str, jax.Array]:
            args = (s["types"],)

            def outputs(p_flat: jax.Array, sub: jax.Array) -> Any:
                """Energy [eV], LAMMPS forces [eV/Å] and charges, exact in both arguments."""
                p = p_flat.reshape(pos.shape)
                tables = model.tables(xv.at[idx].set(sub))
                q = structure_charges(
                    model, tables, *args, p, s["top"], s["pairs"], s["charge"]
                )

                def at_fixed_q(pp: jax.Array) -> jax.Array:
                    terms, _ = structure_terms(
                        model, tables, *args, pp, s["top"], s["pairs"], q
                    )
                    return total_energy(terms)

                e, g = jax.value_and_grad(at_fixed_q)(p)
                return e * KCAL_MOL, -g.reshape(-1) * KCAL_MOL, q

            sub0 = xv[idx]
            p0 = pos.reshape(-1)
            if relaxes:
                free = jnp.repeat(~s["fixed"], 3)

                def total_force(p_flat: jax.Array, sub: jax.Array) -> jax.Array:
                    f = outputs(p_flat, sub)[1]
                    p = p_flat.reshape(pos.shape)
                    return f - jax.grad(restraint_energy)(p, s["restraints"]).reshape(
                        -1
                    )

                dfdx = jax.jacfwd(total_force, argnums=0)(p0, sub0)
                dfdt = jax.jacfwd(total_force, argnums=1)(p0, sub0)
                h = jnp.where(free[:, None] & free[None, :], -dfdx, 0.0)
                h = h + jnp.diag(jnp.where(free, 0.0, 1.0))
                rhs = jnp.where(free[:, None], dfdt, 0.0)
                dx = jnp.linalg.pinv(h, rtol=1e-8) @ rhs  # (3n, n_grad)
            else:
                dx = jnp.zeros((p0.size, idx.size))

            def along(dx_col: jax.Array, dt_col: jax.Array) -> Any:
                return jax.jvp(outputs, (p0, sub0), (dx_col, dt_col))[1]

            de, dforce, dq = jax.vmap(along, in_axes=(1, 0))(dx, jnp.eye(idx.size))
            return {
                "energy": de,  # (n_grad,)
                "forces": jnp.moveaxis(dforce.reshape(idx.size, *pos.shape), 0, -1),
                "charges": jnp.moveaxis(dq, 0, -1),
                "positions": jnp.moveaxis(dx.T.reshape(idx.size, *pos.shape), 0, -1),
            }

        def batch(x: jax.Array, arrays: dict[str, Any], positions: jax.Array) -> Any:
            return jax.vmap(
                lambda xv, p: jax.vmap(lambda s, ps: one(xv, s, ps))(arrays, p)
            )(x, positions)

        bucket.fns[key] = jax.jit(batch)
        return bucket.fns[key]

    # -- evaluation ----------------------------------------------------------------

    def __call__(
        self, params: np.ndarray, /, grad_indices: Sequence[int] | None = None
    ) -> dict[str, JobResults]:
        x = np.atleast_2d(np.asarray(params, dtype=float))
        if x.shape[1] != len(self.parameter_names):
            raise EngineError(
                f"parameter vectors have {x.shape[1]} entries; the engine was set up for "
                f"{len(self.parameter_names)}."
            )
        out: dict[str, JobResults] = {}
        with jax.enable_x64(True):
            for bucket in self.buckets:
                out.update(self._run_bucket(bucket, x, grad_indices))
            for job in self._fallback:
                out[job.id] = self._exact(job, x)
        return {job.id: out[job.id] for job in self.jobs}

    def _run_bucket(
        self, bucket: _Bucket, x: np.ndarray, grad_indices: Sequence[int] | None
    ) -> dict[str, JobResults]:
        finite = np.all(np.isfinite(x), axis=1)
        xs = np.where(finite[:, None], x, self.model.base_vector[None, :])
        want_jac = grad_indices is not None and len(grad_indices) > 0
        parts: list[dict[str, np.ndarray]] = []
        jparts: list[dict[str, np.ndarray]] = []
        try:
            for start, stop, size in _chunks(len(xs), self.engine.max_chunk):
                pad = size - (stop - start)
                chunk = np.concatenate(
                    [xs[start:stop], np.repeat(xs[start : start + 1], pad, 0)]
                )
                v = self._values_fn(bucket)(jnp.asarray(chunk), bucket.arrays)
                v = {k: np.asarray(a)[: stop - start] for k, a in v.items()}
                parts.append(v)
                if want_jac:
                    jfn = self._jacobian_fn(
                        bucket, tuple(int(i) for i in grad_indices or ())
                    )
                    pos = v["positions"]
                    pos = np.concatenate([pos, np.repeat(pos[:1], pad, 0)])
                    j = jfn(jnp.asarray(chunk), bucket.arrays, jnp.asarray(pos))
                    jparts.append(
                        {k: np.asarray(a)[: stop - start] for k, a in j.items()}
                    )
        except Exception as err:  # noqa: BLE001 - never raise for a bad vector
            logger.warning(
                "ReaxFF bucket of %d jobs failed: %s", len(bucket.plans), err
            )
            return {p.job.id: self._failed(p.job, len(x)) for p in bucket.plans}
        v = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        jac = (
            {k: np.concatenate([p[k] for p in jparts]) for k in jparts[0]}
            if jparts
            else None
        )
        results: dict[str, JobResults] = {}
        for s, plan in enumerate(bucket.plans):
            job = plan.job
            n = len(job.atoms)
            status = np.zeros(len(x), dtype=np.int64)
            energy = v["energy"][:, s].copy()
            forces = v["forces"][:, s, :n].copy()
            charges = v["charges"][:, s, :n].copy()
            positions = v["positions"][:, s, :n].copy()
            task = job.task
            if isinstance(task, GeometryOptimization):
                not_conv = ~v["converged"][:, s]
                status[not_conv] |= int(Status.GEOOPT_NOT_CONVERGED)
                if not task.pretend_converged:
                    status[not_conv] |= int(Status.FAILED)
            bad = (
                ~finite
                | ~np.isfinite(energy)
                | ~np.all(np.isfinite(forces), axis=(1, 2))
            )
            status[bad] |= int(Status.FAILED)
            redo = np.flatnonzero(v["overflow"][:, s] & finite)
            jacobians = None
            if jac is not None:
                jacobians = {
                    "energy": jac["energy"][:, s].copy(),
                    "forces": jac["forces"][:, s, :n].copy(),
                    "charges": jac["charges"][:, s, :n].copy(),
                    "positions": jac["positions"][:, s, :n].copy(),
                }
            failed = (status & int(Status.FAILED)) != 0
            if jacobians is not None:
                unusable = failed | ((status & int(Status.GEOOPT_NOT_CONVERGED)) != 0)
                for a in jacobians.values():
                    a[unusable] = np.nan
            for arr in (
                energy,
                forces,
                charges,
                positions,
            ):
                arr[failed] = np.nan
            result = JobResults(
                energy=energy,
                positions=positions,
                cell=np.broadcast_to(np.asarray(job.atoms.cell), (len(x), 3, 3)).copy(),
                pbc=np.asarray(job.atoms.pbc, bool),
                status=status,
                forces=forces,
                charges=charges,
                n_steps=v["n_steps"][:, s].astype(np.int64),
                **({"jacobians": jacobians} if jacobians is not None else {}),
            )
            if redo.size:
                result = self._redo(job, x, result, redo)
            results[job.id] = result
        return results

    def _failed(self, job: Job, n_vectors: int) -> JobResults:
        return stack_results(
            [failed_job_results(job, properties=_PROPERTIES) for _ in range(n_vectors)]
        )

    def _calculator(self, xv: np.ndarray) -> ReaxFFCalculator:
        ff = ffield_with_values(
            self.engine.forcefield,
            dict(zip(self.parameter_names, xv.tolist(), strict=True)),
        )
        return ReaxFFCalculator(ff, skin=self.engine.skin)

    def _exact(self, job: Job, x: np.ndarray) -> JobResults:
        """Each vector through ASE with the calculator (PES scans, list overflows)."""
        per = []
        for xv in x:
            if not np.all(np.isfinite(xv)):
                per.append(failed_job_results(job, properties=_PROPERTIES))
                continue
            per.append(run_job(job, self._calculator(xv), properties=_PROPERTIES))
        return stack_results(per)

    def _redo(
        self, job: Job, x: np.ndarray, result: JobResults, rows: np.ndarray
    ) -> JobResults:
        logger.info(
            "job %r: %d parameter vector(s) outgrew the interaction lists; recomputing them exactly",
            job.id,
            rows.size,
        )
        exact = self._exact(job, x[rows])
        fields = {}
        for name in ("energy", "positions", "status", "forces", "charges", "n_steps"):
            arr = np.array(getattr(result, name), copy=True)
            new = getattr(exact, name)
            if new is not None:
                arr[rows] = new
            fields[name] = arr
        jac = getattr(result, "jacobians", None)
        if jac is not None:
            jac = {k: np.array(a, copy=True) for k, a in jac.items()}
            for a in jac.values():
                a[rows] = np.nan  # not differentiable through the ASE path
        return JobResults(
            cell=result.cell,
            pbc=result.pbc,
            **fields,
            **({"jacobians": jac} if jac is not None else {}),
        )


@final
class ReaxFFEngine:
    """parafit's ReaxFF engine (JAX; batched over parameter vectors and structures).

    Args:
        ffield: path of the ``ffield`` (or a :class:`~parafit.io.ffield.ForceField`):
            the values of every parameter the interface does not set, and the layout.
        skin: extra list distance [Å] for geometry optimizations (default 1.0); an
            atom that moves more than half of it sends that job to the exact path.
        list_margin: bonds get angles/torsions/H-bonds above ``list_margin * 0.001``
            bond order at the force field's values (default 0.1).
        max_chunk: most parameter vectors per compiled call (default 64); batches
            are cut into chunks padded to powers of two, so a bucket compiles for at
            most log2(max_chunk) + 1 batch sizes.

    Energies in eV, forces in eV/Å, charges in e; LAMMPS's conventions and constants
    (see ``docs/reaxff.md``).
    """

    implemented_properties = frozenset({"energy", "forces", "charges"})
    is_differentiable = True

    def __init__(
        self,
        ffield: str | Path | ForceField,
        *,
        skin: float = 1.0,
        list_margin: float = 0.1,
        max_chunk: int = 64,
        ffield_text: str | None = None,
    ) -> None:
        if ffield_text is not None:
            self.forcefield = parse_ffield(ffield_text)
            self.path: Path | None = None
        elif isinstance(ffield, ForceField):
            self.forcefield = ffield
            self.path = None
        else:
            self.path = Path(ffield)
            self.forcefield = read_ffield(self.path)
        if not (math.isfinite(skin) and skin >= 0):
            raise EngineError(f"skin must be >= 0 [Å]; got {skin!r}.")
        if not (math.isfinite(list_margin) and 0 < list_margin <= 1):
            raise EngineError(f"list_margin must be in (0, 1]; got {list_margin!r}.")
        if int(max_chunk) < 1:
            raise EngineError(f"max_chunk must be >= 1; got {max_chunk!r}.")
        self.skin = float(skin)
        self.list_margin = float(list_margin)
        self.max_chunk = int(max_chunk)

    def default_interface(self) -> ParameterInterface:
        return interface_from_ffield(self.forcefield)

    def setup(self, jobs: Sequence[Job], parameter_names: Sequence[str], /) -> ReaxFFFn:
        return ReaxFFFn(self, jobs, parameter_names)

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "type": "reaxff",
            "skin": self.skin,
            "list_margin": self.list_margin,
            "max_chunk": self.max_chunk,
        }
        if self.path is not None:
            d["ffield"] = str(self.path)
        else:
            d["ffield"] = ""
            d["ffield_text"] = format_ffield(self.forcefield)
        return d
