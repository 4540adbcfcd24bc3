"""From samples (parameter vectors and their losses) to an :class:`HSICResult`.

Pipeline (``sensitivity.md``): clean (drop non-finite losses, clip losses <= 0),
draw B subsets of m samples, scale each subset (parameters by their ranges, the loss
by its log range), estimate HSIC per parameter, normalize, and optionally add
permutation p-values.
"""

import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from parafit._rng import as_generator
from parafit.errors import InputError, ParafitWarning
from parafit.sensitivity.hsic import (
    clean_samples,
    hsic_indices,
    normalize,
    permutation_p_values,
    scale_loss,
    scale_parameters,
    subsets,
)
from parafit.sensitivity.kernels import make_kernel
from parafit.sensitivity.result import HSICResult

__all__ = ["analyze_samples"]


def analyze_samples(
    x: np.ndarray,
    loss: np.ndarray,
    *,
    labels: Sequence[str] | None = None,
    x_bounds: np.ndarray | Literal["auto"] = "auto",
    groups: Sequence[str] | None = None,
    repeats: int = 5,
    samples_per_repeat: int = 500,
    with_replacement: bool = False,
    filter_infinite: bool = True,
    parameters_kernel: Any = None,
    loss_kernel: Any = None,
    estimator: Literal["u", "v"] = "u",
    normalization: Literal["clip", "raw"] = "clip",
    p_values: int = 0,
    seed: int = 0,
    description: str = "",
    analyze: str = "training_set",
    loss_name: str = "sse",
    is_reweighted: bool = False,
    on_repeat: Callable[[int], None] | None = None,
) -> HSICResult:
    """HSIC sensitivities of each parameter column of ``x`` for the loss ``loss``.

    Args:
        x: (n_samples, d) parameter values (model units).
        loss: (n_samples,) loss of each sample (dimensionless; +inf: failed).
        labels: (d,) parameter names (default ``x0, x1, ...``).
        x_bounds: (d, 2) ranges scaling each column to [0, 1], or ``"auto"`` (sample
            min/max).
        groups: (d,) group per parameter for the summary plot.
        repeats: number of subsets B (>= 1).
        samples_per_repeat: subset size m (capped at the pool size without
            replacement, with a warning).
        with_replacement: draw subsets with replacement (duplicates bias the
            U-statistic upwards: a duplicated pair counts as perfectly alike).
        filter_infinite: drop non-finite losses (else they are an error).
        parameters_kernel, loss_kernel: kernel objects or ``{type: ..., ...}`` dicts
            (defaults: Gaussian sigma 0.3, conjunctive Gaussian gamma 0.3).
        estimator: ``u`` (unbiased, default) or ``v``.
        normalization: ``clip`` (default) or ``raw``.
        p_values: permutations per repeat for p-values (0 = off).
        seed: seeds the subsets and permutations.
        on_repeat: called with the repeat number after each repeat (progress).

    Returns:
        :class:`HSICResult`.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> x = rng.random((400, 3))
        >>> loss = 1e-3 + (x[:, 2] - 0.4) ** 2
        >>> analyze_samples(x, loss, labels=["a", "b", "c"], repeats=3,
        ...                 samples_per_repeat=200).get_ordered_parameters()[0]
        'c'
    """
    x = np.asarray(x, float)
    y = np.asarray(loss, float)
    if x.ndim != 2:
        raise InputError(f"x must be (n_samples, d); got shape {x.shape}.")
    d = x.shape[1]
    labels = tuple(labels) if labels is not None else tuple(f"x{i}" for i in range(d))
    if len(labels) != d:
        raise InputError(f"got {len(labels)} labels for {d} parameter columns.")
    if repeats < 1:
        raise InputError(f"repeats must be >= 1; got {repeats}.")
    if samples_per_repeat < 4:
        raise InputError(f"samples_per_repeat must be >= 4; got {samples_per_repeat}.")
    kernel_x = make_kernel(parameters_kernel or {"type": "gaussian", "sigma": 0.3})
    kernel_y = make_kernel(
        loss_kernel or {"type": "conjunctive_gaussian", "gamma": 0.3}
    )
    if not hasattr(kernel_x, "gram") or getattr(kernel_x, "is_rank_one", False):
        raise InputError(
            f"the parameters kernel must be a Gaussian kernel; got {kernel_x.name!r}."
        )
    x, y, n_dropped = clean_samples(x, y, filter_infinite=filter_infinite)
    n_pool = y.size
    is_auto = isinstance(x_bounds, str)
    if is_auto:
        if x_bounds != "auto":
            raise InputError(f"x_bounds must be an array or 'auto'; got {x_bounds!r}.")
        bounds = np.column_stack([x.min(0), x.max(0)])
    else:
        bounds = np.asarray(x_bounds, float)
        if bounds.shape != (d, 2):
            raise InputError(f"x_bounds must be ({d}, 2); got {bounds.shape}.")
    m = samples_per_repeat
    if m > n_pool and not with_replacement:
        warnings.warn(
            f"samples_per_repeat={m} exceeds the {n_pool} usable samples; using {n_pool} "
            "per repeat (every repeat then sees the same samples, so the spread over "
            "repeats is 0). Sample more, or set with_replacement: true.",
            ParafitWarning,
            stacklevel=2,
        )
        m = n_pool
    rng = as_generator(seed)
    hsic = np.empty((repeats, d))
    pv = np.empty((repeats, d)) if p_values > 0 else np.zeros((0, d))
    for b, idx in enumerate(
        subsets(
            n_pool,
            repeats=repeats,
            samples_per_repeat=m,
            with_replacement=with_replacement,
            rng=rng,
        )
    ):
        xb = x[idx]
        sub_bounds = np.column_stack([xb.min(0), xb.max(0)]) if is_auto else bounds
        xs = scale_parameters(xb, sub_bounds)
        ys = scale_loss(y[idx])
        hsic[b] = hsic_indices(
            xs, ys, kernel_x=kernel_x, kernel_y=kernel_y, estimator=estimator
        )
        if p_values > 0:
            pv[b] = permutation_p_values(
                xs,
                ys,
                hsic[b],
                n_permutations=p_values,
                rng=rng,
                kernel_x=kernel_x,
                kernel_y=kernel_y,
                estimator=estimator,
            )
        if on_repeat is not None:
            on_repeat(b)
    return HSICResult(
        labels=labels,
        x_bounds=bounds,
        hsic=hsic,
        sensitivities=normalize(hsic, normalization),
        groups=tuple(groups) if groups is not None else (),
        p_values=pv,
        n_samples=n_pool,
        n_dropped=n_dropped,
        samples_per_repeat=m,
        repeats=repeats,
        seed=seed,
        kernel_x=kernel_x.formula,
        kernel_y=kernel_y.formula,
        estimator=estimator,
        normalization=normalization,
        with_replacement=with_replacement,
        analyze=analyze,
        loss=loss_name,
        is_reweighted=is_reweighted,
        description=description,
        permutations=p_values,
    )
