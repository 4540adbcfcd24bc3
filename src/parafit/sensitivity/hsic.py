"""HSIC estimators between each parameter and the loss (pure numerics, no I/O).

For one parameter with Gram matrix ``K`` and the loss Gram matrix ``L`` (n x n), with
``K~``, ``L~`` the same matrices with zeroed diagonals:

- U-statistic (default; Song et al., JMLR 13, 2012, eq. 5)::

    HSIC_U = [tr(K~L~) + (1'K~1)(1'L~1)/((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))

- V-statistic (Gretton et al., ALT 2005): ``HSIC_V = tr(K H L H) / n^2``,
  ``H = I - 11'/n``.

Both need only ``sum_ij K_ij L_ij``, ``K1``, ``L1`` and the diagonals. Nothing n x n is
built for the default kernels: the Gaussian parameter kernel is written as ``Phi Phi'``
with Taylor features (:meth:`~parafit.sensitivity.kernels.GaussianKernel.features`),
and the conjunctive loss kernel is rank one (``L = w w'``), so every parameter costs
O(n r) and all d parameters O(n d r). Small kernel widths, whose Taylor series would
need more than :data:`~parafit.sensitivity.kernels.MAX_FEATURES` terms, fall back to a
direct pass over row tiles of K (O(d n^2) time, O(n x tile) memory).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from parafit.errors import InputError
from parafit.sensitivity.kernels import ConjunctiveGaussianKernel, GaussianKernel

__all__ = [
    "clean_samples",
    "hsic_from_gram",
    "hsic_indices",
    "normalize",
    "scale_loss",
    "scale_parameters",
]

Estimator = Literal["u", "v"]
Normalization = Literal["clip", "raw"]

#: Parameters handled together (bounds the (n, chunk, r) feature array).
_CHUNK_BYTES = 64 * 2**20
#: Rows per tile in the direct pass.
_TILE_ROWS = 256


# ---- preparation ------------------------------------------------------------------
def clean_samples(
    x: np.ndarray, y: np.ndarray, *, filter_infinite: bool = True
) -> tuple[np.ndarray, np.ndarray, int]:
    """Drop non-finite losses and clip losses <= 0 to the smallest positive loss.

    Args:
        x: (n_samples, d) parameter values.
        y: (n_samples,) losses.
        filter_infinite: drop samples whose loss is not finite (else: an error).

    Returns:
        ``(x, y, n_dropped)``.

    Raises:
        InputError: non-finite losses with ``filter_infinite`` off, no positive loss,
            or fewer than 4 samples left.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise InputError(
            f"samples must be x (n_samples, d) and y (n_samples,); got {x.shape} and {y.shape}."
        )
    finite = np.isfinite(y) & np.isfinite(x).all(axis=1)
    n_dropped = int((~finite).sum())
    if n_dropped and not filter_infinite:
        raise InputError(
            f"{n_dropped} of {y.size} samples have a non-finite loss or parameter; "
            "set filter_infinite: true to drop them."
        )
    x, y = x[finite], y[finite]
    positive = y > 0
    if not positive.any():
        raise InputError(
            "no sample has a positive finite loss; the log-scaled loss is undefined."
        )
    y = np.where(positive, y, y[positive].min())
    if y.size < 4:
        raise InputError(
            f"HSIC needs at least 4 samples with a finite loss; got {y.size}."
        )
    return x, y, n_dropped


