"""The ReaxFF water example, end to end: sensitivity first, then optimization.

1. Sampling: ``--samples`` parameter vectors (default 2000) drawn uniformly within the
   ranges of the 12 active H.O bond parameters, each scored on the training set.
2. Sensitivity: HSIC ranking from ``--repeats`` subsets of ``--per-repeat`` samples
   (default 5 x 500, the default kernels); plots in ``<output>/sensitivity/``.
3. The top-3 interface: the three most sensitive parameters active, the rest at their
   force-field values (``<output>/parameter_interface_top3.yaml``).
4. ``--runs`` CMA-ES optimizations (default 10) with all 12 parameters active and as
   many with the top 3, all from the force field's values, each run its own seed,
   ``--evaluations`` loss evaluations each (the runs of one group are evaluated
   together, batched).
5. ``<output>/convergence.png`` (best loss vs evaluations, one line per run, the two
   groups in two colours) and ``<output>/report.md`` (ranked table, final losses).

Usage (from the repository root)::

    python examples/reaxff_water/run.py -o results/reaxff_water

``--quick`` shrinks every number for a smoke test (as the test suite does).
"""

import argparse
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PI_PARAMETERS = tuple(
    f"H.O:{n}" for n in ("D_e^pi", "D_e^pipi", "p_bo3", "p_bo4", "p_bo5", "p_bo6")
)
SIGMA_PARAMETERS = ("H.O:D_e^sigma", "H.O:p_bo1", "H.O:p_bo2")
# The ParAMS sensitivity tutorial's findings (its documentation, 2000 samples, 5 x 500).
TUTORIAL = {
    "H.O:p_bo2": "about 0.6",
    "H.O:D_e^sigma": "about 0.2",
    "H.O:p_bo1": "about 0.16",
    "H.O:p_be1": "< 0.01",
    "H.O:p_be2": "< 0.01",
    "H.O:p_ovun1": "< 0.01",
} | {name: "< 0.01" for name in PI_PARAMETERS}


@dataclass
class GroupRuns:
    """The CMA-ES runs of one group (12 active or the top 3)."""

    label: str
    output: Path
    curves: list[
        tuple[np.ndarray, np.ndarray]
    ]  # per run: (evaluations, best loss so far)
    final: np.ndarray  # (n_runs,) best training loss of each run
    validation: float | None  # best validation loss of the whole group
    initial: float  # training loss of the force field's values
    seconds: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("results/reaxff_water")
    )
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--per-repeat", type=int, default=500)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--evaluations", type=int, default=1200, help="per CMA-ES run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.repeats, args.per_repeat = 300, 3, 150
        args.runs, args.evaluations = 2, 150
    return args


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    from parafit.config import load_config
    from parafit.progress import ProgressBar
    from parafit.sensitivity.select import select_interface
    from parafit.tasks import optimization, sensitivity

    args = parse_args(argv)
    console = Console(stderr=True, highlight=False)
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    out: Path = args.output
    out.mkdir(parents=True, exist_ok=True)
    show = not args.quiet and console.is_terminal
    timings: dict[str, float] = {}

    # ---- 1-2: sampling and sensitivity ----------------------------------------------
    config = load_config(HERE / "sensitivity.yaml")
    config = config.model_copy(
        update={
            "seed": args.seed,
            "sensitivity": config.sensitivity.model_copy(
                update={
                    "number_samples": args.samples,
                    "repeats": args.repeats,
                    "samples_per_repeat": args.per_repeat,
                }
            ),
        }
    )
    start = time.perf_counter()
    with ProgressBar(console, disable=not show, label="sampling") as bar:
        clock = _LastEvent(bar)
        run = sensitivity.run(
            config, out / "sensitivity", overwrite=True, progress=clock
        )
    timings["sampling (incl. compilation)"] = clock.last - start
    timings["sensitivity analysis and plots"] = time.perf_counter() - clock.last
    result = run.result
    for name in ("sensitivity_per_parameter.png", "sensitivity_summary.png"):
        shutil.copyfile(out / "sensitivity" / "sensitivity" / name, out / name)
    console.print(
        f"sampled {args.samples} vectors in {timings['sampling (incl. compilation)']:.1f} s; "
        f"ranking: {', '.join(result.get_ordered_parameters()[:5])}, ..."
    )

    # ---- 3: the top-N interface ------------------------------------------------------
    top_path = out / f"parameter_interface_top{args.top}.yaml"
    chosen, _ = select_interface(
        out / "sensitivity",
        top_path,
        top=args.top,
        interface=HERE / "parameter_interface.yaml",
    )
    console.print(f"top {args.top}: {', '.join(chosen)}")

    # ---- 4: CMA-ES, all active vs the top N ----------------------------------------------
    groups = []
    for label, interface in (
        ("12 active", HERE / "parameter_interface.yaml"),
        (f"top {args.top}", top_path),
    ):
        base = load_config(HERE / "optimize.yaml")
        cma = dict(base.optimizers[0], max_evaluations=args.evaluations)
        cfg = base.model_copy(
            update={
                "parameter_interface": interface.resolve(),
                "optimizers": [dict(cma) for _ in range(args.runs)],
                "exit_conditions": base.exit_conditions.model_copy(
                    update={"max_evaluations": args.runs * args.evaluations + 1}
                ),
                "seed": args.seed,
            }
        )
        directory = out / (
            "optimize_all" if label == "12 active" else f"optimize_top{args.top}"
        )
        start = time.perf_counter()
        with ProgressBar(
            console, disable=not show, label=f"CMA-ES x{args.runs}, {label}"
        ) as bar:
            res = optimization.run(cfg, directory, overwrite=True, progress=bar)
        seconds = time.perf_counter() - start
        groups.append(collect(label, directory, args.runs, res, seconds))
        console.print(
            f"{label}: best {res.best_loss:.4g} after {res.n_evaluations} evaluations "
            f"({seconds:.1f} s)"
        )
        timings[f"CMA-ES, {label}"] = seconds

    at_best = evaluate_best_points(groups)

    # ---- 5: plots and report ---------------------------------------------------------------
    plot_convergence(groups, out / "convergence.png")
    plot_scans(at_best, out / "scans.png")
    report = write_report(out, result, chosen, groups, timings, args, at_best)
    console.print(f"report: {report}")
    return 0


