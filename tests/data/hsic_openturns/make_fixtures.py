"""Make ``fixtures.npz``: OpenTURNS HSIC values on parafit's samples, scaling and kernels.

The test suite compares parafit's HSIC estimators with these numbers
(``tests/test_sensitivity_hsic.py``) without needing OpenTURNS installed.

Rerun (needs ``pip install openturns``; any 1.2x release, the version used is stored)::

    .venv/bin/python tests/data/hsic_openturns/make_fixtures.py

The samples are seeded, so a rerun with the same numpy and OpenTURNS writes the same
numbers. Rerun it when a fixture's definition here changes, not when parafit's code
changes: the whole point is that OpenTURNS, not parafit, made the HSIC values.

What is stored (``np.load(path, allow_pickle=False)`` reads it; plain arrays only). For
each case ``c`` in ``n120`` and ``n300`` (n samples of d = 5 parameters; the loss
depends on parameters 1 and 3 only):

- ``c_x`` (n, d) raw parameter values (model units), ``c_x_bounds`` (d, 2) their
  sampling ranges, ``c_y`` (n,) raw losses (> 0);
- ``c_x_scaled`` = ``scale_parameters(x, x_bounds)``, ``c_y_scaled`` =
  ``scale_loss(y)`` (parafit's scaling, so OpenTURNS sees exactly parafit's inputs);
- ``c_ot_{u,v}_{conjunctive,gaussian}`` (d,): ``HSICUStat`` / ``HSICVStat``
  ``.computeHSICIndex(K_j, L, ones(n))`` with ``K_j`` parafit's Gaussian Gram matrix
  (sigma 0.3) of parameter j and ``L`` parafit's conjunctive (gamma 0.3) or Gaussian
  (sigma 0.3) Gram matrix of the scaled loss;
- ``c_ot_target_hsic`` (len(TARGET_SCALES), d): ``HSICEstimatorTargetSensitivity``
  with ``SquaredExponential([0.3])`` input kernels (amplitude 1; its formula
  ``exp(-(a-b)^2 / (2 theta^2))`` is checked below against parafit's Gaussian
  kernel), output kernel ``SquaredExponential([s])`` for each s in
  ``target_scales``, the filter ``w(y~) = exp(-y~^2 / (2 * 0.3^2))`` (a
  ``SymbolicFunction``, independent of parafit's code) applied to the scaled loss,
  and the U-statistic: ``getHSICIndices()``. This is parafit's
  ``hsic_indices(x_scaled, w(y_scaled), kernel_y=GaussianKernel(s))``. For large s,
  ``exp(-(w-w')^2/(2 s^2)) = 1 - (w^2 + w'^2)/(2 s^2) + w w'/s^2 + O(s^-4)``: the
  constant and additive parts vanish under U-centring, so ``s^2 HSIC`` tends to
  parafit's conjunctive-kernel HSIC and the normalized indices to parafit's
  conjunctive sensitivities, with a gap O(1/s^2) (until float64 cancellation in the
  Gram matrix, ~1e-16 s^2 / HSIC, takes over near s = 1e3);
- ``target_scales`` (k,), ``sigma_x``, ``gamma``, ``sigma_y`` (kernel settings) and
  ``openturns_version`` (a string).
"""

from pathlib import Path

import numpy as np
import openturns as ot

from parafit.sensitivity.hsic import scale_loss, scale_parameters
from parafit.sensitivity.kernels import ConjunctiveGaussianKernel, GaussianKernel

HERE = Path(__file__).resolve().parent
#: Parameter ranges (model units); deliberately not [0, 1].
X_BOUNDS = np.array([[-1.0, 2.0], [0.0, 10.0], [0.5, 0.7], [-5.0, 5.0], [100.0, 200.0]])
#: Case name -> (number of samples, seed).
CASES = {"n120": (120, 20240601), "n300": (300, 20240602)}
SIGMA_X = 0.3
GAMMA = 0.3
SIGMA_Y = 0.3
#: Output-kernel scales of the target-sensitivity estimator.
TARGET_SCALES = np.array([0.5, 10.0, 100.0, 1000.0])


