"""The committed argon reference data (examples/argon_lj) matches its generator.

Checks reference.extxyz, as committed, against the Aziz HFDID1 functions in
examples/argon_lj/generate_reference.py: frame counts, energies and forces re-evaluated
on three frames, forces = -gradient by central differences, and the published
checkpoints of the potential (eps/k_B = 143.235 K at r_m = 3.757 Å).
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "argon_lj"


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "argon_generate_reference", EXAMPLE / "generate_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def frames():
    return read(EXAMPLE / "reference.extxyz", index=":")


def _by_id(frames, frame_id):
    (atoms,) = [a for a in frames if a.info["id"] == frame_id]
    return atoms


def test_file_is_small():
    assert (EXAMPLE / "reference.extxyz").stat().st_size < 1_000_000


def test_frame_counts(frames):
    assert len(frames) == 50
    ids = [a.info["id"] for a in frames]
    assert len(set(ids)) == len(ids)
    kinds = {}
    for frame_id in ids:
        kind = frame_id.split("_")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds == {"dimer": 25, "trimer": 10, "cluster13": 5, "cluster38": 5,
                     "liquid": 5}  # fmt: skip
    sizes = {a.info["id"].split("_")[0]: len(a) for a in frames}
    assert sizes == {"dimer": 2, "trimer": 3, "cluster13": 13, "cluster38": 38,
                     "liquid": 108}  # fmt: skip
    for a in frames:
        assert np.all(a.pbc) == a.info["id"].startswith("liquid_")
        assert np.all(a.pbc) or not np.any(a.pbc)


def test_energies_are_sane(frames):
    for a in frames:
        e = a.get_potential_energy()
        assert np.isfinite(e)
        assert a.get_forces().shape == (len(a), 3)
        if a.info["id"].startswith("liquid_"):
            assert -0.09 < e / len(a) < -0.05  # eV/atom; liquid argon is about -0.065
    dimer = _by_id(frames, "dimer_3.75")
    assert dimer.get_potential_energy() == pytest.approx(-0.01234, abs=1e-5)


@pytest.mark.parametrize("frame_id", ["dimer_3.80", "cluster38_03", "liquid_02"])
def test_reference_matches_potential(frames, frame_id):
    atoms = _by_id(frames, frame_id)
    energy, forces = gen.aziz_energy_forces(atoms)
    assert abs(energy - atoms.get_potential_energy()) < 1e-10
    # extxyz stores per-atom columns as %16.8f, so forces carry 8 decimals [eV/Å]
    assert np.max(np.abs(forces - atoms.get_forces())) <= 5e-9 + 1e-12


def _numerical_forces(atoms, indices, h=1e-5):
    atoms = atoms.copy()
    out = np.zeros((len(indices), 3))
    for row, i in enumerate(indices):
        for c in range(3):
            x0 = atoms.positions[i, c]
            atoms.positions[i, c] = x0 + h
            e_plus = gen.aziz_energy_forces(atoms)[0]
            atoms.positions[i, c] = x0 - h
            e_minus = gen.aziz_energy_forces(atoms)[0]
            atoms.positions[i, c] = x0
            out[row, c] = -(e_plus - e_minus) / (2 * h)
    return out


def test_forces_are_minus_gradient_cluster(frames):
    atoms = _by_id(frames, "cluster13_03")  # all 78 pairs well inside the cutoff
    indices = list(range(len(atoms)))
    numerical = _numerical_forces(atoms, indices)
    analytic = gen.aziz_energy_forces(atoms)[1]
    assert np.max(np.abs(numerical - analytic)) < 1e-9
    assert np.max(np.abs(numerical - atoms.get_forces())) < 1e-8  # 8 decimals in file


def test_forces_are_minus_gradient_periodic(frames):
    atoms = _by_id(frames, "liquid_01")  # periodic images and cutoff > half the box
    indices = [0, 57]
    numerical = _numerical_forces(atoms, indices)
    analytic = gen.aziz_energy_forces(atoms)[1][indices]
    assert np.max(np.abs(numerical - analytic)) < 1e-9
    assert np.max(np.abs(numerical - atoms.get_forces()[indices])) < 1e-8


def test_published_checkpoints():
    checks = gen.check_potential()  # asserts inside; the numbers again here
    assert checks["r_min"] == pytest.approx(3.757, abs=1e-3)
    assert checks["depth_K"] == pytest.approx(143.235, abs=0.01)
    assert checks["depth_eV"] == pytest.approx(0.012343, abs=1e-6)
