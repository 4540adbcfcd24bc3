"""Parameter interface: the ordered table of a model's parameters.

A :class:`Parameter` has a name, a value, a range ``(min, max)``, an active flag and
metadata (atoms, block, category, description, equation, sensitivity). A
:class:`ParameterInterface` is an ordered, immutable collection of them with vector
views of all and of the active values, and the linear map of active values to and
from the unit cube ``[0, 1]^n_active`` in which optimizers work.

The YAML file has one record per parameter with exactly the keys of
:data:`YAML_KEYS`; reading and writing it is an exact round trip.
"""

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from parafit.errors import FormatError, InputError

__all__ = ["YAML_KEYS", "Parameter", "ParameterInterface", "default_range"]

YAML_KEYS: tuple[str, ...] = (
    "name",
    "value",
    "range",
    "is_active",
    "atoms",
    "block",
    "block_index",
    "category",
    "description",
    "equation",
    "sensitivity",
)


def default_range(value: float) -> tuple[float, float]:
    """Default range of a parameter: value ± 20 %, or ``(-1, 1)`` when the value is 0."""
    if value == 0:
        return (-1.0, 1.0)
    lo, hi = 0.8 * value, 1.2 * value
    return (min(lo, hi), max(lo, hi))


@dataclass(frozen=True, slots=True)
class Parameter:
    """One model parameter.

    Attributes:
        name: unique name, e.g. ``"Ar.Ar:eps"`` or ``"H.O:p_bo2"``.
        value: current value, in the model's own units.
        range: ``(min, max)`` searched by optimizers; ``min <= value <= max`` is not
            required, but ``min < max`` is.
        is_active: whether optimizers change this parameter.
        atoms: element symbols the parameter belongs to (may be empty).
        block: model block, e.g. ``"LJ"`` or ReaxFF ``"BND"``.
        block_index: position inside the block (model specific), or None.
        category: free category, e.g. ``"standard"``.
        description: human description.
        equation: formula or equation reference.
        sensitivity: HSIC sensitivity filled by a sensitivity run, else None.
    """

    name: str
    value: float
    range: tuple[float, float] = (math.nan, math.nan)
    is_active: bool = True
    atoms: tuple[str, ...] = ()
    block: str = ""
    block_index: int | None = None
    category: str = ""
    description: str = ""
    equation: str = ""
    sensitivity: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(
                f"parameter name must be a non-empty string; got {self.name!r}."
            )
        value = float(self.value)
        if not math.isfinite(value):
            raise InputError(
                f"parameter {self.name!r}: value must be finite; got {self.value!r}.",
                key=self.name,
            )
        object.__setattr__(self, "value", value)
        rng = self.range
        if rng is None or (
            isinstance(rng, tuple)
            and len(rng) == 2
            and all(isinstance(v, float) and math.isnan(v) for v in rng)
        ):
            rng = default_range(value)
        if not isinstance(rng, Sequence) or isinstance(rng, str) or len(rng) != 2:
            raise InputError(
                f"parameter {self.name!r}: range must be two numbers; got {rng!r}.",
                key=self.name,
            )
        lo, hi = (float(rng[0]), float(rng[1]))
        if not (math.isfinite(lo) and math.isfinite(hi)) or not lo < hi:
            raise InputError(
                f"parameter {self.name!r}: range must be two finite numbers with min < max; got {list(rng)!r}.",
                key=self.name,
            )
        object.__setattr__(self, "range", (lo, hi))
        if not isinstance(self.is_active, bool | np.bool_):
            raise InputError(
                f"parameter {self.name!r}: is_active must be true or false; got {self.is_active!r}.",
                key=self.name,
            )
        object.__setattr__(self, "is_active", bool(self.is_active))
        if isinstance(self.atoms, str):
            raise InputError(
                f"parameter {self.name!r}: atoms must be a list of element symbols; got {self.atoms!r}.",
                key=self.name,
            )
        object.__setattr__(self, "atoms", tuple(str(a) for a in self.atoms))
        if self.block_index is not None:
            if isinstance(self.block_index, bool) or not isinstance(
                self.block_index, int | np.integer
            ):
                raise InputError(
                    f"parameter {self.name!r}: block_index must be an integer or null; got {self.block_index!r}.",
                    key=self.name,
                )
            object.__setattr__(self, "block_index", int(self.block_index))
        if self.sensitivity is not None:
            object.__setattr__(self, "sensitivity", float(self.sensitivity))

    @property
    def metadata(self) -> dict[str, Any]:
        """The metadata fields as a dict (atoms, block, block_index, category, ...)."""
        return {
            "atoms": list(self.atoms),
            "block": self.block,
            "block_index": self.block_index,
            "category": self.category,
            "description": self.description,
            "equation": self.equation,
            "sensitivity": self.sensitivity,
        }

    def to_dict(self) -> dict[str, Any]:
        """The YAML record, with exactly the keys of :data:`YAML_KEYS`."""
        return {
            "name": self.name,
            "value": self.value,
            "range": [self.range[0], self.range[1]],
            "is_active": self.is_active,
            "atoms": list(self.atoms),
            "block": self.block,
            "block_index": self.block_index,
            "category": self.category,
            "description": self.description,
            "equation": self.equation,
            "sensitivity": self.sensitivity,
        }

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], *, where: str = "") -> "Parameter":
        """Build from a YAML record; unknown or missing keys raise InputError."""
        prefix = f"{where}: " if where else ""
        if not isinstance(record, Mapping):
            raise FormatError(
                f"{prefix}a parameter record must be a mapping; got {record!r}."
            )
        unknown = set(record) - set(YAML_KEYS)
        if unknown:
            raise FormatError(
                f"{prefix}unknown key(s) {sorted(unknown)} in parameter record; allowed: {', '.join(YAML_KEYS)}.",
                key=str(record.get("name", "")),
            )
        for required in ("name", "value"):
            if required not in record:
                raise FormatError(
                    f"{prefix}parameter record lacks {required!r}.",
                    key=str(record.get("name", "")),
                )
        rng = record.get("range")
        try:
            return cls(
                name=record["name"],
                value=record["value"],
                range=(math.nan, math.nan) if rng is None else tuple(rng),  # type: ignore[arg-type]
                is_active=record.get("is_active", True),
                atoms=record.get("atoms") or (),
                block=record.get("block") or "",
                block_index=record.get("block_index"),
                category=record.get("category") or "",
                description=record.get("description") or "",
                equation=record.get("equation") or "",
                sensitivity=record.get("sensitivity"),
            )
        except (TypeError, ValueError) as err:
            if isinstance(err, InputError):
                raise FormatError(f"{prefix}{err.message}", key=err.key) from err
            raise FormatError(
                f"{prefix}bad parameter record {dict(record)!r}: {err}."
            ) from err


