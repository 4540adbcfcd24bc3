"""Re-score stored residuals with new weights, sigmas, references or loss; no engine.

A sampling run that saved residuals ``r = (y - ref)/sigma`` per sample and data-set
value can recompute every sample's loss for an edited data set: the prediction is
``y = r sigma + ref`` with the sampled run's ``sigma`` and ``ref`` (stored with the
residuals), and the new loss uses the new reference, sigma and weight of each entry,
matched by expression. Entries missing from the new data set are dropped; entries
that were not sampled cannot be scored and are an error.

Balanced weights (parafit's definition, ``sensitivity.md``):
``weight_t ∝ 1 / mean_s sum_j (r_tj / sigma_t)^2`` over samples ``s`` with a finite
loss, scaled so the mean entry weight is unchanged; then every entry contributes
equally to the average SSE.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from parafit.errors import InputError

__all__ = ["ReweightReport", "ScoringLayout", "balanced_weights", "rescore"]


@dataclass(frozen=True)
class ScoringLayout:
    """Reference, sigma and weight of every value, grouped into entries.

    Has the attributes :func:`parafit.loss.compute_loss` reads from a compiled data
    set, so stored residuals are scored by the same code as live predictions.

    Attributes:
        expressions: (n_entries,) entry expressions.
        units: (n_entries,) unit labels.
        entry_of_value: (n_values,) entry index of each value.
        reference, sigma, weight: (n_values,) in each entry's unit.
    """

    expressions: tuple[str, ...]
    units: tuple[str, ...]
    entry_of_value: np.ndarray
    reference: np.ndarray
    sigma: np.ndarray
    weight: np.ndarray

    @classmethod
    def from_arrays(cls, layout: Mapping[str, np.ndarray]) -> "ScoringLayout":
        return cls(
            expressions=tuple(str(e) for e in layout["expressions"]),
            units=tuple(str(u) for u in layout["units"]),
            entry_of_value=np.asarray(layout["entry_of_value"], dtype=np.int64),
            reference=np.asarray(layout["reference"], float),
            sigma=np.asarray(layout["sigma"], float),
            weight=np.asarray(layout["weight"], float),
        )

    @property
    def n_entries(self) -> int:
        return len(self.expressions)

    @property
    def n_values(self) -> int:
        return int(self.entry_of_value.size)

    @property
    def entry_sizes(self) -> np.ndarray:
        return np.bincount(self.entry_of_value, minlength=self.n_entries)

    @property
    def entry_start(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.entry_sizes)[:-1]]).astype(int)

    @property
    def entry_weights(self) -> np.ndarray:
        """(n_entries,) mean weight of each entry's values."""
        return np.add.reduceat(self.weight, self.entry_start) / self.entry_sizes

    def with_entry_weights(self, weights: np.ndarray) -> "ScoringLayout":
        """The same layout with one weight per entry, (n_entries,)."""
        return ScoringLayout(
            self.expressions,
            self.units,
            self.entry_of_value,
            self.reference,
            self.sigma,
            np.asarray(weights, float)[self.entry_of_value],
        )

    def matched(self, data_set: Any) -> tuple["ScoringLayout", np.ndarray]:
        """The layout of ``data_set``'s entries and, (n_values_new,), the columns of
        this layout's residuals they read.

        Raises:
            InputError: an entry of ``data_set`` was not sampled, or its size or
                unit changed.
        """
        position = {e.strip(): i for i, e in enumerate(self.expressions)}
        sizes, starts = self.entry_sizes, self.entry_start
        cols: list[np.ndarray] = []
        expressions, units, ref, sig, wgt, entry_of = [], [], [], [], [], []
        for k, entry in enumerate(data_set.entries):
            i = position.get(entry.expression.strip())
            if i is None:
                raise InputError(
                    f"entry {entry.expression!r} was not in the sampled data set; "
                    "reweighting can change weights, sigmas and references or drop "
                    "entries, but a new entry needs new engine runs (sample again).",
                    key=entry.expression,
                )
            if entry.unit.label != self.units[i]:
                raise InputError(
                    f"entry {entry.expression!r}: unit changed from {self.units[i]!r} to "
                    f"{entry.unit.label!r}; reweighting needs the sampled unit.",
                    key=entry.expression,
                )
            m = int(sizes[i])
            reference = entry.reference
            if reference is None:
                raise InputError(
                    f"entry {entry.expression!r} has no reference value.",
                    key=entry.expression,
                )
            r = (
                np.broadcast_to(np.asarray(reference, float).ravel(), (m,))
                if np.size(reference) in (1, m)
                else None
            )
            if r is None:
                raise InputError(
                    f"entry {entry.expression!r}: {np.size(reference)} reference values "
                    f"for {m} sampled values.",
                    key=entry.expression,
                )
            w = np.asarray(entry.weight, float).ravel()
            if w.size not in (1, m):
                raise InputError(
                    f"entry {entry.expression!r}: {w.size} weights for {m} values.",
                    key=entry.expression,
                )
            cols.append(np.arange(starts[i], starts[i] + m))
            expressions.append(entry.expression)
            units.append(entry.unit.label)
            ref.append(r)
            sig.append(np.full(m, float(entry.sigma)))
            wgt.append(np.broadcast_to(w, (m,)))
            entry_of.append(np.full(m, k))

        def cat(parts: list[np.ndarray], dtype: Any = float) -> np.ndarray:
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        layout = ScoringLayout(
            tuple(expressions),
            tuple(units),
            cat(entry_of, np.int64),
            cat(ref),
            cat(sig),
            cat(wgt),
        )
        return layout, cat(cols, np.int64)


