"""ReaxFF bond orders and bonded terms in JAX.

Pure functions of (mixed force-field tables, positions, static interaction lists) for
one structure and one parameter set; batch with ``jax.vmap``. Energies in kcal/mol,
distances in Å. The conventions are LAMMPS's ``src/REAXFF`` (``reaxff_bond_orders.cpp``
``BOp``/``BO``, ``reaxff_bonds.cpp``, ``reaxff_multi_body.cpp``,
``reaxff_valence_angles.cpp``, ``reaxff_torsion_angles.cpp``,
``reaxff_hydrogen_bonds.cpp``) as described in parafit's notes
(``shared/design/notes/reaxff.md`` §2.1-2.7):

- uncorrected bond orders BO' of every pair within 5 Å; BO'_sigma is scaled by
  ``1 + bo_cut`` and a pair is a bond only if BO' >= bo_cut, after which bo_cut is
  subtracted from BO' and BO'_sigma (``bo_cut = 0.01 * general #30``);
- corrections f1 (over-coordination, bond's ``ovc >= 0.001``) and f4 f5 (1-3,
  ``v13cor >= 0.001``); BO, BO_pi, BO_pipi below 1e-10 are 0;
- lone pairs with ``int()`` truncation (zero derivative), the over/under-coordination
  with the mass > 21 rule, C2 correction for atoms named ``C``;
- valence angle, penalty and coalition for angles whose bonds have BO > 0.001 and
  BO_ij BO_jk > 1e-5, with ``BOA = BO - 0.001``, only for entries with
  ``|p_val1| > 0.001``, degrees converted with pi = 3.14159265;
- torsion and 4-body conjugation (original form, not the 2013 one) for BO_ij, BO_jk,
  BO_kl > 0.001 and BO_ij BO_jk BO_kl > 0.001; wildcard ``0-j-k-0`` entries fill the
  quadruples with no explicit entry;
- hydrogen bonds X-H...Z for BO_XH >= 0.01, r_HZ <= 7.5 Å, Z not the atom X (any
  image), no taper;
- triple-bond stabilisation for C-O pairs recognised by mass (12.0000, 15.9990) or for
  every bond when general #38 is 2.

The interaction lists (:class:`Topology`) are built on the host from geometry
(:mod:`parafit.engines.reaxff.topology`); which list entries are active is decided here
from the bond orders of the parameters being evaluated, so lists never go stale with
parameter changes as long as they are a superset (see :func:`list_overflow`).
"""

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from parafit.io.ffield import ForceField

__all__ = [
    "BOND_CUTOFF",
    "HBOND_CUTOFF",
    "THB_CUT",
    "BondOrders",
    "BondedStatic",
    "BondedTables",
    "Topology",
    "bond_orders",
    "bonded_energies",
    "bonded_static",
    "bond_order_cutoff",
    "bonded_tables",
    "far_bond_overflow",
    "list_overflow",
    "pairs_are_bonds",
    "segment_any",
    "segment_total",
    "uncorrected_bond_orders",
]

#: Pair distance beyond which nothing is a bond [Å] (LAMMPS ``nbrhood_cutoff``).
BOND_CUTOFF = 5.0
#: H...Z distance cutoff of hydrogen bonds [Å] (LAMMPS ``hbond_cutoff``).
HBOND_CUTOFF = 7.5
#: Bond-order threshold of angles and torsions (LAMMPS ``thb_cut``).
THB_CUT = 0.001
THB_CUTSQ = 1e-5
HB_THRESHOLD = 0.01
_PI = 3.14159265  # LAMMPS constPI, used to convert degrees
_MIN_SINE = 1e-10

# general block (0-based)
_BOC1, _BOC2, _COA2, _TRIP4, _TRIP3, _KC2, _OVUN6, _TRIP2 = 0, 1, 2, 3, 4, 5, 6, 7
_OVUN7, _OVUN8, _TRIP1, _VAL6, _LP1, _VAL9, _VAL10 = 8, 9, 10, 14, 15, 16, 17
_PEN2, _PEN3, _PEN4, _TOR2, _TOR3, _TOR4, _COT2 = 19, 20, 21, 23, 24, 25, 27
_BOCUT, _COA4, _OVUN4, _OVUN3, _VAL8, _TRIPFLAG, _COA3 = 29, 30, 31, 32, 33, 37, 38
# atom block (0-based column = position - 1)
_RS, _VAL, _MASS, _RPI, _VALE, _VALBOC, _OVUN5 = 0, 1, 2, 6, 7, 10, 11
_HBOND, _RPP, _LP2, _BOC4, _BOC3, _BOC5 = 15, 16, 17, 19, 20, 21
_OVUN2, _VAL3, _VALVAL, _VAL5 = 24, 25, 27, 28
# bond block
_DES, _DEP, _DEPP, _BE1, _BO5, _V13, _BO6, _OVUN1 = 0, 1, 2, 3, 4, 5, 6, 7
_BE2, _BO3, _BO4, _BO1, _BO2, _OVC = 8, 9, 10, 12, 13, 14


#: Packed structures: (structure index of each atom (n_atoms,) int, n_structures).
Segments = tuple[jax.Array, int]


def _safe_pow(x: jax.Array, p: jax.Array) -> jax.Array:
    """x**p for x > 0, 0 otherwise, with finite gradients everywhere."""
    pos = x > 0
    return jnp.where(pos, jnp.where(pos, x, 1.0) ** p, 0.0)


def _safe_div(a: jax.Array, b: jax.Array) -> jax.Array:
    ok = b != 0
    return jnp.where(ok, a / jnp.where(ok, b, 1.0), 0.0)


