"""Correctness of parafit's HSIC sensitivity core (``parafit.sensitivity``).

Reference numbers come from OpenTURNS, kept in ``tests/data/hsic_openturns/fixtures.npz``
(made by ``make_fixtures.py`` next to it), so the suite does not need OpenTURNS; one
live test recomputes a small case when OpenTURNS is installed. Then the invariances
and edge cases of ``docs/sensitivity.md`` and two screening problems with a known
answer (3 influential parameters of 200; the Sobol G-function).

Tolerances. parafit's estimators are compared with OpenTURNS norm-wise: error
``<= 1e-10 * max_j |HSIC_OT_j|``. Element-wise, OpenTURNS itself differs from an
extended-precision (np.longdouble) U-statistic by up to ~1.2e-9 relative on
near-zero indices (measured on these fixtures; e.g. n300, Gaussian loss kernel,
parameter 4 with HSIC = 1.2e-5 against a largest index of 3.1e-2), while
parafit's feature path stays within 1e-10 element-wise
(:func:`test_extended_precision_reference`).
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parafit._rng import as_generator
from parafit.errors import InputError, ParafitWarning
from parafit.sensitivity import (
    ConjunctiveGaussianKernel,
    GaussianKernel,
    HSICResult,
    analyze_samples,
)
from parafit.sensitivity.hsic import (
    clean_samples,
    hsic_from_gram,
    hsic_indices,
    normalize,
    permutation_p_values,
    scale_loss,
    scale_parameters,
    subsets,
)

FIXTURES = Path(__file__).resolve().parent / "data" / "hsic_openturns" / "fixtures.npz"
CASES = ("n120", "n300")
KERNELS_Y = {
    "conjunctive": ConjunctiveGaussianKernel(0.3),
    "gaussian": GaussianKernel(0.3),
}
LD = np.longdouble


@pytest.fixture(scope="module")
def fx() -> dict[str, np.ndarray]:
    """The stored OpenTURNS fixtures (plain arrays)."""
    with np.load(FIXTURES, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    """``max_j |ours_j - ref_j| / max_j |ref_j|`` (norm-wise relative error)."""
    ref = np.asarray(ref, float)
    return float(np.abs(np.asarray(ours, float) - ref).max() / np.abs(ref).max())


def screening_loss(x: np.ndarray) -> np.ndarray:
    """3 influential parameters (5, 17, 100) of 200, strongest first."""
    return (
        1e-3
        + 4 * (x[:, 5] - 0.4) ** 2
        + 2 * (x[:, 17] - 0.6) ** 2
        + (x[:, 100] - 0.5) ** 2
    )


def toy(n: int = 200, d: int = 5, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) uniform samples; the loss (> 0) depends on columns 0 and 2."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, d))
    y = 1e-3 + (x[:, 0] - 0.3) ** 2 + 0.5 * (x[:, 2] - 0.7) ** 2
    return x, y


# ---- OpenTURNS fixtures -----------------------------------------------------------
def test_fixture_inputs_are_our_scaling(fx: dict[str, np.ndarray]) -> None:
    assert str(fx["openturns_version"]).startswith("1.")
    for c in CASES:
        xs = scale_parameters(fx[f"{c}_x"], fx[f"{c}_x_bounds"])
        np.testing.assert_allclose(xs, fx[f"{c}_x_scaled"], rtol=0, atol=1e-15)
        np.testing.assert_allclose(
            scale_loss(fx[f"{c}_y"]), fx[f"{c}_y_scaled"], rtol=0, atol=1e-15
        )
        assert fx[f"{c}_y_scaled"].min() == 0.0 and fx[f"{c}_y_scaled"].max() == 1.0


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", sorted(KERNELS_Y))
@pytest.mark.parametrize("estimator", ["u", "v"])
@pytest.mark.parametrize("method", ["features", "direct", "gram"])
def test_matches_openturns_hsic_stat(
    fx: dict[str, np.ndarray], case: str, kind: str, estimator: str, method: str
) -> None:
    """HSICUStat/HSICVStat.computeHSICIndex on our Gram matrices, to 1e-10 norm-wise
    (measured worst: 2.7e-13)."""
    xs, ys = fx[f"{case}_x_scaled"], fx[f"{case}_y_scaled"]
    ky = KERNELS_Y[kind]
    if method == "gram":
        kx = GaussianKernel(0.3)
        ell = ky.gram(ys, ys)
        ours = np.array(
            [hsic_from_gram(kx.gram(c, c), ell, estimator) for c in xs.T]  # type: ignore[arg-type]
        )
    else:
        ours = hsic_indices(
            xs,
            ys,
            kernel_y=ky,
            estimator=estimator,
            method=method,  # type: ignore[arg-type]
        )
    assert rel_err(ours, fx[f"{case}_ot_{estimator}_{kind}"]) <= 1e-10


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", sorted(KERNELS_Y))
@pytest.mark.parametrize("estimator", ["u", "v"])
def test_sensitivities_match_openturns(
    fx: dict[str, np.ndarray], case: str, kind: str, estimator: str
) -> None:
    """Normalized sensitivities (clip and raw) to 1e-10 (measured worst: 1.1e-12)."""
    ours = hsic_indices(
        fx[f"{case}_x_scaled"],
        fx[f"{case}_y_scaled"],
        kernel_y=KERNELS_Y[kind],
        estimator=estimator,  # type: ignore[arg-type]
    )
    ot_values = fx[f"{case}_ot_{estimator}_{kind}"]
    for policy in ("clip", "raw"):
        np.testing.assert_allclose(
            normalize(ours, policy),  # type: ignore[arg-type]
            normalize(ot_values, policy),  # type: ignore[arg-type]
            rtol=0,
            atol=1e-10,
        )


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", ["features", "direct"])
def test_matches_openturns_target_estimator(
    fx: dict[str, np.ndarray], case: str, method: str
) -> None:
    """HSICEstimatorTargetSensitivity (filter w, Gaussian output kernel of scale s) is
    our hsic_indices on w(y~) with GaussianKernel(s): the same Gram matrices.

    The Gram matrix of w with a large scale s is 1 - O(1/s^2), so the U-statistic
    cancels ~s^2 digits: agreement is 1e-10 at s = 0.5 (measured 3.0e-12) and
    1e-8 at s = 10 (measured 4.4e-10); larger s are tested as a limit below.
    """
    xs, ys = fx[f"{case}_x_scaled"], fx[f"{case}_y_scaled"]
    w = ConjunctiveGaussianKernel(0.3).weights(ys)
    for s, ot_values, tol in zip(
        fx["target_scales"][:2],
        fx[f"{case}_ot_target_hsic"][:2],
        (1e-10, 1e-8),
        strict=True,
    ):
        ours = hsic_indices(xs, w, kernel_y=GaussianKernel(float(s)), method=method)  # type: ignore[arg-type]
        assert rel_err(ours, ot_values) <= tol


@pytest.mark.parametrize("case", CASES)
def test_target_estimator_tends_to_conjunctive_kernel(
    fx: dict[str, np.ndarray], case: str
) -> None:
    """For a large output scale s, exp(-(w-w')^2/(2s^2)) = 1 - (w^2+w'^2)/(2s^2) + ww'/s^2
    + O(s^-4): U-centring removes the constant and additive parts, so OpenTURNS'
    normalized target indices tend to our conjunctive-kernel sensitivities with a gap
    O(1/s^2), until float64 cancellation in OT's Gram matrix (~1e-16 s^2 / HSIC)
    dominates at s = 1e3.

    Measured gaps (max over parameters of |S_OT - S_ours|), n120 / n300:
    s=10: 6.6e-5 / 4.9e-5; s=100: 6.5e-7 / 4.2e-7; s=1000: 5.1e-7 / 4.7e-6.
    """
    xs, ys = fx[f"{case}_x_scaled"], fx[f"{case}_y_scaled"]
    conj = hsic_indices(xs, ys)  # default: conjunctive gamma = 0.3
    scales = fx["target_scales"]
    ot_hsic = fx[f"{case}_ot_target_hsic"]
    gaps = {
        float(s): float(np.abs(normalize(h, "raw") - normalize(conj, "raw")).max())
        for s, h in zip(scales, ot_hsic, strict=True)
    }
    assert gaps[100.0] <= 2e-6
    assert gaps[1000.0] <= 1e-5
    # the O(1/s^2) law between s = 10 and s = 100 (measured ratios 102 and 115)
    assert 70 <= gaps[10.0] / gaps[100.0] <= 150
    # s^2 HSIC_OT -> HSIC_conjunctive (measured at s = 100: 1.6e-5 / 1.3e-5)
    i100 = int(np.flatnonzero(scales == 100.0)[0])
    assert rel_err(ot_hsic[i100] * 100.0**2, conj) <= 1e-4
    # the clipped sensitivities too (the ranking is the same)
    np.testing.assert_allclose(normalize(ot_hsic[i100]), normalize(conj), atol=2e-6)


# ---- extended precision -----------------------------------------------------------
def _u_stat_longdouble(k: np.ndarray, ell: np.ndarray) -> np.longdouble:
    """Song et al.'s U-statistic from (n, n) np.longdouble Gram matrices."""
    k = k.copy()
    ell = ell.copy()
    n = k.shape[0]
    np.fill_diagonal(k, 0)
    np.fill_diagonal(ell, 0)
    return (
        np.sum(k * ell)
        + k.sum() * ell.sum() / LD((n - 1) * (n - 2))
        - LD(2) / LD(n - 2) * np.dot(k.sum(1), ell.sum(1))
    ) / LD(n * (n - 3))


def _gauss_longdouble(a: np.ndarray, sigma: float) -> np.ndarray:
    a = np.asarray(a, LD)
    diff = a[:, None] - a[None, :]
    return np.exp(-diff * diff / (LD(2) * LD(sigma) ** 2))


def _reference_longdouble(xs: np.ndarray, ys: np.ndarray, kind: str) -> np.ndarray:
    """(d,) U-statistics from np.longdouble Gram matrices (sigma = gamma = 0.3)."""
    yl = np.asarray(ys, LD)
    if kind == "conjunctive":
        w = np.exp(-yl * yl / (LD(2) * LD(0.3) ** 2))
        ell = np.outer(w, w)
    else:
        ell = _gauss_longdouble(ys, 0.3)
    return np.array([_u_stat_longdouble(_gauss_longdouble(c, 0.3), ell) for c in xs.T])


EXTENDED = pytest.mark.skipif(
    np.finfo(np.longdouble).eps > 1e-18,
    reason="np.longdouble is not extended precision here",
)


@EXTENDED
@pytest.mark.parametrize("kind", sorted(KERNELS_Y))
def test_extended_precision_n200(kind: str) -> None:
    """n = 200, d = 8: feature path element-wise within 1e-10 of np.longdouble
    (measured worst: 1.9e-13 conjunctive, 4.8e-12 Gaussian, on indices down to
    1/1000 of the largest)."""
    x, y = toy(n=200, d=8, seed=17)
    xs, ys = scale_parameters(x, np.array([[0.0, 1.0]] * 8)), scale_loss(y)
    ref = _reference_longdouble(xs, ys, kind)
    ours = hsic_indices(xs, ys, kernel_y=KERNELS_Y[kind], method="features")
    assert float((np.abs(ours - ref) / np.abs(ref)).max()) <= 1e-10


@EXTENDED
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", sorted(KERNELS_Y))
def test_extended_precision_reference(
    fx: dict[str, np.ndarray], case: str, kind: str
) -> None:
    """Element-wise: our feature path within 1e-10 relative of an np.longdouble
    U-statistic (measured worst 9.2e-12); OpenTURNS within 5e-9 (measured worst
    1.2e-9, on an index 2,600 times smaller than the largest)."""
    xs, ys = fx[f"{case}_x_scaled"], fx[f"{case}_y_scaled"]
    ref = _reference_longdouble(xs, ys, kind)
    ours = hsic_indices(xs, ys, kernel_y=KERNELS_Y[kind], method="features")
    assert float((np.abs(ours - ref) / np.abs(ref)).max()) <= 1e-10
    ot_values = fx[f"{case}_ot_u_{kind}"]
    assert float((np.abs(ot_values - ref) / np.abs(ref)).max()) <= 5e-9
    assert float(np.abs(ot_values - ref).max() / np.abs(ref).max()) <= 1e-12


def test_live_openturns() -> None:
    """Recompute a small case with OpenTURNS itself (skipped when not installed)."""
    ot = pytest.importorskip("openturns")
    x, y = toy(n=40, d=3, seed=11)
    xs = scale_parameters(x, np.array([[0.0, 1.0]] * 3))
    ys = scale_loss(y)
    kx, ky = GaussianKernel(0.3), ConjunctiveGaussianKernel(0.3)
    ell = ot.CovarianceMatrix(ky.gram(ys, ys))
    ones = ot.Point(np.ones(len(ys)))
    for estimator, stat in (("u", ot.HSICUStat()), ("v", ot.HSICVStat())):
        ref = np.array(
            [
                stat.computeHSICIndex(ot.CovarianceMatrix(kx.gram(c, c)), ell, ones)
                for c in xs.T
            ]
        )
        assert rel_err(hsic_indices(xs, ys, estimator=estimator), ref) <= 1e-10
    models = [ot.SquaredExponential([0.3]) for _ in range(3)] + [
        ot.SquaredExponential([0.5])
    ]
    filt = ot.SymbolicFunction(["y"], ["exp(-y^2 / (2 * 0.3^2))"])
    target = ot.HSICEstimatorTargetSensitivity(
        models, ot.Sample(xs), ot.Sample(ys[:, None]), ot.HSICUStat(), filt
    )
    ours = hsic_indices(xs, ky.weights(ys), kernel_y=GaussianKernel(0.5))
    assert rel_err(ours, np.array(target.getHSICIndices())) <= 1e-10


# ---- the three computation paths agree ----------------------------------------------
@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(4, 40),
    d=st.integers(1, 3),
    sigma=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**31),
    gaussian_loss=st.booleans(),
)
def test_features_direct_and_gram_agree(
    n: int, d: int, sigma: float, seed: int, gaussian_loss: bool
) -> None:
    rng = np.random.default_rng(seed)
    xs = rng.random((n, d))
    ys = rng.random(n)
    kx = GaussianKernel(sigma)
    ky = GaussianKernel(0.3) if gaussian_loss else ConjunctiveGaussianKernel(0.3)
    ref = np.array([hsic_from_gram(kx.gram(c, c), ky.gram(ys, ys)) for c in xs.T])
    scale = np.abs(ref).max() + 1e-300
    for method in ("auto", "direct"):
        got = hsic_indices(xs, ys, kernel_x=kx, kernel_y=ky, method=method)  # type: ignore[arg-type]
        assert np.abs(got - ref).max() <= 1e-9 * scale + 1e-15


