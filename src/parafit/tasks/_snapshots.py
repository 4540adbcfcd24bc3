"""Build the contents of ``initial/``, ``best/`` and ``latest/`` for one point."""

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from parafit.recorder import Snapshot

__all__ = ["make_snapshot", "stats_table", "stats_row"]


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.floating | np.integer):
        return value.item()
    return value


def stats_row(compiled: Any, predictions: np.ndarray) -> dict[str, float]:
    """``{<extractor>_mae: ..., <extractor>_rmse: ...}`` for one point's predictions."""
    from parafit.loss import extractor_statistics

    row: dict[str, float] = {}
    for name, st in extractor_statistics(predictions, compiled).items():
        row[f"{name}_mae"] = float(st.mae)
        row[f"{name}_rmse"] = float(st.rmse)
    return row


def stats_columns(compiled: Any) -> list[str]:
    names = sorted(set(compiled.extractor_of_entry))
    return [f"{n}_{k}" for n in names for k in ("mae", "rmse")]


def stats_table(
    compiled: Any, predictions: np.ndarray, contributions: np.ndarray, loss: float
) -> str:
    """The ``stats.txt`` table: per extractor N, MAE, RMSE (display units), share of the loss."""
    from parafit.loss import extractor_statistics

    stats = extractor_statistics(predictions, compiled)
    extractor = np.array(compiled.extractor_of_entry)
    lines = [
        f"# loss {loss:.10g}",
        f"# {'extractor':<16} {'N':>7} {'MAE':>14} {'RMSE':>14} {'unit':<22} {'contribution':>12}",
    ]
    rows = []
    for name, st in stats.items():
        share = (
            float(np.nansum(contributions[extractor == name]) / loss)
            if np.isfinite(loss) and loss > 0
            else float("nan")
        )
        rows.append(
            (
                share,
                f"  {name:<16} {st.n:>7d} {st.mae:>14.6g} {st.rmse:>14.6g} {st.unit:<22} {share:>12.4%}",
            )
        )
    rows.sort(key=lambda r: -r[0] if np.isfinite(r[0]) else 0.0)
    lines += [r[1] for r in rows]
    return "\n".join(lines) + "\n"


def make_snapshot(
    objective: Any,
    x_scaled: np.ndarray,
    data_set: str,
    evaluation: int,
    *,
    with_figures: bool = False,
) -> Snapshot:
    """Evaluate one point in full and describe it for the recorder.

    Args:
        objective: the :class:`~parafit.objective.Objective`.
        x_scaled: (n_active,) point in [0, 1].
        data_set: ``training`` or ``validation``.
        evaluation: its evaluation number.
        with_figures: also draw parity and PES plots (slow; for the final snapshot).
    """
    from parafit.dataset import DataSet

    ev = objective.evaluate(
        x_scaled[None, :], validation=data_set == "validation", details="all"
    )
    result = ev.training if data_set == "training" else ev.validation
    compiled = objective.training if data_set == "training" else objective.validation
    dataset = (
        objective.training_set if data_set == "training" else objective.validation_set
    )
    loss = float(result.loss[0])
    pred = result.predictions[0]
    interface = objective.interface.with_values(
        objective.interface.from_scaled(x_scaled)
    )
    files: dict[str, str] = {
        "parameter_interface.yaml": interface.to_yaml(),
        "active_parameters.txt": "# evaluation "
        + " ".join(interface.active_names)
        + "\n"
        + f"{evaluation} "
        + " ".join(f"{v:.12g}" for v in interface.active_values)
        + "\n",
        "evaluation.txt": f"{evaluation}\n",
        "stats.txt": stats_table(compiled, pred, result.contributions[0], loss),
    }
    model_files = getattr(objective.engine, "model_files", None)
    if model_files is not None:
        files.update(model_files(interface))
    per_entry = compiled.predictions_per_entry(pred)
    entries = [
        dataclasses.replace(e, metadata={**dict(e.metadata), "Prediction": _plain(p)})
        for e, p in zip(dataset, per_entry, strict=True)
    ]
    files["data_set_predictions.yaml"] = DataSet(entries=entries).to_yaml()
    pes = _pes_files(objective, dataset, per_entry)
    files.update(pes)
    figures: dict[str, Callable[[Path], None]] = {}
    if with_figures:
        figures.update(_parity_figures(compiled, dataset, per_entry))
        figures.update(_pes_figures(pes))
    return Snapshot(evaluation=evaluation, loss=loss, files=files, figures=figures)