def _norm(v: jax.Array) -> jax.Array:
    """Row norms with a finite gradient at 0."""
    sq = jnp.sum(v * v, axis=-1)
    pos = sq > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)


@dataclass(frozen=True)
class BondedStatic:
    """Host-side facts of a force field that decide table layout and discrete rules.

    Attributes:
        n_types: number of atom types.
        bond_index: (n_types, n_types) int, row of the bond block for each pair, -1 if none.
        offdiag_index: (n_types, n_types) int, row of the off-diagonal block, -1 if none.
        angle_index: (n_slots, n_types, n_types, n_types) int, angle-block rows (LAMMPS
            allows several entries per triple; each slot is one), -1 if none.
        torsion_index: (n_types,)*4 int, torsion-block row after wildcard filling, -1 if none.
        hbond_index: (n_types,)*3 int, H-bond-block row (X, H, Z), -1 if none.
        is_heavy: (n_types,) mass > 21 (no lone-pair terms in over-coordination).
        is_light: (n_types,) mass < 21 (Val_val is replaced by Val_boc).
        is_carbon: (n_types,) symbol ``C`` (C2 correction).
        triple_pair: (n_types, n_types) C-O pair by mass (triple-bond stabilisation).
        hbond_role: (n_types,) int p_hbond (1 hydrogen, 2 donor/acceptor, 0 none).
    """

    n_types: int
    bond_index: np.ndarray
    offdiag_index: np.ndarray
    angle_index: np.ndarray
    torsion_index: np.ndarray
    hbond_index: np.ndarray
    is_heavy: np.ndarray
    is_light: np.ndarray
    is_carbon: np.ndarray
    triple_pair: np.ndarray
    hbond_role: np.ndarray


def bonded_static(ff: ForceField) -> BondedStatic:
    """Index tables and discrete per-type rules of ``ff`` (masses, symbols, p_hbond)."""
    n = len(ff.atom_symbols)

    def pair_index(pairs: np.ndarray) -> np.ndarray:
        idx = np.full((n, n), -1, dtype=np.int32)
        for row, (i, j) in enumerate(np.asarray(pairs, dtype=int).reshape(-1, 2)):
            if i < n and j < n:
                idx[i, j] = idx[j, i] = row
        return idx

    slots: dict[tuple[int, int, int], int] = {}
    entries: list[tuple[int, int, int, int, int]] = []
    for row, (i, j, k) in enumerate(np.asarray(ff.angle_triples, dtype=int)):
        if max(i, j, k) >= n or min(i, j, k) < 0:
            continue
        key = (min(i, k), j, max(i, k))
        s = slots.get(key, 0)
        slots[key] = s + 1
        entries.append((s, i, j, k, row))
    n_slots = max(slots.values(), default=1)
    angle_index = np.full((n_slots, n, n, n), -1, dtype=np.int32)
    for s, i, j, k, row in entries:
        angle_index[s, i, j, k] = angle_index[s, k, j, i] = row

    torsion_index = np.full((n, n, n, n), -1, dtype=np.int32)
    explicit = np.zeros((n, n, n, n), dtype=bool)
    for row, (i, j, k, m) in enumerate(np.asarray(ff.torsion_quads, dtype=int)):
        if i >= 0 and m >= 0:
            if max(i, j, k, m) < n:
                torsion_index[i, j, k, m] = torsion_index[m, k, j, i] = row
                explicit[i, j, k, m] = explicit[m, k, j, i] = True
        elif 0 <= j < n and 0 <= k < n:
            free = ~explicit[:, j, k, :]
            torsion_index[:, j, k, :] = np.where(free, row, torsion_index[:, j, k, :])
            free = ~explicit[:, k, j, :]
            torsion_index[:, k, j, :] = np.where(free, row, torsion_index[:, k, j, :])

    hbond_index = np.full((n, n, n), -1, dtype=np.int32)
    for row, (i, j, k) in enumerate(np.asarray(ff.hbond_triples, dtype=int)):
        if max(i, j, k) < n and min(i, j, k) >= 0:
            hbond_index[i, j, k] = row

    a = np.asarray(ff.atom_params)
    mass = a[:, _MASS]
    carbon = mass == 12.0
    oxygen = mass == 15.999
    return BondedStatic(
        n_types=n,
        bond_index=pair_index(ff.bond_pairs),
        offdiag_index=pair_index(ff.offdiag_pairs),
        angle_index=angle_index,
        torsion_index=torsion_index,
        hbond_index=hbond_index,
        is_heavy=mass > 21.0,
        is_light=mass < 21.0,
        is_carbon=np.array([s.strip().upper() == "C" for s in ff.atom_symbols]),
        triple_pair=(carbon[:, None] & oxygen[None, :])
        | (oxygen[:, None] & carbon[None, :]),
        hbond_role=np.rint(a[:, _HBOND]).astype(int),
    )