@dataclass(frozen=True, slots=True)
class ParameterInterface:
    """Ordered, immutable table of :class:`Parameter` with unique names.

    Args:
        parameters: the parameters, in order.
        model: a free label of the model the parameters belong to (e.g. ``"lj"``).

    Example:
        >>> iface = ParameterInterface([Parameter("a", 1.0), Parameter("b", 2.0, is_active=False)])
        >>> iface.active_names
        ('a',)
        >>> iface.to_scaled(np.array([1.0]))
        array([0.5])
    """

    parameters: tuple[Parameter, ...]
    model: str = ""
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __init__(self, parameters: Iterable[Parameter], model: str = "") -> None:
        params = tuple(parameters)
        index: dict[str, int] = {}
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"ParameterInterface takes Parameter objects; got {type(p).__name__}."
                )
            if p.name in index:
                raise InputError(f"duplicate parameter name {p.name!r}.", key=p.name)
            index[p.name] = i
        object.__setattr__(self, "parameters", params)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "_index", index)

    # ---- container protocol -------------------------------------------------------
    def __len__(self) -> int:
        return len(self.parameters)

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self.parameters)

    def __getitem__(self, key: int | str) -> Parameter:
        if isinstance(key, str):
            return self.parameters[self.index(key)]
        return self.parameters[key]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        """Position of parameter ``name``; unknown names raise InputError with a suggestion."""
        try:
            return self._index[name]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(name, list(self._index), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise InputError(f"unknown parameter {name!r}{hint}", key=name) from None

    # ---- vector views -------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def values(self) -> np.ndarray:
        """All values, shape (n_params,)."""
        return np.array([p.value for p in self.parameters], dtype=float)

    @property
    def ranges(self) -> np.ndarray:
        """All ranges, shape (n_params, 2)."""
        return np.array([p.range for p in self.parameters], dtype=float).reshape(-1, 2)

    @property
    def is_active(self) -> np.ndarray:
        """Boolean mask of active parameters, shape (n_params,)."""
        return np.array([p.is_active for p in self.parameters], dtype=bool)

    @property
    def active_indices(self) -> np.ndarray:
        """Indices of the active parameters, shape (n_active,)."""
        return np.flatnonzero(self.is_active)

    @property
    def n_active(self) -> int:
        return int(self.is_active.sum())

    @property
    def active_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters if p.is_active)

    @property
    def active_values(self) -> np.ndarray:
        """Values of the active parameters, shape (n_active,)."""
        return self.values[self.active_indices]

    @property
    def active_ranges(self) -> np.ndarray:
        """Ranges of the active parameters, shape (n_active, 2)."""
        return self.ranges[self.active_indices]

    # ---- scaling ------------------------------------------------------------------
    def to_scaled(self, active_values: np.ndarray) -> np.ndarray:
        """Map active values to [0, 1]: ``(x - min) / (max - min)``; shape (..., n_active)."""
        r = self.active_ranges
        return (np.asarray(active_values, dtype=float) - r[:, 0]) / (r[:, 1] - r[:, 0])

    def from_scaled(self, x_scaled: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_scaled`; shape (..., n_active) -> (..., n_active)."""
        r = self.active_ranges
        return r[:, 0] + np.asarray(x_scaled, dtype=float) * (r[:, 1] - r[:, 0])

    def full_values(self, active_values: np.ndarray) -> np.ndarray:
        """All values with the active ones replaced; (..., n_active) -> (..., n_params)."""
        active_values = np.asarray(active_values, dtype=float)
        out = np.broadcast_to(
            self.values, active_values.shape[:-1] + (len(self),)
        ).copy()
        out[..., self.active_indices] = active_values
        return out

    # ---- functional updates -------------------------------------------------------
    def with_values(
        self, values: np.ndarray | Sequence[float] | Mapping[str, float]
    ) -> "ParameterInterface":
        """A copy with new values: all (n_params,), active (n_active,), or a name->value map."""
        if isinstance(values, Mapping):
            new = list(self.parameters)
            for name, v in values.items():
                i = self.index(name)
                new[i] = dataclasses.replace(new[i], value=float(v))
            return ParameterInterface(new, model=self.model)
        arr = np.asarray(values, dtype=float).reshape(-1)
        if arr.size == len(self):
            full = arr
        elif arr.size == self.n_active:
            full = self.full_values(arr)
        else:
            raise InputError(
                f"with_values got {arr.size} values; expected {len(self)} (all) or {self.n_active} (active)."
            )
        return ParameterInterface(
            [
                dataclasses.replace(p, value=float(v))
                for p, v in zip(self.parameters, full, strict=True)
            ],
            model=self.model,
        )

    def with_active(self, names: Iterable[str]) -> "ParameterInterface":
        """A copy where exactly the parameters in ``names`` are active."""
        wanted = set(names)
        for name in wanted:
            self.index(name)
        return ParameterInterface(
            [
                dataclasses.replace(p, is_active=p.name in wanted)
                for p in self.parameters
            ],
            model=self.model,
        )

    def replace(self, name: str, **changes: Any) -> "ParameterInterface":
        """A copy with the fields of one parameter changed."""
        new = list(self.parameters)
        i = self.index(name)
        new[i] = dataclasses.replace(new[i], **changes)
        return ParameterInterface(new, model=self.model)

    # ---- YAML ---------------------------------------------------------------------
    def to_records(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.parameters]

    def to_yaml(self) -> str:
        """YAML text: a header comment, ``model``, and one record per parameter."""
        doc = {"model": self.model, "parameters": self.to_records()}
        body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=1000)
        return "# parafit parameter interface\n" + body

    @classmethod
    def from_yaml(
        cls, text: str, *, path: str | Path | None = None
    ) -> "ParameterInterface":
        """Parse YAML text (our format, or a plain list of records)."""
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as err:
            line = getattr(getattr(err, "problem_mark", None), "line", None)
            raise FormatError(
                f"malformed YAML: {getattr(err, 'problem', err)}",
                path=path,
                line=None if line is None else line + 1,
            ) from err
        model = ""
        if isinstance(doc, Mapping):
            unknown = set(doc) - {"model", "parameters"}
            if unknown:
                raise FormatError(
                    f"unknown top-level key(s) {sorted(unknown)}; expected 'model' and 'parameters'.",
                    path=path,
                )
            model = str(doc.get("model") or "")
            records = doc.get("parameters")
        else:
            records = doc
        if not isinstance(records, list) or not records:
            raise FormatError(
                "a parameter interface needs a non-empty list of parameter records.",
                path=path,
            )
        params = []
        for i, rec in enumerate(records):
            try:
                params.append(Parameter.from_dict(rec, where=f"parameters[{i}]"))
            except InputError as err:
                raise FormatError(
                    err.message, path=path, key=err.key or f"parameters[{i}]"
                ) from err
        try:
            return cls(params, model=model)
        except InputError as err:
            raise FormatError(err.message, path=path, key=err.key) from err

    @classmethod
    def load(cls, path: str | Path) -> "ParameterInterface":
        """Read a parameter interface YAML file."""
        path = Path(path)
        if not path.is_file():
            raise InputError(
                f"parameter interface file not found: {str(path)!r}.", path=path
            )
        return cls.from_yaml(path.read_text(), path=path)

    def save(self, path: str | Path) -> None:
        """Write the YAML file atomically."""
        from parafit._atomic import write_text_atomic

        write_text_atomic(path, self.to_yaml())
