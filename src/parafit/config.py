"""The input file ``parafit.yaml``: schema, validation and loading.

Validated with pydantic at load (``extra="forbid"``): an unknown key, a wrong type or
a missing file is one :class:`~parafit.errors.ConfigError` naming the key and the
file, before any work starts. Paths are relative to the input file.

Example::

    task: optimization
    job_collection: job_collection.yaml
    parameter_interface: parameter_interface.yaml
    engine: {type: lj, elements: [Ar], cutoff: 8.5, shift: true}
    training_set: training_set.yaml          # or {path: ..., loss: sse}
    validation_set: {path: validation_set.yaml, every: 10, early_stopping_patience: 500}
    optimizers: [{type: cma, sigma0: 0.3}]
    exit_conditions: {max_evaluations: 2000, time_limit: 600, target_loss: 1e-6}
    constraints: ["p['Ar.Ar:rmin'] > 3.0"]
    frozen_geometries: false                 # true: geometry optimizations as single points
    parallel: {workers: 1}
    seed: 0
"""

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from parafit.errors import ConfigError

__all__ = [
    "CheckpointConfig",
    "Config",
    "DataSetConfig",
    "ExitConditions",
    "LoggingConfig",
    "ParallelConfig",
    "SensitivityConfig",
    "load_config",
]

