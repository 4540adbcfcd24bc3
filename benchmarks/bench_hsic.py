"""Benchmark: HSIC sensitivity analysis, large and seed-sized, and against OpenTURNS.

Cases (all in one run; the loss depends on 3 of the d parameters, x uniform in
per-parameter ranges, seed 0):

- ``hsic_large``: ``analyze_samples(x, loss, repeats=1, samples_per_repeat=n)`` on
  n = 10,000 samples x d = 500 parameters with the default kernels, run in a fresh
  subprocess. Reported: wall seconds of the first call (cold, what a user sees) and
  the median of the next ones; the peak resident-memory increase during the calls
  (``ru_maxrss`` after the calls minus the resident size when they started, data
  already in memory; an upper bound when the calls did not raise the process's
  peak); and the ``tracemalloc`` peak of one further call (numpy reports its array
  allocations to tracemalloc). Targets: < 15 s, < 2 GB. Checked first: the 3
  influential parameters rank first and 4 columns agree with the exact direct pass.
- ``hsic_seed_sized``: 500 samples x 12 parameters x 5 repeats drawn from a pool of
  1,000 (the size of a quick screening run). Best and median of many calls;
  target: best < 0.1 s.
- ``hsic_vs_openturns``: n = 2,000, d = 6, target sensitivity as OpenTURNS users
  compute it: ``HSICEstimatorTargetSensitivity`` with ``SquaredExponential([0.3])``
  input kernels on the scaled parameters, the filter ``w(y) = exp(-y^2/(2*0.3^2))``
  on the scaled loss, a ``SquaredExponential`` output kernel whose scale is the
  sample std of ``w`` (as in OpenTURNS' example), and ``HSICUStat``; timed from the
  estimator's construction to ``getHSICIndices()``. Ours: ``hsic_indices`` on the
  same scaled parameters and filtered losses with ``GaussianKernel(scale)``, so the
  values are the same quantity. Reported: time ratio (target >= 50x) and the largest
  difference relative to the largest |index| (must be < 1e-8 before any time is
  reported). Skipped, with a message, when openturns is not installed.

Usage: ``python benchmarks/bench_hsic.py [--quick]``. Prints one JSON line per case
and a table with targets, and appends the JSON lines to
``benchmarks/results/cpu.jsonl``. ``--quick`` runs small sizes (n = 500, d = 20;
OpenTURNS on n = 300 when installed) in a few seconds and appends nothing.
"""

import argparse
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS, git_commit, machine

from parafit.sensitivity import GaussianKernel, analyze_samples
from parafit.sensitivity.hsic import hsic_indices, scale_loss, scale_parameters
from parafit.sensitivity.kernels import ConjunctiveGaussianKernel

INFLUENTIAL = (0, 1, 2)
TARGET_LARGE_S = 15.0
TARGET_LARGE_MEMORY_MB = 2000.0  # "2 GB", taken as 2000 MiB (the stricter reading)
TARGET_SEED_S = 0.1
TARGET_OT_RATIO = 50.0
MIB = 2.0**20


def openturns_version() -> str | None:
    try:
        import openturns
    except ImportError:
        return None
    return str(openturns.__version__)


