"""Tests for parafit.expressions: whitelist parser, plans, affine detection."""

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from parafit.errors import ExpressionError, InputError
from parafit.expressions import Call, parse_expression


def test_params_spellings_parse_to_canonical_calls() -> None:
    plan = parse_expression('+energy("hsh-SH1.15")/1-energy("hshBase")/1')
    assert plan.calls == (Call("energy", "hsh-SH1.15"), Call("energy", "hshBase"))
    assert plan.linear == ((1.0, 0), (-1.0, 1))
    assert plan.constant == 0.0
    assert plan.job_ids == ("hsh-SH1.15", "hshBase")
    assert plan.extractors == ("energy",)

    old = parse_expression('angles("hsshGeo",(1,0,2))')
    new = parse_expression("angle('hsshGeo', 1, 0, 2)")
    assert old.calls == new.calls == (Call("angle", "hsshGeo", (1, 0, 2)),)
    assert old.canonical == new.canonical

    assert parse_expression('forces("dmds", 0, 2)').calls[0].args == (0, 2)
    assert parse_expression("lattice('c', 1)").calls[0].extractor == "cell_lengths"
    assert parse_expression('dihedral("mdtBase",2,1,0,3)').calls[0].args == (2, 1, 0, 3)


def test_keyword_arguments_are_literal_and_sorted() -> None:
    plan = parse_expression("distance('x', 1, 0, mic=False)")
    assert plan.calls[0].kwargs == (("mic", False),)
    plan = parse_expression("pes('scan', relative_to='first')")
    assert plan.calls[0].kwargs_dict == {"relative_to": "first"}


def test_repeated_calls_are_evaluated_once() -> None:
    plan = parse_expression("energy('a') - energy('a')/2 + energy('b')")
    assert len(plan.calls) == 2
    assert plan.linear == ((0.5, 0), (1.0, 1))


@pytest.mark.parametrize(
    ("text", "linear", "constant"),
    [
        ("energy('a')", ((1.0, 0),), 0.0),
        ("-energy('a')", ((-1.0, 0),), 0.0),
        ("2*(energy('a') - energy('b'))/4 + 1", ((0.5, 0), (-0.5, 1)), 1.0),
        ("(energy('a') + 3) * -2", ((-2.0, 0),), -6.0),
        ("energy('a') * energy('b')", None, 0.0),
        ("1 / energy('a')", None, 0.0),
        ("energy('a') / 0", None, 0.0),
        ("forces('a') - forces('b')", ((1.0, 0), (-1.0, 1)), 0.0),
    ],
)
def test_affine_detection(text: str, linear: object, constant: float) -> None:
    plan = parse_expression(text)
    assert plan.linear == linear
    assert plan.constant == constant


def test_evaluate_broadcasts_scalars_over_vector_calls() -> None:
    plan = parse_expression("forces('a') * 2 - energy('b')")
    f = np.arange(2 * 4 * 3, dtype=float).reshape(2, 4, 3)
    e = np.array([1.0, 10.0])
    np.testing.assert_array_equal(plan.evaluate([f, e]), f * 2 - e[:, None, None])


def test_evaluate_divide_by_zero_gives_inf_not_error() -> None:
    plan = parse_expression("energy('a') / (energy('b') - energy('b'))")
    out = plan.evaluate([np.array([1.0, 0.0]), np.array([2.0, 2.0])])
    assert out[0] == np.inf and np.isnan(out[1])


def test_evaluate_checks_number_of_values() -> None:
    with pytest.raises(ValueError, match="expected 2 values"):
        parse_expression("energy('a') - energy('b')").evaluate([np.zeros(1)])


@pytest.mark.parametrize(
    ("text", "fragment", "column"),
    [
        ("energy('a').real", "attribute access", 1),
        ("energy('a')[0]", "subscript", 1),
        ("x + energy('a')", "bare name", 1),
        ("energy('a') + y", "bare name", 15),
        ("lambda: 1", "lambda", 1),
        ("[e for e in 'ab']", "list comprehension", 1),
        ("energy('a')**2", "Pow", 1),
        ("energy('a') // 2", "FloorDiv", 1),
        ("energy('a') < 1", "comparison", 1),
        ("'abc'", "string", 1),
        ("energy('a') + 'b'", "string", 15),
        ("True", "constant True", 1),
        ("1j", "constant 1j", 1),
        ("energy(1)", "job id string", 8),
        ("energy()", "job id string", 1),
        ("energy(job)", "job id string", 8),
        ("energy('a', x)", "literals", 13),
        ("energy('a', **k)", "keyword unpacking", 15),
        ("forces('a', (1.5, 2))", "integers", 13),
        ("angle('a', 1, 2)", "missing a required argument", 1),
        ("distance('a', 1, 2, foo=3)", "unexpected keyword", 1),
        ("energy('a') +", "syntax error", None),
        ("", "empty", None),
        ("   ", "empty", None),
        ("~energy('a')", "Invert", 1),
        ("energy('a') if 1 else 2", "conditional", 1),
        ("  x", "bare name", 3),
    ],
)
def test_rejected_syntax(text: str, fragment: str, column: int | None) -> None:
    with pytest.raises(ExpressionError, match=fragment) as info:
        parse_expression(text)
    err = info.value
    assert isinstance(err, InputError)
    assert err.entry == text
    if column is not None:
        assert err.column == column  # type: ignore[attr-defined]
        assert f"column {column}" in str(err)


