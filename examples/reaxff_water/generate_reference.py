"""Make the DFT reference data of the ReaxFF water example (reference.yaml).

Three rigid scans of one water molecule, computed with PySCF (https://pyscf.org):

* ``oh_stretch`` (training): one O-H bond from 0.80 to 1.50 Å in steps of 0.025 Å
  (29 points); the other O-H bond and the H-O-H angle stay at the experimental
  equilibrium geometry.
* ``oh_dissociation`` (validation): the same bond at equilibrium (0.9572 Å), then from
  1.55 to 2.50 Å in steps of 0.05 Å (21 points), through bond breaking: does a force
  field fitted near equilibrium extrapolate?
* ``symmetric_stretch`` (validation): both O-H bonds together, 0.85 to 1.25 Å in
  steps of 0.05 Å (9 points), angle fixed.

Equilibrium geometry: r(O-H) = 0.9572 Å, angle(H-O-H) = 104.52 degrees (the
experimental r_e of W. S. Benedict, N. Gailar, E. K. Plyler, J. Chem. Phys. 24, 1139
(1956), as tabulated in NIST CCCBDB). O at the origin, H1 on +x, H2 in the xy plane;
atom order O, H1, H2.

Electronic structure: B3LYP (PySCF's ``b3lyp``), def2-TZVP, grids level 4, SCF
converged to 1e-10 Ha. Each point starts closed-shell (RKS) and is checked for an
RKS -> UKS instability (``stability(external=True)``). Where there is one (an O-H bond
beyond about 1.6 Å, as it breaks homolytically into OH + H), the point is recomputed
spin-unrestricted (UKS, M_S = 0) from the unstable direction, the broken-symmetry
solution that dissociates correctly, until UKS is internally stable; its <S^2> is
stored (about 1 for the separated radicals).

Energies are stored in Hartree and in eV (CODATA 2018 Hartree = 27.211386245988 eV,
ASE's ``units.Hartree``), absolute and relative to the scan's lowest point.

Run (about 6 minutes on 2 cores; needs ``pip install pyscf``):

    python examples/reaxff_water/generate_reference.py

It overwrites reference.yaml next to this file.
"""

import platform
import time
from pathlib import Path

import numpy as np
import yaml
from ase import units

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "reference.yaml"

R_EQ = 0.9572  # Å
ANGLE_EQ = 104.52  # degrees
XC, BASIS, GRID_LEVEL, CONV_TOL = "b3lyp", "def2-tzvp", 4, 1e-10
STRETCH = np.round(np.arange(0.80, 1.50 + 1e-9, 0.025), 4)
DISSOCIATION = np.concatenate([[R_EQ], np.round(np.arange(1.55, 2.50 + 1e-9, 0.05), 4)])
SYMMETRIC = np.round(np.arange(0.85, 1.25 + 1e-9, 0.05), 4)


def water(r1: float, r2: float, angle: float = ANGLE_EQ) -> np.ndarray:
    """(3, 3) positions [Å] of O, H1, H2 with O-H1 = r1, O-H2 = r2."""
    t = np.radians(angle)
    return np.array(
        [[0.0, 0.0, 0.0], [r1, 0.0, 0.0], [r2 * np.cos(t), r2 * np.sin(t), 0.0]]
    )