# ---- invariances -------------------------------------------------------------------
def test_permuting_samples_changes_nothing() -> None:
    x, y = toy()
    perm = np.random.default_rng(5).permutation(len(y))
    xs, ys = scale_parameters(x, np.array([[0.0, 1.0]] * 5)), scale_loss(y)
    for ky in KERNELS_Y.values():
        h = hsic_indices(xs, ys, kernel_y=ky)
        assert rel_err(hsic_indices(xs[perm], ys[perm], kernel_y=ky), h) <= 1e-12
    # a repeat that uses the whole pool sees a permutation of it anyway
    a = analyze_samples(x, y, repeats=1, samples_per_repeat=len(y))
    b = analyze_samples(x[perm], y[perm], repeats=1, samples_per_repeat=len(y), seed=9)
    np.testing.assert_allclose(a.sensitivities, b.sensitivities, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "transform",
    [lambda y: 7.5 * y, lambda y: 1e-6 * y, lambda y: y**0.5, lambda y: y**3],
    ids=["c=7.5", "c=1e-6", "p=0.5", "p=3"],
)
def test_loss_scale_and_power_change_nothing(
    transform: Callable[[np.ndarray], np.ndarray],
) -> None:
    """ln(c y^p) = ln c + p ln y: the min-max scaled log-loss is unchanged."""
    x, y = toy()
    ref = analyze_samples(x, y, repeats=3, samples_per_repeat=150)
    got = analyze_samples(x, transform(y), repeats=3, samples_per_repeat=150)
    np.testing.assert_allclose(
        got.hsic, ref.hsic, rtol=0, atol=1e-12 * np.abs(ref.hsic).max()
    )
    np.testing.assert_allclose(got.sensitivities, ref.sensitivities, rtol=0, atol=1e-10)


