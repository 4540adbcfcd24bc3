"""Optimizer protocol (ask/tell) and the optimizer registry.

An optimizer proposes batches of points in the unit cube ``[0, 1]^n_active`` of the
active parameters (see :meth:`parafit.parameters.ParameterInterface.to_scaled`) and
learns from their losses; it never calls the objective (pycma's ask/tell)::

    opt = make_optimizer("cma", n_active=3, x0=np.full(3, 0.5), seed=1)
    while not opt.stop():
        x = opt.ask()                  # (n, n_active) in [0, 1]
        opt.tell(x, objective(x))      # (n,) losses; inf/nan allowed
    x_best, loss_best = opt.best

Optimizers that use exact gradients (:class:`GradientOptimizer`, e.g. ``scipy`` with a
gradient method) are told by ``offer_gradients(True)`` that the objective is
differentiable; while their ``wants_gradient`` is True they are told
``tell(x, losses, gradients=g)`` with ``g`` (n, n_active) the gradient of each loss
with respect to the scaled point (NaN rows for failed points)::

    opt.offer_gradients(objective.is_differentiable)
    x = opt.ask()
    loss, grad = objective.value_and_grad(x)
    opt.tell(x, loss, gradients=grad)

Non-finite losses (failed evaluations, constraint-violating points) are never an
error: each adapter documents how it hands them to its library and counts them in
``n_failed``. Every optimizer is picklable; after unpickling, ``ask()`` continues the
run. Factories are registered under the lowercase names users type in YAML.
"""

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, final, runtime_checkable

import numpy as np

from parafit._registry import Registry
from parafit.errors import InputError

__all__ = [
    "OPTIMIZERS",
    "GradientOptimizer",
    "Optimizer",
    "OptimizerFactory",
    "make_optimizer",
    "register_optimizer",
]


@runtime_checkable
class Optimizer(Protocol):
    """What every optimizer adapter provides (all points live in ``[0, 1]^n_active``).

    Contracts:
        - ``ask()`` returns a float array of shape (n, n_active), with n >= 1 unless
          ``stop()`` is non-empty (then n may be 0). Calling ``ask()`` again before
          ``tell()`` returns the same pending batch.
        - ``tell(x_scaled, losses)`` takes the batch of the last ``ask()`` (same rows, same
          order) and its (n,) losses; ``inf``/``nan`` marks a failed or infeasible point.
          It raises ``RuntimeError`` when nothing was asked and ``ValueError`` when the
          shapes do not match.
        - ``stop()`` returns ``{}`` to go on, else ``{reason: value}``.
        - ``best`` is the best point told so far and its loss (``(x0, inf)`` before any
          finite loss); ``n_told`` counts told points and ``n_failed`` the non-finite ones.
        - The object pickles; ``pickle.loads(pickle.dumps(opt)).ask()`` continues the run.
    """

    name: str

    def ask(self) -> np.ndarray: ...

    def tell(self, x_scaled: np.ndarray, losses: np.ndarray) -> None: ...

    def stop(self) -> dict[str, object]: ...

    @property
    def best(self) -> tuple[np.ndarray, float]: ...

    @property
    def n_told(self) -> int: ...

    @property
    def n_failed(self) -> int: ...


@runtime_checkable
class GradientOptimizer(Optimizer, Protocol):
    """An optimizer that can use exact gradients of the loss (an optional extension).

    Contracts (besides :class:`Optimizer`'s):
        - ``offer_gradients(available)`` is called once before the first ``ask()``
          (and again after unpickling) with whether gradients can be told; it may
          raise InputError when the optimizer was set up to require them.
        - While ``wants_gradient`` is True, ``tell(x_scaled, losses, gradients=g)``
          gets ``g`` of shape (n, n_active), d loss / d x_scaled, NaN rows for failed
          points; otherwise ``tell`` is called without ``gradients``.
    """

    @property
    def wants_gradient(self) -> bool: ...

    def offer_gradients(self, available: bool) -> None: ...


class OptimizerFactory(Protocol):
    """Builds an optimizer: ``factory(n_active=..., x0=..., seed=..., **settings)``."""

    def __call__(
        self, *, n_active: int, x0: np.ndarray, seed: int, **settings: Any
    ) -> Optimizer: ...


OPTIMIZERS: Registry["_CheckedFactory"] = Registry(
    "optimizer",
    hint="Register your own with parafit.optimizers.base.register_optimizer.",
)


