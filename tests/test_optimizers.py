"""Tests of the ask/tell optimizers: cma, scipy bridge, random and LHS samplers."""

import pickle
import threading

import numpy as np
import pytest

from parafit.errors import InputError, UnknownNameError
from parafit.optimizers.base import (
    OPTIMIZERS,
    Optimizer,
    make_optimizer,
    register_optimizer,
)
from parafit.optimizers.cma import CMAOptimizer
from parafit.optimizers.sampling import LatinHypercubeSampler, RandomSampler
from parafit.optimizers.scipy import ScipyOptimizer

CENTRE_5 = np.array([0.12, 0.71, 0.33, 0.9, 0.45])


def shifted_sphere(x: np.ndarray) -> np.ndarray:
    return ((x - CENTRE_5[: x.shape[1]]) ** 2).sum(axis=1)


def rosenbrock_scaled(x: np.ndarray) -> np.ndarray:
    """Rosenbrock on [-2, 2]^2 mapped to [0, 1]^2; minimum 0 at x = (0.75, 0.75)."""
    u = 4.0 * x - 2.0
    return (1.0 - u[:, 0]) ** 2 + 100.0 * (u[:, 1] - u[:, 0] ** 2) ** 2


def run(opt: Optimizer, fn, max_rounds: int = 100_000) -> list[np.ndarray]:
    asked = []
    for _ in range(max_rounds):
        if opt.stop():
            break
        x = opt.ask()
        asked.append(x)
        opt.tell(x, fn(x))
    return asked


# ---- registry and settings ---------------------------------------------------------


def test_registry_names_and_aliases():
    for name in (
        "cma",
        "cmaes",
        "scipy",
        "nelder-mead",
        "powell",
        "l-bfgs-b",
        "random",
        "randomsampling",
        "lhs",
        "latin-hypercube",
        "latinhypercube",
    ):
        assert name in OPTIMIZERS
    x0 = np.full(2, 0.5)
    assert isinstance(make_optimizer("CMAES", n_active=2, x0=x0, seed=0), CMAOptimizer)
    assert (
        make_optimizer("nelder-mead", n_active=2, x0=x0, seed=0).name
        == "scipy:nelder-mead"
    )
    assert make_optimizer("l-bfgs-b", n_active=2, x0=x0, seed=0).method == "L-BFGS-B"
    assert isinstance(
        make_optimizer("latinhypercube", n_active=2, x0=x0, seed=0),
        LatinHypercubeSampler,
    )
    for name in OPTIMIZERS:
        opt = make_optimizer(name, n_active=2, x0=x0, seed=0)
        assert isinstance(opt, Optimizer)
        if isinstance(opt, ScipyOptimizer):
            opt.close()


def test_unknown_optimizer_suggests():
    with pytest.raises(UnknownNameError, match="did you mean 'lhs'"):
        make_optimizer("lhss", n_active=2, x0=np.full(2, 0.5), seed=0)


@pytest.mark.parametrize("name", ["cma", "scipy", "random", "lhs", "nelder-mead"])
def test_unknown_setting_names_key(name):
    with pytest.raises(InputError, match="allowed:") as info:
        make_optimizer(
            name, n_active=2, x0=np.full(2, 0.5), seed=0, settings={"sigmaa": 0.1}
        )
    assert info.value.key == "sigmaa"


def test_fixed_method_is_not_a_setting():
    with pytest.raises(InputError) as info:
        make_optimizer(
            "nelder-mead",
            n_active=2,
            x0=np.full(2, 0.5),
            seed=0,
            settings={"method": "bfgs"},
        )
    assert info.value.key == "method"


@pytest.mark.parametrize(
    ("name", "settings", "key"),
    [
        ("cma", {"sigma0": -1.0}, "sigma0"),
        ("cma", {"popsize": 1}, "popsize"),
        ("cma", {"options": {"tolstagnaton": 3}}, "options.tolstagnaton"),
        ("cma", {"options": {"bounds": [0, 2]}}, "options.bounds"),
        ("scipy", {"method": "newton"}, "method"),
        ("scipy", {"fd_step": 0.0}, "fd_step"),
        ("random", {"n_samples": 0}, "n_samples"),
        ("lhs", {"batch_size": 2.5}, "batch_size"),
    ],
)
def test_bad_setting_values(name, settings, key):
    with pytest.raises(InputError) as info:
        make_optimizer(name, n_active=2, x0=np.full(2, 0.5), seed=0, settings=settings)
    assert info.value.key == key


@pytest.mark.parametrize("x0", [[0.5, 1.5], [0.5], [np.nan, 0.5]])
def test_bad_x0(x0):
    with pytest.raises(InputError) as info:
        make_optimizer("cma", n_active=2, x0=np.array(x0), seed=0)
    assert info.value.key == "x0"


