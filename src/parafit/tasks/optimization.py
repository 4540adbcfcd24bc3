"""Optimization task: run one or more optimizers on the objective, record everything.

Each round asks every running optimizer for its points, evaluates them all as one
batch (split over worker processes when ``parallel.workers`` > 1), tells each
optimizer its losses, and hands the batch to the recorder. Optimizers that use exact
gradients (``scipy`` gradient methods with a differentiable engine, see
:class:`~parafit.optimizers.base.GradientOptimizer`) get their points evaluated with the
loss gradient and told it. The validation set is
evaluated every ``validation_set.every`` evaluations at the batch's best point;
early stopping ends the run when its loss has not improved for
``early_stopping_patience`` evaluations. A checkpoint (optimizer states, counters,
best points) is written atomically, so ``--resume`` continues a killed run without
losing its best or restarting the evaluation counter.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parafit.config import Config
from parafit.errors import ConfigError, InputError, ResultsError
from parafit.recorder import BatchRecord, DirectoryRecorder, MemoryRecorder, Recorder

__all__ = ["OptimizationResult", "ProgressEvent", "run", "run_problem"]

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Emitted after every batch.

    Attributes:
        n_evaluations: evaluations done (including the initial point).
        max_evaluations: the budget, or None when unbounded.
        best_loss: best training loss so far.
        elapsed: seconds since the run started (summed over resumed sessions).
        evaluations_per_second: throughput of this session.
        time_limit: the time limit [s], or None.
    """

    n_evaluations: int
    max_evaluations: int | None
    best_loss: float
    elapsed: float
    evaluations_per_second: float
    time_limit: float | None = None


@dataclass(frozen=True)
class OptimizationResult:
    """What a finished optimization returns.

    Attributes:
        best_x_scaled: (n_active,) best point in [0, 1].
        best_loss: its training loss.
        best_evaluation: its evaluation number.
        interface: the parameter interface with the best values.
        n_evaluations: total evaluations.
        stop_reasons: why the run ended, e.g. ``{"max_evaluations": 2000}``.
        best_validation_loss: best validation loss seen, or None.
        output: the results directory, or None (in-memory run).
    """

    best_x_scaled: np.ndarray
    best_loss: float
    best_evaluation: int
    interface: Any
    n_evaluations: int
    stop_reasons: dict[str, Any]
    best_validation_loss: float | None = None
    output: Path | None = None


@dataclass
class _State:
    n_evaluations: int = 0
    elapsed: float = 0.0
    best_x: np.ndarray | None = None
    best_loss: float = float("inf")
    best_evaluation: int = -1
    best_val_x: np.ndarray | None = None
    best_val_loss: float = float("inf")
    best_val_evaluation: int = -1
    optimizers: list[Any] = field(default_factory=list)
    stopped: list[dict[str, Any]] = field(default_factory=list)
    n_failed: int = 0


def _make_optimizers(config: Config, n_active: int, x0: np.ndarray) -> list[Any]:
    from parafit.errors import UnknownNameError
    from parafit.optimizers.base import OPTIMIZERS

    out = []
    for i, settings in enumerate(config.optimizers):
        settings = dict(settings)
        name = str(settings.pop("type"))
        try:
            factory = OPTIMIZERS.get(name)
        except UnknownNameError as err:
            raise ConfigError(
                f"key optimizers[{i}].type: {err}",
                path=config.source,
                key=f"optimizers[{i}].type",
            ) from err
        try:
            out.append(
                factory(n_active=n_active, x0=x0, seed=config.seed + i, **settings)
            )
        except InputError as err:
            raise ConfigError(
                f"key optimizers[{i}]: {err.message}",
                path=config.source,
                key=f"optimizers[{i}]",
            ) from err
        except TypeError as err:
            raise ConfigError(
                f"key optimizers[{i}]: {err}",
                path=config.source,
                key=f"optimizers[{i}]",
            ) from err
    return out


