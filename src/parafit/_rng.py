"""One way to turn a seed into a random generator (no global numpy state)."""

import numpy as np

__all__ = ["as_generator"]


def as_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` for ``seed`` (passed through if already one)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
