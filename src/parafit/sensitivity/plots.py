"""PNG plots of an :class:`~parafit.sensitivity.HSICResult`.

- :func:`plot_sensitivity_per_parameter`: every repeat's sensitivity of each
  parameter as a dot, with the mean as a short line, parameters by decreasing mean.
- :func:`plot_sensitivity_summary`: a bar chart of the mean sensitivities (std over
  repeats as error bars) and a pie chart of the share of each group (e.g. ``H.O BND``
  for ReaxFF).

Like :mod:`parafit.plots`, the figures are :class:`matplotlib.figure.Figure` objects
on an Agg canvas (no pyplot, no global backend state, nothing to close globally), so
plotting works headless and from worker threads. Every PNG is rendered in memory and
written atomically (temporary file in the same directory, then ``os.replace``).
"""

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from parafit._atomic import write_bytes_atomic
from parafit.sensitivity.result import HSICResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_sensitivity_per_parameter", "plot_sensitivity_summary"]

#: Parameters shown in the per-parameter plot; the rest are left out (title says so).
TOP_PER_PARAMETER = 40
#: Bars in the summary's bar chart.
TOP_SUMMARY = 30
#: Groups below this share of the total go into one ``other`` wedge.
MIN_GROUP_SHARE = 0.02
#: At most this many named wedges (the rest join ``other``).
MAX_WEDGES = 12


def _figure(width: float, height: float) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: "Figure", path: str | Path) -> Path:
    """Render ``fig`` as PNG and write it atomically; the figure is cleared after."""
    path = Path(path)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        fig.clear()
    write_bytes_atomic(path, buf.getvalue())
    return path


def _label_size(n: int) -> float:
    """Tick-label font size [pt] for ``n`` labels."""
    return 8.0 if n <= 20 else 7.0 if n <= 30 else 6.0


def plot_sensitivity_per_parameter(
    result: HSICResult, path: str | Path, *, top: int = TOP_PER_PARAMETER
) -> Path:
    """Sensitivity of every repeat (dots) and their mean (line), per parameter.

    Parameters are sorted by decreasing mean sensitivity; only the ``top`` most
    sensitive are drawn when there are more (the title says how many of how many).
    Dots of one repeat sit at the same small horizontal offset in every column, so
    the plot is deterministic.

    Args:
        result: the analysis; ``result.sensitivities`` is (repeats, d), dimensionless.
        path: PNG to write (parent directories are created).
        top: largest number of parameters drawn (>= 1, default 40).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> r = HSICResult(("a", "b"), np.array([[0, 1], [0, 1.0]]),
        ...                np.array([[0.1, 0.3], [0.2, 0.2]]),
        ...                np.array([[0.25, 0.75], [0.5, 0.5]]))
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "per_parameter.png"
        >>> plot_sensitivity_per_parameter(r, out).stat().st_size > 0
        True
    """
    sens = np.asarray(result.sensitivities, float)
    n_repeats, d = sens.shape
    shown = result.order()[: max(1, top)]
    k = shown.size
    fig = _figure(min(16.0, max(6.0, 1.6 + 0.3 * k)), 5.0)
    ax = fig.add_subplot()
    positions = np.arange(k)
    offsets = np.linspace(-0.18, 0.18, n_repeats) if n_repeats > 1 else np.zeros(1)
    xs = (positions[None, :] + offsets[:, None]).ravel()
    ys = sens[:, shown].ravel()
    ax.plot(
        xs,
        ys,
        "o",
        ms=3.5 if k <= 40 else 2.5,
        alpha=0.6,
        color="tab:blue",
        label=f"each repeat ({n_repeats})",
    )
    ax.hlines(
        result.sensitivity_mean[shown],
        positions - 0.3,
        positions + 0.3,
        colors="tab:red",
        lw=2.0,
        label="mean",
    )
    ax.set_xticks(positions)
    ax.set_xticklabels(
        [result.labels[i] for i in shown],
        rotation=60,
        ha="right",
        rotation_mode="anchor",
        fontsize=_label_size(k),
    )
    ax.set_xlim(-0.7, k - 0.3)
    ax.set_ylabel("sensitivity")
    title = "HSIC sensitivity per parameter"
    if k < d:
        title += f" (top {k} of {d} parameters)"
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def _pie_shares(shares: dict[str, float]) -> tuple[list[str], list[float]]:
    """Wedge labels and values: negative shares dropped, small groups merged."""
    positive = {g: s for g, s in shares.items() if s > 0 and np.isfinite(s)}
    total = sum(positive.values())
    if not total > 0:
        return [], []
    labels: list[str] = []
    values: list[float] = []
    other = 0.0
    for g, s in sorted(positive.items(), key=lambda kv: -kv[1]):
        if s / total >= MIN_GROUP_SHARE and len(labels) < MAX_WEDGES:
            labels.append(g)
            values.append(s)
        else:
            other += s
    if other > 0:
        labels.append("other")
        values.append(other)
    return labels, values


