"""Benchmark: LJEngine on a batch of parameter vectors vs ASE's LennardJones in a loop.

Case: 256-atom rattled fcc argon (``bulk('Ar', 'fcc', a=5.26, cubic=True).repeat(4)``,
positions + N(0, 0.05 Å), seed 1), cutoff 8.5 Å, 64 parameter sets (eps, rmin) drawn
with seed 0. Ours: one ``LJEngine.setup`` (pair list and pair sums, timed separately),
then the batched evaluation of all 64 vectors (energies, forces, stress). ASE: for each
set a new ``LennardJones(sigma=rmin/2**(1/6), epsilon=eps, rc=8.5, smooth=False)``,
energy and forces. The energies must agree to 1e-10 (relative) and the forces to 1e-10
eV/Å before any time is reported.

Usage: ``python benchmarks/bench_lj.py [--quick]``. Prints one JSON line per case and
appends it to ``benchmarks/results/cpu.jsonl``.
"""

import argparse
import datetime
import json
import statistics
import sys
import time

import ase
import numpy as np
from _common import RESULTS, git_commit, machine
from ase.build import bulk
from ase.calculators.lj import LennardJones

from parafit.engines.lj import LJEngine
from parafit.jobs import Job

CUTOFF = 8.5


def argon_256() -> ase.Atoms:
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(4)
    atoms.positions += np.random.default_rng(1).normal(0.0, 0.05, atoms.positions.shape)
    return atoms


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ase_loop(atoms: ase.Atoms, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    energies, forces = np.empty(len(batch)), np.empty((len(batch), len(atoms), 3))
    for k, (eps, rmin) in enumerate(batch):
        a = atoms.copy()
        a.calc = LennardJones(
            sigma=rmin / 2 ** (1 / 6), epsilon=eps, rc=CUTOFF, smooth=False
        )
        energies[k] = a.get_potential_energy()
        forces[k] = a.get_forces()
    return energies, forces


def bench_batch(
    n_vectors: int, repeats_ours: int, repeats_ase: int, quick: bool
) -> dict[str, object]:
    atoms = argon_256()
    rng = np.random.default_rng(0)
    batch = np.column_stack(
        [rng.uniform(0.008, 0.012, n_vectors), rng.uniform(3.6, 4.0, n_vectors)]
    )
    engine = LJEngine(["Ar"], cutoff=CUTOFF)
    names = ["Ar.Ar:eps", "Ar.Ar:rmin"]

    t0 = time.perf_counter()
    fn = engine.setup([Job("argon", atoms)], names)
    setup_s = time.perf_counter() - t0

    ours = fn(batch)["argon"]
    ref_energy, ref_forces = ase_loop(atoms, batch)
    energy_rel = float(np.max(np.abs(ours.energy - ref_energy) / np.abs(ref_energy)))
    force_abs = float(np.max(np.abs(ours.forces - ref_forces)))
    if not (energy_rel < 1e-10 and force_abs < 1e-10):
        raise SystemExit(
            f"mismatch with ASE: energy rel {energy_rel:.3g}, forces abs {force_abs:.3g}"
        )

    ours_s = median_time(lambda: fn(batch), repeats_ours)
    ase_s = median_time(lambda: ase_loop(atoms, batch), repeats_ase)
    return {
        "name": "lj_batch_vs_ase_loop",
        "n_atoms": len(atoms),
        "n_vectors": n_vectors,
        "cutoff_angstrom": CUTOFF,
        "device": "cpu",
        "machine": machine(ase=ase.__version__),
        "git_commit": git_commit(),
        "quick": quick,
        "setup_s": setup_s,
        "repeats_ours": repeats_ours,
        "repeats_ase": repeats_ase,
        "ours_median_s": ours_s,
        "ase_median_s": ase_s,
        "ratio": ase_s / ours_s,
        "ratio_including_setup": ase_s / (ours_s + setup_s),
        "max_rel_energy_diff": energy_rel,
        "max_abs_force_diff_ev_per_angstrom": force_abs,
        "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats (under ~30 s)"
    )
    args = parser.parse_args(argv)
    repeats_ours, repeats_ase = (5, 1) if args.quick else (50, 5)
    records = [bench_batch(64, repeats_ours, repeats_ase, args.quick)]
    for record in records:
        print(json.dumps(record))
    if not args.quick:  # quick runs (the test suite) do not touch the recorded results
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as fh:
            for record in records:
                fh.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
