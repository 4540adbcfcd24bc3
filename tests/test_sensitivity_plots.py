"""The sensitivity plots: valid PNGs for typical, large, all-zero and one-repeat results."""

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from parafit.sensitivity import HSICResult, analyze_samples
from parafit.sensitivity.plots import (
    _pie_shares,
    plot_sensitivity_per_parameter,
    plot_sensitivity_summary,
)

PLOTS = (plot_sensitivity_per_parameter, plot_sensitivity_summary)


def _result(sens: np.ndarray, groups: tuple[str, ...] = ()) -> HSICResult:
    d = sens.shape[1]
    return HSICResult(
        labels=tuple(f"p{i:03d}" for i in range(d)),
        x_bounds=np.tile([0.0, 1.0], (d, 1)),
        hsic=sens * 1e-3,
        sensitivities=sens,
        groups=groups,
    )


def _check_png(path: Path) -> np.ndarray:
    assert path.is_file()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert not list(path.parent.glob("*.tmp"))  # the atomic write left no temp file
    return image


@pytest.fixture(scope="module")
def reaxff_like() -> HSICResult:
    """A real analysis: 3 influential parameters of 8, ReaxFF-like groups."""
    rng = np.random.default_rng(0)
    x = rng.random((300, 8))
    loss = 1e-3 + (x[:, 0] - 0.4) ** 2 + 0.5 * (x[:, 3] - 0.6) ** 2 + 0.1 * x[:, 5]
    labels = [f"{g}:p{i}" for i, g in enumerate(["H.O BND"] * 3 + ["O ATM"] * 5)]
    groups = ["H.O BND"] * 3 + ["O ATM"] * 4 + ["H ATM"]
    return analyze_samples(
        x, loss, labels=labels, groups=groups, repeats=4, samples_per_repeat=150
    )


@pytest.mark.parametrize("plot", PLOTS, ids=lambda f: f.__name__)
def test_plot_writes_png(plot, reaxff_like: HSICResult, tmp_path: Path) -> None:  # noqa: ANN001
    out = plot(reaxff_like, tmp_path / "sub" / "figure.png")
    assert out == tmp_path / "sub" / "figure.png"
    _check_png(out)


@pytest.mark.parametrize("plot", PLOTS, ids=lambda f: f.__name__)
def test_plot_overwrites_existing_file(
    plot,  # noqa: ANN001
    reaxff_like: HSICResult,
    tmp_path: Path,
) -> None:
    out = tmp_path / "figure.png"
    out.write_text("old")
    plot(reaxff_like, out)
    _check_png(out)


@pytest.mark.parametrize("plot", PLOTS, ids=lambda f: f.__name__)
def test_plot_many_parameters(plot, tmp_path: Path) -> None:  # noqa: ANN001
    rng = np.random.default_rng(1)
    sens = rng.random((5, 500)) ** 8
    sens /= sens.sum(axis=1, keepdims=True)
    groups = tuple(f"G{i % 60}" for i in range(500))  # 60 groups: most join "other"
    image = _check_png(plot(_result(sens, groups), tmp_path / "many.png"))
    assert image.shape[1] < 2000  # the figure stays readable, not 500 columns wide


@pytest.mark.parametrize("plot", PLOTS, ids=lambda f: f.__name__)
def test_plot_all_zero(plot, tmp_path: Path) -> None:  # noqa: ANN001
    _check_png(plot(_result(np.zeros((3, 6))), tmp_path / "zero.png"))


@pytest.mark.parametrize("plot", PLOTS, ids=lambda f: f.__name__)
def test_plot_single_repeat(plot, tmp_path: Path) -> None:  # noqa: ANN001
    sens = np.array([[0.5, 0.3, 0.2, 0.0]])
    _check_png(plot(_result(sens), tmp_path / "one.png"))


@pytest.mark.parametrize("plot", PLOTS, ids=lambda f: f.__name__)
def test_plot_single_parameter_and_negative_raw_values(
    plot,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    _check_png(plot(_result(np.array([[1.0], [1.0]])), tmp_path / "single.png"))
    raw = np.array([[1.2, -0.2, 0.0], [1.1, -0.1, 0.0]])  # "raw" normalization
    _check_png(plot(_result(raw), tmp_path / "raw.png"))


def test_plot_is_deterministic(reaxff_like: HSICResult, tmp_path: Path) -> None:
    a = plot_sensitivity_per_parameter(reaxff_like, tmp_path / "a.png")
    b = plot_sensitivity_per_parameter(reaxff_like, tmp_path / "b.png")
    assert np.array_equal(matplotlib.image.imread(a), matplotlib.image.imread(b))


def test_pie_shares_merge_small_groups() -> None:
    labels, values = _pie_shares(
        {"H.O BND": 0.7, "O ATM": 0.25, "a": 0.03, "b": 0.01, "c": 0.01}
    )
    assert labels == ["H.O BND", "O ATM", "a", "other"]
    assert values == pytest.approx([0.7, 0.25, 0.03, 0.02])


def test_pie_shares_no_positive_share() -> None:
    assert _pie_shares({"a": 0.0, "b": 0.0}) == ([], [])
    assert _pie_shares({"a": -0.1}) == ([], [])


def test_pie_shares_caps_wedges() -> None:
    labels, values = _pie_shares({f"g{i}": 1.0 for i in range(20)})
    assert len(labels) == 13 and labels[-1] == "other"
    assert sum(values) == pytest.approx(20.0)


def test_summary_of_one_group_has_no_pie(
    reaxff_like: HSICResult, tmp_path: Path
) -> None:
    """All parameters in one group (the water example's H.O BND): the bars alone."""
    one = _result(reaxff_like.sensitivities, groups=("H.O BND",) * 8)
    narrow = _check_png(plot_sensitivity_summary(one, tmp_path / "one.png"))
    wide = _check_png(plot_sensitivity_summary(reaxff_like, tmp_path / "many.png"))
    assert narrow.shape[1] < 0.8 * wide.shape[1]