@dataclass(frozen=True)
class BondedTables:
    """Per-type, pair, triple and quadruple parameters (traced arrays).

    Attributes:
        general: (n_general,) general parameters.
        atom: (n_types, 32) atom parameters, Val_val replaced by Val_boc for mass < 21.
        log_r_s, log_r_p, log_r_pp: (n_types, n_types) log of the pair radii [Å] (mean,
            or off-diagonal > 0); 0 where the component is off.
        sw_s, sw_p, sw_pp: (n_types, n_types) bool, both atom radii > 0 (component on).
        bond: (n_types, n_types, 16) bond-block rows (0 where the pair has none).
        p_boc3, p_boc4, p_boc5: (n_types, n_types) geometric means of the atom values.
        angle: (n_slots, n_types, n_types, n_types, 7) angle rows (0 where none).
        torsion: (n_types,)*4 + (7,) torsion rows (0 where none); has_torsion mask.
        hbond: (n_types,)*3 + (4,) H-bond rows; has_hbond mask (r0_hb > 0).
    """

    general: jax.Array
    atom: jax.Array
    log_r_s: jax.Array
    log_r_p: jax.Array
    log_r_pp: jax.Array
    sw_s: jax.Array
    sw_p: jax.Array
    sw_pp: jax.Array
    bond: jax.Array
    p_boc3: jax.Array
    p_boc4: jax.Array
    p_boc5: jax.Array
    angle: jax.Array
    torsion: jax.Array
    has_torsion: jax.Array
    hbond: jax.Array
    has_hbond: jax.Array


jax.tree_util.register_dataclass(
    BondedTables,
    data_fields=[
        "general",
        "atom",
        "log_r_s",
        "log_r_p",
        "log_r_pp",
        "sw_s",
        "sw_p",
        "sw_pp",
        "bond",
        "p_boc3",
        "p_boc4",
        "p_boc5",
        "angle",
        "torsion",
        "has_torsion",
        "hbond",
        "has_hbond",
    ],
    meta_fields=[],
)


def _gather_rows(params: jax.Array, index: np.ndarray) -> jax.Array:
    """params[index] with zeros where index is -1; shape index.shape + (n_cols,)."""
    params = jnp.asarray(params)
    padded = jnp.concatenate([params, jnp.zeros((1, params.shape[1]))], axis=0)
    idx = np.where(index < 0, params.shape[0], index)
    return padded[idx]


def bonded_tables(
    static: BondedStatic,
    general: jax.Array,
    atom_params: jax.Array,
    bond_params: jax.Array,
    offdiag_params: jax.Array,
    angle_params: jax.Array,
    torsion_params: jax.Array,
    hbond_params: jax.Array,
) -> BondedTables:
    """Mix force-field blocks into the tables the bonded terms read (differentiable)."""
    a = jnp.asarray(atom_params)
    a = a.at[:, _VALVAL].set(jnp.where(static.is_light, a[:, _VALBOC], a[:, _VALVAL]))
    off = _gather_rows(offdiag_params, static.offdiag_index)
    has_off = static.offdiag_index >= 0

    def log_radius(col: int, off_col: int) -> tuple[jax.Array, jax.Array]:
        v = a[:, col]
        mean = 0.5 * (v[:, None] + v[None, :])
        value = off[..., off_col]
        r = jnp.where(has_off & (value > 0), value, mean)
        on = (v[:, None] > 0) & (v[None, :] > 0) & (r > 0)
        return jnp.log(jnp.where(on, r, 1.0)), on

    def geo(col: int) -> jax.Array:
        prod = a[:, col][:, None] * a[:, col][None, :]
        pos = prod > 0
        return jnp.where(pos, jnp.sqrt(jnp.where(pos, prod, 1.0)), 0.0)

    log_r_s, sw_s = log_radius(_RS, 3)
    log_r_p, sw_p = log_radius(_RPI, 4)
    log_r_pp, sw_pp = log_radius(_RPP, 5)
    torsion = _gather_rows(torsion_params, static.torsion_index)
    hbond = _gather_rows(hbond_params, static.hbond_index)
    return BondedTables(
        general=jnp.asarray(general),
        atom=a,
        log_r_s=log_r_s,
        log_r_p=log_r_p,
        log_r_pp=log_r_pp,
        sw_s=sw_s,
        sw_p=sw_p,
        sw_pp=sw_pp,
        bond=_gather_rows(bond_params, static.bond_index),
        p_boc3=geo(_BOC3),
        p_boc4=geo(_BOC4),
        p_boc5=geo(_BOC5),
        angle=_gather_rows(angle_params, static.angle_index),
        torsion=torsion,
        has_torsion=jnp.asarray(static.torsion_index >= 0),
        hbond=hbond,
        has_hbond=jnp.asarray(static.hbond_index >= 0) & (hbond[..., 0] > 0),
    )


@dataclass(frozen=True)
class Topology:
    """Interaction lists of one structure (host-built, padded; see ``topology.py``).

    Bonds are unordered pairs within :data:`BOND_CUTOFF` (+ skin), each once; bond
    ``b`` has the half-bonds ``2b`` (centre ``bond_i``, pointing to ``bond_j``) and
    ``2b + 1`` (centre ``bond_j``, pointing back). The vector of bond ``b`` is
    ``x[bond_j] + bond_shift - x[bond_i]``.

    Attributes:
        atom_mask: (n_atoms,) real (not padding) atoms.
        bond_i, bond_j: (n_bonds,) int; bond_shift (n_bonds, 3) [Å]; bond_mask (n_bonds,).
        angle_h1, angle_h2: (n_angles,) half-bonds sharing their centre (h1 < h2);
            angle_mask (n_angles,).
        torsion_h1: (n_torsions,) half-bond j->i; torsion_bond: central bond j->k
            (j = bond_i); torsion_h3: half-bond k->l; torsion_mask.
        hbond_h: (n_hbonds,) half-bond H->X; hbond_z: acceptor atom; hbond_shift
            (n_hbonds, 3): x_Z = x[hbond_z] + hbond_shift; hbond_mask.
        listed: (n_bonds,) bool, bonds whose angles, torsions and H-bonds are listed
            (a bond with BO > 0.001 outside this set means the lists are too small).
        far_i, far_j: (n_far,) int; far_shift (n_far, 3) [Å]; far_mask (n_far,): the
            *far* candidates, pairs within the bond cutoff whose uncorrected bond
            order was far below ``bo_cut`` when the lists were built. They are no
            bonds (exactly as LAMMPS, which drops pairs with BO' < bo_cut), so they
            are only checked (:func:`far_bond_overflow`), not carried through the bond
            orders and their gradients; one that reaches ``bo_cut`` flags the lists.
    """

    atom_mask: np.ndarray
    bond_i: np.ndarray
    bond_j: np.ndarray
    bond_shift: np.ndarray
    bond_mask: np.ndarray
    angle_h1: np.ndarray
    angle_h2: np.ndarray
    angle_mask: np.ndarray
    torsion_h1: np.ndarray
    torsion_bond: np.ndarray
    torsion_h3: np.ndarray
    torsion_mask: np.ndarray
    hbond_h: np.ndarray
    hbond_z: np.ndarray
    hbond_shift: np.ndarray
    hbond_mask: np.ndarray
    listed: np.ndarray
    far_i: np.ndarray
    far_j: np.ndarray
    far_shift: np.ndarray
    far_mask: np.ndarray


