"""The result of a sensitivity analysis: values per repeat, summary, save and load.

Saved as ``calculation_result.npz`` holding only plain arrays (numbers and strings),
so that ``np.load(path, allow_pickle=False)`` reads it and nothing in it can execute
code.
"""

import io
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from parafit._atomic import write_bytes_atomic, write_text_atomic
from parafit.errors import InputError, ResultsError

__all__ = ["HSICResult"]

_SCALARS = (
    "n_samples",
    "n_dropped",
    "samples_per_repeat",
    "repeats",
    "seed",
    "kernel_x",
    "kernel_y",
    "estimator",
    "normalization",
    "with_replacement",
    "analyze",
    "loss",
    "is_reweighted",
    "description",
    "permutations",
)


@dataclass(frozen=True)
class HSICResult:
    """HSIC sensitivities of d parameters, over B repeats.

    Attributes:
        labels: (d,) parameter names.
        x_bounds: (d, 2) the ranges that scaled each parameter to [0, 1] (model units).
        hsic: (B, d) raw HSIC value of every repeat (dimensionless).
        sensitivities: (B, d) normalized sensitivities of every repeat.
        groups: (d,) group of each parameter (e.g. ``H.O BND`` for ReaxFF; the
            parameter's own name when it has no group).
        p_values: (B, d) permutation p-values, or a (0, d) array when not computed.
        n_samples: samples in the pool after cleaning.
        n_dropped: samples dropped for a non-finite loss.
        samples_per_repeat, repeats, seed: the subsampling.
        kernel_x, kernel_y: kernel formulas with their parameters.
        estimator: ``u`` or ``v``.
        normalization: ``clip`` or ``raw``.
        with_replacement: subsets drawn with replacement.
        analyze: ``training_set`` or ``validation_set``.
        loss: loss function of the analysed losses (``sse``, ...).
        is_reweighted: losses were recomputed from stored residuals.
        description: one line saying what was analysed.
        permutations: permutations per p-value (0: none).
    """

    labels: tuple[str, ...]
    x_bounds: np.ndarray
    hsic: np.ndarray
    sensitivities: np.ndarray
    groups: tuple[str, ...] = ()
    p_values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    n_samples: int = 0
    n_dropped: int = 0
    samples_per_repeat: int = 0
    repeats: int = 1
    seed: int = 0
    kernel_x: str = ""
    kernel_y: str = ""
    estimator: str = "u"
    normalization: str = "clip"
    with_replacement: bool = False
    analyze: str = "training_set"
    loss: str = "sse"
    is_reweighted: bool = False
    description: str = ""
    permutations: int = 0

    def __post_init__(self) -> None:
        d = len(self.labels)
        if self.hsic.shape != self.sensitivities.shape or self.hsic.shape[-1] != d:
            raise ValueError(
                f"hsic {self.hsic.shape} and sensitivities {self.sensitivities.shape} "
                f"must both be (repeats, {d})"
            )
        if not self.groups:
            object.__setattr__(self, "groups", tuple(self.labels))

    # ---- summary values ------------------------------------------------------------
    @property
    def sensitivity_mean(self) -> np.ndarray:
        """(d,) mean over repeats."""
        return self.sensitivities.mean(axis=0)

    @property
    def sensitivity_std(self) -> np.ndarray:
        """(d,) sample standard deviation over repeats (0 for one repeat)."""
        if self.sensitivities.shape[0] < 2:
            return np.zeros(self.sensitivities.shape[1])
        return self.sensitivities.std(axis=0, ddof=1)

    def order(self) -> np.ndarray:
        """Indices by decreasing mean sensitivity (ties keep the interface order)."""
        return np.argsort(-self.sensitivity_mean, kind="stable")

    def get_ordered_parameters(self) -> list[str]:
        """Parameter names by decreasing mean sensitivity.

        Example:
            >>> import numpy as np
            >>> r = HSICResult(("a", "b"), np.array([[0, 1], [0, 1.0]]),
            ...                np.array([[0.1, 0.3]]), np.array([[0.25, 0.75]]))
            >>> r.get_ordered_parameters()
            ['b', 'a']
        """
        return [self.labels[i] for i in self.order()]

    def select(
        self, *, top: int | None = None, threshold: float | None = None
    ) -> list[str]:
        """Names of the ``top`` most sensitive parameters, or of those whose mean
        sensitivity is at least ``threshold`` (both given: both must hold)."""
        if top is None and threshold is None:
            raise InputError("give top=N or threshold=S (CLI: --top or --threshold).")
        if top is not None and top < 1:
            raise InputError(f"top must be >= 1; got {top}.")
        order = list(self.order())
        if top is not None:
            order = order[:top]
        if threshold is not None:
            mean = self.sensitivity_mean
            order = [i for i in order if mean[i] >= threshold]
        return [self.labels[i] for i in order]

    def group_shares(self) -> dict[str, float]:
        """Mean sensitivity summed per group, largest first."""
        shares: dict[str, float] = {}
        for g, s in zip(self.groups, self.sensitivity_mean, strict=True):
            shares[g] = shares.get(g, 0.0) + float(s)
        return dict(sorted(shares.items(), key=lambda kv: -kv[1]))

    # ---- text ------------------------------------------------------------------------
    def summary_text(self) -> str:
        """Inputs, then a ranked table ``rank  name  mean±std``."""
        lines = [
            "# parafit sensitivity analysis (HSIC)",
            f"description:        {self.description or '-'}",
            f"analysed:           {self.analyze} ({self.loss} loss)",
            f"factors:            {len(self.labels)}",
            f"samples:            {self.n_samples} usable"
            + (
                f" ({self.n_dropped} dropped: non-finite loss or parameter)"
                if self.n_dropped
                else ""
            ),
            f"repeats:            {self.repeats} x {self.samples_per_repeat} samples",
            f"with replacement:   {'yes' if self.with_replacement else 'no'}",
            f"reweight:           {'yes' if self.is_reweighted else 'no'}",
            f"parameters kernel:  {self.kernel_x}",
            f"loss kernel:        {self.kernel_y}",
            f"estimator:          {'U-statistic (unbiased)' if self.estimator == 'u' else 'V-statistic (biased)'}",
            f"normalization:      {self.normalization}",
            f"permutations:       {self.permutations or 'off'}",
            f"seed:               {self.seed}",
            "",
        ]
        width = max([len("name")] + [len(s) for s in self.labels])
        has_p = self.p_values.size > 0
        header = f"{'rank':>4}  {'name':<{width}}  {'sensitivity (mean±std)':>22}"
        if has_p:
            header += f"  {'p-value':>8}"
        lines.append(header)
        mean, std = self.sensitivity_mean, self.sensitivity_std
        p = self.p_values.mean(axis=0) if has_p else None
        for rank, i in enumerate(self.order(), start=1):
            row = f"{rank:>4}  {self.labels[i]:<{width}}  {f'{mean[i]:.4f}±{std[i]:.4f}':>22}"
            if p is not None:
                row += f"  {p[i]:>8.4f}"
            lines.append(row)
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.summary_text()

    # ---- files -----------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays (no objects) for ``np.savez``."""
        out: dict[str, np.ndarray] = {
            "labels": np.array(self.labels, dtype=str),
            "groups": np.array(self.groups, dtype=str),
            "x_bounds": np.asarray(self.x_bounds, float),
            "hsic": np.asarray(self.hsic, float),
            "sensitivities": np.asarray(self.sensitivities, float),
            "sensitivity_mean": self.sensitivity_mean,
            "sensitivity_std": self.sensitivity_std,
            "p_values": np.asarray(self.p_values, float),
        }
        for name in _SCALARS:
            out[name] = np.array(getattr(self, name))
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``calculation_result.npz`` atomically; returns the path."""
        buf = io.BytesIO()
        np.savez(buf, **self.to_arrays())
        path = Path(path)
        write_bytes_atomic(path, buf.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> "HSICResult":
        """Read a result saved by :meth:`save` (a file, or a results directory holding
        ``sensitivity/calculation_result.npz``)."""
        path = Path(path)
        for candidate in (
            path / "sensitivity" / "calculation_result.npz",
            path / "calculation_result.npz",
        ):
            if path.is_dir() and candidate.is_file():
                path = candidate
                break
        if not path.is_file():
            raise ResultsError(
                f"{path}: no sensitivity result found (expected calculation_result.npz)."
            )
        try:
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise ResultsError(
                f"{path}: cannot read sensitivity result ({err})."
            ) from err
        missing = [
            k
            for k in ("labels", "x_bounds", "hsic", "sensitivities")
            if k not in arrays
        ]
        if missing:
            raise ResultsError(f"{path}: not a sensitivity result; missing {missing}.")
        kwargs: dict[str, Any] = {
            "labels": tuple(str(s) for s in arrays["labels"]),
            "x_bounds": arrays["x_bounds"],
            "hsic": arrays["hsic"],
            "sensitivities": arrays["sensitivities"],
        }
        if "groups" in arrays:
            kwargs["groups"] = tuple(str(s) for s in arrays["groups"])
        if "p_values" in arrays:
            kwargs["p_values"] = arrays["p_values"]
        types = {f.name: f.type for f in fields(cls)}
        for name in _SCALARS:
            if name in arrays:
                value = arrays[name].item()
                kwargs[name] = (
                    str(value) if types[name] is str else types[name](value)  # type: ignore[operator]
                )
        return cls(**kwargs)

    def write_summary(self, path: str | Path) -> Path:
        """Write :meth:`summary_text` atomically."""
        path = Path(path)
        write_text_atomic(path, self.summary_text())
        return path
