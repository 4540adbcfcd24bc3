"""The batched ReaxFF engine: many parameter vectors x many structures per call, in JAX.

Set-up (:meth:`ReaxFFEngine.setup`) builds the interaction lists of every job on the
host and groups jobs into *buckets* of equal padded shapes (task kind, atom count
rounded up, list sizes rounded up to at most 25 % padding). Each bucket is compiled
once: ``vmap`` over parameter vectors of (tables of that vector, ``vmap`` over the
bucket's structures of (relaxation, energy, forces, charges)); single points without a
cell, and on a CPU relaxations of molecules, run *packed*: all structures of the bucket
as one system whose lists never connect two of them (:func:`_packed_lists`), relaxed
with :func:`~parafit.engines.jax_relax.minimize_many`. On a CPU the buckets of a call
run at once in threads. Geometry optimizations
run in JAX (:func:`parafit.engines.jax_relax.minimize`, ASE's algorithms and
criteria) with the job's restraints and fixed atoms.

Lists are parameter-aware: a bond gets angles, torsions and H-bonds when its bond
order exceeds 1e-4 for the force field's values. A relaxation's lists follow its atoms:
the pairs between the list skin and a *watch* distance beyond the bond and non-bonded
cutoffs join the lists at every step once they come within the cutoff, and so do the
*far* bond candidates (within the cutoff, but with bond orders far below ``bo_cut`` at
the start) once they are bonds (:func:`_extended_lists`). A vector for which a bond
outside the lists exceeds 1e-3, or whose relaxation outgrows the watch, is flagged; that (vector, job) is redone in
JAX with new lists and a larger watch or skin (:meth:`ReaxFFFn._restart`), and only
if that fails too, exactly through ASE with
:class:`~parafit.engines.reaxff.calculator.ReaxFFCalculator` (which rebuilds its
lists as it goes). Relaxed PES scans and cell relaxations with restraints always take
that path. A rigid PES scan (``relaxed=False``) is a set of single points: its
geometries are made once at set-up and evaluated in the single-point buckets.

Exact parameter gradients (``grad_indices``): jacobians of the energy, forces,
charges and final positions. For relaxed geometries the positions' derivative comes
from the implicit-function theorem at the returned minimum,
``dx*/dθ = -(∂F/∂x)^+ ∂F/∂θ`` (pseudo-inverse over the free coordinates; rigid
motions of molecules drop out), and energies, forces and charges are differentiated
along it.
"""

import dataclasses
import hashlib
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, final

import jax
import jax.numpy as jnp
import numpy as np
from ase.geometry import find_mic

from parafit.engines.base import JobResults, Status, stack_results
from parafit.engines.jax_cache import (
    enable_compilation_cache,
    memory_maps_exhausted,
)
from parafit.engines.jax_relax import (
    minimize,
    minimize_many,
    restraint_arrays,
    restraint_energy,
)
from parafit.engines.reaxff.bonded import (
    BOND_CUTOFF,
    HBOND_CUTOFF,
    BondedTables,
    Topology,
    pairs_are_bonds,
)
from parafit.engines.reaxff.calculator import KCAL_MOL, ReaxFFCalculator
from parafit.engines.reaxff.model import (
    ReaxFFModel,
    StructureLists,
    Tables,
    deform_lists,
    needs_charges,
    stress_voigt,
    structure_charges,
    structure_energy,
    structure_lists,
    structure_terms,
    total_energy,
)
from parafit.engines.reaxff.names import interface_from_ffield
from parafit.engines.reaxff.nonbonded import (
    PairList,
    molecule_eem_charges,
    pad_pair_list,
)
from parafit.engines.reaxff.topology import (
    ListSizes,
    pad_topology,
    round_size,
    topology_sizes,
    watch_list,
)
from parafit.engines.relax import (
    failed_job_results,
    has_stress,
    rigid_scan_geometries,
    run_job,
    validate_job,
)
from parafit.errors import EngineError
from parafit.io.ffield import ForceField, format_ffield, parse_ffield, read_ffield
from parafit.jobs import GeometryOptimization, Job, PESScan, SinglePoint
from parafit.parameters import ParameterInterface

__all__ = ["ReaxFFEngine", "ReaxFFFn"]

logger = logging.getLogger(__name__)

_PROPERTIES = ("forces", "stress", "charges")
_FAR = 1.0e4  # padding atoms sit this far apart, outside every list
_MAX_RESTART_SKIN = 8.0  # Å: the largest list skin of a restarted relaxation
_MAX_RESTART_WATCH = 24.0  # Å: the largest watch of a restarted relaxation
_RESTART_CHUNK = 4  # parameter vectors per compiled call of a restart


def _size_class(n_atoms: int) -> int:
    """Bucket class of a structure: 8, 32, 128, ... atoms (few compiled shapes)."""
    size = 8
    while size < n_atoms:
        size *= 4
    return size


#: the sizes a bucket's work is estimated from, and the relative cost of one padded
#: entry of each (measured on disulfide's single points, 2026-11-21: bond-order
#: corrections and bond terms per bond, the angle terms per angle, torsion +
#: conjugation per torsion, vdW + Coulomb per pair)
_COST_FIELDS = ("atoms", "pairs", "bonds", "angles", "torsions")
_COST_WEIGHTS = np.array([2.0, 1.0, 1.0, 2.0, 0.6])


#: most estimated work (:func:`_padded_cost`) of one compiled single-point call on a CPU
_CPU_CALL_WORK = 65536.0


def _plan_sizes(plan: "_Plan") -> np.ndarray:
    """(5,) unpadded sizes of one structure, in the order of ``_COST_FIELDS``."""
    t = topology_sizes(plan.lists.topology)
    return np.array(
        [len(plan.job.atoms), plan.lists.pairs.i.size, t.bonds, t.angles, t.torsions]
    )


def _padded_cost(n_structures: int, max_sizes: np.ndarray) -> float:
    """Estimated work of a bucket: padded structures x weighted padded list entries."""
    padded = np.array([round_size(int(v)) for v in max_sizes])
    return float(round_size(n_structures) * (_COST_WEIGHTS @ padded))


def _partition(plans: list["_Plan"], n_buckets: int) -> list[list["_Plan"]]:
    """Split ``plans`` into at most ``n_buckets`` buckets of least padded work.

    Plans are ordered by their own (unpadded) work and cut into contiguous runs by
    dynamic programming over :func:`_padded_cost` (cuts between at most 128 blocks
    of equal length): e.g. disulfide's nine relaxations (3 to 26 atoms) go into
    {3..12 atoms} and {24, 26 atoms} rather than {<= 8} and {9..26}, 1.6x less work
    for the same number of compiled shapes.
    """
    if n_buckets <= 1 or len(plans) <= 1:
        return [plans]
    sizes = np.stack([_plan_sizes(p) for p in plans])
    order = np.argsort(sizes @ _COST_WEIGHTS, kind="stable")
    sizes = sizes[order]
    bounds = np.unique(np.linspace(0, len(plans), min(len(plans), 128) + 1).astype(int))
    m = bounds.size - 1
    cost = np.full((m + 1, m + 1), np.inf)
    for a in range(m):
        running = np.zeros(sizes.shape[1])
        for b in range(a + 1, m + 1):
            running = np.maximum(running, sizes[bounds[b - 1] : bounds[b]].max(axis=0))
            cost[a, b] = _padded_cost(int(bounds[b] - bounds[a]), running)
    # best[k, b]: least work for the first b blocks in k buckets; cut: the last start
    best = np.full((n_buckets + 1, m + 1), np.inf)
    cut = np.zeros((n_buckets + 1, m + 1), int)
    best[0, 0] = 0.0
    for k in range(1, n_buckets + 1):
        for b in range(1, m + 1):
            totals = best[k - 1, :b] + cost[:b, b]
            cut[k, b] = int(np.argmin(totals))
            best[k, b] = totals[cut[k, b]]
    k = int(np.argmin(best[1:, m])) + 1  # fewest buckets among the cheapest
    parts, b = [], m
    while k > 0:
        a = cut[k, b]
        parts.append([plans[i] for i in order[bounds[a] : bounds[b]]])
        b, k = a, k - 1
    return parts[::-1]


def _chunks(
    n_vectors: int, max_chunk: int, *, pad: bool = False
) -> list[tuple[int, int, int]]:
    """(start, stop, padded size) chunks of the vector axis.

    Padded sizes are powers of two up to ``max_chunk``, so that few shapes are
    compiled; a batch of more than ``max_chunk`` vectors is cut into chunks that are
    all padded to ``max_chunk`` (its tail does not compile a shape of its own).
    ``pad``: every chunk is padded to ``max_chunk`` (a single shape).
    """
    out = []
    start = 0
    while start < n_vectors:
        stop = min(start + max_chunk, n_vectors)
        size = 1
        while size < stop - start:
            size *= 2
        if n_vectors > max_chunk or pad:
            size = max_chunk
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
    #: H-bonds are possible (donor H and acceptor both present, with parameters):
    #: a relaxation's H-bond lists then hold while no atom moves > skin / 2
    hbond_watch: bool = False


_MODELS: "OrderedDict[tuple[str, tuple[str, ...]], ReaxFFModel]" = OrderedDict()
_MAX_MODELS = 4


def _forcefield_key(ff: ForceField) -> str:
    """A digest of every value and index of ``ff`` (equal force fields, equal keys)."""
    h = hashlib.sha256("\x00".join(ff.atom_symbols).encode())
    for f in dataclasses.fields(ff):
        value = getattr(ff, f.name)
        if isinstance(value, np.ndarray):
            h.update(f.name.encode())
            h.update(str(value.shape).encode())
            h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def shared_model(ff: ForceField, parameter_names: Sequence[str]) -> ReaxFFModel:
    """The :class:`ReaxFFModel` of ``ff`` and ``parameter_names``, shared in the process.

    Engines set up for the same force field and parameter names (the training and the
    validation set, a sensitivity run and the optimizations after it) then share
    compiled functions: a bucket shape traced and compiled once serves them all. The
    last few models are kept.
    """
    key = (_forcefield_key(ff), tuple(parameter_names))
    model = _MODELS.get(key)
    if model is None:
        model = ReaxFFModel(ff, parameter_names)
        _MODELS[key] = model
        while len(_MODELS) > _MAX_MODELS:
            _MODELS.popitem(last=False)
    else:
        _MODELS.move_to_end(key)
    return model