def test_affine_map_of_parameters_with_matching_bounds_changes_nothing() -> None:
    """x' = a x + b (a < 0 too: the kernel depends on |x_i - x_j| only)."""
    x, y = toy()
    bounds = np.array([[0.0, 1.0]] * 5)
    a = np.array([3.0, -2.0, 1e-4, 250.0, -0.5])
    b = np.array([-1.0, 10.0, 0.3, -7e3, 2.0])
    x2 = a * x + b
    ends = a[:, None] * bounds + b[:, None]
    bounds2 = np.sort(ends, axis=1)
    for kwargs in ({"loss_kernel": None}, {"loss_kernel": {"type": "gaussian"}}):
        ref = analyze_samples(
            x, y, x_bounds=bounds, repeats=2, samples_per_repeat=150, **kwargs
        )
        got = analyze_samples(
            x2, y, x_bounds=bounds2, repeats=2, samples_per_repeat=150, **kwargs
        )
        np.testing.assert_allclose(
            got.sensitivities, ref.sensitivities, rtol=0, atol=1e-9
        )
        np.testing.assert_allclose(got.x_bounds, bounds2)
        # 'auto' bounds (per-subset min/max) are mapped the same way
        ref = analyze_samples(x, y, repeats=2, samples_per_repeat=150, **kwargs)
        got = analyze_samples(x2, y, repeats=2, samples_per_repeat=150, **kwargs)
        np.testing.assert_allclose(
            got.sensitivities, ref.sensitivities, rtol=0, atol=1e-9
        )


