"""Host-side ReaxFF interaction lists: bond candidates, angles, torsions, H-bonds.

Lists depend on geometry only, except which bonds get angles, torsions and H-bonds
(``listed``): those whose bond order may exceed the thresholds of those terms. The
caller decides ``listed`` from bond orders computed with the parameters at hand
(:func:`parafit.engines.reaxff.bonded.bond_orders`), and
:func:`~parafit.engines.reaxff.bonded.list_overflow` says, inside the compiled
function, when a parameter vector needs more. Periodic cells of any shape and size are
handled with explicit lattice images (every image within the cutoff, not only the
nearest).
"""

from dataclasses import dataclass, fields, replace

import numpy as np

from parafit.engines.reaxff.bonded import BOND_CUTOFF, HBOND_CUTOFF, Topology

__all__ = [
    "ListRules",
    "ListSizes",
    "bond_candidates",
    "build_topology",
    "lattice_images",
    "pad_topology",
    "pairs_within",
    "round_size",
    "topology_sizes",
    "watch_list",
]


def lattice_images(
    cell: np.ndarray | None, pbc: np.ndarray | None, cutoff: float
) -> np.ndarray:
    """(n_images, 3) int image vectors whose translations may bring atoms of the cell
    within ``cutoff`` of each other (image 0 first)."""
    if cell is None or pbc is None or not np.any(pbc):
        return np.zeros((1, 3), dtype=int)
    cell = np.asarray(cell, float)
    inv = np.linalg.inv(cell)
    spacing = 1.0 / np.linalg.norm(inv, axis=0)  # distance between lattice planes
    reach = np.where(
        np.asarray(pbc, bool), np.ceil((cutoff + 1e-9) / spacing).astype(int) + 1, 0
    )
    ranges = [np.arange(-k, k + 1) for k in reach]
    grid = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)
    order = np.argsort(np.abs(grid).sum(axis=1), kind="stable")
    return grid[order]


def _is_positive(image: np.ndarray) -> np.ndarray:
    """(n,) True for image vectors whose first non-zero component is positive."""
    first = np.where(
        image[:, 0] != 0,
        image[:, 0],
        np.where(image[:, 1] != 0, image[:, 1], image[:, 2]),
    )
    return first > 0


@dataclass(frozen=True)
class _Bonds:
    i: np.ndarray
    j: np.ndarray
    image: np.ndarray  # (n, 3) int


