"""Samplers: random and Latin-hypercube designs handed out through ask/tell.

A sampler learns nothing from the losses; it hands out a fixed number of points in
``[0, 1]^n_active`` in batches and stops when all have been told
(``stop() == {"n_samples": n}``). Sensitivity runs sample this way, and a sampler can
also serve as a crude global optimizer (``best`` tracks the lowest loss told). Losses
may be inf/nan (failed or infeasible points); they are only counted in ``n_failed``.

Both are reproducible: the same ``seed`` gives the same points for any ``batch_size``.
"""

from typing import final

import numpy as np

from parafit._rng import as_generator
from parafit.errors import InputError
from parafit.optimizers.base import (
    Bookkeeper,
    check_int_setting,
    check_n_active,
    check_x0,
)

__all__ = ["LatinHypercubeSampler", "RandomSampler"]


def _check_common(
    owner: str, n_samples: int, batch_size: int, include_x0: bool
) -> tuple[int, int, bool]:
    n = check_int_setting(owner, "n_samples", n_samples, minimum=1)
    b = check_int_setting(owner, "batch_size", batch_size, minimum=1)
    if not isinstance(include_x0, bool | np.bool_):
        raise InputError(
            f"{owner}: 'include_x0' must be true or false; got {include_x0!r}.",
            key="include_x0",
        )
    return n, b, bool(include_x0)  # type: ignore[return-value]


class _AbstractSampler:
    """Hands out ``n_samples`` points in batches; subclasses only say how to draw them.

    Subclasses set ``n_active``, ``x0``, ``n_samples``, ``batch_size``, ``include_x0``,
    ``_book`` (a :class:`Bookkeeper`) and ``_n_asked`` and implement :meth:`_draw`.
    """

    n_active: int
    n_samples: int
    batch_size: int
    _book: Bookkeeper
    _n_asked: int

    def _draw(self, start: int, k: int) -> np.ndarray:
        """Points ``start .. start + k - 1`` of the sequence, (k, n_active)."""
        raise NotImplementedError

    def ask(self) -> np.ndarray:
        """Next batch, (min(batch_size, remaining), n_active); the pending one if not told."""
        if self._book.pending is not None:
            return self._book.pending.copy()
        k = min(self.batch_size, self.n_samples - self._n_asked)
        if k <= 0:
            return np.empty((0, self.n_active))
        x = self._draw(self._n_asked, k)
        self._n_asked += k
        return self._book.set_pending(x)

    def tell(self, x_scaled: np.ndarray, losses: np.ndarray) -> None:
        """Record the losses of the last batch (non-finite ones are counted only)."""
        x, y = self._book.check_tell(x_scaled, losses)
        self._book.record(x, y)

    def stop(self) -> dict[str, object]:
        """``{"n_samples": n}`` once all points are told, else ``{}``."""
        return (
            {"n_samples": self.n_samples} if self._book.n_told >= self.n_samples else {}
        )

    @property
    def best(self) -> tuple[np.ndarray, float]:
        """Best told point (n_active,) and its loss (``(x0, inf)`` before any)."""
        return self._book.best

    @property
    def n_told(self) -> int:
        return self._book.n_told

    @property
    def n_failed(self) -> int:
        """Number of told losses that were inf or nan."""
        return self._book.n_failed