def test_duplicated_columns_get_equal_sensitivities() -> None:
    x, y = toy()
    x = np.column_stack([x, x[:, 2], x[:, 4]])  # 5 <- 2 (influential), 6 <- 4 (inert)
    for method in ("features", "direct"):
        h = hsic_indices(x, scale_loss(y), method=method)  # type: ignore[arg-type]
        assert h[5] == pytest.approx(h[2], rel=1e-12)
        assert h[6] == pytest.approx(h[4], rel=1e-9, abs=1e-15)
    s = analyze_samples(x, y, repeats=2, samples_per_repeat=150).sensitivities
    np.testing.assert_allclose(s[:, 5], s[:, 2], rtol=1e-12)
    np.testing.assert_allclose(s[:, 6], s[:, 4], rtol=0, atol=1e-12)


# ---- edge cases ----------------------------------------------------------------------
@pytest.mark.parametrize("estimator", ["u", "v"])
@pytest.mark.parametrize("method", ["auto", "features", "direct"])
def test_constant_column_has_exactly_zero_sensitivity(
    estimator: str, method: str
) -> None:
    x, y = toy()
    x[:, 3] = 0.42
    h = hsic_indices(
        scale_parameters(x, np.array([[0.0, 1.0]] * 5)),
        scale_loss(y),
        estimator=estimator,  # type: ignore[arg-type]
        method=method,  # type: ignore[arg-type]
    )
    assert h[3] == 0.0 and np.isfinite(h).all()
    for bounds in ("auto", np.array([[0.0, 1.0]] * 5)):
        r = analyze_samples(
            x,
            y,
            x_bounds=bounds,
            repeats=2,
            samples_per_repeat=100,
            estimator=estimator,  # type: ignore[arg-type]
        )
        assert (r.sensitivities[:, 3] == 0.0).all() and (r.hsic[:, 3] == 0.0).all()
        assert np.isfinite(r.sensitivities).all()
        np.testing.assert_allclose(r.sensitivities.sum(1), 1.0)


