"""Tasks: orchestration of optimization, sensitivity and single-point runs from a config."""

from pathlib import Path
from typing import Any

__all__ = ["run_task"]


def run_task(
    input_file: str | Path,
    output: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Any = None,
) -> Any:
    """Run the task of an input file (``task:`` key) into a results directory.

    Args:
        input_file: ``parafit.yaml``.
        output: results directory (None: keep results in memory).
        resume: continue a killed optimization from its checkpoint.
        overwrite: replace an existing non-empty results directory.
        progress: optional callback receiving
            :class:`~parafit.tasks.optimization.ProgressEvent` objects.

    Returns:
        :class:`~parafit.tasks.optimization.OptimizationResult`,
        :class:`~parafit.tasks.single_point.SinglePointResult` or
        :class:`~parafit.tasks.sensitivity.SensitivityRunResult`.
    """
    from parafit.config import load_config

    config = load_config(input_file)
    if config.task == "single_point":
        from parafit.tasks import single_point

        return single_point.run(config, output, overwrite=overwrite)
    if config.task == "sensitivity":
        from parafit.tasks import sensitivity

        return sensitivity.run(config, output, overwrite=overwrite, progress=progress)
    from parafit.tasks import optimization

    return optimization.run(
        config, output, resume=resume, overwrite=overwrite, progress=progress
    )
