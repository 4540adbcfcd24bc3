"""Data sets: entries comparing expressions over job results with reference values.

A :class:`DataSet` is an ordered list of :class:`Entry` (expression, reference,
sigma, weight, display unit, metadata); each expression is parsed once into a
:class:`~parafit.expressions.Plan`. :meth:`DataSet.validate` checks the entries
against a job collection and reports every problem at once;
:meth:`DataSet.compile` turns the data set into a :class:`CompiledDataSet`, the
flat arrays and one sparse matrix with which predictions for a whole batch of
parameter vectors are computed. Files: ParAMS ``data_set.yaml`` and our own
flavour of it (:mod:`parafit.io.dataset_yaml`).
"""

import difflib
import functools
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse

from parafit._rng import as_generator
from parafit.errors import ExpressionError, InputError
from parafit.expressions import Call, Plan, parse_expression
from parafit.extractors import EXTRACTORS, Extractor, differentiate
from parafit.units import Unit

if TYPE_CHECKING:
    from parafit.engines.base import JobResults
    from parafit.jobs import Job, JobCollection

__all__ = ["CompiledDataSet", "DataSet", "Entry"]

_MAX_LISTED_PROBLEMS = 50


@dataclass(frozen=True, slots=True)
class Entry:
    """One data-set entry.

    Attributes:
        expression: e.g. ``"energy('a') - energy('b')"``.
        reference: reference value in ``unit`` (float, or array for vector extractors),
            or None when not known yet.
        sigma: acceptable error in ``unit`` (> 0).
        weight: importance (dimensionless, >= 0), scalar or one per component.
        unit: display unit; ``value_in_unit = unit.factor * value_in_internal_units``.
        metadata: free keys (Description, Source, Group, ...), kept on round trips.
    """

    expression: str
    reference: float | np.ndarray | None
    sigma: float
    weight: float | np.ndarray = 1.0
    unit: Unit = field(default_factory=lambda: Unit("", 1.0))
    metadata: Mapping[str, Any] = field(default_factory=dict)


