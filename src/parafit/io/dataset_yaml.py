"""Read and write data sets as YAML: the ParAMS format and our flavour of it.

Both are multi-document YAML with one entry per document and the keys
``Expression``, ``Weight``, ``Sigma``, ``ReferenceValue`` and ``Unit``
(``"label, factor"``); any other key is free metadata kept with the entry.

- ParAMS flavour: an optional header (a ``# 0.5.0`` comment or a first document
  with ``dtype: DataSet``/``version``). A ``Unit`` factor is relative to the unit the
  ParAMS extractor returns: atomic units for energies, forces and stress (Hartree,
  bohr), Å and degrees for geometry, e for charges; it is converted to our factor
  (relative to eV, Å, ...) on read and back on write (the shortest decimal within 1e-14,
  so ``627.5096`` survives a round trip). An entry without ``Unit`` is in the
  ParAMS extractor's unit (``Ha``, ``Ha/bohr``, ``angstrom``, ``degree``, ...). Arrays
  are numpy reprs in literal blocks (``|`` + ``array([[1.0, 2.0], ...])``), parsed by
  a small tokenizer (never ``eval``).
- parafit flavour: the first document is ``{dtype: DataSet, format: parafit,
  version: 1, units: internal eV/angstrom}``; ``Unit`` factors are relative to our
  internal units; arrays are nested YAML lists.
"""

import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from parafit._atomic import write_text_atomic
from parafit.dataset import DataSet, Entry
from parafit.errors import ExpressionError, FormatError, InputError
from parafit.expressions import parse_expression
from parafit.extractors import EXTRACTORS, Extractor
from parafit.units import Unit

__all__ = [
    "data_set_from_yaml",
    "data_set_to_yaml",
    "parse_array_literal",
    "read_data_set",
    "write_data_set",
]

Flavor = Literal["parafit", "params"]

_KEYS = ("Expression", "Weight", "ReferenceValue", "Sigma", "Unit")
_PARAFIT_HEADER = {
    "dtype": "DataSet",
    "format": "parafit",
    "version": 1,
    "units": "internal eV/angstrom",
}
_PARAMS_VERSION = "0.5.1"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TOKEN = re.compile(
    r"\s*(?:(?P<open>\[)|(?P<close>\])|(?P<comma>,)|(?P<ellipsis>\.\.\.)"
    r"|(?P<number>[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf|nan)))",
    re.IGNORECASE,
)


# ---------------------------------------------------------------------------- reading


def parse_array_literal(text: str) -> np.ndarray:
    """Parse a numpy array repr such as ``array([[1.0, 2.0], [3.0, 4.0]])`` (or ``[...]``).

    Only numbers (including ``nan``/``inf``), brackets and commas are accepted;
    a trailing ``dtype=...`` is ignored. Never uses ``eval``.

    Raises:
        ValueError: anything else, a ragged array, or numpy's ``...`` summary.

    Example:
        >>> parse_array_literal("array([[ 1.,  2.],\\n       [-3., 4e-1]])")
        array([[ 1. ,  2. ],
               [-3. ,  0.4]])
    """
    s = text.strip()
    m = re.fullmatch(r"array\((.*)\)", s, re.DOTALL)
    if m:
        s = re.sub(r",\s*dtype\s*=\s*[\w.]+\s*$", "", m.group(1).strip())
    stack: list[list[Any]] = [[]]
    pos, end = 0, len(s.rstrip())
    expect_value = True
    while pos < end:
        t = _TOKEN.match(s, pos)
        if t is None or t.end() == pos:
            raise ValueError(f"unexpected text {s[pos : pos + 20].strip()!r} in array")
        pos = t.end()
        kind = t.lastgroup
        if kind == "open":
            if not expect_value:
                raise ValueError("missing comma in array")
            stack.append([])
        elif kind == "close":
            if len(stack) == 1:
                raise ValueError("unbalanced ']' in array")
            inner = stack.pop()
            stack[-1].append(inner)
            expect_value = False
        elif kind == "comma":
            expect_value = True
        elif kind == "ellipsis":
            raise ValueError(
                "the array was summarized with '...' (numpy print threshold); values are missing"
            )
        else:
            if not expect_value:
                raise ValueError("missing comma in array")
            stack[-1].append(float(t.group("number")))
            expect_value = False
    if len(stack) != 1 or len(stack[0]) != 1:
        raise ValueError("unbalanced brackets or several values in array")
    try:
        return np.array(stack[0][0], dtype=float)
    except ValueError:
        raise ValueError("rows of different lengths in array") from None


