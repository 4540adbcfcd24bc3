"""PNG plots of a results directory: loss curves, parity plots, PES scans.

Uses :class:`matplotlib.figure.Figure` directly (no pyplot, no global backend
state), so plotting works headless and from worker threads.
"""

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["plot_loss", "plot_parity", "plot_pes", "redraw"]

logger = logging.getLogger(__name__)


def _figure(width: float = 6.0, height: float = 4.5):  # noqa: ANN202
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def plot_loss(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    *,
    title: str = "Loss",
) -> None:
    """Loss vs evaluation, one curve per data set, with the running best.

    Args:
        curves: label -> (evaluation (n,), loss (n,)).
        path: PNG to write.
    """
    fig = _figure()
    ax = fig.add_subplot()
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for (label, (ev, loss)), color in zip(curves.items(), colors, strict=False):
        ev = np.asarray(ev)
        loss = np.asarray(loss, dtype=float)
        finite = np.isfinite(loss)
        if not finite.any():
            continue
        ax.plot(
            ev[finite],
            loss[finite],
            ".",
            ms=2,
            alpha=0.35,
            color=color,
            label=f"{label} (each evaluation)",
        )
        best = np.minimum.accumulate(np.where(finite, loss, np.inf))
        ok = np.isfinite(best)
        ax.plot(
            ev[ok], best[ok], "-", lw=1.8, color=color, label=f"{label} (best so far)"
        )
    positive = [np.asarray(v[1]) for v in curves.values()]
    if any(((p > 0) & np.isfinite(p)).any() for p in positive):
        ax.set_yscale("log")
    ax.set_xlabel("evaluation")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, format="png")


