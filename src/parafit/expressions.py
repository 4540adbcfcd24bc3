"""Data-set expressions: arithmetic over extractor calls, parsed once into a plan.

An expression such as ``energy('a')/2 - energy('b')`` is parsed with Python's
:mod:`ast` (``mode="eval"``) and checked against a strict whitelist: numbers,
``+ - * /``, unary ``+``/``-``, parentheses, and calls of registered extractors by
plain name whose arguments are literals (a job-id string first, then numbers,
strings, ``True``/``False``/``None``, tuples or lists of integers, and literal
keyword arguments). Nothing is ever passed to ``eval``/``exec``. The result is a
:class:`Plan`: the unique extractor :class:`Call` s, a small tree to evaluate over
batched call values, and, when the expression is affine in its calls, the
coefficients so that a data set can evaluate it with one sparse matrix product.
Numbers in expressions are in internal units (eV, Å, ...).
:meth:`Plan.evaluate_jvp` also carries derivatives through the tree (exact forward
mode), which gives the parameter gradients of entries that are not affine.
"""

import ast
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parafit.errors import ExpressionError
from parafit.errors import UnknownNameError as _UnknownNameError
from parafit.extractors import EXTRACTORS, Extractor

__all__ = ["Call", "Plan", "parse_expression"]

MAX_LENGTH = 20_000  # characters
_MAX_DEPTH = 200  # nesting of the expression tree

_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}

_NODE_NAMES = {
    "Attribute": "attribute access",
    "Subscript": "subscript",
    "Name": "a bare name",
    "Lambda": "lambda",
    "ListComp": "list comprehension",
    "SetComp": "set comprehension",
    "DictComp": "dict comprehension",
    "GeneratorExp": "generator expression",
    "Compare": "comparison",
    "BoolOp": "boolean operator",
    "IfExp": "conditional expression",
    "NamedExpr": "assignment expression",
    "Starred": "starred argument",
    "JoinedStr": "f-string",
    "Dict": "dict",
    "Set": "set",
    "List": "list",
    "Tuple": "tuple",
    "Await": "await",
    "Yield": "yield",
    "Slice": "slice",
}