@dataclass
class PointResult:
    """Losses and scan predictions of one parameter vector."""

    losses: dict[str, float]  # training, validation and each validation entry (SSE)
    scans: dict[str, tuple[np.ndarray, np.ndarray]]  # job id -> (reference, prediction)


def evaluate_best_points(groups: list[GroupRuns]) -> dict[str, PointResult]:
    """The force field's values and each group's best training point on the training
    and the validation set (losses, per-entry validation losses, scan predictions)."""
    from parafit.config import load_config
    from parafit.parameters import ParameterInterface
    from parafit.tasks._setup import build_problem

    problem = build_problem(load_config(HERE / "optimize.yaml"))
    objective, interface = problem.objective, problem.interface
    points = {"force field as published": interface.values}
    for g in groups:
        best = g.output / "optimization" / "training_set_results" / "best"
        points[f"best, {g.label}"] = ParameterInterface.load(
            best / "parameter_interface.yaml"
        ).values
    active = [interface.names.index(n) for n in interface.active_names]
    out = {}
    for label, values in points.items():
        x = interface.to_scaled(np.asarray(values)[active])
        ev = objective.evaluate(x[None], validation=True, details="all")
        losses = {
            "training": float(ev.training.loss[0]),
            "validation": float(ev.validation.loss[0]),
        }
        scans = {}
        for kind, data in (
            ("training", objective.training),
            ("validation", objective.validation),
        ):
            result = getattr(ev, kind)
            starts = list(data.entry_start[1:])
            pieces = zip(
                data.expressions,
                np.split(data.reference, starts),
                np.split(result.predictions[0], starts),
                np.split(result.residuals[0], starts),
                strict=True,
            )
            for expression, reference, prediction, residual in pieces:
                job_id = expression.split("'")[1]
                scans[job_id] = (reference, prediction)
                if kind == "validation":
                    losses[job_id] = float(np.sum(residual**2))
        out[label] = PointResult(losses, scans)
    return out