def _offer_gradients(optimizers: list[Any], objective: Any, config: Config) -> None:
    """Tell gradient-capable optimizers whether the objective is differentiable.

    Raises:
        ConfigError: an optimizer requires exact gradients the engine cannot give.
    """
    from parafit.optimizers.base import GradientOptimizer

    for i, opt in enumerate(optimizers):
        if isinstance(opt, GradientOptimizer):
            try:
                opt.offer_gradients(objective.is_differentiable)
            except InputError as err:
                raise ConfigError(
                    f"key optimizers[{i}]: {err.message}",
                    path=config.source,
                    key=f"optimizers[{i}].{err.key or 'gradient'}",
                ) from err


def run(
    config: Config,
    output: str | Path | None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Callable[[ProgressEvent], None] | None = None,
) -> OptimizationResult:
    """Run the optimization described by ``config`` into ``output`` (None: in memory).

    All input is loaded and checked before anything is written.

    Raises:
        InputError: bad input (nothing written).
        ResultsError: ``output`` exists and is not empty (and neither ``resume`` nor
            ``overwrite``), or there is nothing to resume.
    """
    from parafit.tasks._setup import build_problem, copy_inputs, prepare_output

    problem = build_problem(config)
    objective = problem.objective
    x0 = np.clip(objective.x0_scaled(), 0.0, 1.0)
    if not np.allclose(x0, objective.x0_scaled()):
        outside = [
            n
            for n, v in zip(
                problem.interface.active_names, objective.x0_scaled(), strict=True
            )
            if not 0 <= v <= 1
        ]
        logger.warning(
            "initial values of %s lie outside their ranges; starting from the clipped point",
            outside,
        )
    optimizers = _make_optimizers(config, objective.n_active, x0)
    _offer_gradients(optimizers, objective, config)
    recorder: Recorder
    if output is None:
        recorder = MemoryRecorder()
    else:
        output = Path(output)
        prepare_output(output, resume=resume, overwrite=overwrite)
        recorder = DirectoryRecorder(output / "optimization")
        if not resume:
            copy_inputs(config, output)
    return run_problem(
        problem,
        optimizers,
        recorder,
        x0=x0,
        resume=resume,
        progress=progress,
        output=output,
    )


def _digest(config: Config) -> str:
    import hashlib
    import json

    keep = config.model_dump(
        mode="json", exclude={"exit_conditions", "checkpoint", "logging", "parallel"}
    )
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


