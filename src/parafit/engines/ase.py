"""Fit the numeric constructor parameters of any ASE calculator.

Each parameter vector becomes a fresh calculator
``factory(**{name: value for the fitted parameters}, **fixed)``; every (vector, job)
pair gets its own calculator, so no cache is shared between vectors. Single points,
geometry optimizations and PES scans all run through
:func:`parafit.engines.relax.run_job`. An exception from the factory or the
calculator, or a non-finite result, fails that (vector, job) only: NaN and
``Status.FAILED`` (logged at DEBUG).

``factory`` is a callable (a calculator class or a function returning a calculator) or
a ``"module:attr"`` string such as ``"ase.calculators.morse:MorsePotential"``; strings
and module-level callables keep the engine picklable for worker processes.
"""

import importlib
import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, final

import numpy as np
from ase.calculators.calculator import Calculator

from parafit.engines.base import JobResults, Status, stack_results
from parafit.engines.relax import failed_job_results, run_job, validate_job
from parafit.errors import EngineError, InputError
from parafit.jobs import Job
from parafit.parameters import Parameter, ParameterInterface

__all__ = ["ASEEngine", "ASEFn"]

logger = logging.getLogger(__name__)

_PROPERTIES = ("energy", "forces", "stress", "charges")

CalculatorFactory = Callable[..., Calculator]


def _resolve(factory: CalculatorFactory | str) -> CalculatorFactory:
    """The callable behind ``factory`` (importing a ``"module:attr"`` string)."""
    if not isinstance(factory, str):
        return factory
    module_name, _, attr = factory.partition(":")
    try:
        obj = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise EngineError(
            f"ASEEngine(factory={factory!r}): cannot import it ({err}). Give 'module:attr'."
        ) from err
    if not callable(obj):
        raise EngineError(f"ASEEngine(factory={factory!r}): {obj!r} is not callable.")
    return obj  # type: ignore[return-value]


def _factory_label(factory: CalculatorFactory | str) -> str:
    if isinstance(factory, str):
        return factory
    return f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', repr(factory))}"


def _accepted_keywords(factory: CalculatorFactory) -> set[str] | None:
    """Keyword names ``factory`` accepts, or None if that cannot be known.

    Explicit keyword parameters of the signature, plus ``default_parameters`` of an
    ASE calculator class that takes ``**kwargs`` (so that ``LennardJones(sigmaa=2)``,
    which ASE would silently ignore, is caught).
    """
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = {p.name for p in signature.parameters.values() if p.kind in kinds}
    if any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()
    ):
        defaults = getattr(factory, "default_parameters", None)
        if not isinstance(defaults, Mapping) or not defaults:
            return None
        names |= set(defaults)
    return names