class _LastEvent:
    """Passes progress events on and notes the time of the last one."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.last = time.perf_counter()

    def __call__(self, event) -> None:
        self.last = time.perf_counter()
        self.inner(event)


def collect(label: str, directory: Path, n_runs: int, res, seconds: float) -> GroupRuns:
    """Per-run convergence curves from the group's ``evaluations.h5``."""
    from parafit.recorder import read_evaluations

    ev = read_evaluations(directory / "optimization")
    owner = np.asarray(ev["optimizer"])
    loss = np.asarray(ev["training_loss"], dtype=float)
    initial = float(loss[owner == -1][0])
    curves, final = [], []
    for i in range(n_runs):
        mine = np.where(np.isfinite(loss[owner == i]), loss[owner == i], np.inf)
        best = np.minimum.accumulate(np.concatenate([[initial], mine]))
        curves.append((np.arange(best.size), best))
        final.append(best[-1])
    return GroupRuns(
        label,
        directory,
        curves,
        np.array(final),
        res.best_validation_loss,
        initial,
        seconds,
    )


def plot_convergence(groups: list[GroupRuns], path: Path) -> Path:
    """Best training loss vs evaluations of each run, one colour per group."""
    import io

    from matplotlib.figure import Figure

    from parafit._atomic import write_bytes_atomic

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for group, colour in zip(groups, ("tab:blue", "tab:orange"), strict=False):
        for k, (x, y) in enumerate(group.curves):
            ax.plot(
                x,
                y,
                color=colour,
                lw=1.0,
                alpha=0.8,
                label=group.label if k == 0 else None,
            )
    ax.set_yscale("log")
    ax.set_xlabel("loss evaluations of the run")
    ax.set_ylabel("best training loss (SSE)")
    ax.set_title("CMA-ES on the water O-H scan: all 12 vs the top parameters")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150)
    write_bytes_atomic(path, buf.getvalue())
    return path


def plot_scans(points: dict[str, PointResult], path: Path) -> Path:
    """The three scans: DFT, the force field's values and each group's best training
    point (the same parameters in all three panels)."""
    import io

    import yaml
    from matplotlib.figure import Figure

    from parafit._atomic import write_bytes_atomic

    scans = yaml.safe_load((HERE / "reference.yaml").read_text())["scans"]
    panels = (
        ("oh_stretch", "training: one O-H stretched"),
        ("oh_dissociation", "validation: O-H bond breaking"),
        ("symmetric_stretch", "validation: both O-H stretched"),
    )
    styles = {
        "force field as published": {"color": "0.45", "ls": "--"},
    }
    colours = iter(("tab:blue", "tab:orange", "tab:green"))
    fig = Figure(figsize=(14.0, 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels))
    for ax, (job_id, title) in zip(axes, panels, strict=True):
        r = np.asarray(scans[job_id]["r_OH1"])
        reference = next(iter(points.values())).scans[job_id][0]
        ax.plot(r, reference, "ko", ms=4, label="B3LYP/def2-TZVP", zorder=3)
        for label, point in points.items():
            if label not in styles:
                styles[label] = {"color": next(colours), "ls": "-"}
            style = styles[label]
            ax.plot(
                r,
                point.scans[job_id][1],
                marker=".",
                ms=3,
                lw=1.3,
                label=label,
                **style,
            )
        ax.set_xlabel("O-H distance [Å]")
        ax.set_ylabel("relative energy [kcal/mol]")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    write_bytes_atomic(path, buf.getvalue())
    return path


def evaluations_to_reach_curve(
    x: np.ndarray, y: np.ndarray, target: float
) -> int | None:
    """The first evaluation of one run whose best loss is at or below ``target``."""
    hit = np.flatnonzero(y <= target)
    return int(x[hit[0]]) if hit.size else None


def evaluations_to_reach(group: GroupRuns, target: float) -> list[int | None]:
    """Per run, the first evaluation whose best loss is at or below ``target``."""
    return [evaluations_to_reach_curve(x, y, target) for x, y in group.curves]


