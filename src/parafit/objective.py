"""Objective: engine + data sets + loss, the one thing optimizers and samplers call.

``Objective.evaluate(x_scaled)`` maps a batch of active parameter vectors in the unit
cube, shape (n_vectors, n_active), to training (and optionally validation) losses,
running the engine once per batch. A failed job or a violated constraint gives an
infinite loss for that vector; nothing raises for a bad vector.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from parafit.engines.base import Engine, EngineFn, JobResults, Status
from parafit.errors import InputError

if TYPE_CHECKING:
    from parafit.constraints import Constraint
    from parafit.dataset import CompiledDataSet, DataSet
    from parafit.jobs import JobCollection
    from parafit.parameters import ParameterInterface

__all__ = ["DataSetEvaluation", "Evaluation", "Objective"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DataSetEvaluation:
    """Loss of one data set for a batch.

    Attributes:
        loss: (n_vectors,) loss; +inf for failed vectors.
        predictions: (n_vectors, n_values) in display units, or None if not kept.
        residuals: (n_vectors, n_values) ``(prediction - reference)/sigma``, or None.
        contributions: (n_vectors, n_entries) per-entry loss terms, or None.
    """

    loss: np.ndarray
    predictions: np.ndarray | None = None
    residuals: np.ndarray | None = None
    contributions: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Result of :meth:`Objective.evaluate` for a batch of n_vectors points.

    Attributes:
        x_scaled: (n_vectors, n_active) points in [0, 1].
        values: (n_vectors, n_params) all parameter values (model units).
        training: training-set evaluation.
        validation: validation-set evaluation, or None when not requested.
        is_feasible: (n_vectors,) False where a constraint is violated (not evaluated).
        n_failed_jobs: (n_vectors,) number of jobs with a FAILED status.
    """

    x_scaled: np.ndarray
    values: np.ndarray
    training: DataSetEvaluation
    validation: DataSetEvaluation | None
    is_feasible: np.ndarray
    n_failed_jobs: np.ndarray


def concat_evaluations(parts: Sequence[Evaluation]) -> Evaluation:
    """Join evaluations of consecutive chunks of a batch."""

    def cat_ds(items: Sequence[DataSetEvaluation | None]) -> DataSetEvaluation | None:
        if items[0] is None:
            return None

        def cat(name: str) -> np.ndarray | None:
            arrays = [getattr(i, name) for i in items]
            return None if arrays[0] is None else np.concatenate(arrays, axis=0)

        return DataSetEvaluation(
            loss=np.concatenate([i.loss for i in items]),  # type: ignore[union-attr]
            predictions=cat("predictions"),
            residuals=cat("residuals"),
            contributions=cat("contributions"),
        )

    return Evaluation(
        x_scaled=np.concatenate([p.x_scaled for p in parts]),
        values=np.concatenate([p.values for p in parts]),
        training=cat_ds([p.training for p in parts]),  # type: ignore[arg-type]
        validation=cat_ds([p.validation for p in parts]),
        is_feasible=np.concatenate([p.is_feasible for p in parts]),
        n_failed_jobs=np.concatenate([p.n_failed_jobs for p in parts]),
    )


