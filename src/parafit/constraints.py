"""Parameter constraints: inequalities between parameters, checked before evaluation.

A constraint is a string over parameter names, as in ParAMS (whose ``Constraints``
compare parameter objects): ``"p['Ar.Ar:rmin'] > p['Ar.Ne:rmin'] + 0.1"``,
``"p['a'] <= 0.5 * p['b']"``, or with bare names where a name is a Python identifier,
``"a < 2*b"``. Allowed: numbers, ``+ - * /``, unary ``-``/``+``, parentheses,
``p['name']`` or bare names, and one comparison with ``<``, ``<=``, ``>``, ``>=``
(chains such as ``"0 < a - b < 1"`` too). ``==``/``!=``, calls, attributes and any
other syntax are rejected, and a parameter may not appear in a denominator. The text
is parsed once with :mod:`ast` and never evaluated by Python.

Candidate vectors that violate a constraint are not evaluated: the task gives them an
infinite loss. Unlike ParAMS (which ignores them), constraints over inactive
parameters only are still evaluated; they are then constant, either always true or
(a setup mistake worth reporting) always false. Sides may hold any number of
operations (ParAMS allows one).
"""

import ast
import difflib
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, final

import numpy as np

from parafit.errors import InputError

if TYPE_CHECKING:
    from parafit.parameters import ParameterInterface

__all__ = ["Constraint", "constraints_mask", "parse_constraint", "parse_constraints"]

_BINARY: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_COMPARE: dict[type, tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
}

# A compiled expression is a tree of tuples (picklable, no closures):
#   ("num", value) | ("par", index) | ("neg", node) | ("bin", op type, left, right)
_Node = tuple


@final
@dataclass(frozen=True, slots=True)
class Constraint:
    """One parsed constraint over the parameters of an interface.

    Attributes:
        text: the constraint as written.
        names: parameter names it refers to, in order of first use.
        indices: their positions in the interface, shape (len(names),).
        n_params: number of parameters of the interface it was parsed against.

    Example:
        >>> from parafit.parameters import Parameter, ParameterInterface
        >>> iface = ParameterInterface([Parameter("a", 1.0), Parameter("b", 2.0)])
        >>> c = parse_constraint("p['a'] < 0.5 * b", iface)
        >>> c.is_satisfied(np.array([[0.9, 2.0], [1.1, 2.0]])).tolist()
        [True, False]
    """

    text: str
    names: tuple[str, ...]
    indices: tuple[int, ...]
    n_params: int
    _operands: tuple[_Node, ...]
    _comparators: tuple[str, ...]

    def is_satisfied(self, values: np.ndarray) -> np.ndarray:
        """Whether each vector satisfies the constraint.

        Args:
            values: (n_vectors, n_params) or (n_params,) real parameter values (all
                parameters, in the model's units, not scaled).

        Returns:
            (n_vectors,) bool array (a 0-d array for one vector). A NaN value gives False.
        """
        arr = np.asarray(values, dtype=float)
        if arr.shape[-1:] != (self.n_params,):
            raise ValueError(
                f"constraint {self.text!r}: expected values of shape (n_vectors, {self.n_params}); got {arr.shape}."
            )
        sides = [_evaluate(node, arr) for node in self._operands]
        ok = np.ones(arr.shape[:-1], dtype=bool)
        for symbol, left, right in zip(
            self._comparators, sides[:-1], sides[1:], strict=True
        ):
            ok &= _SYMBOL_OPS[symbol](left, right)
        return ok

    def involves_active(self, interface: "ParameterInterface") -> bool:
        """Whether any of its parameters is active in ``interface`` (else it is constant)."""
        return any(interface[i].is_active for i in self.indices)

    def __str__(self) -> str:
        return self.text


_SYMBOL_OPS = {symbol: fn for symbol, fn in _COMPARE.values()}


def _evaluate(node: _Node, values: np.ndarray) -> np.ndarray:
    kind = node[0]
    if kind == "num":
        return np.full(values.shape[:-1], node[1])
    if kind == "par":
        return values[..., node[1]]
    if kind == "neg":
        return -_evaluate(node[1], values)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _BINARY[node[1]](_evaluate(node[2], values), _evaluate(node[3], values))


def parse_constraint(text: str, interface: "ParameterInterface") -> Constraint:
    """Parse one constraint string against the parameter names of ``interface``.

    Args:
        text: e.g. ``"p['Ar.Ar:rmin'] > p['Ar.Ne:rmin'] + 0.1"`` or ``"a < 2*b"``.
        interface: the parameter interface whose names the constraint uses.

    Returns:
        The parsed :class:`Constraint`.

    Raises:
        InputError: disallowed syntax (``.key`` is the text) or an unknown parameter
            (``.key`` is the name; the message suggests a close one).
    """
    if not isinstance(text, str) or not text.strip():
        raise InputError(
            f"a constraint must be a non-empty string; got {text!r}.", key=str(text)
        )
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as err:
        raise InputError(
            f"constraint {text!r} is not valid syntax: {err.msg}.", key=text
        ) from err
    body = tree.body
    if not isinstance(body, ast.Compare):
        raise InputError(
            f"constraint {text!r} must compare two expressions with <, <=, > or >=, "
            "e.g. \"p['a'] < 2 * p['b']\".",
            key=text,
        )
    comparators: list[str] = []
    for op in body.ops:
        if type(op) not in _COMPARE:
            raise InputError(
                f"constraint {text!r}: only <, <=, > and >= are allowed; got {_op_text(op)!r}.",
                key=text,
            )
        comparators.append(_COMPARE[type(op)][0])
    builder = _Builder(text, interface)
    operands = tuple(builder.build(node) for node in (body.left, *body.comparators))
    return Constraint(
        text=text,
        names=tuple(builder.names),
        indices=tuple(interface.index(n) for n in builder.names),
        n_params=len(interface),
        _operands=operands,
        _comparators=tuple(comparators),
    )