@final
class _CheckedFactory:
    """A registered factory that checks ``n_active``, ``x0``, ``seed`` and the settings.

    The target is an object or a lazy ``"module:attr"`` string imported on first call.
    ``fixed`` settings (e.g. ``method="Nelder-Mead"`` for ``"nelder-mead"``) are passed
    on every call and may not be given by the user.
    """

    def __init__(
        self,
        name: str,
        target: Callable[..., Optimizer] | str,
        fixed: Mapping[str, Any],
    ) -> None:
        self.name = name
        self._target = target
        self.fixed = dict(fixed)

    @property
    def target(self) -> Callable[..., Optimizer]:
        if isinstance(self._target, str):
            import importlib

            module_name, attr = self._target.split(":", 1)
            self._target = getattr(importlib.import_module(module_name), attr)
        return self._target  # type: ignore[return-value]

    def allowed_settings(self) -> tuple[str, ...] | None:
        """Keyword settings the target accepts (None: it takes ``**kwargs``)."""
        params = inspect.signature(self.target).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        skip = {"n_active", "x0", "seed", *self.fixed}
        return tuple(
            p.name
            for p in params
            if p.kind
            in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            and p.name not in skip
        )

    def __call__(
        self,
        *,
        n_active: int,
        x0: np.ndarray,
        seed: int | np.random.Generator,
        **settings: Any,
    ) -> Optimizer:
        allowed = self.allowed_settings()
        if allowed is not None:
            for key in settings:
                if key not in allowed:
                    raise InputError(
                        f"optimizer {self.name!r} has no setting {key!r}; allowed: {', '.join(allowed) or '(none)'}.",
                        key=key,
                    )
        check_n_active(n_active)
        x0 = check_x0(x0, n_active)
        return self.target(
            n_active=n_active, x0=x0, seed=seed, **self.fixed, **settings
        )


def register_optimizer(
    name: str, factory: Callable[..., Optimizer] | str, *, aliases: Iterable[str] = ()
) -> None:
    """Register an optimizer factory under ``name`` (lowercase, as typed in YAML).

    Args:
        name: registry key, e.g. ``"cma"``.
        factory: a callable ``factory(*, n_active, x0, seed, **settings) -> Optimizer``
            (a class works), or a lazy ``"module:attr"`` string imported on first use.
            Its keyword arguments other than ``n_active``, ``x0`` and ``seed`` are the
            settings users may give; others raise InputError naming the key.
        aliases: other names for the same factory.

    Raises:
        ValueError: a name or alias is already registered.
    """
    _register(name, factory, aliases=tuple(aliases))


def _register(
    name: str,
    factory: Callable[..., Optimizer] | str,
    *,
    aliases: tuple[str, ...] = (),
    fixed: Mapping[str, Any] | None = None,
) -> None:
    OPTIMIZERS.register(
        name, _CheckedFactory(name, factory, fixed or {}), aliases=aliases
    )


def make_optimizer(
    name: str,
    *,
    n_active: int,
    x0: np.ndarray,
    seed: int | np.random.Generator,
    settings: Mapping[str, Any] | None = None,
) -> Optimizer:
    """Build the optimizer registered as ``name`` (case-insensitive).

    Args:
        name: registry key or alias, e.g. ``"cma"``, ``"scipy"``, ``"lhs"``.
        n_active: number of active parameters (>= 1).
        x0: (n_active,) start point in [0, 1] (scaled active values).
        seed: random seed (int) or generator.
        settings: the user's settings for this optimizer (from YAML).

    Raises:
        UnknownNameError: no optimizer ``name``.
        InputError: an unknown setting or a bad value (``.key`` names it).

    Example:
        >>> opt = make_optimizer("random", n_active=2, x0=np.full(2, 0.5), seed=0,
        ...                      settings={"n_samples": 3})
        >>> opt.ask().shape
        (3, 2)
    """
    factory = OPTIMIZERS.get(name.lower())
    return factory(n_active=n_active, x0=x0, seed=seed, **dict(settings or {}))


# ---- helpers shared by the adapters ---------------------------------------------------


def check_n_active(n_active: int) -> int:
    """``n_active`` as an int >= 1, else InputError."""
    if (
        isinstance(n_active, bool)
        or not isinstance(n_active, int | np.integer)
        or n_active < 1
    ):
        raise InputError(
            f"an optimizer needs n_active >= 1 active parameters; got {n_active!r}.",
            key="n_active",
        )
    return int(n_active)


def check_x0(x0: np.ndarray, n_active: int) -> np.ndarray:
    """``x0`` as a (n_active,) float array in [0, 1]; values within 1e-9 outside are clipped."""
    arr = (
        np.array(x0, dtype=float).reshape(-1)
        if np.ndim(x0) <= 1
        else np.asarray(x0, dtype=float)
    )
    if arr.shape != (n_active,):
        raise InputError(
            f"x0 must have shape ({n_active},); got shape {np.shape(x0)}.", key="x0"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < -1e-9) or np.any(arr > 1 + 1e-9):
        raise InputError(
            f"x0 must lie in [0, 1] (scaled active values); got {arr.tolist()!r}. "
            "Is a parameter's value outside its range?",
            key="x0",
        )
    return np.clip(arr, 0.0, 1.0)


