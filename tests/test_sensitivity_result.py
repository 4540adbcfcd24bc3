"""HSICResult: summary values, selection, text, and the npz file (save, load, errors)."""

import gc
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from parafit.errors import InputError, ResultsError
from parafit.sensitivity import HSICResult, analyze_samples

REQUIRED_KEYS = {
    "labels",
    "x_bounds",
    "hsic",
    "sensitivities",
    "sensitivity_mean",
    "sensitivity_std",
    "n_samples",
    "samples_per_repeat",
    "repeats",
    "seed",
    "kernel_x",
    "kernel_y",
    "estimator",
    "normalization",
}


def small_result() -> HSICResult:
    """4 parameters in 2 groups, 2 repeats; means 0.1, 0.5, 0.3, 0.1 (c and a tie)."""
    s = np.array([[0.1, 0.6, 0.2, 0.1], [0.1, 0.4, 0.4, 0.1]])
    return HSICResult(
        labels=("a", "b_long_name", "c", "d"),
        x_bounds=np.array([[0.0, 1.0], [1.0, 2.0], [-1.0, 1.0], [5.0, 6.0]]),
        hsic=s * 1e-3,
        sensitivities=s,
        groups=("g1", "g2", "g1", "g2"),
        n_samples=100,
        samples_per_repeat=50,
        repeats=2,
        seed=3,
    )


@pytest.fixture(scope="module")
def analysed() -> HSICResult:
    """A real analysis with p-values, dropped samples and every option set."""
    rng = np.random.default_rng(0)
    x = rng.random((120, 4))
    y = 1e-3 + (x[:, 1] - 0.3) ** 2
    y[[5, 9]] = np.inf
    return analyze_samples(
        x,
        y,
        labels=["Ar.Ar:eps", "Ar.Ar:rmin", "O.H BND:De", "x"],
        groups=["Ar.Ar", "Ar.Ar", "O.H BND", "x"],
        repeats=3,
        samples_per_repeat=80,
        p_values=9,
        seed=7,
        with_replacement=True,
        normalization="raw",
        estimator="u",
        description="training set, 120 random samples",
        analyze="validation_set",
        loss_name="rmse",
        is_reweighted=True,
    )


def assert_same(a: HSICResult, b: HSICResult) -> None:
    for name in a.__dataclass_fields__:
        va, vb = getattr(a, name), getattr(b, name)
        if isinstance(va, np.ndarray):
            np.testing.assert_array_equal(va, vb)
            assert va.shape == vb.shape
        else:
            assert va == vb, name
            assert type(va) is type(vb), name


# ---- file --------------------------------------------------------------------------
def test_save_load_roundtrip(analysed: HSICResult, tmp_path: Path) -> None:
    path = analysed.save(tmp_path / "calculation_result.npz")
    assert path == tmp_path / "calculation_result.npz"
    with np.load(path, allow_pickle=False) as data:
        assert REQUIRED_KEYS <= set(data.files)
        arrays = {k: data[k] for k in data.files}  # nothing needs unpickling
    assert all(a.dtype != object for a in arrays.values())
    assert arrays["labels"].tolist() == list(analysed.labels)
    np.testing.assert_array_equal(arrays["sensitivity_mean"], analysed.sensitivity_mean)
    np.testing.assert_array_equal(arrays["sensitivity_std"], analysed.sensitivity_std)
    assert str(arrays["kernel_y"]) == analysed.kernel_y
    assert int(arrays["n_samples"]) == 118 and int(arrays["n_dropped"]) == 2
    loaded = HSICResult.load(path)
    assert_same(loaded, analysed)
    assert loaded.summary_text() == analysed.summary_text()
    assert loaded.p_values.shape == (3, 4) and loaded.permutations == 9
    assert loaded.with_replacement is True and loaded.is_reweighted is True


def test_roundtrip_without_p_values_or_groups(tmp_path: Path) -> None:
    r = HSICResult(
        labels=("p", "q"),
        x_bounds=np.array([[0.0, 1.0], [0.0, 2.0]]),
        hsic=np.array([[0.2, 0.1]]),
        sensitivities=np.array([[2 / 3, 1 / 3]]),
    )
    assert r.groups == ("p", "q") and r.p_values.size == 0
    loaded = HSICResult.load(r.save(tmp_path / "r.npz"))
    assert_same(loaded, r)
    assert "p-value" not in loaded.summary_text()


def test_load_from_results_directory(analysed: HSICResult, tmp_path: Path) -> None:
    analysed.save(tmp_path / "run" / "sensitivity" / "calculation_result.npz")
    assert_same(HSICResult.load(tmp_path / "run"), analysed)
    assert_same(HSICResult.load(tmp_path / "run" / "sensitivity"), analysed)
    with pytest.raises(ResultsError, match="no sensitivity result"):
        HSICResult.load(tmp_path / "elsewhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ResultsError, match="no sensitivity result"):
        HSICResult.load(tmp_path / "empty")


def test_not_a_result_or_pickled_data_is_a_results_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a numpy file" * 10)
    with pytest.raises(ResultsError, match="cannot read"):
        HSICResult.load(garbage)
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.ones(3))
    with pytest.raises(ResultsError, match="missing"):
        HSICResult.load(other)
    pickled = tmp_path / "pickled.npz"
    np.savez(
        pickled,
        labels=np.array(["a", None], dtype=object),
        x_bounds=np.zeros((2, 2)),
        hsic=np.zeros((1, 2)),
        sensitivities=np.zeros((1, 2)),
    )
    with pytest.raises(ResultsError, match="cannot read"):
        HSICResult.load(pickled)