def plot_sensitivity_summary(
    result: HSICResult, path: str | Path, *, top: int = TOP_SUMMARY
) -> Path:
    """Bar chart of the mean sensitivities and pie chart of the share per group.

    Left: the ``top`` largest mean sensitivities (dimensionless), sorted, with the
    sample standard deviation over repeats as error bars (none for one repeat).
    Right: ``result.group_shares()`` as a pie; negative shares (``raw``
    normalization) are left out and groups under 2 % of the total join one
    ``other`` wedge (as do groups beyond the 12 largest); the legend gives each
    wedge's share. When no sensitivity is positive the right panel says
    ``no sensitivity`` instead; when all parameters are in one group it is left out.

    Args:
        result: the analysis.
        path: PNG to write (parent directories are created).
        top: largest number of bars (>= 1, default 30).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> r = HSICResult(("a", "b", "c"), np.array([[0, 1]] * 3),
        ...                np.array([[0.1, 0.3, 0.0]]), np.array([[0.25, 0.75, 0.0]]),
        ...                groups=("H BND", "H BND", "O ATM"))
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "summary.png"
        >>> plot_sensitivity_summary(r, out).name
        'summary.png'
    """
    d = len(result.labels)
    shown = result.order()[: max(1, top)]
    k = shown.size
    mean = result.sensitivity_mean[shown]
    std = result.sensitivity_std[shown]
    one_group = len(set(result.groups or result.labels)) <= 1
    if one_group:  # a pie of one wedge says nothing: the bars alone
        fig = _figure(7.5, max(4.5, 1.2 + 0.22 * k))
        left = fig.subplots(1, 1)
    else:
        fig = _figure(12.0, max(4.5, 1.2 + 0.22 * k))
        left, right = fig.subplots(1, 2, width_ratios=[3, 2])

    positions = np.arange(k)
    left.barh(
        positions,
        mean,
        xerr=std if result.sensitivities.shape[0] > 1 else None,
        color="tab:blue",
        alpha=0.8,
        error_kw={"ecolor": "0.2", "capsize": 2, "lw": 1},
    )
    left.set_yticks(positions)
    left.set_yticklabels([result.labels[i] for i in shown], fontsize=_label_size(k))
    left.set_ylim(k - 0.5, -0.5)  # most sensitive at the top
    left.set_xlabel("sensitivity (mean ± std over repeats)")
    title = "Mean sensitivity"
    if k < d:
        title += f" (top {k} of {d})"
    left.set_title(title)
    left.grid(axis="x", alpha=0.3)
    if not np.any(mean):
        left.set_xlim(0.0, 1.0)

    if one_group:
        return _save(fig, path)
    labels, values = _pie_shares(result.group_shares())
    if values:
        from matplotlib import colormaps

        tab20 = colormaps["tab20"].colors
        palette = [tab20[k] for k in (*range(0, 20, 2), *range(1, 20, 2))]
        colors = [
            "0.75" if g == "other" else palette[i % 20] for i, g in enumerate(labels)
        ]
        total = sum(values)
        wedges, *_ = right.pie(
            values,
            colors=colors,
            autopct=lambda pct: f"{pct:.0f}%" if pct >= 4 else "",
            pctdistance=0.75,
            startangle=90,
            counterclock=False,
            textprops={"fontsize": 8},
            wedgeprops={"linewidth": 0.8, "edgecolor": "white"},
        )
        right.legend(
            wedges,
            [
                f"{g} ({100 * v / total:.1f}%)"
                for g, v in zip(labels, values, strict=True)
            ],
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncols=2,
            fontsize=8,
            frameon=False,
        )
        right.set_aspect("equal")
    else:
        right.text(
            0.5,
            0.5,
            "no sensitivity",
            ha="center",
            va="center",
            fontsize=12,
            transform=right.transAxes,
        )
        right.set_axis_off()
    right.set_title("Share per group")
    return _save(fig, path)