def rescore(
    residuals: np.ndarray,
    sampled: ScoringLayout,
    new: ScoringLayout | None = None,
    columns: np.ndarray | None = None,
    *,
    loss: str = "sse",
) -> tuple[np.ndarray, np.ndarray]:
    """Losses of stored residuals under a new layout.

    Args:
        residuals: (n_samples, n_values) residuals of the sampled layout.
        sampled: the layout the residuals were computed with.
        new: the new layout (default: ``sampled``).
        columns: (n_values_new,) columns of ``residuals`` for ``new`` (from
            :meth:`ScoringLayout.matched`; default: all).
        loss: loss function name.

    Returns:
        ``(loss (n_samples,), contributions (n_samples, n_entries_new))``; +inf
        where a needed residual is missing (a failed sample).
    """
    from parafit.loss import compute_loss

    new = sampled if new is None else new
    columns = np.arange(sampled.n_values) if columns is None else columns
    predictions = residuals * sampled.sigma + sampled.reference
    result = compute_loss(predictions[:, columns], new, loss)  # type: ignore[arg-type]
    return result.loss, result.contributions


def balanced_weights(
    residuals: np.ndarray,
    sampled: ScoringLayout,
    new: ScoringLayout,
    columns: np.ndarray,
) -> np.ndarray:
    """(n_entries,) weights making every entry's mean SSE term equal (see module doc).

    Entries whose residuals are all zero keep their mean weight.
    """
    predictions = (
        residuals[:, columns] * sampled.sigma[columns] + sampled.reference[columns]
    )
    r2 = ((predictions - new.reference) / new.sigma) ** 2
    finite = np.isfinite(r2).all(axis=1)
    if not finite.any():
        raise InputError("no sample has finite residuals; cannot balance weights.")
    per_entry = np.add.reduceat(r2[finite], new.entry_start, axis=1).mean(axis=0)
    target = float(new.entry_weights.mean())
    with np.errstate(divide="ignore"):
        raw = np.where(per_entry > 0, 1.0 / per_entry, np.nan)
    scale = target / np.nanmean(raw) if np.isfinite(raw).any() else 1.0
    return np.where(np.isfinite(raw), raw * scale, target)


@dataclass(frozen=True)
class ReweightReport:
    """Per entry: weight and share of the mean loss before and after balancing.

    Attributes:
        expressions: (n_entries,) entry expressions.
        weight_before, weight_after: (n_entries,) entry weights.
        share_before, share_after: (n_entries,) fraction of the mean loss over
            samples with a finite loss.
        n_samples: samples used.
    """

    expressions: tuple[str, ...]
    weight_before: np.ndarray
    weight_after: np.ndarray
    share_before: np.ndarray
    share_after: np.ndarray
    n_samples: int

    @staticmethod
    def shares(contributions: np.ndarray) -> np.ndarray:
        """(n_entries,) share of each entry in the mean loss of finite rows."""
        finite = np.isfinite(contributions).all(axis=1)
        mean = (
            contributions[finite].mean(axis=0)
            if finite.any()
            else contributions[0] * np.nan
        )
        total = mean.sum()
        return mean / total if total > 0 else np.zeros_like(mean)

    def to_text(self) -> str:
        width = max([len("entry")] + [len(e) for e in self.expressions])
        lines = [
            "# Balanced weights: weight_t ∝ 1 / mean over samples of sum_j (residual_tj/sigma_t)^2",
            f"# {self.n_samples} samples with a finite loss; shares of the mean loss in %",
            f"{'entry':<{width}}  {'weight':>10}  {'balanced':>10}  {'share %':>8}  {'after %':>8}",
        ]
        for i in np.argsort(-self.share_before, kind="stable"):
            lines.append(
                f"{self.expressions[i]:<{width}}  {self.weight_before[i]:>10.4g}  "
                f"{self.weight_after[i]:>10.4g}  {100 * self.share_before[i]:>8.2f}  "
                f"{100 * self.share_after[i]:>8.2f}"
            )
        return "\n".join(lines) + "\n"