jax.tree_util.register_dataclass(
    Topology,
    data_fields=[
        "atom_mask",
        "bond_i",
        "bond_j",
        "bond_shift",
        "bond_mask",
        "angle_h1",
        "angle_h2",
        "angle_mask",
        "torsion_h1",
        "torsion_bond",
        "torsion_h3",
        "torsion_mask",
        "hbond_h",
        "hbond_z",
        "hbond_shift",
        "hbond_mask",
        "listed",
        "far_i",
        "far_j",
        "far_shift",
        "far_mask",
    ],
    meta_fields=[],
)


@dataclass(frozen=True)
class BondOrders:
    """Corrected bond orders and per-atom quantities of one structure.

    Attributes:
        d: (n_bonds, 3) bond vectors [Å]; r: (n_bonds,) lengths.
        bo, bo_s, bo_pi, bo_pp: (n_bonds,) corrected bond orders (0 for non-bonds).
        total: (n_atoms,) sum of BO; delta, delta_e, delta_boc, delta_val: total - valences.
        vlpex, n_lp, delta_lp, delta_lp_temp: (n_atoms,) lone-pair quantities.
    """

    d: jax.Array
    r: jax.Array
    bo: jax.Array
    bo_s: jax.Array
    bo_pi: jax.Array
    bo_pp: jax.Array
    total: jax.Array
    delta: jax.Array
    delta_e: jax.Array
    delta_boc: jax.Array
    delta_val: jax.Array
    vlpex: jax.Array
    n_lp: jax.Array
    delta_lp: jax.Array
    delta_lp_temp: jax.Array


def _half(values: jax.Array) -> jax.Array:
    """Per-bond values -> per-half-bond values (2b and 2b+1 get bond b's)."""
    return jnp.repeat(values, 2, axis=0)


def _centers(top: Topology) -> tuple[jax.Array, jax.Array]:
    """(centre, other) atom of each half-bond."""
    c = jnp.stack([top.bond_i, top.bond_j], axis=1).reshape(-1)
    o = jnp.stack([top.bond_j, top.bond_i], axis=1).reshape(-1)
    return c, o


def _half_vectors(d: jax.Array) -> jax.Array:
    """(2 n_bonds, 3) vectors from each half-bond's centre to its other atom."""
    return jnp.stack([d, -d], axis=1).reshape(-1, 3)


def _atom_sum(values: jax.Array, centers: jax.Array, n_atoms: int) -> jax.Array:
    return jax.ops.segment_sum(values, centers, num_segments=n_atoms)


def bond_order_cutoff(t: BondedTables) -> jax.Array:
    """``bo_cut`` = 0.01 * general #30: pairs with BO' below it are no bonds."""
    return 0.01 * t.general[_BOCUT]


