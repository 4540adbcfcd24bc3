"""ReaxFF fits on the published benchmark sets: CMA-ES and L-BFGS-B from ``ffield_lit``.

For ``cobalt`` and ``disulfide`` (``shared/data/reaxff-benchmarks``) this script

1. imports the classic training set (``geo``, ``trainset.in``; disulfide also its
   ``valSet`` as validation set) with ``parafit import --reaxff``'s reader, builds the
   parameter interface from ``ffield_lit`` with the ``params`` file's active parameters
   and ranges, and writes an ordinary ``parafit.yaml`` (engine ``reaxff``);
2. reports the training (and validation) loss of ``ffield_lit`` and of the published
   ``ffield_best`` (same jobs, same data set, same engine);
3. runs the optimization task (``parafit optimize``) with CMA-ES or with L-BFGS-B
   (exact JAX gradients) within an evaluation and time budget, and reports the best
   training loss, the validation loss at the best validation point, evaluations and
   wall time (set-up and compilation included).

One JSON line per run goes to stdout and ``benchmarks/results/cpu.jsonl``
(``--quick``: tiny budget, nothing recorded). Example::

    python benchmarks/fit_reaxff.py --set cobalt --optimizer cma --max-evaluations 3000

With ``--frozen-prefit SECONDS`` the run has two stages: CMA-ES with frozen geometries
(every relaxation a single point at its input geometry, ``frozen_geometries: true``)
for that long, then ``--optimizer`` with the relaxations from its best point; how
cobalt gets below ``ffield_best`` (docs/reaxff.md)::

    python benchmarks/fit_reaxff.py --set cobalt --frozen-prefit 2400 \
        --optimizer l-bfgs-b --gradient finite-difference --time-limit 2700
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from _common import RESULTS, git_commit, machine

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "reaxff-benchmarks"


def prepare(
    name: str,
    workdir: Path,
    optimizer: dict,
    exit_conditions: dict,
    engine_options: dict | None = None,
    *,
    interface_path: Path | None = None,
    frozen_geometries: bool = False,
    filename: str = "parafit.yaml",
    seed: int = 0,
) -> Path:
    """Write the job collection, data sets, interface and an input file; return it.

    ``interface_path``: start from this parameter interface (e.g. an earlier stage's
    ``best/parameter_interface.yaml``) instead of ``ffield_lit`` with the ``params``
    file. ``frozen_geometries``: geometry optimizations run as single points.
    """
    from parafit.io.reaxff_import import import_reaxff_directory
    from parafit.io.reaxff_params import apply_params_file
    from parafit.parameters import ParameterInterface
    from parafit.reaxff import interface_from_ffield, read_ffield

    source = DATA / name
    jobs, training, validation = import_reaxff_directory(source)
    jobs.save(workdir / "job_collection.yaml")
    training.save(workdir / "training_set.yaml")
    if interface_path is None:
        ff = read_ffield(source / "ffield_lit")
        interface = apply_params_file(interface_from_ffield(ff), ff, source / "params")
    else:
        interface = ParameterInterface.load(interface_path)
    interface.save(workdir / "parameter_interface.yaml")
    config: dict = {
        "task": "optimization",
        "job_collection": "job_collection.yaml",
        "parameter_interface": "parameter_interface.yaml",
        "engine": {
            "type": "reaxff",
            "ffield": str(source / "ffield_lit"),
            **(engine_options or {}),
        },
        "training_set": "training_set.yaml",
        "optimizers": [optimizer],
        "exit_conditions": exit_conditions,
        "checkpoint": {"every_seconds": 300},
        "frozen_geometries": frozen_geometries,
        "seed": seed,
    }
    if validation is not None:
        validation.save(workdir / "validation_set.yaml")
        config["validation_set"] = {"path": "validation_set.yaml", "every": 10}
    path = workdir / filename
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def reference_losses(input_file: Path, name: str) -> dict[str, float | None]:
    """Training/validation losses of ``ffield_lit`` and ``ffield_best`` (unclipped)."""
    from parafit.config import load_config
    from parafit.loss import compute_loss
    from parafit.reaxff import interface_from_ffield, read_ffield
    from parafit.tasks._setup import build_problem

    problem = build_problem(load_config(input_file))
    objective = problem.objective
    out: dict[str, float | None] = {}
    for label in ("lit", "best"):
        other = interface_from_ffield(read_ffield(DATA / name / f"ffield_{label}"))
        values = np.array(
            [other[n].value for n in objective.interface.names], dtype=float
        )[None]
        results = objective.run_engine(values, validation=objective.has_validation)
        p = objective.training.predict(results)
        out[f"training_loss_{label}"] = float(
            compute_loss(p, objective.training, objective.loss).loss[0]
        )
        if objective.validation is not None:
            pv = objective.validation.predict(results)
            out[f"validation_loss_{label}"] = float(
                compute_loss(pv, objective.validation, objective.validation_loss).loss[
                    0
                ]
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("cobalt", "disulfide"), default="cobalt")
    parser.add_argument(
        "--optimizer", choices=("cma", "l-bfgs-b"), default="cma", help="optimizer"
    )
    parser.add_argument("--max-evaluations", type=int, default=2000)
    parser.add_argument("--time-limit", type=float, default=1800.0, help="seconds")
    parser.add_argument(
        "--gradient",
        choices=("auto", "exact", "finite-difference"),
        default="auto",
        help="L-BFGS-B gradient: exact JAX jacobians or one batch of n_active+1 points",
    )
    parser.add_argument("--popsize", type=int, default=None, help="CMA-ES population")
    parser.add_argument("--sigma0", type=float, default=0.1, help="CMA-ES step size")
    parser.add_argument(
        "--max-chunk",
        type=int,
        default=None,
        help="engine max_chunk: parameter vectors per compiled call (default 64)",
    )
    parser.add_argument(
        "--frozen-prefit",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first run CMA-ES this long with frozen geometries (relaxations as "
        "single points), then --optimizer from its best point with relaxations",
    )
    parser.add_argument("--prefit-sigma0", type=float, default=0.3)
    parser.add_argument("--prefit-popsize", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0, help="optimizer seed")
    parser.add_argument("--output", type=Path, default=None, help="keep results here")
    parser.add_argument(
        "--quick", action="store_true", help="tiny budget, not recorded"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.max_evaluations, args.time_limit = 20, 300.0

    import parafit

    optimizer: dict = {"type": args.optimizer}
    if args.optimizer == "cma":
        optimizer["sigma0"] = args.sigma0
        if args.popsize:
            optimizer["popsize"] = args.popsize
    else:
        optimizer["gradient"] = args.gradient
    exit_conditions = {
        "max_evaluations": args.max_evaluations,
        "time_limit": args.time_limit,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        engine_options = {} if args.max_chunk is None else {"max_chunk": args.max_chunk}
        prefit: dict | None = None
        start_interface: Path | None = None
        if args.frozen_prefit > 0:
            prefit_optimizer = {
                "type": "cma",
                "sigma0": args.prefit_sigma0,
                "popsize": args.prefit_popsize,
            }
            prefit_input = prepare(
                args.set,
                work,
                prefit_optimizer,
                {"max_evaluations": 10**7, "time_limit": args.frozen_prefit},
                engine_options,
                frozen_geometries=True,
                filename="prefit.yaml",
                seed=args.seed,
            )
            prefit_dir = (
                args.output.with_name(args.output.name + "_prefit")
                if args.output
                else work / "prefit_results"
            )
            t0 = time.perf_counter()
            pre = parafit.run_task(prefit_input, prefit_dir, overwrite=True)
            start_interface = work / "prefit_best_interface.yaml"
            pre.interface.save(start_interface)
            prefit = {
                "optimizer": prefit_optimizer,
                "best_frozen_training_loss": float(pre.best_loss),
                "n_evaluations": int(pre.n_evaluations),
                "wall_s": round(time.perf_counter() - t0, 1),
            }
            print(f"frozen-geometry prefit: {json.dumps(prefit)}", file=sys.stderr)
        input_file = prepare(
            args.set,
            work,
            optimizer,
            exit_conditions,
            engine_options,
            interface_path=start_interface,
            seed=args.seed,
        )
        t0 = time.perf_counter()
        refs = reference_losses(input_file, args.set)
        t_refs = time.perf_counter() - t0
        out_dir = args.output or (work / "results")
        t0 = time.perf_counter()
        result = parafit.run_task(input_file, out_dir, overwrite=True)
        wall = time.perf_counter() - t0
    record = {
        "name": f"fit_reaxff_{args.set}_{args.optimizer.replace('-', '_')}"
        + ("_fd" if optimizer.get("gradient") == "finite-difference" else "")
        + ("_after_frozen_prefit" if prefit else ""),
        "set": args.set,
        "optimizer": optimizer,
        "seed": args.seed,
        "max_chunk": args.max_chunk,
        "n_active": int(result.interface.n_active),
        "max_evaluations": args.max_evaluations,
        "time_limit_s": args.time_limit,
        **refs,
        "best_training_loss": float(result.best_loss),
        "best_evaluation": int(result.best_evaluation),
        "best_validation_loss": result.best_validation_loss,
        "n_evaluations": int(result.n_evaluations),
        "stop_reasons": result.stop_reasons,
        "wall_s": round(wall, 1),
        "frozen_prefit": prefit,
        "total_wall_s": round(wall + (prefit["wall_s"] if prefit else 0.0), 1),
        "reference_losses_s": round(t_refs, 1),
        "reached_best": bool(result.best_loss <= refs["training_loss_best"]),
        "commit": git_commit(),
        "machine": machine(),
    }
    line = json.dumps(record, default=str)
    print(line)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as fh:
            fh.write(line + "\n")
    lit, best = refs["training_loss_lit"], refs["training_loss_best"]
    print(
        f"\n{args.set} / {args.optimizer}: training loss ffield_lit {lit:.6g}, "
        f"ffield_best {best:.6g}, parafit {result.best_loss:.6g} after "
        f"{result.n_evaluations} evaluations in {wall:.0f} s "
        f"({'at or below' if record['reached_best'] else 'above'} ffield_best)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
