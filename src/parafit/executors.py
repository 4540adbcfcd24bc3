"""Executors: where batches of parameter vectors are evaluated (the concurrent.futures seam).

An :class:`Executor` is anything with ``submit(fn, *args) -> Future`` and
``shutdown()``: :class:`SerialExecutor` (in this process), :class:`LocalProcessExecutor`
(a ``spawn`` process pool) or, later, a Dask client. The objective is sent to each
worker process once, as the *payload*, through the pool initializer; a task then
carries only a chunk of parameter vectors and the name of the payload method to call::

    with make_executor(4, payload=objective) as executor:
        parts = executor.map_batch("evaluate_chunk", x_batch)  # list, in chunk order
    losses = np.concatenate(parts)

``map_batch(target, x_batch)`` splits the (n_vectors, n_active) batch into contiguous
row chunks, calls ``payload.<target>(chunk, **kwargs)`` (``target`` a method name) or
``target(payload, chunk, **kwargs)`` (``target`` a picklable module-level function)
for each chunk, and returns the chunk results in order; the caller joins them
(``np.concatenate``, ``merge_batches``). A task is a chunk of vectors over the whole
job collection, never one tiny job. A worker that dies (out of memory, a crash in
compiled code) raises :class:`WorkerError`; an exception raised by the payload is
re-raised as it is.
"""

import multiprocessing
import pickle
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, Self, final, runtime_checkable

import numpy as np

from parafit.errors import InputError, ParafitError

__all__ = [
    "Executor",
    "LocalProcessExecutor",
    "SerialExecutor",
    "WorkerError",
    "make_executor",
    "map_chunks",
    "split_batch",
]

Target = str | Callable[..., Any]


class WorkerError(ParafitError, RuntimeError):
    """Raised when a worker process dies during an evaluation (the pool is then unusable)."""


@runtime_checkable
class Executor(Protocol):
    """Runs callables somewhere and returns futures (``concurrent.futures`` style)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future: ...

    def shutdown(self, wait: bool = True) -> None: ...


def split_batch(x_batch: np.ndarray, n_chunks: int) -> list[np.ndarray]:
    """Split rows into at most ``n_chunks`` contiguous, non-empty chunks of near-equal size.

    Args:
        x_batch: (n_vectors, ...) array.
        n_chunks: wanted number of chunks (>= 1); fewer when there are fewer rows.

    Returns:
        List of views whose concatenation is ``x_batch`` (one empty chunk if it is empty).
    """
    x = np.asarray(x_batch)
    if n_chunks < 1:
        raise ValueError(f"n_chunks must be >= 1; got {n_chunks!r}.")
    n = len(x)
    if n == 0:
        return [x]
    bounds = np.linspace(0, n, min(n_chunks, n) + 1).round().astype(int)
    return [x[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def map_chunks(
    executor: Executor,
    fn: Callable[[np.ndarray], Any],
    x_batch: np.ndarray,
    n_chunks: int,
) -> list[Any]:
    """Submit ``fn(chunk)`` for each row chunk of ``x_batch``; results in chunk order.

    Works with any :class:`Executor`. For a process pool ``fn`` must be picklable (a
    module-level function, or a ``functools.partial`` of one).

    Args:
        executor: where to run.
        fn: called once per chunk with a (n_chunk, ...) array.
        x_batch: (n_vectors, ...) array.
        n_chunks: number of chunks (see :func:`split_batch`).

    Returns:
        ``[fn(chunk) for chunk in split_batch(x_batch, n_chunks)]``, computed by the executor.

    Raises:
        WorkerError: a worker process died.

    Example:
        >>> import numpy as np
        >>> with SerialExecutor() as ex:
        ...     parts = map_chunks(ex, np.sum, np.arange(6.0).reshape(3, 2), 2)
        >>> [float(v) for v in parts]
        [6.0, 9.0]
    """
    futures = [executor.submit(fn, chunk) for chunk in split_batch(x_batch, n_chunks)]
    return _gather(futures)


def _gather(futures: Sequence[Future]) -> list[Any]:
    try:
        return [f.result() for f in futures]
    except BrokenProcessPool as err:
        for f in futures:
            f.cancel()
        raise WorkerError(
            "a worker process died during an evaluation (out of memory, or a crash in compiled "
            "engine code); the results of this batch are lost and the pool cannot be used again. "
            "Rerun with fewer workers (parallel.n_workers) or serially to see the error."
        ) from err


def _call(
    payload: object, target: Target, chunk: np.ndarray, kwargs: dict[str, Any]
) -> Any:
    if isinstance(target, str):
        return getattr(payload, target)(chunk, **kwargs)
    return target(payload, chunk, **kwargs)


def _check_target(payload: object, target: Target) -> None:
    if isinstance(target, str):
        if payload is None:
            raise ValueError(
                f"map_batch({target!r}, ...) needs an executor with a payload."
            )
        if not callable(getattr(payload, target, None)):
            raise ValueError(
                f"the payload {type(payload).__name__} has no method {target!r}."
            )
    elif not callable(target):
        raise TypeError(
            f"map_batch target must be a method name or a function; got {target!r}."
        )


@final
class SerialExecutor:
    """Runs everything at once in this process; ``submit`` returns a completed Future.

    Args:
        payload: the object whose methods :meth:`map_batch` calls (e.g. the objective).

    Example:
        >>> ex = SerialExecutor(payload=[1.0, 2.0])
        >>> ex.submit(sum, [1, 2]).result()
        3
    """

    n_workers = 1

    def __init__(self, payload: object = None) -> None:
        self.payload = payload

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        """Run ``fn(*args)`` now; its result or exception is in the returned Future."""
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as err:  # delivered through the future, as a pool would
            future.set_exception(err)
        return future

    def map_batch(
        self,
        target: Target,
        x_batch: np.ndarray,
        /,
        *,
        n_chunks: int = 1,
        **kwargs: Any,
    ) -> list[Any]:
        """Call ``target`` on the payload for each chunk (one chunk by default); see module doc."""
        _check_target(self.payload, target)
        return [
            _call(self.payload, target, chunk, kwargs)
            for chunk in split_batch(x_batch, n_chunks)
        ]

    def shutdown(self, wait: bool = True) -> None:
        """Nothing to release."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


