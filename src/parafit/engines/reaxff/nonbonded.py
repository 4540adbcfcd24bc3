"""ReaxFF non-bonded terms in JAX: tapered shielded van der Waals with inner wall,
tapered shielded Coulomb, EEM/QEq charges and the charge self-energy.

Pure functions of (force-field arrays, positions, static pair lists), written for one
structure and one parameter set; batch with ``jax.vmap``. Energies in kcal/mol,
distances in Å, charges in e. Conventions follow LAMMPS ``src/REAXFF``
(``reaxff_nonbonded.cpp::vdW_Coulomb_Energy``, ``fix_qeq_reaxff.cpp``,
``reaxff_ffield.cpp`` mixing rules) as described in parafit's notes
(``shared/design/notes/reaxff.md`` §2.8-2.11):

- all pairs within the upper taper radius R_cut (general #13) count, bonded ones
  too; no Ewald sum under periodic boundaries (every image within R_cut counts);
- ``Tap(x) = 20x^7 - 70x^6 + 84x^5 - 35x^4 + 1``, ``x = r/R_cut`` (lower radius 0);
- vdW: ``f13 = (r^p_vdW1 + gamma_w^-p_vdW1)^(1/p_vdW1)`` (shielding when any atom has
  gamma_w > 0.5), ``E = D (e^{a(1 - f13/r_vdW)} - 2 e^{a(1 - f13/r_vdW)/2})`` plus the
  inner wall ``ecore e^{acore(1 - r/rcore)}`` (when any atom has rcore, acore > 0.01);
- Coulomb: ``E = C q_i q_j Tap / (r^3 + (gamma_i gamma_j)^-3/2)^(1/3)`` with
  ``C = 332.06371`` kcal Å/(mol e²) (LAMMPS's constant);
- charges minimise ``sum chi q + 1/2 q'Hq`` at zero total charge with
  ``H_ij = 14.4 Tap / (r^3 + gamma_ij^-3)^(1/3)`` eV and ``H_ii = 2 eta`` (LAMMPS
  ``fix qeq/reaxff``; 14.4 eV Å/e² is LAMMPS's constant); solved exactly (dense), and
  the energy is not differentiated through the solve (as LAMMPS, whose forces omit
  ``dE/dq dq/dx``);
- charge self-energy ``23.02 sum(chi q + eta q^2)`` kcal/mol.
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from parafit.engines.reaxff.bonded import Segments, segment_total

__all__ = [
    "C_ELE",
    "EV_TO_KCAL",
    "QEQ_EV",
    "PairList",
    "TypeTables",
    "eem_charges",
    "make_pair_list",
    "molecule_eem_charges",
    "pad_pair_list",
    "nonbonded_energies",
    "taper",
    "type_tables",
]

#: Coulomb constant of LAMMPS ReaxFF [kcal Å/(mol e²)].
C_ELE = 332.06371
#: Coulomb constant inside LAMMPS's QEq matrix [eV Å/e²].
QEQ_EV = 14.4
#: eV -> kcal/mol factor LAMMPS uses for the charge self-energy.
EV_TO_KCAL = 23.02

# atom-block columns (0-based; position - 1)
_R_VDW, _EPS, _GAMMA = 3, 4, 5
_ALPHA, _GAMMA_W, _CHI, _ETA = 8, 9, 13, 14
_RCORE, _ECORE, _ACORE = 29, 30, 31
# general-block positions (0-based)
_SWB, _PVDW1 = 12, 28


def taper(r: jax.Array, r_cut: jax.Array) -> jax.Array:
    """7th-order taper, 1 at r = 0 and 0 with 3 zero derivatives at ``r_cut``."""
    x = r / r_cut
    x4 = x**4
    return 1.0 + x4 * (-35.0 + x * (84.0 + x * (-70.0 + 20.0 * x)))


@dataclass(frozen=True)
class TypeTables:
    """(n_types, n_types) pair parameters mixed as LAMMPS does, plus per-type ones.

    Attributes:
        d, r_vdw, alpha, gamma_w, rcore, ecore, acore, gamma3: pair tables
            (gamma3 = (gamma_i gamma_j)^-3/2 [Å^3]).
        chi, eta: (n_types,) EEM electronegativity and hardness [eV].
        r_cut: upper taper radius [Å]; p_vdw1: shielding exponent.
        is_shielded, has_inner_wall: which vdW form (decided from all atom types).
    """

    d: jax.Array
    r_vdw: jax.Array
    alpha: jax.Array
    gamma_w: jax.Array
    rcore: jax.Array
    ecore: jax.Array
    acore: jax.Array
    gamma3: jax.Array
    chi: jax.Array
    eta: jax.Array
    r_cut: jax.Array
    p_vdw1: jax.Array
    is_shielded: bool
    has_inner_wall: bool


jax.tree_util.register_dataclass(
    TypeTables,
    data_fields=[
        "d",
        "r_vdw",
        "alpha",
        "gamma_w",
        "rcore",
        "ecore",
        "acore",
        "gamma3",
        "chi",
        "eta",
        "r_cut",
        "p_vdw1",
    ],
    meta_fields=["is_shielded", "has_inner_wall"],
)


def type_tables(
    general: jax.Array,
    atom_params: jax.Array,
    offdiag_pairs: np.ndarray,
    offdiag_params: jax.Array,
    *,
    is_shielded: bool,
    has_inner_wall: bool,
) -> TypeTables:
    """Mix atom parameters into pair tables; off-diagonal values > 0 override
    D (pos 1), r_vdW (pos 2, stored doubled) and alpha (pos 3).

    Args:
        general: (n_general,) general parameters.
        atom_params: (n_types, 32) atom parameters.
        offdiag_pairs: (n_offdiag, 2) int, 0-based type indices (static).
        offdiag_params: (n_offdiag, 6) off-diagonal parameters.
        is_shielded, has_inner_wall: vdW form (static; see :func:`vdw_form`).
    """
    a = atom_params
    n = a.shape[0]

    def geo(col: int) -> jax.Array:
        """sqrt(v_i v_j), 0 where the product is <= 0 (gradient-safe at 0)."""
        v = a[:, col]
        prod = v[:, None] * v[None, :]
        positive = prod > 0
        return jnp.where(positive, jnp.sqrt(jnp.where(positive, prod, 1.0)), 0.0)

    d = geo(_EPS)
    r_vdw = 2.0 * geo(_R_VDW)
    alpha = geo(_ALPHA)
    valid = np.asarray(offdiag_pairs).reshape(-1, 2)
    keep = (valid < n).all(axis=1)
    for k in np.flatnonzero(keep):
        i, j = int(valid[k, 0]), int(valid[k, 1])
        for table_name, col, scale in (
            ("d", 0, 1.0),
            ("r_vdw", 1, 2.0),
            ("alpha", 2, 1.0),
        ):
            value = offdiag_params[k, col]
            table = {"d": d, "r_vdw": r_vdw, "alpha": alpha}[table_name]
            new = jnp.where(value > 0, scale * value, table[i, j])
            table = table.at[i, j].set(new).at[j, i].set(new)
            if table_name == "d":
                d = table
            elif table_name == "r_vdw":
                r_vdw = table
            else:
                alpha = table
    g = a[:, _GAMMA]
    return TypeTables(
        d=d,
        r_vdw=r_vdw,
        alpha=alpha,
        gamma_w=geo(_GAMMA_W),
        rcore=geo(_RCORE),
        ecore=geo(_ECORE),
        acore=geo(_ACORE),
        gamma3=(g[:, None] * g[None, :]) ** -1.5,
        chi=a[:, _CHI],
        eta=a[:, _ETA],
        r_cut=general[_SWB],
        p_vdw1=general[_PVDW1],
        is_shielded=is_shielded,
        has_inner_wall=has_inner_wall,
    )


def vdw_form(atom_params: np.ndarray) -> tuple[bool, bool]:
    """(shielding, inner wall) as LAMMPS decides them from the atom block."""
    a = np.asarray(atom_params)
    shielded = bool((a[:, _GAMMA_W] > 0.5).any())
    wall = bool(((a[:, _RCORE] > 0.01) & (a[:, _ACORE] > 0.01)).any())
    return shielded, wall


@dataclass(frozen=True)
class PairList:
    """All (i, j, image) pairs of one structure that may fall within the cutoff.

    Attributes:
        i, j: (n_pairs,) atom indices (i < j for the same image; any order across
            images, each unordered pair once).
        shift: (n_pairs, 3) lattice translation added to r_j [Å].
        weight: (n_pairs,) 1 for real pairs, 0 for padding (each unordered pair and
            image once; an atom and its own image m stand for m and -m).
    """

    i: np.ndarray
    j: np.ndarray
    shift: np.ndarray
    weight: np.ndarray


jax.tree_util.register_dataclass(
    PairList, data_fields=["i", "j", "shift", "weight"], meta_fields=[]
)


def pad_pair_list(pairs: PairList, n: int) -> PairList:
    """Pad to ``n`` pairs with weight-0 entries far beyond any cutoff."""
    extra = n - pairs.i.size
    if extra < 0:
        raise ValueError(f"pair list of {pairs.i.size} does not fit in {n}")
    far = np.zeros((extra, 3))
    far[:, 0] = 1.0e3
    return PairList(
        i=np.concatenate([pairs.i, np.zeros(extra, np.int32)]),
        j=np.concatenate([pairs.j, np.zeros(extra, np.int32)]),
        shift=np.concatenate([pairs.shift, far]),
        weight=np.concatenate([pairs.weight, np.zeros(extra)]),
    )


def make_pair_list(
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc: np.ndarray | None,
    cutoff: float,
) -> PairList:
    """Pairs within ``cutoff`` (+ a margin for the positions moving during a
    relaxation is the caller's business), every periodic image included.

    Args:
        positions: (n_atoms, 3) [Å].
        cell: (3, 3) lattice vectors as rows [Å], or None.
        pbc: (3,) periodic directions, or None.
        cutoff: pair cutoff [Å].
    """
    from parafit.engines.reaxff.topology import pairs_within

    i, j, image = pairs_within(positions, cell, pbc, cutoff)
    lattice = np.zeros((3, 3)) if cell is None else np.asarray(cell, float)
    return PairList(
        i=i,
        j=j,
        shift=(image @ lattice).astype(float),
        weight=np.ones(i.size),
    )


def _pair_distances(positions: jax.Array, pairs: PairList) -> jax.Array:
    d = positions[pairs.j] + pairs.shift - positions[pairs.i]
    sq = jnp.sum(d * d, axis=1)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


def _coupling(tables: TypeTables, r: jax.Array, gamma3: jax.Array) -> jax.Array:
    """Shielded Coulomb coupling [eV/e²] of the EEM matrix at distances r [Å] (0
    beyond ``r_cut``)."""
    return jnp.where(
        r <= tables.r_cut,
        QEQ_EV * taper(r, tables.r_cut) / jnp.cbrt(r**3 + gamma3),
        0.0,
    )


def _eem_couplings(
    tables: TypeTables, types: jax.Array, positions: jax.Array, pairs: PairList
) -> jax.Array:
    """(n_pairs,) couplings (:func:`_coupling`) of a pair list, weighted."""
    r = _pair_distances(positions, pairs)
    gamma3 = tables.gamma3[types[pairs.i], types[pairs.j]]
    return pairs.weight * _coupling(tables, r, gamma3)


def _eem_solve(
    tables: TypeTables,
    types: jax.Array,
    mat: jax.Array,
    mask: jax.Array,
    total_charge: float | jax.Array,
) -> jax.Array:
    """Charges (n,) of one structure from its coupling matrix (n, n)."""
    mat = jnp.where(mask[:, None] & mask[None, :], mat, 0.0)
    mat = mat + jnp.diag(jnp.where(mask, 2.0 * tables.eta[types], 1.0))
    chi = jnp.where(mask, tables.chi[types], 0.0)
    ones = mask.astype(mat.dtype)
    border = jnp.block([[mat, ones[:, None]], [ones[None, :], jnp.zeros((1, 1))]])
    rhs = jnp.concatenate(
        [-chi, jnp.reshape(jnp.asarray(total_charge, mat.dtype), (1,))]
    )
    return jnp.linalg.solve(border, rhs)[: mat.shape[0]]


def eem_charges(
    tables: TypeTables,
    types: jax.Array,
    positions: jax.Array,
    pairs: PairList,
    total_charge: float | jax.Array = 0.0,
    atom_mask: jax.Array | None = None,
    *,
    stop_position_gradient: bool = True,
) -> jax.Array:
    """(n_atoms,) EEM/QEq charges [e] (dense exact solve).

    By default the positions' gradient is stopped (LAMMPS's forces omit
    dE/dq dq/dx); the parameters' never is, so parameter gradients are exact. Atoms
    outside ``atom_mask`` (padding) get charge 0.
    """
    n = positions.shape[0]
    if stop_position_gradient:
        positions = jax.lax.stop_gradient(positions)
    mask = jnp.ones(n, dtype=bool) if atom_mask is None else atom_mask
    h = _eem_couplings(tables, types, positions, pairs)
    mat = jnp.zeros((n, n)).at[pairs.i, pairs.j].add(h).at[pairs.j, pairs.i].add(h)
    return _eem_solve(tables, types, mat, mask, total_charge)


def molecule_eem_charges(
    tables: TypeTables,
    types: jax.Array,
    positions: jax.Array,
    total_charge: jax.Array,
    atom_mask: jax.Array,
) -> jax.Array:
    """:func:`eem_charges` of molecules (no cell) from their dense coupling matrices:
    every pair of atoms within ``r_cut`` couples, as in the pair lists of a molecule,
    so no list is needed (and no gather or scatter, slow on a CPU).

    Args:
        types: (n_structures, n_atoms) int; positions (n_structures, n_atoms, 3)
            [Å]; atom_mask (n_structures, n_atoms) (padding atoms get charge 0).
        total_charge: (n_structures,) [e].

    Returns:
        (n_structures, n_atoms) charges [e] (positions' gradient stopped).
    """
    x = jax.lax.stop_gradient(positions)
    d = x[:, None, :, :] - x[:, :, None, :]
    sq = jnp.sum(d * d, axis=-1)
    n = types.shape[1]
    pair = (
        ~jnp.eye(n, dtype=bool)[None]
        & atom_mask[:, :, None]
        & atom_mask[:, None, :]
        & (sq > 0)
    )
    r = jnp.sqrt(jnp.where(pair, sq, 1.0))
    gamma3 = tables.gamma3[types[:, :, None], types[:, None, :]]
    h = jnp.where(pair, _coupling(tables, r, gamma3), 0.0)
    return jax.vmap(lambda m, t, mask, total: _eem_solve(tables, t, m, mask, total))(
        h, types, atom_mask, total_charge
    )


def nonbonded_energies(
    tables: TypeTables,
    types: jax.Array,
    positions: jax.Array,
    pairs: PairList,
    charges: jax.Array,
    segment: Segments | None = None,
) -> dict[str, jax.Array]:
    """``E_vdw``, ``E_coul`` and ``E_charge`` [kcal/mol] of one structure (of each
    packed structure, (n_structures,), with ``segment``, see
    :func:`~parafit.engines.reaxff.bonded.bonded_energies`).

    Args:
        tables: mixed parameters (:func:`type_tables`).
        types: (n_atoms,) int type index of each atom.
        positions: (n_atoms, 3) [Å].
        pairs: pair list (:func:`make_pair_list`).
        charges: (n_atoms,) [e].
    """
    r = _pair_distances(positions, pairs)
    ti, tj = types[pairs.i], types[pairs.j]
    in_range = (r <= tables.r_cut) & (pairs.weight > 0)
    r = jnp.where(in_range, r, tables.r_cut)
    tap = jnp.where(in_range, taper(r, tables.r_cut), 0.0) * pairs.weight
    d, r_vdw, alpha = tables.d[ti, tj], tables.r_vdw[ti, tj], tables.alpha[ti, tj]
    if tables.is_shielded:
        p = tables.p_vdw1
        f13 = (r**p + (1.0 / tables.gamma_w[ti, tj]) ** p) ** (1.0 / p)
    else:
        f13 = r
    x = alpha * (1.0 - f13 / r_vdw)
    e_vdw = d * (jnp.exp(x) - 2.0 * jnp.exp(0.5 * x))
    if tables.has_inner_wall:
        rcore = tables.rcore[ti, tj]
        safe = jnp.where(rcore > 0, rcore, 1.0)
        e_vdw = e_vdw + jnp.where(
            rcore > 0,
            tables.ecore[ti, tj] * jnp.exp(tables.acore[ti, tj] * (1.0 - r / safe)),
            0.0,
        )
    e_coul = (
        C_ELE
        * charges[pairs.i]
        * charges[pairs.j]
        / jnp.cbrt(r**3 + tables.gamma3[ti, tj])
    )
    q = charges
    atoms = jnp.arange(positions.shape[0])
    return {
        "E_vdw": segment_total(tap * e_vdw, pairs.i, segment),
        "E_coul": segment_total(tap * e_coul, pairs.i, segment),
        "E_charge": EV_TO_KCAL
        * segment_total(
            tables.chi[types] * q + tables.eta[types] * q * q, atoms, segment
        ),
    }