def _pes_files(objective: Any, dataset: Any, per_entry: list[Any]) -> dict[str, str]:
    from parafit.jobs import PESScan

    out: dict[str, str] = {}
    for entry, plan, pred in zip(dataset, dataset.plans, per_entry, strict=True):
        if (
            len(plan.calls) != 1
            or plan.calls[0].extractor != "pes"
            or entry.reference is None
        ):
            continue
        job = objective.jobs[plan.calls[0].job_id]
        if not isinstance(job.task, PESScan):
            continue
        coord = np.asarray(job.task.coordinates[0].values)
        ref = np.ravel(np.asarray(entry.reference, dtype=float))
        p = np.ravel(np.asarray(pred, dtype=float))
        if ref.shape != coord.shape or p.shape != coord.shape:
            continue
        kind = job.task.coordinates[0].kind
        unit = "angstrom" if kind == "distance" else "degree"
        header = f"# {kind}[{unit}] reference prediction [{entry.unit.label}]"
        body = "\n".join(
            f"{c:.8g} {r:.10g} {q:.10g}" for c, r, q in zip(coord, ref, p, strict=True)
        )
        out[f"pes_predictions/{job.id}.txt"] = header + "\n" + body + "\n"
    return out


def _parity_figures(
    compiled: Any, dataset: Any, per_entry: list[Any]
) -> dict[str, Callable[[Path], None]]:
    from parafit.plots import plot_parity

    groups: dict[str, tuple[list[float], list[float], str]] = {}
    for entry, name, pred in zip(
        dataset, compiled.extractor_of_entry, per_entry, strict=True
    ):
        if entry.reference is None:
            continue
        ref = np.ravel(np.asarray(entry.reference, dtype=float))
        p = np.ravel(np.asarray(pred, dtype=float))
        if ref.shape != p.shape:
            continue
        g = groups.setdefault(name, ([], [], entry.unit.label))
        g[0].extend(ref.tolist())
        g[1].extend(p.tolist())
    figures: dict[str, Callable[[Path], None]] = {}
    for name, (ref, pred, unit) in groups.items():

        def draw(
            path: Path,
            name: str = name,
            ref: list[float] = ref,
            pred: list[float] = pred,
            unit: str = unit,
        ) -> None:
            plot_parity(name, np.array(ref), np.array(pred), path, unit=unit)

        figures[f"scatter_{name}.png"] = draw
    return figures


def _pes_figures(pes_files: dict[str, str]) -> dict[str, Callable[[Path], None]]:
    from parafit.plots import plot_pes

    figures: dict[str, Callable[[Path], None]] = {}
    for name, text in pes_files.items():
        rows = np.array(
            [
                [float(v) for v in ln.split()]
                for ln in text.splitlines()[1:]
                if ln.strip()
            ]
        )
        header = text.split("\n", 1)[0]
        unit = header.rsplit("[", 1)[1].rstrip("]") if "[" in header else ""
        job = Path(name).stem

        def draw(
            path: Path,
            rows: np.ndarray = rows,
            job: str = job,
            unit: str = unit,
            header: str = header,
        ) -> None:
            plot_pes(
                job,
                rows[:, 0],
                rows[:, 1],
                rows[:, 2],
                path,
                unit=unit,
                coordinate_label=header.split()[1],
            )

        figures[name.replace(".txt", ".png")] = draw
    return figures
