"""Turn a validated :class:`~parafit.config.Config` into the objects a task runs.

Everything here reads and checks input; nothing writes. A task calls
:func:`build_problem` before it creates any results directory, so bad input leaves
no half-written results.
"""

import inspect
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parafit.config import Config
from parafit.errors import ConfigError, InputError, ResultsError

__all__ = ["Problem", "build_engine", "build_problem", "prepare_output"]


@dataclass(frozen=True)
class Problem:
    """The loaded inputs of a task."""

    config: Config
    interface: Any
    jobs: Any
    training_set: Any
    validation_set: Any
    engine: Any
    objective: Any


def build_engine(settings: dict[str, Any], *, source: Path | None = None) -> Any:
    """Instantiate ``engine: {type: ..., **settings}`` from the engine registry."""
    from parafit.engines.base import ENGINES
    from parafit.errors import UnknownNameError

    settings = dict(settings)
    name = str(settings.pop("type"))
    ffield = settings.get("ffield")
    if isinstance(ffield, str) and ffield and source is not None:
        path = Path(ffield).expanduser()
        if not path.is_absolute():  # relative to the input file, like other paths
            settings["ffield"] = str(Path(source).parent / path)
    try:
        factory = ENGINES.get(name)
    except UnknownNameError as err:
        raise ConfigError(
            f"key engine.type: {err}", path=source, key="engine.type"
        ) from err
    try:
        sig = inspect.signature(factory)
        params = sig.parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            unknown = [k for k in settings if k not in params]
            if unknown:
                allowed = [k for k in params if k != "self"]
                raise ConfigError(
                    f"key engine.{unknown[0]}: engine {name!r} has no setting {unknown[0]!r}; allowed: {', '.join(allowed)}.",
                    path=source,
                    key=f"engine.{unknown[0]}",
                )
    except (TypeError, ValueError) as err:
        if isinstance(err, InputError):
            raise
    try:
        return factory(**settings)
    except InputError as err:
        raise ConfigError(
            f"key engine: {err.message}", path=source, key="engine"
        ) from err
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"key engine: cannot build engine {name!r}: {err}",
            path=source,
            key="engine",
        ) from err


def build_problem(config: Config) -> Problem:
    """Load every input file, check cross references, set up the engine and objective."""
    from parafit.constraints import parse_constraint
    from parafit.dataset import DataSet
    from parafit.jobs import JobCollection
    from parafit.objective import Objective
    from parafit.parameters import ParameterInterface

    interface = ParameterInterface.load(config.parameter_interface)
    jobs = JobCollection.load(config.job_collection)
    if config.frozen_geometries:
        jobs = jobs.with_frozen_geometries()
    training = DataSet.load(config.training_set.path)
    validation = (
        None
        if config.validation_set is None
        else DataSet.load(config.validation_set.path)
    )
    engine = build_engine(config.engine, source=config.source)
    constraints = []
    for i, text in enumerate(config.constraints):
        try:
            constraints.append(parse_constraint(text, interface))
        except InputError as err:
            raise ConfigError(
                f"key constraints[{i}]: {err.message}",
                path=config.source,
                key=f"constraints[{i}]",
            ) from err
    objective = Objective(
        engine,
        interface,
        jobs,
        training,
        validation,
        loss=config.training_set.loss,
        validation_loss=None
        if config.validation_set is None
        else config.validation_set.loss,
        constraints=constraints,
    )
    return Problem(config, interface, jobs, training, validation, engine, objective)


def prepare_output(output: Path, *, resume: bool, overwrite: bool) -> None:
    """Check the results directory: never overwrite a non-empty one silently."""
    output = Path(output)
    if resume:
        if not output.is_dir():
            raise ResultsError(f"{output}: nothing to resume (directory not found).")
        return
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        if not overwrite:
            raise ResultsError(
                f"{output} exists and is not empty; pass --overwrite (CLI) or overwrite=True (API) to replace it, "
                "or --resume to continue a run."
            )
        if output.is_dir():
            shutil.rmtree(output)
        else:
            output.unlink()


def copy_inputs(config: Config, output: Path) -> None:
    """Copy every input file into ``settings_and_initial_data/``."""
    dest = Path(output) / "settings_and_initial_data"
    dest.mkdir(parents=True, exist_ok=True)
    if config.source is not None:
        shutil.copy2(config.source, dest / Path(config.source).name)
    for key, path in config.paths().items():
        target = dest / f"{key}{''.join(Path(path).suffixes) or '.yaml'}"
        shutil.copy2(path, target)