@final
class RandomSampler(_AbstractSampler):
    """Points drawn independently and uniformly from ``[0, 1]^n_active``.

    Args:
        n_active: number of active parameters (>= 1).
        x0: (n_active,) start point in [0, 1]; used only with ``include_x0``.
        seed: random seed or generator.
        n_samples: total number of points (>= 1); default 1000.
        batch_size: points per ``ask()`` (the last batch may be smaller); default 64.
        include_x0: make ``x0`` the first point (it counts towards ``n_samples``).

    Example:
        >>> s = RandomSampler(3, np.full(3, 0.5), 0, n_samples=5, batch_size=4)
        >>> x = s.ask(); s.tell(x, x.sum(axis=1)); x.shape
        (4, 3)
        >>> x = s.ask(); s.tell(x, x.sum(axis=1)); s.stop()
        {'n_samples': 5}
    """

    name = "random"

    def __init__(
        self,
        n_active: int,
        x0: np.ndarray,
        seed: int | np.random.Generator | None = 0,
        *,
        n_samples: int = 1000,
        batch_size: int = 64,
        include_x0: bool = False,
    ) -> None:
        self.n_active = check_n_active(n_active)
        self.x0 = check_x0(x0, self.n_active)
        self.n_samples, self.batch_size, self.include_x0 = _check_common(
            "optimizer 'random'", n_samples, batch_size, include_x0
        )
        self._rng = as_generator(seed)
        self._book = Bookkeeper(self.n_active, self.x0)
        self._n_asked = 0

    def _draw(self, start: int, k: int) -> np.ndarray:
        if self.include_x0 and start == 0:
            return np.vstack(
                [self.x0[None, :], self._rng.random((k - 1, self.n_active))]
            )
        return self._rng.random((k, self.n_active))


@final
class LatinHypercubeSampler(_AbstractSampler):
    """A Latin-hypercube design of ``n_samples`` points, handed out in batches.

    The whole design comes from ``scipy.stats.qmc.LatinHypercube`` (scrambled): along
    every coordinate each of the ``n`` equal bins of ``[0, 1]`` holds exactly one point,
    where ``n`` is the design size. With ``include_x0`` the first point is ``x0`` and
    the design has ``n_samples - 1`` points.

    Args:
        n_active: number of active parameters (>= 1).
        x0: (n_active,) start point in [0, 1]; used only with ``include_x0``.
        seed: random seed or generator (a generator is used to draw an int seed).
        n_samples: total number of points (>= 1); default 1000.
        batch_size: points per ``ask()`` (the last batch may be smaller); default 64.
        include_x0: make ``x0`` the first point (it counts towards ``n_samples``).

    Example:
        >>> s = LatinHypercubeSampler(2, np.full(2, 0.5), 0, n_samples=4)
        >>> x = s.ask()
        >>> sorted(np.floor(x[:, 0] * 4).astype(int).tolist())
        [0, 1, 2, 3]
    """

    name = "lhs"

    def __init__(
        self,
        n_active: int,
        x0: np.ndarray,
        seed: int | np.random.Generator | None = 0,
        *,
        n_samples: int = 1000,
        batch_size: int = 64,
        include_x0: bool = False,
    ) -> None:
        self.n_active = check_n_active(n_active)
        self.x0 = check_x0(x0, self.n_active)
        self.n_samples, self.batch_size, self.include_x0 = _check_common(
            "optimizer 'lhs'", n_samples, batch_size, include_x0
        )
        if (
            isinstance(seed, int | np.integer)
            and not isinstance(seed, bool)
            and seed >= 0
        ):
            self.seed = int(seed)
        else:
            self.seed = int(as_generator(seed).integers(2**63))
        self._book = Bookkeeper(self.n_active, self.x0)
        self._n_asked = 0
        self._design: np.ndarray | None = None  # built on first ask, not pickled

    @property
    def design(self) -> np.ndarray:
        """All ``n_samples`` points in order, (n_samples, n_active) in [0, 1)."""
        if self._design is None:
            n_lhs = self.n_samples - int(self.include_x0)
            points = _latin_hypercube(self.n_active, n_lhs, self.seed)
            if self.include_x0:
                points = np.vstack([self.x0[None, :], points])
            self._design = points
        return self._design

    def _draw(self, start: int, k: int) -> np.ndarray:
        return self.design[start : start + k]

    def __getstate__(self) -> dict[str, object]:
        state = {name: getattr(self, name) for name in self.__dict__}
        state["_design"] = None  # rebuilt from the seed
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)


def _latin_hypercube(d: int, n: int, seed: int) -> np.ndarray:
    if n == 0:
        return np.empty((0, d))
    from scipy.stats import qmc

    try:
        sampler = qmc.LatinHypercube(d=d, rng=seed)
    except TypeError:  # scipy < 1.15 names the argument seed
        sampler = qmc.LatinHypercube(d=d, seed=seed)
    return sampler.random(n)