LossName = Literal["sse", "rss", "sae", "mae", "mad", "rmse", "rmsd"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSetConfig(_Strict):
    """A data set file with its loss.

    Attributes:
        path: data-set YAML (ParAMS or parafit flavour).
        loss: ``sse`` (default), ``sae``, ``mae`` or ``rmse``.
        every: evaluate this set every N evaluations (validation set; default 10).
        early_stopping_patience: stop when the validation loss has not improved for
            this many evaluations (validation set only; default: no early stopping).
    """

    path: Path
    loss: LossName = "sse"
    every: int = Field(10, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)


class ExitConditions(_Strict):
    """When the whole run stops (whichever comes first; all optimizers stopping also ends it).

    Attributes:
        max_evaluations: total loss evaluations, including the initial point.
        time_limit: wall time [s], summed over resumed sessions.
        target_loss: stop when the best training loss is at or below this.
    """

    max_evaluations: int | None = Field(None, ge=1)
    time_limit: float | None = Field(None, gt=0)
    target_loss: float | None = None


class ParallelConfig(_Strict):
    """Attributes:
    workers: local worker processes evaluating chunks of each batch (1 = in process).
    """

    workers: int = Field(1, ge=1)


class CheckpointConfig(_Strict):
    """Attributes:
    every_seconds: write ``checkpoint.pkl`` at most this often (0 = every batch).
    """

    every_seconds: float = Field(30.0, ge=0)


class LoggingConfig(_Strict):
    """How often the heavier outputs are refreshed.

    Attributes:
        stats_every: log per-extractor MAE/RMSE every N evaluations (and at each new best).
        snapshot_every_seconds: refresh ``best/`` and ``latest/`` at most this often.
        save_residuals: keep every evaluation's training residuals in evaluations.h5.
    """

    stats_every: int = Field(10, ge=1)
    snapshot_every_seconds: float = Field(5.0, ge=0)
    save_residuals: bool = False


class SensitivityConfig(_Strict):
    """The ``sensitivity:`` block (task ``sensitivity``; see docs/sensitivity.md).

    Attributes:
        run_sampling: draw and evaluate new samples (else load ``samples_directory``).
        number_samples: samples to draw, uniform within the active ranges.
        samples_directory: results of an earlier run to analyse when not sampling.
        analyze: ``training_set`` or ``validation_set`` loss.
        repeats: subsets drawn from the samples (mean and std over them).
        samples_per_repeat: samples per subset.
        with_replacement: draw subsets with replacement.
        filter_infinite: drop samples with a non-finite loss.
        parameters_kernel: ``{type: gaussian, sigma: 0.3}``.
        loss_kernel: ``{type: conjunctive_gaussian, gamma: 0.3}`` or ``{type: gaussian, sigma: ...}``.
        estimator: ``u`` (unbiased) or ``v`` (biased).
        normalization: ``clip`` (sensitivities in [0, 1]) or ``raw``.
        save_residuals: keep every sample's residuals (needed to reweight later).
        reweight: recompute the losses from stored residuals with the current data
            set's weights, sigmas, references and loss (``true``), or with balanced
            weights (``balanced``); no engine runs.
        p_values: permutations per repeat for p-values (0 = off).
        batch_size: samples evaluated per batch while sampling.
        seed: seed of sampling and subsets (default: the top-level ``seed``).
    """

    run_sampling: bool = True
    number_samples: int = Field(1000, ge=4)
    samples_directory: Path | None = None
    analyze: Literal["training_set", "validation_set"] = "training_set"
    repeats: int = Field(5, ge=1)
    samples_per_repeat: int = Field(500, ge=4)
    with_replacement: bool = False
    filter_infinite: bool = True
    parameters_kernel: dict[str, Any] = Field(
        default_factory=lambda: {"type": "gaussian", "sigma": 0.3}
    )
    loss_kernel: dict[str, Any] = Field(
        default_factory=lambda: {"type": "conjunctive_gaussian", "gamma": 0.3}
    )
    estimator: Literal["u", "v"] = "u"
    normalization: Literal["clip", "raw"] = "clip"
    save_residuals: bool = False
    reweight: bool | Literal["balanced"] = False
    p_values: int = Field(0, ge=0)
    batch_size: int = Field(100, ge=1)
    seed: int | None = None

    @field_validator("parameters_kernel", "loss_kernel")
    @classmethod
    def _kernel(cls, v: dict[str, Any]) -> dict[str, Any]:
        from parafit.errors import ParafitError
        from parafit.sensitivity.kernels import make_kernel

        try:
            make_kernel(v)
        except ParafitError as err:
            raise ValueError(str(err)) from None
        return v


#: Keys every task but a sensitivity analysis of existing samples needs.
_NEEDED = ("job_collection", "parameter_interface", "engine", "training_set")


class Config(_Strict):
    """The whole input file; see the module docstring."""

    task: Literal["optimization", "single_point", "sensitivity"] = "optimization"
    job_collection: Path | None = None
    parameter_interface: Path | None = None
    engine: dict[str, Any] | None = None
    training_set: DataSetConfig | None = None
    validation_set: DataSetConfig | None = None
    optimizers: list[dict[str, Any]] = Field(default_factory=lambda: [{"type": "cma"}])
    exit_conditions: ExitConditions = ExitConditions()
    constraints: list[str] = Field(default_factory=list)
    frozen_geometries: bool = False
    parallel: ParallelConfig = ParallelConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    logging: LoggingConfig = LoggingConfig()
    sensitivity: SensitivityConfig = SensitivityConfig()
    seed: int = 0
    source: Path | None = Field(None, exclude=True)

    @field_validator("training_set", "validation_set", mode="before")
    @classmethod
    def _path_shorthand(cls, v: Any) -> Any:
        return {"path": v} if isinstance(v, str | Path) else v

    @field_validator("engine")
    @classmethod
    def _engine_type(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and "type" not in v:
            raise ValueError("engine needs a 'type' (e.g. lj, ase)")
        return v

    @field_validator("optimizers")
    @classmethod
    def _optimizer_types(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not v:
            raise ValueError("give at least one optimizer")
        for i, o in enumerate(v):
            if "type" not in o:
                raise ValueError(
                    f"optimizers[{i}] needs a 'type' (e.g. cma, scipy, random, lhs)"
                )
        return v

    @property
    def needs_problem(self) -> bool:
        """Whether the task runs an engine (all but analysing existing samples)."""
        return self.task != "sensitivity" or self.sensitivity.run_sampling

    def paths(self) -> dict[str, Path]:
        """The input files named in this config (key -> absolute path)."""
        out: dict[str, Path] = {}
        if self.job_collection is not None:
            out["job_collection"] = self.job_collection
        if self.parameter_interface is not None:
            out["parameter_interface"] = self.parameter_interface
        if self.training_set is not None:
            out["training_set"] = self.training_set.path
        if self.validation_set is not None:
            out["validation_set"] = self.validation_set.path
        return out


def _key_line(text: str, key_path: tuple[Any, ...]) -> int | None:
    """1-based line of a (top-level) key in YAML text, if it can be found."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    for part in key_path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    node = v
                    line = k.start_mark.line + 1
                    break
            else:
                return None
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return None
    return line if key_path else None


def load_config(path: str | Path) -> Config:
    """Read and validate ``parafit.yaml``; paths become absolute, files must exist.

    Raises:
        ConfigError: one clear error naming the file, line and key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"input file not found: {str(path)!r}.", path=path)
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise ConfigError(
            f"malformed YAML: {getattr(err, 'problem', None) or err}",
            path=path,
            line=None if mark is None else mark.line + 1,
        ) from err
    if not isinstance(raw, dict):
        raise ConfigError(
            "the input file must be a mapping of keys (task, job_collection, ...).",
            path=path,
        )
    try:
        config = Config.model_validate(raw)
    except ValidationError as err:
        problems = []
        for problem in err.errors():
            loc = tuple(problem["loc"])
            key = ".".join(str(p) for p in loc)
            msg = problem["msg"]
            if problem["type"] == "extra_forbidden":
                allowed = _allowed_keys(loc[:-1])
                msg = f"unknown key {loc[-1]!r}" + (
                    f" (allowed: {', '.join(allowed)})" if allowed else ""
                )
            elif problem["type"] == "missing":
                msg = f"missing required key {loc[-1]!r}"
            problems.append((loc, key, msg))
        loc, key, _ = problems[0]
        text_all = "; ".join(f"key {k}: {m}" for _, k, m in problems)
        raise ConfigError(
            text_all + ".", path=path, line=_key_line(text, loc), key=key
        ) from err
    if config.needs_problem:
        missing = [k for k in _NEEDED if getattr(config, k) is None]
        if missing:
            raise ConfigError(
                "; ".join(
                    f"key {k}: missing required key {k!r} (task {config.task})"
                    for k in missing
                )
                + ".",
                path=path,
                key=missing[0],
            )
    elif config.sensitivity.samples_directory is None:
        raise ConfigError(
            "key sensitivity.samples_directory: give the samples to analyse when "
            "run_sampling is false (a results directory of an earlier run).",
            path=path,
            line=_key_line(text, ("sensitivity",)),
            key="sensitivity.samples_directory",
        )
    if config.task == "sensitivity" and config.needs_problem:
        if (
            config.sensitivity.analyze == "validation_set"
            and config.validation_set is None
        ):
            raise ConfigError(
                "key sensitivity.analyze: 'validation_set' needs a validation_set.",
                path=path,
                line=_key_line(text, ("sensitivity", "analyze")),
                key="sensitivity.analyze",
            )
    base = path.parent.resolve()
    updates: dict[str, Any] = {"source": path.resolve()}
    for key in ("job_collection", "parameter_interface"):
        if getattr(config, key) is not None:
            updates[key] = (base / getattr(config, key)).resolve()
    if config.training_set is not None:
        updates["training_set"] = config.training_set.model_copy(
            update={"path": (base / config.training_set.path).resolve()}
        )
    if config.sensitivity.samples_directory is not None:
        updates["sensitivity"] = config.sensitivity.model_copy(
            update={
                "samples_directory": (
                    base / config.sensitivity.samples_directory
                ).resolve()
            }
        )
    if config.validation_set is not None:
        updates["validation_set"] = config.validation_set.model_copy(
            update={"path": (base / config.validation_set.path).resolve()}
        )
    config = config.model_copy(update=updates)
    for key, file in config.paths().items():
        if not file.exists():
            lk = (
                (key,)
                if key in raw and not isinstance(raw[key], dict)
                else (key, "path")
            )
            raise ConfigError(
                f"key {key}: file not found: {str(file)!r} (paths are relative to the input file).",
                path=path,
                line=_key_line(text, lk),
                key=key,
            )
    samples = config.sensitivity.samples_directory
    if (
        samples is not None
        and not config.sensitivity.run_sampling
        and not samples.is_dir()
    ):
        raise ConfigError(
            f"key sensitivity.samples_directory: directory not found: {str(samples)!r} "
            "(paths are relative to the input file).",
            path=path,
            line=_key_line(text, ("sensitivity", "samples_directory")),
            key="sensitivity.samples_directory",
        )
    return config


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        candidates = [
            a
            for a in getattr(ann, "__args__", (ann,))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not candidates:
            return []
        model = candidates[0]
    return [k for k in model.model_fields if k != "source"]