def samples(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) parameters in ranges [lo, lo + width] and (n,) losses > 0.

    The loss depends on parameters 0, 1 and 2 only (in decreasing strength).
    """
    rng = np.random.default_rng(seed)
    lo = rng.uniform(-2.0, 2.0, d)
    width = rng.uniform(0.5, 3.0, d)
    u = rng.random((n, d))
    x = lo + width * u
    loss = (
        1e-3
        + (u[:, 0] - 0.4) ** 2
        + 0.3 * (u[:, 1] - 0.6) ** 2
        + 0.1 * np.abs(u[:, 2] - 0.5)
    )
    return x, loss


def timings(fn: Callable[[], object], runs: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _maxrss_bytes() -> float:
    """Peak resident set size of this process so far [bytes] (Linux: KiB; macOS: B)."""
    rss = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return rss if sys.platform == "darwin" else rss * 1024.0


def _current_rss_bytes() -> float:
    """Resident set size now [bytes] (Linux ``/proc/self/statm``; else the peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return _maxrss_bytes()
    return float(pages * os.sysconf("SC_PAGE_SIZE"))


# ---- case a: large, measured in a fresh process ------------------------------------
def large_child(n: int, d: int, runs: int) -> dict[str, Any]:
    """Runs in the subprocess: times and memory of ``analyze_samples`` on (n, d)."""
    x, loss = samples(n, d)
    peak_before, rss_before = _maxrss_bytes(), _current_rss_bytes()
    times = []
    result = None
    for _ in range(1 + runs):
        t0 = time.perf_counter()
        result = analyze_samples(x, loss, repeats=1, samples_per_repeat=n, seed=0)
        times.append(time.perf_counter() - t0)
    peak_after = _maxrss_bytes()
    # the calls' peak over the memory in use when they started; exact when the calls
    # raised the process's peak, else (peak_after == peak_before) an upper bound
    rss_increase = peak_after - rss_before
    tracemalloc.start()
    analyze_samples(x, loss, repeats=1, samples_per_repeat=n, seed=0)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert result is not None
    top = [int(i) for i in result.order()[: len(INFLUENTIAL)]]
    # the exact direct pass (O(n^2) per column) on a few columns, same scaling
    cols = [*INFLUENTIAL, d - 1]
    xs = scale_parameters(x, result.x_bounds)
    direct = hsic_indices(xs[:, cols], scale_loss(loss), method="direct")
    ours = result.hsic[0, cols]
    return {
        "first_call_s": times[0],
        "next_calls_s": times[1:],
        "peak_rss_increase_bytes": rss_increase,
        "peak_rss_is_upper_bound": bool(peak_after <= peak_before),
        "tracemalloc_peak_bytes": float(traced_peak),
        "top_parameters": top,
        "max_rel_diff_vs_direct": float(
            np.max(np.abs(ours - direct)) / np.max(np.abs(direct))
        ),
    }


def bench_large(n: int, d: int, runs: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child-large", f"{n},{d},{runs}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"large case failed in its subprocess:\n{out.stderr}")
    child = json.loads(out.stdout.strip().splitlines()[-1])
    if sorted(child["top_parameters"]) != sorted(INFLUENTIAL):
        raise SystemExit(f"large case: wrong ranking {child['top_parameters']}")
    if not child["max_rel_diff_vs_direct"] < 1e-10:
        raise SystemExit(
            f"large case: features vs direct pass differ by "
            f"{child['max_rel_diff_vs_direct']:.3g}"
        )
    median_s = statistics.median(child["next_calls_s"])
    rss_mib = child["peak_rss_increase_bytes"] / MIB
    traced_mib = child["tracemalloc_peak_bytes"] / MIB
    return {
        "name": "hsic_large",
        "n_samples": n,
        "n_params": d,
        "repeats": 1,
        "kernels": "gaussian(0.3) / conjunctive_gaussian(0.3)",
        "first_call_s": child["first_call_s"],
        "median_s": median_s,
        "runs_after_first": len(child["next_calls_s"]),
        "peak_rss_increase_mib": rss_mib,
        "peak_rss_is_upper_bound": child["peak_rss_is_upper_bound"],
        "tracemalloc_peak_mib": traced_mib,
        "max_rel_diff_vs_direct": child["max_rel_diff_vs_direct"],
        "target_s": TARGET_LARGE_S,
        "target_memory_mib": TARGET_LARGE_MEMORY_MB,
        "passed": bool(
            child["first_call_s"] < TARGET_LARGE_S
            and max(rss_mib, traced_mib) < TARGET_LARGE_MEMORY_MB
        ),
    }


# ---- case b: seed-sized ----------------------------------------------------------
def bench_seed(runs: int) -> dict[str, Any]:
    n_pool, d, m, repeats = 1000, 12, 500, 5
    x, loss = samples(n_pool, d)
    result = analyze_samples(x, loss, repeats=repeats, samples_per_repeat=m)
    top = sorted(int(i) for i in result.order()[: len(INFLUENTIAL)])
    if top != sorted(INFLUENTIAL):
        raise SystemExit(f"seed-sized case: wrong ranking {top}")
    t = timings(
        lambda: analyze_samples(x, loss, repeats=repeats, samples_per_repeat=m), runs
    )
    return {
        "name": "hsic_seed_sized",
        "n_pool": n_pool,
        "n_samples": m,
        "n_params": d,
        "repeats": repeats,
        "runs": runs,
        "best_s": min(t),
        "median_s": statistics.median(t),
        "target_s": TARGET_SEED_S,
        "passed": bool(min(t) < TARGET_SEED_S),
    }


# ---- case c: against OpenTURNS -----------------------------------------------------
def bench_openturns(n: int, d: int, runs: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": "hsic_vs_openturns",
        "n_samples": n,
        "n_params": d,
    }
    try:
        import openturns as ot
    except ImportError:
        return {**record, "skipped": "openturns is not installed"}
    x, loss = samples(n, d)
    xs = scale_parameters(x, np.column_stack([x.min(0), x.max(0)]))
    ys = scale_loss(loss)
    gamma = 0.3
    w = ConjunctiveGaussianKernel(gamma).weights(ys)
    scale = float(np.std(w, ddof=1))

    def theirs() -> np.ndarray:
        kernels = [ot.SquaredExponential([0.3]) for _ in range(d)]
        kernels.append(ot.SquaredExponential([scale]))
        filt = ot.SymbolicFunction(["y"], [f"exp(-y^2/(2*{gamma}^2))"])
        est = ot.HSICEstimatorTargetSensitivity(
            kernels, ot.Sample(xs), ot.Sample(ys[:, None]), ot.HSICUStat(), filt
        )
        return np.array(est.getHSICIndices())

    def ours() -> np.ndarray:
        wy = ConjunctiveGaussianKernel(gamma).weights(ys)
        return hsic_indices(xs, wy, kernel_y=GaussianKernel(scale))

    t0 = time.perf_counter()
    ref = theirs()  # slow (O(n^3) per parameter): timed once, no warm-up
    ot_s = time.perf_counter() - t0
    mine = ours()
    rel = float(np.max(np.abs(mine - ref)) / np.max(np.abs(ref)))
    if not rel < 1e-8:
        raise SystemExit(f"mismatch with OpenTURNS: max rel diff {rel:.3g}")
    ours_s = statistics.median(timings(ours, runs))
    return {
        **record,
        "openturns": ot.__version__,
        "output_kernel_scale": scale,
        "filter_gamma": gamma,
        "openturns_s": ot_s,
        "ours_median_s": ours_s,
        "runs_ours": runs,
        "ratio": ot_s / ours_s,
        "max_rel_diff": rel,
        "target_ratio": TARGET_OT_RATIO,
        "passed": bool(ot_s / ours_s >= TARGET_OT_RATIO),
    }


# ---- report ------------------------------------------------------------------------
def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def table(records: list[dict[str, Any]]) -> str:
    lines = ["", "case                 measured                                 target"]
    for r in records:
        name = r["name"]
        if "skipped" in r:
            lines.append(f"{name:<20} skipped: {r['skipped']}")
            continue
        if name == "hsic_large":
            size = f"{r['n_samples']}x{r['n_params']}"
            lines.append(
                f"{name:<20} {size}: first call {r['first_call_s']:.3g} s, "
                f"median {r['median_s']:.3g} s   target < {r['target_s']:g} s  "
                f"{_verdict(r['first_call_s'] < r['target_s'])}"
            )
            mem = max(r["peak_rss_increase_mib"], r["tracemalloc_peak_mib"])
            lines.append(
                f"{'':<20} peak RSS increase {r['peak_rss_increase_mib']:.0f} MiB"
                f"{' (upper bound)' if r['peak_rss_is_upper_bound'] else ''}, "
                f"tracemalloc peak {r['tracemalloc_peak_mib']:.0f} MiB   "
                f"target < {r['target_memory_mib']:g} MiB  "
                f"{_verdict(mem < r['target_memory_mib'])}"
            )
        elif name == "hsic_seed_sized":
            lines.append(
                f"{name:<20} {r['n_samples']}x{r['n_params']}x{r['repeats']}: best "
                f"{1e3 * r['best_s']:.1f} ms, median {1e3 * r['median_s']:.1f} ms   "
                f"target best < {1e3 * r['target_s']:g} ms  {_verdict(r['passed'])}"
            )
        elif name == "hsic_vs_openturns":
            lines.append(
                f"{name:<20} {r['n_samples']}x{r['n_params']}: OpenTURNS "
                f"{r['openturns_s']:.3g} s, ours {1e3 * r['ours_median_s']:.3g} ms, "
                f"ratio {r['ratio']:.0f}x   target >= {r['target_ratio']:g}x  "
                f"{_verdict(r['passed'])}"
            )
            lines.append(f"{'':<20} max relative difference {r['max_rel_diff']:.2e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes, a few seconds; appends nothing to the results",
    )
    parser.add_argument("--child-large", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_large:  # the fresh process of the large case
        n, d, runs = (int(v) for v in args.child_large.split(","))
        print(json.dumps(large_child(n, d, runs)))
        return 0
    if args.quick:
        large, seed_runs, ot_size, ot_runs = (500, 20, 2), 10, (300, 6), 5
    else:
        large, seed_runs, ot_size, ot_runs = (10_000, 500, 2), 50, (2000, 6), 20
    common = {
        "device": "cpu",
        "machine": machine(openturns=openturns_version()),
        "git_commit": git_commit(),
        "quick": args.quick,
    }
    records = [
        bench_large(*large),
        bench_seed(seed_runs),
        bench_openturns(*ot_size, ot_runs),
    ]
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    records = [{**r, **common, "timestamp": stamp} for r in records]
    for record in records:
        print(json.dumps(record))
    print(table(records))
    if not args.quick:  # quick runs (the test suite) do not touch the recorded results
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as fh:
            for record in records:
                fh.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
