"""Fits with exact gradients: the scipy ask/tell bridge told gradients, and the
optimization task wiring (gradient: auto | exact | finite-difference)."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import TRUE_EPS, TRUE_RMIN, write_lj_problem

from parafit import DataSet, JobCollection
from parafit.engines.lj import LJEngine
from parafit.errors import ConfigError, InputError
from parafit.objective import Objective
from parafit.optimizers.base import GradientOptimizer, make_optimizer
from parafit.optimizers.cma import CMAOptimizer
from parafit.optimizers.scipy import ScipyOptimizer
from parafit.parameters import ParameterInterface
from parafit.recorder import read_evaluations
from parafit.tasks import run_task

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "argon_lj"


def rosenbrock(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rosenbrock on [-2, 2]^2 mapped to [0, 1]^2 and its gradient; minimum at 0.75."""
    u = 4.0 * x - 2.0
    loss = (1.0 - u[:, 0]) ** 2 + 100.0 * (u[:, 1] - u[:, 0] ** 2) ** 2
    du0 = -2.0 * (1.0 - u[:, 0]) - 400.0 * u[:, 0] * (u[:, 1] - u[:, 0] ** 2)
    du1 = 200.0 * (u[:, 1] - u[:, 0] ** 2)
    return loss, 4.0 * np.stack([du0, du1], axis=1)


def drive(opt, fn) -> list[np.ndarray]:
    """ask/tell until stop; fn(x) -> (loss, grad)."""
    asked = []
    while not opt.stop():
        x = opt.ask()
        if len(x) == 0:
            break
        asked.append(x)
        loss, grad = fn(x)
        if opt.wants_gradient:
            opt.tell(x, loss, gradients=grad)
        else:
            opt.tell(x, loss)
    return asked


# ---- the scipy bridge ------------------------------------------------------------------


def test_exact_gradients_ask_one_point_and_converge():
    opt = make_optimizer("l-bfgs-b", n_active=2, x0=np.array([0.3, 0.6]), seed=0)
    assert isinstance(opt, GradientOptimizer)
    assert not opt.wants_gradient  # nothing offered yet: the stencil
    opt.offer_gradients(True)
    assert opt.wants_gradient
    batches = drive(opt, rosenbrock)
    opt.close()
    assert {len(x) for x in batches} == {1}
    assert opt.best[1] < 1e-12  # the stencil test in test_optimizers reaches 1e-4
    np.testing.assert_allclose(opt.best[0], [0.75, 0.75], atol=1e-6)
    assert "scipy" in opt.stop()


def test_tell_needs_gradients_of_the_right_shape():
    opt = ScipyOptimizer(2, np.full(2, 0.5), 0, method="BFGS")
    opt.offer_gradients(True)
    x = opt.ask()
    with pytest.raises(ValueError, match="gradients="):
        opt.tell(x, rosenbrock(x)[0])
    with pytest.raises(ValueError, match="shape"):
        opt.tell(x, rosenbrock(x)[0], gradients=np.zeros((1, 3)))
    opt.tell(x, *rosenbrock(x)[:1], gradients=rosenbrock(x)[1])
    assert opt.n_told == 1
    opt.close()


def test_failed_points_with_exact_gradients_are_penalised():
    def fn(x):
        loss, grad = rosenbrock(x)
        bad = x[:, 0] > 0.9
        loss[bad], grad[bad] = np.inf, np.nan
        return loss, grad

    opt = ScipyOptimizer(2, np.array([0.6, 0.3]), 0, method="L-BFGS-B")
    opt.offer_gradients(True)
    drive(opt, fn)  # the first line search steps into the failing region
    opt.close()
    assert opt.n_failed >= 1
    assert opt.best[1] < 1e-10 and opt.failed_value >= 1e10


@pytest.mark.parametrize(
    "kwargs, offered, wants",
    [
        ({"method": "L-BFGS-B"}, False, False),
        ({"method": "L-BFGS-B", "gradient": "finite-difference"}, True, False),
        ({"method": "L-BFGS-B", "gradient": "EXACT"}, True, True),
        ({"method": "Nelder-Mead", "gradient": "auto"}, True, False),
    ],
)
def test_gradient_setting_resolution(kwargs, offered, wants):
    opt = ScipyOptimizer(2, np.full(2, 0.5), 0, **kwargs)
    opt.offer_gradients(offered)
    assert opt.wants_gradient is wants
    assert len(opt.ask()) == (1 if wants or kwargs["method"] == "Nelder-Mead" else 3)
    with pytest.raises(RuntimeError, match="before the first ask"):
        opt.offer_gradients(offered)  # scipy is running
    restored = pickle.loads(pickle.dumps(opt))
    opt.close()
    assert restored.wants_gradient is wants
    restored.offer_gradients(offered)  # allowed again after unpickling
    assert restored.wants_gradient is wants


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"gradient": "analytic"}, "must be one of"),
        ({"method": "Nelder-Mead", "gradient": "exact"}, "needs a gradient method"),
    ],
)
def test_bad_gradient_settings(kwargs, fragment):
    with pytest.raises(InputError, match=fragment) as info:
        make_optimizer("scipy", n_active=2, x0=np.full(2, 0.5), seed=0, settings=kwargs)
    assert info.value.key == "gradient"