# The payload of this worker process, set once by the pool initializer.
_WORKER_PAYLOAD: object = None


def _init_worker(payload_bytes: bytes) -> None:
    global _WORKER_PAYLOAD
    _WORKER_PAYLOAD = pickle.loads(payload_bytes)


def _run_in_worker(target: Target, chunk: np.ndarray, kwargs: dict[str, Any]) -> Any:
    return _call(_WORKER_PAYLOAD, target, chunk, kwargs)


def worker_payload() -> object:
    """The payload of the current worker process (None outside a pool worker).

    For functions submitted directly with ``submit`` that need the objective.
    """
    return _WORKER_PAYLOAD


@final
class LocalProcessExecutor:
    """A pool of ``n_workers`` processes (``spawn``) that each hold the payload.

    The payload is pickled once here (so an unpicklable one fails at once) and
    unpickled once in each worker by the pool initializer; tasks carry only chunks of
    parameter vectors. The pool starts on the first task. Use as a context manager or
    call :meth:`shutdown`.

    Args:
        n_workers: number of worker processes (>= 1).
        payload: picklable object whose methods :meth:`map_batch` calls; its class must
            be importable in a fresh interpreter (defined in a module, not ``__main__``
            of an interactive session).
        mp_context: multiprocessing start method; default ``"spawn"`` (safe with
            threads, JAX and MPI; ``"fork"`` is not).

    Raises:
        InputError: ``n_workers`` < 1.
        WorkerError: the payload cannot be pickled.
    """

    def __init__(
        self, n_workers: int, payload: object = None, *, mp_context: str = "spawn"
    ) -> None:
        if (
            isinstance(n_workers, bool)
            or not isinstance(n_workers, int)
            or n_workers < 1
        ):
            raise InputError(
                f"n_workers must be an integer >= 1; got {n_workers!r}.",
                key="n_workers",
            )
        self.n_workers = n_workers
        self.mp_context = mp_context
        self.payload = payload
        try:
            self._payload_bytes = pickle.dumps(
                payload, protocol=pickle.HIGHEST_PROTOCOL
            )
        except Exception as err:
            raise WorkerError(
                f"LocalProcessExecutor: the payload {type(payload).__name__} cannot be pickled ({err}); "
                "worker processes need a picklable objective."
            ) from err
        self._pool: ProcessPoolExecutor | None = None
        self._is_broken = False

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._is_broken:
            raise WorkerError(
                "LocalProcessExecutor: a worker died earlier; the pool cannot be used again."
            )
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.n_workers,
                mp_context=multiprocessing.get_context(self.mp_context),
                initializer=_init_worker,
                initargs=(self._payload_bytes,),
            )
        return self._pool

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Future:
        """Run picklable ``fn(*args)`` in a worker (:func:`worker_payload` gives the payload there)."""
        try:
            return self._get_pool().submit(fn, *args)
        except BrokenProcessPool as err:
            self._is_broken = True
            raise WorkerError(
                "LocalProcessExecutor: a worker process died; the pool cannot be used again."
            ) from err

    def map_batch(
        self,
        target: Target,
        x_batch: np.ndarray,
        /,
        *,
        n_chunks: int | None = None,
        **kwargs: Any,
    ) -> list[Any]:
        """Evaluate ``x_batch`` in chunks on the workers; chunk results in order.

        Args:
            target: name of a payload method called as ``payload.<target>(chunk, **kwargs)``,
                or a picklable module-level function called as
                ``target(payload, chunk, **kwargs)``.
            x_batch: (n_vectors, n_active) array (any leading-axis array works).
            n_chunks: number of chunks; default ``n_workers``.
            kwargs: picklable keyword arguments passed to every call.

        Returns:
            One result per chunk, in the order of the rows.

        Raises:
            WorkerError: a worker process died (out of memory, a crash in compiled code).
        """
        _check_target(self.payload, target)
        chunks = split_batch(x_batch, self.n_workers if n_chunks is None else n_chunks)
        futures = [
            self.submit(_run_in_worker, target, chunk, kwargs) for chunk in chunks
        ]
        try:
            return _gather(futures)
        except WorkerError:
            self._is_broken = True
            raise

    def shutdown(self, wait: bool = True) -> None:
        """Stop the worker processes (a later task starts a new pool)."""
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
            self._pool = None
        self._is_broken = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(
            "LocalProcessExecutor cannot be pickled; build a new one after a restart."
        )


def make_executor(
    n_workers: int, payload: object = None
) -> SerialExecutor | LocalProcessExecutor:
    """A :class:`SerialExecutor` for ``n_workers <= 1``, else a :class:`LocalProcessExecutor`.

    Example:
        >>> make_executor(1, payload=None).n_workers
        1
    """
    if isinstance(n_workers, bool) or not isinstance(n_workers, int):
        raise InputError(
            f"n_workers must be an integer; got {n_workers!r}.", key="n_workers"
        )
    if n_workers <= 1:
        return SerialExecutor(payload)
    return LocalProcessExecutor(n_workers, payload)
