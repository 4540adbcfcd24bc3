"""``scipy.optimize.minimize`` as an ask/tell optimizer in ``[0, 1]^n_active``.

``minimize`` calls its objective; parafit's optimizers are asked and told. The bridge
runs ``minimize`` in a daemon worker thread whose objective puts its point in a request
queue and waits for the told loss on a reply queue. ``ask()`` returns the pending
request, ``tell()`` answers it and waits until scipy either asks again or returns.
Call :meth:`ScipyOptimizer.close` at the end (the thread is also stopped when the
evaluation budget is spent, when scipy returns, and when the object is collected).

Gradient methods (CG, BFGS, L-BFGS-B, TNC, SLSQP, trust-constr) get ``jac=True``. With
exact gradients (setting ``gradient``: ``exact``, or ``auto`` when the objective is
differentiable, see :meth:`ScipyOptimizer.offer_gradients`) one request is the single
point ``x`` and ``tell(x, losses, gradients=g)`` answers it with the loss and its
gradient ``g`` (1, n_active) with respect to the scaled point. Otherwise one request is
the whole forward-difference stencil ``[x, x + h e_1, ..., x + h e_n]`` (n_active + 1
points, a backward step where ``x_i + h > 1``), so a loss and its gradient cost one
batched evaluation.

Bounds: methods that accept bounds (Nelder-Mead, Powell, L-BFGS-B, TNC, COBYLA,
SLSQP, trust-constr) get ``[0, 1]`` for every coordinate. For the others (CG, BFGS),
scipy's point is clipped into ``[0, 1]`` before it is asked, so the loss is constant
outside the cube, and the gradient components of clipped coordinates are set to 0.

Non-finite losses: scipy gets ``1e10 + 10 * max(1, |worst finite loss so far|)``, a
finite value above every loss seen, which simplex and line-search methods treat as a
bad step. In a gradient stencil a failed neighbour gives a 0 gradient component; a
failed centre gives the penalty with a 0 gradient, and so does a failed point with exact
gradients (a NaN component of an exact gradient is given as 0). Failures count in
``n_failed``.

Checkpoints: pickling keeps the settings, the counters and the best point, not
scipy's internal state (a thread cannot be pickled). An unpickled optimizer restarts
``minimize`` from its best point (``x0`` if nothing finite was told) with the rest of
the evaluation budget.
"""

import math
import queue
import threading
import weakref
from typing import Any, final

import numpy as np

from parafit.errors import InputError
from parafit.optimizers.base import (
    Bookkeeper,
    check_float_setting,
    check_int_setting,
    check_n_active,
    check_x0,
)

__all__ = ["ScipyOptimizer"]

_METHODS = {
    "nelder-mead": "Nelder-Mead",
    "powell": "Powell",
    "cg": "CG",
    "bfgs": "BFGS",
    "l-bfgs-b": "L-BFGS-B",
    "tnc": "TNC",
    "cobyla": "COBYLA",
    "slsqp": "SLSQP",
    "trust-constr": "trust-constr",
}
_GRADIENT_METHODS = frozenset(
    {"CG", "BFGS", "L-BFGS-B", "TNC", "SLSQP", "trust-constr"}
)
_BOUNDED_METHODS = frozenset(
    {"Nelder-Mead", "Powell", "L-BFGS-B", "TNC", "COBYLA", "SLSQP", "trust-constr"}
)
_GRADIENT_MODES = ("auto", "exact", "finite-difference")


class _Closed(Exception):
    """Raised inside the worker's objective to end ``minimize`` early."""


