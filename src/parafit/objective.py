"""Objective: engine + data sets + loss, the one thing optimizers and samplers call.

``Objective.evaluate(x_scaled)`` maps a batch of active parameter vectors in the unit
cube, shape (n_vectors, n_active), to training (and optionally validation) losses,
running the engine once per batch. A failed job or a violated constraint gives an
infinite loss for that vector; nothing raises for a bad vector.

With a differentiable engine, ``Objective.value_and_grad(x_scaled)`` (or
``evaluate(..., gradient=True)``) also gives the exact gradient of the training loss
with respect to ``x_scaled``: engine jacobians -> extractor derivatives -> expression
derivatives -> ``dL/dy`` of the loss -> the scaling of the parameter interface. Points
whose derivatives the engine cannot give get central finite differences instead (one
warning in the log). See docs/gradients.md.
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

# Step in the scaled space [0, 1] of the central finite differences that replace an
# exact gradient the engine cannot give (dimensionless).
FD_FALLBACK_STEP = 1e-5


@dataclass(frozen=True, slots=True)
class DataSetEvaluation:
    """Loss of one data set for a batch.

    Attributes:
        loss: (n_vectors,) loss; +inf for failed vectors.
        predictions: (n_vectors, n_values) in display units, or None if not kept.
        residuals: (n_vectors, n_values) ``(prediction - reference)/sigma``, or None.
        contributions: (n_vectors, n_entries) per-entry loss terms, or None.
        gradient: (n_vectors, n_active) d loss / d x_scaled, or None when not asked
            for; NaN rows for failed or infeasible vectors.
    """

    loss: np.ndarray
    predictions: np.ndarray | None = None
    residuals: np.ndarray | None = None
    contributions: np.ndarray | None = None
    gradient: np.ndarray | None = None


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
    """Join evaluations of consecutive chunks of a batch.

    A field that some parts lack (None) while others have it is NaN for those parts'
    rows (e.g. ``gradient`` when only some chunks asked for it).
    """

    def cat_ds(items: Sequence[DataSetEvaluation | None]) -> DataSetEvaluation | None:
        if items[0] is None:
            return None

        def cat(name: str) -> np.ndarray | None:
            arrays = [getattr(i, name) for i in items]
            like = next((a for a in arrays if a is not None), None)
            if like is None:
                return None
            return np.concatenate(
                [
                    np.full((len(i.loss), *like.shape[1:]), np.nan)  # type: ignore[union-attr]
                    if a is None
                    else a
                    for i, a in zip(items, arrays, strict=True)
                ],
                axis=0,
            )

        return DataSetEvaluation(
            loss=np.concatenate([i.loss for i in items]),  # type: ignore[union-attr]
            predictions=cat("predictions"),
            residuals=cat("residuals"),
            contributions=cat("contributions"),
            gradient=cat("gradient"),
        )

    return Evaluation(
        x_scaled=np.concatenate([p.x_scaled for p in parts]),
        values=np.concatenate([p.values for p in parts]),
        training=cat_ds([p.training for p in parts]),  # type: ignore[arg-type]
        validation=cat_ds([p.validation for p in parts]),
        is_feasible=np.concatenate([p.is_feasible for p in parts]),
        n_failed_jobs=np.concatenate([p.n_failed_jobs for p in parts]),
    )


def take_evaluation(ev: Evaluation, rows: np.ndarray) -> Evaluation:
    """The evaluation of the rows ``rows`` (an index array) of a batch, in that order."""

    def take_ds(d: DataSetEvaluation | None) -> DataSetEvaluation | None:
        if d is None:
            return None
        return DataSetEvaluation(
            loss=d.loss[rows],
            predictions=None if d.predictions is None else d.predictions[rows],
            residuals=None if d.residuals is None else d.residuals[rows],
            contributions=None if d.contributions is None else d.contributions[rows],
            gradient=None if d.gradient is None else d.gradient[rows],
        )

    return Evaluation(
        x_scaled=ev.x_scaled[rows],
        values=ev.values[rows],
        training=take_ds(ev.training),  # type: ignore[arg-type]
        validation=take_ds(ev.validation),
        is_feasible=ev.is_feasible[rows],
        n_failed_jobs=ev.n_failed_jobs[rows],
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
        if hasattr(self._training_fn, "jacobian_fields"):
            # lets the engine skip jacobians nobody reads (e.g. energies only)
            self._training_fn.jacobian_fields = dict(self.training.needs_by_job)
        self._has_warned_fd = False

    @property
    def n_active(self) -> int:
        return self.interface.n_active

    @property
    def has_validation(self) -> bool:
        return self.validation is not None

    @property
    def is_differentiable(self) -> bool:
        """Whether the engine gives exact parameter gradients (:meth:`value_and_grad`)."""
        return bool(getattr(self.engine, "is_differentiable", False))

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
        self,
        values: np.ndarray,
        *,
        validation: bool = False,
        grad_indices: Sequence[int] | None = None,
    ) -> dict[str, JobResults]:
        """Engine results for all parameter values (n_vectors, n_params); never raises.

        ``grad_indices``: parameter columns whose jacobians the training jobs' results
        carry (differentiable engines only; the validation jobs get none).
        """
        if grad_indices is None:
            results = self._training_fn(values)
        else:
            results = self._training_fn(values, grad_indices=grad_indices)  # type: ignore[call-arg]
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
        gradient: bool = False,
    ) -> Evaluation:
        """Losses for a batch of points.

        Args:
            x_scaled: (n_vectors, n_active) points in [0, 1] (clipped into it).
            validation: also evaluate the validation set.
            details: ``loss`` (losses only), ``predictions`` (plus predictions) or
                ``all`` (plus residuals and per-entry contributions).
            gradient: also the gradient of the training loss with respect to
                ``x_scaled`` (``training.gradient``); see :meth:`value_and_grad`.

        Raises:
            InputError: wrong number of coordinates, or ``gradient`` with an engine
                that is not differentiable.
        """
        from parafit.loss import compute_loss, loss_gradient

        raw = np.atleast_2d(np.asarray(x_scaled, dtype=float))
        x = np.clip(raw, 0.0, 1.0)
        if x.shape[1] != self.n_active:
            raise InputError(
                f"evaluate() got points with {x.shape[1]} coordinates; expected n_active={self.n_active}."
            )
        if gradient and not self.is_differentiable:
            raise InputError(
                f"engine {type(self.engine).__name__} is not differentiable (is_differentiable "
                "is False), so the objective has no exact gradient; use a gradient-free optimizer "
                "or the finite-difference gradient of the scipy optimizer (gradient: finite-difference)."
            )
        values = self.values(x)
        feasible = self.feasible(values)
        n = x.shape[0]
        do_validation = validation and self.validation is not None
        results: dict[str, JobResults] = {}
        if feasible.any():
            results = self.run_engine(
                values[feasible],
                validation=do_validation,
                grad_indices=self.interface.active_indices.tolist()
                if gradient
                else None,
            )
        n_failed = np.zeros(n, dtype=int)
        for r in results.values():
            n_failed[feasible] += ((r.status & Status.FAILED) != 0).astype(int)

        def evaluate_set(
            compiled: "CompiledDataSet", kind: str, with_gradient: bool = False
        ) -> DataSetEvaluation:
            loss = np.full(n, np.inf)
            keep_pred = details in ("predictions", "all")
            keep_all = details == "all"
            pred = np.full((n, len(compiled.reference)), np.nan) if keep_pred else None
            res = np.full((n, len(compiled.reference)), np.nan) if keep_all else None
            contrib = np.full((n, compiled.n_entries), np.nan) if keep_all else None
            grad = np.full((n, self.n_active), np.nan) if with_gradient else None
            if feasible.any():
                if with_gradient:
                    p, jac = compiled.predict_and_jacobian(
                        results, n_grad=self.n_active
                    )
                    lr, dloss = loss_gradient(p, compiled, kind)
                    grad[feasible] = self._chain(dloss, jac, compiled)  # type: ignore[index]
                else:
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
                loss=loss,
                predictions=pred,
                residuals=res,
                contributions=contrib,
                gradient=grad,
            )

        training = evaluate_set(self.training, self.loss, gradient)
        if gradient:
            training = self._finish_gradient(raw, x, training, results, feasible)
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

    def value_and_grad(self, x_scaled: np.ndarray, /) -> tuple[np.ndarray, np.ndarray]:
        """Training loss and its exact gradient with respect to ``x_scaled``.

        Args:
            x_scaled: (n_vectors, n_active) points (clipped into [0, 1]; the gradient
                component of a clipped coordinate is 0, the loss being flat there).

        Returns:
            (loss, grad): (n_vectors,) losses (+inf for failed or infeasible vectors)
            and (n_vectors, n_active) d loss / d x_scaled (NaN rows for those
            vectors). Points whose engine derivatives are missing (e.g. a cell
            relaxation) get central differences with step ``FD_FALLBACK_STEP``.

        Raises:
            InputError: the engine is not differentiable.
        """
        ev = self.evaluate(x_scaled, gradient=True)
        assert ev.training.gradient is not None
        return ev.training.loss, ev.training.gradient

    def _chain(
        self, dloss: np.ndarray, jac: np.ndarray, compiled: "CompiledDataSet"
    ) -> np.ndarray:
        """d loss / d x_scaled from dL/dy (n, n_values) and dy/dθ_active (n, n_values, n_active)."""
        used = compiled.weight != 0.0
        with np.errstate(all="ignore"):
            d_theta = np.einsum("vj,vjk->vk", dloss[:, used], jac[:, used, :])
        r = self.interface.active_ranges
        return d_theta * (r[:, 1] - r[:, 0])  # θ = lo + x (hi - lo)

    def _finish_gradient(
        self,
        raw: np.ndarray,
        x: np.ndarray,
        training: DataSetEvaluation,
        results: dict[str, JobResults],
        feasible: np.ndarray,
    ) -> DataSetEvaluation:
        """Finite-difference fallback where the exact gradient is missing; 0 for clipped
        coordinates; NaN rows for non-finite losses."""
        grad = training.gradient
        assert grad is not None
        finite = np.isfinite(training.loss)
        missing = finite & ~np.isfinite(grad).all(axis=1)
        if missing.any():
            jobs = self._jobs_without_jacobians(results, missing[feasible])
            message = (
                "no exact gradient for %d of %d points (engine derivatives missing%s); "
                "using central finite differences for them (%d extra evaluations each)"
            )
            where = f" for jobs {', '.join(jobs)}" if jobs else ""
            args = (int(missing.sum()), len(x), where, 2 * self.n_active)
            if self._has_warned_fd:
                logger.debug(message, *args)
            else:
                logger.warning(message, *args)
                self._has_warned_fd = True
            grad[missing] = self._fd_gradient(x[missing])
        grad[~finite] = np.nan
        grad[(raw != x) & finite[:, None]] = 0.0
        return training

    def _jobs_without_jacobians(
        self, results: dict[str, JobResults], rows: np.ndarray
    ) -> list[str]:
        """Up to 5 training job ids whose jacobians are missing or NaN in ``rows``."""
        out = []
        for job_id in self.training.job_ids:
            r = results.get(job_id)
            if r is None:
                continue
            jac = r.jacobians
            ok = r.is_ok & rows
            if jac is None or any(
                not np.isfinite(np.asarray(a)[ok]).all() for a in jac.values()
            ):
                out.append(repr(job_id))
            if len(out) == 5:
                out.append("...")
                break
        return out

    def _fd_gradient(self, x: np.ndarray) -> np.ndarray:
        """Central differences of the training loss, (m, n_active) -> (m, n_active).

        One-sided next to a bound (each step clipped into [0, 1]); NaN where a
        stencil loss is not finite.
        """
        m, k = x.shape
        h = FD_FALLBACK_STEP
        eye = np.eye(k)[None]
        plus = np.clip(x[:, None, :] + h * eye, 0.0, 1.0)  # (m, k, k)
        minus = np.clip(x[:, None, :] - h * eye, 0.0, 1.0)
        stencil = np.concatenate([plus, minus], axis=1).reshape(-1, k)
        loss = self.evaluate(stencil).training.loss.reshape(m, 2, k)
        width = np.einsum("mii->mi", plus) - np.einsum("mii->mi", minus)
        with np.errstate(all="ignore"):
            grad = (loss[:, 0] - loss[:, 1]) / width
        return np.where(np.isfinite(grad), grad, np.nan)


def evaluate_batch(
    objective: Objective,
    executor: Any,
    x_scaled: np.ndarray,
    /,
    *,
    gradient_rows: np.ndarray | None = None,
    **kwargs: Any,
) -> Evaluation:
    """:meth:`Objective.evaluate` on a batch, split over the executor's workers when
    it has more than one (``executor`` holds ``objective`` as its payload).

    ``gradient_rows``: (n_vectors,) bool, the rows whose training-loss gradient is
    wanted (evaluated with ``gradient=True``; the others get NaN gradients when any
    row asks for one).
    """
    if gradient_rows is None or not np.any(gradient_rows):
        return _evaluate_on(objective, executor, x_scaled, **kwargs)
    rows = np.asarray(gradient_rows, dtype=bool)
    if rows.all():
        return _evaluate_on(objective, executor, x_scaled, gradient=True, **kwargs)
    plain = _evaluate_on(objective, executor, x_scaled[~rows], **kwargs)
    with_grad = _evaluate_on(
        objective, executor, x_scaled[rows], gradient=True, **kwargs
    )
    order = np.concatenate([np.flatnonzero(~rows), np.flatnonzero(rows)])
    return take_evaluation(concat_evaluations([plain, with_grad]), np.argsort(order))


def _evaluate_on(
    objective: Objective, executor: Any, x_scaled: np.ndarray, /, **kwargs: Any
) -> Evaluation:
    if executor.n_workers > 1 and len(x_scaled) > 1:
        return concat_evaluations(executor.map_batch("evaluate", x_scaled, **kwargs))
    return objective.evaluate(x_scaled, **kwargs)
