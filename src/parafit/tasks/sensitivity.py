"""Sensitivity task: sample the loss, rank the parameters by HSIC, write the results.

With ``sensitivity.run_sampling`` (default) the active parameters are drawn uniformly
within their ranges and evaluated in batches (through the executor, with progress);
the samples go to ``<output>/sampling_results/optimization/`` in the normal results
layout, so a later run can analyse them again. Otherwise the samples come from
``sensitivity.samples_directory`` (any earlier run's results) and no engine runs:
changing kernels, repeats or reweighting costs seconds. Outputs are in
``<output>/sensitivity/`` (see docs/sensitivity.md).
"""

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parafit.config import Config
from parafit.errors import ConfigError, InputError, ResultsError

__all__ = ["SensitivityRunResult", "parameter_group", "run", "sample"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SensitivityRunResult:
    """What a sensitivity run returns.

    Attributes:
        result: the :class:`~parafit.sensitivity.HSICResult`.
        interface: the parameter interface with ``sensitivity`` filled.
        n_engine_evaluations: parameter vectors evaluated by an engine in this run
            (0 when existing samples were analysed).
        reweight: the reweighting report, or None.
        output: the results directory, or None.
    """

    result: Any
    interface: Any
    n_engine_evaluations: int
    reweight: Any = None
    output: Path | None = None


def parameter_group(parameter: Any) -> str:
    """Group label of a parameter: ``"H.O BND"`` (atoms and block), else its block,
    atoms, or name."""
    atoms = ".".join(parameter.atoms)
    if atoms and parameter.block:
        return f"{atoms} {parameter.block}"
    return parameter.block or atoms or parameter.name


def sample(
    problem: Any,
    *,
    n_samples: int,
    batch_size: int,
    seed: int,
    validation: bool,
    save_residuals: bool,
    workers: int = 1,
    recorder: Any = None,
    progress: Callable[[Any], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate ``n_samples`` points uniform in the active ranges.

    Returns:
        ``(active_values (n, n_active), training_loss (n,), validation_loss (n,))``
        (validation NaN when not evaluated).
    """
    from parafit._rng import as_generator
    from parafit.executors import make_executor
    from parafit.objective import evaluate_batch
    from parafit.recorder import BatchRecord, residual_layout
    from parafit.tasks.optimization import ProgressEvent

    objective = problem.objective
    interface = objective.interface
    rng = as_generator(seed)
    x_all = rng.random((n_samples, objective.n_active))
    active = interface.active_indices
    if recorder is not None:
        recorder.start(active_names=interface.active_names, has_validation=validation)
        if save_residuals:
            recorder.set_residual_layout(
                "training", residual_layout(objective.training)
            )
            if validation:
                recorder.set_residual_layout(
                    "validation", residual_layout(objective.validation)
                )
    values = np.empty((n_samples, objective.n_active))
    train = np.full(n_samples, np.inf)
    valid = np.full(n_samples, np.nan)
    details = "all" if save_residuals else "loss"
    start = time.monotonic()
    best = math.inf
    with make_executor(workers, objective) as executor:
        for b0 in range(0, n_samples, batch_size):
            xb = x_all[b0 : b0 + batch_size]
            ev = evaluate_batch(
                objective, executor, xb, validation=validation, details=details
            )
            sl = slice(b0, b0 + len(xb))
            values[sl] = ev.values[:, active]
            train[sl] = ev.training.loss
            if ev.validation is not None:
                valid[sl] = ev.validation.loss
            elapsed = time.monotonic() - start
            if recorder is not None:
                recorder.record(
                    BatchRecord(
                        evaluation=np.arange(sl.start, sl.start + len(xb)),
                        optimizer=np.zeros(len(xb), dtype=int),
                        elapsed=np.full(len(xb), elapsed),
                        active_values=values[sl],
                        training_loss=train[sl],
                        validation_loss=valid[sl],
                        training_residuals=ev.training.residuals
                        if save_residuals
                        else None,
                        validation_residuals=ev.validation.residuals
                        if save_residuals and ev.validation is not None
                        else None,
                    )
                )
            finite = train[: sl.stop][np.isfinite(train[: sl.stop])]
            best = float(finite.min()) if finite.size else math.inf
            if progress is not None:
                progress(
                    ProgressEvent(
                        n_evaluations=sl.stop,
                        max_evaluations=n_samples,
                        best_loss=best,
                        elapsed=elapsed,
                        evaluations_per_second=sl.stop / max(elapsed, 1e-9),
                    )
                )
    if recorder is not None:
        finite_idx = np.flatnonzero(np.isfinite(train))
        if finite_idx.size:
            from parafit.tasks._snapshots import make_snapshot

            i = int(finite_idx[np.argmin(train[finite_idx])])
            recorder.snapshot(
                "best",
                "training",
                make_snapshot(objective, x_all[i], "training", i, with_figures=True),
            )
        recorder.finish()
    n_failed = int((~np.isfinite(train)).sum())
    if n_failed:
        logger.warning("%d of %d samples failed (infinite loss)", n_failed, n_samples)
    return values, train, valid


def _load_interface(config: Config) -> Any:
    if config.parameter_interface is None:
        return None
    from parafit.parameters import ParameterInterface

    return ParameterInterface.load(config.parameter_interface)


def _bounds_and_groups(
    names: tuple[str, ...], x: np.ndarray, interface: Any
) -> tuple[np.ndarray | str, tuple[str, ...]]:
    if interface is None:
        return "auto", names
    bounds = (
        np.column_stack([x.min(0), x.max(0)]) if x.size else np.zeros((len(names), 2))
    )
    groups = []
    missing = []
    for j, name in enumerate(names):
        if name in interface:
            p = interface[name]
            bounds[j] = p.range
            groups.append(parameter_group(p))
        else:
            missing.append(name)
            groups.append(name)
    if missing:
        logger.warning(
            "parameters %s are not in the parameter interface; their sample min/max "
            "scale them",
            missing,
        )
    return bounds, tuple(groups)


def _interface_with_sensitivities(interface: Any, result: Any) -> Any:
    from parafit.parameters import Parameter, ParameterInterface

    mean = dict(zip(result.labels, result.sensitivity_mean, strict=True))
    if interface is None:
        params = []
        for name, (lo, hi) in zip(result.labels, result.x_bounds, strict=True):
            if not hi > lo:
                pad = 1e-9 * max(1.0, abs(lo))
                lo, hi = lo - pad, hi + pad
            params.append(
                Parameter(
                    name,
                    value=0.5 * (lo + hi),
                    range=(float(lo), float(hi)),
                    sensitivity=float(mean[name]),
                )
            )
        return ParameterInterface(params)
    for p in interface:
        interface = interface.replace(
            p.name,
            sensitivity=float(mean[p.name]) if p.name in mean else None,
        )
    return interface


def _reweighted_losses(config: Config, samples: Any) -> tuple[np.ndarray, Any, Any]:
    """(losses (n,), report, balanced data set or None) from stored residuals."""
    from parafit.dataset import DataSet
    from parafit.sensitivity.reweight import (
        ReweightReport,
        ScoringLayout,
        balanced_weights,
        rescore,
    )

    cfg = config.sensitivity
    if samples.residuals is None or samples.layout is None:
        raise ConfigError(
            f"key sensitivity.reweight: no residuals stored in {samples.source}; "
            "sample again with sensitivity.save_residuals: true (or logging.save_residuals "
            "in an optimization).",
            path=config.source,
            key="sensitivity.reweight",
        )
    sampled = ScoringLayout.from_arrays(samples.layout)
    set_cfg = (
        config.training_set if cfg.analyze == "training_set" else config.validation_set
    )
    loss_name = set_cfg.loss if set_cfg is not None else "sse"
    data_set = None
    if set_cfg is not None:
        data_set = DataSet.load(set_cfg.path)
        try:
            new, columns = sampled.matched(data_set)
        except InputError as err:
            raise InputError(err.message, path=set_cfg.path, key=err.key) from err
    else:
        new, columns = sampled, np.arange(sampled.n_values)
    loss, contrib = rescore(samples.residuals, sampled, new, columns, loss=loss_name)
    weights = balanced_weights(samples.residuals, sampled, new, columns)
    balanced = new.with_entry_weights(weights)
    loss_b, contrib_b = rescore(
        samples.residuals, sampled, balanced, columns, loss=loss_name
    )
    finite = np.isfinite(loss)
    report = ReweightReport(
        expressions=new.expressions,
        weight_before=new.entry_weights,
        weight_after=weights,
        share_before=ReweightReport.shares(contrib),
        share_after=ReweightReport.shares(contrib_b),
        n_samples=int(finite.sum()),
    )
    balanced_ds = None
    if data_set is not None:
        balanced_ds = DataSet()
        for entry, w in zip(data_set.entries, weights, strict=True):
            balanced_ds.add_entry(
                entry.expression,
                entry.reference,
                sigma=entry.sigma,
                weight=float(w),
                unit=entry.unit,
                metadata=entry.metadata,
            )
    return (loss_b if cfg.reweight == "balanced" else loss), report, balanced_ds


def run(
    config: Config,
    output: str | Path | None,
    *,
    overwrite: bool = False,
    progress: Callable[[Any], None] | None = None,
) -> SensitivityRunResult:
    """Run the sensitivity analysis described by ``config`` (see module docstring).

    All input is loaded and checked before anything is written.

    Raises:
        InputError: bad input (nothing written).
        ResultsError: ``output`` exists and is not empty without ``overwrite``, or
            the samples directory holds no readable samples.
    """
    from parafit.recorder import DirectoryRecorder
    from parafit.sensitivity import analyze_samples
    from parafit.sensitivity.samples import Samples, load_samples
    from parafit.tasks._setup import build_problem, copy_inputs, prepare_output

    cfg = config.sensitivity
    seed = config.seed if cfg.seed is None else cfg.seed
    output = None if output is None else Path(output)
    n_engine = 0
    if cfg.run_sampling:
        problem = build_problem(config)
        interface = problem.interface
        if interface.n_active == 0:
            raise InputError(
                "no active parameters to sample; set is_active: true in the parameter interface.",
                path=config.parameter_interface,
            )
        if cfg.reweight and output is None:
            raise InputError(
                "reweighting needs the stored residuals of a results directory; "
                "give an output directory."
            )
        validation = cfg.analyze == "validation_set"
        save_residuals = cfg.save_residuals or bool(cfg.reweight)
        recorder = None
        if output is not None:
            prepare_output(output, resume=False, overwrite=overwrite)
            copy_inputs(config, output)
            recorder = DirectoryRecorder(output / "sampling_results" / "optimization")
        values, train, valid = sample(
            problem,
            n_samples=cfg.number_samples,
            batch_size=cfg.batch_size,
            seed=seed,
            validation=validation,
            save_residuals=save_residuals,
            workers=config.parallel.workers,
            recorder=recorder,
            progress=progress,
        )
        n_engine = cfg.number_samples
        if output is not None:
            samples = load_samples(output / "sampling_results", cfg.analyze)
        else:
            samples = Samples(
                names=interface.active_names,
                x=values,
                loss=valid if validation else train,
                evaluation=np.arange(values.shape[0]),
                residuals=None,
                layout=None,
                source=Path("."),
            )
    else:
        assert cfg.samples_directory is not None
        interface = _load_interface(config)
        samples = load_samples(cfg.samples_directory, cfg.analyze)
        if output is not None:
            out = output.resolve()
            src = Path(samples.source).resolve()
            if overwrite and (src == out or out in src.parents):
                raise ResultsError(
                    f"{output}: --overwrite would delete the samples being analysed "
                    f"({samples.source}); write to another directory."
                )
    if samples.x.shape[0] == 0:
        raise ResultsError(f"{samples.source}: no samples of the {cfg.analyze}.")
    bounds, groups = _bounds_and_groups(samples.names, samples.x, interface)
    loss = samples.loss
    report = balanced_ds = None
    if cfg.reweight:
        loss, report, balanced_ds = _reweighted_losses(config, samples)
    set_cfg = (
        config.training_set if cfg.analyze == "training_set" else config.validation_set
    )
    description = (
        f"{cfg.analyze.replace('_', ' ')} loss of {samples.x.shape[0]} samples "
        f"({'sampled now' if cfg.run_sampling else f'from {samples.source}'})"
    )
    result = analyze_samples(
        samples.x,
        loss,
        labels=samples.names,
        x_bounds=bounds,
        groups=groups,
        repeats=cfg.repeats,
        samples_per_repeat=cfg.samples_per_repeat,
        with_replacement=cfg.with_replacement,
        filter_infinite=cfg.filter_infinite,
        parameters_kernel=cfg.parameters_kernel,
        loss_kernel=cfg.loss_kernel,
        estimator=cfg.estimator,
        normalization=cfg.normalization,
        p_values=cfg.p_values,
        seed=seed,
        description=description,
        analyze=cfg.analyze,
        loss_name=set_cfg.loss if set_cfg is not None else "sse",
        is_reweighted=bool(cfg.reweight),
    )
    if result.n_dropped:
        logger.warning(
            "%d of %d samples dropped (non-finite loss)",
            result.n_dropped,
            result.n_dropped + result.n_samples,
        )
    new_interface = _interface_with_sensitivities(interface, result)
    if output is not None:
        if not cfg.run_sampling:
            prepare_output(output, resume=False, overwrite=overwrite)
            copy_inputs(config, output)
        write_outputs(
            output / "sensitivity",
            result,
            new_interface,
            report,
            balanced_ds,
            cfg.analyze,
        )
    return SensitivityRunResult(
        result=result,
        interface=new_interface,
        n_engine_evaluations=n_engine,
        reweight=report,
        output=output,
    )


def write_outputs(
    directory: Path,
    result: Any,
    interface: Any,
    report: Any = None,
    balanced_data_set: Any = None,
    analyze: str = "training_set",
) -> None:
    """Write ``calculation_result.npz``, the interface, the summary and the plots."""
    from parafit._atomic import write_text_atomic

    directory.mkdir(parents=True, exist_ok=True)
    result.save(directory / "calculation_result.npz")
    write_text_atomic(
        directory / "parameter_interface_with_sensitivities.yaml", interface.to_yaml()
    )
    result.write_summary(directory / "sensitivity_summary.txt")
    if report is not None:
        write_text_atomic(directory / "reweight_report.txt", report.to_text())
    if balanced_data_set is not None:
        write_text_atomic(
            directory / f"{analyze}_balanced_weights.yaml", balanced_data_set.to_yaml()
        )
    for draw, name in (
        ("plot_sensitivity_per_parameter", "sensitivity_per_parameter.png"),
        ("plot_sensitivity_summary", "sensitivity_summary.png"),
    ):
        try:
            from parafit.sensitivity import plots

            getattr(plots, draw)(result, directory / name)
        except Exception as err:  # a plot must never lose the numbers
            logger.warning("could not draw %s: %s", directory / name, err)
