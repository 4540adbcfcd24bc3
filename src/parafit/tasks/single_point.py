"""Single-point task: evaluate the data sets once with the interface's current values.

Writes ``<output>/single_point/training_set_results/`` (and ``validation_set_results/``)
with ``loss.txt``, ``stats.txt``, ``data_set_predictions.yaml``, parity plots and PES
scans, exactly like a snapshot of an optimization.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from parafit._atomic import write_text_atomic
from parafit.config import Config

__all__ = ["SinglePointResult", "run"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SinglePointResult:
    """Losses of the current parameters (validation None when there is no validation set)."""

    training_loss: float
    validation_loss: float | None
    stats: dict[str, str]
    output: Path | None


def run(
    config: Config, output: str | Path | None, *, overwrite: bool = False
) -> SinglePointResult:
    """Evaluate the current parameters on the training (and validation) set."""
    from parafit.tasks._setup import build_problem, copy_inputs, prepare_output
    from parafit.tasks._snapshots import make_snapshot

    problem = build_problem(config)
    objective = problem.objective
    x0 = np.clip(objective.x0_scaled(), 0.0, 1.0)
    sets = ["training"] + (["validation"] if objective.has_validation else [])
    snaps = {
        s: make_snapshot(objective, x0, s, 0, with_figures=output is not None)
        for s in sets
    }
    if output is not None:
        output = Path(output)
        prepare_output(output, resume=False, overwrite=overwrite)
        copy_inputs(config, output)
        for s, snap in snaps.items():
            d = output / "single_point" / f"{s}_set_results"
            d.mkdir(parents=True, exist_ok=True)
            write_text_atomic(
                d / "loss.txt", f"# evaluation loss\n0 {snap.loss:.10g}\n"
            )
            for name, text in snap.files.items():
                write_text_atomic(d / name, text)
            for name, draw in snap.figures.items():
                target = d / name
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(f".{target.name}.tmp.png")
                try:
                    draw(tmp)
                    os.replace(tmp, target)
                except Exception as err:  # plots never fail a run
                    logger.warning("could not draw %s: %s", target, err)
    return SinglePointResult(
        training_loss=snaps["training"].loss,
        validation_loss=snaps["validation"].loss if "validation" in snaps else None,
        stats={s: snap.files["stats.txt"] for s, snap in snaps.items()},
        output=None if output is None else Path(output),
    )