def test_exact_without_a_differentiable_engine_is_an_input_error():
    opt = ScipyOptimizer(2, np.full(2, 0.5), 0, method="L-BFGS-B", gradient="exact")
    with pytest.raises(InputError, match="differentiable engine") as info:
        opt.offer_gradients(False)
    assert info.value.key == "gradient"
    assert not isinstance(CMAOptimizer(2, np.full(2, 0.5), 0), GradientOptimizer)


# ---- fits on the argon example (Aziz HFDID1 reference) --------------------------------


def fit(objective: Objective, gradient: str) -> ScipyOptimizer:
    opt = ScipyOptimizer(
        objective.n_active,
        objective.x0_scaled(),
        0,
        method="L-BFGS-B",
        gradient=gradient,
        options={"ftol": 1e-15, "gtol": 1e-9},
        max_evaluations=2000,
    )
    opt.offer_gradients(objective.is_differentiable)
    drive(opt, objective.value_and_grad)
    opt.close()
    return opt


def test_lbfgsb_with_exact_gradients_reaches_the_stencil_optimum_in_fewer_evaluations():
    jobs = JobCollection.load(EXAMPLE / "job_collection.yaml")
    ds = DataSet.load(EXAMPLE / "training_set.yaml")
    iface = ParameterInterface.load(EXAMPLE / "parameter_interface.yaml")
    objective = Objective(LJEngine(["Ar"], cutoff=12.0, shift=False), iface, jobs, ds)
    exact = fit(objective, "exact")
    stencil = fit(objective, "finite-difference")
    assert "scipy" in exact.stop() and "scipy" in stencil.stop()
    assert exact.best[1] <= stencil.best[1] * (1 + 1e-9)
    np.testing.assert_allclose(exact.best[0], stencil.best[0], atol=1e-4)
    assert exact.n_told * 2 < stencil.n_told  # one point per gradient, not three
    loss, grad = objective.value_and_grad(exact.best[0][None])
    assert np.abs(grad).max() < 1e-3 * loss[0]  # a stationary point


# ---- the optimization task --------------------------------------------------------------


def test_task_uses_exact_gradients_by_default_and_records_each_point(tmp_path: Path):
    runs = {}
    for gradient in ("auto", "finite-difference"):
        inp = write_lj_problem(
            tmp_path / gradient,
            start=(0.0098, 3.9),
            optimizers=[
                {"type": "scipy", "method": "L-BFGS-B", "gradient": gradient},
                {"type": "cma", "sigma0": 0.2, "popsize": 6},
            ],
            exit_conditions={"max_evaluations": 400},
        )
        result = run_task(inp, tmp_path / f"out_{gradient}")
        data = read_evaluations(tmp_path / f"out_{gradient}" / "optimization")
        runs[gradient] = (result, data)
    exact, data = runs["auto"]
    assert abs(exact.interface["Ar.Ar:rmin"].value / TRUE_RMIN - 1) < 1e-6
    assert abs(exact.interface["Ar.Ar:eps"].value / TRUE_EPS - 1) < 1e-6
    scipy_rows = data["optimizer"] == 0
    cma_rows = data["optimizer"] == 1
    assert scipy_rows.sum() < 60 and cma_rows.sum() > 0
    fd_data = runs["finite-difference"][1]
    # the stencil spends n_active + 1 evaluations per gradient
    assert (fd_data["optimizer"] == 0).sum() > 2 * scipy_rows.sum()


def test_task_with_workers_and_exact_gradients(tmp_path: Path):
    inp = write_lj_problem(
        tmp_path / "in",
        start=(0.0098, 3.9),
        optimizers=[
            {"type": "scipy", "method": "L-BFGS-B", "gradient": "exact"},
            {"type": "random", "n_samples": 8, "batch_size": 4},
        ],
        exit_conditions={"max_evaluations": 60},
        extra_config={"parallel": {"workers": 2}},
    )
    result = run_task(inp, tmp_path / "out")
    assert abs(result.interface["Ar.Ar:rmin"].value / TRUE_RMIN - 1) < 1e-5


def test_task_exact_gradient_without_differentiable_engine_is_a_config_error(
    tmp_path: Path,
):
    inp = write_lj_problem(
        tmp_path / "in",
        optimizers=[{"type": "scipy", "method": "L-BFGS-B", "gradient": "exact"}],
    )
    config = yaml.safe_load(inp.read_text())
    config["engine"] = {
        "type": "ase",
        "factory": "ase.calculators.lj:LennardJones",
        "fixed": {"rc": 9.0},
        "parameters": {"epsilon": 0.0104, "sigma": 3.4},
    }
    inp.write_text(yaml.safe_dump(config))
    from parafit.engines.ase import ASEEngine

    ASEEngine(
        "ase.calculators.lj:LennardJones",
        fixed={"rc": 9.0},
        parameters={"epsilon": 0.0104, "sigma": 3.4},
    ).default_interface().save(tmp_path / "in" / "parameter_interface.yaml")
    with pytest.raises(ConfigError, match="differentiable engine") as info:
        run_task(inp, tmp_path / "out")
    assert info.value.key == "optimizers[0].gradient"
    assert not (tmp_path / "out").exists()  # checked before anything is written