@dataclass(frozen=True, slots=True)
class Call:
    """One extractor call in an expression.

    Attributes:
        extractor: canonical extractor name (aliases resolved), e.g. ``"angle"``.
        job_id: the first argument.
        args: the other positional arguments, after the extractor's normalization
            (e.g. ``angles('j', (1, 0, 2))`` -> ``(1, 0, 2)``).
        kwargs: keyword arguments as sorted ``(name, value)`` pairs.
    """

    extractor: str
    job_id: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs_dict(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def __str__(self) -> str:
        parts = [
            repr(self.job_id),
            *map(repr, self.args),
            *(f"{k}={v!r}" for k, v in self.kwargs),
        ]
        return f"{self.extractor}({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class Plan:
    """A parsed expression.

    Attributes:
        text: the expression as given.
        calls: the unique extractor calls, in order of first appearance.
        linear: when the expression is affine in its calls, ``((coefficient,
            call_index), ...)`` so that value = constant + sum(coefficient *
            calls[call_index]) (elementwise, with numpy broadcasting between call
            values); None otherwise.
        constant: the affine constant (0.0 when ``linear`` is None).
        canonical: normalized text (``ast.unparse``), used to detect duplicates.
    """

    text: str
    calls: tuple[Call, ...]
    linear: tuple[tuple[float, int], ...] | None
    constant: float
    canonical: str
    tree: tuple[Any, ...] = field(repr=False, compare=False)

    @property
    def job_ids(self) -> tuple[str, ...]:
        """Job ids used, unique, in order of first appearance."""
        return tuple(dict.fromkeys(c.job_id for c in self.calls))

    @property
    def extractors(self) -> tuple[str, ...]:
        """Canonical extractor names used, unique, in order of first appearance."""
        return tuple(dict.fromkeys(c.extractor for c in self.calls))

    def evaluate(self, values: Sequence[np.ndarray]) -> np.ndarray:
        """Evaluate over batched call values.

        Args:
            values: ``values[i]`` is the value of ``calls[i]``, shape
                (n_vectors, *shape_i). Scalars and arrays broadcast over the trailing
                axes (a (n_vectors,) value combines with a (n_vectors, 3) one).

        Returns:
            (n_vectors, *shape) array; a 0-d array for an expression without calls.
            Division by zero gives inf/NaN, never an exception.

        Example:
            >>> import numpy as np
            >>> plan = parse_expression("energy('a')/2 - energy('b')")
            >>> plan.evaluate([np.array([4.0, 6.0]), np.array([1.0, 1.0])])
            array([1., 2.])
        """
        if len(values) != len(self.calls):
            raise ValueError(f"expected {len(self.calls)} values, got {len(values)}")
        arrays = [np.asarray(v, dtype=float) for v in values]
        if arrays:
            ndim = max(a.ndim for a in arrays)
            arrays = [
                a.reshape(a.shape[:1] + (1,) * (ndim - a.ndim) + a.shape[1:])
                if a.ndim
                else a
                for a in arrays
            ]
        with np.errstate(all="ignore"):
            return np.asarray(_evaluate(self.tree, arrays))

    def evaluate_jvp(
        self, values: Sequence[np.ndarray], tangents: Sequence[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Value and derivative (forward mode, exact) over batched call values.

        Args:
            values: as for :meth:`evaluate`, ``values[i]`` of shape (n_vectors, *shape_i).
            tangents: ``tangents[i]`` of shape (n_vectors, *shape_i, n_grad), the
                derivative of ``values[i]`` along each of n_grad directions.

        Returns:
            (value, tangent): value as :meth:`evaluate`, (n_vectors, *shape); tangent
            (n_vectors, *shape, n_grad), by the sum, product and quotient rules.

        Example:
            >>> import numpy as np
            >>> plan = parse_expression("energy('a') * energy('b')")
            >>> v, t = plan.evaluate_jvp([np.array([2.0]), np.array([3.0])],
            ...                          [np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])])
            >>> v.tolist(), t.tolist()
            ([6.0], [[3.0, 2.0]])
        """
        if len(values) != len(self.calls) or len(tangents) != len(self.calls):
            raise ValueError(
                f"expected {len(self.calls)} values and tangents, got {len(values)} and {len(tangents)}"
            )
        arrays = [np.asarray(v, dtype=float) for v in values]
        dots = [np.asarray(t, dtype=float) for t in tangents]
        n_grad = dots[0].shape[-1] if dots else 0
        if arrays:
            ndim = max(a.ndim for a in arrays)
            pad = [(1,) * (ndim - a.ndim) for a in arrays]
            arrays = [
                a.reshape(a.shape[:1] + p + a.shape[1:]) if a.ndim else a
                for a, p in zip(arrays, pad, strict=True)
            ]
            dots = [
                t.reshape(t.shape[:1] + p + t.shape[1:]) if t.ndim > 1 else t
                for t, p in zip(dots, pad, strict=True)
            ]
        with np.errstate(all="ignore"):
            value, dot = _jvp(self.tree, arrays, dots)
            value = np.asarray(value)
            if dot is None:
                dot = np.zeros((*value.shape, n_grad))
            return value, np.broadcast_to(dot, (*value.shape, n_grad)).copy()


_Dual = tuple[Any, "np.ndarray | None"]


def _jvp(
    node: tuple[Any, ...], values: list[np.ndarray], dots: list[np.ndarray]
) -> _Dual:
    """(value, tangent with a trailing n_grad axis, or None for a constant)."""
    kind = node[0]
    if kind == "n":
        return np.float64(node[1]), None
    if kind == "c":
        return values[node[1]], dots[node[1]]
    if kind in ("neg", "pos"):
        v, d = _jvp(node[1], values, dots)
        if kind == "pos":
            return +v, d
        return -v, None if d is None else -d
    a, da = _jvp(node[1], values, dots)
    b, db = _jvp(node[2], values, dots)
    if kind in ("+", "-"):
        s = 1.0 if kind == "+" else -1.0
        return (a + b if kind == "+" else a - b), _add(
            da, None if db is None else s * db
        )
    ea, eb = np.asarray(a)[..., None], np.asarray(b)[..., None]
    if kind == "*":
        return a * b, _add(
            None if da is None else da * eb, None if db is None else ea * db
        )
    return a / b, _add(
        None if da is None else da / eb, None if db is None else -ea * db / (eb * eb)
    )


def _add(x: np.ndarray | None, y: np.ndarray | None) -> np.ndarray | None:
    """Sum of two tangents, None standing for zero."""
    if x is None:
        return y
    return x if y is None else x + y


def _evaluate(node: tuple[Any, ...], values: list[np.ndarray]) -> Any:
    kind = node[0]
    if kind == "n":
        return np.float64(node[1])
    if kind == "c":
        return values[node[1]]
    if kind == "neg":
        return -_evaluate(node[1], values)
    if kind == "pos":
        return +_evaluate(node[1], values)
    a = _evaluate(node[1], values)
    b = _evaluate(node[2], values)
    if kind == "+":
        return a + b
    if kind == "-":
        return a - b
    if kind == "*":
        return a * b
    return a / b


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2, "neg": 3, "pos": 3, "n": 4, "c": 4}


def _unparse(node: tuple[Any, ...], calls: tuple[Call, ...]) -> str:
    """Text of a tree with normalized calls and only the parentheses needed."""
    kind = node[0]
    if kind == "n":
        return repr(node[1])
    if kind == "c":
        return str(calls[node[1]])
    prec = _PRECEDENCE[kind]
    if kind in ("neg", "pos"):
        inner = _unparse(node[1], calls)
        if _PRECEDENCE[node[1][0]] < prec:
            inner = f"({inner})"
        return ("-" if kind == "neg" else "+") + inner
    left, right = _unparse(node[1], calls), _unparse(node[2], calls)
    if _PRECEDENCE[node[1][0]] < prec:
        left = f"({left})"
    if _PRECEDENCE[node[2][0]] <= prec:
        right = f"({right})"
    return f"{left} {kind} {right}"


def _affine(node: tuple[Any, ...]) -> tuple[dict[int, float], float] | None:
    """``({call_index: coefficient}, constant)`` if ``node`` is affine in its calls."""
    kind = node[0]
    if kind == "n":
        return {}, float(node[1])
    if kind == "c":
        return {node[1]: 1.0}, 0.0
    if kind in ("neg", "pos"):
        inner = _affine(node[1])
        if inner is None:
            return None
        s = -1.0 if kind == "neg" else 1.0
        return {k: s * v for k, v in inner[0].items()}, s * inner[1]
    a, b = _affine(node[1]), _affine(node[2])
    if a is None or b is None:
        return None
    if kind in ("+", "-"):
        s = 1.0 if kind == "+" else -1.0
        coef = dict(a[0])
        for k, v in b[0].items():
            coef[k] = coef.get(k, 0.0) + s * v
        return coef, a[1] + s * b[1]
    if kind == "*":
        if a[0] and b[0]:
            return None
        scalar, other = (a[1], b) if not a[0] else (b[1], a)
        return {k: scalar * v for k, v in other[0].items()}, scalar * other[1]
    # division: only by a constant that is not zero
    if b[0] or b[1] == 0.0:
        return None
    return {k: v / b[1] for k, v in a[0].items()}, a[1] / b[1]


@functools.lru_cache(maxsize=4096)
def _bind_problem(
    extractor: Extractor, n_args: int, kwarg_names: tuple[str, ...]
) -> str | None:
    """Why ``n_args`` positional and these keyword arguments do not fit, or None."""
    try:
        extractor.signature.bind(
            None, None, *([None] * n_args), **dict.fromkeys(kwarg_names)
        )
    except TypeError as err:
        return str(err)
    return None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.offset = len(text) - len(text.lstrip())  # columns lost by stripping
        self.calls: dict[Call, int] = {}

    def error(
        self,
        message: str,
        node: ast.AST | None = None,
        column: int | None = None,
        *,
        hint: bool = True,
    ) -> ExpressionError:
        if column is None and node is not None:
            column = getattr(node, "col_offset", -1) + 1
        if column:
            column += self.offset
        where = f"expression {self.text!r}" + (f", column {column}" if column else "")
        text = f"{where}: {message}"
        if hint:
            text += (
                ". Expressions may only hold numbers, + - * /, parentheses and extractor "
                "calls with literal arguments, such as energy('job_id') - energy('other')."
            )
        err = ExpressionError(text, entry=self.text)
        err.column = column or None  # type: ignore[attr-defined]
        return err

    def describe(self, node: ast.AST) -> str:
        name = type(node).__name__
        return _NODE_NAMES.get(name, name)

    def node(self, node: ast.AST, depth: int = 0) -> tuple[Any, ...]:
        if depth > _MAX_DEPTH:
            raise self.error(f"expression nested deeper than {_MAX_DEPTH} levels", node)
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool) or not isinstance(value, int | float):
                what = (
                    "a string" if isinstance(value, str) else f"the constant {value!r}"
                )
                raise self.error(
                    f"{what} is only allowed as an extractor argument", node
                )
            return ("n", float(value))
        if isinstance(node, ast.BinOp):
            op = _OPS.get(type(node.op))
            if op is None:
                raise self.error(
                    f"operator {type(node.op).__name__} is not allowed (only + - * /)",
                    node,
                )
            return (
                op,
                self.node(node.left, depth + 1),
                self.node(node.right, depth + 1),
            )
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return ("neg", self.node(node.operand, depth + 1))
            if isinstance(node.op, ast.UAdd):
                return ("pos", self.node(node.operand, depth + 1))
            raise self.error(
                f"unary operator {type(node.op).__name__} is not allowed", node
            )
        if isinstance(node, ast.Call):
            return ("c", self.call(node))
        raise self.error(f"{self.describe(node)} is not allowed", node)

    def literal(self, node: ast.AST, *, allow_sequence: bool) -> Any:
        if isinstance(node, ast.Constant):
            value = node.value
            if value is None or isinstance(value, bool | int | float | str):
                return value
            raise self.error(f"argument {value!r} is not allowed", node)
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub | ast.UAdd)
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, int | float)
            and not isinstance(node.operand.value, bool)
        ):
            v = node.operand.value
            return -v if isinstance(node.op, ast.USub) else v
        if allow_sequence and isinstance(node, ast.Tuple | ast.List):
            items = [self.literal(e, allow_sequence=False) for e in node.elts]
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
                raise self.error(
                    "tuples and lists in arguments may only hold integers", node
                )
            return tuple(items)
        raise self.error(
            f"extractor arguments must be literals; {self.describe(node)} is not allowed",
            node,
        )

    def call(self, node: ast.Call) -> int:
        if not isinstance(node.func, ast.Name):
            raise self.error(
                f"only calls of extractors by plain name are allowed; {self.describe(node.func)} is not",
                node.func,
            )
        name = node.func.id
        try:
            extractor = EXTRACTORS.get(name)
        except _UnknownNameError as err:
            raise self.error(str(err), node, hint=False) from None
        if not node.args:
            raise self.error(
                f"{name}() needs a job id string as its first argument", node
            )
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            raise self.error(
                f"the first argument of {name}() must be a job id string", first
            )
        args = tuple(self.literal(a, allow_sequence=True) for a in node.args[1:])
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.error("**keyword unpacking is not allowed", kw.value)
            kwargs[kw.arg] = self.literal(kw.value, allow_sequence=True)
        if extractor.normalize is not None:
            args, kwargs = extractor.normalize(args, kwargs)
        problem = _bind_problem(extractor, len(args), tuple(sorted(kwargs)))
        if problem is not None:
            raise self.error(
                f"wrong arguments for {name}(): {problem}. Usage: {extractor.usage()}.",
                node,
                hint=False,
            )
        call = Call(
            extractor.name, first.value, tuple(args), tuple(sorted(kwargs.items()))
        )
        return self.calls.setdefault(call, len(self.calls))


def parse_expression(text: str) -> Plan:
    """Parse a data-set expression into a :class:`Plan` (cached; plans are immutable).

    Args:
        text: e.g. ``"energy('a') - energy('b')"``.

    Raises:
        ExpressionError: for syntax errors, anything outside the whitelist (the
            message names it and its 1-based column, also in ``.column``) and
            unknown extractors (with a suggestion and the known names).

    Example:
        >>> plan = parse_expression("+energy('a')/1 - energy('b')/2")
        >>> [str(c) for c in plan.calls], plan.linear, plan.constant
        (["energy('a')", "energy('b')"], ((1.0, 0), (-0.5, 1)), 0.0)
    """
    if not isinstance(text, str):
        raise ExpressionError(
            f"an expression must be a string; got {text!r}.", entry=str(text)
        )
    return _parse_cached(text)


@functools.lru_cache(maxsize=100_000)
def _parse_cached(text: str) -> Plan:
    parser = _Parser(text)
    if not text.strip():
        raise parser.error("empty expression")
    if len(text) > MAX_LENGTH:
        raise parser.error(f"expression longer than {MAX_LENGTH} characters")
    try:
        module = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise parser.error(f"syntax error: {err.msg}", column=err.offset) from None
    except (RecursionError, MemoryError, ValueError) as err:
        raise parser.error(f"cannot parse: {type(err).__name__}") from None
    try:
        tree = parser.node(module.body)
    except RecursionError:
        raise parser.error(
            f"expression nested deeper than {_MAX_DEPTH} levels"
        ) from None
    calls = tuple(parser.calls)
    affine = _affine(tree)
    if affine is None:
        linear, constant = None, 0.0
    else:
        linear = tuple((coef, index) for index, coef in sorted(affine[0].items()))
        constant = affine[1]
    return Plan(
        text=text,
        calls=calls,
        linear=linear,
        constant=constant,
        canonical=_unparse(tree, calls),
        tree=tree,
    )