def make_samples(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 5) uniform samples in :data:`X_BOUNDS` and their (n,) losses (> 0).

    The loss depends on parameters 1 and 3 only: with ``u = (x - lo) / (hi - lo)``,
    ``loss = 1e-3 + (u1 - 0.3)^2 + 0.5 (u3 - 0.6)^2``.
    """
    rng = np.random.default_rng(seed)
    lo, hi = X_BOUNDS[:, 0], X_BOUNDS[:, 1]
    x = lo + (hi - lo) * rng.random((n, len(X_BOUNDS)))
    u = (x - lo) / (hi - lo)
    y = 1e-3 + (u[:, 1] - 0.3) ** 2 + 0.5 * (u[:, 3] - 0.6) ** 2
    return x, y


def _ot_index(stat: object, k: np.ndarray, ell: np.ndarray) -> float:
    n = k.shape[0]
    return float(
        stat.computeHSICIndex(  # type: ignore[attr-defined]
            ot.CovarianceMatrix(k), ot.CovarianceMatrix(ell), ot.Point(np.ones(n))
        )
    )


def _check_squared_exponential(xs: np.ndarray) -> None:
    """OpenTURNS' SquaredExponential([0.3]) Gram matrix equals parafit's Gaussian one.

    ``discretize`` adds a nugget (``CovarianceModel-DefaultNuggetFactor``, 1e-12) to
    the diagonal; the U-statistic zeroes the diagonal, so only the off-diagonal
    elements matter for the target-sensitivity values stored here.
    """
    model = ot.SquaredExponential([SIGMA_X])
    assert list(model.getAmplitude()) == [1.0]
    off = ~np.eye(xs.shape[0], dtype=bool)
    for j in range(xs.shape[1]):
        k_ot = np.array(model.discretize(ot.Sample(xs[:, [j]])))
        k_ours = GaussianKernel(SIGMA_X).gram(xs[:, j], xs[:, j])
        assert np.abs(k_ot - k_ours)[off].max() < 1e-15, "OT kernel formula differs"
        assert np.abs(np.diag(k_ot) - 1.0).max() < 1e-11


def case_arrays(name: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """All stored arrays of one case, keys prefixed with ``name_``."""
    x, y = make_samples(n, seed)
    xs = scale_parameters(x, X_BOUNDS)
    ys = scale_loss(y)
    _check_squared_exponential(xs)
    d = xs.shape[1]
    kx = GaussianKernel(SIGMA_X)
    grams = [kx.gram(xs[:, j], xs[:, j]) for j in range(d)]
    losses = {
        "conjunctive": ConjunctiveGaussianKernel(GAMMA).gram(ys, ys),
        "gaussian": GaussianKernel(SIGMA_Y).gram(ys, ys),
    }
    out = {
        "x": x,
        "y": y,
        "x_bounds": X_BOUNDS,
        "x_scaled": xs,
        "y_scaled": ys,
    }
    for label, stat in (("u", ot.HSICUStat()), ("v", ot.HSICVStat())):
        for kind, ell in losses.items():
            out[f"ot_{label}_{kind}"] = np.array(
                [_ot_index(stat, k, ell) for k in grams]
            )
    filt = ot.SymbolicFunction(["y"], [f"exp(-y^2 / (2 * {GAMMA}^2))"])
    target = []
    for s in TARGET_SCALES:
        models = [ot.SquaredExponential([SIGMA_X]) for _ in range(d)]
        models.append(ot.SquaredExponential([float(s)]))
        est = ot.HSICEstimatorTargetSensitivity(
            models, ot.Sample(xs), ot.Sample(ys[:, None]), ot.HSICUStat(), filt
        )
        target.append(np.array(est.getHSICIndices()))
    out["ot_target_hsic"] = np.array(target)
    return {f"{name}_{k}": np.asarray(v, float) for k, v in out.items()}


def main() -> Path:
    """Write ``fixtures.npz`` next to this script; returns its path."""
    arrays: dict[str, np.ndarray] = {
        "openturns_version": np.array(ot.__version__),
        "target_scales": TARGET_SCALES,
        "sigma_x": np.array(SIGMA_X),
        "gamma": np.array(GAMMA),
        "sigma_y": np.array(SIGMA_Y),
    }
    for name, (n, seed) in CASES.items():
        arrays.update(case_arrays(name, n, seed))
    path = HERE / "fixtures.npz"
    np.savez_compressed(path, **arrays)
    with np.load(path, allow_pickle=False) as check:
        assert sorted(check.files) == sorted(arrays)
    return path


if __name__ == "__main__":
    print(main())
