"""The ReaxFF water example (examples/reaxff_water): its data and a CI-sized run.

- The committed inputs agree with the committed DFT data (reference.yaml), and the
  ffield is exactly the H/O part of the water force field in ../shared.
- The DFT numbers are real: PySCF recomputes two of them (skipped without pyscf).
- A CI-sized run of run.py (fewer CMA-ES runs and evaluations; the sampling at its
  full size, which costs seconds) ranks the three sigma-bond parameters first and the
  six pi-bond parameters, which cannot change this loss, near zero, and writes the
  plots and the report.
"""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from parafit.dataset import DataSet
from parafit.io.ffield import read_ffield
from parafit.io.jobs_yaml import read_job_collection
from parafit.parameters import ParameterInterface
from parafit.units import KCAL_PER_MOL

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "reaxff_water"
PI = ("D_e^pi", "D_e^pipi", "p_bo3", "p_bo4", "p_bo5", "p_bo6")
SIGMA = ("D_e^sigma", "p_bo1", "p_bo2")


def _module(name: str):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(
        f"reaxff_water_{name}", EXAMPLE / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference() -> dict:
    return yaml.safe_load((EXAMPLE / "reference.yaml").read_text())


def test_reference_data_covers_stretching_and_bond_breaking(reference: dict) -> None:
    scans = reference["scans"]
    oh = scans["oh_stretch"]
    r = np.asarray(oh["r_OH1"])
    assert r.size == 29 and r[0] == 0.8 and r[-1] == 1.5
    assert np.all(np.diff(r) > 0) and set(oh["reference"]) == {"RKS"}
    rel = np.asarray(oh["relative_energy_ev"]) / KCAL_PER_MOL
    assert 0.93 < r[np.argmin(rel)] < 1.0  # B3LYP r_e of water: 0.96 Å
    # closed shell at equilibrium, broken-symmetry UKS once the bond breaks
    off = scans["oh_dissociation"]
    assert off["r_OH1"][0] == 0.9572 and off["r_OH1"][-1] == 2.5
    assert off["reference"][0] == "RKS" and off["reference"][-1] == "UKS"
    assert 0.8 < off["s_squared"][-1] < 1.1
    e = np.asarray(off["energy_ev"]) / KCAL_PER_MOL
    assert 110 < e[-1] - e[0] < 125  # most of the ~120 kcal/mol B3LYP O-H bond energy
    # the equilibrium geometry lies at the bottom of the training scan
    e_min = min(oh["energy_ev"]) / KCAL_PER_MOL
    assert abs(e[0] - e_min) < 0.1  # kcal/mol: 0.9572 Å lies between grid points
    sym = scans["symmetric_stretch"]
    assert len(sym["r_OH1"]) == 9 and sym["r_OH1"] == sym["r_OH2"]
    assert set(sym["reference"]) == {"RKS"}


def test_inputs_agree_with_reference_data(reference: dict) -> None:
    jobs = read_job_collection(EXAMPLE / "job_collection.yaml")
    assert [j.id for j in jobs] == [
        "oh_stretch",
        "oh_dissociation",
        "symmetric_stretch",
    ]
    for job in jobs:
        scan = reference["scans"][job.id]
        assert job.task.relaxed is False
        assert list(job.task.coordinates[0].values) == scan["r_OH1"]
        positions = job.atoms.positions
        assert np.linalg.norm(positions[1] - positions[0]) == pytest.approx(0.9572)
        cos = np.dot(positions[1], positions[2]) / 0.9572**2
        assert math.degrees(math.acos(cos)) == pytest.approx(104.52)
    expected = {
        "training_set": {"pes('oh_stretch')": ("oh_stretch", "min")},
        "validation_set": {
            "pes('symmetric_stretch')": ("symmetric_stretch", "min"),
            "pes('oh_dissociation', relative_to='first')": ("oh_dissociation", "first"),
        },
    }
    for name, entries in expected.items():
        data = DataSet.load(EXAMPLE / f"{name}.yaml")
        assert [e.expression for e in data] == list(entries)
        for entry in data:
            job_id, relative_to = entries[entry.expression]
            e = np.asarray(reference["scans"][job_id]["energy_ev"])
            e = e - (e.min() if relative_to == "min" else e[0])
            np.testing.assert_allclose(entry.reference, e / KCAL_PER_MOL, atol=1e-9)
            assert entry.sigma == 1.0 and entry.unit.label == "kcal/mol"
    interface = ParameterInterface.load(EXAMPLE / "parameter_interface.yaml")
    active = [p for p in interface if p.is_active]
    assert sorted(p.name for p in active) == sorted(
        f"H.O:{n}" for n in PI + SIGMA + ("p_be1", "p_be2", "p_ovun1")
    )
    for p in active:
        low, high = p.range
        if p.value == 0:
            assert (low, high) == (-1.0, 1.0)
        else:
            assert sorted((low, high)) == pytest.approx(
                sorted((0.8 * p.value, 1.2 * p.value))
            )


def test_ffield_is_the_h_o_part_of_the_water_force_field(shared_data: Path) -> None:
    full = read_ffield(shared_data / "reaxff-golden" / "water_300_no_pbc" / "ffield")
    committed = read_ffield(EXAMPLE / "ffield")
    assert committed.same_values(full.restrict_to(["H", "O"]))


def test_reference_energies_are_reproduced_by_pyscf(reference: dict) -> None:
    pytest.importorskip("pyscf")
    gen = _module("generate_reference")
    for job_id, k in (("oh_stretch", 6), ("oh_dissociation", 12)):  # 0.95 Å, 2.1 Å
        scan = reference["scans"][job_id]
        energy, kind, _ = gen.dft_energy(gen.water(scan["r_OH1"][k], gen.R_EQ))
        assert kind == scan["reference"][k]  # RKS, then broken-symmetry UKS
        assert energy == pytest.approx(scan["energy_hartree"][k], abs=2e-7)


@pytest.mark.slow
def test_ci_sized_run_ranks_the_sigma_bond_parameters_first(tmp_path: Path) -> None:
    run = _module("run")
    out = tmp_path / "water"
    argv = ["-o", str(out), "--runs", "2", "--evaluations", "60", "--quiet"]
    assert run.main(argv) == 0
    for name in (
        "report.md",
        "convergence.png",
        "scans.png",
        "sensitivity_per_parameter.png",
        "sensitivity_summary.png",
        "parameter_interface_top3.yaml",
    ):
        assert (out / name).is_file(), name
    from parafit.sensitivity.result import HSICResult

    result = HSICResult.load(out / "sensitivity" / "sensitivity")
    mean = dict(zip(result.labels, result.sensitivity_mean, strict=True))
    ranked = result.get_ordered_parameters()
    assert set(ranked[:3]) == {f"H.O:{n}" for n in SIGMA}
    lowest_sigma = min(mean[f"H.O:{n}"] for n in SIGMA)
    for n in PI:  # no pi bonds in water: these cannot change the loss
        assert mean[f"H.O:{n}"] < min(0.05, lowest_sigma / 2), n
    top3 = ParameterInterface.load(out / "parameter_interface_top3.yaml")
    assert sorted(top3.active_names) == sorted(ranked[:3])
    report = (out / "report.md").read_text()
    assert "| 1 | `H.O:" in report and "Final training loss of each run" in report