@final
@dataclass(frozen=True, slots=True, init=False)
class ASEEngine:
    """Any ASE calculator whose constructor takes numeric parameters.

    Args:
        factory: calculator class or function, or ``"module:attr"``; called as
            ``factory(**fitted, **fixed)`` once per (parameter vector, job).
        fixed: keyword arguments passed unchanged to every call (cutoffs, ...).
        parameters: fitted parameter name -> initial value (in the calculator's own
            units), used by :meth:`default_interface`.
        properties: what to compute: ``energy`` (always), ``forces``, ``stress``
            (periodic jobs only), ``charges``. Default ``("energy", "forces")``.

    Example:
        >>> from ase import Atoms
        >>> from parafit.jobs import Job
        >>> engine = ASEEngine(
        ...     "ase.calculators.morse:MorsePotential",
        ...     fixed={"rcut1": 6.0, "rcut2": 8.0},
        ...     parameters={"epsilon": 0.5, "r0": 2.0, "rho0": 6.0},
        ... )
        >>> iface = engine.default_interface()
        >>> fn = engine.setup([Job("d", Atoms("H2", positions=[[0, 0, 0], [0, 0, 2.0]]))], iface.names)
        >>> float(fn(iface.values[None])["d"].energy[0])
        -0.5
    """

    factory: CalculatorFactory | str
    fixed: tuple[tuple[str, Any], ...]
    parameters: tuple[tuple[str, float], ...]
    properties: tuple[str, ...]

    is_differentiable: ClassVar[bool] = False

    def __init__(
        self,
        factory: CalculatorFactory | str,
        *,
        fixed: Mapping[str, object] | None = None,
        parameters: Mapping[str, float] | None = None,
        properties: Sequence[str] = ("energy", "forces"),
    ) -> None:
        if isinstance(factory, str):
            if ":" not in factory:
                raise InputError(
                    f"ASEEngine(factory={factory!r}): a factory string must be 'module:attr', "
                    "e.g. 'ase.calculators.morse:MorsePotential'.",
                    key="factory",
                )
        elif not callable(factory):
            raise InputError(
                f"ASEEngine(factory=...): must be callable or 'module:attr'; got {factory!r}.",
                key="factory",
            )
        fixed_items = tuple((str(k), v) for k, v in dict(fixed or {}).items())
        params: list[tuple[str, float]] = []
        for name, value in dict(parameters or {}).items():
            try:
                v = float(value)
            except (TypeError, ValueError):
                v = math.nan
            if not math.isfinite(v):
                raise InputError(
                    f"ASEEngine(parameters=...): initial value of {name!r} must be a finite number; got {value!r}.",
                    key=str(name),
                )
            params.append((str(name), v))
        both = sorted({k for k, _ in fixed_items} & {k for k, _ in params})
        if both:
            raise InputError(
                f"ASEEngine: {both[0]!r} is both fixed and fitted; give it in one of the two.",
                key=both[0],
            )
        if isinstance(properties, str):
            properties = [properties]
        bad = [p for p in properties if p not in _PROPERTIES]
        if bad:
            raise InputError(
                f"ASEEngine(properties=...): unknown property {bad[0]!r}; use some of {', '.join(_PROPERTIES)}.",
                key="properties",
            )
        props = tuple(p for p in _PROPERTIES if p == "energy" or p in properties)
        object.__setattr__(self, "factory", factory)
        object.__setattr__(self, "fixed", fixed_items)
        object.__setattr__(self, "parameters", tuple(params))
        object.__setattr__(self, "properties", props)

    @property
    def implemented_properties(self) -> frozenset[str]:  # type: ignore[override]
        """The ASE properties this engine reports (``energy`` plus ``properties``)."""
        return frozenset(self.properties)

    def default_interface(self) -> ParameterInterface:
        """Parameter interface from ``parameters``: initial values, ranges value ± 20 %.

        Raises:
            InputError: the engine was built without ``parameters``.
        """
        if not self.parameters:
            raise InputError(
                "ASEEngine(parameters=...): give the fitted parameters as name -> initial value "
                "to build a default interface, e.g. {'epsilon': 0.5, 'r0': 2.0}.",
                key="parameters",
            )
        label = _factory_label(self.factory)
        return ParameterInterface(
            [
                Parameter(
                    name=name,
                    value=value,
                    block="ASE",
                    description=f"keyword {name!r} of {label}",
                )
                for name, value in self.parameters
            ],
            model="ase",
        )

    def to_dict(self) -> dict[str, object]:
        """Settings as plain data: ``ASEEngine(**engine.to_dict())`` rebuilds the engine.

        A callable factory is written as ``"module:qualname"`` when that string imports
        back to the same object; otherwise the callable itself is kept.
        """
        factory: object = self.factory
        if not isinstance(factory, str):
            label = _factory_label(factory)
            try:
                if "<" not in label and _resolve(label) is factory:
                    factory = label
            except EngineError:
                pass
        return {
            "factory": factory,
            "fixed": dict(self.fixed),
            "parameters": dict(self.parameters),
            "properties": list(self.properties),
        }

    def setup(self, jobs: Sequence[Job], parameter_names: Sequence[str], /) -> "ASEFn":
        """Check the factory and the names, and return the batched evaluation function.

        Args:
            jobs: the jobs (any task).
            parameter_names: the keyword names fitted, in the column order of the
                parameter batches.

        Raises:
            EngineError: the factory cannot be imported, a name is repeated, also
                fixed, or not accepted by the factory, or a job is malformed.
        """
        factory = _resolve(self.factory)
        names = tuple(str(n) for n in parameter_names)
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise EngineError(f"ASEEngine.setup: parameter {dup!r} is given twice.")
        fixed = dict(self.fixed)
        both = [n for n in names if n in fixed]
        if both:
            raise EngineError(
                f"ASEEngine.setup: parameter {both[0]!r} is fitted and also fixed; remove it from 'fixed'."
            )
        accepted = _accepted_keywords(factory)
        if accepted is not None:
            unknown = [n for n in names if n not in accepted]
            if unknown:
                raise EngineError(
                    f"ASEEngine.setup: {_factory_label(self.factory)} takes no keyword {unknown[0]!r}; "
                    f"it takes {', '.join(sorted(accepted))}."
                )
        for job in jobs:
            validate_job(job)
        return ASEFn(
            factory=self.factory,
            fixed=self.fixed,
            names=names,
            properties=self.properties,
            jobs=tuple(jobs),
        )


@final
@dataclass(frozen=True, slots=True)
class ASEFn:
    """A set-up :class:`ASEEngine`: ``fn(params) -> {job_id: JobResults}`` (picklable
    when the factory is a string or a module-level callable).
    """

    factory: CalculatorFactory | str
    fixed: tuple[tuple[str, Any], ...]
    names: tuple[str, ...]
    properties: tuple[str, ...]
    jobs: tuple[Job, ...]

    def __call__(self, params: np.ndarray, /) -> dict[str, JobResults]:
        """Evaluate every job for a batch of parameter vectors.

        Args:
            params: (n_vectors, n_params) in the order of ``names`` (a single vector of
                shape (n_params,) is taken as a batch of one).

        Returns:
            job id -> JobResults with n_vectors rows; see
            :func:`parafit.engines.relax.run_job` for the fields.
        """
        P = np.asarray(params, dtype=float)
        if P.ndim == 1:
            P = P[None]
        if P.ndim != 2 or P.shape[1] != len(self.names):
            raise ValueError(
                f"params must have shape (n_vectors, {len(self.names)}); got {np.shape(params)}"
            )
        if P.shape[0] == 0:
            raise ValueError("params holds no parameter vector (n_vectors = 0)")
        factory = _resolve(self.factory)
        fixed = dict(self.fixed)
        per_job: dict[str, list[JobResults]] = {job.id: [] for job in self.jobs}
        n_failed = 0
        for row in P:
            kwargs = {name: float(x) for name, x in zip(self.names, row, strict=True)}
            for job in self.jobs:
                try:
                    with np.errstate(all="ignore"):
                        calculator = factory(**kwargs, **fixed)
                except Exception as err:  # a bad parameter vector must not stop a run
                    logger.debug(
                        "ASE factory failed for %s: %s: %s",
                        kwargs,
                        type(err).__name__,
                        err,
                    )
                    result = failed_job_results(job, properties=self.properties)
                else:
                    result = run_job(job, calculator, properties=self.properties)
                n_failed += int((result.status[0] & Status.FAILED) != 0)
                per_job[job.id].append(result)
        if n_failed:
            logger.debug(
                "ASE engine: %d of %d (vector, job) evaluations failed",
                n_failed,
                P.shape[0] * len(self.jobs),
            )
        return {job_id: stack_results(results) for job_id, results in per_job.items()}
