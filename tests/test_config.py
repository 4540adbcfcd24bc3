"""parafit.yaml validation: every problem named with file, line and key, before any work."""

from pathlib import Path

import pytest
import yaml
from conftest import write_lj_problem

from parafit.config import load_config
from parafit.errors import ConfigError


def test_valid_config_resolves_paths(lj_problem: Path) -> None:
    config = load_config(lj_problem)
    assert config.job_collection.is_absolute() and config.job_collection.exists()
    assert config.training_set.loss == "sse"
    assert config.optimizers[0]["type"] == "cma"


def test_path_shorthand_for_data_sets(tmp_path: Path) -> None:
    inp = write_lj_problem(tmp_path / "in")
    cfg = yaml.safe_load(inp.read_text())
    cfg["training_set"] = "training_set.yaml"
    inp.write_text(yaml.safe_dump(cfg))
    assert load_config(inp).training_set.path.name == "training_set.yaml"


@pytest.mark.parametrize(
    ("change", "key", "fragment"),
    [
        (lambda c: c.update(optimiser=[{"type": "cma"}]), "optimiser", "unknown key"),
        (
            lambda c: c["exit_conditions"].update(max_evals=3),
            "exit_conditions.max_evals",
            "allowed",
        ),
        (lambda c: c.update(seed="zero"), "seed", "integer"),
        (lambda c: c.pop("engine"), "engine", "missing"),
        (lambda c: c.update(engine={"elements": ["Ar"]}), "engine", "type"),
        (
            lambda c: c.update(job_collection="nowhere.yaml"),
            "job_collection",
            "not found",
        ),
        (lambda c: c.update(parallel={"workers": 0}), "parallel.workers", "greater"),
        (
            lambda c: c.update(
                training_set={"path": "training_set.yaml", "loss": "l2"}
            ),
            "training_set.loss",
            "sse",
        ),
    ],
)
def test_bad_config(tmp_path: Path, change, key: str, fragment: str) -> None:  # noqa: ANN001
    inp = write_lj_problem(tmp_path / "in")
    cfg = yaml.safe_load(inp.read_text())
    change(cfg)
    inp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(ConfigError, match=fragment) as info:
        load_config(inp)
    assert info.value.key == key
    assert info.value.path == str(inp)
    assert str(info.value).startswith(str(inp))


def test_error_names_the_line(tmp_path: Path) -> None:
    inp = write_lj_problem(tmp_path / "in")
    text = inp.read_text().replace("seed: 1", "seed: 1\nworkers: 4")
    inp.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(inp)
    assert info.value.line == text.splitlines().index("workers: 4") + 1


def test_malformed_yaml(tmp_path: Path) -> None:
    inp = tmp_path / "p.yaml"
    inp.write_text("task: optimization\nengine: {type: lj\n")
    with pytest.raises(ConfigError, match="malformed YAML") as info:
        load_config(inp)
    assert info.value.line is not None


def test_missing_input_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "none.yaml")
