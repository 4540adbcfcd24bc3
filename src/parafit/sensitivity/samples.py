"""Samples for a sensitivity analysis: parameter vectors, losses, optional residuals.

A samples directory is any results folder of an earlier run: a sensitivity run's
``sampling_results/``, an optimization's results, or their ``optimization/``
subfolder. ``evaluations.h5`` (or its journal) takes precedence over the text logs
``<set>_results/running_active_parameters.txt`` and ``running_loss.txt``.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from parafit._atomic import read_complete_lines
from parafit.errors import ResultsError

__all__ = ["Samples", "find_samples_root", "load_samples"]

SetName = Literal["training_set", "validation_set"]


@dataclass(frozen=True)
class Samples:
    """Evaluated parameter vectors.

    Attributes:
        names: (d,) active parameter names.
        x: (n_samples, d) parameter values (model units).
        loss: (n_samples,) loss of the analysed set (+inf: failed).
        evaluation: (n_samples,) evaluation numbers in the source run.
        residuals: (n_samples, n_values) stored residuals ``(y - ref)/sigma`` of the
            analysed set, NaN rows where missing; None when none were saved.
        layout: what each residual column is (``expressions``, ``units``,
            ``entry_of_value``, ``reference``, ``sigma``, ``weight``), or None.
        source: the directory read.
    """

    names: tuple[str, ...]
    x: np.ndarray
    loss: np.ndarray
    evaluation: np.ndarray
    residuals: np.ndarray | None
    layout: dict[str, np.ndarray] | None
    source: Path


def find_samples_root(directory: str | Path) -> Path:
    """The folder holding the evaluations inside ``directory`` (searched in the
    usual places); raises ResultsError listing where it looked."""
    directory = Path(directory)
    candidates = [
        directory,
        directory / "optimization",
        directory / "sampling_results" / "optimization",
        directory / "sampling_results",
    ]
    for c in candidates:
        if (
            (c / "evaluations.h5").is_file()
            or (c / ".evaluations.journal").is_file()
            or (c / "training_set_results" / "running_loss.txt").is_file()
        ):
            return c
    raise ResultsError(
        f"{directory}: no samples found; looked for evaluations.h5 or "
        "training_set_results/running_loss.txt in "
        + ", ".join(str(c) for c in candidates)
        + "."
    )


def _read_table(path: Path) -> tuple[list[str], np.ndarray]:
    lines = read_complete_lines(path)
    header = [ln for ln in lines if ln.startswith("#")]
    rows = [ln.split() for ln in lines if ln.strip() and not ln.startswith("#")]
    names = header[0].lstrip("#").split() if header else []
    if not rows:
        return names, np.zeros((0, max(len(names), 1)))
    width = len(rows[0])
    try:
        data = np.array([[float(v) for v in r] for r in rows if len(r) == width])
    except ValueError as err:
        raise ResultsError(f"{path}: not a numeric table ({err}).") from err
    return names, data


def _from_text(root: Path, set_name: SetName) -> Samples:
    d = root / f"{set_name}_results"
    params, losses = d / "running_active_parameters.txt", d / "running_loss.txt"
    if not (params.is_file() and losses.is_file()):
        raise ResultsError(
            f"{root}: {set_name} samples need {params.name} and {losses.name} in {d}."
        )
    header, p = _read_table(params)
    _, lo = _read_table(losses)
    names = tuple(header[1:])
    if p.shape[1] != len(names) + 1:
        raise ResultsError(
            f"{params}: header names {len(names)} parameters but rows have {p.shape[1] - 1}."
        )
    loss_of = {int(e): v for e, v in lo[:, :2]} if lo.size else {}
    keep = [i for i, e in enumerate(p[:, 0]) if int(e) in loss_of]
    ev = p[keep, 0].astype(np.int64)
    return Samples(
        names=names,
        x=p[keep, 1:],
        loss=np.array([loss_of[int(e)] for e in ev], dtype=float),
        evaluation=ev,
        residuals=None,
        layout=None,
        source=root,
    )


def load_samples(directory: str | Path, analyze: SetName = "training_set") -> Samples:
    """Samples of the ``analyze`` set from a results directory.

    Evaluations without a loss for that set (validation losses not evaluated) are
    left out; failed ones (+inf) are kept for the analysis to count and drop.

    Raises:
        ResultsError: nothing readable found.
    """
    from parafit.recorder import read_evaluations, read_residuals

    root = find_samples_root(directory)
    if not (
        (root / "evaluations.h5").is_file() or (root / ".evaluations.journal").is_file()
    ):
        return _from_text(root, analyze)
    data = read_evaluations(root)
    kind = "training" if analyze == "training_set" else "validation"
    loss = np.asarray(data[f"{kind}_loss"], float)
    keep = ~np.isnan(loss)
    ev = np.asarray(data["evaluation"])[keep]
    x = np.asarray(data["active_values"])[keep]
    residuals = layout = None
    stored = read_residuals(root, kind)
    if stored is not None:
        res_ev, res, layout = stored
        residuals = np.full((ev.size, res.shape[1]), np.nan)
        row_of = {int(e): i for i, e in enumerate(ev)}
        for e, r in zip(res_ev, res, strict=True):
            i = row_of.get(int(e))
            if i is not None:
                residuals[i] = r
    return Samples(
        names=tuple(str(n) for n in data["active_names"]),
        x=x,
        loss=loss[keep],
        evaluation=ev,
        residuals=residuals,
        layout=layout,
        source=root,
    )