def test_n_active_zero_is_an_error():
    with pytest.raises(InputError) as info:
        make_optimizer("random", n_active=0, x0=np.empty(0), seed=0)
    assert info.value.key == "n_active"


def test_register_own_optimizer_and_duplicate():
    def factory(*, n_active, x0, seed, n_samples=3):
        return RandomSampler(n_active, x0, seed, n_samples=n_samples)

    register_optimizer("test-own-sampler", factory, aliases=("test-own",))
    opt = make_optimizer("test-own", n_active=3, x0=np.full(3, 0.5), seed=1)
    assert opt.ask().shape == (3, 3)
    with pytest.raises(InputError) as info:
        make_optimizer(
            "test-own", n_active=3, x0=np.full(3, 0.5), seed=1, settings={"n": 2}
        )
    assert info.value.key == "n"
    with pytest.raises(ValueError, match="already registered"):
        register_optimizer("cma", factory)


# ---- call order and shapes -----------------------------------------------------------


@pytest.mark.parametrize(
    "opt_fn",
    [
        lambda: CMAOptimizer(3, np.full(3, 0.5), 0),
        lambda: RandomSampler(3, np.full(3, 0.5), 0, n_samples=10),
        lambda: LatinHypercubeSampler(3, np.full(3, 0.5), 0, n_samples=10),
        lambda: ScipyOptimizer(3, np.full(3, 0.5), 0),
    ],
)
def test_tell_checks_order_and_shapes(opt_fn):
    opt = opt_fn()
    try:
        with pytest.raises(RuntimeError, match="ask"):
            opt.tell(np.full((1, 3), 0.5), np.zeros(1))
        x = opt.ask()
        assert x.ndim == 2 and x.shape[1] == 3 and len(x) >= 1
        assert np.all((x >= 0) & (x <= 1))
        np.testing.assert_array_equal(opt.ask(), x)  # re-ask gives the pending batch
        with pytest.raises(ValueError, match="losses"):
            opt.tell(x, np.zeros(len(x) + 1))
        with pytest.raises(ValueError, match="differ"):
            opt.tell(np.clip(x + 0.01, 0, 1) if len(x) else x, np.zeros(len(x)))
        opt.tell(x, shifted_sphere(x))
        assert opt.n_told == len(x)
        with pytest.raises(RuntimeError):
            opt.tell(x, shifted_sphere(x))
    finally:
        if isinstance(opt, ScipyOptimizer):
            opt.close()


# ---- CMA -------------------------------------------------------------------------------


def test_cma_converges_on_shifted_sphere():
    opt = CMAOptimizer(5, np.full(5, 0.5), 42)
    run(opt, shifted_sphere)
    x_best, loss_best = opt.best
    assert loss_best < 1e-8
    assert opt.n_told < 5000
    assert "tolfun" in opt.stop() or "tolx" in opt.stop()
    np.testing.assert_allclose(x_best, CENTRE_5, atol=1e-4)


def test_cma_same_seed_same_points_and_pickle_resume():
    a = CMAOptimizer(4, np.full(4, 0.5), 7)
    b = CMAOptimizer(4, np.full(4, 0.5), 7)
    for _ in range(6):
        xa, xb = a.ask(), b.ask()
        np.testing.assert_array_equal(xa, xb)
        a.tell(xa, shifted_sphere(xa))
        b.tell(xb, shifted_sphere(xb))
    resumed = pickle.loads(pickle.dumps(a))
    assert resumed.n_told == a.n_told and resumed.best[1] == a.best[1]
    for _ in range(10):
        xa, xr = a.ask(), resumed.ask()
        np.testing.assert_array_equal(xa, xr)
        a.tell(xa, shifted_sphere(xa))
        resumed.tell(xr, shifted_sphere(xr))
    # pickled between ask and tell: the pending batch comes back
    xa = a.ask()
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(a)).ask(), xa)


def test_cma_does_not_touch_global_numpy_random():
    state = np.random.get_state()[1].copy()
    opt = CMAOptimizer(3, np.full(3, 0.5), 1)
    run(opt, shifted_sphere, max_rounds=5)
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_cma_handles_non_finite_losses():
    def loss(x):
        out = shifted_sphere(x)
        out[x[:, 0] > 0.6] = np.inf
        out[x[:, 1] < 0.2] = np.nan
        return out

    opt = CMAOptimizer(3, np.full(3, 0.5), 3, max_evaluations=4000)
    run(opt, loss)
    assert opt.n_failed > 0
    assert opt.best[1] < 1e-8
    assert np.isfinite(opt.best[1])