def test_all_columns_constant_gives_zeros_not_nan() -> None:
    _, y = toy()
    x = np.full((len(y), 3), 2.0)
    r = analyze_samples(x, y, repeats=2, samples_per_repeat=100)
    assert (r.hsic == 0.0).all() and (r.sensitivities == 0.0).all()


def test_all_equal_losses_are_an_error() -> None:
    x, _ = toy()
    with pytest.raises(InputError, match="losses are equal"):
        scale_loss(np.full(10, 3.0))
    with pytest.raises(InputError, match="losses are equal"):
        analyze_samples(x, np.full(len(x), 3.0), repeats=1, samples_per_repeat=50)


def test_fewer_than_four_samples_are_an_error() -> None:
    x, y = toy(n=10)
    with pytest.raises(InputError, match="at least 4"):
        clean_samples(x[:3], y[:3])
    y_nan = y.copy()
    y_nan[3:] = np.nan
    with pytest.raises(InputError, match="at least 4"):
        analyze_samples(x, y_nan, repeats=1, samples_per_repeat=4)
    with pytest.raises(InputError, match="n >= 4"):
        hsic_indices(x[:3], scale_loss(y[:3]))
    with pytest.raises(InputError, match="n >= 4"):
        hsic_from_gram(np.eye(3), np.eye(3))
    with pytest.raises(InputError, match="samples_per_repeat"):
        analyze_samples(x, y, repeats=1, samples_per_repeat=3)
    # the V-statistic has no such limit
    assert np.isfinite(hsic_indices(x[:3], scale_loss(y[:3]), estimator="v")).all()


def test_non_finite_losses_are_dropped_and_counted() -> None:
    x, y = toy()
    bad = np.array([3, 50, 51, 120])
    y_bad = y.copy()
    y_bad[bad] = [np.nan, np.inf, -np.inf, np.nan]
    keep = np.setdiff1d(np.arange(len(y)), bad)
    xc, yc, n_dropped = clean_samples(x, y_bad)
    assert n_dropped == 4
    np.testing.assert_array_equal(xc, x[keep])
    np.testing.assert_array_equal(yc, y[keep])
    r = analyze_samples(x, y_bad, repeats=3, samples_per_repeat=150)
    ref = analyze_samples(x[keep], y[keep], repeats=3, samples_per_repeat=150)
    assert (r.n_dropped, r.n_samples) == (4, len(y) - 4)
    np.testing.assert_array_equal(r.hsic, ref.hsic)
    assert "4 dropped" in r.summary_text()
    with pytest.raises(InputError, match="filter_infinite"):
        analyze_samples(
            x, y_bad, repeats=1, samples_per_repeat=150, filter_infinite=False
        )
    # a non-finite parameter value is dropped the same way
    x_bad = x.copy()
    x_bad[7, 1] = np.nan
    assert clean_samples(x_bad, y)[2] == 1


