"""Make the argon reference data of the Lennard-Jones example (reference.extxyz).

The reference energies and forces come from the Aziz HFDID1 Ar-Ar pair potential,

    R. A. Aziz, "A highly accurate interatomic potential for argon",
    J. Chem. Phys. 99, 4518 (1993), https://doi.org/10.1063/1.466051

summed over all pairs (pair-additive: three-body terms such as Axilrod-Teller are left
out). Nothing here needs quantum chemistry, so the example runs anywhere.

Structures: 25 Ar2 dimers (3.2-8.0 Å), 10 Ar3 trimers, 10 rattled Ar13/Ar38 clusters
and 5 periodic 108-atom liquid boxes (1.40 g/cm^3, 90 K) taken from a short Langevin
run that uses ase's LennardJones calculator only as the propagator.

Run from anywhere (about 12 s on 2 cores):

    python examples/argon_lj/generate_reference.py

It overwrites reference.extxyz next to this file and prints the frame counts, the
checks of the potential, and a quick Lennard-Jones fit to the dimer curve.
"""

from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.lj import LennardJones
from ase.calculators.singlepoint import SinglePointCalculator
from ase.cluster import Icosahedron, Octahedron
from ase.io import read, write
from ase.md.langevin import Langevin
from ase.neighborlist import neighbor_list
from scipy.optimize import brentq, least_squares, minimize_scalar

OUTPUT = Path(__file__).resolve().parent / "reference.extxyz"
SEED = 20240601  # one numpy Generator, used in turn by trimers, clusters, liquid MD

# --- HFDID1 parameters (Aziz 1993, reduced form) ------------------------------------
# Taken from two independent public implementations of the paper, which agree:
#  * GMIN (D. J. Wales, GPL), subroutine ASAR1, the Ar-Ar term of its Ar_n+ model,
#    commented "TERM X0G+ AR2 (AZIZ - JCP 99 (1993) 4518)":
#    E/143.235, RM/3.757, A(alpha*)/9.03228328, B(beta*)/-2.37132823, AA(A*)/8.73933927D4,
#    C6..C14/1.09309955, .51568309, .32521242, .27818156, .31111959, RO(rho)/1.107
#  * etomica (github.com/etomica/etomica, commit 0daf0b5b),
#    etomica-core/src/main/java/etomica/potential/P2ArgonAziz1993.java: the
#    same eps, A*, alpha*/rm, beta = -0.168 Å^-2 (= beta*/rm^2) and C6..C14 in atomic
#    units (63.5, 1510, 48000, 2069581.26, 116670633), which reduce to the values above
#    to 1e-5 relative.
EPS_K = 143.235  # well depth eps/k_B [K]
R_M = 3.757  # position of the minimum [Å]
A_STAR = 8.73933927e4  # dimensionless
ALPHA_STAR = 9.03228328  # dimensionless
BETA_STAR = -2.37132823  # dimensionless
C_STAR = {6: 1.09309955, 8: 0.51568309, 10: 0.32521242, 12: 0.27818156, 14: 0.31111959}
RHO_BOHR = 1.107  # damping scale rho [1/bohr]; the damping uses rho*r with r in bohr
BOHR = 0.529177210903  # [Å] (CODATA 2018)
EPS = EPS_K * units.kB  # well depth [eV]

# --- Published checkpoints of HFDID1 (asserted in check_potential) ------------------
CHECK_DEPTH_K = 143.235  # eps/k_B [K]
CHECK_RMIN = 3.757  # r_m [Å]