@dataclass(frozen=True)
class _RigidScan:
    """A rigid PES scan evaluated as single points ``<id>#<k>``."""

    job: Job
    point_ids: tuple[str, ...]
    positions: np.ndarray  # (n_points, n_atoms, 3) [Å]
    coordinates: np.ndarray  # (n_points, n_coordinates)

    def assemble(self, points: Sequence[JobResults]) -> JobResults:
        """The scan's results from its points' (as :func:`run_job` gives them): scan
        fields per point, and energy, forces, charges, geometry of the lowest point."""
        n_vectors = len(points[0].energy)
        scan_e = np.stack([p.energy for p in points], axis=1)  # (n_vectors, n_points)
        failed = np.zeros(n_vectors, bool)
        status = np.zeros(n_vectors, np.int64)
        for p in points:
            failed |= (p.status & int(Status.FAILED)) != 0
            status |= p.status
        failed |= ~np.all(np.isfinite(scan_e), axis=1)
        best = np.argmin(np.where(np.isfinite(scan_e), scan_e, np.inf), axis=1)
        rows = np.arange(n_vectors)

        def pick(name: str) -> np.ndarray | None:
            values = [getattr(p, name) for p in points]
            if any(v is None for v in values):
                return None
            a = np.stack(values, axis=1)[rows, best].copy()
            a[failed] = np.nan
            return a

        status[failed] |= int(Status.FAILED)
        scan_e = scan_e.copy()
        scan_e[failed] = np.nan
        scan_coordinates = np.repeat(self.coordinates[None], n_vectors, axis=0)
        scan_positions = np.repeat(self.positions[None], n_vectors, axis=0)
        scan_coordinates[failed] = np.nan
        scan_positions[failed] = np.nan
        jacobians = None
        if all(getattr(p, "jacobians", None) is not None for p in points):
            jac = [p.jacobians for p in points]
            jacobians = {"scan_energies": np.stack([j["energy"] for j in jac], axis=1)}
            for name in ("energy", "forces", "charges"):
                if name in jac[0]:
                    jacobians[name] = np.stack([j[name] for j in jac], axis=1)[
                        rows, best
                    ]
            if "positions" in jac[0]:
                jacobians["positions"] = np.zeros_like(jac[0]["positions"])
            for a in jacobians.values():
                a[failed] = np.nan
        return JobResults(
            energy=pick("energy"),
            positions=pick("positions"),
            cell=pick("cell"),
            pbc=points[0].pbc,
            status=status,
            forces=pick("forces"),
            stress=pick("stress"),
            charges=pick("charges"),
            scan_energies=scan_e,
            scan_coordinates=scan_coordinates,
            scan_positions=scan_positions,
            n_steps=np.zeros(n_vectors, np.int64),
            **({"jacobians": jacobians} if jacobians is not None else {}),
        )