def parse_constraints(
    texts: Iterable[str], interface: "ParameterInterface"
) -> tuple[Constraint, ...]:
    """Parse several constraints; all problems are reported together in one InputError.

    The error's ``.key`` is that of the first problem.
    """
    parsed: list[Constraint] = []
    errors: list[InputError] = []
    for text in texts:
        try:
            parsed.append(parse_constraint(text, interface))
        except InputError as err:
            errors.append(err)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        message = f"{len(errors)} bad constraints: " + " ".join(
            e.message for e in errors
        )
        raise InputError(message, key=errors[0].key) from errors[0]
    return tuple(parsed)


def constraints_mask(
    constraints: Sequence[Constraint], values: np.ndarray
) -> np.ndarray:
    """Whether each vector satisfies every constraint.

    Args:
        constraints: parsed constraints (an empty sequence allows everything).
        values: (n_vectors, n_params) real parameter values.

    Returns:
        (n_vectors,) bool array, True where all constraints hold.

    Example:
        >>> from parafit.parameters import Parameter, ParameterInterface
        >>> iface = ParameterInterface([Parameter("a", 1.0), Parameter("b", 2.0)])
        >>> cs = parse_constraints(["a < b", "a > 0"], iface)
        >>> constraints_mask(cs, np.array([[1.0, 2.0], [3.0, 2.0], [-1.0, 2.0]])).tolist()
        [True, False, False]
    """
    arr = np.asarray(values, dtype=float)
    ok = np.ones(arr.shape[:-1], dtype=bool)
    for c in constraints:
        ok &= c.is_satisfied(arr)
    return ok


def _op_text(op: ast.AST) -> str:
    return {
        ast.Eq: "==",
        ast.NotEq: "!=",
        ast.Is: "is",
        ast.IsNot: "is not",
        ast.In: "in",
        ast.NotIn: "not in",
    }.get(type(op), type(op).__name__)


@final
class _Builder:
    """Turns the AST of one side into a tuple tree, checking every node."""

    def __init__(self, text: str, interface: "ParameterInterface") -> None:
        self.text = text
        self.interface = interface
        self.names: list[str] = []

    def reject(self, node: ast.AST, what: str) -> InputError:
        snippet = ast.get_source_segment(self.text.strip(), node) or type(node).__name__
        return InputError(
            f"constraint {self.text!r}: {what} {snippet!r} is not allowed; use numbers, + - * /, "
            "parentheses and parameters as p['name'] (or a bare name).",
            key=self.text,
        )

    def parameter(self, name: str) -> _Node:
        if name not in self.interface:
            close = difflib.get_close_matches(name, list(self.interface.names), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise InputError(
                f"constraint {self.text!r}: unknown parameter {name!r}{hint}", key=name
            )
        if name not in self.names:
            self.names.append(name)
        return ("par", self.interface.index(name))

    def build(self, node: ast.AST) -> _Node:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise self.reject(node, "the constant")
            return ("num", float(node.value))
        if isinstance(node, ast.Name):
            return self.parameter(node.id)
        if isinstance(node, ast.Subscript):
            if (
                isinstance(node.value, ast.Name)
                and node.value.id == "p"
                and isinstance(node.slice, ast.Constant)
                and isinstance(node.slice.value, str)
            ):
                return self.parameter(node.slice.value)
            raise self.reject(node, "the subscript")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = self.build(node.operand)
            return ("neg", inner) if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left = self.build(node.left)
            right = self.build(node.right)
            if isinstance(node.op, ast.Div) and _has_parameter(right):
                raise InputError(
                    f"constraint {self.text!r}: a parameter may not be in a denominator; "
                    "multiply both sides instead (mind the sign).",
                    key=self.text,
                )
            return ("bin", type(node.op), left, right)
        if isinstance(node, ast.Compare):
            raise self.reject(node, "the nested comparison")
        what = {
            ast.Call: "the call",
            ast.Attribute: "the attribute access",
            ast.BinOp: "the operator",
            ast.BoolOp: "the boolean operator",
            ast.UnaryOp: "the operator",
        }.get(type(node), "the expression")
        raise self.reject(node, what)


def _has_parameter(node: _Node) -> bool:
    if node[0] == "par":
        return True
    if node[0] == "num":
        return False
    if node[0] == "neg":
        return _has_parameter(node[1])
    return _has_parameter(node[2]) or _has_parameter(node[3])
