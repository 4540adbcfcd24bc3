"""The command line: help, bad input (exit 2, one line, nothing written), kill and resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import write_lj_problem
from typer.testing import CliRunner

from parafit.cli import app
from parafit.recorder import read_running_loss

runner = CliRunner()


def _invoke(*args: str):  # noqa: ANN202
    return runner.invoke(app, list(args))


def test_help_lists_commands_and_explains_options() -> None:
    result = _invoke("--help")
    assert result.exit_code == 0
    for command in ("optimize", "single-point", "plot", "import"):
        assert command in result.output
    opt_help = _invoke("optimize", "--help").output
    for option in ("--output", "--resume", "--overwrite", "--workers", "--quiet"):
        assert option in opt_help


def test_version() -> None:
    result = _invoke("--version")
    assert result.exit_code == 0 and "parafit" in result.output


def test_optimize_and_plot(tmp_path: Path) -> None:
    inp = write_lj_problem(tmp_path / "in", exit_conditions={"max_evaluations": 30})
    out = tmp_path / "out"
    result = _invoke("optimize", str(inp), "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert "best training loss" in result.output
    (out / "optimization/loss.png").unlink()
    result = _invoke("plot", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "optimization/loss.png").exists()


def test_single_point_prints_loss(tmp_path: Path) -> None:
    inp = write_lj_problem(tmp_path / "in")
    result = _invoke("single-point", str(inp), "-o", str(tmp_path / "sp"), "-q")
    assert result.exit_code == 0, result.output
    assert "training loss:" in result.output


def _bad_case(tmp_path: Path, case: str) -> Path:
    inp = write_lj_problem(tmp_path / "in")
    d = inp.parent
    ts = d / "training_set.yaml"
    if case == "malformed_yaml":
        inp.write_text("task: optimization\njob_collection: [unclosed\n")
    elif case == "unknown_key":
        inp.write_text(inp.read_text() + "optimiser: cma\n")
    elif case == "missing_file":
        cfg = yaml.safe_load(inp.read_text())
        cfg["job_collection"] = "nowhere.yaml"
        inp.write_text(yaml.safe_dump(cfg))
    elif case == "unknown_extractor":
        ts.write_text(ts.read_text().replace("energy('trimer')", "enrgy('trimer')", 1))
    elif case == "unknown_job":
        ts.write_text(
            ts.read_text().replace("energy('trimer')", "energy('trimmer')", 1)
        )
    elif case == "atom_out_of_range":
        ts.write_text(
            ts.read_text()
            + "---\nExpression: distance('trimer', 0, 7)\nReferenceValue: 3.9\nSigma: 0.05\nWeight: 1\n"
        )
    elif case == "nan_reference":
        ts.write_text(
            ts.read_text()
            + "---\nExpression: distance('trimer', 0, 1)\nReferenceValue: .nan\nSigma: 0.05\nWeight: 1\n"
        )
    elif case == "injected_code":
        marker = tmp_path / "pwned"
        ts.write_text(
            ts.read_text()
            + f"---\nExpression: __import__('os').system('touch {marker}')\nReferenceValue: 0\nSigma: 1\nWeight: 1\n"
        )
    elif case == "unknown_engine":
        cfg = yaml.safe_load(inp.read_text())
        cfg["engine"]["type"] = "reaxf"
        inp.write_text(yaml.safe_dump(cfg))
    elif case == "unknown_optimizer_setting":
        cfg = yaml.safe_load(inp.read_text())
        cfg["optimizers"] = [{"type": "cma", "sigma": 0.3}]
        inp.write_text(yaml.safe_dump(cfg))
    elif case == "malformed_parameters":
        (d / "parameter_interface.yaml").write_text(
            "parameters:\n- name: a\n  value: [1\n"
        )
    else:  # pragma: no cover
        raise AssertionError(case)
    return inp


BAD_CASES = {
    "malformed_yaml": "parafit.yaml:",
    "unknown_key": "optimiser",
    "missing_file": "nowhere.yaml",
    "unknown_extractor": "enrgy",
    "unknown_job": "trimmer",
    "atom_out_of_range": "7",
    "nan_reference": "nan",
    "injected_code": "__import__",
    "unknown_engine": "reaxf",
    "unknown_optimizer_setting": "sigma",
    "malformed_parameters": "parameter_interface.yaml",
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, case: str
) -> None:
    inp = _bad_case(tmp_path, case)
    out = tmp_path / "results"
    result = _invoke("optimize", str(inp), "-o", str(out), "-q")
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    text = " ".join(lines)
    assert text.startswith("error:"), result.output
    assert BAD_CASES[case].lower() in text.lower(), result.output
    assert not out.exists()
    assert not (tmp_path / "pwned").exists()


def test_missing_input_file_exits_2(tmp_path: Path) -> None:
    result = _invoke("optimize", str(tmp_path / "nope.yaml"), "-o", str(tmp_path / "o"))
    assert result.exit_code == 2
    assert "not found" in result.output


def test_kill_and_resume(tmp_path: Path) -> None:
    """SIGKILL a running optimization, resume it, and check nothing is lost or repeated."""
    inp = write_lj_problem(
        tmp_path / "in",
        optimizers=[{"type": "random", "n_samples": 4000, "batch_size": 16}],
        exit_conditions={"max_evaluations": 4001},
        extra_config={
            "checkpoint": {"every_seconds": 0},
            "logging": {"snapshot_every_seconds": 0.2},
        },
    )
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "parafit.cli",
        "optimize",
        str(inp),
        "-o",
        str(out),
        "-q",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    loss_file = out / "optimization/training_set_results/running_loss.txt"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if loss_file.exists() and len(loss_file.read_text().splitlines()) > 400:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, (
        "the run finished before it could be killed; make it longer"
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    import pickle

    ckpt = pickle.loads((out / "optimization/checkpoint.pkl").read_bytes())
    killed_at = ckpt["state"].n_evaluations
    best_before = ckpt["state"].best_loss
    assert 0 < killed_at < 4001
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "parafit.cli",
            "optimize",
            str(inp),
            "-o",
            str(out),
            "-q",
            "--resume",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    ev, loss = read_running_loss(loss_file)
    assert ev.tolist() == list(range(4001))
    assert np.nanmin(loss) <= best_before
    ckpt = pickle.loads((out / "optimization/checkpoint.pkl").read_bytes())
    assert ckpt["state"].n_evaluations == 4001
    assert ckpt["state"].best_loss <= best_before


def test_resume_without_run_fails_cleanly(tmp_path: Path) -> None:
    inp = write_lj_problem(tmp_path / "in")
    result = _invoke("optimize", str(inp), "-o", str(tmp_path / "none"), "--resume")
    assert result.exit_code == 2
    assert "nothing to resume" in result.output


def test_import_extxyz(tmp_path: Path) -> None:
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.io import write

    frames = []
    for i in range(3):
        a = bulk("Cu", "fcc", a=3.6).repeat(2)
        a.rattle(0.05, seed=i)
        a.calc = EMT()
        a.get_potential_energy()
        frames.append(a)
    src = tmp_path / "frames.extxyz"
    write(src, frames)
    result = _invoke("import", str(src), "-o", str(tmp_path / "imp"))
    assert result.exit_code == 0, result.output
    from parafit import DataSet, JobCollection

    assert len(JobCollection.load(tmp_path / "imp/job_collection.yaml")) == 3
    assert len(DataSet.load(tmp_path / "imp/training_set.yaml")) == 6