def _key_line(node: yaml.Node, key: str, default: int | None) -> int | None:
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if getattr(k, "value", None) == key:
                return int(k.start_mark.line) + 1
    return default


def _number(value: Any) -> float:
    """A YAML number, or a string holding one (PyYAML reads ``1e-5`` as a string)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number; got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a number; got {value!r}")


def _number_or_array(value: Any) -> float | np.ndarray:
    if isinstance(value, list):
        try:
            arr = np.array(value, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(
                f"expected a list of numbers of equal-length rows; got {value!r}"
            ) from None
        if any(isinstance(v, bool) for v in np.ravel(np.array(value, dtype=object))):
            raise ValueError(f"expected numbers; got {value!r}")
        return arr
    if isinstance(value, str) and ("[" in value or "array" in value):
        return parse_array_literal(value)
    return _number(value)


def _parse_unit(value: Any) -> tuple[str, float]:
    if isinstance(value, str) and "," in value:
        label, factor = value.rsplit(",", 1)
        return label.strip(), _number(factor)
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], str)
    ):
        return value[0].strip(), _number(value[1])
    raise ValueError(
        f"expected 'label, factor' such as 'kcal/mol, 627.5096'; got {value!r}"
    )


def _is_header(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and "Expression" not in doc
        and bool({"dtype", "version", "format"} & set(doc))
    )


def data_set_from_yaml(text: str, *, path: str | Path | None = None) -> DataSet:
    """Parse data-set YAML in either flavour (see the module docstring).

    Args:
        text: the YAML text.
        path: used in error messages and kept as ``DataSet.path``.

    Raises:
        FormatError: malformed YAML (with ``.line``), a document that is not an
            entry, or a key with a value of the wrong type (``.key``, ``.line``).
        ExpressionError: an expression that cannot be parsed (``.line``).
        InputError: duplicate expressions.
    """
    where = None if path is None else str(path)
    loader = _Loader(text)
    docs: list[tuple[Any, yaml.Node]] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            docs.append((loader.construct_document(node), node))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = None if mark is None else int(mark.line) + 1
        problem = err.problem or err.context or "malformed YAML"
        raise FormatError(f"invalid YAML: {problem}.", path=where, line=line) from None
    except yaml.YAMLError as err:
        raise FormatError(f"invalid YAML: {err}.", path=where) from None
    finally:
        loader.dispose()

    header: dict[str, Any] = {}
    if docs and _is_header(docs[0][0]):
        header, header_node = dict(docs[0][0]), docs[0][1]
        docs = docs[1:]
        dtype = header.get("dtype", "DataSet")
        if dtype != "DataSet":
            raise FormatError(
                f"the header says dtype {dtype!r}; a data set needs dtype 'DataSet'.",
                path=where,
                line=_key_line(
                    header_node, "dtype", int(header_node.start_mark.line) + 1
                ),
                key="dtype",
            )
    is_parafit = header.get("format") == "parafit"

    entries: list[Entry] = []
    lines: list[int | None] = []
    for doc, node in docs:
        if doc is None:
            continue
        line = int(node.start_mark.line) + 1
        if not isinstance(doc, dict):
            raise FormatError(
                f"each document must be a mapping with an Expression key; got {type(doc).__name__}.",
                path=where,
                line=line,
            )
        if "Expression" not in doc:
            raise FormatError(
                f"entry without Expression (keys: {', '.join(map(str, doc))}).",
                path=where,
                line=line,
                key="Expression",
            )
        line = _key_line(node, "Expression", line)
        entries.append(_entry(doc, node, line, where, is_parafit))
        lines.append(line)
    return DataSet(entries, header, path=where, lines=lines)


def _entry(
    doc: dict[str, Any],
    node: yaml.Node,
    line: int | None,
    where: str | None,
    is_parafit: bool,
) -> Entry:
    expression = doc["Expression"]
    if not isinstance(expression, str) or not expression.strip():
        raise FormatError(
            f"Expression must be a non-empty string; got {expression!r}.",
            path=where,
            line=line,
            key="Expression",
        )
    expression = expression.strip()
    try:
        plan = parse_expression(expression)
    except ExpressionError as err:
        located = ExpressionError(
            err.message, entry=err.entry, path=where, line=line, key=expression
        )
        located.column = getattr(err, "column", None)  # type: ignore[attr-defined]
        raise located from None
    if not plan.calls:
        raise ExpressionError(
            f"expression {expression!r} has no extractor call; use e.g. energy('job_id').",
            entry=expression,
            path=where,
            line=line,
            key=expression,
        )
    extractor = EXTRACTORS.get(plan.calls[0].extractor)

    def bad(key: str, err: Exception) -> FormatError:
        return FormatError(
            f"{key}: {err}.", path=where, line=_key_line(node, key, line), key=key
        )

    try:
        unit = _read_unit(doc.get("Unit"), extractor, is_parafit)
    except ValueError as err:
        raise bad("Unit", err) from None
    values: dict[str, Any] = {}
    for key, default in (("Weight", 1.0), ("Sigma", None), ("ReferenceValue", None)):
        raw = doc.get(key)
        if raw is None or (key == "ReferenceValue" and raw == "None"):
            values[key] = default
            continue
        try:
            values[key] = _number(raw) if key == "Sigma" else _number_or_array(raw)
        except ValueError as err:
            raise bad(key, err) from None
    metadata = {k: v for k, v in doc.items() if k not in _KEYS}
    return Entry(
        expression=expression,
        reference=values["ReferenceValue"],
        sigma=values["Sigma"],
        weight=values["Weight"],
        unit=unit,
        metadata=metadata,
    )


def _read_unit(raw: Any, extractor: Extractor, is_parafit: bool) -> Unit:
    if raw is None:
        return extractor.unit if is_parafit else extractor.params_default_unit
    label, factor = _parse_unit(raw)
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"the factor must be a finite number > 0; got {factor!r}")
    if is_parafit:
        return Unit(label, factor)
    return Unit(label, factor * extractor.params_default_factor)


def read_data_set(path: str | Path) -> DataSet:
    """Read a data-set YAML file in either flavour.

    Raises:
        InputError: the file does not exist or cannot be read.
        FormatError, ExpressionError: as :func:`data_set_from_yaml`.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(
            f"data set file not found; got {str(path)!r}.", path=path
        ) from None
    except UnicodeDecodeError as err:
        raise FormatError(f"not a UTF-8 text file: {err}.", path=path) from None
    except OSError as err:
        raise InputError(
            f"cannot read the data set file: {err.strerror}.", path=path
        ) from None
    return data_set_from_yaml(text, path=path)