def write_report(out: Path, result, chosen, groups, timings, args, at_best) -> Path:
    """``report.md``: settings, ranked table with the tutorial's values, final losses."""
    from parafit._atomic import write_text_atomic

    mean, std = result.sensitivity_mean, result.sensitivity_std
    order = result.order()
    rank = {result.labels[i]: r + 1 for r, i in enumerate(order)}
    lines = [
        "# ReaxFF water: sensitivity, then optimization",
        "",
        f"Sampling: {result.n_samples} samples ({result.n_dropped} dropped for a non-finite "
        f"loss); HSIC from {result.repeats} repeats of {result.samples_per_repeat} samples; "
        f"kernels {result.kernel_x} (parameters), {result.kernel_y} (loss).",
        "",
        "## Ranking",
        "",
        "| rank | parameter | sensitivity (mean) | std over repeats | ParAMS tutorial |",
        "|---:|---|---:|---:|---|",
    ]
    for r, i in enumerate(order):
        name = result.labels[i]
        lines.append(
            f"| {r + 1} | `{name}` | {mean[i]:.4f} | {std[i]:.4f} | {TUTORIAL.get(name, '')} |"
        )
    pi_ranks = sorted(rank[p] for p in PI_PARAMETERS if p in rank)
    n = len(result.labels)
    lines += [
        "",
        f"Top {len(chosen)}: {', '.join(f'`{c}`' for c in chosen)}.",
        f"Pi-bond parameters: ranks {pi_ranks} of {n}; largest mean sensitivity "
        f"{max(mean[result.labels.index(p)] for p in PI_PARAMETERS):.2e}.",
        f"Top 3 all sigma-bond parameters: {set(chosen[:3]) <= set(SIGMA_PARAMETERS)}.",
        "",
        "## CMA-ES runs",
        "",
        f"{args.runs} runs per group, {args.evaluations} loss evaluations each, all from the "
        "force field's values (training loss "
        f"{groups[0].initial:.4g}).",
        "",
        "| group | best | median | worst | best validation loss | wall time [s] |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for g in groups:
        val = "-" if g.validation is None else f"{g.validation:.4g}"
        lines.append(
            f"| {g.label} | {g.final.min():.4g} | {np.median(g.final):.4g} | "
            f"{g.final.max():.4g} | {val} | {g.seconds:.1f} |"
        )
    target = 1.05 * min(g.final.min() for g in groups) + 1e-12
    lines += [
        "",
        f"Evaluations until a run's best loss is within 5% of the best of all runs "
        f"({target:.4g}); '-' = never:",
        "",
        "| group | per run | median |",
        "|---|---|---:|",
    ]
    for g in groups:
        hits = evaluations_to_reach(g, target)
        done = [h for h in hits if h is not None]
        median = f"{np.median(done):.0f}" if len(done) > len(hits) / 2 else "-"
        per = ", ".join("-" if h is None else str(h) for h in hits)
        lines.append(f"| {g.label} | {per} | {median} |")
    lines += [
        "",
        "Evaluations until a run's best loss is within 1% of its own final best "
        "(how fast each run settles):",
        "",
        "| group | median | max |",
        "|---|---:|---:|",
    ]
    for g in groups:
        own = [
            evaluations_to_reach_curve(x, y, 1.01 * y[-1] + 1e-12) for x, y in g.curves
        ]
        lines.append(f"| {g.label} | {np.median(own):.0f} | {max(own)} |")
    columns = list(next(iter(at_best.values())).losses)
    lines += [
        "",
        "Losses (SSE) at the force field's values and at each group's best training point; "
        "the validation loss and its two entries:",
        "",
        "| parameters | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for label, point in at_best.items():
        lines.append(
            f"| {label} | "
            + " | ".join(f"{point.losses[c]:.4g}" for c in columns)
            + " |"
        )
    lines += ["", "Final training loss of each run:", ""]
    for g in groups:
        lines.append(f"- {g.label}: " + ", ".join(f"{v:.4g}" for v in g.final))
    lines += ["", "## Wall time", "", "| step | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    lines += [
        "",
        "Plots: `sensitivity_per_parameter.png`, `sensitivity_summary.png` (HSIC), "
        "`convergence.png` (best loss vs evaluations of every run), `scans.png` (the scans "
        "with the best parameters of each group). Full results: `sensitivity/`, "
        "`optimize_all/`, `optimize_top3/`.",
        "",
    ]
    path = out / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path


if __name__ == "__main__":
    sys.exit(main())
