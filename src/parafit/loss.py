"""Loss functions over weighted, sigma-scaled residuals (as ParAMS).

For a batch of predictions ``y`` (in display units) and a compiled data set with
references ``ŷ``, sigmas ``σ`` and weights ``w``, the residual of value ``j`` of entry
``i`` is ``r_ij = (y_ij - ŷ_ij) / σ_i`` (dimensionless). With ``N`` entries and
``M_i`` values (components) in entry ``i``:

- ``sse`` (alias ``rss``, default): ``L = Σ_i Σ_j w_ij r_ij²``
- ``sae``: ``L = Σ_i Σ_j w_ij |r_ij|``
- ``mae`` (alias ``mad``): ``L = (1/N) Σ_i (1/M_i) Σ_j w_ij |r_ij|``
- ``rmse`` (alias ``rmsd``): ``L = sqrt((1/N) Σ_i (1/M_i) Σ_j w_ij r_ij²)``

so for vector entries MAE and RMSE first average over the entry's components, then
over entries. Weights multiply the per-component term and are not normalized.
Source: SCM ParAMS documentation, "Loss Functions"
(https://www.scm.com/doc/params/python/lossfunctions/lossfunctions.html).
A non-finite prediction of a value with non-zero weight makes the loss ``+inf``;
nothing raises.

:func:`loss_gradient` gives ``dL/dy`` for exact parameter gradients (chain rule with
the predictions' jacobians): ``2 w r / σ`` (SSE), ``w sign(r) / σ`` (SAE), those terms
divided by ``N M_i`` (MAE), and ``w r / (σ N M_i L)`` (RMSE, 0 where L = 0). SAE and
MAE use ``sign(0) = 0`` (a subgradient where a residual is exactly 0).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from parafit._registry import Registry

if TYPE_CHECKING:
    from parafit.dataset import CompiledDataSet

__all__ = [
    "LOSSES",
    "ExtractorStats",
    "LossFunction",
    "LossResult",
    "compute_loss",
    "extractor_statistics",
    "loss_gradient",
    "format_statistics",
    "register_loss",
]

LossName = Literal["sse", "sae", "mae", "rmse"]


@dataclass(frozen=True, slots=True)
class LossFunction:
    """A loss: per-value terms, per-entry reduction, and the final combination.

    Attributes:
        name: registry name.
        squared: terms are ``w r²`` (True) or ``w |r|`` (False).
        mean: average over components, then over entries (MAE/RMSE) instead of summing.
        root: take the square root of the result (RMSE).
    """

    name: str
    squared: bool
    mean: bool
    root: bool = False


LOSSES: Registry[LossFunction] = Registry(
    "loss function", hint="Use one of sse, sae, mae, rmse."
)


def register_loss(loss: LossFunction, *, aliases: tuple[str, ...] = ()) -> None:
    """Make a loss available under ``loss.name``."""
    LOSSES.register(loss.name, loss, aliases=aliases)


register_loss(LossFunction("sse", squared=True, mean=False), aliases=("rss",))
register_loss(LossFunction("sae", squared=False, mean=False))
register_loss(LossFunction("mae", squared=False, mean=True), aliases=("mad",))
register_loss(
    LossFunction("rmse", squared=True, mean=True, root=True), aliases=("rmsd",)
)


@dataclass(frozen=True, slots=True)
class LossResult:
    """Losses of a batch.

    Attributes:
        kind: canonical loss name.
        loss: (n_vectors,) loss (dimensionless); +inf where any value with non-zero
            weight is not finite.
        contributions: (n_vectors, n_entries) each entry's term, summing to ``loss``
            (for RMSE, ``term_i / loss`` with ``term_i`` the entry's share of
            ``loss²``, so that they still sum to the loss); +inf for an entry with a
            non-finite value.
        residuals: (n_vectors, n_values) ``(prediction - reference) / sigma``
            (dimensionless, unweighted).
    """

    kind: str
    loss: np.ndarray
    contributions: np.ndarray
    residuals: np.ndarray

    @property
    def fractions(self) -> np.ndarray:
        """(n_vectors, n_entries) ``contributions / loss`` (each row sums to 1 for finite losses)."""
        with np.errstate(all="ignore"):
            return self.contributions / self.loss[:, None]


def compute_loss(
    predictions: np.ndarray,
    compiled: "CompiledDataSet",
    kind: LossName | str = "sse",
) -> LossResult:
    """Loss of each prediction row against a compiled data set.

    Args:
        predictions: (n_vectors, n_values) (or (n_values,)) in display units, as
            :meth:`~parafit.dataset.CompiledDataSet.predict` returns.
        compiled: the compiled data set.
        kind: ``sse`` (default), ``sae``, ``mae``, ``rmse`` or an alias.

    Returns:
        A :class:`LossResult`; never raises for non-finite predictions.

    Example:
        >>> import numpy as np
        >>> from ase import Atoms
        >>> from parafit.dataset import DataSet
        >>> from parafit.jobs import Job, JobCollection
        >>> jobs = JobCollection([Job("a", Atoms("H"))])
        >>> ds = DataSet()
        >>> _ = ds.add_entry("energy('a')", 1.0, sigma=0.5)
        >>> compute_loss(np.array([[2.0], [1.5]]), ds.compile(jobs)).loss
        array([4., 1.])
    """
    loss_fn = LOSSES.get(kind)
    pred = np.asarray(predictions, dtype=float)
    if pred.ndim == 1:
        pred = pred[None, :]
    if pred.ndim != 2 or pred.shape[1] != compiled.n_values:
        raise ValueError(
            f"predictions must have shape (n_vectors, {compiled.n_values}); got {pred.shape}"
        )
    weight = compiled.weight
    with np.errstate(all="ignore"):
        residuals = (pred - compiled.reference) / compiled.sigma
        terms = weight * (
            residuals * residuals if loss_fn.squared else np.abs(residuals)
        )
        terms = np.where(weight == 0.0, 0.0, terms)
        terms = np.where(np.isfinite(terms), terms, np.inf)
        n_vectors = pred.shape[0]
        if compiled.n_entries:
            per_entry = np.add.reduceat(terms, compiled.entry_start, axis=1)
        else:
            per_entry = np.zeros((n_vectors, 0))
        if loss_fn.mean:
            per_entry = per_entry / compiled.entry_sizes / max(compiled.n_entries, 1)
        total = per_entry.sum(axis=1)
        if loss_fn.root:
            loss = np.sqrt(total)
            contributions = np.where(loss[:, None] > 0, per_entry / loss[:, None], 0.0)
            contributions = np.where(np.isfinite(per_entry), contributions, np.inf)
        else:
            loss = total
            contributions = per_entry
    return LossResult(
        kind=loss_fn.name, loss=loss, contributions=contributions, residuals=residuals
    )


def loss_gradient(
    predictions: np.ndarray,
    compiled: "CompiledDataSet",
    kind: LossName | str = "sse",
) -> tuple[LossResult, np.ndarray]:
    """Loss and its gradient with respect to the predictions.

    Args:
        predictions: (n_vectors, n_values) (or (n_values,)) in display units.
        compiled: the compiled data set.
        kind: ``sse`` (default), ``sae``, ``mae``, ``rmse`` or an alias.

    Returns:
        (result, gradient): the :class:`LossResult` of :func:`compute_loss`, and
        (n_vectors, n_values) ``dL/dy`` [1 / display unit], formulas in the module
        docstring; 0 for values with weight 0 and NaN rows where the loss is not
        finite. Never raises for non-finite predictions.

    Example:
        >>> import numpy as np
        >>> from ase import Atoms
        >>> from parafit.dataset import DataSet
        >>> from parafit.jobs import Job, JobCollection
        >>> jobs = JobCollection([Job("a", Atoms("H"))])
        >>> ds = DataSet()
        >>> _ = ds.add_entry("energy('a')", 1.0, sigma=0.5)
        >>> loss_gradient(np.array([[2.0]]), ds.compile(jobs))[1]
        array([[8.]])
    """
    result = compute_loss(predictions, compiled, kind)
    loss_fn = LOSSES.get(kind)
    weight, sigma = compiled.weight, compiled.sigma
    r = result.residuals
    with np.errstate(all="ignore"):
        if loss_fn.squared:
            grad = 2.0 * weight * r / sigma
        else:
            grad = weight * np.sign(r) / sigma
        if loss_fn.mean:
            per_value = compiled.entry_sizes[compiled.entry_of_value]
            grad = grad / per_value / max(compiled.n_entries, 1)
        if loss_fn.root:
            loss = result.loss[:, None]
            grad = np.where(loss > 0, grad / (2.0 * loss), 0.0)
        grad = np.where(weight == 0.0, 0.0, grad)
    grad[~np.isfinite(result.loss)] = np.nan
    return result, grad


@dataclass(frozen=True, slots=True)
class ExtractorStats:
    """Error statistics of one extractor's values (unweighted, in display units).

    Attributes:
        extractor: extractor name.
        unit: label of the unit of ``mae``/``rmse`` (the first entry's unit; values of
            entries in other units are converted to it).
        n_entries: number of entries.
        n: number of values (components).
        mae: mean absolute error over the values.
        rmse: root-mean-square error over the values.
        max_error: largest absolute error.
    """

    extractor: str
    unit: str
    n_entries: int
    n: int
    mae: float
    rmse: float
    max_error: float


def extractor_statistics(
    predictions_row: np.ndarray, compiled: "CompiledDataSet"
) -> dict[str, ExtractorStats]:
    """MAE and RMSE of each extractor's values for one prediction row.

    Args:
        predictions_row: (n_values,) predictions in display units.
        compiled: the compiled data set.

    Returns:
        ``{extractor: ExtractorStats}`` in order of first appearance; NaN
        statistics when a value is not finite.
    """
    row = np.asarray(predictions_row, dtype=float)
    if row.shape != (compiled.n_values,):
        raise ValueError(f"expected shape ({compiled.n_values},), got {row.shape}")
    names = list(dict.fromkeys(compiled.extractor_of_entry))
    number = {n: k for k, n in enumerate(names)}
    entry_extractor = np.array(
        [number[x] for x in compiled.extractor_of_entry], dtype=int
    )
    # convert every value to the unit of its extractor's first entry
    first_entry = {x: compiled.extractor_of_entry.index(x) for x in names}
    factors = np.array([u.factor for u in compiled.unit_of_entry])
    base = np.array(
        [
            compiled.unit_of_entry[first_entry[x]].factor
            for x in compiled.extractor_of_entry
        ]
    )
    scale = (base / factors)[compiled.entry_of_value]
    with np.errstate(all="ignore"):
        error = (row - compiled.reference) * scale
        group = entry_extractor[compiled.entry_of_value]
        count = np.bincount(group, minlength=len(names))
        abs_sum = np.bincount(group, weights=np.abs(error), minlength=len(names))
        sq_sum = np.bincount(group, weights=error * error, minlength=len(names))
        max_error = np.full(len(names), -np.inf)
        np.maximum.at(max_error, group, np.abs(error))
        n_entries = np.bincount(entry_extractor, minlength=len(names))
        mae = abs_sum / count
        rmse = np.sqrt(sq_sum / count)
    return {
        x: ExtractorStats(
            extractor=x,
            unit=compiled.unit_of_entry[first_entry[x]].label,
            n_entries=int(n_entries[k]),
            n=int(count[k]),
            mae=float(mae[k]),
            rmse=float(rmse[k]),
            max_error=float(max_error[k]),
        )
        for k, x in enumerate(names)
    }


def format_statistics(
    stats: dict[str, ExtractorStats], *, fmt: Callable[[float], str] = "{:.6g}".format
) -> str:
    """A fixed-width text table of :func:`extractor_statistics` (for ``stats.txt``)."""
    header = ("extractor", "unit", "n_entries", "n_values", "MAE", "RMSE", "max_error")
    rows = [
        (
            s.extractor,
            s.unit,
            str(s.n_entries),
            str(s.n),
            fmt(s.mae),
            fmt(s.rmse),
            fmt(s.max_error),
        )
        for s in stats.values()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"
