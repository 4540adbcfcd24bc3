"""Tests for parafit.loss: ParAMS loss formulas, contributions, statistics."""

import math

import numpy as np
import pytest
from ase.build import molecule
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from parafit.dataset import CompiledDataSet, DataSet
from parafit.errors import UnknownNameError
from parafit.jobs import Job, JobCollection
from parafit.loss import (
    LOSSES,
    compute_loss,
    extractor_statistics,
    format_statistics,
)
from parafit.units import HARTREE, Unit

KCAL = Unit("kcal/mol", 627.5096 / HARTREE)
JOBS = JobCollection([Job("w", molecule("H2O")), Job("m", molecule("CH3OH"))])


@pytest.fixture(scope="module")
def compiled() -> CompiledDataSet:
    """Entries: a scalar, a 3-vector with per-component weights, another scalar."""
    ds = DataSet()
    ds.add_entry("energy('w')", 1.0, sigma=0.5, weight=2.0)
    ds.add_entry("forces('w', 0)", [0.0, 0.0, 0.0], sigma=0.1, weight=[1.0, 0.0, 3.0])
    ds.add_entry("distance('w', 0, 1)", 1.0, sigma=0.05)
    return ds.compile(JOBS)


# residuals: energy 2; forces [1, 50, -2] (weights 1, 0, 3); distance 2
ROW = np.array([2.0, 0.1, 5.0, -0.2, 1.1])


