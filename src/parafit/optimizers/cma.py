"""CMA-ES (the ``cma`` package, pycma) as an ask/tell optimizer in ``[0, 1]^n_active``.

Bounds ``[0, 1]`` are kept by cma's ``BoundTransform`` boundary handler, so every
asked point is feasible. Random numbers come from a :class:`numpy.random.Generator`
seeded with ``seed`` (passed to cma as its ``randn`` option), never from the global
``np.random`` state, so a run is reproducible and a pickled run continues with the
same points as an uninterrupted one.

Non-finite losses: within one generation, each failed loss becomes
``worst + |worst| + 1`` (``worst`` = the largest finite loss of that generation), so
failed points rank last. When a whole generation fails, point ``k`` gets
``1e10 * max(1, |best|) + ||x_k - x_best||`` (``x_best``: best point so far, else
``x0``), which ranks the points by their distance to the best known point (pulling the
search back to where evaluations worked) and keeps cma from stopping on a flat fitness.
Failures are counted in ``n_failed``.

One active parameter: cma does not support 1-D problems, so a dummy second coordinate
(start 0.5) is added; it does not affect the loss and is dropped from every asked point.
The default population size is then cma's for d = 2 (6).
"""

import math
from typing import Any, final

import numpy as np

from parafit._rng import as_generator
from parafit.errors import InputError
from parafit.optimizers.base import (
    Bookkeeper,
    check_float_setting,
    check_int_setting,
    check_n_active,
    check_x0,
)

__all__ = ["CMAOptimizer"]

# cma options that this adapter sets itself and users may not override.
_RESERVED_OPTIONS = (
    "bounds",
    "randn",
    "seed",
    "verbose",
    "verb_disp",
    "verb_log",
    "popsize",
    "tolfun",
    "tolx",
)


