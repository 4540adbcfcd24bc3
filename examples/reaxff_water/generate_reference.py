"""Make the DFT reference data of the ReaxFF water example (reference.yaml).

Two rigid scans of one water molecule, computed with PySCF (https://pyscf.org):

* ``oh_stretch`` (training): one O-H bond from 0.80 to 1.50 Å in steps of 0.025 Å
  (29 points); the other O-H bond and the H-O-H angle stay at the experimental
  equilibrium geometry.
* ``symmetric_stretch`` (validation): both O-H bonds together, 0.85 to 1.25 Å in
  steps of 0.05 Å (9 points), angle fixed.

Equilibrium geometry: r(O-H) = 0.9572 Å, angle(H-O-H) = 104.52 degrees (the
experimental r_e of W. S. Benedict, N. Gailar, E. K. Plyler, J. Chem. Phys. 24, 1139
(1956), as tabulated in NIST CCCBDB). O at the origin, H1 on +x, H2 in the xy plane;
atom order O, H1, H2.

Electronic structure: restricted Kohn-Sham, B3LYP (PySCF's ``b3lyp``), def2-TZVP,
grids level 4, SCF converged to 1e-10 Ha. Each point is checked for an RKS -> UKS
instability (``stability(external=True)``); a point where the closed-shell solution is
unstable would be a broken-bond region that RKS describes badly, and the script stops
there rather than storing it. The scans end at 1.50 Å for that reason.

Energies are stored in Hartree and in eV (CODATA 2018 Hartree = 27.211386245988 eV,
ASE's ``units.Hartree``) relative to nothing (absolute); the data sets compare shapes
of the scans (``pes(..., relative_to='min')``), so the absolute offset never enters.

Run (about 2-3 minutes on 2 cores; needs ``pip install pyscf``):

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
TRAINING = np.round(np.arange(0.80, 1.50 + 1e-9, 0.025), 4)
VALIDATION = np.round(np.arange(0.85, 1.25 + 1e-9, 0.05), 4)


def water(r1: float, r2: float, angle: float = ANGLE_EQ) -> np.ndarray:
    """(3, 3) positions [Å] of O, H1, H2 with O-H1 = r1, O-H2 = r2."""
    t = np.radians(angle)
    return np.array(
        [[0.0, 0.0, 0.0], [r1, 0.0, 0.0], [r2 * np.cos(t), r2 * np.sin(t), 0.0]]
    )


def dft_energy(positions: np.ndarray) -> tuple[float, bool]:
    """B3LYP/def2-TZVP total energy [Ha] and whether the RKS solution is stable."""
    from pyscf import dft, gto

    mol = gto.M(
        atom=[(s, tuple(p)) for s, p in zip("OHH", positions, strict=True)],
        basis=BASIS,
        unit="Angstrom",
        verbose=0,
    )
    mf = dft.RKS(mol)
    mf.xc = XC
    mf.grids.level = GRID_LEVEL
    mf.conv_tol = CONV_TOL
    energy = mf.kernel()
    if not mf.converged:
        raise RuntimeError(f"SCF did not converge at {positions.tolist()}")
    _, mo_external = mf.stability(internal=True, external=True, verbose=0)
    stable = mo_external is None or np.allclose(
        np.asarray(mo_external[0]), mf.mo_coeff, atol=1e-6
    )
    return float(energy), bool(stable)


def scan(name: str, pairs: list[tuple[float, float]]) -> dict:
    energies, stable = [], []
    for r1, r2 in pairs:
        start = time.perf_counter()
        e, ok = dft_energy(water(r1, r2))
        energies.append(e)
        stable.append(ok)
        print(
            f"{name:18s} r1={r1:.3f} r2={r2:.3f}  E={e:.10f} Ha  "
            f"{'stable' if ok else 'RKS UNSTABLE'}  ({time.perf_counter() - start:.1f} s)",
            flush=True,
        )
        if not ok:
            raise SystemExit(
                f"{name}: the RKS solution is unstable at r1={r1}, r2={r2}; shorten the scan."
            )
    e = np.array(energies)
    return {
        "r_OH1": [float(a) for a, _ in pairs],
        "r_OH2": [float(b) for _, b in pairs],
        "energy_hartree": [float(v) for v in e],
        "energy_ev": [float(v) for v in e * units.Hartree],
        "relative_energy_ev": [float(v) for v in (e - e.min()) * units.Hartree],
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
            "reference": "restricted Kohn-Sham, checked stable against UKS at every point",
        },
        "geometry": {
            "symbols": ["O", "H", "H"],
            "r_eq_angstrom": R_EQ,
            "angle_eq_degree": ANGLE_EQ,
            "layout": "O at the origin, H1 on +x, H2 in the xy plane",
        },
        "hartree_ev": float(units.Hartree),
        "scans": {
            "oh_stretch": scan("oh_stretch", [(r, R_EQ) for r in TRAINING]),
            "symmetric_stretch": scan("symmetric_stretch", [(r, r) for r in VALIDATION]),
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