def test_unknown_extractor_suggests_and_lists_known() -> None:
    with pytest.raises(ExpressionError, match="did you mean 'energy'") as info:
        parse_expression("enrgy('h2o')")
    message = str(info.value)
    assert "Known: angle" in message and "register_extractor" in message
    assert info.value.entry == "enrgy('h2o')"


def test_non_string_expression() -> None:
    with pytest.raises(ExpressionError, match="must be a string"):
        parse_expression(3)  # type: ignore[arg-type]


def test_too_long_or_too_deep_expressions_are_rejected() -> None:
    with pytest.raises(ExpressionError, match="longer than"):
        parse_expression("+".join(["energy('a')"] * 3000))
    with pytest.raises(ExpressionError):
        parse_expression("(" * 500 + "energy('a')" + ")" * 500)
    with pytest.raises(ExpressionError, match="nested deeper"):
        parse_expression("-" * 400 + "energy('a')")


INJECTIONS = [
    "__import__('os').system('touch {p}')",
    "energy(__import__('os').system('touch {p}'))",
    "energy('a', __import__('os').system('touch {p}'))",
    "open('{p}', 'w').write('x')",
    "energy('a') + open('{p}', 'w').write('x')",
    "energy('a', open('{p}', 'w'))",
    "(lambda: open('{p}', 'w'))()",
    "[c for c in ().__class__.__bases__[0].__subclasses__()]",
    "energy(f\"{{open('{p}', 'w')}}\")",
    "energy('a', mic=open('{p}', 'w'))",
    "exec(\"open('{p}', 'w')\")",
    "eval(\"open('{p}', 'w')\")",
    "energy('a'); open('{p}', 'w')",
    "energy('a')\nopen('{p}', 'w')",
    "energy(*[open('{p}', 'w')])",
    "energy(**{{'x': open('{p}', 'w')}})",
]


@pytest.mark.parametrize("template", INJECTIONS)
def test_injected_code_is_rejected_and_never_executed(
    tmp_path: Path, template: str
) -> None:
    target = tmp_path / "pwned"
    text = template.format(p=target)
    with pytest.raises(ExpressionError):
        parse_expression(text)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------- properties

_numbers = st.floats(
    min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False
)


def _trees(depth: int = 4) -> st.SearchStrategy:
    leaf = _numbers.map(lambda x: ("n", abs(x)))
    return st.recursive(
        leaf,
        lambda sub: st.one_of(
            st.tuples(st.sampled_from(["+", "-", "*", "/"]), sub, sub),
            st.tuples(st.sampled_from(["neg", "pos"]), sub),
        ),
        max_leaves=12,
    )


def _render(tree: tuple) -> str:
    kind = tree[0]
    if kind == "n":
        return repr(tree[1])
    if kind in ("neg", "pos"):
        return ("-" if kind == "neg" else "+") + "(" + _render(tree[1]) + ")"
    return "(" + _render(tree[1]) + f" {kind} " + _render(tree[2]) + ")"


def _direct(tree: tuple) -> float:
    kind = tree[0]
    if kind == "n":
        return tree[1]
    if kind == "neg":
        return -_direct(tree[1])
    if kind == "pos":
        return +_direct(tree[1])
    a, b = _direct(tree[1]), _direct(tree[2])
    return {"+": a + b, "-": a - b, "*": a * b}[kind] if kind != "/" else a / b


@settings(max_examples=200, deadline=None)
@given(_trees())
def test_number_trees_agree_with_python_arithmetic(tree: tuple) -> None:
    try:
        expected = _direct(tree)
    except (ZeroDivisionError, OverflowError):
        assume(False)
    assume(math.isfinite(expected))
    plan = parse_expression(_render(tree))
    assert plan.calls == ()
    got = float(plan.evaluate([]))
    assert got == expected or (math.isnan(got) and math.isnan(expected))
    assert plan.linear == () and math.isclose(
        plan.constant, expected, rel_tol=1e-9, abs_tol=1e-9
    )


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(_numbers, st.sampled_from(["a", "b", "c"])), min_size=1, max_size=6
    ),
    _numbers,
    st.lists(_numbers, min_size=3, max_size=3),
)
def test_affine_coefficients_agree_with_evaluate(
    terms: list, constant: float, values: list
) -> None:
    text = (
        " + ".join(f"{c!r} * energy('{j}')" for c, j in terms) + f" - {abs(constant)!r}"
    )
    plan = parse_expression(text)
    assert plan.linear is not None
    arrays = [np.array([values["abc".index(c.job_id)]]) for c in plan.calls]
    direct = plan.evaluate(arrays)[0]
    affine = plan.constant + sum(coef * arrays[i][0] for coef, i in plan.linear)
    assert math.isclose(direct, affine, rel_tol=1e-9, abs_tol=1e-6 * (1 + abs(direct)))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_parses_or_raises_expression_error(text: str) -> None:
    try:
        parse_expression(text)
    except ExpressionError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.text(
        alphabet="energy()'ab+-*/ 0123.,_[]{}:=lambdimportos\"",
        max_size=40,
    )
)
def test_expression_alphabet_fuzz(text: str) -> None:
    try:
        plan = parse_expression(text)
    except ExpressionError:
        return
    assert all(c.extractor == "energy" for c in plan.calls)
    if "inf" not in plan.canonical and "nan" not in plan.canonical:
        again = parse_expression(plan.canonical)
        assert again.calls == plan.calls and again.canonical == plan.canonical