def _as_number_or_array(value: Any, what: str) -> float | np.ndarray:
    """float for scalars, read-only float array otherwise; raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(
            f"{what} must be a number or an array of numbers; got {value!r}"
        )
    try:
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(
            f"{what} must be a number or an array of numbers; got {value!r}"
        ) from None
    if arr.ndim == 0:
        return float(arr)
    arr.setflags(write=False)
    return arr


def _as_unit(unit: Any) -> Unit:
    if isinstance(unit, Unit):
        return unit
    if isinstance(unit, tuple | list) and len(unit) == 2:
        return Unit(str(unit[0]), float(unit[1]))
    raise ValueError(f"unit must be a Unit or a (label, factor) pair; got {unit!r}")


def _first_extractor(plan: Plan) -> Extractor:
    return EXTRACTORS.get(plan.calls[0].extractor)


class DataSet:
    """An ordered collection of :class:`Entry` with unique expressions.

    Args:
        entries: the entries. An entry whose ``unit`` has an empty label gets the
            extractor's default unit; a ``sigma`` of None gets the extractor's default.
        header: free header data (ParAMS ``dtype``/``version``/``Comment``/...).
        path: the file the entries came from (for error messages).
        lines: 1-based line of each entry in ``path`` (for error messages).

    Raises:
        ExpressionError: an expression cannot be parsed or has no extractor call.
        InputError: a duplicate expression, or a value of the wrong type.

    Example:
        >>> ds = DataSet()
        >>> e = ds.add_entry("energy('a') - energy('b')", 0.5, sigma=0.1)
        >>> len(ds), ds.job_ids == {"a", "b"}, e.unit.label
        (1, True, 'eV')
    """

    def __init__(
        self,
        entries: Iterable[Entry] = (),
        header: Mapping[str, Any] | None = None,
        *,
        path: str | Path | None = None,
        lines: Sequence[int | None] | None = None,
    ) -> None:
        self.header: dict[str, Any] = dict(header or {})
        self.path: str | None = None if path is None else str(path)
        self._entries: list[Entry] = []
        self._plans: list[Plan] = []
        self._lines: list[int | None] = []
        self._canonical: dict[str, int] = {}
        self._text: dict[str, int] = {}
        entries = list(entries)
        if lines is not None and len(lines) != len(entries):
            raise ValueError(f"got {len(lines)} lines for {len(entries)} entries")
        for i, entry in enumerate(entries):
            if not isinstance(entry, Entry):
                raise TypeError(
                    f"DataSet takes Entry objects; got {type(entry).__name__}"
                )
            self._append(entry, None if lines is None else lines[i])

    # ------------------------------------------------------------------ building

    def _where(self, line: int | None) -> dict[str, Any]:
        return {"path": self.path, "line": line}

    def _append(self, entry: Entry, line: int | None) -> Entry:
        where = self._where(line)
        try:
            plan = parse_expression(entry.expression)
        except ExpressionError as err:
            located = ExpressionError(
                err.message, entry=err.entry, key=err.entry, **where
            )
            located.column = getattr(err, "column", None)  # type: ignore[attr-defined]
            raise located from err
        if not plan.calls:
            raise ExpressionError(
                f"expression {entry.expression!r} has no extractor call; use e.g. energy('job_id').",
                entry=entry.expression,
                key=entry.expression,
                **where,
            )
        previous = self._canonical.get(plan.canonical)
        if previous is not None:
            other = self._entries[previous].expression
            at = self._lines[previous]
            at_text = f" (line {at})" if at is not None else ""
            raise InputError(
                f"duplicate expression {entry.expression!r}; entry {previous}{at_text} is {other!r}. "
                "Expressions in a data set must be unique.",
                key=entry.expression,
                **where,
            )
        entry = self._normalize(entry, plan, where)
        self._canonical[plan.canonical] = len(self._entries)
        self._text.setdefault(entry.expression, len(self._entries))
        self._entries.append(entry)
        self._plans.append(plan)
        self._lines.append(line)
        return entry

    @staticmethod
    def _normalize(entry: Entry, plan: Plan, where: dict[str, Any]) -> Entry:
        extractor = _first_extractor(plan)
        key = entry.expression
        try:
            unit = _as_unit(entry.unit)
            if unit.label == "" and unit.factor == 1.0:
                unit = extractor.unit
            if not (math.isfinite(unit.factor) and unit.factor > 0):
                raise ValueError(
                    f"the unit factor must be a finite number > 0; got {unit.factor!r}"
                )
            sigma = entry.sigma
            if sigma is None:
                sigma = extractor.default_sigma * unit.factor
            if isinstance(sigma, bool) or not isinstance(
                sigma, int | float | np.floating | np.integer
            ):
                raise ValueError(f"sigma must be a number; got {sigma!r}")
            reference = (
                None
                if entry.reference is None
                else _as_number_or_array(entry.reference, "reference")
            )
            weight = _as_number_or_array(entry.weight, "weight")
        except ValueError as err:
            raise InputError(f"entry {key!r}: {err}.", key=key, **where) from None
        return replace(
            entry,
            reference=reference,
            sigma=float(sigma),
            weight=weight,
            unit=unit,
            metadata=dict(entry.metadata),
        )

    def add_entry(
        self,
        expression: str,
        reference: float | np.ndarray | Sequence[float] | None = None,
        *,
        sigma: float | None = None,
        weight: float | np.ndarray | Sequence[float] = 1.0,
        unit: Unit | tuple[str, float] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Entry:
        """Append an entry and return it (normalized).

        Args:
            expression: e.g. ``"energy('a')"``.
            reference: reference value in ``unit``, or None.
            sigma: acceptable error in ``unit``; default: the extractor's default sigma
                converted to ``unit``.
            weight: dimensionless weight >= 0, scalar or per component.
            unit: display unit; default: the extractor's unit (eV, Å, degree, ...).
            metadata: free data kept with the entry.

        Raises:
            ExpressionError: the expression cannot be parsed.
            InputError: the expression is already in the data set.
        """
        entry = Entry(
            expression=expression,
            reference=reference,  # type: ignore[arg-type]
            sigma=sigma,  # type: ignore[arg-type]
            weight=weight,  # type: ignore[arg-type]
            unit=Unit("", 1.0) if unit is None else _as_unit(unit),
            metadata=dict(metadata or {}),
        )
        return self._append(entry, None)

    # ------------------------------------------------------------------ access

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries)

    def __contains__(self, expression: object) -> bool:
        if not isinstance(expression, str):
            return False
        try:
            self.index(expression)
        except KeyError:
            return False
        return True

    def index(self, expression: str) -> int:
        """Position of the entry with this expression (exact text, or the same parse)."""
        i = self._text.get(expression)
        if i is not None:
            return i
        try:
            i = self._canonical.get(parse_expression(expression).canonical)
        except ExpressionError:
            i = None
        if i is None:
            close = difflib.get_close_matches(expression, list(self._text), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"no entry {expression!r} in the data set{hint}")
        return i

    def __getitem__(self, key: int | str) -> Entry:
        if isinstance(key, str):
            return self._entries[self.index(key)]
        return self._entries[key]

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(self._entries)

    @property
    def plans(self) -> tuple[Plan, ...]:
        """The parsed expression of each entry."""
        return tuple(self._plans)

    @property
    def lines(self) -> tuple[int | None, ...]:
        """1-based source line of each entry (None when not read from a file)."""
        return tuple(self._lines)

    @property
    def job_ids(self) -> set[str]:
        """All job ids used by the expressions."""
        return {j for p in self._plans for j in p.job_ids}

    @property
    def extractors(self) -> set[str]:
        """All (canonical) extractor names used by the expressions."""
        return {x for p in self._plans for x in p.extractors}

    def __repr__(self) -> str:
        where = f", path={self.path!r}" if self.path else ""
        return f"DataSet(<{len(self)} entries>{where})"

    # ------------------------------------------------------------------ subsets

    def select(self, indices: Iterable[int]) -> "DataSet":
        """A new data set with the entries at ``indices`` (in that order)."""
        idx = [int(i) for i in indices]
        return DataSet(
            [self._entries[i] for i in idx],
            self.header,
            path=self.path,
            lines=[self._lines[i] for i in idx],
        )

    def from_job_ids(self, job_ids: Iterable[str]) -> "DataSet":
        """Entries all of whose jobs are in ``job_ids``."""
        wanted = set(job_ids)
        return self.select(
            i for i, p in enumerate(self._plans) if set(p.job_ids) <= wanted
        )

    def from_extractors(self, names: str | Iterable[str]) -> "DataSet":
        """Entries that use any of the extractors ``names`` (aliases allowed)."""
        names = [names] if isinstance(names, str) else list(names)
        wanted = {EXTRACTORS.canonical(n) for n in names}
        return self.select(
            i for i, p in enumerate(self._plans) if wanted & set(p.extractors)
        )

    def from_metadata(self, key: str, value: Any, *, regex: bool = False) -> "DataSet":
        """Entries whose ``metadata[key]`` equals ``value`` (or matches the regex ``value``)."""

        def match(entry: Entry) -> bool:
            if key not in entry.metadata:
                return False
            if regex:
                return re.search(str(value), str(entry.metadata[key])) is not None
            return bool(entry.metadata[key] == value)

        return self.select(i for i, e in enumerate(self._entries) if match(e))

    def split(
        self, *fractions: float, seed: int | np.random.Generator | None = 0
    ) -> tuple["DataSet", ...]:
        """Randomly split into parts of the given fractions (normalized to sum 1).

        Each entry goes to exactly one part; part sizes are rounded so they add up
        to ``len(self)``.
        """
        if not fractions or any(not f >= 0 for f in fractions) or sum(fractions) <= 0:
            raise InputError(
                f"split fractions must be >= 0 and not all 0; got {fractions!r}."
            )
        rng = as_generator(seed)
        order = rng.permutation(len(self))
        cuts = np.round(np.cumsum(fractions) / sum(fractions) * len(self)).astype(int)
        parts = np.split(order, cuts[:-1])
        return tuple(self.select(sorted(p.tolist())) for p in parts)

    def with_references(
        self, references: Sequence[float | np.ndarray | None]
    ) -> "DataSet":
        """A copy with the reference values replaced (in each entry's unit)."""
        if len(references) != len(self):
            raise InputError(
                f"got {len(references)} references for {len(self)} entries."
            )
        entries = [
            replace(e, reference=r)
            for e, r in zip(self._entries, references, strict=True)
        ]
        return DataSet(entries, self.header, path=self.path, lines=self._lines)

    # ------------------------------------------------------------------ files

    @classmethod
    def load(cls, path: str | Path) -> "DataSet":
        """Read a ParAMS ``data_set.yaml`` or our flavour (chosen from the header).

        Raises:
            FormatError: the file cannot be parsed (with ``.path`` and ``.line``).
            ExpressionError: an expression is not allowed (with ``.line``).
        """
        from parafit.io.dataset_yaml import read_data_set

        return read_data_set(path)

    def save(
        self, path: str | Path, *, flavor: Literal["parafit", "params"] = "parafit"
    ) -> None:
        """Write atomically; ``flavor='params'`` writes ParAMS unit factors (atomic units)."""
        from parafit.io.dataset_yaml import write_data_set

        write_data_set(self, path, flavor=flavor)

    @classmethod
    def from_yaml(cls, text: str, *, path: str | Path | None = None) -> "DataSet":
        """Parse YAML text in either flavour; ``path`` is used in error messages."""
        from parafit.io.dataset_yaml import data_set_from_yaml

        return data_set_from_yaml(text, path=path)

    def to_yaml(self, *, flavor: Literal["parafit", "params"] = "parafit") -> str:
        """YAML text in either flavour."""
        from parafit.io.dataset_yaml import data_set_to_yaml

        return data_set_to_yaml(self, flavor=flavor)

    # ------------------------------------------------------------------ checking

    def _location(self, i: int) -> str:
        line = self._lines[i]
        if self.path is not None and line is not None:
            return f"{self.path}:{line}"
        if line is not None:
            return f"line {line}"
        return f"entry {i}"

    def entry_shapes(
        self, jobs: "JobCollection | Mapping[str, Job]"
    ) -> list[tuple[int, ...]]:
        """Shape of each entry's value for these jobs (after :meth:`validate`)."""
        return [_plan_shape(p, jobs)[0] for p in self._plans]

    def validate(
        self,
        jobs: "JobCollection | Mapping[str, Job]",
        *,
        require_reference: bool = True,
    ) -> None:
        """Check every entry against ``jobs``; report all problems in one error.

        Checks: job ids exist (with suggestions), extractor arguments (atom indices
        in range, ...), reference present (if ``require_reference``), finite and of
        the expression's shape, sigma finite and > 0, weights finite, >= 0 and of a
        shape that broadcasts to the value.

        Raises:
            InputError: listing all problems; ``.path``, ``.line`` and ``.key``
                (the expression) are those of the first problem, ``.problems`` a
                list of ``(entry_index, location, message)``.
        """
        known = list(jobs.ids) if hasattr(jobs, "ids") else list(jobs)
        known_set = set(known)
        problems: list[tuple[int, str]] = []
        for i, (entry, plan) in enumerate(zip(self._entries, self._plans, strict=True)):
            msgs: list[str] = []
            shapes_ok = True
            for call in plan.calls:
                if call.job_id not in known_set:
                    close = difflib.get_close_matches(call.job_id, known, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else "."
                    msgs.append(f"unknown job id {call.job_id!r}{hint}")
                    shapes_ok = False
                    continue
                extractor = EXTRACTORS.get(call.extractor)
                if extractor.check is not None:
                    try:
                        extractor.check(jobs[call.job_id], call.args, call.kwargs_dict)
                    except InputError as err:
                        msgs.append(err.message)
                        shapes_ok = False
            shape: tuple[int, ...] | None = None
            if shapes_ok:
                try:
                    shape = _plan_shape(plan, jobs)[0]
                except ValueError as err:
                    msgs.append(str(err))
            msgs.extend(_check_values(entry, shape, require_reference))
            problems.extend((i, m) for m in msgs)
        if not problems:
            return
        listed = [
            (i, self._location(i), f"{self._entries[i].expression!r}: {m}")
            for i, m in problems[:_MAX_LISTED_PROBLEMS]
        ]
        lines = [f"{loc}: {m}" for _, loc, m in listed]
        if len(problems) > len(listed):
            lines.append(f"... and {len(problems) - len(listed)} more")
        if len(problems) == 1:
            message = lines[0]
        else:
            message = f"{len(problems)} problems in the data set:\n" + "\n".join(
                "  " + s for s in lines
            )
        first = problems[0][0]
        err = InputError(
            message,
            path=self.path,
            line=self._lines[first],
            key=self._entries[first].expression,
        )
        err.problems = listed  # type: ignore[attr-defined]
        raise err

    def compile(self, jobs: "JobCollection | Mapping[str, Job]") -> "CompiledDataSet":
        """Validate against ``jobs`` and build the flat arrays for fast prediction.

        Raises:
            InputError: as :meth:`validate` (references are required).
        """
        self.validate(jobs, require_reference=True)
        return CompiledDataSet(self, jobs)


def _plan_shape(
    plan: Plan, jobs: "JobCollection | Mapping[str, Job]"
) -> tuple[tuple[int, ...], list[tuple[int, ...]]]:
    """(entry shape, shape of each call); ValueError if the calls do not broadcast."""
    shapes = [
        EXTRACTORS.get(c.extractor).shape(jobs[c.job_id], c.args, c.kwargs_dict)
        for c in plan.calls
    ]
    try:
        return tuple(np.broadcast_shapes(*shapes)), shapes
    except ValueError:
        raise ValueError(
            f"the calls give values of shapes {shapes} that cannot be combined"
        ) from None


def _check_values(
    entry: Entry, shape: tuple[int, ...] | None, require_reference: bool
) -> list[str]:
    msgs = []
    ref = entry.reference
    if ref is None:
        if require_reference:
            msgs.append("missing reference value")
    else:
        arr = np.asarray(ref, dtype=float)
        if not np.isfinite(arr).all():
            msgs.append(f"reference value is not finite; got {ref!r}")
        if shape is not None and arr.shape != shape and arr.size != math.prod(shape):
            msgs.append(
                f"reference value has shape {arr.shape}, the expression gives shape {shape}"
            )
    if not (math.isfinite(entry.sigma) and entry.sigma > 0):
        msgs.append(f"sigma must be a finite number > 0; got {entry.sigma!r}")
    w = np.asarray(entry.weight, dtype=float)
    if not (np.isfinite(w).all() and (w >= 0).all()):
        msgs.append(f"weights must be finite and >= 0; got {entry.weight!r}")
    if shape is not None and w.ndim:
        try:
            np.broadcast_to(
                w if w.size != math.prod(shape) else w.reshape(shape), shape
            )
        except ValueError:
            msgs.append(
                f"weight has shape {w.shape}, which does not fit the value's shape {shape}"
            )
    return msgs


def _broadcast_flat(value: float | np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a flat array of ``prod(shape)`` numbers (reshaped if same size)."""
    arr = np.asarray(value, dtype=float)
    size = math.prod(shape)
    if arr.ndim and arr.size == size:
        return arr.reshape(size)
    return np.broadcast_to(arr, shape).reshape(size)


def _differentiator(extractor: Extractor) -> Any:
    """``fn(results, job, args, kwargs, n_grad)``: the extractor's jacobian (picklable)."""
    return functools.partial(
        differentiate,
        extractor.function,
        extractor.needs,
        extractor.linear,
        extractor.derivative,
    )


@dataclass(frozen=True, slots=True)
class _Group:
    """Calls evaluated together: one extractor on one job."""

    function: Any
    differentiate: Any  # (results, job, args, kwargs, n_grad) -> jacobian
    job_id: str
    job: Any
    args: tuple[Any, ...]  # positional arguments (1-D index arrays for batched groups)
    kwargs: dict[str, Any]
    columns: np.ndarray | slice  # columns of the flat call-value matrix
    size: int  # number of columns


class CompiledDataSet:
    """A data set compiled against a job collection, for repeated fast prediction.

    Attributes (all display-unit arrays are in each entry's unit):
        reference: (n_values,) reference values.
        sigma: (n_values,) sigma of each value.
        weight: (n_values,) weight of each value.
        entry_of_value: (n_values,) int, the entry each value belongs to.
        entry_start: (n_entries,) int, first value of each entry.
        entry_sizes: (n_entries,) int, number of values of each entry.
        entry_shapes: shape of each entry's value.
        n_entries, n_values: counts.
        expressions: expression of each entry.
        extractor_of_entry: extractor of each entry (the first call's).
        unit_of_entry: display unit of each entry.
        job_ids: the jobs needed, in first-use order.
        needs: JobResults fields read (``energy, forces, ...``).
        needs_by_job: the same per job id.

    Prediction is ``P = A @ F + c`` for the entries that are affine in their calls
    (``A`` sparse, ``F`` the flat values of the unique calls) and the expression tree
    for the others; every unique call is evaluated once per batch, and scalar calls of
    one batchable extractor on one job in one vectorized call. Parameter jacobians
    (:meth:`predict_and_jacobian`) follow the same path: ``A @ dF`` for affine entries
    (exact), forward mode through the tree for the others, with ``dF`` from
    :meth:`~parafit.extractors.Extractor.jacobian`.
    """

    def __init__(
        self, data_set: DataSet, jobs: "JobCollection | Mapping[str, Job]"
    ) -> None:
        entries, plans = data_set.entries, data_set.plans
        self.n_entries = len(entries)
        self.expressions: tuple[str, ...] = tuple(e.expression for e in entries)
        self.extractor_of_entry: tuple[str, ...] = tuple(
            p.calls[0].extractor for p in plans
        )
        self.unit_of_entry: tuple[Unit, ...] = tuple(e.unit for e in entries)

        # unique calls and their columns in the flat matrix F (n_vectors, n_flat)
        call_index: dict[Call, int] = {}
        call_shapes: list[tuple[int, ...]] = []
        entry_shapes: list[tuple[int, ...]] = []
        entry_calls: list[list[int]] = []
        for plan in plans:
            shape, shapes = _plan_shape(plan, jobs)
            entry_shapes.append(shape)
            idx = []
            for call, s in zip(plan.calls, shapes, strict=True):
                if call not in call_index:
                    call_index[call] = len(call_index)
                    call_shapes.append(s)
                idx.append(call_index[call])
            entry_calls.append(idx)
        calls = list(call_index)
        call_sizes = np.array([math.prod(s) for s in call_shapes], dtype=int)
        call_offsets = np.concatenate([[0], np.cumsum(call_sizes)]).astype(int)
        self._n_flat = int(call_offsets[-1])
        self._call_shapes = call_shapes
        self._call_offsets = call_offsets

        self.job_ids: tuple[str, ...] = tuple(dict.fromkeys(c.job_id for c in calls))
        job_number = {j: k for k, j in enumerate(self.job_ids)}
        self._job_of_column = np.repeat(
            [job_number[c.job_id] for c in calls], call_sizes
        ).astype(int)
        self.needs: frozenset[str] = frozenset().union(
            *(EXTRACTORS.get(c.extractor).needs for c in calls)
        )
        #: per job, what its extractors read (``energy``, ``forces``, ``scan``, ...)
        self.needs_by_job: dict[str, frozenset[str]] = {}
        for c in calls:
            self.needs_by_job[c.job_id] = (
                self.needs_by_job.get(c.job_id, frozenset())
                | EXTRACTORS.get(c.extractor).needs
            )

        # evaluation groups
        batched: dict[tuple[Any, ...], list[int]] = {}
        singles: list[int] = []
        for k, call in enumerate(calls):
            extractor = EXTRACTORS.get(call.extractor)
            if (
                extractor.batchable
                and call_shapes[k] == ()
                and call.args
                and all(
                    isinstance(a, int) and not isinstance(a, bool) for a in call.args
                )
            ):
                batched.setdefault(
                    (call.extractor, call.job_id, call.kwargs, len(call.args)), []
                ).append(k)
            else:
                singles.append(k)
        groups: list[_Group] = []
        for (name, job_id, kwargs, _), members in batched.items():
            arrays = tuple(
                np.array(col, dtype=int)
                for col in zip(*(calls[k].args for k in members), strict=True)
            )
            groups.append(
                _Group(
                    EXTRACTORS.get(name).function,
                    _differentiator(EXTRACTORS.get(name)),
                    job_id,
                    jobs[job_id],
                    arrays,
                    dict(kwargs),
                    call_offsets[members],
                    len(members),
                )
            )
        for k in singles:
            call = calls[k]
            groups.append(
                _Group(
                    EXTRACTORS.get(call.extractor).function,
                    _differentiator(EXTRACTORS.get(call.extractor)),
                    call.job_id,
                    jobs[call.job_id],
                    call.args,
                    call.kwargs_dict,
                    slice(int(call_offsets[k]), int(call_offsets[k + 1])),
                    int(call_sizes[k]),
                )
            )
        self._groups = groups

        # value layout, display-unit arrays, sparse matrix of the affine entries
        sizes = np.array([math.prod(s) for s in entry_shapes], dtype=int)
        self.entry_shapes: tuple[tuple[int, ...], ...] = tuple(entry_shapes)
        self.entry_sizes = sizes
        self.entry_start = (
            np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
            if len(sizes)
            else np.zeros(0, int)
        )
        self.n_values = int(sizes.sum())
        self.entry_of_value = np.repeat(np.arange(self.n_entries), sizes)
        self.reference = (
            np.concatenate(
                [
                    _broadcast_flat(e.reference, s)
                    for e, s in zip(entries, entry_shapes, strict=True)
                ]  # type: ignore[arg-type]
            )
            if entries
            else np.zeros(0)
        )
        self.sigma = np.repeat([e.sigma for e in entries], sizes).astype(float)
        self.weight = (
            np.concatenate(
                [
                    _broadcast_flat(e.weight, s)
                    for e, s in zip(entries, entry_shapes, strict=True)
                ]
            )
            if entries
            else np.zeros(0)
        )
        for a in (
            self.reference,
            self.sigma,
            self.weight,
            self.entry_of_value,
            self.entry_sizes,
            self.entry_start,
        ):
            a.setflags(write=False)

        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        data: list[np.ndarray] = []
        constant = np.zeros(self.n_values)
        others: list[tuple[Plan, list[int], int, int, tuple[int, ...], float]] = []
        for e, (entry, plan) in enumerate(zip(entries, plans, strict=True)):
            start, size, shape = (
                int(self.entry_start[e]),
                int(sizes[e]),
                entry_shapes[e],
            )
            factor = entry.unit.factor
            if plan.linear is None:
                others.append((plan, entry_calls[e], start, size, shape, factor))
                continue
            value_rows = np.arange(start, start + size)
            for coef, local in plan.linear:
                k = entry_calls[e][local]
                within = np.broadcast_to(
                    np.arange(call_sizes[k]).reshape(call_shapes[k]), shape
                ).reshape(size)
                rows.append(value_rows)
                cols.append(call_offsets[k] + within)
                data.append(np.full(size, coef * factor))
            constant[start : start + size] = plan.constant * factor
        if rows:
            matrix = scipy.sparse.coo_array(
                (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
                shape=(self.n_values, self._n_flat),
            ).tocsr()
        else:
            matrix = scipy.sparse.csr_array((self.n_values, self._n_flat))
        self._matrix = matrix
        self._constant = constant
        self._others = others

    def __repr__(self) -> str:
        return f"CompiledDataSet(<{self.n_entries} entries, {self.n_values} values, {len(self.job_ids)} jobs>)"

    def _n_vectors(
        self, results: Mapping[str, "JobResults"], n_vectors: int | None
    ) -> int:
        if n_vectors is not None:
            return n_vectors
        for job_id in self.job_ids:
            if job_id in results:
                return results[job_id].n_vectors
        return next((r.n_vectors for r in results.values()), 1)

    def _not_ok(self, results: Mapping[str, "JobResults"], n: int) -> np.ndarray | None:
        """(n, n_flat) True where a column's job is missing or not OK; None if all OK."""
        ok = np.zeros((n, len(self.job_ids)), dtype=bool)
        for j, job_id in enumerate(self.job_ids):
            r = results.get(job_id)
            if r is not None:
                ok[:, j] = r.is_ok
        return None if ok.all() else ~ok[:, self._job_of_column]

    def call_values(
        self, results: Mapping[str, "JobResults"], *, n_vectors: int | None = None
    ) -> np.ndarray:
        """Flat values of the unique extractor calls, (n_vectors, n_flat), internal units.

        NaN for every call on a job that is missing from ``results`` or whose result
        is not OK (FAILED bit or non-finite energy) for that vector.
        """
        n = self._n_vectors(results, n_vectors)
        flat = np.full((n, self._n_flat), np.nan)
        with np.errstate(all="ignore"):
            for g in self._groups:
                r = results.get(g.job_id)
                if r is None:
                    continue
                value = np.asarray(
                    g.function(r, g.job, *g.args, **g.kwargs), dtype=float
                )
                flat[:, g.columns] = value.reshape(n, g.size)
        bad = self._not_ok(results, n)
        if bad is not None:
            flat[bad] = np.nan
        return flat

    def call_jacobians(
        self,
        results: Mapping[str, "JobResults"],
        *,
        n_grad: int,
        n_vectors: int | None = None,
    ) -> np.ndarray:
        """Parameter jacobians of the unique calls, (n_vectors, n_flat, n_grad), internal units.

        From each extractor's :meth:`~parafit.extractors.Extractor.jacobian` and the
        ``jacobians`` of the results; NaN where :meth:`call_values` is NaN and where a
        derivative is not available.
        """
        n = self._n_vectors(results, n_vectors)
        out = np.full((n, self._n_flat, n_grad), np.nan)
        with np.errstate(all="ignore"):
            for g in self._groups:
                r = results.get(g.job_id)
                if r is None:
                    continue
                d = g.differentiate(r, g.job, g.args, g.kwargs, n_grad)
                out[:, g.columns, :] = np.asarray(d, dtype=float).reshape(
                    n, g.size, n_grad
                )
        bad = self._not_ok(results, n)
        if bad is not None:
            out[bad] = np.nan
        return out

    def _combine(
        self, flat: np.ndarray, flat_jac: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Entry values (and jacobians) from the flat call values (and jacobians)."""
        n = flat.shape[0]
        jac = None
        with np.errstate(all="ignore"):
            out = np.asarray(self._matrix @ flat.T).T + self._constant
            if flat_jac is not None:
                k = flat_jac.shape[2]
                stacked = flat_jac.transpose(1, 0, 2).reshape(self._n_flat, n * k)
                jac = (
                    np.asarray(self._matrix @ stacked)
                    .reshape(self.n_values, n, k)
                    .transpose(1, 0, 2)
                    .copy()
                )
            for plan, idx, start, size, shape, factor in self._others:
                cols = [
                    slice(self._call_offsets[i], self._call_offsets[i + 1]) for i in idx
                ]
                values = [
                    flat[:, c].reshape((n, *self._call_shapes[i]))
                    for c, i in zip(cols, idx, strict=True)
                ]
                if flat_jac is None:
                    value = np.broadcast_to(plan.evaluate(values), (n, *shape))
                else:
                    k = flat_jac.shape[2]
                    tangents = [
                        flat_jac[:, c, :].reshape((n, *self._call_shapes[i], k))
                        for c, i in zip(cols, idx, strict=True)
                    ]
                    value, tangent = plan.evaluate_jvp(values, tangents)
                    value = np.broadcast_to(value, (n, *shape))
                    tangent = np.broadcast_to(tangent, (n, *shape, k))
                    jac[:, start : start + size, :] = factor * tangent.reshape(  # type: ignore[index]
                        n, size, k
                    )
                out[:, start : start + size] = factor * value.reshape(n, size)
        return out, jac

    def predict(
        self, results: Mapping[str, "JobResults"], *, n_vectors: int | None = None
    ) -> np.ndarray:
        """Predictions of every value for a batch of parameter vectors.

        Args:
            results: ``{job_id: JobResults}`` from an engine (extra jobs are ignored).
            n_vectors: batch size, if ``results`` lacks every needed job.

        Returns:
            (n_vectors, n_values) array in each entry's display unit. A job missing
            from ``results``, or a failed or non-finite result, gives NaN for the
            values that use it; nothing raises for bad results.
        """
        return self._combine(self.call_values(results, n_vectors=n_vectors), None)[0]

    def predict_and_jacobian(
        self,
        results: Mapping[str, "JobResults"],
        *,
        n_grad: int,
        n_vectors: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and their parameter jacobians.

        Args:
            results: ``{job_id: JobResults}`` from a differentiable engine called with
                ``grad_indices`` (n_grad of them).
            n_grad: number of jacobian columns.
            n_vectors: batch size, if ``results`` lacks every needed job.

        Returns:
            (predictions, jacobian): as :meth:`predict`, (n_vectors, n_values), and
            (n_vectors, n_values, n_grad), d prediction / d params[grad_indices] in
            display units per parameter unit; NaN where a derivative is not available.
        """
        n = self._n_vectors(results, n_vectors)
        flat = self.call_values(results, n_vectors=n)
        flat_jac = self.call_jacobians(results, n_grad=n_grad, n_vectors=n)
        pred, jac = self._combine(flat, flat_jac)
        assert jac is not None
        return pred, jac

    def predictions_per_entry(self, pred_row: np.ndarray) -> list[float | np.ndarray]:
        """Split one row of :meth:`predict` into per-entry values (float or shaped array)."""
        row = np.asarray(pred_row, dtype=float)
        if row.shape != (self.n_values,):
            raise ValueError(f"expected shape ({self.n_values},), got {row.shape}")
        out: list[float | np.ndarray] = []
        for start, size, shape in zip(
            self.entry_start, self.entry_sizes, self.entry_shapes, strict=True
        ):
            if shape == ():
                out.append(float(row[start]))
            else:
                out.append(row[start : start + size].reshape(shape).copy())
        return out