def aziz_pair(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HFDID1 pair energy u(r) and its derivative du/dr.

    u(r) = eps * [A* exp(-alpha* x + beta* x^2)
                  - F(s) * sum_{n=6,8,...,14} C*_n g_n(s) / x^n],
    x = r / r_m, s = rho r (r in bohr),
    F(s) = 1 - s^1.68 exp(-0.78 s),
    g_n(s) = [1 - exp(-2.1 s / n - 0.109 s^2 / sqrt(n))]^n.

    Args:
        r: (n_pairs,) distances [Å], > 0.

    Returns:
        u: (n_pairs,) pair energies [eV], not shifted (u -> 0 only as r -> infinity).
        du: (n_pairs,) derivatives du/dr [eV/Å].
    """
    r = np.asarray(r, dtype=float)
    x = r / R_M
    k = RHO_BOHR / BOHR  # ds/dr [1/Å]
    s = k * r

    rep = A_STAR * np.exp(-ALPHA_STAR * x + BETA_STAR * x * x)
    drep = rep * (-ALPHA_STAR + 2.0 * BETA_STAR * x) / R_M

    damp_tail = s**1.68 * np.exp(-0.78 * s)
    f = 1.0 - damp_tail
    df = -damp_tail * (1.68 / s - 0.78) * k

    disp = np.zeros_like(r)
    ddisp = np.zeros_like(r)
    for n, c in C_STAR.items():
        a = 2.1 / n
        b = 0.109 / np.sqrt(n)
        e = np.exp(-a * s - b * s * s)
        h = 1.0 - e
        g = h**n
        dg = n * h ** (n - 1) * e * (a + 2.0 * b * s) * k
        xn = x**-n
        disp += c * g * xn
        ddisp += c * (dg * xn - n * g * xn / x / R_M)

    u = EPS * (rep - f * disp)
    du = EPS * (drep - df * disp - f * ddisp)
    return u, du


def aziz_u(r: np.ndarray | float) -> np.ndarray:
    """HFDID1 dimer energy u(r) [eV] at distances r [Å] (see aziz_pair)."""
    return aziz_pair(np.atleast_1d(np.asarray(r, dtype=float)))[0]


def aziz_energy_forces(atoms: Atoms, cutoff: float = 12.0) -> tuple[float, np.ndarray]:
    """Pair-additive HFDID1 energy and forces of a structure.

    E = sum over pairs i<j (periodic images included) with r_ij < cutoff of u(r_ij).
    The pair energy is truncated at the cutoff but NOT shifted, so u jumps by u(cutoff)
    (u(12 Å) = -1.33e-5 eV) there. No three-body term.

    Args:
        atoms: the structure; periodic directions follow atoms.pbc.
        cutoff: pair cutoff [Å]; it may exceed half the box, images are then counted.

    Returns:
        energy: total energy [eV].
        forces: (n_atoms, 3) forces [eV/Å].
    """
    i, j, d, vec = neighbor_list("ijdD", atoms, cutoff)  # both i->j and j->i
    u, du = aziz_pair(d)
    energy = 0.5 * float(np.sum(u))
    pair_force = (du / d)[
        :, None
    ] * vec  # on atom i, from atom j: du/dr * (r_j - r_i)/r
    forces = np.zeros((len(atoms), 3))
    np.add.at(forces, i, pair_force)
    return energy, forces


def check_potential() -> dict[str, float]:
    """Assert the published checkpoints of HFDID1 and return the numbers found."""
    res = minimize_scalar(lambda r: aziz_u(r)[0], bracket=(3.5, 3.75, 4.2), tol=1e-12)
    r_min = float(res.x)
    depth_k = -float(res.fun) / units.kB
    sigma = brentq(lambda r: aziz_u(r)[0], 3.0, 3.7, xtol=1e-12)
    assert abs(r_min - CHECK_RMIN) < 1e-3, r_min
    assert abs(depth_k - CHECK_DEPTH_K) < 0.01, depth_k
    assert abs(-aziz_u(R_M)[0] - EPS) < 1e-6 * EPS
    # analytic derivative against central differences on the whole curve
    r = np.linspace(3.0, 12.0, 181)
    h = 1e-5
    fd = (aziz_u(r + h) - aziz_u(r - h)) / (2 * h)
    assert np.max(np.abs(aziz_pair(r)[1] - fd)) < 1e-9
    # the long-range tail is the C6 dispersion: u -> -C6 / r^6
    c6_ev_a6 = C_STAR[6] * EPS * R_M**6
    assert abs(aziz_u(30.0)[0] / (-c6_ev_a6 / 30.0**6) - 1.0) < 0.01
    return {
        "r_min": r_min,
        "depth_K": depth_k,
        "depth_eV": depth_k * units.kB,
        "sigma": sigma,
    }


def _with_reference(atoms: Atoms, frame_id: str) -> Atoms:
    """Round positions to what extxyz stores (%16.8f), then attach E and F."""
    atoms = atoms.copy()
    atoms.positions = np.char.mod("%.8f", atoms.positions).astype(float)
    energy, forces = aziz_energy_forces(atoms)
    atoms.info = {"id": frame_id}
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
    return atoms


def make_dimers() -> list[Atoms]:
    """25 Ar2 at 3.2-8.0 Å, spaced 0.05 Å near the minimum (3.757 Å)."""
    distances = [3.20, 3.30, 3.40, 3.50, 3.55, 3.60, 3.65, 3.70, 3.75, 3.80, 3.85,
                 3.90, 3.95, 4.00, 4.10, 4.20, 4.35, 4.50, 4.75, 5.00, 5.50, 6.00,
                 6.50, 7.00, 8.00]  # fmt: skip
    return [
        _with_reference(
            Atoms("Ar2", positions=[[0, 0, 0], [d, 0, 0]]), f"dimer_{d:.2f}"
        )
        for d in distances
    ]


def make_trimers(rng: np.random.Generator) -> list[Atoms]:
    """10 Ar3: equilateral, isosceles, linear and random triangles."""

    def triangle(a: float, b: float, angle_deg: float) -> Atoms:
        t = np.radians(angle_deg)
        return Atoms(
            "Ar3", positions=[[0, 0, 0], [a, 0, 0], [b * np.cos(t), b * np.sin(t), 0]]
        )

    shapes = [triangle(d, d, 60.0) for d in (3.55, 3.757, 4.0, 4.5)]
    shapes += [triangle(3.757, 3.757, 90.0), triangle(3.757, 4.2, 120.0)]
    shapes += [triangle(3.757, 3.757, 180.0), triangle(4.1, 4.1, 180.0)]
    for _ in range(2):  # random, all sides within 3.4-5.0 Å
        while True:
            pos = rng.uniform(0.0, 4.5, size=(3, 3))
            d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)[np.triu_indices(3, 1)]
            if d.min() > 3.4 and d.max() < 5.0:
                break
        shapes.append(Atoms("Ar3", positions=pos - pos.mean(axis=0)))
    return [_with_reference(a, f"trimer_{k + 1:02d}") for k, a in enumerate(shapes)]


def _scaled_to_minimum(atoms: Atoms) -> Atoms:
    """Uniformly scale a cluster to the minimum of its Aziz energy."""
    ref = atoms.positions - atoms.positions.mean(axis=0)

    def energy(f: float) -> float:
        return aziz_energy_forces(Atoms(atoms.symbols, positions=f * ref))[0]

    f = minimize_scalar(energy, bounds=(0.9, 1.1), method="bounded").x
    return Atoms(atoms.symbols, positions=f * ref)


def make_clusters(rng: np.random.Generator) -> list[Atoms]:
    """Ar13 icosahedron and Ar38 truncated octahedron, each rattled 5 times."""
    frames = []
    stdevs = (0.05, 0.075, 0.10, 0.125, 0.15)  # [Å]
    for name, cluster in (
        ("cluster13", Icosahedron("Ar", noshells=2)),
        ("cluster38", Octahedron("Ar", length=4, cutoff=1)),
    ):
        base = _scaled_to_minimum(cluster)
        for k, stdev in enumerate(stdevs):
            a = base.copy()
            a.positions += rng.normal(0.0, stdev, size=a.positions.shape)
            frames.append(_with_reference(a, f"{name}_{k + 1:02d}"))
    return frames


def make_liquid(rng: np.random.Generator, n_frames: int = 5) -> list[Atoms]:
    """108-atom periodic liquid at 1.40 g/cm^3 and 90 K.

    fcc 3x3x3 (cubic) at the liquid density, melted by Langevin MD at 600 K for 2 ps,
    brought to 90 K for 3 ps, then one snapshot every 0.5 ps. Timestep 5 fs, friction
    0.002 /fs (a stronger one slows diffusion so much that the crystal survives).
    ase's LennardJones(sigma=3.405, epsilon=0.0103, rc=8.5) moves the atoms; it is only
    a way to get liquid configurations. Each snapshot is checked to have lost the fcc
    order (see fcc_order).
    """
    density = 1.40  # [g/cm^3]
    mass_g = 39.948 / units.mol  # grams per atom (units.mol = Avogadro's number)
    n_per_a3 = density / mass_g * 1e-24  # [1/Å^3]
    a = (4.0 / n_per_a3) ** (1.0 / 3.0)  # cubic fcc lattice constant [Å]
    atoms = bulk("Ar", "fcc", a=a, cubic=True).repeat((3, 3, 3))
    atoms.calc = LennardJones(sigma=3.405, epsilon=0.0103, rc=8.5)

    masses = atoms.get_masses()[:, None]
    momenta = np.sqrt(masses * units.kB * 600.0) * rng.standard_normal((len(atoms), 3))
    atoms.set_momenta(momenta - momenta.mean(axis=0))  # Maxwell-Boltzmann, no drift
    dyn = Langevin(
        atoms,
        5.0 * units.fs,
        temperature_K=600.0,
        friction=0.002 / units.fs,
        fixcm=False,
        rng=rng,
    )
    dyn.run(400)  # 2 ps melt
    dyn.set_temperature(temperature_K=90.0)
    dyn.run(600)  # 3 ps at 90 K
    frames = []
    for k in range(n_frames):
        dyn.run(100)  # 0.5 ps between snapshots
        snap = Atoms(
            atoms.symbols,
            positions=atoms.get_positions(wrap=True),
            cell=atoms.cell,
            pbc=True,
        )
        assert fcc_order(snap) < 10.0, (k, fcc_order(snap))  # ~108 for the crystal
        frames.append(_with_reference(snap, f"liquid_{k + 1:02d}"))
    return frames


def fcc_order(atoms: Atoms) -> float:
    """Mean |rho_k|^2 / N over the {111} and {200} Bragg vectors of the 3x3x3 fcc box.

    About N (108) for the starting crystal, about 1-3 for a liquid (S(k) near its
    first peak), so it tells a melted box from one that kept its lattice.
    """
    n_cells = 3
    recip = (
        2.0 * np.pi * np.linalg.inv(atoms.cell.array).T
    )  # rows: box reciprocal vectors
    hkl = [
        (1, 1, 1),
        (1, -1, 1),
        (-1, 1, 1),
        (1, 1, -1),
        (2, 0, 0),
        (0, 2, 0),
        (0, 0, 2),
    ]
    values = []
    for h in hkl:
        k = n_cells * np.asarray(h, dtype=float) @ recip
        rho = np.exp(1j * atoms.positions @ k).sum()
        values.append(abs(rho) ** 2 / len(atoms))
    return float(np.mean(values))


def fit_lj_to_dimer(frames: list[Atoms]) -> dict[str, float]:
    """Least-squares LJ (eps, r_min) on the dimer energies; a rough reference only."""
    dimers = [a for a in frames if a.info["id"].startswith("dimer_")]
    r = np.array([a.get_distance(0, 1) for a in dimers])
    e = np.array([a.get_potential_energy() for a in dimers])

    def lj(p: np.ndarray) -> np.ndarray:
        eps, rmin = p
        q = (rmin / r) ** 6
        return eps * (q * q - 2.0 * q)

    fit = least_squares(lambda p: lj(p) - e, x0=[0.0103, 3.82])
    eps, rmin = fit.x
    rms = float(np.sqrt(np.mean(fit.fun**2)))
    return {"eps": eps, "rmin": rmin, "sigma": rmin / 2 ** (1 / 6), "rms": rms}


def main() -> None:
    checks = check_potential()
    rng = np.random.default_rng(SEED)
    frames = make_dimers() + make_trimers(rng) + make_clusters(rng) + make_liquid(rng)

    for a in frames:
        if a.info["id"].startswith("liquid_"):
            e_atom = a.get_potential_energy() / len(a)
            assert -0.09 < e_atom < -0.05, (a.info["id"], e_atom)  # liquid Ar ~ -0.07
        assert np.abs(a.get_forces().sum(axis=0)).max() < 1e-10  # Newton's third law

    write(OUTPUT, frames, format="extxyz")
    back = read(OUTPUT, index=":")
    assert len(back) == len(frames)
    for a, b in zip(frames, back, strict=True):
        assert b.info["id"] == a.info["id"]
        assert np.array_equal(b.positions, a.positions)
        assert b.get_potential_energy() == a.get_potential_energy()
        assert np.abs(b.get_forces() - a.get_forces()).max() < 1e-8  # %16.8f in file

    kinds: dict[str, int] = {}
    for a in frames:
        kind = a.info["id"].split("_")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    print(f"wrote {OUTPUT.name}: {len(frames)} frames, {OUTPUT.stat().st_size} bytes")
    for kind, n in kinds.items():
        print(f"  {kind:10s} {n:3d}")
    print("HFDID1 checks (published: eps/k_B = 143.235 K, r_m = 3.757 Å):")
    print(
        f"  r_min = {checks['r_min']:.5f} Å, depth = {checks['depth_K']:.4f} K"
        f" = {checks['depth_eV']:.7f} eV, sigma (u=0) = {checks['sigma']:.4f} Å"
    )
    liquid = [a for a in frames if a.info["id"].startswith("liquid_")]
    e_liq = [a.get_potential_energy() / len(a) for a in liquid]
    order = [fcc_order(a) for a in liquid]
    print(
        f"  liquid energy per atom: {min(e_liq):.4f} .. {max(e_liq):.4f} eV;"
        f" fcc order {min(order):.1f} .. {max(order):.1f} (crystal: 108)"
    )
    lj = fit_lj_to_dimer(frames)
    print("Quick LJ fit to the 25 dimer energies (scipy least_squares):")
    print(
        f"  {'eps [eV]':>10s} {'eps/k [K]':>10s} {'r_min [Å]':>10s} {'sigma [Å]':>10s}"
        f" {'rms [meV]':>10s}"
    )
    print(
        f"  {lj['eps']:10.6f} {lj['eps'] / units.kB:10.2f} {lj['rmin']:10.4f}"
        f" {lj['sigma']:10.4f} {1e3 * lj['rms']:10.3f}"
    )


if __name__ == "__main__":
    main()