def _bond_candidates(
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc: np.ndarray | None,
    cutoff: float,
) -> _Bonds:
    """Unordered pairs within ``cutoff``, each once (self-images included): image 0
    with i < j, and for every other image m only one of m and -m (all i, j)."""
    pos = np.asarray(positions, float)
    n = pos.shape[0]
    images = lattice_images(cell, pbc, cutoff)
    lattice = np.zeros((3, 3)) if cell is None else np.asarray(cell, float)
    iu, ju = np.triu_indices(n, k=1)
    keep0 = np.linalg.norm(pos[ju] - pos[iu], axis=1) <= cutoff
    i_all, j_all = [iu[keep0]], [ju[keep0]]
    m_all = [np.zeros((int(keep0.sum()), 3), dtype=int)]
    others = images[images.any(axis=1) & _is_positive(images)]
    if others.size:
        diff = pos[None, :, :] - pos[:, None, :]  # (i, j, 3): x_j - x_i
        # images in chunks of ~4M distances
        step = max(1, 4_000_000 // max(1, n * n))
        for start in range(0, len(others), step):
            m = others[start : start + step]
            d = diff[None, :, :, :] + (m @ lattice)[:, None, None, :]
            r2 = np.einsum("mijk,mijk->mij", d, d)
            mm, ii, jj = np.nonzero(r2 <= cutoff * cutoff)
            i_all.append(ii)
            j_all.append(jj)
            m_all.append(m[mm])
    return _Bonds(
        i=np.concatenate(i_all).astype(np.int32),
        j=np.concatenate(j_all).astype(np.int32),
        image=np.concatenate(m_all).astype(np.int32).reshape(-1, 3),
    )


def pairs_within(
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc: np.ndarray | None,
    cutoff: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unordered pairs ``(i, j, image)`` within ``cutoff`` [Å], each pair and image
    once (``x_j + image @ cell - x_i``; ``image`` (n, 3) int), self-images included."""
    c = _bond_candidates(np.asarray(positions, float), cell, pbc, cutoff)
    return c.i, c.j, c.image


@dataclass(frozen=True)
class ListRules:
    """Which type combinations have parameters (the force field's layout, not its
    values): only those get angles, torsions and H-bonds listed.

    Attributes:
        angle: (n_types,)*3 bool, (i, j, k) with j the centre.
        torsion: (n_types,)*4 bool, after wildcard filling.
        hbond: (n_types,)*3 bool, (X, H, Z).
    """

    angle: np.ndarray
    torsion: np.ndarray
    hbond: np.ndarray


def build_topology(
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc: np.ndarray | None,
    types: np.ndarray,
    hbond_role: np.ndarray,
    *,
    listed: np.ndarray | None = None,
    skin: float = 0.0,
    bonds: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    rules: ListRules | None = None,
    far: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Topology:
    """Unpadded interaction lists of one structure.

    Args:
        positions: (n_atoms, 3) [Å].
        cell, pbc: (3, 3) lattice vectors as rows [Å] and (3,) periodic flags, or None.
        types: (n_atoms,) atom-type indices; hbond_role: (n_types,) p_hbond per type.
        listed: (n_bonds,) bool for the bond candidates of this geometry (see
            ``bonds``): which bonds get angles, torsions and H-bonds; None = all.
        skin: extra distance [Å] on the bond and H-bond cutoffs (atoms that move).
        bonds: the bond candidates ``(i, j, image)`` from an earlier call (so that
            ``listed`` refers to them); None = find them.
        rules: list only angles, torsions and H-bonds whose types have parameters
            (terms without parameters are zero); None = list every one.
        far: the far candidates ``(i, j, image)``, pairs within the bond cutoff that
            are only checked (see :class:`Topology`); None = none.
    """
    pos = np.asarray(positions, float)
    n = pos.shape[0]
    lattice = np.zeros((3, 3)) if cell is None else np.asarray(cell, float)
    cand = (
        _bond_candidates(pos, cell, pbc, BOND_CUTOFF + skin)
        if bonds is None
        else _Bonds(*(np.asarray(x) for x in bonds))
    )
    nb = cand.i.size
    listed = np.ones(nb, dtype=bool) if listed is None else np.asarray(listed, bool)
    # half-bonds: 2b centre i -> j (image m), 2b+1 centre j -> i (image -m)
    h_center = np.stack([cand.i, cand.j], axis=1).reshape(-1)
    h_other = np.stack([cand.j, cand.i], axis=1).reshape(-1)
    h_image = np.stack([cand.image, -cand.image], axis=1).reshape(-1, 3)
    h_listed = np.repeat(listed, 2)
    by_center: list[np.ndarray] = [
        np.flatnonzero(h_listed & (h_center == a)) for a in range(n)
    ]

    types = np.asarray(types)
    a1, a2 = [], []
    for centre, hs in enumerate(by_center):
        if hs.size >= 2:
            x, y = np.triu_indices(hs.size, k=1)
            first, second = hs[x], hs[y]
            if rules is not None:
                keep = rules.angle[
                    types[h_other[first]], types[centre], types[h_other[second]]
                ]
                first, second = first[keep], second[keep]
            a1.append(first)
            a2.append(second)

    t1, tb, t3 = [], [], []
    with_torsions = np.flatnonzero(listed)
    if rules is not None and not rules.torsion.any():
        with_torsions = with_torsions[:0]
    for bond in with_torsions:
        j, k = cand.i[bond], cand.j[bond]
        left = by_center[j][by_center[j] != 2 * bond]
        right = by_center[k][by_center[k] != 2 * bond + 1]
        if left.size == 0 or right.size == 0:
            continue
        ll, rr = (a.ravel() for a in np.meshgrid(left, right, indexing="ij"))
        same = (h_other[ll] == h_other[rr]) & np.all(
            h_image[ll] == cand.image[bond] + h_image[rr], axis=1
        )
        keep = ~same
        if rules is not None:
            keep &= rules.torsion[
                types[h_other[ll]], types[j], types[k], types[h_other[rr]]
            ]
        t1.append(ll[keep])
        tb.append(np.full(int(keep.sum()), bond))
        t3.append(rr[keep])

    role = np.asarray(hbond_role)[types]
    hh, hz, hs_ = [], [], []
    donors = np.flatnonzero(h_listed & (role[h_center] == 1) & (role[h_other] == 2))
    acceptors = np.flatnonzero(role == 2)
    if donors.size and acceptors.size:
        images = lattice_images(cell, pbc, HBOND_CUTOFF + skin)
        shifts = images @ lattice
        for h in donors:
            hydrogen, x_atom = h_center[h], h_other[h]
            d = pos[acceptors][:, None, :] + shifts[None, :, :] - pos[hydrogen]
            r = np.linalg.norm(d, axis=2)
            near = (r <= HBOND_CUTOFF + skin) & (acceptors[:, None] != x_atom)
            if rules is not None:
                near &= rules.hbond[types[x_atom], types[hydrogen], types[acceptors]][
                    :, None
                ]
            za, zm = np.nonzero(near)
            hh.append(np.full(za.size, h))
            hz.append(acceptors[za])
            hs_.append(shifts[zm])

    def cat(
        parts: list[np.ndarray], dtype: type = np.int32, shape: tuple[int, ...] = ()
    ) -> np.ndarray:
        if not parts:
            return np.zeros((0, *shape), dtype=dtype)
        return np.concatenate(parts).astype(dtype).reshape(-1, *shape)

    n_a, n_t, n_h = sum(map(len, a1)), sum(map(len, t1)), sum(map(len, hh))
    if far is None:
        far = (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros((0, 3), int))
    far_i, far_j, far_image = (np.asarray(a) for a in far)
    return Topology(
        atom_mask=np.ones(n, dtype=bool),
        bond_i=cand.i,
        bond_j=cand.j,
        bond_shift=cand.image @ lattice,
        bond_mask=np.ones(nb, dtype=bool),
        angle_h1=cat(a1),
        angle_h2=cat(a2),
        angle_mask=np.ones(n_a, dtype=bool),
        torsion_h1=cat(t1),
        torsion_bond=cat(tb),
        torsion_h3=cat(t3),
        torsion_mask=np.ones(n_t, dtype=bool),
        hbond_h=cat(hh),
        hbond_z=cat(hz),
        hbond_shift=cat(hs_, float, (3,)),
        hbond_mask=np.ones(n_h, dtype=bool),
        listed=listed.copy(),
        far_i=far_i.astype(np.int32),
        far_j=far_j.astype(np.int32),
        far_shift=(far_image.reshape(-1, 3) @ lattice).astype(float),
        far_mask=np.ones(far_i.size, dtype=bool),
    )


def bond_candidates(
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc: np.ndarray | None,
    skin: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bond candidates ``(i, j, image)`` within the bond cutoff + ``skin`` (each
    unordered pair once; ``image`` (n, 3) int lattice vector added to atom j)."""
    c = _bond_candidates(np.asarray(positions, float), cell, pbc, BOND_CUTOFF + skin)
    return c.i, c.j, c.image


@dataclass(frozen=True)
class ListSizes:
    """Padded sizes of every list (one compiled shape)."""

    atoms: int
    bonds: int
    angles: int
    torsions: int
    hbonds: int
    far: int = 1

    def covers(self, other: "ListSizes") -> bool:
        return all(
            getattr(self, f.name) >= getattr(other, f.name) for f in fields(self)
        )


def topology_sizes(top: Topology) -> ListSizes:
    return ListSizes(
        atoms=top.atom_mask.size,
        bonds=top.bond_i.size,
        angles=top.angle_h1.size,
        torsions=top.torsion_h1.size,
        hbonds=top.hbond_h.size,
        far=top.far_i.size,
    )


def pad_topology(top: Topology, sizes: ListSizes) -> Topology:
    """Pad every list with masked entries to ``sizes`` (indices 0, masks False)."""

    def pad(a: np.ndarray, n: int) -> np.ndarray:
        extra = n - a.shape[0]
        if extra < 0:
            raise ValueError(f"list of {a.shape[0]} entries does not fit in {n}")
        return np.concatenate([a, np.zeros((extra, *a.shape[1:]), dtype=a.dtype)])

    groups = {
        "atoms": ("atom_mask",),
        "bonds": ("bond_i", "bond_j", "bond_shift", "bond_mask", "listed"),
        "angles": ("angle_h1", "angle_h2", "angle_mask"),
        "torsions": ("torsion_h1", "torsion_bond", "torsion_h3", "torsion_mask"),
        "hbonds": ("hbond_h", "hbond_z", "hbond_shift", "hbond_mask"),
        "far": ("far_i", "far_j", "far_shift", "far_mask"),
    }
    changes = {
        name: pad(getattr(top, name), getattr(sizes, group))
        for group, names in groups.items()
        for name in names
    }
    return replace(top, **changes)


def round_size(n: int) -> int:
    """Smallest size >= max(n, 1) of the form {1, 1.25, 1.5, 1.75} * 2^k (few shapes,
    at most 25 % padding)."""
    n = max(int(n), 1)
    if n <= 8:
        return n if n <= 4 else 8
    k = int(np.floor(np.log2(n)))
    for f in (1.0, 1.25, 1.5, 1.75, 2.0):
        size = int(f * 2**k)
        if size >= n:
            return size
    return 2 ** (k + 1)


def watch_list(
    positions: np.ndarray,
    cell: np.ndarray | None,
    pbc: np.ndarray | None,
    cutoffs: tuple[float, ...],
    skin: float,
    reach: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs a relaxation watches so that lists built with ``skin`` stay exact.

    A list of the pairs within ``c + skin`` of a start geometry misses a pair only
    if that pair comes within ``c`` from farther away. While no atom has moved more
    than ``reach / 2`` from the start, such a pair was within ``c + reach`` at the
    start; so the lists are exact as long as none of the returned pairs (start
    distance in ``(c + skin, c + reach]``) is within its cutoff ``c``. This is an
    exact test where "no atom moved more than ``skin / 2``" is a sufficient one that
    a slab relaxing as a whole (a few tenths of an Å per layer) fails at once.

    Args:
        positions: (n_atoms, 3) start geometry [Å].
        cell, pbc: lattice vectors as rows [Å] and periodic flags, or None.
        cutoffs: the list cutoffs [Å] (e.g. the bond and the non-bonded cutoff).
        skin: the lists' skin [Å]; reach: watched distance beyond each cutoff [Å].

    Returns:
        ``(i, j, shift, cutoff)``: (n,) int32 atoms, (n, 3) lattice shift [Å] added to
        atom j, (n,) the cutoff [Å] the pair must stay outside of.
    """
    empty = (
        np.zeros(0, np.int32),
        np.zeros(0, np.int32),
        np.zeros((0, 3)),
        np.zeros(0),
    )
    if reach <= skin or not cutoffs:
        return empty
    pos = np.asarray(positions, float)
    i, j, image = pairs_within(pos, cell, pbc, max(cutoffs) + reach)
    lattice = np.zeros((3, 3)) if cell is None else np.asarray(cell, float)
    shift = (image @ lattice).astype(float)
    r = np.linalg.norm(pos[j] + shift - pos[i], axis=1)
    parts = [empty]
    for c in cutoffs:
        keep = (r > c + skin) & (r <= c + reach)
        parts.append((i[keep], j[keep], shift[keep], np.full(int(keep.sum()), c)))
    return (
        np.concatenate([p[0] for p in parts]).astype(np.int32),
        np.concatenate([p[1] for p in parts]).astype(np.int32),
        np.concatenate([p[2] for p in parts]).reshape(-1, 3),
        np.concatenate([p[3] for p in parts]).astype(float),
    )