@pytest.mark.parametrize(
    ("kind", "loss", "contributions"),
    [
        ("sse", 25.0, [8.0, 13.0, 4.0]),
        ("rss", 25.0, [8.0, 13.0, 4.0]),
        ("sae", 13.0, [4.0, 7.0, 2.0]),
        ("mae", (4 + 7 / 3 + 2) / 3, [4 / 3, 7 / 9, 2 / 3]),
        ("mad", (4 + 7 / 3 + 2) / 3, [4 / 3, 7 / 9, 2 / 3]),
        ("rmse", 7 / 3, [(8 / 3) / (7 / 3), (13 / 9) / (7 / 3), (4 / 3) / (7 / 3)]),
        ("rmsd", 7 / 3, [(8 / 3) / (7 / 3), (13 / 9) / (7 / 3), (4 / 3) / (7 / 3)]),
    ],
)
def test_hand_computed_losses(
    compiled: CompiledDataSet, kind: str, loss: float, contributions: list
) -> None:
    result = compute_loss(ROW[None, :], compiled, kind)
    assert result.kind == LOSSES.canonical(kind)
    assert result.loss.shape == (1,)
    assert result.loss[0] == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(result.contributions[0], contributions, rtol=1e-12)
    assert result.contributions[0].sum() == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(result.fractions[0].sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(
        result.residuals[0], [2.0, 1.0, 50.0, -2.0, 2.0], rtol=1e-12
    )


def test_default_is_sse_and_1d_predictions(compiled: CompiledDataSet) -> None:
    result = compute_loss(ROW, compiled)
    assert result.kind == "sse" and result.loss.tolist() == pytest.approx([25.0])


def test_unknown_loss_and_bad_shape(compiled: CompiledDataSet) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'sse'"):
        compute_loss(ROW, compiled, "ssr")
    with pytest.raises(ValueError, match="shape"):
        compute_loss(np.zeros((2, 4)), compiled)


def test_non_finite_predictions_give_inf(compiled: CompiledDataSet) -> None:
    rows = np.tile(ROW, (4, 1))
    rows[0, 0] = np.nan  # energy: weight 2
    rows[1, 2] = np.nan  # forces y component: weight 0 -> ignored
    rows[2, 4] = np.inf
    for kind in ("sse", "sae", "mae", "rmse"):
        result = compute_loss(rows, compiled, kind)
        assert result.loss[0] == np.inf and result.loss[2] == np.inf
        assert np.isfinite(result.loss[1]) and np.isfinite(result.loss[3])
        assert (
            result.contributions[0, 0] == np.inf
            and np.isfinite(result.contributions[0, 1:]).all()
        )
        assert np.isnan(result.residuals[1, 2])
    assert compute_loss(rows, compiled, "sse").loss[1] == pytest.approx(25.0 - 0.0)


def test_extractor_statistics_with_mixed_units() -> None:
    ds = DataSet()
    ds.add_entry("energy('w')", 1.0)  # eV
    ds.add_entry("energy('m')", 10.0, unit=KCAL)  # kcal/mol, converted to eV in stats
    ds.add_entry("forces('w', 1)", [0.0, 1.0, 2.0])
    c = ds.compile(JOBS)
    row = np.array([1.5, 10.0 + 2 * KCAL.factor, 0.0, 0.0, 5.0])
    stats = extractor_statistics(row, c)
    assert list(stats) == ["energy", "forces"]
    e, f = stats["energy"], stats["forces"]
    assert (e.unit, e.n_entries, e.n) == ("eV", 2, 2)
    assert e.mae == pytest.approx((0.5 + 2.0) / 2)
    assert e.rmse == pytest.approx(math.sqrt((0.25 + 4.0) / 2))
    assert e.max_error == pytest.approx(2.0)
    assert (f.unit, f.n_entries, f.n) == ("eV/angstrom", 1, 3)
    assert f.mae == pytest.approx(4 / 3) and f.rmse == pytest.approx(math.sqrt(10 / 3))
    table = format_statistics(stats)
    lines = table.splitlines()
    assert lines[0].split() == [
        "extractor",
        "unit",
        "n_entries",
        "n_values",
        "MAE",
        "RMSE",
        "max_error",
    ]
    assert lines[1].split()[:4] == ["energy", "eV", "2", "2"] and lines[2].startswith(
        "forces"
    )
    row[0] = np.nan
    assert math.isnan(extractor_statistics(row, c)["energy"].mae)
    with pytest.raises(ValueError):
        extractor_statistics(row[:3], c)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, (3, 5), elements=st.floats(-1e3, 1e3)),
    st.sampled_from(["sse", "sae", "mae", "rmse"]),
)
def test_contributions_sum_to_loss(
    compiled: CompiledDataSet, pred: np.ndarray, kind: str
) -> None:
    result = compute_loss(pred, compiled, kind)
    assert (result.loss >= 0).all()
    np.testing.assert_allclose(
        result.contributions.sum(axis=1), result.loss, rtol=1e-10, atol=1e-300
    )


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float64, (2, 5), elements=st.floats(-1e2, 1e2)),
    st.floats(0.1, 10.0),
)
def test_sigma_scaling_and_entry_order_invariance(
    pred: np.ndarray, scale: float
) -> None:
    entries = [
        ("energy('w')", 1.0, 0.5, 2.0),
        ("forces('w', 0)", [0.0, 0.0, 0.0], 0.1, [1.0, 0.0, 3.0]),
        ("distance('w', 0, 1)", 1.0, 0.05, 1.0),
    ]

    def build(order: list[int], sigma_scale: float) -> CompiledDataSet:
        ds = DataSet()
        for i in order:
            expr, ref, sigma, weight = entries[i]
            ds.add_entry(expr, ref, sigma=sigma * sigma_scale, weight=weight)
        return ds.compile(JOBS)

    base = compute_loss(pred, build([0, 1, 2], 1.0), "sse").loss
    scaled = compute_loss(pred, build([0, 1, 2], scale), "sse").loss
    np.testing.assert_allclose(scaled, base / scale**2, rtol=1e-10)
    # reorder the entries (and the prediction columns accordingly)
    perm_columns = np.concatenate([[4], [1, 2, 3], [0]])
    for kind in ("sse", "sae", "mae", "rmse"):
        a = compute_loss(pred, build([0, 1, 2], 1.0), kind).loss
        b = compute_loss(pred[:, perm_columns], build([2, 1, 0], 1.0), kind).loss
        np.testing.assert_allclose(a, b, rtol=1e-12)