def dft_energy(positions: np.ndarray) -> tuple[float, str, float]:
    """B3LYP/def2-TZVP total energy [Ha], the reference used (``RKS`` or ``UKS``) and
    <S^2>: RKS where it is stable, else broken-symmetry UKS (see the module docstring)."""
    from pyscf import dft, gto

    mol = gto.M(
        atom=[(s, tuple(p)) for s, p in zip("OHH", positions, strict=True)],
        basis=BASIS,
        unit="Angstrom",
        verbose=0,
    )

    def setup(mf):  # noqa: ANN001, ANN202
        mf.xc = XC
        mf.grids.level = GRID_LEVEL
        mf.conv_tol = CONV_TOL
        return mf

    rks = setup(dft.RKS(mol))
    energy = rks.kernel()
    if not rks.converged:
        raise RuntimeError(f"RKS did not converge at {positions.tolist()}")
    _, mo_external = rks.stability(internal=True, external=True, verbose=0)
    if mo_external is None or np.allclose(
        np.asarray(mo_external[0]), rks.mo_coeff, atol=1e-6
    ):
        return float(energy), "RKS", 0.0
    uks = setup(dft.UKS(mol))
    occupied = (rks.mo_occ > 0).astype(float)
    energy = uks.kernel(uks.make_rdm1(mo_external, (occupied, occupied)))
    for _ in range(5):
        mo = uks.stability(verbose=0)[0]
        if all(
            np.allclose(a, b, atol=1e-6) for a, b in zip(mo, uks.mo_coeff, strict=True)
        ):
            break
        energy = uks.kernel(uks.make_rdm1(mo, uks.mo_occ))
    else:
        raise RuntimeError(
            f"UKS did not reach a stable solution at {positions.tolist()}"
        )
    if not uks.converged:
        raise RuntimeError(f"UKS did not converge at {positions.tolist()}")
    return float(energy), "UKS", float(uks.spin_square()[0])


def scan(name: str, pairs: list[tuple[float, float]]) -> dict:
    energies, kinds, s2 = [], [], []
    for r1, r2 in pairs:
        start = time.perf_counter()
        e, kind, spin = dft_energy(water(r1, r2))
        energies.append(e)
        kinds.append(kind)
        s2.append(spin)
        print(
            f"{name:18s} r1={r1:.3f} r2={r2:.3f}  E={e:.10f} Ha  {kind} <S^2>={spin:.3f}"
            f"  ({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
    e = np.array(energies)
    return {
        "r_OH1": [float(a) for a, _ in pairs],
        "r_OH2": [float(b) for _, b in pairs],
        "energy_hartree": [float(v) for v in e],
        "energy_ev": [float(v) for v in e * units.Hartree],
        "relative_energy_ev": [float(v) for v in (e - e.min()) * units.Hartree],
        "reference": kinds,
        "s_squared": [round(v, 4) for v in s2],
    }


def main() -> None:
    import pyscf

    start = time.perf_counter()
    data = {
        "description": "Rigid O-H scans of water, B3LYP/def2-TZVP (PySCF); see generate_reference.py",
        "method": {
            "program": f"PySCF {pyscf.__version__}",
            "python": platform.python_version(),
            "xc": XC,
            "basis": BASIS,
            "grids_level": GRID_LEVEL,
            "conv_tol_hartree": CONV_TOL,
            "reference": "RKS where stable against UKS, else broken-symmetry UKS (M_S = 0)",
        },
        "geometry": {
            "symbols": ["O", "H", "H"],
            "r_eq_angstrom": R_EQ,
            "angle_eq_degree": ANGLE_EQ,
            "layout": "O at the origin, H1 on +x, H2 in the xy plane",
        },
        "hartree_ev": float(units.Hartree),
        "scans": {
            "oh_stretch": scan("oh_stretch", [(r, R_EQ) for r in STRETCH]),
            "oh_dissociation": scan(
                "oh_dissociation", [(r, R_EQ) for r in DISSOCIATION]
            ),
            "symmetric_stretch": scan("symmetric_stretch", [(r, r) for r in SYMMETRIC]),
        },
    }
    data["wall_time_s"] = round(time.perf_counter() - start, 1)
    text = yaml.safe_dump(data, sort_keys=False, width=100)
    tmp = OUTPUT.with_suffix(".tmp")
    tmp.write_text("# Generated by generate_reference.py; do not edit.\n" + text)
    tmp.replace(OUTPUT)
    print(f"wrote {OUTPUT} in {data['wall_time_s']} s")


if __name__ == "__main__":
    main()