def test_non_positive_losses_are_clipped_to_the_smallest_positive() -> None:
    x, y = toy()
    y_bad = y.copy()
    y_bad[[0, 10, 20]] = [0.0, -1.0, -1e30]
    _, yc, n_dropped = clean_samples(x, y_bad)
    assert n_dropped == 0
    expected = y_bad.copy()
    expected[[0, 10, 20]] = np.delete(y, [0, 10, 20]).min()
    np.testing.assert_array_equal(yc, expected)
    r = analyze_samples(x, y_bad, repeats=2, samples_per_repeat=150)
    ref = analyze_samples(x, expected, repeats=2, samples_per_repeat=150)
    np.testing.assert_array_equal(r.hsic, ref.hsic)
    assert r.n_dropped == 0
    with pytest.raises(InputError, match="positive"):
        clean_samples(x, -np.abs(y))


def test_clip_and_raw_normalization() -> None:
    h = np.array([[0.3, -0.1, 0.1, 0.0], [-1.0, -2.0, 0.0, 0.0]])
    np.testing.assert_allclose(normalize(h, "clip"), [[0.75, 0, 0.25, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(normalize(h, "raw")[0], [1.0, -1 / 3, 1 / 3, 0.0])
    np.testing.assert_allclose(normalize(h, "raw")[1], [1 / 3, 2 / 3, 0.0, 0.0])
    assert normalize(np.zeros(3), "raw").tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(InputError, match="normalization"):
        normalize(h, "max")  # type: ignore[arg-type]
    # inert parameters have negative U-statistics now and then: raw keeps them
    x, y = toy()
    raw = analyze_samples(x, y, repeats=3, samples_per_repeat=150, normalization="raw")
    clip = analyze_samples(x, y, repeats=3, samples_per_repeat=150)
    np.testing.assert_array_equal(raw.hsic, clip.hsic)
    assert (raw.hsic < 0).any()
    np.testing.assert_allclose(
        raw.sensitivities, raw.hsic / raw.hsic.sum(1, keepdims=True)
    )
    assert (clip.sensitivities >= 0).all()
    np.testing.assert_allclose(clip.sensitivities.sum(1), 1.0)
    assert (raw.normalization, clip.normalization) == ("raw", "clip")


def test_v_statistic() -> None:
    """Biased V-statistic tr(KHLH)/n^2: >= 0 for positive semi-definite kernels."""
    x, y = toy(n=150)
    xs, ys = scale_parameters(x, np.array([[0.0, 1.0]] * 5)), scale_loss(y)
    kx = GaussianKernel(0.3)
    for ky in KERNELS_Y.values():
        v = hsic_indices(xs, ys, kernel_y=ky, estimator="v")
        n = len(ys)
        hmat = np.eye(n) - 1.0 / n
        ell = ky.gram(ys, ys)
        ref = np.array(
            [np.trace(kx.gram(c, c) @ hmat @ ell @ hmat) / n**2 for c in xs.T]
        )
        assert rel_err(v, ref) <= 1e-10
        assert (v >= -1e-15).all()
        assert (
            rel_err(
                v, hsic_indices(xs, ys, kernel_y=ky, estimator="v", method="direct")
            )
            <= 1e-10
        )
    r = analyze_samples(x, y, repeats=1, samples_per_repeat=150, estimator="v")
    assert r.estimator == "v" and r.get_ordered_parameters()[0] == "x0"
    with pytest.raises(InputError, match="estimator"):
        hsic_indices(xs, ys, estimator="w")  # type: ignore[arg-type]


def test_with_replacement_draws_duplicates_and_is_reproducible() -> None:
    """Subsets drawn with replacement (m may exceed the pool; no warning)."""
    x, y = toy(n=100)
    r = analyze_samples(
        x, y, repeats=3, samples_per_repeat=150, with_replacement=True, seed=4
    )
    assert r.with_replacement and r.samples_per_repeat == 150
    idx = subsets(
        100,
        repeats=3,
        samples_per_repeat=150,
        with_replacement=True,
        rng=as_generator(4),
    )
    for b, i in enumerate(idx):
        assert len(np.unique(i)) < len(i)
        xb = x[i]
        xs = scale_parameters(xb, np.column_stack([xb.min(0), xb.max(0)]))
        np.testing.assert_allclose(
            r.hsic[b], hsic_indices(xs, scale_loss(y[i])), rtol=1e-12
        )
    assert "with replacement:   yes" in r.summary_text()


def test_without_replacement_subsets_are_distinct_samples() -> None:
    x, y = toy(n=100)
    idx = subsets(
        100,
        repeats=4,
        samples_per_repeat=60,
        with_replacement=False,
        rng=as_generator(0),
    )
    assert all(len(np.unique(i)) == 60 for i in idx)
    r = analyze_samples(x, y, repeats=4, samples_per_repeat=60)
    assert r.sensitivity_std.max() > 0


def test_samples_per_repeat_above_pool_warns_and_is_capped() -> None:
    x, y = toy(n=80)
    with pytest.warns(ParafitWarning, match="exceeds the 80 usable samples"):
        r = analyze_samples(x, y, repeats=3, samples_per_repeat=500)
    assert r.samples_per_repeat == 80
    np.testing.assert_allclose(r.sensitivity_std, 0.0, atol=1e-12)


def test_small_sigma_falls_back_to_the_direct_pass() -> None:
    x, y = toy(n=150)
    xs, ys = scale_parameters(x, np.array([[0.0, 1.0]] * 5)), scale_loss(y)
    kx = GaussianKernel(0.02)
    assert kx.n_features(0.5) is None  # the Taylor series would need > MAX_FEATURES
    for ky in KERNELS_Y.values():
        got = hsic_indices(xs, ys, kernel_x=kx, kernel_y=ky)
        ref = np.array([hsic_from_gram(kx.gram(c, c), ky.gram(ys, ys)) for c in xs.T])
        assert rel_err(got, ref) <= 1e-10
    with pytest.raises(InputError, match="direct"):
        hsic_indices(xs, ys, kernel_x=kx, method="features")
    r = analyze_samples(
        x, y, repeats=1, samples_per_repeat=150, parameters_kernel={"sigma": 0.02}
    )
    assert "0.02" in r.kernel_x


@pytest.mark.parametrize(
    ("kernel_x", "kernel_y", "method"),
    [
        (GaussianKernel(0.3), ConjunctiveGaussianKernel(0.3), "auto"),
        (GaussianKernel(0.3), GaussianKernel(0.3), "auto"),
        (GaussianKernel(0.3), GaussianKernel(0.3), "direct"),
        (GaussianKernel(0.3), ConjunctiveGaussianKernel(0.2), "direct"),
        (GaussianKernel(0.02), GaussianKernel(0.05), "auto"),
    ],
)
def test_several_loss_columns_equal_one_call_each(
    kernel_x: GaussianKernel, kernel_y: Any, method: str
) -> None:
    x, y = toy(n=120)
    xs = scale_parameters(x, np.array([[0.0, 1.0]] * 5))
    rng = np.random.default_rng(2)
    ys = np.column_stack(
        [scale_loss(y), rng.random(len(y)), scale_loss(y)[rng.permutation(len(y))]]
    )
    many = hsic_indices(xs, ys, kernel_x=kernel_x, kernel_y=kernel_y, method=method)  # type: ignore[arg-type]
    assert many.shape == (3, 5)
    for j in range(3):
        one = hsic_indices(
            xs, ys[:, j], kernel_x=kernel_x, kernel_y=kernel_y, method=method
        )  # type: ignore[arg-type]
        assert rel_err(many[j], one) <= 1e-12


def test_gaussian_loss_kernel_analysis() -> None:
    """Global analysis: plain Gaussian kernel on the scaled loss."""
    x, y = toy()
    r = analyze_samples(
        x,
        y,
        repeats=1,
        samples_per_repeat=200,
        loss_kernel={"type": "gaussian", "sigma": 0.3},
    )
    xs = scale_parameters(x, np.column_stack([x.min(0), x.max(0)]))
    ys = scale_loss(y)
    kx, ky = GaussianKernel(0.3), GaussianKernel(0.3)
    ref = np.array([hsic_from_gram(kx.gram(c, c), ky.gram(ys, ys)) for c in xs.T])
    # one repeat over the whole pool: a permutation of it (sums change by round-off)
    assert rel_err(r.hsic[0], ref) <= 1e-10
    assert r.kernel_y == GaussianKernel(0.3).formula
    assert r.kernel_x == GaussianKernel(0.3).formula
    assert r.get_ordered_parameters()[:2] == ["x0", "x2"]


def test_bad_inputs_are_input_errors() -> None:
    x, y = toy(n=20)
    with pytest.raises(InputError, match="labels"):
        analyze_samples(x, y, labels=["a"], samples_per_repeat=10)
    with pytest.raises(InputError, match="x_bounds"):
        analyze_samples(x, y, x_bounds=np.zeros((2, 2)), samples_per_repeat=10)
    with pytest.raises(InputError, match="x_bounds"):
        analyze_samples(x, y, x_bounds="sample", samples_per_repeat=10)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="repeats"):
        analyze_samples(x, y, repeats=0, samples_per_repeat=10)
    with pytest.raises(InputError, match="parameters kernel"):
        analyze_samples(
            x, y, parameters_kernel={"type": "conjunctive"}, samples_per_repeat=10
        )
    with pytest.raises(InputError):
        hsic_indices(x, y[:5])
    with pytest.raises(InputError, match="sigma"):
        GaussianKernel(0.0)
    with pytest.raises(InputError, match="gamma"):
        ConjunctiveGaussianKernel(float("nan"))


# ---- screening problems with a known answer ------------------------------------------
def test_screening_three_of_two_hundred() -> None:
    """loss = 1e-3 + 4(x5-.4)^2 + 2(x17-.6)^2 + (x100-.5)^2, n = 1000, d = 200.

    Measured over seeds 0-4 (clip normalization): S(x5, x17, x100) = 0.40-0.43,
    0.18-0.26, 0.063-0.108; the 197 inert parameters together 0.23-0.34 (each one
    at most 0.033, 0.0015 on average); x100 / max inert >= 2.1.
    """
    rng = np.random.default_rng(0)
    x = rng.random((1000, 200))
    r = analyze_samples(
        x,
        screening_loss(x),
        x_bounds=np.array([[0.0, 1.0]] * 200),
        repeats=1,
        samples_per_repeat=1000,
    )
    assert r.get_ordered_parameters()[:3] == ["x5", "x17", "x100"]
    s = r.sensitivity_mean
    inert = np.delete(s, [5, 17, 100])
    assert inert.max() <= 0.05
    assert inert.sum() <= 0.45
    assert s[100] >= 1.5 * inert.max()
    assert s[[5, 17, 100]].sum() >= 0.55


def sobol_g(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Sobol G-function prod_i (|4 x_i - 2| + a_i) / (1 + a_i) (>= 0; mean 1)."""
    return np.prod((np.abs(4 * x - 2) + a) / (1 + a), axis=1)


@pytest.mark.parametrize("loss_kernel", ["gaussian", "conjunctive_gaussian"])
def test_sobol_g_function_ranking(loss_kernel: str) -> None:
    """d = 8, a = [0, 1, 4.5, 9, 99, 99, 99, 99]: smaller a, more important; a = 99 inert.

    Measured over seeds 0-29 (n = 4000). Gaussian loss kernel (global analysis):
    x0, x1, x2 first every time, x3 fourth in 23 of 30, inert (x4-x7) each <= 0.0044.
    Conjunctive kernel (default; target: what makes G low, i.e. mostly x0 near 0.5):
    x0, x1 first every time, x2 third in 18, fourth in 10, fifth in 2 of 30; inert
    each <= 0.033. S(x0) >= 0.82 for both.
    """
    a = np.array([0, 1, 4.5, 9, 99, 99, 99, 99.0])
    x = np.random.default_rng(0).random((4000, 8))
    r = analyze_samples(
        x,
        sobol_g(x, a),
        x_bounds=np.array([[0.0, 1.0]] * 8),
        repeats=1,
        samples_per_repeat=4000,
        loss_kernel={"type": loss_kernel},
    )
    order = r.get_ordered_parameters()
    s = r.sensitivity_mean
    assert order[:2] == ["x0", "x1"]
    assert s[0] >= 0.7
    if loss_kernel == "gaussian":
        assert order[2:4] == ["x2", "x3"]  # seed 0; x2 is third for every seed
        assert s[4:].max() <= 0.01
    else:
        assert "x2" in order[:4]
        assert s[4:].max() <= 0.05


def test_permutation_p_values() -> None:
    """Influential: the smallest possible p; inert: roughly uniform (loose bounds).

    Measured over data seeds 0-5 (99 permutations): influential p = 0.01 always;
    inert mean p 0.45-0.62, at most 1 of 28 below 0.05, 12-19 of 28 above 0.5.
    """
    rng = np.random.default_rng(0)
    x = rng.random((300, 30))
    y = 1e-3 + (x[:, 0] - 0.3) ** 2 + 0.5 * (x[:, 1] - 0.7) ** 2
    r = analyze_samples(x, y, repeats=1, samples_per_repeat=300, p_values=99, seed=1)
    assert r.p_values.shape == (1, 30) and r.permutations == 99
    p = r.p_values[0]
    assert p[0] == p[1] == pytest.approx(1 / 100)
    inert = p[2:]
    assert 0.3 <= inert.mean() <= 0.7
    assert (inert < 0.05).sum() <= 4
    assert (inert > 0.5).sum() >= 8
    assert ((p >= 1 / 100) & (p <= 1)).all()
    assert "p-value" in r.summary_text()
    # the function itself: the same count with a fresh generator
    xs = scale_parameters(x, np.column_stack([x.min(0), x.max(0)]))
    ys = scale_loss(y)
    obs = hsic_indices(xs, ys)
    p2 = permutation_p_values(
        xs, ys, obs, n_permutations=40, rng=np.random.default_rng(3), batch=16
    )
    assert p2[0] == p2[1] == pytest.approx(1 / 41)
    assert isinstance(r, HSICResult)