@final
class ScipyOptimizer:
    """A ``scipy.optimize.minimize`` method, bridged to ask/tell (see the module doc).

    Args:
        n_active: number of active parameters (>= 1).
        x0: (n_active,) start point in [0, 1].
        seed: accepted for the factory contract; the scipy methods are deterministic.
        method: one of Nelder-Mead (default), Powell, CG, BFGS, L-BFGS-B, TNC, COBYLA,
            SLSQP, trust-constr (case-insensitive).
        max_evaluations: stop after this many told points (a finite-difference
            gradient costs n_active + 1, an exact one 1); default None (scipy's own
            limits apply).
        options: the ``options`` dict of ``minimize`` (e.g. ``{"maxfev": 2000}``).
        fd_step: forward-difference step in the scaled space (0 < h < 0.5); default 1e-6.
        gradient: how gradient methods get gradients: ``auto`` (default: exact when
            the objective is differentiable, else finite differences), ``exact``
            (requires a differentiable engine) or ``finite-difference``. Resolved by
            :meth:`offer_gradients` before the first ``ask``; until then ``auto``
            means finite differences.

    Raises:
        InputError: a bad setting (``.key`` names it).

    Example:
        >>> opt = ScipyOptimizer(2, np.array([0.5, 0.5]), 0, method="L-BFGS-B")
        >>> while not opt.stop():
        ...     x = opt.ask()
        ...     opt.tell(x, ((x - 0.25) ** 2).sum(axis=1))
        >>> opt.close()
        >>> bool(opt.best[1] < 1e-8)
        True
    """

    def __init__(
        self,
        n_active: int,
        x0: np.ndarray,
        seed: int | np.random.Generator | None = 0,
        *,
        method: str = "Nelder-Mead",
        max_evaluations: int | None = None,
        options: dict[str, Any] | None = None,
        fd_step: float = 1e-6,
        gradient: str = "auto",
    ) -> None:
        owner = "optimizer 'scipy'"
        self.n_active = check_n_active(n_active)
        self.x0 = check_x0(x0, self.n_active)
        if not isinstance(method, str) or method.lower() not in _METHODS:
            raise InputError(
                f"{owner}: unknown method {method!r}; allowed: {', '.join(_METHODS.values())}.",
                key="method",
            )
        self.method = _METHODS[method.lower()]
        self.name = f"scipy:{method.lower()}"
        self.max_evaluations = check_int_setting(
            owner, "max_evaluations", max_evaluations, minimum=1, allow_none=True
        )
        if options is not None and not isinstance(options, dict):
            raise InputError(
                f"{owner}: 'options' must be a mapping; got {options!r}.", key="options"
            )
        self.options = dict(options or {})
        self.fd_step = check_float_setting(owner, "fd_step", fd_step)
        if self.fd_step >= 0.5:
            raise InputError(
                f"{owner}: 'fd_step' must be < 0.5; got {fd_step!r}.", key="fd_step"
            )
        if not isinstance(gradient, str) or gradient.lower() not in _GRADIENT_MODES:
            raise InputError(
                f"{owner}: 'gradient' must be one of {', '.join(_GRADIENT_MODES)}; got {gradient!r}.",
                key="gradient",
            )
        self.gradient = gradient.lower()
        if self.gradient == "exact" and self.method not in _GRADIENT_METHODS:
            raise InputError(
                f"{owner}: 'gradient: exact' needs a gradient method "
                f"({', '.join(sorted(_GRADIENT_METHODS))}); method {self.method!r} uses no gradient.",
                key="gradient",
            )
        self._exact = False
        self.seed = seed if not isinstance(seed, np.random.Generator) else None
        self.n_restarts = 0
        self._book = Bookkeeper(self.n_active, self.x0)
        self._start_x = self.x0.copy()
        self._worst_finite = -math.inf
        self._message: str | None = None
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._thread: threading.Thread | None = None
        self._requests: queue.Queue[tuple[str, Any]] | None = None
        self._replies: queue.Queue[_Reply | None] | None = None
        self._finalizer: weakref.finalize | None = None
        self._next_batch: np.ndarray | None = None

    # ---- gradients ----------------------------------------------------------------
    def offer_gradients(self, available: bool) -> None:
        """Say whether exact gradients of the loss can be told (the objective is
        differentiable); call before the first ``ask`` (again after unpickling is fine).

        Raises:
            InputError: ``gradient: exact`` and ``available`` is False.
            RuntimeError: scipy is already running.
        """
        if self._thread is not None:
            raise RuntimeError(
                f"{self.name}: offer_gradients() must come before the first ask()."
            )
        if self.gradient == "exact" and not available:
            raise InputError(
                f"optimizer {self.name!r}: 'gradient: exact' needs a differentiable engine "
                "(is_differentiable: true, e.g. lj); use gradient: auto or finite-difference.",
                key="gradient",
            )
        self._exact = (
            self.method in _GRADIENT_METHODS
            and self.gradient != "finite-difference"
            and bool(available)
        )

    @property
    def wants_gradient(self) -> bool:
        """True when ``tell`` needs ``gradients=``: exact gradients of a gradient method."""
        return self._exact

    # ---- protocol -----------------------------------------------------------------
    def ask(self) -> np.ndarray:
        """Scipy's next request: (1, n_active), or (n_active + 1, n_active) for a
        finite-difference gradient.

        Returns an empty (0, n_active) array when ``stop()`` is non-empty.
        """
        if self._book.pending is not None:
            return self._book.pending.copy()
        if self.stop():
            return np.empty((0, self.n_active))
        if self._next_batch is None:
            if self._thread is None:
                self._start()
            self._receive()
            if self._next_batch is None:  # scipy returned at once
                return np.empty((0, self.n_active))
        x, self._next_batch = self._next_batch, None
        return self._book.set_pending(x)

    def tell(
        self,
        x_scaled: np.ndarray,
        losses: np.ndarray,
        *,
        gradients: np.ndarray | None = None,
    ) -> None:
        """Answer the last request; waits until scipy asks again or returns.

        Args:
            x_scaled: the points of the last ``ask``, (n, n_active).
            losses: (n,) losses; inf/nan for failed points.
            gradients: (n, n_active) d loss / d x_scaled; required when
                :attr:`wants_gradient`, ignored otherwise.

        Raises:
            RuntimeError: nothing was asked.
            ValueError: shapes do not match, or gradients are missing.
        """
        x, y = self._book.check_tell(x_scaled, losses)
        grads = None
        if self._exact:
            if gradients is None:
                raise ValueError(
                    f"{self.name} uses exact gradients: call tell(x, losses, gradients=g) "
                    f"with g of shape ({len(x)}, {self.n_active})."
                )
            grads = np.array(gradients, dtype=float).reshape(len(x), -1)
            if grads.shape != (len(x), self.n_active):
                raise ValueError(
                    f"tell() got gradients of shape {np.shape(gradients)}; expected "
                    f"({len(x)}, {self.n_active})."
                )
        bad = self._book.record(x, y)
        if (~bad).any():
            self._worst_finite = max(self._worst_finite, float(np.max(y[~bad])))
        if (
            self.max_evaluations is not None
            and self._book.n_told >= self.max_evaluations
        ):
            self.close()
            return
        values = y.copy()
        values[bad] = self.failed_value
        if self._replies is None:  # a pending batch implies a running worker
            raise RuntimeError(
                f"{self.name}: no scipy worker is running; this is a bug."
            )
        self._replies.put((values, bad, grads))
        self._receive()

    def stop(self) -> dict[str, object]:
        """``{}`` to go on; else ``{"scipy": <minimize's message>}`` or ``{"max_evaluations": n}``."""
        reasons: dict[str, object] = {}
        if (
            self.max_evaluations is not None
            and self._book.n_told >= self.max_evaluations
        ):
            reasons["max_evaluations"] = self.max_evaluations
        if self._message is not None:
            reasons["scipy"] = self._message
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
    def failed_value(self) -> float:
        """The finite loss handed to scipy for a failed point (see the module doc)."""
        worst = self._worst_finite if math.isfinite(self._worst_finite) else 0.0
        return 1e10 + 10.0 * max(1.0, abs(worst))

    def close(self) -> None:
        """Stop the worker thread (idempotent); ``ask()`` then returns no points."""
        if self._finalizer is not None:
            self._finalizer()
        if self._thread is not None and self._message is None and not self.stop():
            self._message = "closed before scipy returned"
        self._book.pending = None
        self._init_runtime()

    # ---- pickling -----------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in _RUNTIME}
        book = Bookkeeper(
            self.n_active,
            self.x0,
            None,
            *self._book.best,
            self._book.n_told,
            self._book.n_failed,
        )
        state["_book"] = book
        state["_start_x"] = book.best_x.copy()
        state["_running"] = self._thread is not None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        running = state.pop("_running")
        self.__dict__.update(state)
        self._init_runtime()
        if running:
            self.n_restarts += 1

    # ---- internals ----------------------------------------------------------------
    def _start(self) -> None:
        self._requests = queue.Queue()
        self._replies = queue.Queue()
        self._thread = threading.Thread(
            target=_run_minimize,
            args=(
                self._requests,
                self._replies,
                self.method,
                self._start_x.copy(),
                self.options,
                self.fd_step,
                self._exact,
            ),
            name=f"parafit-{self.name}",
            daemon=True,
        )
        self._finalizer = weakref.finalize(self, _shutdown, self._replies, self._thread)
        self._thread.start()

    def _receive(self) -> None:
        """Wait for the worker's next message: a request, scipy's result, or an error."""
        if self._requests is None or self._thread is None:
            raise RuntimeError(
                f"{self.name}: no scipy worker is running; this is a bug."
            )
        while True:
            try:
                kind, payload = self._requests.get(timeout=1.0)
                break
            except queue.Empty:
                if not self._thread.is_alive() and self._requests.empty():
                    self.close()
                    raise RuntimeError(
                        f"{self.name}: the scipy worker thread ended without a result."
                    ) from None
        if kind == "eval":
            self._next_batch = payload
        elif kind == "done":
            self._message = payload
            self.close()
        else:  # "error": scipy raised (bad options, ...)
            self.close()
            self._message = f"error: {payload}"
            if "Unknown solver options" in str(payload):
                raise InputError(
                    f"optimizer {self.name!r}: {payload}; see scipy.optimize.show_options('minimize', "
                    f"{self.method!r}) for the allowed ones.",
                    key="options",
                ) from payload
            raise payload