@final
class _GeneratorRandn:
    """cma's ``randn(lam, N)`` option drawn from a picklable numpy Generator."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape)


@final
class CMAOptimizer:
    """Covariance matrix adaptation evolution strategy (Hansen), via pycma.

    Args:
        n_active: number of active parameters (>= 1).
        x0: (n_active,) start point (the initial mean) in [0, 1].
        seed: random seed or generator.
        sigma0: initial step size in the scaled space (dimensionless, > 0); default 0.3.
        popsize: points per generation; default None, cma's ``4 + floor(3 ln d)``.
        max_evaluations: stop after this many told points; default None (no limit).
        tolfun: stop when the recent losses span less than this; default 1e-11. cma's
            ``tolfunhist`` (the same test over the history of best losses) is set to
            ``min(1e-12, tolfun)``, so a tiny ``tolfun`` switches both off; give
            ``options={"tolfunhist": ...}`` to set it apart.
        tolx: stop when the step size in every coordinate is below this; default 1e-11.
        options: further cma options passed through (e.g. ``{"tolstagnation": 200}``);
            the options this adapter sets (bounds, randn, seed, verbosity, popsize, tolfun,
            tolx) cannot be given here.

    Raises:
        InputError: a bad setting (``.key`` names it).

    Example:
        >>> opt = CMAOptimizer(2, np.array([0.5, 0.5]), 1, popsize=8)
        >>> for _ in range(60):
        ...     x = opt.ask()
        ...     opt.tell(x, ((x - 0.2) ** 2).sum(axis=1))
        >>> bool(opt.best[1] < 1e-6)
        True
    """

    name = "cma"

    def __init__(
        self,
        n_active: int,
        x0: np.ndarray,
        seed: int | np.random.Generator | None = 0,
        *,
        sigma0: float = 0.3,
        popsize: int | None = None,
        max_evaluations: int | None = None,
        tolfun: float = 1e-11,
        tolx: float = 1e-11,
        options: dict[str, Any] | None = None,
    ) -> None:
        owner = "optimizer 'cma'"
        self.n_active = check_n_active(n_active)
        self.x0 = check_x0(x0, self.n_active)
        self.sigma0 = check_float_setting(owner, "sigma0", sigma0)
        self.popsize = check_int_setting(
            owner, "popsize", popsize, minimum=2, allow_none=True
        )
        self.max_evaluations = check_int_setting(
            owner, "max_evaluations", max_evaluations, minimum=1, allow_none=True
        )
        self.tolfun = check_float_setting(owner, "tolfun", tolfun, positive=False)
        self.tolx = check_float_setting(owner, "tolx", tolx, positive=False)
        self.options = _check_options(options)
        self._rng = as_generator(seed)
        self._book = Bookkeeper(self.n_active, self.x0)
        self._es: Any = None  # cma.CMAEvolutionStrategy, built on the first ask()
        self._solutions: list[np.ndarray] | None = None  # cma's own pending solutions

    # ---- protocol -----------------------------------------------------------------
    def ask(self) -> np.ndarray:
        """Next generation, (popsize, n_active) in [0, 1]; the pending one if not told.

        Returns an empty (0, n_active) array when ``stop()`` is non-empty.
        """
        if self._book.pending is not None:
            return self._book.pending.copy()
        if self.stop():
            return np.empty((0, self.n_active))
        es = self._strategy()
        self._solutions = [np.array(s, dtype=float) for s in es.ask()]
        x = np.clip(np.array(self._solutions)[:, : self.n_active], 0.0, 1.0)
        return self._book.set_pending(x)

    def tell(self, x_scaled: np.ndarray, losses: np.ndarray) -> None:
        """Tell the losses of the last ``ask()``; non-finite ones are replaced (module doc)."""
        x, y = self._book.check_tell(x_scaled, losses)
        solutions = self._solutions
        bad = self._book.record(x, y)  # best and counters see the raw losses
        values = self._replace_failed(y, bad, np.array(solutions)[:, : self.n_active])
        self._es.tell(solutions, values.tolist())
        self._solutions = None

    def stop(self) -> dict[str, object]:
        """``{}`` to go on; else e.g. ``{"tolfun": 1e-11}`` or ``{"max_evaluations": 5000}``."""
        reasons: dict[str, object] = {}
        if (
            self.max_evaluations is not None
            and self._book.n_told >= self.max_evaluations
        ):
            reasons["max_evaluations"] = self.max_evaluations
        if self._es is not None and self._es.countiter > 0:
            reasons.update({str(k): v for k, v in dict(self._es.stop()).items()})
        return reasons

    @property
    def best(self) -> tuple[np.ndarray, float]:
        """Best told point (n_active,) in [0, 1] and its loss (``(x0, inf)`` before any)."""
        return self._book.best

    @property
    def n_told(self) -> int:
        return self._book.n_told

    @property
    def n_failed(self) -> int:
        """Number of told losses that were inf or nan."""
        return self._book.n_failed

    @property
    def sigma(self) -> float:
        """Current overall step size (dimensionless; ``sigma0`` before the first ask)."""
        return self.sigma0 if self._es is None else float(self._es.sigma)

    # ---- internals ----------------------------------------------------------------
    def _strategy(self) -> Any:
        if self._es is None:
            import cma

            x0 = self.x0 if self.n_active > 1 else np.array([self.x0[0], 0.5])
            opts: dict[str, Any] = {
                "bounds": [0.0, 1.0],
                "BoundaryHandler": cma.BoundTransform,
                "randn": _GeneratorRandn(self._rng),
                "seed": math.nan,  # nan: cma leaves the global np.random alone
                "verbose": -9,
                "verb_disp": 0,
                "verb_log": 0,
                "tolfun": self.tolfun,
                "tolfunhist": min(
                    1e-12, self.tolfun
                ),  # cma's default unless tolfun is lower
                "tolx": self.tolx,
            }
            if self.popsize is not None:
                opts["popsize"] = self.popsize
            opts.update(self.options)
            self._es = cma.CMAEvolutionStrategy(x0.tolist(), self.sigma0, opts)
        return self._es

    def _replace_failed(
        self, y: np.ndarray, bad: np.ndarray, x: np.ndarray
    ) -> np.ndarray:
        if not bad.any():
            return y
        values = y.copy()
        if (~bad).any():
            worst = float(np.max(y[~bad]))
            values[bad] = worst + abs(worst) + 1.0
        else:
            best_x, best_loss = self._book.best
            scale = 1.0 if not math.isfinite(best_loss) else max(1.0, abs(best_loss))
            values[:] = 1e10 * scale + np.linalg.norm(x - best_x, axis=1)
        return values


def _check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InputError(
            f"optimizer 'cma': 'options' must be a mapping of cma options; got {options!r}.",
            key="options",
        )
    import cma

    known = set(cma.CMAOptions())
    for key in options:
        if key in _RESERVED_OPTIONS:
            raise InputError(
                f"optimizer 'cma': option {key!r} is set by parafit; use the setting of the same name "
                f"where there is one (reserved: {', '.join(_RESERVED_OPTIONS)}).",
                key=f"options.{key}",
            )
        if key not in known:
            import difflib

            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise InputError(
                f"optimizer 'cma': unknown cma option {key!r}{hint} See cma.CMAOptions() for the list.",
                key=f"options.{key}",
            )
    return dict(options)