@dataclass
class _Bucket:
    """Jobs with one padded shape and one compiled function."""

    kind: str  # "sp" or an optimizer method
    plans: list[_Plan]
    relax_cell: bool = False
    n_atoms: int = 0
    sizes: ListSizes | None = None
    n_pairs: int = 0
    n_restraints: int = 0
    arrays: dict[str, Any] = field(default_factory=dict)
    fns: dict[str, Any] = field(default_factory=dict)
    periodic: bool = False
    charged: bool = True  # False: every job neutral with one atom type (charges 0)
    skin: float = 0.0  # [Å] list skin of the relaxations
    #: [Å] relaxations watch the pairs up to this far beyond the bond and
    #: non-bonded cutoffs (:func:`watch_list`); moves > watch/2 (beyond a relaxing
    #: cell's deformation; less when it compresses) are flagged (:func:`_extended_lists`)
    watch: float = 0.0
    r_cut: float = 10.0  # [Å] non-bonded cutoff of the force field
    #: estimated work of one parameter vector (:func:`_padded_cost`), set by :meth:`pad`
    work: float = 0.0
    #: (n_types,) the model's ``type_in_lists`` (bonds of other types need no angles)
    type_in_lists: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    #: the padded sizes, set by :meth:`pad`
    padded: dict[str, int] = field(default_factory=dict)
    #: relax the structures together, packed into one (if not periodic and no cell
    #: relaxation; see :func:`_packed_lists`)
    pack_relaxations: bool = False
    #: single points and (with ``pack_relaxations``) relaxations without a cell:
    #: every structure's lists side by side, set by :meth:`pad`
    #: (:func:`_packed_lists`); None for the others
    packed: dict[str, Any] | None = None

    def pad(self, floor: dict[str, int] | None = None) -> dict[str, int]:
        """(Re)compute padded sizes and the stacked input arrays; returns the padded
        sizes (``atoms``, ``bonds``, ``angles``, ``torsions``, ``hbonds``, ``far``,
        ``pairs``, ``restraints``, ``watch_bonds``, ``watch_pairs``).

        The structure axis is padded too (with copies of the first structure, whose
        results are ignored) to a round size, so that buckets of about the same size,
        e.g. a training and a validation set, share one compiled shape.

        ``floor``: sizes to pad to at least (a size that exceeds its floor is
        rounded up to a power of two), so that buckets padded to one floor share
        one compiled shape (see :meth:`ReaxFFFn._restart`).
        """
        floor = floor or {}

        def size(name: str, needed: int) -> int:
            if name not in floor:
                return round_size(needed)
            if needed <= floor[name]:
                return floor[name]
            return 1 << (int(needed) - 1).bit_length()

        plans = self.plans + [self.plans[0]] * (
            round_size(len(self.plans)) - len(self.plans)
        )
        own = [self._topology(p) for p in plans]
        raw = [topology_sizes(t) for t in own]
        self.n_atoms = size("atoms", max(len(p.job.atoms) for p in plans))
        self.sizes = ListSizes(
            atoms=self.n_atoms,
            bonds=size("bonds", max(s.bonds for s in raw)),
            angles=size("angles", max(s.angles for s in raw)),
            torsions=size("torsions", max(s.torsions for s in raw)),
            hbonds=size("hbonds", max(s.hbonds for s in raw)),
            far=size("far", max(s.far for s in raw)),
        )
        self.n_pairs = size("pairs", max(p.lists.pairs.i.size for p in plans))
        padded = {**vars(self.sizes), "pairs": self.n_pairs}
        self.work = _padded_cost(
            len(plans), np.array([padded[f] for f in _COST_FIELDS])
        )
        n_r = [
            len(p.job.task.restraints)
            if isinstance(p.job.task, GeometryOptimization)
            else 0
            for p in plans
        ]
        self.n_restraints = size("restraints", max(1, max(n_r)))
        na = self.n_atoms
        # the pairs a relaxation watches, bond and non-bonded; one padding entry
        # (the last) at least, which unused slots of the extra lists point to
        bond_watch = [self._bond_watch(p) for p in plans]
        pair_watch = [self._watch_list(p, self.r_cut) for p in plans]
        n_bw = size("watch_bonds", max(w[0].size for w in bond_watch) + 1)
        n_pw = size("watch_pairs", max(w[0].size for w in pair_watch) + 1)
        types, pos, fixed, charge, tops, pairs, rest = [], [], [], [], [], [], []
        fmax, steps = [], []
        for p, top in zip(plans, own, strict=True):
            n = len(p.job.atoms)
            x = np.zeros((na, 3))
            x[:n] = p.job.atoms.positions
            x[n:, 0] = _FAR * (1 + np.arange(na - n))
            pos.append(x)
            types.append(np.concatenate([p.types, np.zeros(na - n, np.int32)]))
            fixed.append(np.concatenate([p.fixed, np.ones(na - n, bool)]))
            charge.append(p.charge)
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
            "skin": np.full(len(plans), self.skin),
            "r_cut": np.full(len(plans), self.r_cut),
            "watch": np.full(len(plans), max(self.watch, self.skin)),
            "hbond_watch": np.asarray([p.hbond_watch for p in plans], bool),
            "watch_bonds": {
                "i": np.stack([_pad_to(w[0], n_bw) for w in bond_watch]),
                "j": np.stack([_pad_to(w[1], n_bw) for w in bond_watch]),
                "shift": np.stack([_pad_to(w[2], n_bw) for w in bond_watch]),
                "mask": np.stack([_pad_to(w[3] > 0, n_bw) for w in bond_watch]),
                # bonds of types without angle/torsion/H-bond parameters need no
                # listing (as in :func:`structure_lists`)
                "listed": np.stack(
                    [
                        _pad_to(
                            ~(
                                self.type_in_lists[p.types[w[0]]]
                                | self.type_in_lists[p.types[w[1]]]
                            ),
                            n_bw,
                        )
                        for p, w in zip(plans, bond_watch, strict=True)
                    ]
                ),
            },
            "watch_pairs": {
                "i": np.stack([_pad_to(w[0], n_pw) for w in pair_watch]),
                "j": np.stack([_pad_to(w[1], n_pw) for w in pair_watch]),
                "shift": np.stack([_pad_to(w[2], n_pw) for w in pair_watch]),
                "mask": np.stack([_pad_to(w[3] > 0, n_pw) for w in pair_watch]),
            },
            "cell": np.stack([np.asarray(p.job.atoms.cell.array) for p in plans]),
            "cell_factor": np.asarray([float(len(p.job.atoms)) for p in plans]),
        }
        self.periodic = any(has_stress(p.job.atoms) for p in self.plans)
        self.charged = any(needs_charges(p.types, p.charge) for p in self.plans)
        # one structure gains nothing from packing, and its packed lists would not
        # keep the padded sizes restarts share (see ReaxFFFn._restart)
        packs = self.kind == "sp" or (self.pack_relaxations and not self.relax_cell)
        self.packed = (
            _packed_lists(self.arrays, relaxing=self.kind != "sp")
            if packs and not self.periodic and len(self.plans) > 1
            else None
        )
        self.fns.clear()
        self.padded = {
            **padded,
            "restraints": self.n_restraints,
            "watch_bonds": n_bw,
            "watch_pairs": n_pw,
        }
        return self.padded

    def _topology(self, plan: _Plan) -> Topology:
        """The plan's topology as the bucket computes it: a relaxation watches its
        far candidates (:meth:`_bond_watch`) instead of checking them."""
        top = plan.lists.topology
        if self.kind == "sp":
            return top
        none = np.zeros(0, np.int32)
        return dataclasses.replace(
            top,
            far_i=none,
            far_j=none,
            far_shift=np.zeros((0, 3)),
            far_mask=np.zeros(0, bool),
        )

    def _bond_watch(
        self, plan: _Plan
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The bond candidates a relaxation adds to its lists when they become bonds
        (:func:`_extended_lists`): the pairs beyond the bond cutoff plus skin
        (:meth:`_watch_list`) and the far candidates within it; none for single
        points."""
        watched = self._watch_list(plan, BOND_CUTOFF)
        if self.kind == "sp":
            return watched
        top = plan.lists.topology
        return (
            np.concatenate([watched[0], top.far_i]).astype(np.int32),
            np.concatenate([watched[1], top.far_j]).astype(np.int32),
            np.concatenate([watched[2], top.far_shift]).reshape(-1, 3),
            np.concatenate([watched[3], np.full(top.far_i.size, BOND_CUTOFF)]),
        )

    def _watch_list(
        self, plan: _Plan, cutoff: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The pairs a relaxation watches for one cutoff (:func:`watch_list`) at its
        start geometry; none for single points."""
        if self.kind == "sp":
            return watch_list(np.zeros((0, 3)), None, None, (), 0.0, 0.0)
        atoms = plan.job.atoms
        return watch_list(
            atoms.positions,
            atoms.cell.array,
            atoms.pbc,
            (cutoff,),
            self.skin,
            max(self.watch, self.skin),
        )


def _packed_lists(arrays: dict[str, Any], relaxing: bool = False) -> dict[str, Any]:
    """The lists of a bucket's structures (n_structures, ...) side by side, as one
    structure of n_structures * n_atoms atoms whose lists never connect two of them:
    ``top`` and ``pairs`` with offset indices and without the per-structure padding
    (each list padded once, to a round size), ``types`` (n,) and ``segment`` (n,) the
    structure of each atom; with ``relaxing`` also the watched pairs
    ``watch_bonds`` and ``watch_pairs`` (each with one padding entry at the end at
    least, see :func:`_packed_extended_lists`).

    On a CPU one packed structure costs a fraction of the same structures under
    ``vmap`` (gathers and scatters with batch dimensions are slow there, and the
    padding of the largest structure's lists is paid once, not per structure)."""
    top, pairs = arrays["top"], arrays["pairs"]
    n_structures, n_atoms = arrays["types"].shape
    n_bonds = top.bond_i.shape[1]
    atom = n_atoms * np.arange(n_structures)[:, None]
    last_atom = n_structures * n_atoms - 1  # padding entries point here

    def real(mask: np.ndarray) -> tuple[np.ndarray, int]:
        """Flat positions of the real entries, and the padded total."""
        keep = np.flatnonzero(np.asarray(mask).reshape(-1))
        return keep, round_size(keep.size)

    def take(a: np.ndarray, keep: np.ndarray, size: int, fill: Any = 0) -> np.ndarray:
        a = np.asarray(a)
        flat = a.reshape(-1, *a.shape[2:])[keep]
        pad = np.full((size - keep.size, *a.shape[2:]), fill, dtype=a.dtype)
        return np.concatenate([flat, pad])

    def atoms_of(a: np.ndarray, keep: np.ndarray, size: int) -> np.ndarray:
        return take((np.asarray(a) + atom).astype(np.int32), keep, size, last_atom)

    # bonds: new position of each (structure, padded bond); half-bonds follow
    bond_keep, n_b = real(top.bond_mask)
    bond_at = np.zeros(n_structures * n_bonds, np.int32)
    bond_at[bond_keep] = np.arange(bond_keep.size)
    half_at = np.stack([2 * bond_at, 2 * bond_at + 1], axis=1).reshape(-1)
    bond_base = n_bonds * np.arange(n_structures)[:, None]

    def bonds_of(a: np.ndarray, keep: np.ndarray, size: int) -> np.ndarray:
        return take(bond_at[np.asarray(a) + bond_base], keep, size)

    def halves_of(a: np.ndarray, keep: np.ndarray, size: int) -> np.ndarray:
        return take(half_at[np.asarray(a) + 2 * bond_base], keep, size)

    ang, n_a = real(top.angle_mask)
    tor, n_t = real(top.torsion_mask)
    hb, n_h = real(top.hbond_mask)
    far, n_f = real(top.far_mask)
    pr, n_p = real(np.asarray(pairs.weight) > 0)
    far_away = np.array([1.0e3, 0.0, 0.0])
    packed_top = Topology(
        atom_mask=np.asarray(top.atom_mask).reshape(-1),
        bond_i=atoms_of(top.bond_i, bond_keep, n_b),
        bond_j=atoms_of(top.bond_j, bond_keep, n_b),
        bond_shift=take(top.bond_shift, bond_keep, n_b),
        bond_mask=take(top.bond_mask, bond_keep, n_b, False),
        angle_h1=halves_of(top.angle_h1, ang, n_a),
        angle_h2=halves_of(top.angle_h2, ang, n_a),
        angle_mask=take(top.angle_mask, ang, n_a, False),
        torsion_h1=halves_of(top.torsion_h1, tor, n_t),
        torsion_bond=bonds_of(top.torsion_bond, tor, n_t),
        torsion_h3=halves_of(top.torsion_h3, tor, n_t),
        torsion_mask=take(top.torsion_mask, tor, n_t, False),
        hbond_h=halves_of(top.hbond_h, hb, n_h),
        hbond_z=atoms_of(top.hbond_z, hb, n_h),
        hbond_shift=take(top.hbond_shift, hb, n_h),
        hbond_mask=take(top.hbond_mask, hb, n_h, False),
        listed=take(top.listed, bond_keep, n_b, False),
        far_i=atoms_of(top.far_i, far, n_f),
        far_j=atoms_of(top.far_j, far, n_f),
        far_shift=take(top.far_shift, far, n_f),
        far_mask=take(top.far_mask, far, n_f, False),
    )
    packed_pairs = PairList(
        i=atoms_of(pairs.i, pr, n_p),
        j=atoms_of(pairs.j, pr, n_p),
        shift=np.concatenate(
            [
                take(pairs.shift, pr, pr.size),
                np.tile(far_away, (n_p - pr.size, 1)),
            ]
        ),
        weight=take(pairs.weight, pr, n_p, 0.0),
    )
    packed = {
        "top": packed_top,
        "pairs": packed_pairs,
        "types": np.asarray(arrays["types"]).reshape(-1).astype(np.int32),
        "segment": np.repeat(np.arange(n_structures), n_atoms).astype(np.int32),
    }
    if relaxing:
        for name in ("watch_bonds", "watch_pairs"):
            w = arrays[name]
            keep = np.flatnonzero(np.asarray(w["mask"]).reshape(-1))
            size = round_size(keep.size + 1)
            packed[name] = {
                key: atoms_of(a, keep, size)
                if key in ("i", "j")
                else take(a, keep, size, False if a.dtype == bool else 0)
                for key, a in w.items()
            }
    return packed


def _pad_to(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` padded with zeros along its first axis to ``n`` entries."""
    return np.concatenate([a, np.zeros((n - a.shape[0], *a.shape[1:]), a.dtype)])


class ReaxFFFn:
    """A set-up ReaxFF engine: ``fn(params, grad_indices=None) -> {job_id: JobResults}``."""

    def __init__(
        self,
        engine: "ReaxFFEngine",
        jobs: Sequence[Job],
        parameter_names: Sequence[str],
    ) -> None:
        enable_compilation_cache()
        self.engine = engine
        self.model = shared_model(engine.forcefield, parameter_names)
        self.parameter_names = tuple(parameter_names)
        self.jobs = list(jobs)
        self._fallback: list[Job] = []
        self._scans: dict[str, _RigidScan] = {}
        self._scan_of_point: dict[str, str] = {}  # "<scan id>#<k>" -> scan id
        #: job id -> what the data sets read of it (``energy``, ``forces``, ``scan``,
        #: ...), set by the objective; a single-point bucket whose jobs are read for
        #: energies only gets the (much cheaper to compile) energy jacobian alone, and
        #: one read for energies and charges only skips its forces (``forces`` None).
        self.jacobian_fields: dict[str, frozenset[str]] | None = None
        #: padded sizes of the restarted relaxations so far, by compiled function
        #: (:meth:`_restart`): restarts of all jobs pad to them and share one shape
        self._restart_sizes: dict[tuple[Any, ...], dict[str, int]] = {}
        groups: dict[tuple[str, bool], list[_Plan]] = {}
        with jax.enable_x64(True):
            for job in self._expand_rigid_scans(self.jobs):
                validate_job(job)
                types = self.model.type_index(job.atoms.get_chemical_symbols())
                task = job.task
                relax_cell = isinstance(task, GeometryOptimization) and task.relax_cell
                if isinstance(task, PESScan) or (
                    relax_cell and (task.restraints or not job.atoms.pbc.all())
                ):
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
                    split_far=True,  # relaxations watch them (see _Bucket._bond_watch)
                )
                kind = "sp"
                if isinstance(task, GeometryOptimization):
                    kind = (
                        "lbfgs"
                        if task.optimizer == "bfgslinesearch"
                        else task.optimizer
                    )
                plan = _Plan(
                    job,
                    types,
                    lists,
                    _total_charge(job),
                    _fixed(job),
                    self._hbond_watch(types),
                )
                groups.setdefault((kind, relax_cell), []).append(plan)
        # as many buckets (compiled shapes) per task as size classes, cut where
        # they pad least
        self.buckets = [
            _Bucket(
                kind=kind,
                plans=part,
                relax_cell=cell,
                skin=engine.skin,
                watch=engine.watch,
                r_cut=self.model.r_cut,
                type_in_lists=self.model.type_in_lists,
                pack_relaxations=self._pack_relaxations(),
            )
            for (kind, cell), plans in sorted(groups.items())
            for part in _partition(
                plans, len({_size_class(len(p.job.atoms)) for p in plans})
            )
        ]
        for b in self.buckets:
            b.pad()

    def _hbond_watch(self, types: np.ndarray) -> bool:
        """Whether a structure of these atom types can have H-bonds at all."""
        role = np.asarray(self.model.hbond_role)[np.asarray(types)]
        return bool(
            np.asarray(self.model.list_rules.hbond).any()
            and (role == 1).any()
            and (role == 2).any()
        )

    def _expand_rigid_scans(self, jobs: Sequence[Job]) -> list[Job]:
        """``jobs`` with each rigid PES scan replaced by one single point per scan point."""
        out: list[Job] = []
        for job in jobs:
            task = job.task
            if not isinstance(task, PESScan) or task.relaxed:
                out.append(job)
                continue
            positions, coordinates = rigid_scan_geometries(job)
            ids = []
            for k, pos in enumerate(positions):
                atoms = job.atoms.copy()
                atoms.set_constraint()
                atoms.positions = pos
                point = Job(
                    f"{job.id}#{k}", atoms, SinglePoint(), metadata=job.metadata
                )
                ids.append(point.id)
                out.append(point)
            self._scans[job.id] = _RigidScan(job, tuple(ids), positions, coordinates)
            self._scan_of_point.update(dict.fromkeys(ids, job.id))
        return out

    # -- compiled functions --------------------------------------------------------

    def _values_fn(self, bucket: _Bucket) -> Any:
        """The bucket's compiled values function (shared by buckets of one kind; the
        list skin a relaxation is checked against is an input, ``arrays["skin"]``)."""
        with_forces = not self._skips_forces(bucket)
        # (.get: another thread may clear the bucket's functions meanwhile)
        if (known := bucket.fns.get(("values", with_forces))) is not None:
            return known
        model, kind = self.model, bucket.kind
        relax_cell, periodic = bucket.relax_cell, bucket.periodic
        charged = bucket.charged
        sequential = kind != "sp" and self._relax_sequential()

        def one(tables: Tables, s: dict[str, Any]) -> dict[str, jax.Array]:
            n = s["positions"].shape[0]
            eye = jnp.eye(3, dtype=s["positions"].dtype)

            def energy(
                x: jax.Array, deformation: jax.Array, lists: Any = None
            ) -> tuple[jax.Array, Any]:
                """Energy at Cartesian positions x of the cell deformed by D (3, 3),
                with the bucket's lists or ``lists`` (top, pairs)."""
                top, pairs = lists or (s["top"], s["pairs"])
                top, pairs = deform_lists(top, pairs, deformation)
                terms, q, overflow = structure_energy(
                    model,
                    tables,
                    s["types"],
                    x,
                    top,
                    pairs,
                    s["charge"],
                    solve_charges=charged,
                )
                return total_energy(terms), (q, overflow)

            pos, deformation = s["positions"], eye
            coords = None
            watched = jnp.zeros((), bool)
            lists = None
            n_steps = jnp.zeros((), jnp.int32)
            converged = jnp.ones((), bool)
            if kind != "sp" and relax_cell:
                # ASE's FrechetCellFilter coordinates: z = [x D^-T; n_atoms * log D]
                factor = s["cell_factor"]

                def unpack(z: jax.Array) -> tuple[jax.Array, jax.Array]:
                    d = jax.scipy.linalg.expm(z[n:] / factor)
                    return z[:n] @ d.T, d

                def cell_energy(z: jax.Array) -> tuple[jax.Array, jax.Array]:
                    x, d = unpack(z)
                    top, pairs, outgrown = _extended_lists(s, tables.bonded, x, d)
                    return energy(x, d, (top, pairs))[0], outgrown

                res = minimize(
                    cell_energy,
                    jnp.concatenate([pos, jnp.zeros((3, 3), pos.dtype)]),
                    fixed=jnp.concatenate([s["fixed"], jnp.zeros(3, bool)]),
                    fmax=s["fmax"],
                    max_steps=s["max_steps"],
                    method=kind,
                    energy_unit=KCAL_MOL,
                    watch=True,
                )
                coords = res.positions
                pos, deformation = unpack(coords)
                n_steps, converged = res.n_steps, res.converged
                watched = res.watched
                lists = _extended_lists(s, tables.bonded, pos, deformation)[:2]
            elif kind != "sp":
                # lists extended at every step by the watched pairs that came
                # within their cutoff (see _extended_lists)
                def atoms_energy(x: jax.Array) -> tuple[jax.Array, jax.Array]:
                    top, pairs, outgrown = _extended_lists(s, tables.bonded, x)
                    return energy(x, eye, (top, pairs))[0], outgrown

                res = minimize(
                    atoms_energy,
                    pos,
                    fixed=s["fixed"],
                    fmax=s["fmax"],
                    max_steps=s["max_steps"],
                    method=kind,
                    restraints=s["restraints"],
                    energy_unit=KCAL_MOL,
                    watch=True,
                )
                pos, n_steps, converged = res.positions, res.n_steps, res.converged
                watched = res.watched
                lists = _extended_lists(s, tables.bonded, pos)[:2]
            if not with_forces:
                e, (q, overflow) = energy(pos, eye, lists)
                grad = jnp.zeros_like(pos)
                d_strain = jnp.zeros((3, 3), pos.dtype)
            elif periodic:

                def strained(x: jax.Array, strain: jax.Array) -> tuple[jax.Array, Any]:
                    return energy(x @ strain.T, strain @ deformation, lists)

                (e, (q, overflow)), (grad, d_strain) = jax.value_and_grad(
                    strained, argnums=(0, 1), has_aux=True
                )(pos, eye)
            else:
                (e, (q, overflow)), grad = jax.value_and_grad(energy, has_aux=True)(
                    pos, eye, lists
                )
                d_strain = jnp.zeros((3, 3), pos.dtype)
            cell = s["cell"] @ deformation.T
            return {
                "energy": e * KCAL_MOL,
                "forces": -grad * KCAL_MOL,
                "stress": stress_voigt(d_strain, cell) * KCAL_MOL
                if periodic and with_forces
                else jnp.zeros(6, pos.dtype),
                "charges": q,
                "positions": pos,
                "coords": pos if coords is None else coords,
                "cell": cell,
                # relaxations watch their lists at every step (watched)
                "overflow": overflow | watched,
                "n_steps": n_steps,
                "converged": converged,
            }

        def packed_single_points(
            tables: Tables, arrays: dict[str, Any], packed: dict[str, Any]
        ) -> dict[str, jax.Array]:
            """``one`` for every structure of a single-point bucket at once, its
            structures packed into one (:func:`_packed_lists`); charges solved per
            structure."""
            n_structures, n = arrays["types"].shape
            positions = arrays["positions"]
            if charged:
                q = molecule_eem_charges(
                    tables.nonbonded,
                    arrays["types"],
                    positions,
                    arrays["charge"],
                    arrays["top"].atom_mask,
                )
            else:
                q = jnp.zeros((n_structures, n), positions.dtype)
            segment = (packed["segment"], n_structures)

            def energies(x: jax.Array) -> tuple[jax.Array, Any]:
                terms, overflow = structure_terms(
                    model,
                    tables,
                    packed["types"],
                    x,
                    packed["top"],
                    packed["pairs"],
                    q.reshape(-1),
                    segment=segment,
                )
                e = total_energy(terms)
                return jnp.sum(e), (e, overflow)

            flat = positions.reshape(-1, 3)
            if with_forces:
                (_, (e, overflow)), grad = jax.value_and_grad(energies, has_aux=True)(
                    flat
                )
            else:
                e, overflow = energies(flat)[1]
                grad = jnp.zeros_like(flat)
            return {
                "energy": e * KCAL_MOL,
                "forces": -grad.reshape(n_structures, n, 3) * KCAL_MOL,
                "stress": jnp.zeros((n_structures, 6), positions.dtype),
                "charges": q,
                "positions": positions,
                "coords": positions,
                "cell": arrays["cell"],
                "overflow": overflow,
                "n_steps": jnp.zeros(n_structures, jnp.int32),
                "converged": jnp.ones(n_structures, bool),
            }

        def packed_relaxations(
            tables: Tables, arrays: dict[str, Any], packed: dict[str, Any]
        ) -> dict[str, jax.Array]:
            """``one`` for every structure of a relaxation bucket (no cell, not
            periodic) at once: relaxed together (:func:`minimize_many`), each
            taking its own steps, as one structure (:func:`_packed_lists`) whose
            lists follow every structure's atoms (:func:`_packed_extended_lists`)."""
            n_structures, n = arrays["types"].shape
            types, segment = packed["types"], (packed["segment"], n_structures)

            def energies(x: jax.Array, lists: Any) -> tuple[jax.Array, Any]:
                """(n_structures,) energies [kcal/mol] at x (n_structures, n, 3)."""
                flat = x.reshape(-1, 3)
                top, pairs = lists
                if charged:
                    q = molecule_eem_charges(
                        tables.nonbonded,
                        arrays["types"],
                        x,
                        arrays["charge"],
                        arrays["top"].atom_mask,
                    ).reshape(-1)
                else:
                    q = jnp.zeros(flat.shape[0], flat.dtype)
                terms, overflow = structure_terms(
                    model, tables, types, flat, top, pairs, q, segment=segment
                )
                return total_energy(terms), (q, overflow)

            def relaxing(x: jax.Array) -> tuple[jax.Array, jax.Array, Any]:
                top, pairs, outgrown = _packed_extended_lists(
                    arrays, packed, tables.bonded, x.reshape(-1, 3)
                )
                e, (q, overflow) = energies(x, (top, pairs))
                return e, outgrown, (q.reshape(n_structures, n), overflow)

            # the loop's last evaluation of each structure is at its final geometry:
            # energies, forces, charges and list flags come from there
            res = minimize_many(
                relaxing,
                arrays["positions"],
                fixed=arrays["fixed"],
                fmax=arrays["fmax"],
                max_steps=arrays["max_steps"],
                method=kind,
                restraints=arrays["restraints"],
                energy_unit=KCAL_MOL,
                watch=True,
                aux=True,
            )
            pos = res.positions
            q, overflow = res.aux
            return {
                "energy": res.energy,
                "forces": res.forces if with_forces else jnp.zeros_like(res.forces),
                "stress": jnp.zeros((n_structures, 6), pos.dtype),
                "charges": q,
                "positions": pos,
                "coords": pos,
                "cell": arrays["cell"],
                "overflow": overflow | res.watched,
                "n_steps": res.n_steps,
                "converged": res.converged,
            }

        def batch(
            x: jax.Array, arrays: dict[str, Any], packed: dict[str, Any] | None
        ) -> dict[str, jax.Array]:
            def per_vector(xv: jax.Array) -> dict[str, jax.Array]:
                tables = model.tables(xv)
                if packed is not None and kind == "sp":
                    return packed_single_points(tables, arrays, packed)
                if packed is not None:
                    return packed_relaxations(tables, arrays, packed)
                if sequential:  # each relaxation stops at its own convergence
                    return jax.lax.map(lambda s: one(tables, s), arrays)
                return jax.vmap(lambda s: one(tables, s))(arrays)

            return jax.vmap(per_vector)(x)

        shared_key = (
            "bucket-values",
            kind,
            relax_cell,
            periodic,
            charged,
            sequential,
            with_forces,
            bucket.packed is not None,
        )
        return self._share(bucket, ("values", with_forces), shared_key, batch)

    def _jacobian_fn(self, bucket: _Bucket, grad_indices: tuple[int, ...]) -> Any:
        key = ("jac", grad_indices)
        if (known := bucket.fns.get(key)) is not None:
            return known
        model, relaxes, relax_cell = self.model, bucket.kind != "sp", bucket.relax_cell
        charged = bucket.charged
        idx = jnp.asarray(grad_indices)

        def one(
            xv: jax.Array, s: dict[str, Any], coords: jax.Array
        ) -> dict[str, jax.Array]:
            """Jacobians at the final coordinates (positions, or for cell relaxations
            the FrechetCellFilter coordinates [x D^-T; n_atoms log D])."""
            n = s["positions"].shape[0]
            eye = jnp.eye(3, dtype=coords.dtype)

            def unpack(z: jax.Array) -> tuple[jax.Array, jax.Array]:
                if not relax_cell:
                    return z, eye
                d = jax.scipy.linalg.expm(z[n:] / s["cell_factor"])
                return z[:n] @ d.T, d

            if relaxes:  # the lists the relaxation ended with
                top0, pairs0, _ = _extended_lists(
                    s, model.tables(xv).bonded, *unpack(coords)
                )
            else:
                top0, pairs0 = s["top"], s["pairs"]

            def charges_and_lists(z: jax.Array, tables: Tables) -> Any:
                x, d = unpack(z)
                top, pairs = deform_lists(top0, pairs0, d)
                q = structure_charges(
                    model,
                    tables,
                    s["types"],
                    x,
                    top,
                    pairs,
                    s["charge"],
                    solve_charges=charged,
                )
                return x, top, pairs, q

            def energy_at(x: jax.Array, top: Any, pairs: Any, q: Any, tables: Tables):
                terms, _ = structure_terms(model, tables, s["types"], x, top, pairs, q)
                return total_energy(terms)

            def outputs(z_flat: jax.Array, sub: jax.Array) -> Any:
                """Energy [eV], LAMMPS forces [eV/Å], charges, positions; exact in both."""
                tables = model.tables(xv.at[idx].set(sub))
                x, top, pairs, q = charges_and_lists(
                    z_flat.reshape(coords.shape), tables
                )
                e, g = jax.value_and_grad(
                    lambda xx: energy_at(xx, top, pairs, q, tables)
                )(x)
                return e * KCAL_MOL, -g.reshape(-1) * KCAL_MOL, q, x.reshape(-1)

            def optimizer_force(z_flat: jax.Array, sub: jax.Array) -> jax.Array:
                """The force the relaxation drove to zero (charges held at their values)."""
                tables = model.tables(xv.at[idx].set(sub))
                z = z_flat.reshape(coords.shape)
                _, _, _, q = charges_and_lists(z, tables)

                def e_of(zz: jax.Array) -> jax.Array:
                    x, d = unpack(zz)
                    top, pairs = deform_lists(top0, pairs0, d)
                    e = energy_at(x, top, pairs, q, tables)
                    if not relax_cell:
                        e = e + restraint_energy(x, s["restraints"]) / KCAL_MOL
                    return e

                return -jax.grad(e_of)(z).reshape(-1) * KCAL_MOL

            sub0 = xv[idx]
            z0 = coords.reshape(-1)
            if relaxes:
                fixed = s["fixed"]
                if relax_cell:
                    fixed = jnp.concatenate([fixed, jnp.zeros(3, bool)])
                free = jnp.repeat(~fixed, 3)
                # the Hessian column by column in batches of 32 (a full jacfwd of
                # a 100-atom relaxation with its lists needs tens of GB)
                dfdz = jax.lax.map(
                    lambda col: jax.jvp(
                        lambda zz: optimizer_force(zz, sub0), (z0,), (col,)
                    )[1],
                    jnp.eye(z0.size, dtype=z0.dtype),
                    batch_size=32,
                ).T
                dfdt = jax.jacfwd(optimizer_force, argnums=1)(z0, sub0)
                h = jnp.where(free[:, None] & free[None, :], -dfdz, 0.0)
                h = h + jnp.diag(jnp.where(free, 0.0, 1.0))
                rhs = jnp.where(free[:, None], dfdt, 0.0)
                dz = jnp.linalg.pinv(h, rtol=1e-8) @ rhs  # (n_coords, n_grad)
            else:
                dz = jnp.zeros((z0.size, idx.size))

            def along(dz_col: jax.Array, dt_col: jax.Array) -> Any:
                return jax.jvp(outputs, (z0, sub0), (dz_col, dt_col))[1]

            de, dforce, dq, dx = jax.vmap(along, in_axes=(1, 0))(dz, jnp.eye(idx.size))
            shape = (idx.size, n, 3)
            return {
                "energy": de,  # (n_grad,)
                "forces": jnp.moveaxis(dforce.reshape(shape), 0, -1),
                "charges": jnp.moveaxis(dq, 0, -1),
                "positions": jnp.moveaxis(dx.reshape(shape), 0, -1),
            }

        def batch(x: jax.Array, arrays: dict[str, Any], coords: jax.Array) -> Any:
            def per_vector(xv: jax.Array, c: jax.Array) -> Any:
                if not relaxes:
                    return jax.vmap(lambda s, cs: one(xv, s, cs))(arrays, c)
                # relaxations one structure at a time: their Hessians are large
                return jax.lax.map(lambda sc: one(xv, *sc), (arrays, c))

            return jax.vmap(per_vector)(x, coords)

        shared_key = ("bucket-jac", relaxes, relax_cell, charged, grad_indices)
        return self._share(bucket, key, shared_key, batch)

    def _energy_jacobian_fn(
        self, bucket: _Bucket, grad_indices: tuple[int, ...]
    ) -> Any:
        """Jacobian of the energies alone of a single-point bucket [eV per parameter
        unit], (n_vectors, n_structures, n_grad): forward mode through the tables and
        the charge solve, no forces (compiles in a fraction of the full jacobian's
        time)."""
        key = ("jac-energy", grad_indices)
        if (known := bucket.fns.get(key)) is not None:
            return known
        model, charged = self.model, bucket.charged
        idx = jnp.asarray(grad_indices)

        def one(xv: jax.Array, s: dict[str, Any]) -> jax.Array:
            def energy(sub: jax.Array) -> jax.Array:
                tables = model.tables(xv.at[idx].set(sub))
                terms, _, _ = structure_energy(
                    model,
                    tables,
                    s["types"],
                    s["positions"],
                    s["top"],
                    s["pairs"],
                    s["charge"],
                    solve_charges=charged,
                )
                return total_energy(terms) * KCAL_MOL

            return jax.jacfwd(energy)(xv[idx])

        def batch(x: jax.Array, arrays: dict[str, Any]) -> jax.Array:
            return jax.vmap(lambda xv: jax.vmap(lambda s: one(xv, s))(arrays))(x)

        shared_key = ("bucket-jac-energy", charged, grad_indices)
        return self._share(bucket, key, shared_key, batch)

    def _share(
        self, bucket: _Bucket, key: Any, shared_key: tuple[Any, ...], batch: Any
    ) -> Any:
        """``jax.jit(batch)`` kept in the bucket under ``key`` and in the model under
        ``shared_key`` (what the function depends on besides input shapes), so that
        buckets of other engines of the same model reuse its traces and compilations."""
        fn = self.model.compiled.get(shared_key)
        if fn is None:
            fn = self.model.compiled[shared_key] = jax.jit(batch)
        bucket.fns[key] = fn
        return fn

    def _reads_only(self, bucket: _Bucket, reads: frozenset[str]) -> bool:
        """Whether the data sets read nothing but ``reads`` (e.g. ``energy``,
        ``charges``, ``scan``) of the jobs of this single-point bucket."""
        if bucket.kind != "sp" or self.jacobian_fields is None:
            return False
        for plan in bucket.plans:
            job_id = self._scan_of_point.get(plan.job.id, plan.job.id)
            needs = self.jacobian_fields.get(job_id)
            if needs is None or not needs <= reads:
                return False
        return True

    def _energy_only(self, bucket: _Bucket) -> bool:
        """Whether this single-point bucket is read for energies alone."""
        return self._reads_only(bucket, frozenset({"energy", "scan"}))

    def _skips_forces(self, bucket: _Bucket) -> bool:
        """Whether this single-point bucket's forces and stress go unread (energies,
        charges and scan energies only): its values function then skips the
        gradient, about 40 % of a single point's cost."""
        return self._reads_only(bucket, frozenset({"energy", "charges", "scan"}))

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
        self._release_compiled_if_needed()

        def run(bucket: _Bucket) -> dict[str, JobResults]:
            with jax.enable_x64(True):  # (thread-local)
                return self._run_bucket(bucket, x, grad_indices)

        workers = min(len(self.buckets), self._threads())
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                for part in pool.map(run, self._by_work()):
                    out.update(part)
        else:
            for bucket in self.buckets:
                out.update(run(bucket))
        with jax.enable_x64(True):
            for job in self._fallback:
                out[job.id] = self._exact(job, x)
        for scan in self._scans.values():
            out[scan.job.id] = scan.assemble([out.pop(i) for i in scan.point_ids])
        return {job.id: out[job.id] for job in self.jobs}

    def _threads(self) -> int:
        """Buckets evaluated at once (threads)."""
        if self.engine.threads is not None:
            return self.engine.threads
        if jax.default_backend() != "cpu":
            return 1
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1

    def _by_work(self) -> list[_Bucket]:
        """The buckets, the most work first (a relaxation's times its step cap)."""
        return sorted(
            self.buckets,
            key=lambda b: -b.work * (1 + int(np.max(b.arrays["max_steps"]))),
        )

    def _release_compiled_if_needed(self) -> None:
        """Drop compiled functions before XLA exhausts the process's memory maps."""
        if memory_maps_exhausted():
            logger.info(
                "many compiled XLA functions in this process: clearing JAX's caches "
                "(they are reloaded from the persistent compilation cache)"
            )
            for bucket in self.buckets:
                bucket.fns.clear()
            self.model.reset_compiled()
            jax.clear_caches()

    def _pack_relaxations(self) -> bool:
        """Whether relaxation buckets without a cell relax their structures packed
        into one (:func:`minimize_many`)."""
        if self.engine.pack_relaxations is not None:
            return self.engine.pack_relaxations
        return jax.default_backend() == "cpu"

    def _relax_sequential(self) -> bool:
        """Whether a relaxation bucket relaxes its structures one after another."""
        if self.engine.relax_sequential is not None:
            return self.engine.relax_sequential
        return jax.default_backend() == "cpu"

    def _chunk_size(self, bucket: _Bucket) -> int:
        """Parameter vectors per compiled call of a bucket: ``max_chunk``, except on
        a CPU: single points as many as keep the call's arrays in cache (at most
        ``_CPU_CALL_WORK`` of :func:`_padded_cost`), relaxations ``relax_chunk``
        (default 1): a batched relaxation runs until its slowest member stops, and
        on a CPU that costs more than batching saves (cobalt, 11 vectors near
        ``ffield_lit``: 89 s one by one, 201 s batched)."""
        cpu = jax.default_backend() == "cpu"
        if bucket.kind == "sp":
            if not cpu:
                return self.engine.max_chunk
            # on a CPU, a call's arrays should stay in cache: disulfide's 127
            # ten-atom single points cost 11 ms per vector one vector per call and
            # 24 ms per vector 64 at a time, water's 59 three-atom ones 677 µs
            # one at a time and 195 µs 128 at a time (2026-11-21)
            chunk = 1
            while chunk * 2 * bucket.work <= _CPU_CALL_WORK:
                chunk *= 2
            return min(chunk, self.engine.max_chunk)
        if self.engine.relax_chunk is not None:
            return min(self.engine.relax_chunk, self.engine.max_chunk)
        return 1 if cpu else self.engine.max_chunk

    def _run_bucket(
        self, bucket: _Bucket, x: np.ndarray, grad_indices: Sequence[int] | None
    ) -> dict[str, JobResults]:
        finite = np.all(np.isfinite(x), axis=1)
        xs = np.where(finite[:, None], x, self.model.base_vector[None, :])
        want_jac = grad_indices is not None and len(grad_indices) > 0
        energy_only = want_jac and self._energy_only(bucket)
        parts: list[dict[str, np.ndarray]] = []
        jparts: list[dict[str, np.ndarray]] = []
        try:
            for start, stop, size in _chunks(len(xs), self._chunk_size(bucket)):
                pad = size - (stop - start)
                chunk = np.concatenate(
                    [xs[start:stop], np.repeat(xs[start : start + 1], pad, 0)]
                )
                v = self._values_fn(bucket)(
                    jnp.asarray(chunk), bucket.arrays, bucket.packed
                )
                v = {k: np.asarray(a)[: stop - start] for k, a in v.items()}
                parts.append(v)
                if energy_only:
                    jfn = self._energy_jacobian_fn(
                        bucket, tuple(int(i) for i in grad_indices or ())
                    )
                    j = {"energy": jfn(jnp.asarray(chunk), bucket.arrays)}
                    jparts.append(
                        {k: np.asarray(a)[: stop - start] for k, a in j.items()}
                    )
                elif want_jac:
                    jfn = self._jacobian_fn(
                        bucket, tuple(int(i) for i in grad_indices or ())
                    )
                    coords = v["coords"]
                    coords = np.concatenate([coords, np.repeat(coords[:1], pad, 0)])
                    j = jfn(jnp.asarray(chunk), bucket.arrays, jnp.asarray(coords))
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
        with_forces = not self._skips_forces(bucket)
        for s, plan in enumerate(bucket.plans):
            job = plan.job
            n = len(job.atoms)
            energy = v["energy"][:, s].copy()
            forces = v["forces"][:, s, :n].copy()
            charges = v["charges"][:, s, :n].copy()
            positions = v["positions"][:, s, :n].copy()
            task = job.task
            status = _status(task, v["converged"][:, s], energy, forces) | np.where(
                finite, 0, int(Status.FAILED)
            )
            redo = np.flatnonzero(v["overflow"][:, s] & finite)
            jacobians = None
            if jac is not None:
                jacobians = {
                    k: (jac[k][:, s] if k == "energy" else jac[k][:, s, :n]).copy()
                    for k in ("energy", "forces", "charges", "positions")
                    if k in jac
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
            cell = v["cell"][:, s].copy()
            stress = (
                v["stress"][:, s].copy()
                if has_stress(job.atoms) and with_forces
                else None
            )
            for arr in (cell, stress):
                if arr is not None:
                    arr[failed] = np.nan
            result = JobResults(
                energy=energy,
                positions=positions,
                cell=cell,
                pbc=np.asarray(job.atoms.pbc, bool),
                status=status,
                forces=forces if with_forces else None,
                stress=stress,
                charges=charges,
                n_steps=v["n_steps"][:, s].astype(np.int64),
                **({"jacobians": jacobians} if jacobians is not None else {}),
            )
            if redo.size:
                result = self._redo(plan, bucket, x, result, redo)
            results[job.id] = result
        return results

    def _failed(self, job: Job, n_vectors: int) -> JobResults:
        return stack_results(
            [failed_job_results(job, properties=_PROPERTIES) for _ in range(n_vectors)]
        )

    def _calculator(self, xv: np.ndarray) -> ReaxFFCalculator:
        return ReaxFFCalculator.from_model(self.model, xv, skin=self.engine.skin)

    def _exact(self, job: Job, x: np.ndarray) -> JobResults:
        """Each vector through ASE with the calculator (PES scans, list overflows)."""
        per = []
        for xv in x:
            self._release_compiled_if_needed()
            if not np.all(np.isfinite(xv)):
                per.append(failed_job_results(job, properties=_PROPERTIES))
                continue
            per.append(run_job(job, self._calculator(xv), properties=_PROPERTIES))
        return stack_results(per)

    def _redo(
        self,
        plan: _Plan,
        bucket: _Bucket,
        x: np.ndarray,
        result: JobResults,
        rows: np.ndarray,
    ) -> JobResults:
        """Recompute the (vector, job) pairs in ``rows`` whose lists were outgrown: in
        JAX with lists rebuilt for that vector and a larger skin (see
        :meth:`_restart`), else exactly through ASE."""
        job = plan.job
        redone: dict[int, JobResults] = {}
        redone.update(self._restart(plan, bucket, x, result, rows))
        exact_rows = [int(r) for r in rows if int(r) not in redone]
        logger.info(
            "job %r: %d parameter vector(s) outgrew the interaction lists; %d redone "
            "in JAX with new lists, %d recomputed through ASE",
            job.id,
            rows.size,
            len(redone),
            len(exact_rows),
        )
        if exact_rows:
            exact = self._exact(job, x[exact_rows])
            for k, r in enumerate(exact_rows):
                redone[r] = _row(exact, k)
        fields = {}
        for name in (
            "energy",
            "positions",
            "cell",
            "status",
            "forces",
            "stress",
            "charges",
            "n_steps",
        ):
            if getattr(result, name) is None:
                fields[name] = None
                continue
            arr = np.array(getattr(result, name), copy=True)
            for r, new in redone.items():
                value = getattr(new, name)
                if value is not None:
                    arr[r] = value[0]
            fields[name] = arr
        jac = getattr(result, "jacobians", None)
        if jac is not None:
            jac = {k: np.array(a, copy=True) for k, a in jac.items()}
            for a in jac.values():
                a[rows] = np.nan  # the objective takes these by finite differences
        return JobResults(
            pbc=result.pbc,
            **fields,
            **({"jacobians": jac} if jac is not None else {}),
        )

    def _restart(
        self,
        plan: _Plan,
        bucket: _Bucket,
        x: np.ndarray,
        result: JobResults,
        rows: np.ndarray,
    ) -> dict[int, JobResults]:
        """Redo the (vector, job) pairs of one job in ``rows`` in JAX, together: lists
        rebuilt from the job's geometry for all their parameter vectors, listing the
        bonds formed where their first pass went, with a relaxation watch (jobs
        without H-bonds or angle lists) or skin (others) of ``2^k`` times the
        engine's, larger than the displacement seen; up to
        ``engine.max_restarts`` times, each time for the pairs still outgrowing their
        lists. A relaxation starts again from the job's geometry, so it takes the same
        steps as the exact path. Returns one-vector results by row; rows missing from
        it go to ASE.

        All restarts of one kind of relaxation pad to one shape, at least the
        ``bucket``'s and the largest restart's so far, so that they share one
        compilation."""
        job, task = plan.job, plan.job.task
        kind, relax_cell = bucket.kind, bucket.relax_cell
        relaxes = isinstance(task, GeometryOptimization)
        n = len(job.atoms)
        start = job.atoms.positions
        todo = [int(r) for r in rows if np.all(np.isfinite(x[r]))]
        reached = {
            r: result.positions[r]
            for r in todo
            if np.all(np.isfinite(result.positions[r]))
        }
        tables = {r: self.model.tables(jnp.asarray(x[r])) for r in todo}
        skin = self.engine.skin
        watch = max(self.engine.watch, skin)
        # without H-bonds or bonds that need angles listed, the lists depend on the
        # geometry alone: only the watch grows, so a job's restarts keep one list
        # shape (compiled once per job, reused by later calls)
        listing = plan.hbond_watch or bool(self.model.type_in_lists[plan.types].any())
        out: dict[int, JobResults] = {}
        for _ in range(self.engine.max_restarts):
            if not todo:
                break
            moved = max(
                (
                    float(np.linalg.norm(p - start, axis=1).max())
                    for p in reached.values()
                ),
                default=0.0,
            )
            if relaxes and not listing:  # watches of watch * 2^k
                watch = max(2.0 * watch, 0.5)
                while watch < 2.5 * moved and watch < _MAX_RESTART_WATCH:
                    watch *= 2.0
                watch = min(watch, _MAX_RESTART_WATCH)
            elif relaxes:  # skins of engine.skin * 2^k: few list shapes to compile
                skin = max(2.0 * skin, 0.5)  # (a zero engine skin doubles to 0.5 Å)
                while skin < 2.5 * moved and skin < _MAX_RESTART_SKIN:
                    skin *= 2.0
                skin = min(skin, _MAX_RESTART_SKIN)
            lists = structure_lists(
                self.model,
                start,
                job.atoms.cell.array,
                job.atoms.pbc,
                plan.types,
                tables=tuple(tables[r] for r in todo),
                skin=skin if relaxes else 0.0,
                margin=self.engine.list_margin,
                split_far=True,
                # bonds that formed on the way are listed too
                also_at=tuple(
                    p
                    for p in reached.values()
                    if relaxes and np.linalg.norm(p - start, axis=1).max() < 0.5 * skin
                ),
            )
            single = _Bucket(
                kind=kind,
                plans=[
                    _Plan(
                        job,
                        plan.types,
                        lists,
                        plan.charge,
                        plan.fixed,
                        plan.hbond_watch,
                    )
                ],
                relax_cell=relax_cell,
                skin=skin,
                watch=watch,
                r_cut=self.model.r_cut,
                type_in_lists=self.model.type_in_lists,
                pack_relaxations=self._pack_relaxations(),
            )
            # one padded shape for the restarts of every job relaxed this way (the
            # largest so far): restarts are rare and differ in size from job to job,
            # and a new shape costs a trace and compilation (~30 s for a cobalt
            # surface) against milliseconds for the padding
            shape_key = (
                kind,
                relax_cell,
                has_stress(job.atoms),
                needs_charges(plan.types, plan.charge),
            )
            floor = dict(bucket.padded)
            for name, n_max in self._restart_sizes.get(shape_key, {}).items():
                floor[name] = max(floor[name], n_max)
            sizes = single.pad(floor=floor)
            if sizes != self._restart_sizes.get(shape_key):
                logger.debug(
                    "restarts of %s padded to %s (a new shape)", shape_key, sizes
                )
            self._restart_sizes[shape_key] = sizes
            self._release_compiled_if_needed()
            values: list[dict[str, np.ndarray]] = []
            try:
                # restarts of a job run in chunks of one size: one compilation
                for begin, stop, size in _chunks(len(todo), _RESTART_CHUNK, pad=True):
                    chunk = x[todo[begin:stop]]
                    chunk = np.concatenate(
                        [chunk, np.repeat(chunk[:1], size - len(chunk), 0)]
                    )
                    v = self._values_fn(single)(
                        jnp.asarray(chunk), single.arrays, single.packed
                    )
                    values.append(
                        {k: np.asarray(a)[: stop - begin, 0] for k, a in v.items()}
                    )
            except Exception as err:  # noqa: BLE001 - never raise for a bad vector
                logger.warning("job %r: restart in JAX failed: %s", job.id, err)
                break
            v = {k: np.concatenate([c[k] for c in values]) for k in values[0]}
            still = []
            for k, r in enumerate(todo):
                positions = v["positions"][k, :n]
                if bool(v["overflow"][k]):
                    still.append(r)
                    if np.all(np.isfinite(positions)):
                        reached[r] = positions
                    continue
                forces = v["forces"][k : k + 1, :n]
                energy = v["energy"][k : k + 1]
                out[r] = JobResults(
                    energy=energy,
                    positions=positions[None],
                    cell=v["cell"][k][None],
                    pbc=np.asarray(job.atoms.pbc, bool),
                    status=_status(task, v["converged"][k : k + 1], energy, forces),
                    forces=forces,
                    stress=v["stress"][k][None] if has_stress(job.atoms) else None,
                    charges=v["charges"][k, :n][None],
                    n_steps=np.array([int(v["n_steps"][k])], np.int64),
                )
            todo = still
            reached = {r: reached[r] for r in still if r in reached}
        return out


def _inside(x: jax.Array, w: dict[str, jax.Array], cutoff: Any) -> jax.Array:
    """(n,) which watched pairs ``w`` are within ``cutoff`` [Å] at positions ``x``."""
    d = x[w["j"]] + w["shift"] - x[w["i"]]
    return w["mask"] & (jnp.sum(d * d, axis=1) <= cutoff * cutoff)


def _bonds_formed(
    x: jax.Array, w: dict[str, jax.Array], bonded: BondedTables, types: jax.Array
) -> jax.Array:
    """(n,) which bond candidates ``w`` are bonds at positions ``x`` for the tables
    ``bonded`` (:func:`~parafit.engines.reaxff.bonded.pairs_are_bonds`; leaving the
    others out changes nothing)."""
    return pairs_are_bonds(bonded, types, x, w["i"], w["j"], w["shift"], w["mask"])


def _capacity(n_watched: int) -> int:
    """Extra list slots of one structure for ``n_watched`` (padded) watched pairs."""
    return max(4, n_watched // 8)


def _first(
    inside: jax.Array, capacity: int, owner: jax.Array | None = None, n_owners: int = 1
) -> tuple[jax.Array, jax.Array]:
    """Indices (n_owners * capacity,) of the true entries of ``inside`` (n,) (unused
    slots point to the last entry, padding), and whether there were more than
    ``capacity``: () bool, or (n_owners,) per structure with ``owner`` (n,) the
    structure of each entry."""
    n = inside.shape[0]
    (index,) = jnp.nonzero(inside, size=n_owners * capacity, fill_value=n - 1)
    if owner is None:
        return index, jnp.sum(inside) > capacity
    count = jax.ops.segment_sum(inside.astype(jnp.int32), owner, num_segments=n_owners)
    return index, count > capacity


def _joined(
    top: Topology,
    pairs: PairList,
    wb: dict[str, jax.Array],
    ib: jax.Array,
    wp: dict[str, jax.Array],
    ip: jax.Array,
) -> tuple[Topology, PairList]:
    """The lists plus the watched bonds ``wb[ib]`` and pairs ``wp[ip]``."""
    b_used, p_used = wb["mask"][ib], wp["mask"][ip]
    top = dataclasses.replace(
        top,
        bond_i=jnp.concatenate([top.bond_i, wb["i"][ib]]),
        bond_j=jnp.concatenate([top.bond_j, wb["j"][ib]]),
        bond_shift=jnp.concatenate([top.bond_shift, wb["shift"][ib]]),
        bond_mask=jnp.concatenate([top.bond_mask, b_used]),
        listed=jnp.concatenate([top.listed, wb["listed"][ib]]),
    )
    far = jnp.zeros_like(wp["shift"][ip]).at[:, 0].set(1.0e3)
    pairs = PairList(
        i=jnp.concatenate([pairs.i, wp["i"][ip]]),
        j=jnp.concatenate([pairs.j, wp["j"][ip]]),
        shift=jnp.concatenate(
            [pairs.shift, jnp.where(p_used[:, None], wp["shift"][ip], far)]
        ),
        weight=jnp.concatenate([pairs.weight, p_used.astype(pairs.weight.dtype)]),
    )
    return top, pairs


def _moved_too_far(
    s: dict[str, Any], moved: jax.Array, s_min: jax.Array | float = 1.0
) -> jax.Array:
    """Whether a displacement ``moved`` [Å] beyond the cell's affine one may have
    brought an unwatched pair within its cutoff (see :func:`_extended_lists`);
    ``s`` the structure's (or structures') ``watch``, ``skin``, ``r_cut`` and
    ``hbond_watch``."""

    def allowed(cutoff: Any, reach: jax.Array) -> jax.Array:
        return 0.5 * (s_min * (cutoff + reach) - cutoff)

    reach = s["watch"]
    return (
        moved > jnp.minimum(allowed(BOND_CUTOFF, reach), allowed(s["r_cut"], reach))
    ) | (s["hbond_watch"] & (moved > allowed(HBOND_CUTOFF, s["skin"])))


def _extended_lists(
    s: dict[str, Any],
    bonded: BondedTables,
    x: jax.Array,
    deformation: jax.Array | None = None,
) -> tuple[Topology, PairList, Any]:
    """The lists of one relaxing structure ``s`` (bucket arrays) at positions ``x``
    (n_atoms, 3) of its cell deformed by ``deformation`` (3, 3; None: not deformed):
    the start lists plus the watched pairs that came within the non-bonded cutoff
    (:func:`watch_list`) and the watched bond candidates that are bonds for the
    tables ``bonded`` (:func:`_bonds_formed`; tested with their shifts deformed,
    returned undeformed, as the start lists'), and whether the lists are outgrown:
    more such pairs than the extra slots hold (:func:`_capacity`), or a pair beyond
    the watch could have come within its cutoff.

    That last test is exact for any strain: with positions ``x = D x0 + u`` (``u``
    the displacement beyond the cell's affine one), a pair vector becomes
    ``D d0 + u_j - u_i``, no shorter than ``s_min |d0| - 2 max|u|`` (``s_min`` the
    smallest singular value of ``D``). A pair farther than ``c + reach`` at the start
    therefore stays beyond ``c`` while ``max|u| <= (s_min (c + reach) - c) / 2``, for
    the bond and non-bonded cutoffs with the watch as reach and, where H-bonds are
    possible, the H-bond cutoff with the skin. Without strain this is ``reach / 2``;
    a cell that expands never outgrows its lists by expanding.

    Which pairs are added depends on ``x`` only through integer indices, so the
    energy at ``x`` with these lists is differentiable as usual."""
    x = jax.lax.stop_gradient(x)
    wb, wp = s["watch_bonds"], s["watch_pairs"]
    if deformation is not None:
        deformation = jax.lax.stop_gradient(deformation)
        wb = {**wb, "shift": wb["shift"] @ deformation.T}
        wp = {**wp, "shift": wp["shift"] @ deformation.T}
    ib, b_full = _first(
        _bonds_formed(x, wb, bonded, s["types"]), _capacity(wb["i"].shape[0])
    )
    ip, p_full = _first(_inside(x, wp, s["r_cut"]), _capacity(wp["i"].shape[0]))
    top, pairs = _joined(
        s["top"], s["pairs"], s["watch_bonds"], ib, s["watch_pairs"], ip
    )
    if deformation is None:
        affine, s_min = s["positions"], jnp.ones((), x.dtype)
    else:
        affine = s["positions"] @ deformation.T
        smallest = jnp.linalg.eigvalsh(deformation.T @ deformation)[0]
        s_min = jnp.sqrt(jnp.maximum(smallest, 0.0))
    moved = jnp.sqrt(
        jnp.max(jnp.where(s["top"].atom_mask, jnp.sum((x - affine) ** 2, axis=1), 0.0))
    )
    return top, pairs, b_full | p_full | _moved_too_far(s, moved, s_min)


def _packed_extended_lists(
    arrays: dict[str, Any],
    packed: dict[str, Any],
    bonded: BondedTables,
    x: jax.Array,
) -> tuple[Topology, PairList, jax.Array]:
    """:func:`_extended_lists` of every structure of a relaxation bucket packed into
    one (:func:`_packed_lists`), at positions ``x`` (n_structures * n_atoms, 3) (no
    cell deformation): the packed lists and (n_structures,) outgrown flags, the same
    as each structure's own (its watched pairs count against its own extra
    slots)."""
    x = jax.lax.stop_gradient(x)
    n_structures = arrays["types"].shape[0]
    segment = packed["segment"]
    wb, wp = packed["watch_bonds"], packed["watch_pairs"]
    ib, b_full = _first(
        _bonds_formed(x, wb, bonded, packed["types"]),
        _capacity(arrays["watch_bonds"]["i"].shape[1]),
        segment[wb["i"]],
        n_structures,
    )
    ip, p_full = _first(
        _inside(x, wp, arrays["r_cut"][segment[wp["i"]]]),
        _capacity(arrays["watch_pairs"]["i"].shape[1]),
        segment[wp["i"]],
        n_structures,
    )
    top, pairs = _joined(packed["top"], packed["pairs"], wb, ib, wp, ip)
    start = arrays["positions"].reshape(-1, 3)
    moved2 = jnp.where(packed["top"].atom_mask, jnp.sum((x - start) ** 2, axis=1), 0.0)
    moved = jnp.sqrt(jax.ops.segment_max(moved2, segment, num_segments=n_structures))
    return top, pairs, b_full | p_full | _moved_too_far(arrays, moved)


def _status(
    task: Any, converged: np.ndarray, energy: np.ndarray, forces: np.ndarray
) -> np.ndarray:
    """(n_vectors,) status bits of one job's results: not converged (and failed, unless
    ``pretend_converged``) for relaxations, failed for non-finite energy or forces."""
    status = np.zeros(len(energy), dtype=np.int64)
    if isinstance(task, GeometryOptimization):
        not_converged = ~np.asarray(converged, bool)
        status[not_converged] |= int(Status.GEOOPT_NOT_CONVERGED)
        if not task.pretend_converged:
            status[not_converged] |= int(Status.FAILED)
    bad = ~np.isfinite(energy) | ~np.all(np.isfinite(forces), axis=(1, 2))
    status[bad] |= int(Status.FAILED)
    return status


def _row(results: JobResults, k: int) -> JobResults:
    """Vector ``k`` of ``results`` as a one-vector JobResults."""
    fields = {}
    for f in dataclasses.fields(results):
        value = getattr(results, f.name)
        if f.name in ("pbc", "jacobians") or value is None:
            fields[f.name] = value if f.name == "pbc" else None
        else:
            fields[f.name] = np.asarray(value)[k : k + 1]
    return JobResults(**fields)


@final
class ReaxFFEngine:
    """parafit's ReaxFF engine (JAX; batched over parameter vectors and structures).

    Args:
        ffield: path of the ``ffield`` (or a :class:`~parafit.io.ffield.ForceField`):
            the values of every parameter the interface does not set, and the layout.
        skin: extra list distance [Å] for geometry optimizations (default 1.0).
        watch: a relaxation checks at every step the atom pairs up to this far [Å]
            beyond the bond and non-bonded cutoffs that its lists (built with
            ``skin``) leave out, and is redone with new lists when one comes within
            its cutoff or an atom moves more than ``watch / 2`` (default 6.0; with
            ``watch <= skin``: when an atom moves more than ``skin / 2``); in a cell
            relaxation the moves beyond the cell's deformation count, against a
            bound that shrinks as the cell compresses.
        list_margin: bonds get angles/torsions/H-bonds above ``list_margin * 0.001``
            bond order at the force field's values (default 0.1).
        max_chunk: most parameter vectors per compiled call (default 64); batches
            are cut into chunks padded to powers of two, so a bucket compiles for at
            most log2(max_chunk) + 1 batch sizes.
        relax_chunk: parameter vectors per compiled call of a relaxation bucket
            (default: 1 on CPU, where a batched relaxation that runs until its
            slowest member stops costs more than batching saves; ``max_chunk`` on
            GPU).
        relax_sequential: relax a bucket's structures one after another
            (``lax.map``: each stops at its own convergence) rather than in
            lock-step (``vmap``: every one runs until the slowest stops). Default:
            one after another on CPU (cobalt at ``ffield_lit``: 1.7 s instead of
            6.1 s per evaluation, 92 surface and bulk relaxations of 0 to 50 steps
            in one bucket), lock-step on GPU.
        pack_relaxations: relax the structures of a bucket of molecules (no cell)
            together, packed into one system whose lists never connect two of them
            (:func:`~parafit.engines.jax_relax.minimize_many`): each takes its own
            steps, and one step of all costs about 1.3-1.9 times one step of one
            on a CPU (disulfide's 12- and 28-atom relaxations). Default: on CPU;
            other buckets follow ``relax_sequential``.
        threads: buckets evaluated at once, each in its own thread (XLA runs a
            small structure's kernels on one core; disulfide at 64 vectors on 2
            cores: 27-33 ms per vector with 2 threads, 41-51 ms with 1). Default:
            the CPU cores this process may use, on CPU; 1 on GPU.
        max_restarts: a (vector, job) that outgrows its lists is redone in JAX
            with lists rebuilt for that vector and a larger skin (up to 8 Å), up to
            this many times (default 3; 0: straight to the exact ASE path).

    Energies in eV, forces in eV/Å, charges in e; LAMMPS's conventions and constants
    (see ``docs/reaxff.md``).
    """

    implemented_properties = frozenset({"energy", "forces", "stress", "charges"})
    is_differentiable = True

    def __init__(
        self,
        ffield: str | Path | ForceField,
        *,
        skin: float = 1.0,
        watch: float = 6.0,
        list_margin: float = 0.1,
        max_chunk: int = 64,
        relax_chunk: int | None = None,
        relax_sequential: bool | None = None,
        pack_relaxations: bool | None = None,
        max_restarts: int = 3,
        threads: int | None = None,
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
        if not (math.isfinite(watch) and watch >= 0):
            raise EngineError(f"watch must be >= 0 [Å]; got {watch!r}.")
        self.skin = float(skin)
        self.watch = float(watch)
        self.list_margin = float(list_margin)
        self.max_chunk = int(max_chunk)
        if relax_chunk is not None and int(relax_chunk) < 1:
            raise EngineError(f"relax_chunk must be >= 1; got {relax_chunk!r}.")
        self.relax_chunk = None if relax_chunk is None else int(relax_chunk)
        if relax_sequential is not None and not isinstance(relax_sequential, bool):
            raise EngineError(
                f"relax_sequential must be true, false or null; got {relax_sequential!r}."
            )
        self.relax_sequential = relax_sequential
        if pack_relaxations is not None and not isinstance(pack_relaxations, bool):
            raise EngineError(
                "pack_relaxations must be true, false or null; got "
                f"{pack_relaxations!r}."
            )
        self.pack_relaxations = pack_relaxations
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise EngineError(
                f"threads must be an integer >= 1 or null; got {threads!r}."
            )
        self.threads = threads
        if int(max_restarts) < 0:
            raise EngineError(f"max_restarts must be >= 0; got {max_restarts!r}.")
        self.max_restarts = int(max_restarts)

    def default_interface(self) -> ParameterInterface:
        return interface_from_ffield(self.forcefield)

    def setup(self, jobs: Sequence[Job], parameter_names: Sequence[str], /) -> ReaxFFFn:
        return ReaxFFFn(self, jobs, parameter_names)

    def to_dict(self) -> dict[str, object]:
        d: dict[str, object] = {
            "type": "reaxff",
            "skin": self.skin,
            "watch": self.watch,
            "list_margin": self.list_margin,
            "max_chunk": self.max_chunk,
            "relax_chunk": self.relax_chunk,
            "relax_sequential": self.relax_sequential,
            "pack_relaxations": self.pack_relaxations,
            "threads": self.threads,
            "max_restarts": self.max_restarts,
        }
        if self.path is not None:
            d["ffield"] = str(self.path)
        else:
            d["ffield"] = ""
            d["ffield_text"] = format_ffield(self.forcefield)
        return d
