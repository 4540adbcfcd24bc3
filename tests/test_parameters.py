"""Tests of the parameter interface: YAML round trip, default ranges, scaling, updates, errors."""

import math
import pickle

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from parafit.errors import FormatError, InputError
from parafit.parameters import YAML_KEYS, Parameter, ParameterInterface, default_range

FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
MODERATE = st.floats(
    min_value=-1e6,
    max_value=1e6,
    allow_nan=False,
    allow_infinity=False,
    allow_subnormal=False,
)


def lj_like() -> ParameterInterface:
    return ParameterInterface(
        [
            Parameter(
                "Ar.Ar:eps",
                0.0103,
                (0.005, 0.02),
                atoms=("Ar", "Ar"),
                block="LJ",
                block_index=0,
                category="standard",
                description="well depth",
                equation="4 eps ((s/r)^12 - (s/r)^6)",
            ),
            Parameter(
                "Ar.Ar:rmin", 3.82, atoms=("Ar", "Ar"), block="LJ", block_index=1
            ),
            Parameter(
                "GEN:cutoff",
                10.0,
                (8.0, 12.0),
                is_active=False,
                block="GEN",
                sensitivity=0.125,
            ),
            Parameter(
                "H:r_0^sigma;;2;;Sigma bond covalent radius",
                -0.5,
                (-1.0, 0.0),
                atoms=("H",),
            ),
        ],
        model="lj",
    )


# ---- YAML round trip -----------------------------------------------------------------


def test_yaml_round_trip_is_exact():
    iface = lj_like()
    text = iface.to_yaml()
    back = ParameterInterface.from_yaml(text)
    assert back == iface
    assert back.model == "lj"
    assert back.to_yaml() == text


def test_yaml_records_have_exactly_the_11_keys_in_order():
    assert len(YAML_KEYS) == 11
    doc = yaml.safe_load(lj_like().to_yaml())
    assert list(doc) == ["model", "parameters"]
    for record in doc["parameters"]:
        assert tuple(record) == YAML_KEYS
    assert lj_like().to_yaml().startswith("# parafit parameter interface\n")


def test_save_and_load(tmp_path):
    iface = lj_like()
    path = tmp_path / "parameter_interface.yaml"
    iface.save(path)
    assert ParameterInterface.load(path) == iface
    assert path.read_text() == iface.to_yaml()


def test_plain_list_of_records_and_minimal_records():
    text = "- {name: a, value: 2}\n- name: b\n  value: 0\n  is_active: false\n"
    iface = ParameterInterface.from_yaml(text)
    assert iface.names == ("a", "b")
    assert iface["a"].range == pytest.approx((1.6, 2.4))
    assert iface["b"].range == (-1.0, 1.0)
    assert iface.model == ""
    assert list(iface.is_active) == [True, False]


@settings(max_examples=60, deadline=None)
@given(
    value=FINITE,
    lo=FINITE,
    width=st.floats(min_value=1e-300, max_value=1e300),
    sensitivity=st.none() | FINITE,
    name=st.text(min_size=1, max_size=20).filter(
        lambda s: s.strip() == s and s.isprintable()
    ),
    block_index=st.none() | st.integers(-5, 10**6),
    is_active=st.booleans(),
)
def test_yaml_round_trip_property(
    value, lo, width, sensitivity, name, block_index, is_active
):
    hi = lo + width
    if not (math.isfinite(hi) and lo < hi):
        return
    p = Parameter(
        name,
        value,
        (lo, hi),
        is_active=is_active,
        atoms=("C", "H"),
        block="BND",
        block_index=block_index,
        description="d: 'q' #x",
        sensitivity=sensitivity,
    )
    iface = ParameterInterface([p, Parameter("other", 1.0)], model="reaxff")
    text = iface.to_yaml()
    back = ParameterInterface.from_yaml(text)
    assert back == iface
    assert back.to_yaml() == text


def test_numpy_scalars_are_stored_as_python_values():
    p = Parameter(
        "a",
        np.float64(1.5),
        (np.float32(1.0), 2),
        is_active=np.bool_(False),
        block_index=np.int64(3),
        sensitivity=np.float32(0.5),
    )
    assert (
        type(p.value) is float and type(p.block_index) is int and p.is_active is False
    )
    back = ParameterInterface.from_yaml(ParameterInterface([p]).to_yaml())
    assert back[0] == p


def test_pickle_round_trip():
    iface = lj_like()
    assert pickle.loads(pickle.dumps(iface)) == iface