class Objective:
    """Loss of a parameter interface's active parameters on data sets.

    Args:
        engine: the model.
        interface: parameters; its active ones are what ``x_scaled`` sets.
        jobs: the job collection (only jobs used by the data sets are run).
        training_set: the data set that is minimized.
        validation_set: optional data set watched against overfitting.
        loss: loss of the training set: ``sse`` (default), ``sae``, ``mae``, ``rmse``.
        validation_loss: loss of the validation set (default: same as ``loss``).
        constraints: parameter constraints; violating points get an infinite loss
            and are not evaluated.

    Raises:
        InputError: if a data set refers to unknown jobs, extractors or atoms (all
            problems are reported together).
        EngineError: if the engine cannot be set up for these jobs.
    """

    def __init__(
        self,
        engine: Engine,
        interface: "ParameterInterface",
        jobs: "JobCollection",
        training_set: "DataSet",
        validation_set: "DataSet | None" = None,
        *,
        loss: str = "sse",
        validation_loss: str | None = None,
        constraints: Sequence["Constraint"] = (),
    ) -> None:
        from parafit.loss import LOSSES

        self.engine = engine
        self.interface = interface
        self.jobs = jobs
        self.training_set = training_set
        self.validation_set = validation_set
        self.loss = LOSSES.canonical(loss)
        self.validation_loss = LOSSES.canonical(validation_loss or loss)
        self.constraints = tuple(constraints)
        if interface.n_active == 0:
            raise InputError(
                "the parameter interface has no active parameters; set is_active: true on some."
            )
        training_set.validate(jobs)
        if validation_set is not None:
            validation_set.validate(jobs)
        self.training: CompiledDataSet = training_set.compile(jobs)
        self.validation: CompiledDataSet | None = (
            None if validation_set is None else validation_set.compile(jobs)
        )
        training_ids = list(self.training.job_ids)
        extra_ids = (
            []
            if self.validation is None
            else [j for j in self.validation.job_ids if j not in set(training_ids)]
        )
        self._training_fn: EngineFn = engine.setup(
            [jobs[i] for i in training_ids], interface.names
        )
        self._validation_fn: EngineFn | None = (
            engine.setup([jobs[i] for i in extra_ids], interface.names)
            if extra_ids
            else None
        )

    @property
    def n_active(self) -> int:
        return self.interface.n_active

    @property
    def has_validation(self) -> bool:
        return self.validation is not None

    def x0_scaled(self) -> np.ndarray:
        """The interface's current active values in [0, 1], shape (n_active,)."""
        return self.interface.to_scaled(self.interface.active_values)

    def values(self, x_scaled: np.ndarray) -> np.ndarray:
        """All parameter values for points in [0, 1]; (n_vectors, n_active) -> (n_vectors, n_params)."""
        return self.interface.full_values(self.interface.from_scaled(x_scaled))

    def feasible(self, values: np.ndarray) -> np.ndarray:
        """(n_vectors,) True where every constraint holds."""
        mask = np.ones(values.shape[0], dtype=bool)
        for c in self.constraints:
            mask &= c.is_satisfied(values)
        return mask

    def run_engine(
        self, values: np.ndarray, *, validation: bool = False
    ) -> dict[str, JobResults]:
        """Engine results for all parameter values (n_vectors, n_params); never raises."""
        results = self._training_fn(values)
        if validation and self._validation_fn is not None:
            results = {**results, **self._validation_fn(values)}
        return results

    def evaluate(
        self,
        x_scaled: np.ndarray,
        /,
        *,
        validation: bool = False,
        details: Literal["loss", "predictions", "all"] = "loss",
    ) -> Evaluation:
        """Losses for a batch of points.

        Args:
            x_scaled: (n_vectors, n_active) points in [0, 1] (clipped into it).
            validation: also evaluate the validation set.
            details: ``loss`` (losses only), ``predictions`` (plus predictions) or
                ``all`` (plus residuals and per-entry contributions).
        """
        from parafit.loss import compute_loss

        x = np.clip(np.atleast_2d(np.asarray(x_scaled, dtype=float)), 0.0, 1.0)
        if x.shape[1] != self.n_active:
            raise InputError(
                f"evaluate() got points with {x.shape[1]} coordinates; expected n_active={self.n_active}."
            )
        values = self.values(x)
        feasible = self.feasible(values)
        n = x.shape[0]
        do_validation = validation and self.validation is not None
        results: dict[str, JobResults] = {}
        if feasible.any():
            results = self.run_engine(values[feasible], validation=do_validation)
        n_failed = np.zeros(n, dtype=int)
        for r in results.values():
            n_failed[feasible] += ((r.status & Status.FAILED) != 0).astype(int)

        def evaluate_set(compiled: "CompiledDataSet", kind: str) -> DataSetEvaluation:
            loss = np.full(n, np.inf)
            keep_pred = details in ("predictions", "all")
            keep_all = details == "all"
            pred = np.full((n, len(compiled.reference)), np.nan) if keep_pred else None
            res = np.full((n, len(compiled.reference)), np.nan) if keep_all else None
            contrib = np.full((n, compiled.n_entries), np.nan) if keep_all else None
            if feasible.any():
                p = compiled.predict(results)
                lr = compute_loss(p, compiled, kind)
                loss[feasible] = np.where(np.isfinite(lr.loss), lr.loss, np.inf)
                if pred is not None:
                    pred[feasible] = p
                if res is not None:
                    res[feasible] = lr.residuals
                if contrib is not None:
                    contrib[feasible] = lr.contributions
            return DataSetEvaluation(
                loss=loss, predictions=pred, residuals=res, contributions=contrib
            )

        training = evaluate_set(self.training, self.loss)
        valid = (
            evaluate_set(self.validation, self.validation_loss)
            if do_validation
            else None
        )  # type: ignore[arg-type]
        return Evaluation(
            x_scaled=x,
            values=values,
            training=training,
            validation=valid,
            is_feasible=feasible,
            n_failed_jobs=n_failed,
        )

    def __call__(self, x_scaled: np.ndarray, /) -> np.ndarray:
        """Training losses only: (n_vectors, n_active) -> (n_vectors,)."""
        return self.evaluate(x_scaled).training.loss


def evaluate_batch(
    objective: Objective, executor: Any, x_scaled: np.ndarray, /, **kwargs: Any
) -> Evaluation:
    """:meth:`Objective.evaluate` on a batch, split over the executor's workers when
    it has more than one (``executor`` holds ``objective`` as its payload)."""
    if executor.n_workers > 1 and len(x_scaled) > 1:
        return concat_evaluations(executor.map_batch("evaluate", x_scaled, **kwargs))
    return objective.evaluate(x_scaled, **kwargs)