# ---------------------------------------------------------------------------- writing


def _num(x: float) -> str:
    """A float as YAML 1.1 (PyYAML) reads it back exactly."""
    x = float(x)
    if math.isnan(x):
        return ".nan"
    if math.isinf(x):
        return ".inf" if x > 0 else "-.inf"
    r = repr(x)
    if "e" in r and "." not in r:
        mantissa, exponent = r.split("e")
        r = f"{mantissa}.0e{exponent}"
    return r


def _params_factor(factor: float, default_factor: float) -> float:
    """ParAMS factor of our ``factor``: the shortest decimal within 1e-14 (relative).

    So ``627.5096`` (kcal/mol per Hartree) is written back as ``627.5096``, not as
    ``627.5096000000001``.
    """
    exact = factor / default_factor
    for digits in range(1, 18):
        candidate = float(f"{exact:.{digits}g}")
        if abs(candidate * default_factor / factor - 1.0) <= 1e-14:
            return candidate
    return exact


_PLAIN = re.compile(r"[A-Za-z_+(\-][\x20-\x7e]*")  # printable ASCII only


def _quoted(s: str) -> str:
    """A double-quoted YAML scalar that reads back as ``s`` (any characters)."""
    return yaml.safe_dump(
        s, default_style='"', width=float("inf"), allow_unicode=True
    ).rstrip("\n")


def _scalar(s: str) -> str:
    """A string as a YAML scalar: plain when safe (expressions), else JSON-quoted."""
    if (
        _PLAIN.fullmatch(s)
        and "(" in s
        and s == s.strip()
        and ": " not in s
        and " #" not in s
        and not s.startswith("- ")
        and not s.endswith(":")
    ):
        return s
    return _quoted(s)


