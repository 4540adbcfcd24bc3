"""A ReaxFF force field as a differentiable function of a parameter vector.

:class:`ReaxFFModel` holds what is fixed for a fit (the force field's layout, the
discrete per-type rules, which parameter names are free) and maps a parameter vector
to the mixed tables of :mod:`~parafit.engines.reaxff.bonded` and
:mod:`~parafit.engines.reaxff.nonbonded`. :func:`structure_energy` is the energy of one
(possibly padded) structure: every term, the EEM/QEq charges and a flag saying whether
the interaction lists were large enough for these parameters.

Units: kcal/mol, Å, e (ReaxFF's); engines convert to eV at their edge.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from parafit.engines.reaxff.bonded import (
    BondedStatic,
    BondedTables,
    Segments,
    Topology,
    bond_order_cutoff,
    bond_orders,
    bonded_energies,
    bonded_static,
    bonded_tables,
    far_bond_overflow,
    list_overflow,
    uncorrected_bond_orders,
)
from parafit.engines.reaxff.names import parameter_locations
from parafit.engines.reaxff.nonbonded import (
    PairList,
    TypeTables,
    eem_charges,
    nonbonded_energies,
    type_tables,
    vdw_form,
)
from parafit.engines.reaxff.topology import (
    ListRules,
    ListSizes,
    bond_candidates,
    build_topology,
    pad_topology,
)
from parafit.errors import EngineError
from parafit.io.ffield import BLOCK_CODES, ForceField

__all__ = [
    "TERMS",
    "ReaxFFModel",
    "StructureLists",
    "deform_lists",
    "needs_charges",
    "stress_voigt",
    "Tables",
    "structure_charges",
    "structure_energy",
    "structure_lists",
    "structure_terms",
    "total_energy",
]

#: Energy terms reported per structure [kcal/mol], in LAMMPS's order.
TERMS = (
    "E_bond",
    "E_over",
    "E_under",
    "E_lone_pair",
    "E_val",
    "E_pen",
    "E_coa",
    "E_hb",
    "E_tors",
    "E_conj",
    "E_vdw",
    "E_coul",
    "E_charge",
)

_BLOCK_FIELDS = {
    "GEN": "general",
    "ATM": "atom_params",
    "BND": "bond_params",
    "OFD": "offdiag_params",
    "ANG": "angle_params",
    "TOR": "torsion_params",
    "HBD": "hbond_params",
}


@dataclass(frozen=True)
class Tables:
    """Mixed parameter tables of one parameter vector (a pytree)."""

    bonded: BondedTables
    nonbonded: TypeTables


jax.tree_util.register_dataclass(
    Tables, data_fields=["bonded", "nonbonded"], meta_fields=[]
)


class ReaxFFModel:
    """The fixed part of a ReaxFF force field and the map from parameters to tables.

    Args:
        ff: the force field (base values of every parameter not in ``parameter_names``;
            masses, symbols and p_hbond decide the discrete rules).
        parameter_names: names (see :func:`~parafit.engines.reaxff.names.interface_from_ffield`)
            of the entries of the parameter vectors passed to :meth:`tables`.

    Raises:
        EngineError: a name the force field does not have.
    """

    def __init__(self, ff: ForceField, parameter_names: Sequence[str] = ()) -> None:
        self.ff = ff
        self.static: BondedStatic = bonded_static(ff)
        self.is_shielded, self.has_inner_wall = vdw_form(ff.atom_params)
        by_name = {loc.name: loc for loc in parameter_locations(ff)}
        self.parameter_names = tuple(parameter_names)
        self._scatter: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        missing = [n for n in self.parameter_names if n not in by_name]
        if missing:
            raise EngineError(
                f"parameter {missing[0]!r} is not in this force field "
                f"({len(missing)} unknown name(s)); was the interface built from another ffield?"
            )
        per_block: dict[str, list[tuple[int, int, int]]] = {}
        for k, name in enumerate(self.parameter_names):
            loc = by_name[name]
            row, col = (
                (0, loc.entry) if loc.block == "GEN" else (loc.entry, loc.position - 1)
            )
            per_block.setdefault(loc.block, []).append((k, row, col))
        for block, items in per_block.items():
            a = np.asarray(items, dtype=np.int64)
            self._scatter[block] = (a[:, 0], a[:, 1], a[:, 2])
        self._base_vector = np.array(
            [by_name[n].value(ff) for n in self.parameter_names], dtype=float
        )
        self.symbols = tuple(s.strip() for s in ff.atom_symbols)
        self.hbond_role = self.static.hbond_role
        self.r_cut = float(ff.general[12])
        static = self.static
        #: type combinations that have parameters (lists hold only those)
        self.list_rules = ListRules(
            angle=(static.angle_index >= 0).any(axis=0),
            torsion=static.torsion_index >= 0,
            hbond=static.hbond_index >= 0,
        )
        rules = self.list_rules
        #: (n_types,) bool: the type takes part in some angle, torsion or H-bond with
        #: parameters; a bond between two types that do not never needs listing
        self.type_in_lists = np.zeros(len(self.symbols), bool)
        for table in (rules.angle, rules.torsion, rules.hbond):
            for axis in range(table.ndim):
                others = tuple(a for a in range(table.ndim) if a != axis)
                self.type_in_lists |= np.asarray(table).any(axis=others)
        self._base_tables: Tables | None = None
        #: compiled functions of this model, shared by its calculators and engines
        self.compiled: dict[Any, Any] = {}
        self.reset_compiled()

    def reset_compiled(self) -> None:
        """Forget this model's jitted functions (after ``jax.clear_caches()``)."""
        static = self.static
        self.compiled.clear()
        self._bond_orders = jax.jit(
            lambda t, types, pos, top: bond_orders(t, static, types, pos, top).bo
        )
        self._uncorrected = jax.jit(
            lambda t, r, ti, tj: (
                uncorrected_bond_orders(t, r, ti, tj),
                bond_order_cutoff(t),
            )
        )

    def uncorrected_bond_orders(
        self, tables: "Tables", r: np.ndarray, ti: np.ndarray, tj: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """(n_pairs,) uncorrected bond orders BO' of pairs at distances r [Å] between
        types ti, tj, and ``bo_cut`` (compiled once per power-of-two size)."""
        n = r.size
        n_pad = 1 << max(3, (n - 1).bit_length())

        def pad(a: np.ndarray, value: float) -> np.ndarray:
            return np.concatenate([a, np.full(n_pad - n, value, a.dtype)])

        raw, bo_cut = self._uncorrected(
            tables.bonded,
            jnp.asarray(pad(np.asarray(r, float), 10.0)),
            jnp.asarray(pad(np.asarray(ti, np.int32), 0)),
            jnp.asarray(pad(np.asarray(tj, np.int32), 0)),
        )
        return np.asarray(raw)[:n], float(bo_cut)

    def bond_orders(
        self, tables: "Tables", types: np.ndarray, positions: np.ndarray, top: Topology
    ) -> np.ndarray:
        """(n_bonds,) corrected bond orders of a topology's bond candidates (compiled
        once per padded size)."""
        nb = top.bond_i.size
        n = top.atom_mask.size
        # powers of two: few compiled shapes over a whole training set
        n_pad = 1 << max(3, (n - 1).bit_length())
        nb_pad = 1 << max(3, (nb - 1).bit_length())
        sizes = ListSizes(atoms=n_pad, bonds=nb_pad, angles=1, torsions=1, hbonds=1)
        bare = Topology(
            **{
                **vars(top),
                "angle_h1": np.zeros(0, np.int32),
                "angle_h2": np.zeros(0, np.int32),
                "angle_mask": np.zeros(0, bool),
                "torsion_h1": np.zeros(0, np.int32),
                "torsion_bond": np.zeros(0, np.int32),
                "torsion_h3": np.zeros(0, np.int32),
                "torsion_mask": np.zeros(0, bool),
                "hbond_h": np.zeros(0, np.int32),
                "hbond_z": np.zeros(0, np.int32),
                "hbond_shift": np.zeros((0, 3)),
                "hbond_mask": np.zeros(0, bool),
                "far_i": np.zeros(0, np.int32),
                "far_j": np.zeros(0, np.int32),
                "far_shift": np.zeros((0, 3)),
                "far_mask": np.zeros(0, bool),
            }
        )
        padded = pad_topology(bare, sizes)
        pos = np.zeros((n_pad, 3))
        pos[:n] = positions
        pos[n:, 0] = 1.0e4 * (1 + np.arange(n_pad - n))
        bo = self._bond_orders(
            tables.bonded,
            jnp.asarray(np.concatenate([types, np.zeros(n_pad - n, np.int32)])),
            jnp.asarray(pos),
            padded,
        )
        return np.asarray(bo)[:nb]

    @property
    def base_vector(self) -> np.ndarray:
        """(n_params,) the force field's values of ``parameter_names``."""
        return self._base_vector.copy()

    def type_index(self, symbols: Sequence[str]) -> np.ndarray:
        """(n_atoms,) atom-type indices of element symbols (first matching type).

        Raises:
            EngineError: an element the force field does not have.
        """
        upper = [s.upper() for s in self.symbols]
        out = []
        for s in symbols:
            if s.upper() not in upper:
                raise EngineError(
                    f"element {s!r} is not in the force field (it has {', '.join(self.symbols)})."
                )
            out.append(upper.index(s.upper()))
        return np.asarray(out, dtype=np.int32)

    def blocks(self, x: jax.Array | None) -> dict[str, jax.Array]:
        """The force-field blocks with ``x`` (n_params,) written in (or base values)."""
        out: dict[str, jax.Array] = {}
        for block in BLOCK_CODES:
            base = jnp.asarray(getattr(self.ff, _BLOCK_FIELDS[block]), dtype=float)
            if base.ndim == 2 and base.shape[0] == 0:
                base = jnp.zeros((0, base.shape[1]))
            if x is not None and block in self._scatter:
                k, row, col = self._scatter[block]
                if block == "GEN":
                    base = base.at[col].set(x[k])
                else:
                    base = base.at[row, col].set(x[k])
            out[block] = base
        return out

    def base_tables(self) -> Tables:
        """Tables of the force field's own values (computed once)."""
        if self._base_tables is None:
            with jax.enable_x64(True):
                self._base_tables = jax.jit(self.tables)()
        return self._base_tables

    def tables(self, x: jax.Array | None = None) -> Tables:
        """Mixed tables for the parameter vector ``x`` (n_params,), differentiable."""
        b = self.blocks(x)
        ff = self.ff
        return Tables(
            bonded=bonded_tables(
                self.static,
                b["GEN"],
                b["ATM"],
                b["BND"],
                b["OFD"],
                b["ANG"],
                b["TOR"],
                b["HBD"],
            ),
            nonbonded=type_tables(
                b["GEN"],
                b["ATM"],
                ff.offdiag_pairs,
                b["OFD"],
                is_shielded=self.is_shielded,
                has_inner_wall=self.has_inner_wall,
            ),
        )


def structure_charges(
    model: ReaxFFModel,
    tables: Tables,
    types: jax.Array,
    positions: jax.Array,
    top: Topology,
    pairs: PairList,
    total_charge: jax.Array | float = 0.0,
    *,
    solve_charges: bool = True,
) -> jax.Array:
    """(n_atoms,) EEM/QEq charges [e], differentiable in positions and parameters
    (zeros with ``solve_charges=False``, see :func:`needs_charges`)."""
    if not solve_charges:
        return jnp.zeros(positions.shape[0], positions.dtype)
    return eem_charges(
        tables.nonbonded,
        types,
        positions,
        pairs,
        total_charge,
        atom_mask=top.atom_mask,
        stop_position_gradient=False,
    )


def structure_terms(
    model: ReaxFFModel,
    tables: Tables,
    types: jax.Array,
    positions: jax.Array,
    top: Topology,
    pairs: PairList,
    charges: jax.Array,
    segment: Segments | None = None,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """Energy terms [kcal/mol] at given charges, and the list-overflow flag; each
    (n_structures,) for structures packed side by side (``segment``: the structure
    of each atom and their number, see
    :func:`~parafit.engines.reaxff.bonded.bonded_energies`)."""
    bonded, bo = bonded_energies(
        tables.bonded, model.static, types, positions, top, segment
    )
    nonbonded = nonbonded_energies(
        tables.nonbonded, types, positions, pairs, charges, segment
    )
    terms = {**bonded, **nonbonded}
    overflow = list_overflow(bo, top, segment) | far_bond_overflow(
        tables.bonded, types, positions, top, segment
    )
    return {k: terms[k] for k in TERMS}, overflow


def structure_energy(
    model: ReaxFFModel,
    tables: Tables,
    types: jax.Array,
    positions: jax.Array,
    top: Topology,
    pairs: PairList,
    total_charge: jax.Array | float = 0.0,
    *,
    solve_charges: bool = True,
) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    """Energy terms [kcal/mol], charges (n_atoms,) [e] and list overflow of one structure.

    ``solve_charges=False`` sets every charge to 0, which is exact for a neutral
    structure of a single atom type (see :func:`needs_charges`).

    The charges are solved for these positions with their geometry gradient stopped
    (positions and lattice shifts), so ``-grad`` of the total with respect to positions
    is LAMMPS's force and its strain derivative LAMMPS's virial.
    """
    if solve_charges:
        q = eem_charges(
            tables.nonbonded,
            types,
            positions,
            jax.lax.stop_gradient(pairs),
            total_charge,
            atom_mask=top.atom_mask,
        )
    else:
        q = jnp.zeros(positions.shape[0], positions.dtype)
    terms, overflow = structure_terms(model, tables, types, positions, top, pairs, q)
    return terms, q, overflow


def needs_charges(types: np.ndarray, total_charge: float) -> bool:
    """Whether a structure's EEM charges can differ from 0: more than one atom type
    or a net charge (with one type and no net charge, symmetry makes every charge 0
    for any parameter values)."""
    return bool(np.unique(np.asarray(types)).size > 1 or total_charge != 0.0)


def deform_lists(
    top: Topology, pairs: PairList, deformation: jax.Array
) -> tuple[Topology, PairList]:
    """The lists of a cell deformed by ``deformation`` (3, 3): every lattice shift
    ``s`` becomes ``s @ deformation.T`` (as positions ``x @ deformation.T``)."""
    d = jnp.asarray(deformation).T
    return (
        replace(
            top,
            bond_shift=top.bond_shift @ d,
            hbond_shift=top.hbond_shift @ d,
            far_shift=top.far_shift @ d,
        ),
        replace(pairs, shift=pairs.shift @ d),
    )


def stress_voigt(d_energy_d_strain: jax.Array, cell: jax.Array) -> jax.Array:
    """(6,) Voigt stress (xx, yy, zz, yz, xz, xy) [energy/Å³] from ∂E/∂D (3, 3) at
    D = I, where positions and lattice shifts move as ``x @ D.T`` (ASE's sign)."""
    g = 0.5 * (d_energy_d_strain + d_energy_d_strain.T)
    v = jnp.abs(jnp.linalg.det(cell))
    return jnp.stack([g[0, 0], g[1, 1], g[2, 2], g[1, 2], g[0, 2], g[0, 1]]) / v


def total_energy(terms: dict[str, jax.Array]) -> jax.Array:
    """Sum of the terms of :func:`structure_energy` [kcal/mol]."""
    return sum((terms[k] for k in TERMS), start=jnp.zeros(()))


#: Bond candidates whose uncorrected bond order BO' is below this fraction of
#: ``bo_cut`` when the lists are built are only checked (far candidates): below
#: ``bo_cut`` they are no bonds, and the margin keeps parameter vectors near the
#: ones the lists were built for from flagging them.
NEAR_FRACTION = 1e-3


@dataclass(frozen=True)
class StructureLists:
    """Unpadded inputs of :func:`structure_energy` for one geometry."""

    types: np.ndarray
    topology: Topology
    pairs: PairList
    bonds: tuple[np.ndarray, np.ndarray, np.ndarray]


def structure_lists(
    model: ReaxFFModel,
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc: np.ndarray | None,
    types: np.ndarray,
    *,
    tables: Sequence[Tables] = (),
    skin: float = 0.0,
    margin: float = 0.1,
    also_at: Sequence[np.ndarray] = (),
    split_far: bool | None = None,
) -> StructureLists:
    """Interaction lists of one geometry, good for every parameter set in ``tables``.

    A bond gets angles, torsions and H-bonds when its bond order exceeds
    ``margin * 0.001`` for any of ``tables`` (the model's base values if empty), so
    parameter vectors near those stay within the lists. Pairs within the bond cutoff
    whose uncorrected bond order stays below ``NEAR_FRACTION * bo_cut`` are *far*
    candidates when ``split_far`` (default: for geometries that do not move, ``skin``
    0): not carried through the bond orders but checked (single points, see
    :class:`~parafit.engines.reaxff.bonded.Topology`) or watched (the engine's
    relaxations, which add the ones that come near at every step). ``skin`` [Å] is
    added to every cutoff for geometries that will move. ``also_at``: further
    geometries (n_atoms, 3) of the same atoms, each within ``skin / 2`` of
    ``positions``, at which a bond order above the threshold also lists a bond (e.g.
    where an earlier relaxation went).
    """
    from parafit.engines.reaxff.bonded import THB_CUT
    from parafit.engines.reaxff.nonbonded import make_pair_list

    periodic = pbc is not None and bool(np.any(pbc))
    cell = np.asarray(cell, float) if periodic else None
    pbc = np.asarray(pbc, bool) if periodic else None
    bonds = bond_candidates(positions, cell, pbc, skin)
    bare = build_topology(
        positions,
        cell,
        pbc,
        types,
        model.hbond_role,
        listed=np.zeros(bonds[0].size, bool),
        bonds=bonds,
        skin=skin,
    )
    types = np.asarray(types)
    i, j, image = bonds
    shift = image @ (np.zeros((3, 3)) if cell is None else cell)
    # bonds of types without angle/torsion/H-bond parameters have nothing to list
    trivially_listed = ~(model.type_in_lists[types[i]] | model.type_in_lists[types[j]])
    listed = np.zeros(i.size, bool)
    if split_far is None:
        split_far = skin == 0
    near = np.full(i.size, not split_far)
    for t in tables or (model.base_tables(),):
        for where in (positions, *also_at):
            where = np.asarray(where, float)
            listed |= model.bond_orders(t, types, where, bare) > margin * THB_CUT
            if not split_far:
                continue
            r = np.linalg.norm(where[j] + shift - where[i], axis=1)
            raw, bo_cut = model.uncorrected_bond_orders(
                t, np.maximum(r, 0.1), types[i], types[j]
            )
            near |= raw >= NEAR_FRACTION * bo_cut
    near |= listed
    far = ~near
    bonds = (i[near], j[near], image[near])
    top = build_topology(
        positions,
        cell,
        pbc,
        types,
        model.hbond_role,
        listed=(listed | trivially_listed)[near],
        bonds=bonds,
        skin=skin,
        rules=model.list_rules,
        far=(i[far], j[far], image[far]),
    )
    pairs = make_pair_list(positions, cell, pbc, model.r_cut + skin)
    return StructureLists(
        types=np.asarray(types, np.int32), topology=top, pairs=pairs, bonds=bonds
    )