def test_cma_all_failed_keeps_going_and_best_is_x0():
    opt = CMAOptimizer(2, np.array([0.2, 0.8]), 3, max_evaluations=60)
    run(opt, lambda x: np.full(len(x), np.nan))
    assert opt.stop() == {"max_evaluations": 60}
    assert opt.n_failed == opt.n_told >= 60
    x_best, loss_best = opt.best
    assert loss_best == np.inf
    np.testing.assert_array_equal(x_best, [0.2, 0.8])


def test_cma_one_active_parameter():
    opt = CMAOptimizer(1, np.array([0.9]), 5)
    asked = run(opt, lambda x: (x[:, 0] - 0.3) ** 2)
    assert all(x.shape[1] == 1 for x in asked)
    assert opt.best[1] < 1e-10
    assert abs(opt.best[0][0] - 0.3) < 1e-5


def test_cma_settings_pass_through():
    opt = CMAOptimizer(
        3, np.full(3, 0.5), 0, popsize=10, sigma0=0.1, options={"tolstagnation": 50}
    )
    assert opt.ask().shape == (10, 3)
    assert opt.sigma == pytest.approx(0.1)
    assert opt._es.opts["tolstagnation"] == 50
    assert opt._es.opts["tolfunhist"] == 1e-12
    tiny = CMAOptimizer(3, np.full(3, 0.5), 0, tolfun=1e-30)
    tiny.ask()
    assert tiny._es.opts["tolfun"] == 1e-30 and tiny._es.opts["tolfunhist"] == 1e-30
    assert make_optimizer(
        "cma", n_active=6, x0=np.full(6, 0.5), seed=0
    ).ask().shape == (4 + int(3 * np.log(6)), 6)


def test_cma_max_evaluations_and_empty_ask_after_stop():
    opt = CMAOptimizer(2, np.full(2, 0.5), 0, popsize=5, max_evaluations=12)
    run(opt, shifted_sphere)
    assert opt.n_told == 15
    assert opt.stop()["max_evaluations"] == 12
    assert opt.ask().shape == (0, 2)


# ---- scipy ----------------------------------------------------------------------------


def test_scipy_nelder_mead_rosenbrock():
    opt = ScipyOptimizer(
        2,
        np.array([0.3, 0.6]),
        0,
        options={"maxfev": 4000, "xatol": 1e-10, "fatol": 1e-14},
    )
    sizes = {len(x) for x in run(opt, rosenbrock_scaled)}
    opt.close()
    assert sizes == {1}
    assert "scipy" in opt.stop() and "success" in opt.stop()["scipy"]
    assert opt.best[1] < 1e-10
    np.testing.assert_allclose(opt.best[0], [0.75, 0.75], atol=1e-5)


def test_scipy_lbfgsb_batches_the_gradient_stencil():
    opt = make_optimizer("l-bfgs-b", n_active=2, x0=np.array([0.3, 0.6]), seed=0)
    batches = run(opt, rosenbrock_scaled)
    opt.close()
    assert {len(x) for x in batches} == {3}  # x and x + h e_i: one batch per gradient
    for x in batches:
        steps = x[1:] - x[0]
        np.testing.assert_allclose(np.abs(steps), np.eye(2) * 1e-6, atol=1e-15)
    assert opt.best[1] < 1e-4  # forward differences limit the accuracy
    np.testing.assert_allclose(opt.best[0], [0.75, 0.75], atol=1e-3)
    assert "scipy" in opt.stop()


def test_scipy_gradient_steps_back_at_the_upper_bound():
    opt = ScipyOptimizer(2, np.array([1.0, 0.5]), 0, method="L-BFGS-B", fd_step=1e-3)
    x = opt.ask()
    opt.close()
    np.testing.assert_allclose(x, [[1.0, 0.5], [0.999, 0.5], [1.0, 0.501]])


@pytest.mark.parametrize(
    "method", ["BFGS", "CG", "Powell", "TNC", "SLSQP", "trust-constr"]
)
def test_scipy_other_methods_stay_in_the_cube(method):
    opt = ScipyOptimizer(2, np.full(2, 0.5), 0, method=method, max_evaluations=600)
    batches = run(
        opt, lambda x: ((x - np.array([0.1, 1.3])) ** 2).sum(axis=1)
    )  # minimum outside the cube
    opt.close()
    assert all(np.all((x >= 0) & (x <= 1)) for x in batches)
    assert opt.best[1] < 0.09 + 1e-3  # constrained minimum at (0.1, 1.0)


def test_scipy_non_finite_losses_are_penalised():
    def loss(x):
        out = shifted_sphere(x)
        out[x[:, 0] < 0.3] = np.nan
        return out

    opt = ScipyOptimizer(2, np.full(2, 0.5), 0, options={"maxfev": 500})
    run(opt, loss)
    opt.close()
    assert opt.failed_value >= 1e10
    assert opt.n_failed > 0
    assert np.isfinite(opt.best[1])
    assert opt.best[0][0] >= 0.3