def _uncorrected(
    t: BondedTables, r: jax.Array, ti: jax.Array, tj: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Uncorrected sigma (scaled by ``1 + bo_cut``), pi and double-pi bond orders of
    pairs at distances r [Å] between atom types ti, tj (each (n_pairs,))."""
    bp = t.bond[ti, tj]
    bo_cut = bond_order_cutoff(t)
    # (r / r0)^p_bo as exp(p_bo (ln r - ln r0)): one log per bond for the three
    # components and no pow in the gradient (the bond list is the largest array)
    log_r = jnp.log(jnp.where(r > 0, r, 1.0))

    def component(
        log_radius: jax.Array, on: jax.Array, pa: jax.Array, pb: jax.Array
    ) -> jax.Array:
        # the exponent is zeroed where the component is off *before* exp, so that a
        # positive p_bo (e.g. p_bo5 sampled in [-1, 1]) cannot overflow there and turn
        # the masked-out gradient into inf * 0 = NaN
        live = on & (r > 0)
        log_ratio = jnp.where(live, log_r - log_radius, 0.0)
        exponent = jnp.where(live, pa * jnp.exp(pb * log_ratio), 0.0)
        return jnp.where(on, jnp.exp(exponent), 0.0)

    s = (1.0 + bo_cut) * component(
        t.log_r_s[ti, tj], t.sw_s[ti, tj], bp[:, _BO1], bp[:, _BO2]
    )
    p = component(t.log_r_p[ti, tj], t.sw_p[ti, tj], bp[:, _BO3], bp[:, _BO4])
    pp = component(t.log_r_pp[ti, tj], t.sw_pp[ti, tj], bp[:, _BO5], bp[:, _BO6])
    return s, p, pp


def uncorrected_bond_orders(
    t: BondedTables, r: jax.Array, ti: jax.Array, tj: jax.Array
) -> jax.Array:
    """(n_pairs,) uncorrected bond orders BO' (sigma scaled by ``1 + bo_cut``, as
    compared with ``bo_cut``) of pairs at distances r [Å] between types ti, tj."""
    s, p, pp = _uncorrected(t, r, ti, tj)
    return s + p + pp


def bond_orders(
    t: BondedTables,
    static: BondedStatic,
    types: jax.Array,
    positions: jax.Array,
    top: Topology,
) -> BondOrders:
    """Uncorrected then corrected bond orders (LAMMPS ``BOp`` then ``BO``)."""
    g = t.general
    n = positions.shape[0]
    d = positions[top.bond_j] + top.bond_shift - positions[top.bond_i]
    r = _norm(d)
    ti, tj = types[top.bond_i], types[top.bond_j]
    bp = t.bond[ti, tj]
    bo_cut = bond_order_cutoff(t)
    s, p, pp = _uncorrected(t, r, ti, tj)
    raw = s + p + pp
    is_bond = top.bond_mask & (r <= BOND_CUTOFF) & (raw >= bo_cut)
    bo0 = jnp.where(is_bond, raw - bo_cut, 0.0)
    pi0 = jnp.where(is_bond, p, 0.0)
    pp0 = jnp.where(is_bond, pp, 0.0)

    atom = t.atom
    val = atom[types, _VAL]
    val_val = atom[types, _VALVAL]
    centers, _ = _centers(top)
    total0 = _atom_sum(_half(bo0), centers, n)
    dp = total0 - val
    dp_boc = total0 - val_val

    p_boc1, p_boc2 = g[_BOC1], g[_BOC2]
    vi, vj = val[top.bond_i], val[top.bond_j]
    # exponentials per atom, gathered per bond (n_atoms << n_bonds)
    exp1, exp2 = jnp.exp(-p_boc1 * dp), jnp.exp(-p_boc2 * dp)
    f2 = exp1[top.bond_i] + exp1[top.bond_j]
    f3 = -1.0 / p_boc2 * jnp.log(0.5 * (exp2[top.bond_i] + exp2[top.bond_j]))
    f1 = 0.5 * ((vi + f2) / (vi + f2 + f3) + (vj + f2) / (vj + f2 + f3))
    f1 = jnp.where(bp[:, _OVC] >= 0.001, f1, 1.0)
    boc3, boc4, boc5 = t.p_boc3[ti, tj], t.p_boc4[ti, tj], t.p_boc5[ti, tj]
    core = boc4 * bo0 * bo0
    f4 = 1.0 / (1.0 + jnp.exp(-(core - dp_boc[top.bond_i]) * boc3 + boc5))
    f5 = 1.0 / (1.0 + jnp.exp(-(core - dp_boc[top.bond_j]) * boc3 + boc5))
    f45 = jnp.where(bp[:, _V13] >= 0.001, f4 * f5, 1.0)
    a0 = f1 * f45
    bo = bo0 * a0
    bo_pi = pi0 * a0 * f1
    bo_pp = pp0 * a0 * f1
    bo_s = bo - (bo_pi + bo_pp)

    def floor(x: jax.Array) -> jax.Array:
        return jnp.where(is_bond & (x >= 1e-10), x, 0.0)

    bo, bo_s, bo_pi, bo_pp = floor(bo), floor(bo_s), floor(bo_pi), floor(bo_pp)

    total = _atom_sum(_half(bo), centers, n)
    delta = total - val
    delta_e = total - atom[types, _VALE]
    half_e = jnp.trunc(delta_e / 2.0)
    vlpex = delta_e - 2.0 * half_e
    n_lp = jnp.exp(-g[_LP1] * (2.0 + vlpex) ** 2) - half_e
    nlp_opt = 0.5 * (atom[types, _VALE] - val)
    delta_lp = nlp_opt - n_lp
    heavy = jnp.asarray(static.is_heavy)[types]
    return BondOrders(
        d=d,
        r=r,
        bo=bo,
        bo_s=bo_s,
        bo_pi=bo_pi,
        bo_pp=bo_pp,
        total=total,
        delta=delta,
        delta_e=delta_e,
        delta_boc=total - atom[types, _VALBOC],
        delta_val=total - val_val,
        vlpex=vlpex,
        n_lp=n_lp,
        delta_lp=delta_lp,
        delta_lp_temp=jnp.where(heavy, 0.0, delta_lp),
    )


def segment_any(
    flags: jax.Array, owners: jax.Array, segment: Segments | None
) -> jax.Array:
    """Whether any of ``flags`` (n,) is true: a () bool, or (n_structures,) with
    ``segment`` (see :func:`segment_total`)."""
    if segment is None:
        return jnp.any(flags)
    of_atom, n_structures = segment
    hits = jax.ops.segment_max(
        flags.astype(jnp.int32), of_atom[owners], num_segments=n_structures
    )
    return hits > 0


def list_overflow(
    b: BondOrders, top: Topology, segment: Segments | None = None
) -> jax.Array:
    """True if a bond outside ``top.listed`` has BO > 0.001 (its angles, torsions and
    H-bonds would be missing: the lists must be rebuilt for these parameters); per
    structure with ``segment``."""
    return segment_any(
        top.bond_mask & ~top.listed & (b.bo > THB_CUT), top.bond_i, segment
    )


def pairs_are_bonds(
    t: BondedTables,
    types: jax.Array,
    positions: jax.Array,
    i: jax.Array,
    j: jax.Array,
    shift: jax.Array,
    mask: jax.Array,
) -> jax.Array:
    """(n,) which of the pairs (i, j) (atom j shifted by ``shift`` [Å], pair used
    where ``mask``) are bonds at ``positions``: within the bond cutoff with an
    uncorrected bond order BO' >= ``bo_cut`` (LAMMPS drops the others). No gradient
    flows through it."""
    t = jax.lax.stop_gradient(t)
    x = jax.lax.stop_gradient(positions)
    d = x[j] + jax.lax.stop_gradient(shift) - x[i]
    r = jnp.sqrt(jnp.sum(d * d, axis=-1))
    raw = uncorrected_bond_orders(t, r, types[i], types[j])
    return mask & (r <= BOND_CUTOFF) & (raw >= bond_order_cutoff(t))


def far_bond_overflow(
    t: BondedTables,
    types: jax.Array,
    positions: jax.Array,
    top: Topology,
    segment: Segments | None = None,
) -> jax.Array:
    """True if a far candidate (see :class:`Topology`) is a bond
    (:func:`pairs_are_bonds`): the lists must be rebuilt for these parameters or
    positions (per structure with ``segment``)."""
    bonds = pairs_are_bonds(
        t, types, positions, top.far_i, top.far_j, top.far_shift, top.far_mask
    )
    return segment_any(bonds, top.far_i, segment)


def _cos_angle(u: jax.Array, v: jax.Array) -> jax.Array:
    nu, nv = _norm(u), _norm(v)
    return jnp.clip(_safe_div(jnp.sum(u * v, axis=-1), nu * nv), -1.0, 1.0)


def _sin_from_cos(c: jax.Array) -> jax.Array:
    s2 = 1.0 - c * c
    pos = s2 > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, s2, 1.0)), 0.0)


def _acos(c: jax.Array) -> jax.Array:
    inside = jnp.abs(c) < 1.0
    return jnp.where(
        inside, jnp.arccos(jnp.where(inside, c, 0.0)), jnp.where(c > 0, 0.0, jnp.pi)
    )


def segment_total(
    values: jax.Array, owners: jax.Array, segment: Segments | None
) -> jax.Array:
    """Sum of ``values`` (n,): a scalar, or per structure (n_structures,) when
    ``segment`` says which structure each atom belongs to (``owners`` (n,): the atom
    each value belongs to)."""
    if segment is None:
        return jnp.sum(values)
    of_atom, n_structures = segment
    return jax.ops.segment_sum(values, of_atom[owners], num_segments=n_structures)


def bonded_energies(
    t: BondedTables,
    static: BondedStatic,
    types: jax.Array,
    positions: jax.Array,
    top: Topology,
    segment: Segments | None = None,
) -> tuple[dict[str, jax.Array], BondOrders]:
    """Bonded energies [kcal/mol] of one structure and its bond orders.

    ``segment``: for several structures packed into one (their lists side by side),
    ``(structure of each atom (n_atoms,) int, n_structures)``; each energy is then
    (n_structures,).

    Returns:
        ({"E_bond", "E_lone_pair", "E_over", "E_under", "E_val", "E_pen", "E_coa",
        "E_tors", "E_conj", "E_hb"}, bond orders).
    """
    g = t.general
    atoms = jnp.arange(positions.shape[0])

    def total(values: jax.Array, owners: jax.Array) -> jax.Array:
        return segment_total(values, owners, segment)

    atom = t.atom
    n = positions.shape[0]
    b = bond_orders(t, static, types, positions, top)
    amask = top.atom_mask
    ti, tj = types[top.bond_i], types[top.bond_j]
    bp = t.bond[ti, tj]
    centers, others = _centers(top)
    hv = _half_vectors(b.d)
    h_bo, h_pi, h_pp = _half(b.bo), _half(b.bo_pi), _half(b.bo_pp)
    h_params = _half(bp)
    out: dict[str, jax.Array] = {}

    # bond energy and triple-bond stabilisation (once per unordered bond)
    pow_be2 = _safe_pow(b.bo_s, bp[:, _BE2])
    e_bond = (
        -bp[:, _DES] * b.bo_s * jnp.exp(bp[:, _BE1] * (1.0 - pow_be2))
        - bp[:, _DEP] * b.bo_pi
        - bp[:, _DEPP] * b.bo_pp
    )
    trip_on = jnp.asarray(static.triple_pair)[ti, tj] | (jnp.trunc(g[_TRIPFLAG]) == 2)
    exphu = jnp.exp(-g[_TRIP2] * (b.bo - 2.5) ** 2)
    exphua = jnp.exp(-g[_TRIP4] * (b.total[top.bond_i] - b.bo))
    exphub = jnp.exp(-g[_TRIP4] * (b.total[top.bond_j] - b.bo))
    hulpov = 1.0 / (
        1.0 + 25.0 * jnp.exp(g[_TRIP3] * (b.delta[top.bond_i] + b.delta[top.bond_j]))
    )
    e_trip = g[_TRIP1] * exphu * hulpov * (exphua + exphub)
    e_bond = e_bond + jnp.where(trip_on & (b.bo >= 1.0), e_trip, 0.0)
    out["E_bond"] = total(jnp.where(b.bo > 0, e_bond, 0.0), top.bond_i)

    # lone pairs (+ C2 correction)
    p_lp2 = atom[types, _LP2]
    e_lp = p_lp2 * b.delta_lp / (1.0 + jnp.exp(-75.0 * b.delta_lp))
    is_c = jnp.asarray(static.is_carbon)
    cc = is_c[types[centers]] & is_c[types[others]] & (h_bo > 0)
    dc = b.delta[centers]
    vov3 = h_bo - dc - 0.04 * dc**4
    e_c2 = jnp.where(
        cc & (vov3 > 3.0) & (g[_KC2] > 0.001), g[_KC2] * (vov3 - 3.0) ** 2, 0.0
    )
    out["E_lone_pair"] = total(jnp.where(amask, e_lp, 0.0), atoms) + total(
        e_c2, centers
    )

    # over- and under-coordination
    dfvl = jnp.where(jnp.asarray(static.is_heavy)[types], 0.0, 1.0)
    sum1 = _atom_sum(h_params[:, _OVUN1] * h_params[:, _DES] * h_bo, centers, n)
    sum2 = _atom_sum(
        (b.delta[others] - dfvl[centers] * b.delta_lp_temp[others]) * (h_pi + h_pp),
        centers,
        n,
    )
    exp_ovun1 = g[_OVUN3] * jnp.exp(g[_OVUN4] * sum2)
    dlpcorr = b.delta - dfvl * b.delta_lp_temp / (1.0 + exp_ovun1)
    exp_ovun2 = jnp.exp(atom[types, _OVUN2] * dlpcorr)
    val = atom[types, _VAL]
    e_over = sum1 * dlpcorr / (dlpcorr + val + 1e-8) / (1.0 + exp_ovun2)
    e_under = (
        -atom[types, _OVUN5]
        * (1.0 - jnp.exp(g[_OVUN6] * dlpcorr))
        / (1.0 + 1.0 / exp_ovun2)
        / (1.0 + g[_OVUN7] * jnp.exp(g[_OVUN8] * sum2))
    )
    out["E_over"] = total(jnp.where(amask, e_over, 0.0), atoms)
    out["E_under"] = total(jnp.where(amask, e_under, 0.0), atoms)

    # valence angle, penalty, coalition
    sbo_p = _atom_sum(h_pi + h_pp, centers, n)
    prod_sbo = jnp.exp(-_atom_sum(h_bo**8, centers, n))
    vlpadj = jnp.where(b.vlpex >= 0, 0.0, b.n_lp)
    sbo = sbo_p + (1.0 - prod_sbo) * (-b.delta_boc - g[_VAL8] * vlpadj)
    p_val9 = g[_VAL9]
    sbo2 = jnp.where(
        sbo <= 0,
        0.0,
        jnp.where(
            sbo <= 1,
            _safe_pow(sbo, p_val9),
            jnp.where(sbo < 2, 2.0 - _safe_pow(2.0 - sbo, p_val9), 2.0),
        ),
    )
    expval6 = jnp.exp(g[_VAL6] * b.delta_boc)

    h1, h2 = top.angle_h1, top.angle_h2
    j = centers[h1]
    i, k = others[h1], others[h2]
    bo_ij, bo_jk = h_bo[h1], h_bo[h2]
    ok = (
        top.angle_mask
        & (bo_ij > THB_CUT)
        & (bo_jk > THB_CUT)
        & (bo_ij * bo_jk > THB_CUTSQ)
    )
    boa_ij, boa_jk = bo_ij - THB_CUT, bo_jk - THB_CUT
    cos_t = _cos_angle(hv[h1], hv[h2])
    theta = _acos(cos_t)
    tj_ = types[j]
    p_val3, p_val5 = atom[tj_, _VAL3], atom[tj_, _VAL5]
    dboc_j = b.delta_boc[j]
    e_val = jnp.zeros(h1.shape)
    e_pen = jnp.zeros(h1.shape)
    e_coa = jnp.zeros(h1.shape)
    exp_pen3 = jnp.exp(-g[_PEN3] * b.delta[j])
    exp_pen4 = jnp.exp(g[_PEN4] * b.delta[j])
    f9 = (2.0 + exp_pen3) / (1.0 + exp_pen3 + exp_pen4)
    exp_coa2 = jnp.exp(g[_COA2] * b.delta_val[j])
    for slot in range(t.angle.shape[0]):
        ap = t.angle[slot][types[i], tj_, types[k]]
        theta00, p_val1, p_val2 = ap[:, 0], ap[:, 1], ap[:, 2]
        p_coa1, p_val7, p_pen1, p_val4 = ap[:, 3], ap[:, 4], ap[:, 5], ap[:, 6]
        use = ok & (jnp.abs(p_val1) > 0.001)
        f7_ij = 1.0 - jnp.exp(-p_val3 * _safe_pow(boa_ij, p_val4))
        f7_jk = 1.0 - jnp.exp(-p_val3 * _safe_pow(boa_jk, p_val4))
        expval7 = jnp.exp(-p_val7 * dboc_j)
        f8 = p_val5 - (p_val5 - 1.0) * (2.0 + expval6[j]) / (1.0 + expval6[j] + expval7)
        theta0 = (180.0 - theta00 * (1.0 - jnp.exp(-g[_VAL10] * (2.0 - sbo2[j])))) * (
            _PI / 180.0
        )
        expval2 = jnp.exp(-p_val2 * (theta0 - theta) ** 2)
        e12 = jnp.where(p_val1 >= 0, p_val1 * (1.0 - expval2), -p_val1 * expval2)
        e_val += jnp.where(use, f7_ij * f7_jk * f8 * e12, 0.0)
        pen = (
            p_pen1
            * f9
            * jnp.exp(-g[_PEN2] * (boa_ij - 2.0) ** 2)
            * jnp.exp(-g[_PEN2] * (boa_jk - 2.0) ** 2)
        )
        e_pen += jnp.where(use, pen, 0.0)
        coa = (
            p_coa1
            / (1.0 + exp_coa2)
            * jnp.exp(-g[_COA3] * (b.total[i] - boa_ij) ** 2)
            * jnp.exp(-g[_COA3] * (b.total[k] - boa_jk) ** 2)
            * jnp.exp(-g[_COA4] * (boa_ij - 1.5) ** 2)
            * jnp.exp(-g[_COA4] * (boa_jk - 1.5) ** 2)
        )
        e_coa += jnp.where(use, coa, 0.0)
    out["E_val"] = total(e_val, j)
    out["E_pen"] = total(e_pen, j)
    out["E_coa"] = total(e_coa, j)

    # torsion and 4-body conjugation; central bond j -> k is bond tb (j = bond_i)
    th1, tb, th3 = top.torsion_h1, top.torsion_bond, top.torsion_h3
    tj2, tk2 = top.bond_i[tb], top.bond_j[tb]
    ti2, tl2 = others[th1], others[th3]
    va, vb, vc = hv[th1], b.d[tb], hv[th3]
    bo1, bo2, bo3 = h_bo[th1], b.bo[tb], h_bo[th3]
    tok = (
        top.torsion_mask
        & (bo1 > THB_CUT)
        & (bo2 > THB_CUT)
        & (bo3 > THB_CUT)
        & (bo1 * bo2 * bo3 > THB_CUT)
    )
    tq = (types[ti2], types[tj2], types[tk2], types[tl2])
    tp = t.torsion[tq]
    tok = tok & t.has_torsion[tq]
    r_ij, r_kl = _norm(va), _norm(vc)
    cos_ijk = _cos_angle(va, vb)
    cos_jkl = _cos_angle(-vb, vc)
    sin_ijk, sin_jkl = _sin_from_cos(cos_ijk), _sin_from_cos(cos_jkl)
    poem = jnp.maximum(
        r_ij * r_kl * jnp.maximum(sin_ijk, _MIN_SINE) * jnp.maximum(sin_jkl, _MIN_SINE),
        5e-21,
    )
    cos_w = jnp.clip(
        (jnp.sum(va * vc, axis=-1) + r_ij * r_kl * cos_ijk * cos_jkl) / poem, -1.0, 1.0
    )
    cos2w = 2.0 * cos_w**2 - 1.0
    cos3w = 4.0 * cos_w**3 - 3.0 * cos_w
    boa1, boa2, boa3 = bo1 - THB_CUT, bo2 - THB_CUT, bo3 - THB_CUT
    dsum = b.delta_boc[tj2] + b.delta_boc[tk2]
    e3 = jnp.exp(-g[_TOR3] * dsum)
    e4 = jnp.exp(g[_TOR4] * dsum)
    f11 = (2.0 + e3) / (1.0 + e3 + e4)
    exp_tor1 = jnp.exp(tp[:, 3] * (2.0 - b.bo_pi[tb] - f11) ** 2)
    p_tor2 = g[_TOR2]
    fn10 = (
        (1 - jnp.exp(-p_tor2 * boa1))
        * (1 - jnp.exp(-p_tor2 * boa2))
        * (1 - jnp.exp(-p_tor2 * boa3))
    )
    cv = 0.5 * (
        tp[:, 0] * (1.0 + cos_w)
        + tp[:, 1] * exp_tor1 * (1.0 - cos2w)
        + tp[:, 2] * (1.0 + cos3w)
    )
    e_tor = fn10 * sin_ijk * sin_jkl * cv
    p_cot2 = g[_COT2]
    fn12 = (
        jnp.exp(-p_cot2 * (boa1 - 1.5) ** 2)
        * jnp.exp(-p_cot2 * (boa2 - 1.5) ** 2)
        * jnp.exp(-p_cot2 * (boa3 - 1.5) ** 2)
    )
    e_con = tp[:, 4] * fn12 * (1.0 + (cos_w**2 - 1.0) * sin_ijk * sin_jkl)
    out["E_tors"] = total(jnp.where(tok, e_tor, 0.0), tj2)
    out["E_conj"] = total(jnp.where(tok, e_con, 0.0), tj2)

    # hydrogen bonds X-H...Z (half-bond H -> X)
    hh = top.hbond_h
    h_atom, x_atom, z_atom = centers[hh], others[hh], top.hbond_z
    v_hx = hv[hh]
    v_hz = positions[z_atom] + top.hbond_shift - positions[h_atom]
    r_hz = _norm(v_hz)
    bo_hx = h_bo[hh]
    hq = (types[x_atom], types[h_atom], types[z_atom])
    hp = t.hbond[hq]
    hok = (
        top.hbond_mask
        & t.has_hbond[hq]
        & (bo_hx >= HB_THRESHOLD)
        & (r_hz <= HBOND_CUTOFF)
    )
    r0 = jnp.where(hok, hp[:, 0], 1.0)
    rr = jnp.where(hok, r_hz, 1.0)
    cos_h = _cos_angle(v_hx, v_hz)
    sin4 = (0.5 * (1.0 - cos_h)) ** 2
    e_hb = (
        hp[:, 1]
        * (1.0 - jnp.exp(-hp[:, 2] * bo_hx))
        * jnp.exp(-hp[:, 3] * (r0 / rr + rr / r0 - 2.0))
        * sin4
    )
    out["E_hb"] = total(jnp.where(hok, e_hb, 0.0), h_atom)
    return out, b