# ---- default ranges ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (10.0, (8.0, 12.0)),
        (-2.5, (-3.0, -2.0)),
        (0.0, (-1.0, 1.0)),
        (1e-3, (8e-4, 1.2e-3)),
    ],
)
def test_default_range(value, expected):
    assert default_range(value) == pytest.approx(expected)
    assert Parameter("p", value).range == pytest.approx(expected)
    assert Parameter("p", value, range=None).range == pytest.approx(expected)
    assert Parameter.from_dict({"name": "p", "value": value}).range == pytest.approx(
        expected
    )


@given(MODERATE)
def test_default_range_contains_value(value):
    lo, hi = default_range(value)
    assert lo < hi
    assert lo <= value <= hi


# ---- scaling ---------------------------------------------------------------------------


def ranged_interface(
    ranges: list[tuple[float, float]], active: list[bool]
) -> ParameterInterface:
    return ParameterInterface(
        [
            Parameter(f"p{i}", (lo + hi) / 2, (lo, hi), is_active=a)
            for i, ((lo, hi), a) in enumerate(zip(ranges, active, strict=True))
        ]
    )


RANGES = st.lists(
    st.tuples(MODERATE, st.floats(min_value=1e-3, max_value=1e5)).map(
        lambda t: (t[0], t[0] + t[1])
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=80, deadline=None)
@given(RANGES, st.data())
def test_scaling_maps_are_inverse_and_affine(ranges, data):
    active = data.draw(
        st.lists(st.booleans(), min_size=len(ranges), max_size=len(ranges))
    )
    if not any(active):
        active[0] = True
    iface = ranged_interface(ranges, active)
    r = iface.active_ranges
    n = iface.n_active
    np.testing.assert_allclose(iface.to_scaled(r[:, 0]), np.zeros(n), atol=1e-9)
    np.testing.assert_allclose(iface.to_scaled(r[:, 1]), np.ones(n), atol=1e-9)
    x = np.array(data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    real = iface.from_scaled(x)
    assert np.all(real >= r[:, 0] - 1e-9 * np.abs(r).max()) and np.all(
        real <= r[:, 1] + 1e-9 * np.abs(r).max()
    )
    np.testing.assert_allclose(iface.to_scaled(real), x, atol=1e-6)
    batch = np.stack([x, 1 - x])
    np.testing.assert_allclose(iface.from_scaled(batch)[1], iface.from_scaled(1 - x))
    full = iface.full_values(batch)
    assert full.shape == (2, len(iface))
    np.testing.assert_array_equal(
        full[:, ~iface.is_active],
        np.broadcast_to(iface.values[~iface.is_active], (2, len(iface) - n)),
    )
    np.testing.assert_array_equal(full[:, iface.active_indices], batch)


def test_vector_views():
    iface = lj_like()
    assert iface.names[0] == "Ar.Ar:eps" and len(iface) == 4
    assert iface.n_active == 3
    assert iface.active_names == (
        "Ar.Ar:eps",
        "Ar.Ar:rmin",
        "H:r_0^sigma;;2;;Sigma bond covalent radius",
    )
    np.testing.assert_array_equal(iface.active_indices, [0, 1, 3])
    assert iface.values.shape == (4,) and iface.ranges.shape == (4, 2)
    np.testing.assert_array_equal(iface.active_values, [0.0103, 3.82, -0.5])
    np.testing.assert_allclose(
        iface.to_scaled(iface.active_values), [0.3533333333, 0.5, 0.5]
    )
    assert iface["GEN:cutoff"].metadata["sensitivity"] == 0.125
    assert "Ar.Ar:eps" in iface and "nope" not in iface


# ---- functional updates ------------------------------------------------------------


def test_with_values_all_active_and_mapping():
    iface = lj_like()
    all_new = iface.with_values([0.01, 3.9, 11.0, -0.4])
    np.testing.assert_array_equal(all_new.values, [0.01, 3.9, 11.0, -0.4])
    active_new = iface.with_values(np.array([0.011, 3.7, -0.6]))
    np.testing.assert_array_equal(active_new.values, [0.011, 3.7, 10.0, -0.6])
    by_name = iface.with_values({"GEN:cutoff": 9.0})
    assert by_name["GEN:cutoff"].value == 9.0 and by_name["Ar.Ar:eps"].value == 0.0103
    assert iface.values[2] == 10.0  # the original is unchanged
    assert all_new["Ar.Ar:eps"].range == iface["Ar.Ar:eps"].range
    assert all_new.model == "lj"
    with pytest.raises(InputError, match="expected 4"):
        iface.with_values([1.0, 2.0])
    with pytest.raises(InputError) as info:
        iface.with_values({"Ar.Ar:epz": 1.0})
    assert info.value.key == "Ar.Ar:epz"


def test_with_active_and_replace():
    iface = lj_like()
    new = iface.with_active(["GEN:cutoff", "Ar.Ar:eps"])
    assert new.active_names == ("Ar.Ar:eps", "GEN:cutoff")
    assert iface.n_active == 3
    with pytest.raises(InputError, match="did you mean 'GEN:cutoff'") as info:
        iface.with_active(["GEN:cutof"])
    assert info.value.key == "GEN:cutof"
    changed = iface.replace("Ar.Ar:rmin", range=(3.0, 4.0))
    assert changed["Ar.Ar:rmin"].range == (3.0, 4.0)


# ---- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "", "value": 1.0}, "non-empty"),
        ({"name": "a", "value": math.inf}, "finite"),
        ({"name": "a", "value": 1.0, "range": (2.0, 1.0)}, "min < max"),
        ({"name": "a", "value": 1.0, "range": (1.0, 1.0)}, "min < max"),
        ({"name": "a", "value": 1.0, "range": (0.0, math.inf)}, "finite"),
        ({"name": "a", "value": 1.0, "range": (0.0, 1.0, 2.0)}, "two numbers"),
    ],
)
def test_bad_parameter(kwargs, match):
    with pytest.raises(InputError, match=match):
        Parameter(**kwargs)


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ("- {name: a, value: 1, rnage: [0, 2]}", "unknown key"),
        ("- {name: a}", "lacks 'value'"),
        ("- {value: 1.0}", "lacks 'name'"),
        ("- {name: a, value: 1, range: [3, 2]}", "min < max"),
        ("- {name: a, value: one}", "bad parameter record"),
        ("- {name: a, value: 1, range: [0]}", "two numbers"),
        ("- 42", "must be a mapping"),
        ("- {name: a, value: 1, atoms: Ar}", "atoms must be a list"),
        ("- {name: a, value: 1, is_active: maybe}", "is_active must be true or false"),
        ("- {name: a, value: 1, is_active: null}", "is_active must be true or false"),
        ("- {name: a, value: 1, block_index: x}", "block_index must be an integer"),
        ("[]", "non-empty list"),
        ("", "non-empty list"),
        ("model: lj\nparams: []", "unknown top-level key"),
    ],
)
def test_bad_records_are_format_errors(record, match):
    with pytest.raises(FormatError, match=match) as info:
        ParameterInterface.from_yaml(record, path="pi.yaml")
    assert info.value.path == "pi.yaml"
    assert str(info.value).startswith("pi.yaml")