def test_scipy_pickle_resumes_from_best_point_with_remaining_budget():
    opt = ScipyOptimizer(3, np.full(3, 0.5), 0, max_evaluations=400)
    run(opt, shifted_sphere, max_rounds=40)
    x_best, loss_best = opt.best
    resumed = pickle.loads(pickle.dumps(opt))
    opt.close()
    assert (
        resumed.n_told == 40
        and resumed.best[1] == loss_best
        and resumed.n_restarts == 1
    )
    first = resumed.ask()
    np.testing.assert_array_equal(first[0], x_best)
    resumed.tell(first, shifted_sphere(first))
    run(resumed, shifted_sphere)
    resumed.close()
    assert resumed.n_told <= 400
    assert resumed.best[1] < loss_best
    assert resumed.best[1] < 1e-7


def test_scipy_threads_end():
    before = threading.active_count()
    opt = ScipyOptimizer(2, np.full(2, 0.5), 0, max_evaluations=5)
    run(opt, shifted_sphere)
    assert opt.stop() == {"max_evaluations": 5}
    assert threading.active_count() == before  # budget spent: thread stopped
    opt = ScipyOptimizer(2, np.full(2, 0.5), 0)
    opt.ask()
    assert threading.active_count() == before + 1
    opt.close()
    opt.close()
    assert threading.active_count() == before
    assert opt.ask().shape == (0, 2) and "scipy" in opt.stop()


def test_scipy_unknown_solver_option_is_input_error():
    opt = ScipyOptimizer(2, np.full(2, 0.5), 0, options={"maxfevv": 10})
    with pytest.raises(InputError, match="maxfevv") as info:
        opt.ask()
    assert info.value.key == "options"


# ---- samplers -------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [RandomSampler, LatinHypercubeSampler])
def test_sampler_counts_bounds_and_stop(cls):
    opt = cls(4, np.full(4, 0.5), 11, n_samples=150, batch_size=64)
    batches = run(opt, shifted_sphere)
    assert [len(x) for x in batches] == [64, 64, 22]
    x = np.vstack(batches)
    assert x.shape == (150, 4) and np.all((x >= 0) & (x < 1))
    assert opt.stop() == {"n_samples": 150} and opt.n_told == 150
    assert opt.ask().shape == (0, 4)
    losses = shifted_sphere(x)
    assert opt.best[1] == losses.min()
    np.testing.assert_array_equal(opt.best[0], x[np.argmin(losses)])


@pytest.mark.parametrize("cls", [RandomSampler, LatinHypercubeSampler])
def test_sampler_reproducible_for_any_batch_size(cls):
    a = np.vstack(
        run(cls(3, np.full(3, 0.5), 5, n_samples=50, batch_size=7), shifted_sphere)
    )
    b = np.vstack(
        run(cls(3, np.full(3, 0.5), 5, n_samples=50, batch_size=50), shifted_sphere)
    )
    c = np.vstack(
        run(cls(3, np.full(3, 0.5), 6, n_samples=50, batch_size=7), shifted_sphere)
    )
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_lhs_stratification():
    n = 97
    x = np.vstack(
        run(
            LatinHypercubeSampler(5, np.full(5, 0.5), 3, n_samples=n, batch_size=10),
            shifted_sphere,
        )
    )
    bins = np.floor(x * n).astype(int)
    for j in range(5):
        assert sorted(bins[:, j].tolist()) == list(range(n))


@pytest.mark.parametrize("cls", [RandomSampler, LatinHypercubeSampler])
def test_sampler_include_x0_and_failures(cls):
    x0 = np.array([0.25, 0.75])
    opt = cls(2, x0, 0, n_samples=9, batch_size=4, include_x0=True)
    batches = run(opt, lambda x: np.where(x[:, 0] < 0.5, np.inf, x[:, 0]))
    x = np.vstack(batches)
    assert len(x) == 9
    np.testing.assert_array_equal(x[0], x0)
    assert opt.n_failed == int((x[:, 0] < 0.5).sum())


@pytest.mark.parametrize("cls", [RandomSampler, LatinHypercubeSampler])
def test_sampler_pickle_resume(cls):
    a = cls(3, np.full(3, 0.5), 2, n_samples=40, batch_size=8)
    for _ in range(2):
        x = a.ask()
        a.tell(x, shifted_sphere(x))
    b = pickle.loads(pickle.dumps(a))
    rest_a = np.vstack(run(a, shifted_sphere))
    rest_b = np.vstack(run(b, shifted_sphere))
    np.testing.assert_array_equal(rest_a, rest_b)
    assert b.n_told == 40 and b.best[1] == a.best[1]