def _dump(data: Any) -> str:
    """Block YAML of plain data; non-ASCII kept readable unless it holds line breaks
    or control characters (e.g. U+0085, U+2028), which PyYAML only escapes when
    ``allow_unicode`` is off."""
    data = _plain_data(data)
    return yaml.safe_dump(
        data,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=_printable(data),
    )


def _printable(value: Any) -> bool:
    if isinstance(value, str):
        return value.isprintable()
    if isinstance(value, dict):
        return all(_printable(k) and _printable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_printable(v) for v in value)
    return True


def _plain_data(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_data(v) for v in value]
    return value


def _flow_list(arr: np.ndarray) -> str:
    if arr.ndim == 0:
        return _num(float(arr))
    return "[" + ", ".join(_flow_list(a) for a in arr) + "]"


def _numpy_block(arr: np.ndarray) -> str:
    body = np.array2string(
        arr,
        separator=", ",
        threshold=sys.maxsize,
        max_line_width=100,
        formatter={"float_kind": lambda v: repr(float(v))},
        prefix="array(",
    )
    lines = f"array({body})".splitlines()
    return "|\n" + "\n".join("  " + ln.rstrip() for ln in lines)


def _value(value: float | np.ndarray, flavor: Flavor) -> str:
    if isinstance(value, np.ndarray) and value.ndim:
        return _flow_list(value) if flavor == "parafit" else _numpy_block(value)
    return _num(float(value))


def _unit_text(unit: Unit, extractor: Extractor, flavor: Flavor) -> str | None:
    if flavor == "parafit":
        return _scalar_unit(unit.label, _num(unit.factor))
    default = extractor.params_default_unit
    if unit.label == default.label and math.isclose(
        unit.factor, default.factor, rel_tol=1e-12
    ):
        return None
    factor = _params_factor(unit.factor, extractor.params_default_factor)
    return _scalar_unit(unit.label, _num(factor))


def _scalar_unit(label: str, factor: str) -> str:
    text = f"{label}, {factor}"
    if (
        re.fullmatch(r"[A-Za-z_(][A-Za-z0-9_()*/^.+ -]*", label)
        and label == label.strip()
    ):
        return text
    return _quoted(text)


def data_set_to_yaml(data_set: DataSet, *, flavor: Flavor = "parafit") -> str:
    """YAML text of a data set in the given flavour (see the module docstring)."""
    if flavor not in ("parafit", "params"):
        raise InputError(
            f"unknown data-set flavor {flavor!r}; use 'parafit' or 'params'.",
            key="flavor",
        )
    extra = {
        k: v
        for k, v in data_set.header.items()
        if k not in ("dtype", "format", "version", "units")
    }
    if flavor == "parafit":
        header = {**_PARAFIT_HEADER, **extra}
    else:
        version = data_set.header.get("version")
        if not isinstance(version, str) or data_set.header.get("format") == "parafit":
            version = _PARAMS_VERSION
        header = {"dtype": "DataSet", "version": version, **extra}
    parts = ["---\n" + _dump(header)]
    for entry, plan in zip(data_set.entries, data_set.plans, strict=True):
        extractor = EXTRACTORS.get(plan.calls[0].extractor)
        lines = [
            "---",
            f"Expression: {_scalar(entry.expression)}",
            f"Weight: {_value(entry.weight, flavor)}",
        ]
        if entry.reference is not None:
            lines.append(f"ReferenceValue: {_value(entry.reference, flavor)}")
        lines.append(f"Sigma: {_num(entry.sigma)}")
        unit = _unit_text(entry.unit, extractor, flavor)
        if unit is not None:
            lines.append(f"Unit: {unit}")
        text = "\n".join(lines) + "\n"
        if entry.metadata:
            clash = [k for k in entry.metadata if k in _KEYS]
            if clash:
                raise InputError(
                    f"entry {entry.expression!r}: metadata key {clash[0]!r} is reserved.",
                    key=entry.expression,
                )
            text += _dump(dict(entry.metadata))
        parts.append(text)
    parts.append("...\n")
    return "".join(parts)


def write_data_set(
    data_set: DataSet, path: str | Path, *, flavor: Flavor = "parafit"
) -> None:
    """Write a data set atomically (temporary file + rename) in the given flavour."""
    write_text_atomic(path, data_set_to_yaml(data_set, flavor=flavor))