def test_bad_record_names_its_parameter():
    text = "parameters:\n- {name: a, value: 1}\n- {name: b, value: 1, range: [3, 2]}\n"
    with pytest.raises(FormatError, match=r"parameters\[1\]") as info:
        ParameterInterface.from_yaml(text)
    assert info.value.key == "b"


def test_duplicate_names():
    with pytest.raises(InputError, match="duplicate parameter name 'a'") as info:
        ParameterInterface([Parameter("a", 1.0), Parameter("a", 2.0)])
    assert info.value.key == "a"
    with pytest.raises(FormatError, match="duplicate") as info:
        ParameterInterface.from_yaml(
            "- {name: a, value: 1}\n- {name: a, value: 2}\n", path="x.yaml"
        )
    assert info.value.key == "a" and info.value.path == "x.yaml"


def test_malformed_yaml_reports_line():
    text = "model: lj\nparameters:\n- {name: a, value: 1}\n- {name: b, value: [1, 2}\n"
    with pytest.raises(FormatError, match="malformed YAML") as info:
        ParameterInterface.from_yaml(text, path="pi.yaml")
    assert info.value.path == "pi.yaml"
    assert info.value.line == 4
    assert str(info.value).startswith("pi.yaml:4:")


def test_unknown_name_lookup_and_missing_file(tmp_path):
    iface = lj_like()
    with pytest.raises(InputError, match="did you mean 'Ar.Ar:rmin'"):
        iface["Ar.Ar:rmn"]
    with pytest.raises(InputError, match="not found") as info:
        ParameterInterface.load(tmp_path / "nope.yaml")
    assert info.value.path == str(tmp_path / "nope.yaml")
    with pytest.raises(TypeError):
        ParameterInterface([("a", 1.0)])  # type: ignore[list-item]