def run_problem(
    problem: Any,
    optimizers: list[Any],
    recorder: Recorder,
    *,
    x0: np.ndarray,
    resume: bool = False,
    progress: Callable[[ProgressEvent], None] | None = None,
    output: Path | None = None,
) -> OptimizationResult:
    """The optimization loop on an already built problem (see :func:`run`)."""
    from parafit.executors import make_executor
    from parafit.objective import evaluate_batch
    from parafit.optimizers.base import GradientOptimizer
    from parafit.tasks._snapshots import make_snapshot, stats_columns, stats_row

    config: Config = problem.config
    objective = problem.objective
    exits = config.exit_conditions
    vcfg = config.validation_set
    has_val = objective.has_validation
    state = _State(optimizers=optimizers, stopped=[{} for _ in optimizers])
    if not resume:
        _offer_gradients(optimizers, objective, config)

    if resume:
        ckpt = recorder.load_checkpoint()
        if ckpt is None:
            raise ResultsError(
                f"{output}: no checkpoint to resume from (the run did not get past its first batch?)."
            )
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise ResultsError(
                f"{output}: checkpoint version {ckpt.get('version')} is not supported."
            )
        if ckpt.get("digest") != _digest(config):
            raise ResultsError(
                f"{output}: the input changed since the checkpoint (only exit_conditions, checkpoint, logging and "
                "parallel may change on --resume); start a new run with --overwrite."
            )
        state = ckpt["state"]
        _offer_gradients(state.optimizers, objective, config)
        logger.info(
            "resuming at evaluation %d (best loss %.6g)",
            state.n_evaluations,
            state.best_loss,
        )

    names = {"training": stats_columns(objective.training)}
    if has_val:
        names["validation"] = stats_columns(objective.validation)
    recorder.start(
        active_names=objective.interface.active_names,
        stats_names=names,
        has_validation=has_val,
        resume_at=state.n_evaluations if resume else None,
    )
    save_residuals = config.logging.save_residuals
    if save_residuals and isinstance(recorder, DirectoryRecorder):
        from parafit.recorder import residual_layout

        recorder.set_residual_layout("training", residual_layout(objective.training))
    executor = make_executor(config.parallel.workers, objective)
    session_start = time.monotonic()
    elapsed_before = state.elapsed
    session_evals = 0
    last_checkpoint = time.monotonic()
    last_snapshot = time.monotonic()
    since_val_improved = 0
    dirty_best = False

    def now() -> float:
        return elapsed_before + (time.monotonic() - session_start)

    def evaluate(x: np.ndarray, gradient_rows: np.ndarray) -> Any:
        details = "all" if save_residuals else "predictions"
        return evaluate_batch(
            objective, executor, x, details=details, gradient_rows=gradient_rows
        )

    def checkpoint() -> None:
        state.elapsed = now()
        recorder.save_checkpoint(
            {"version": CHECKPOINT_VERSION, "digest": _digest(config), "state": state}
        )

    def write_snapshots(
        kind_best: bool,
        latest_x: np.ndarray | None,
        latest_eval: int,
        figures: bool = False,
    ) -> None:
        if kind_best and state.best_x is not None:
            recorder.snapshot(
                "best",
                "training",
                make_snapshot(
                    objective,
                    state.best_x,
                    "training",
                    state.best_evaluation,
                    with_figures=figures,
                ),
            )
        if latest_x is not None:
            recorder.snapshot(
                "latest",
                "training",
                make_snapshot(
                    objective, latest_x, "training", latest_eval, with_figures=figures
                ),
            )
        if has_val and state.best_val_x is not None and kind_best:
            recorder.snapshot(
                "best",
                "validation",
                make_snapshot(
                    objective,
                    state.best_val_x,
                    "validation",
                    state.best_val_evaluation,
                    with_figures=figures,
                ),
            )

    try:
        # ---- evaluation 0: the initial point -------------------------------------------------
        if not resume:
            ev = objective.evaluate(
                x0[None, :],
                validation=has_val,
                details="all" if save_residuals else "predictions",
            )
            loss0 = float(ev.training.loss[0])
            vloss0 = (
                float(ev.validation.loss[0])
                if ev.validation is not None
                else float("nan")
            )
            stats = {
                "training": {
                    0: stats_row(objective.training, ev.training.predictions[0])
                }
            }
            if ev.validation is not None:
                stats["validation"] = {
                    0: stats_row(objective.validation, ev.validation.predictions[0])
                }
            recorder.record(
                BatchRecord(
                    evaluation=np.array([0]),
                    optimizer=np.array([-1]),
                    elapsed=np.array([now()]),
                    active_values=objective.interface.from_scaled(x0)[None, :],
                    training_loss=np.array([loss0]),
                    validation_loss=np.array([vloss0]),
                    stats=stats,
                    training_residuals=ev.training.residuals
                    if save_residuals
                    else None,
                )
            )
            state.n_evaluations = 1
            session_evals = 1
            if not np.isfinite(loss0):
                logger.warning(
                    "the initial parameters give a non-finite training loss (a job failed?)"
                )
            state.best_x, state.best_loss, state.best_evaluation = x0.copy(), loss0, 0
            if has_val:
                state.best_val_x, state.best_val_loss, state.best_val_evaluation = (
                    x0.copy(),
                    vloss0,
                    0,
                )
            recorder.snapshot(
                "initial",
                "training",
                make_snapshot(objective, x0, "training", 0, with_figures=True),
            )
            if has_val:
                recorder.snapshot(
                    "initial",
                    "validation",
                    make_snapshot(objective, x0, "validation", 0, with_figures=True),
                )
            write_snapshots(True, x0, 0)
            checkpoint()

        reasons: dict[str, Any] = {}
        latest_x, latest_eval = state.best_x, state.best_evaluation
        while True:
            # ---- exit conditions ----------------------------------------------------------------
            if (
                exits.max_evaluations is not None
                and state.n_evaluations >= exits.max_evaluations
            ):
                reasons["max_evaluations"] = exits.max_evaluations
            if exits.time_limit is not None and now() >= exits.time_limit:
                reasons["time_limit"] = exits.time_limit
            if exits.target_loss is not None and state.best_loss <= exits.target_loss:
                reasons["target_loss"] = exits.target_loss
            running = [i for i, s in enumerate(state.stopped) if not s]
            if not running:
                reasons["all_optimizers_stopped"] = [s for s in state.stopped]
            if reasons:
                break
            # ---- ask ------------------------------------------------------------------------
            asks, owners = [], []
            wants_gradient: dict[int, bool] = {}
            for i in running:
                opt = state.optimizers[i]
                stop = opt.stop()
                if stop:
                    state.stopped[i] = stop
                    logger.info("optimizer %d stopped: %s", i, stop)
                    continue
                x = np.atleast_2d(opt.ask())
                wants_gradient[i] = isinstance(opt, GradientOptimizer) and bool(
                    opt.wants_gradient
                )
                asks.append(x)
                owners.append(np.full(len(x), i))
            if not asks or sum(len(a) for a in asks) == 0:
                continue
            X = np.concatenate(asks)
            owner = np.concatenate(owners)
            gradient_rows = np.array(
                [wants_gradient[int(i)] for i in owner], dtype=bool
            )
            if exits.max_evaluations is not None:
                room = exits.max_evaluations - state.n_evaluations
                if room < len(X):
                    # evaluate only what the budget allows; the rest get +inf and are not recorded
                    keep = np.zeros(len(X), dtype=bool)
                    keep[:room] = True
                else:
                    keep = np.ones(len(X), dtype=bool)
            else:
                keep = np.ones(len(X), dtype=bool)
            ev = evaluate(X[keep], gradient_rows[keep])
            losses = np.full(len(X), np.inf)
            losses[keep] = ev.training.loss
            grads = np.full(X.shape, np.nan)
            if ev.training.gradient is not None:
                grads[keep] = ev.training.gradient
            # ---- tell -----------------------------------------------------------------------
            for i in sorted(set(owner.tolist())):
                m = owner == i
                if wants_gradient[i]:
                    state.optimizers[i].tell(X[m], losses[m], gradients=grads[m])
                else:
                    state.optimizers[i].tell(X[m], losses[m])
            n = int(keep.sum())
            numbers = np.arange(state.n_evaluations, state.n_evaluations + n)
            train_loss = ev.training.loss
            state.n_failed += int((~np.isfinite(train_loss)).sum())
            # ---- best / validation ------------------------------------------------------------
            finite = np.where(np.isfinite(train_loss), train_loss, np.inf)
            j = int(np.argmin(finite))
            new_best = bool(finite[j] < state.best_loss)
            if new_best:
                state.best_x, state.best_loss, state.best_evaluation = (
                    ev.x_scaled[j].copy(),
                    float(finite[j]),
                    int(numbers[j]),
                )
                dirty_best = True
                logger.info(
                    "new best loss %.6g at evaluation %d",
                    state.best_loss,
                    state.best_evaluation,
                )
            latest_x, latest_eval = ev.x_scaled[-1].copy(), int(numbers[-1])
            val_loss = np.full(n, np.nan)
            stats: dict[str, dict[int, dict[str, float]]] = {"training": {}}
            every = config.logging.stats_every
            due_stats = [k for k in range(n) if numbers[k] % every == 0]
            if new_best:
                due_stats.append(j)
            for k in sorted(set(due_stats)):
                if ev.training.predictions is not None and np.isfinite(train_loss[k]):
                    stats["training"][int(numbers[k])] = stats_row(
                        objective.training, ev.training.predictions[k]
                    )
            if has_val and vcfg is not None:
                crossed = (state.n_evaluations - 1) // vcfg.every != (
                    state.n_evaluations + n - 1
                ) // vcfg.every
                if crossed:
                    vev = objective.evaluate(
                        ev.x_scaled[j][None, :], validation=True, details="predictions"
                    )
                    vl = float(vev.validation.loss[0])
                    val_loss[j] = vl
                    stats["validation"] = {
                        int(numbers[j]): stats_row(
                            objective.validation, vev.validation.predictions[0]
                        )
                    }
                    if vl < state.best_val_loss:
                        (
                            state.best_val_x,
                            state.best_val_loss,
                            state.best_val_evaluation,
                        ) = ev.x_scaled[j].copy(), vl, int(numbers[j])
                        since_val_improved = 0
                        dirty_best = True
                    else:
                        since_val_improved += n
                else:
                    since_val_improved += n
                if (
                    vcfg.early_stopping_patience is not None
                    and since_val_improved >= vcfg.early_stopping_patience
                ):
                    reasons["early_stopping"] = {
                        "patience": vcfg.early_stopping_patience,
                        "best_validation_evaluation": state.best_val_evaluation,
                    }
            recorder.record(
                BatchRecord(
                    evaluation=numbers,
                    optimizer=owner[keep],
                    elapsed=np.full(n, now()),
                    active_values=objective.interface.from_scaled(ev.x_scaled),
                    training_loss=train_loss,
                    validation_loss=val_loss,
                    stats=stats,
                    training_residuals=ev.training.residuals
                    if save_residuals
                    else None,
                )
            )
            state.n_evaluations += n
            session_evals += n
            # ---- throttled snapshots and checkpoint ------------------------------------------
            t = time.monotonic()
            if t - last_snapshot >= config.logging.snapshot_every_seconds:
                write_snapshots(dirty_best, latest_x, latest_eval)
                dirty_best = False
                last_snapshot = t
            if t - last_checkpoint >= config.checkpoint.every_seconds:
                checkpoint()
                last_checkpoint = t
            if progress is not None:
                progress(
                    ProgressEvent(
                        n_evaluations=state.n_evaluations,
                        max_evaluations=exits.max_evaluations,
                        best_loss=state.best_loss,
                        elapsed=now(),
                        evaluations_per_second=session_evals
                        / max(time.monotonic() - session_start, 1e-9),
                        time_limit=exits.time_limit,
                    )
                )
            if reasons:
                break
        if state.n_failed:
            logger.warning(
                "%d of %d evaluations gave non-finite losses",
                state.n_failed,
                state.n_evaluations,
            )
        # ---- final outputs ----------------------------------------------------------------
        write_snapshots(True, latest_x, latest_eval, figures=True)
        checkpoint()
        recorder.finish()
        if output is not None:
            _final_outputs(Path(output), reasons, state)
    finally:
        close_recorder = getattr(recorder, "close", None)
        if close_recorder is not None:
            close_recorder()
        shutdown = getattr(executor, "shutdown", None)
        if shutdown is not None:
            shutdown()
        for opt in state.optimizers:
            close = getattr(opt, "close", None)
            if close is not None:
                close()
    best_x = state.best_x if state.best_x is not None else x0
    return OptimizationResult(
        best_x_scaled=best_x,
        best_loss=state.best_loss,
        best_evaluation=state.best_evaluation,
        interface=objective.interface.with_values(
            objective.interface.from_scaled(best_x)
        ),
        n_evaluations=state.n_evaluations,
        stop_reasons=reasons,
        best_validation_loss=state.best_val_loss if has_val else None,
        output=output,
    )


def _final_outputs(output: Path, reasons: dict[str, Any], state: _State) -> None:
    from parafit._atomic import write_text_atomic
    from parafit.plots import redraw

    lines = [
        f"evaluations: {state.n_evaluations}",
        f"best_training_loss: {state.best_loss:.10g}",
        f"best_evaluation: {state.best_evaluation}",
        f"failed_evaluations: {state.n_failed}",
        f"elapsed_seconds: {state.elapsed:.3f}",
        f"stop_reasons: {reasons!r}",
    ]
    if state.best_val_x is not None:
        lines.append(f"best_validation_loss: {state.best_val_loss:.10g}")
        lines.append(f"best_validation_evaluation: {state.best_val_evaluation}")
    write_text_atomic(output / "optimization" / "summary.txt", "\n".join(lines) + "\n")
    try:
        redraw(output)
    except Exception as err:  # plots never fail a finished run
        logger.warning("could not draw the loss plot: %s", err)
