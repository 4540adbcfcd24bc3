"""Kernels of the HSIC sensitivity analysis, on values scaled to [0, 1].

Two kinds, both registered in :data:`KERNELS` under the names users type in YAML:

- :class:`GaussianKernel` ``k(a, b) = exp(-(a - b)^2 / (2 sigma^2))`` (default
  sigma = 0.3), for parameters, and for the loss in a global analysis.
- :class:`ConjunctiveGaussianKernel` ``l(a, b) = w(a) w(b)`` with
  ``w(a) = exp(-a^2 / (2 gamma^2))`` (default gamma = 0.3), for the loss: two samples
  are alike only when both have a low loss, so the analysis finds what drives the
  loss low (target sensitivity, Spagnol et al., Stat. Comput. 2019,
  doi:10.1007/s11222-018-9810-2; parafit's design page ``sensitivity.md``).

Every kernel has a ``formula`` string, stored with each result. A Gaussian kernel on
a short interval is, to round-off, a product of ``r`` Taylor features
(:meth:`GaussianKernel.features`); that is what makes 10,000 samples x 500 parameters
take seconds instead of hours.
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from parafit._registry import Registry
from parafit.errors import InputError

__all__ = [
    "KERNELS",
    "ConjunctiveGaussianKernel",
    "GaussianKernel",
    "make_kernel",
]

#: Largest number of Taylor features before falling back to the direct pass.
MAX_FEATURES = 64
#: Bound on the absolute error of one Gram-matrix element in the feature form.
FEATURE_TOLERANCE = 1e-16


@dataclass(frozen=True, slots=True)
class GaussianKernel:
    """``k(a, b) = exp(-(a - b)^2 / (2 sigma^2))`` on scaled values (dimensionless).

    Attributes:
        sigma: length scale in units of the scaled [0, 1] range; > 0 (default 0.3).
    """

    sigma: float = 0.3
    name = "gaussian"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise InputError(
                f"GaussianKernel(sigma={self.sigma!r}): sigma must be a positive number."
            )

    @property
    def formula(self) -> str:
        return f"k(a,b) = exp(-(a-b)^2 / (2*{self.sigma:g}^2))"

    @property
    def is_rank_one(self) -> bool:
        return False

    def gram(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(len(a), len(b)) Gram matrix of 1-D value arrays ``a`` and ``b``."""
        d = np.asarray(a, float)[:, None] - np.asarray(b, float)[None, :]
        return np.exp(-(d * d) / (2.0 * self.sigma**2))

    def n_features(self, half_width: float) -> int | None:
        """Features needed for values within ``centre ± half_width``; None if > MAX_FEATURES.

        With ``u = (a - centre)/sigma``, ``k(a,b) = e^{-u_a^2/2} e^{-u_b^2/2}
        sum_k (u_a u_b)^k / k!``; dropping terms ``k >= r`` errs by at most
        ``t^r / r!`` with ``t = (half_width/sigma)^2`` (the Gaussian prefactors absorb
        the ``e^t`` of the Lagrange remainder).
        """
        t = (half_width / self.sigma) ** 2
        if t == 0.0:
            return 1
        log_t, log_tol = math.log(t), math.log(FEATURE_TOLERANCE)
        for r in range(1, MAX_FEATURES + 1):
            if r * log_t - math.lgamma(r + 1) <= log_tol:
                return r
        return None

    def features(self, values: np.ndarray, centre: np.ndarray, r: int) -> np.ndarray:
        """Taylor features ``phi_k = e^{-u^2/2} u^k / sqrt(k!)``, ``k < r``.

        Args:
            values: (n, c) values of c columns.
            centre: (c,) expansion centre per column.
            r: number of features.

        Returns:
            (n, c, r) array ``Phi`` with ``k(a_i, a_j) ≈ Phi_i · Phi_j`` per column.
        """
        u = (values - centre) / self.sigma
        out = np.empty(u.shape + (r,))
        out[..., 0] = np.exp(-0.5 * u * u)
        for k in range(1, r):
            np.multiply(out[..., k - 1], u / math.sqrt(k), out=out[..., k])
        return out


@dataclass(frozen=True, slots=True)
class ConjunctiveGaussianKernel:
    """``l(a, b) = w(a) w(b)``, ``w(a) = exp(-a^2 / (2 gamma^2))`` (rank one).

    Applied to the scaled loss (0 = best sample, 1 = worst), it weighs pairs of
    low-loss samples only.

    Attributes:
        gamma: width of the low-loss window in the scaled loss; > 0 (default 0.3).
    """

    gamma: float = 0.3
    name = "conjunctive_gaussian"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise InputError(
                f"ConjunctiveGaussianKernel(gamma={self.gamma!r}): gamma must be a positive number."
            )

    @property
    def formula(self) -> str:
        return f"l(a,b) = w(a) w(b), w(a) = exp(-a^2 / (2*{self.gamma:g}^2))"

    @property
    def is_rank_one(self) -> bool:
        return True

    def weights(self, values: np.ndarray) -> np.ndarray:
        """``w(values)``, same shape."""
        v = np.asarray(values, float)
        return np.exp(-(v * v) / (2.0 * self.gamma**2))

    def gram(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(len(a), len(b)) Gram matrix ``w(a) w(b)'``."""
        return np.outer(self.weights(a), self.weights(b))


KERNELS: Registry[Any] = Registry(
    "sensitivity kernel", hint="Use gaussian (sigma) or conjunctive_gaussian (gamma)."
)
KERNELS.register("gaussian", GaussianKernel)
KERNELS.register(
    "conjunctive_gaussian", ConjunctiveGaussianKernel, aliases=("conjunctive",)
)


def make_kernel(spec: "dict[str, Any] | Any") -> Any:
    """A kernel from ``{type: gaussian, sigma: 0.3}`` (or a kernel object, returned as is).

    Raises:
        InputError: unknown type or setting.
        UnknownNameError: unknown kernel type.
    """
    if not isinstance(spec, dict):
        return spec
    settings = dict(spec)
    name = str(settings.pop("type", "gaussian"))
    cls = KERNELS.get(name)
    try:
        return cls(**settings)
    except TypeError as err:
        allowed = ", ".join(cls.__dataclass_fields__)
        raise InputError(
            f"kernel {name!r} takes only: {allowed}; got {sorted(settings)}."
        ) from err