def _corrupt(data: bytes, how: str) -> bytes:
    if how == "garbage":
        return b"this is not a numpy file" * 10
    if how == "truncated":
        return data[: len(data) // 2]
    if how == "empty":
        return b""
    # overwrite 100 bytes inside the first member: its CRC-32 no longer matches
    return data[:200] + bytes(100) + data[300:]


def _load_error(path: Path) -> type[BaseException] | None:
    """The type of what HSICResult.load raises (the traceback is freed on return)."""
    try:
        HSICResult.load(path)
    except Exception as err:  # the type is what the test checks
        return type(err)
    return None


@pytest.mark.parametrize(
    "how",
    [
        "garbage",
        "truncated",
        "empty",
        "bad_crc",
    ],
)
def test_corrupted_file_is_a_results_error(
    analysed: HSICResult, tmp_path: Path, how: str
) -> None:
    """A damaged file gives ResultsError, and leaves no file handle open."""
    good = analysed.save(tmp_path / "good.npz").read_bytes()
    bad = tmp_path / "calculation_result.npz"
    bad.write_bytes(_corrupt(good, how))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raised = _load_error(bad)
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert raised is ResultsError
    assert not leaks, leaks


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="repeats"):
        HSICResult(("a", "b"), np.zeros((2, 2)), np.zeros((1, 2)), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="repeats"):
        HSICResult(("a",), np.zeros((1, 2)), np.zeros((1, 2)), np.zeros((1, 2)))


# ---- summary values and selection ----------------------------------------------------
def test_mean_std_and_order() -> None:
    r = small_result()
    np.testing.assert_allclose(r.sensitivity_mean, [0.1, 0.5, 0.3, 0.1])
    np.testing.assert_allclose(
        r.sensitivity_std, [0.0, np.sqrt(0.02), np.sqrt(0.02), 0.0]
    )
    # ties keep the interface order: a before d
    assert r.get_ordered_parameters() == ["b_long_name", "c", "a", "d"]
    one = HSICResult(
        ("a", "b"), np.zeros((2, 2)), np.ones((1, 2)), np.array([[0.3, 0.7]])
    )
    assert one.sensitivity_std.tolist() == [0.0, 0.0]


def test_select() -> None:
    r = small_result()
    assert r.select(top=2) == ["b_long_name", "c"]
    assert r.select(top=10) == ["b_long_name", "c", "a", "d"]
    assert r.select(threshold=0.3) == ["b_long_name", "c"]
    assert r.select(threshold=0.1) == ["b_long_name", "c", "a", "d"]
    assert r.select(threshold=0.9) == []
    assert r.select(top=3, threshold=0.2) == ["b_long_name", "c"]
    assert r.select(top=1, threshold=0.2) == ["b_long_name"]
    with pytest.raises(InputError, match="top=N or threshold=S"):
        r.select()
    with pytest.raises(InputError, match="top must be >= 1"):
        r.select(top=0)


def test_group_shares() -> None:
    r = small_result()
    shares = r.group_shares()
    assert list(shares) == ["g2", "g1"]
    assert shares == pytest.approx({"g2": 0.6, "g1": 0.4})
    assert sum(shares.values()) == pytest.approx(1.0)
    plain = HSICResult(
        ("a", "b"), np.zeros((2, 2)), np.ones((1, 2)), np.array([[0.3, 0.7]])
    )
    assert plain.group_shares() == pytest.approx({"b": 0.7, "a": 0.3})


def test_summary_text_has_the_ranked_table(tmp_path: Path) -> None:
    r = small_result()
    text = r.summary_text()
    lines = text.splitlines()
    header = next(
        i for i, line in enumerate(lines) if re.match(r"^rank\s+name\s+", line)
    )
    assert "sensitivity (mean±std)" in lines[header]
    rows = lines[header + 1 :]
    assert len(rows) == 4
    pattern = re.compile(r"^\s*(\d+)\s{2}(\S+)\s+(\d\.\d{4})±(\d\.\d{4})$")
    parsed = [pattern.match(row) for row in rows]
    assert all(parsed), rows
    assert [(m[1], m[2], m[3], m[4]) for m in parsed if m] == [
        ("1", "b_long_name", "0.5000", "0.1414"),
        ("2", "c", "0.3000", "0.1414"),
        ("3", "a", "0.1000", "0.0000"),
        ("4", "d", "0.1000", "0.0000"),
    ]
    assert "repeats:            2 x 50 samples" in text
    assert "U-statistic (unbiased)" in text
    assert str(r) == text
    path = r.write_summary(tmp_path / "summary.txt")
    assert path.read_text() == text


def test_summary_text_of_an_analysis(analysed: HSICResult) -> None:
    text = analysed.summary_text()
    for piece in (
        "training set, 120 random samples",
        "validation_set (rmse loss)",
        "118 usable (2 dropped: non-finite loss or parameter)",
        "3 x 80 samples",
        "with replacement:   yes",
        "reweight:           yes",
        "normalization:      raw",
        "permutations:       9",
        "seed:               7",
        analysed.kernel_x,
        analysed.kernel_y,
    ):
        assert piece in text, piece
    first = next(line for line in text.splitlines() if re.match(r"^\s+1\s{2}", line))
    assert first.split()[1] == "Ar.Ar:rmin"
    assert re.search(r"\d\.\d{4}±\d\.\d{4}\s+\d\.\d{4}$", first)