_Reply = tuple[np.ndarray, np.ndarray, np.ndarray | None]  # losses, failed, gradients

_RUNTIME = frozenset({"_thread", "_requests", "_replies", "_finalizer", "_next_batch"})


def _shutdown(replies: "queue.Queue[Any]", thread: threading.Thread) -> None:
    if thread.is_alive():
        replies.put(None)
        thread.join(timeout=60.0)


def _run_minimize(
    requests: "queue.Queue[tuple[str, Any]]",
    replies: "queue.Queue[_Reply | None]",
    method: str,
    x0: np.ndarray,
    options: dict[str, Any],
    fd_step: float,
    exact: bool = False,
) -> None:
    """Worker thread body: run ``minimize``, asking the main thread for every loss."""
    from scipy.optimize import minimize

    n = len(x0)
    is_bounded = method in _BOUNDED_METHODS

    def evaluate(x: np.ndarray) -> _Reply:
        requests.put(("eval", x))
        reply = replies.get()
        if reply is None:
            raise _Closed
        return reply

    def fun(x: np.ndarray) -> float:
        values, _, _ = evaluate(np.clip(np.asarray(x, dtype=float), 0.0, 1.0)[None, :])
        return float(values[0])

    def fun_and_exact_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        x = np.asarray(x, dtype=float)
        xc = np.clip(x, 0.0, 1.0)
        values, bad, grads = evaluate(xc[None, :])
        grad = np.zeros(n) if bad[0] or grads is None else grads[0].copy()
        grad[~np.isfinite(grad)] = 0.0
        grad[xc != x] = 0.0  # the clipped loss is flat outside the cube
        return float(values[0]), grad

    def fun_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        x = np.asarray(x, dtype=float)
        xc = np.clip(x, 0.0, 1.0)
        steps = np.where(xc + fd_step <= 1.0, fd_step, -fd_step)
        stencil = np.vstack([xc, xc + np.diag(steps)])
        values, bad, _ = evaluate(stencil)
        grad = (values[1:] - values[0]) / steps
        grad[bad[1:]] = 0.0
        if bad[0]:
            grad[:] = 0.0
        grad[xc != x] = 0.0  # the clipped loss is flat outside the cube
        return float(values[0]), grad

    try:
        if method in _GRADIENT_METHODS:
            objective, jac = (fun_and_exact_grad if exact else fun_and_grad), True
        else:
            objective, jac = fun, None
        result = minimize(
            objective,
            x0,
            method=method,
            jac=jac,
            bounds=[(0.0, 1.0)] * n if is_bounded else None,
            options=options or None,
        )
        requests.put(("done", str(result.message)))
    except _Closed:
        return
    except BaseException as err:  # handed to the main thread, which raises it
        requests.put(("error", err))