def plot_parity(
    name: str,
    reference: np.ndarray,
    prediction: np.ndarray,
    path: str | Path,
    *,
    unit: str = "",
    initial: np.ndarray | None = None,
) -> None:
    """Parity (predicted vs reference) plot of one extractor, with MAE and RMSE.

    Args:
        name: extractor name (title).
        reference, prediction: (n,) values in the display unit ``unit``.
        initial: optional (n,) predictions of the initial parameters, drawn faintly.
    """
    reference = np.asarray(reference, dtype=float).ravel()
    prediction = np.asarray(prediction, dtype=float).ravel()
    fig = _figure(5.0, 5.0)
    ax = fig.add_subplot()
    ok = np.isfinite(reference) & np.isfinite(prediction)
    if initial is not None:
        initial = np.asarray(initial, dtype=float).ravel()
        oki = np.isfinite(initial) & np.isfinite(reference)
        ax.plot(
            reference[oki],
            initial[oki],
            "x",
            ms=4,
            color="0.6",
            alpha=0.6,
            label="initial",
        )
    ax.plot(
        reference[ok],
        prediction[ok],
        "o",
        ms=4,
        alpha=0.7,
        color="tab:blue",
        label="prediction",
    )
    if ok.any():
        lo = float(min(reference[ok].min(), prediction[ok].min()))
        hi = float(max(reference[ok].max(), prediction[ok].max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1)
        err = prediction[ok] - reference[ok]
        mae, rmse = float(np.mean(np.abs(err))), float(np.sqrt(np.mean(err**2)))
        text = f"N = {ok.sum()}\nMAE = {mae:.4g} {unit}\nRMSE = {rmse:.4g} {unit}"
        ax.text(
            0.04,
            0.96,
            text,
            transform=ax.transAxes,
            va="top",
            fontsize=9,
            bbox={"fc": "white", "alpha": 0.8},
        )
    suffix = f" [{unit}]" if unit else ""
    ax.set_xlabel(f"reference{suffix}")
    ax.set_ylabel(f"prediction{suffix}")
    ax.set_title(name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, format="png")


def plot_pes(
    job_id: str,
    coordinate: np.ndarray,
    reference: np.ndarray,
    prediction: np.ndarray,
    path: str | Path,
    *,
    unit: str = "",
    coordinate_label: str = "scan coordinate",
) -> None:
    """Reference and predicted energies along a PES scan."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(coordinate, reference, "o-", color="k", label="reference")
    ax.plot(coordinate, prediction, "s--", color="tab:red", label="prediction")
    ax.set_xlabel(coordinate_label)
    ax.set_ylabel(f"relative energy [{unit}]" if unit else "relative energy")
    ax.set_title(f"PES scan {job_id}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, format="png")


_CALL = re.compile(r"^\s*[+-]?\s*([A-Za-z_]\w*)\s*\(")


def _extractor_of(expression: str) -> str:
    m = _CALL.match(expression)
    return m.group(1) if m else "expression"


def parity_data(
    predictions_yaml: str | Path,
) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """extractor -> (reference, prediction, unit) from a ``data_set_predictions.yaml``."""
    from parafit.dataset import DataSet

    ds = DataSet.load(predictions_yaml)
    groups: dict[str, tuple[list[float], list[float], str]] = {}
    for entry in ds:
        pred = entry.metadata.get("Prediction")
        if pred is None or entry.reference is None:
            continue
        ref = np.ravel(np.asarray(entry.reference, dtype=float))
        p = np.ravel(np.asarray(pred, dtype=float))
        if ref.shape != p.shape:
            continue
        key = _extractor_of(entry.expression)
        g = groups.setdefault(key, ([], [], entry.unit.label))
        g[0].extend(ref.tolist())
        g[1].extend(p.tolist())
    return {k: (np.array(r), np.array(p), u) for k, (r, p, u) in groups.items()}


def redraw(results: str | Path) -> list[Path]:
    """Redraw every plot of a results directory from its files; returns the PNGs written.

    Accepts the top-level results directory or its ``optimization/`` folder.
    """
    from parafit.recorder import read_running_loss

    results = Path(results)
    opt = results / "optimization" if (results / "optimization").is_dir() else results
    written: list[Path] = []
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label, sub in (
        ("training", "training_set_results"),
        ("validation", "validation_set_results"),
    ):
        f = opt / sub / "running_loss.txt"
        if f.exists():
            ev, loss = read_running_loss(f)
            if ev.size:
                curves[label] = (ev, loss)
    if curves:
        out = opt / "loss.png"
        plot_loss(curves, out)
        written.append(out)
    for sub in ("training_set_results", "validation_set_results"):
        for kind in ("best", "latest", "initial"):
            d = opt / sub / kind
            pred_file = d / "data_set_predictions.yaml"
            if not pred_file.exists():
                continue
            initial_data: dict[str, tuple[np.ndarray, np.ndarray, str]] = {}
            init_file = opt / sub / "initial" / "data_set_predictions.yaml"
            if kind != "initial" and init_file.exists():
                try:
                    initial_data = parity_data(init_file)
                except Exception:  # initial predictions are only decoration
                    initial_data = {}
            for name, (ref, pred, unit) in parity_data(pred_file).items():
                out = d / f"scatter_{name}.png"
                init = initial_data.get(name)
                plot_parity(
                    f"{name} ({kind})",
                    ref,
                    pred,
                    out,
                    unit=unit,
                    initial=init[1]
                    if init is not None and init[1].shape == pred.shape
                    else None,
                )
                written.append(out)
            pes_dir = d / "pes_predictions"
            if pes_dir.is_dir():
                for txt in sorted(pes_dir.glob("*.txt")):
                    data = np.loadtxt(txt, ndmin=2)
                    header = txt.read_text().split("\n", 1)[0]
                    unit = (
                        header.split("[", 1)[1].split("]", 1)[0]
                        if "[" in header
                        else ""
                    )
                    out = txt.with_suffix(".png")
                    plot_pes(
                        txt.stem, data[:, 0], data[:, 1], data[:, 2], out, unit=unit
                    )
                    written.append(out)
    return written