def scale_parameters(x: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """(n, d) values mapped to [0, 1] by ``bounds`` (d, 2); a zero-width range maps to 0."""
    lo, hi = bounds[:, 0], bounds[:, 1]
    width = hi - lo
    with np.errstate(all="ignore"):
        out = (x - lo) / np.where(width > 0, width, 1.0)
    return np.where(width > 0, out, 0.0)


def scale_loss(y: np.ndarray) -> np.ndarray:
    """``(ln y - min ln y) / (max ln y - min ln y)``: best sample 0, worst 1.

    Raises:
        InputError: all losses equal (nothing to explain).
    """
    ly = np.log(y)
    lo, hi = ly.min(), ly.max()
    if not hi > lo:
        raise InputError(
            f"all {y.size} losses are equal ({y[0]!r}); the loss does not depend on any "
            "sampled parameter. Widen the ranges or check the data set."
        )
    return (ly - lo) / (hi - lo)


def normalize(hsic: np.ndarray, policy: Normalization = "clip") -> np.ndarray:
    """Sensitivities from HSIC values along the last axis.

    ``clip``: ``S_j = max(HSIC_j, 0) / sum_k max(HSIC_k, 0)`` (in [0, 1], sum 1; all
    zero if no HSIC is positive). ``raw``: ``HSIC_j / sum_k HSIC_k`` (may be negative).
    """
    h = np.asarray(hsic, float)
    if policy == "clip":
        h = np.maximum(h, 0.0)
    elif policy != "raw":
        raise InputError(f"normalization must be 'clip' or 'raw'; got {policy!r}.")
    total = h.sum(axis=-1, keepdims=True)
    with np.errstate(all="ignore"):
        return np.where(total != 0, h / np.where(total != 0, total, 1.0), 0.0)


# ---- estimators from the few sums they need ----------------------------------------
def _combine(
    s_kl: np.ndarray,
    k1: np.ndarray,
    dk: np.ndarray,
    l1: np.ndarray,
    dl: np.ndarray,
    estimator: Estimator,
) -> np.ndarray:
    """HSIC from ``sum K∘L`` (...,), ``K1`` (n, ...), ``diag K`` (n, ...), ``L1``, ``diag L`` (n, ...)."""
    n = k1.shape[0]
    if estimator == "v":
        kl = np.einsum("n...,n...->...", k1, l1)
        return (s_kl - 2.0 / n * kl + k1.sum(0) * l1.sum(0) / n**2) / n**2
    kt1 = k1 - dk
    lt1 = l1 - dl
    tr = s_kl - np.einsum("n...,n...->...", dk, dl)
    sk = kt1.sum(0)
    sl = lt1.sum(0)
    cross = np.einsum("n...,n...->...", kt1, lt1)
    return (tr + sk * sl / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * cross) / (n * (n - 3))


def hsic_from_gram(K: np.ndarray, L: np.ndarray, estimator: Estimator = "u") -> float:
    """HSIC of two full (n, n) Gram matrices (reference implementation, O(n^2))."""
    K = np.asarray(K, float)
    L = np.asarray(L, float)
    n = K.shape[0]
    if estimator == "u" and n < 4:
        raise InputError(f"the U-statistic needs n >= 4 samples; got {n}.")
    return float(
        _combine(
            np.sum(K * L),
            K.sum(1),
            np.diag(K).copy(),
            L.sum(1),
            np.diag(L).copy(),
            estimator,
        )
    )


# ---- the loss side ------------------------------------------------------------------
@dataclass(frozen=True)
class _LossSide:
    """The loss Gram matrix in the cheapest exact form, for q loss vectors at once.

    Exactly one of ``w`` (n, q) rank-one factors, ``psi`` (n, q, r) features or
    ``gram`` (q, n, n) is set; ``l1`` and ``dl`` are (n, q).
    """

    l1: np.ndarray
    dl: np.ndarray
    w: np.ndarray | None = None
    psi: np.ndarray | None = None
    gram: np.ndarray | None = None


def _loss_side(y_scaled: np.ndarray, kernel: Any, method: str) -> _LossSide:
    ys = y_scaled if y_scaled.ndim == 2 else y_scaled[:, None]
    if isinstance(kernel, ConjunctiveGaussianKernel) or getattr(
        kernel, "is_rank_one", False
    ):
        w = kernel.weights(ys)
        return _LossSide(l1=w * w.sum(0), dl=w * w, w=w)
    if isinstance(kernel, GaussianKernel) and method != "direct":
        lo, hi = ys.min(0), ys.max(0)
        r = kernel.n_features(float(np.max(hi - lo)) / 2.0)
        if r is not None:
            psi = kernel.features(ys, (lo + hi) / 2.0, r)
            l1 = np.einsum("nqr,qr->nq", psi, psi.sum(0))
            return _LossSide(l1=l1, dl=np.ones_like(ys), psi=psi)
    gram = np.stack([kernel.gram(ys[:, j], ys[:, j]) for j in range(ys.shape[1])])
    return _LossSide(
        l1=gram.sum(2).T, dl=np.stack([np.diag(g) for g in gram], axis=1), gram=gram
    )


# ---- the parameter side -------------------------------------------------------------
def _chunk_size(n: int, r: int, q: int) -> int:
    return max(1, int(_CHUNK_BYTES // (8 * n * max(r, q, 1))))


def _hsic_features(
    xs: np.ndarray,
    kernel: GaussianKernel,
    r: int,
    loss: _LossSide,
    estimator: Estimator,
) -> np.ndarray:
    """(q, c) HSIC of c columns with Taylor features of rank r."""
    n, c = xs.shape
    lo, hi = xs.min(0), xs.max(0)
    phi = kernel.features(xs, (lo + hi) / 2.0, r)  # (n, c, r)
    k1 = np.einsum("ncr,cr->nc", phi, phi.sum(0))  # (n, c)
    dk = np.ones((n, c))
    q = loss.l1.shape[1]
    if loss.w is not None:
        a = np.einsum("ncr,nq->cqr", phi, loss.w)  # Phi' w
        s_kl = np.einsum("cqr,cqr->qc", a, a)  # w'Kw = |Phi' w|^2
    elif loss.psi is not None:
        flat = phi.reshape(n, c * r)
        s_kl = np.empty((q, c))
        for j in range(q):
            m = (flat.T @ loss.psi[:, j, :]).reshape(c, r, -1)  # Phi' Psi
            s_kl[j] = np.einsum("crs,crs->c", m, m)
    else:
        assert loss.gram is not None
        s_kl = np.empty((q, c))
        for j in range(q):
            # sum_ij K_ij L_ij = sum_k |L^{1/2}...|: use Phi' L Phi diagonal traces
            lphi = np.einsum("nm,mcr->ncr", loss.gram[j], phi)
            s_kl[j] = np.einsum("ncr,ncr->c", phi, lphi)
    out = np.empty((q, c))
    for j in range(q):
        out[j] = _combine(
            s_kl[j], k1, dk, loss.l1[:, j, None], loss.dl[:, j, None], estimator
        )
    return out


def _hsic_direct(
    xs: np.ndarray, kernel: Any, loss: _LossSide, estimator: Estimator
) -> np.ndarray:
    """(q, c) HSIC of c columns by a pass over row tiles of the exact K."""
    n, c = xs.shape
    q = loss.l1.shape[1]
    k1 = np.zeros((n, c))
    s_kl = np.zeros((q, c))
    dk = np.empty((n, c))
    for i0 in range(0, n, _TILE_ROWS):
        i1 = min(n, i0 + _TILE_ROWS)
        kb = np.stack([kernel.gram(xs[i0:i1, j], xs[:, j]) for j in range(c)], axis=2)
        k1[i0:i1] = kb.sum(1)
        rows = np.arange(i1 - i0)
        dk[i0:i1] = kb[rows, rows + i0, :]
        for j in range(q):
            if loss.w is not None:
                s_kl[j] += np.einsum("b,bnc,n->c", loss.w[i0:i1, j], kb, loss.w[:, j])
            elif loss.gram is not None:
                s_kl[j] += np.einsum("bnc,bn->c", kb, loss.gram[j, i0:i1])
            else:
                assert loss.psi is not None
                lb = np.einsum("br,nr->bn", loss.psi[i0:i1, j], loss.psi[:, j])
                s_kl[j] += np.einsum("bnc,bn->c", kb, lb)
    out = np.empty((q, c))
    for j in range(q):
        out[j] = _combine(
            s_kl[j], k1, dk, loss.l1[:, j, None], loss.dl[:, j, None], estimator
        )
    return out


def hsic_indices(
    x_scaled: np.ndarray,
    y_scaled: np.ndarray,
    *,
    kernel_x: Any = None,
    kernel_y: Any = None,
    estimator: Estimator = "u",
    method: Literal["auto", "features", "direct"] = "auto",
) -> np.ndarray:
    """HSIC between every parameter column and the loss.

    Args:
        x_scaled: (n_samples, d) parameter values scaled to [0, 1].
        y_scaled: (n_samples,) scaled loss, or (n_samples, q) for q loss vectors at
            once (e.g. permutations; the parameter features are built once).
        kernel_x: parameter kernel (default ``GaussianKernel(0.3)``).
        kernel_y: loss kernel (default ``ConjunctiveGaussianKernel(0.3)``).
        estimator: ``u`` (unbiased, needs n >= 4) or ``v`` (biased).
        method: ``auto`` (Taylor features when the bound allows, else direct),
            ``features`` or ``direct``.

    Returns:
        (d,) HSIC values, or (q, d) for a 2-D ``y_scaled``. A constant column gets
        exactly 0.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> x = rng.random((200, 3))
        >>> y = (x[:, 0] - 0.2) ** 2 + 0.01
        >>> h = hsic_indices(x, scale_loss(y))
        >>> int(np.argmax(h))
        0
    """
    kernel_x = GaussianKernel() if kernel_x is None else kernel_x
    kernel_y = ConjunctiveGaussianKernel() if kernel_y is None else kernel_y
    x = np.asarray(x_scaled, float)
    y = np.asarray(y_scaled, float)
    if x.ndim != 2 or y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
        raise InputError(
            f"x_scaled must be (n_samples, d) and y_scaled (n_samples,) or (n_samples, q); "
            f"got {x.shape} and {y.shape}."
        )
    if estimator not in ("u", "v"):
        raise InputError(f"estimator must be 'u' or 'v'; got {estimator!r}.")
    n, d = x.shape
    if estimator == "u" and n < 4:
        raise InputError(f"the U-statistic needs n >= 4 samples; got {n}.")
    loss = _loss_side(y, kernel_y, method)
    q = loss.l1.shape[1]
    out = np.zeros((q, d))
    span = x.max(0) - x.min(0) if n else np.zeros(d)
    varying = np.flatnonzero(span > 0)
    r = None
    if method != "direct" and isinstance(kernel_x, GaussianKernel) and varying.size:
        r = kernel_x.n_features(float(span[varying].max()) / 2.0)
        if r is None and method == "features":
            raise InputError(
                f"kernel {kernel_x.formula} needs more than the maximum number of Taylor "
                "features on this data; use method='direct'."
            )
    if r is not None:
        step = _chunk_size(n, r, q)
    else:  # direct pass: a (tile, n, step) block of K and its temporaries
        step = max(1, _CHUNK_BYTES // (8 * 2 * _TILE_ROWS * max(n, 1)))
    for s in range(0, varying.size, step):
        cols = varying[s : s + step]
        if r is not None:
            out[:, cols] = _hsic_features(x[:, cols], kernel_x, r, loss, estimator)
        else:
            out[:, cols] = _hsic_direct(x[:, cols], kernel_x, loss, estimator)
    return out[0] if y.ndim == 1 else out


def permutation_p_values(
    x_scaled: np.ndarray,
    y_scaled: np.ndarray,
    observed: np.ndarray,
    *,
    n_permutations: int,
    rng: np.random.Generator,
    batch: int = 32,
    **kwargs: Any,
) -> np.ndarray:
    """(d,) p-values ``(1 + #{HSIC_perm >= HSIC_obs}) / (1 + n_permutations)``.

    Each permutation of the loss costs one HSIC pass; permutations are batched so that
    the parameter features are built once per batch.
    """
    count = np.zeros_like(observed, dtype=float)
    done = 0
    while done < n_permutations:
        b = min(batch, n_permutations - done)
        perms = np.stack([rng.permutation(y_scaled) for _ in range(b)], axis=1)
        h = hsic_indices(x_scaled, perms, **kwargs)
        count += (h >= observed[None, :]).sum(0)
        done += b
    return (1.0 + count) / (1.0 + n_permutations)


def subsets(
    n_pool: int,
    *,
    repeats: int,
    samples_per_repeat: int,
    with_replacement: bool,
    rng: np.random.Generator,
) -> Sequence[np.ndarray]:
    """``repeats`` index arrays of ``samples_per_repeat`` drawn from ``range(n_pool)``."""
    return [
        rng.choice(n_pool, size=samples_per_repeat, replace=with_replacement)
        for _ in range(repeats)
    ]