def check_int_setting(
    owner: str, key: str, value: object, *, minimum: int, allow_none: bool = False
) -> int | None:
    """An integer setting >= minimum (or None when allowed), else InputError naming ``key``."""
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or value < minimum
    ):
        raise InputError(
            f"{owner}: {key!r} must be an integer >= {minimum}; got {value!r}.", key=key
        )
    return int(value)


def check_float_setting(
    owner: str, key: str, value: object, *, positive: bool = True
) -> float:
    """A finite float setting (> 0 when ``positive``), else InputError naming ``key``."""
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        out = math.nan
    if isinstance(value, bool) or not math.isfinite(out) or (positive and out <= 0):
        need = "a finite number > 0" if positive else "a finite number"
        raise InputError(f"{owner}: {key!r} must be {need}; got {value!r}.", key=key)
    return out


@dataclass(slots=True)
class Bookkeeper:
    """Ask/tell bookkeeping shared by the adapters (composition, not a base class).

    Holds the pending batch, the call-order check, the best point and the counters.
    """

    n_active: int
    x0: np.ndarray
    pending: np.ndarray | None = None
    best_x: np.ndarray = field(default_factory=lambda: np.empty(0))
    best_loss: float = math.inf
    n_told: int = 0
    n_failed: int = 0

    def __post_init__(self) -> None:
        if self.best_x.size == 0:
            self.best_x = np.array(self.x0, dtype=float, copy=True)

    def set_pending(self, x: np.ndarray) -> np.ndarray:
        """Store the batch handed out by ``ask`` and return a copy for the caller."""
        self.pending = np.array(x, dtype=float, copy=True).reshape(-1, self.n_active)
        return self.pending.copy()

    def check_tell(
        self, x_scaled: np.ndarray, losses: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Check a ``tell`` against the pending batch; returns (pending x, float losses)."""
        if self.pending is None:
            raise RuntimeError(
                "tell() called without a pending ask(); call ask() first."
            )
        x = np.asarray(x_scaled, dtype=float)
        y = np.asarray(losses, dtype=float).reshape(-1)
        if x.ndim != 2 or x.shape[1] != self.n_active:
            raise ValueError(
                f"tell() expects x of shape (n, {self.n_active}); got shape {x.shape}."
            )
        if len(y) != len(x):
            raise ValueError(f"tell() got {len(y)} losses for {len(x)} vectors.")
        if x.shape != self.pending.shape:
            raise ValueError(
                f"tell() got {len(x)} vectors but the last ask() gave {len(self.pending)}; "
                "tell the whole batch of the last ask()."
            )
        if not np.allclose(x, self.pending, rtol=0.0, atol=1e-12):
            raise ValueError(
                "tell() got vectors that differ from those of the last ask(); tell them in the same order."
            )
        return self.pending, y

    def record(self, x: np.ndarray, losses: np.ndarray) -> np.ndarray:
        """Update counters and best after a tell; returns the boolean mask of failures."""
        bad = ~np.isfinite(losses)
        self.n_told += len(losses)
        self.n_failed += int(bad.sum())
        if (~bad).any():
            i = int(np.argmin(np.where(bad, np.inf, losses)))
            if losses[i] < self.best_loss:
                self.best_loss = float(losses[i])
                self.best_x = np.array(x[i], dtype=float, copy=True)
        self.pending = None
        return bad

    @property
    def best(self) -> tuple[np.ndarray, float]:
        return self.best_x.copy(), self.best_loss


# Built-in optimizers, imported on first use.
_register("cma", "parafit.optimizers.cma:CMAOptimizer", aliases=("cmaes", "cma-es"))
_register("scipy", "parafit.optimizers.scipy:ScipyOptimizer")
_register(
    "nelder-mead",
    "parafit.optimizers.scipy:ScipyOptimizer",
    fixed={"method": "Nelder-Mead"},
)
_register(
    "powell", "parafit.optimizers.scipy:ScipyOptimizer", fixed={"method": "Powell"}
)
_register(
    "l-bfgs-b", "parafit.optimizers.scipy:ScipyOptimizer", fixed={"method": "L-BFGS-B"}
)
_register(
    "random", "parafit.optimizers.sampling:RandomSampler", aliases=("randomsampling",)
)
_register(
    "lhs",
    "parafit.optimizers.sampling:LatinHypercubeSampler",
    aliases=("latin-hypercube", "latinhypercube"),
)
