"""Tests of the executors: serial, a spawn process pool with a payload, chunking.

The payload classes live in this module. Under ``spawn`` a worker imports them by
module name: pytest's default ``prepend`` import mode puts ``tests/`` on ``sys.path``,
and multiprocessing hands the parent's ``sys.path`` to the children. One test also
uses a numpy object as payload, which is importable in any case.
"""

import functools
import os
import pickle

import numpy as np
import pytest

from parafit.errors import InputError, ParafitError
from parafit.executors import (
    Executor,
    LocalProcessExecutor,
    SerialExecutor,
    WorkerError,
    make_executor,
    map_chunks,
    split_batch,
    worker_payload,
)


class QuadraticPayload:
    """A small picklable 'objective': loss = sum(w * (x - c)^2) per row."""

    def __init__(self, centre: np.ndarray, weights: np.ndarray) -> None:
        self.centre = centre
        self.weights = weights

    def evaluate_chunk(self, x: np.ndarray, *, scale: float = 1.0) -> np.ndarray:
        return scale * (self.weights * (x - self.centre) ** 2).sum(axis=1)

    def pid_chunk(self, x: np.ndarray) -> list[int]:
        return [os.getpid()] * len(x)

    def crash_chunk(self, x: np.ndarray) -> None:
        os._exit(3)

    def raise_chunk(self, x: np.ndarray) -> None:
        raise ArithmeticError("payload failed")


def norm_chunk(
    payload: QuadraticPayload, x: np.ndarray, *, power: int = 2
) -> np.ndarray:
    return (np.abs(x - payload.centre) ** power).sum(axis=1)


def payload_centre_sum(_unused: int) -> float:
    return float(worker_payload().centre.sum())


@pytest.fixture(scope="module")
def payload() -> QuadraticPayload:
    return QuadraticPayload(np.array([0.1, 0.5, 0.9]), np.array([1.0, 2.0, 3.0]))


@pytest.fixture(scope="module")
def x_batch() -> np.ndarray:
    return np.random.default_rng(4).random((23, 3))


@pytest.fixture(scope="module")
def pool(payload):
    with LocalProcessExecutor(2, payload) as executor:
        yield executor


def test_split_batch_preserves_order_and_sizes(x_batch):
    chunks = split_batch(x_batch, 4)
    assert [len(c) for c in chunks] == [6, 6, 5, 6]
    np.testing.assert_array_equal(np.concatenate(chunks), x_batch)
    assert len(split_batch(x_batch[:2], 5)) == 2
    assert len(split_batch(x_batch[:0], 3)) == 1
    with pytest.raises(ValueError):
        split_batch(x_batch, 0)


def test_serial_executor(payload, x_batch):
    ex = SerialExecutor(payload)
    assert isinstance(ex, Executor)
    assert ex.submit(sum, [1, 2, 3]).result() == 6
    failed = ex.submit(int, "x")
    assert isinstance(failed.exception(), ValueError)
    parts = ex.map_batch("evaluate_chunk", x_batch)
    assert len(parts) == 1
    np.testing.assert_allclose(parts[0], payload.evaluate_chunk(x_batch))
    parts = ex.map_batch("evaluate_chunk", x_batch, n_chunks=3, scale=2.0)
    np.testing.assert_allclose(
        np.concatenate(parts), 2 * payload.evaluate_chunk(x_batch)
    )
    np.testing.assert_allclose(
        ex.map_batch(norm_chunk, x_batch, power=1)[0],
        norm_chunk(payload, x_batch, power=1),
    )
    with pytest.raises(ValueError, match="no method"):
        ex.map_batch("evaluate", x_batch)


def test_process_pool_matches_serial(pool, payload, x_batch):
    assert isinstance(pool, Executor)
    serial = np.concatenate(
        SerialExecutor(payload).map_batch("evaluate_chunk", x_batch, scale=0.5)
    )
    parts = pool.map_batch("evaluate_chunk", x_batch, scale=0.5)
    assert len(parts) == 2
    np.testing.assert_array_equal(np.concatenate(parts), serial)
    parts = pool.map_batch(norm_chunk, x_batch, n_chunks=5, power=3)
    assert len(parts) == 5
    np.testing.assert_allclose(
        np.concatenate(parts), norm_chunk(payload, x_batch, power=3)
    )


def test_process_pool_uses_other_processes_with_payload_set_once(pool, x_batch):
    pids = sum(pool.map_batch("pid_chunk", x_batch, n_chunks=6), [])
    assert len(pids) == len(x_batch)
    assert os.getpid() not in pids
    assert pool.submit(payload_centre_sum, 0).result() == pytest.approx(1.5)
    assert worker_payload() is None  # never set in the parent


def test_map_chunks_any_executor(pool, x_batch):
    fn = functools.partial(np.sum, axis=1)
    expected = x_batch.sum(axis=1)
    for ex in (SerialExecutor(), pool):
        parts = map_chunks(ex, fn, x_batch, 3)
        assert len(parts) == 3
        np.testing.assert_allclose(np.concatenate(parts), expected)


def test_payload_exception_is_reraised(pool, x_batch):
    with pytest.raises(ArithmeticError, match="payload failed"):
        pool.map_batch("raise_chunk", x_batch)
    # the pool survives an ordinary exception
    assert len(pool.map_batch("evaluate_chunk", x_batch)) == 2


def test_numpy_payload_in_pool():
    poly = np.polynomial.Polynomial([1.0, 2.0, 3.0])
    x = np.linspace(0, 1, 10)[:, None]
    with make_executor(2, payload=poly) as ex:
        assert isinstance(ex, LocalProcessExecutor)
        parts = ex.map_batch("__call__", x)
    np.testing.assert_allclose(np.concatenate(parts), poly(x))


def test_worker_crash_raises_worker_error(payload, x_batch):
    ex = LocalProcessExecutor(2, payload)
    try:
        with pytest.raises(WorkerError, match="worker process died") as info:
            ex.map_batch("crash_chunk", x_batch)
        assert isinstance(info.value, ParafitError)
        with pytest.raises(WorkerError):
            ex.map_batch("evaluate_chunk", x_batch)
    finally:
        ex.shutdown()


def test_make_executor_and_bad_arguments(payload):
    assert isinstance(make_executor(1, payload), SerialExecutor)
    assert isinstance(make_executor(0, payload), SerialExecutor)
    with pytest.raises(InputError) as info:
        LocalProcessExecutor(0, payload)
    assert info.value.key == "n_workers"
    with pytest.raises(InputError):
        make_executor(2.5, payload)
    with pytest.raises(WorkerError, match="cannot be pickled"):
        LocalProcessExecutor(2, lambda x: x)
    with pytest.raises(TypeError):
        pickle.dumps(LocalProcessExecutor(2, payload))
