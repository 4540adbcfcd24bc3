"""parafit's ReaxFF on periodic cells: energies of the cobalt benchmark cells against the
LAMMPS energies recorded in its ``geo`` file, the stress against finite differences of
the energy, and cell relaxations in the batched engine against ASE's FrechetCellFilter
driven by the calculator."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from ase import units
from ase.calculators.fd import calculate_numerical_stress

from parafit.engines.reaxff.calculator import ReaxFFCalculator
from parafit.engines.reaxff.engine import ReaxFFEngine
from parafit.engines.relax import run_job
from parafit.jobs import SinglePoint

KCAL = units.kcal / units.mol


@pytest.fixture(scope="module")
def cobalt(shared_data: Path):
    from parafit.io.reaxff_import import import_reaxff_directory

    root = shared_data / "reaxff-benchmarks" / "cobalt"
    jobs, _, _ = import_reaxff_directory(root)
    return root / "ffield_lit", jobs


# 1-atom sc and 2-atom bcc cells (images far beyond the nearest), hexagonal hcp,
# a slab, a 13-atom cluster in a box and a 108-atom amorphous cell
CELLS = ["sc_opt", "bcc_opt", "hcp_opt", "Surface_fcc110", "Co_13_atom", "Amorphous_3"]


def test_cell_energies_equal_the_lammps_energies_in_geo(cobalt) -> None:
    """The cobalt ``geo`` records each structure's LAMMPS ``ffield_lit`` energy
    (kcal/mol, 6 decimals); parafit matches them to 1e-5 relative."""
    ffield, jobs = cobalt
    calc = ReaxFFCalculator(ffield)
    for job_id in CELLS:
        atoms = jobs[job_id].atoms.copy()
        atoms.calc = calc
        ours = atoms.get_potential_energy() / KCAL
        ref = float(jobs[job_id].metadata["energy"])
        assert ours == pytest.approx(ref, rel=1e-5, abs=2e-5), job_id


def test_stress_is_the_strain_derivative_of_the_energy(cobalt) -> None:
    ffield, jobs = cobalt
    calc = ReaxFFCalculator(ffield)
    for job_id in ("hcp_opt", "Surface_fcc110"):
        atoms = jobs[job_id].atoms.copy()
        atoms.rattle(0.05, seed=1)
        atoms.calc = calc
        stress = atoms.get_stress()
        numeric = calculate_numerical_stress(atoms, eps=1e-5, force_consistent=False)
        np.testing.assert_allclose(stress, numeric, atol=1e-8)


def test_engine_stress_equals_the_calculator(cobalt) -> None:
    ffield, jobs = cobalt
    picked = [jobs["Elast_hcp_c11"], jobs["Surface_fcc110"]]
    picked = [dataclasses.replace(j, task=SinglePoint()) for j in picked]
    engine = ReaxFFEngine(ffield, max_chunk=1)
    iface = engine.default_interface()
    out = engine.setup(picked, iface.names)(iface.values[None])
    for job in picked:
        atoms = job.atoms.copy()
        atoms.calc = ReaxFFCalculator(ffield)
        np.testing.assert_allclose(
            out[job.id].stress[0], atoms.get_stress(), atol=1e-10
        )


def test_cell_relaxation_equals_ase_frechet_cell_filter(cobalt) -> None:
    """``RUTYPE CELL OPT`` jobs relax positions and cell in JAX with ASE's FIRE on
    FrechetCellFilter coordinates: same steps, energy and cell as ASE with the
    calculator."""
    ffield, jobs = cobalt
    job = jobs["hcp_opt"]
    assert job.task.relax_cell
    engine = ReaxFFEngine(ffield, max_chunk=1)
    iface = engine.default_interface()
    got = engine.setup([job], iface.names)(iface.values[None])[job.id]
    ref = run_job(job, ReaxFFCalculator(ffield), properties=("forces", "stress"))
    assert got.n_steps[0] == ref.n_steps[0] > 0
    assert got.energy[0] == pytest.approx(ref.energy[0], abs=1e-9)
    np.testing.assert_allclose(got.cell[0], ref.cell[0], atol=1e-8)
    np.testing.assert_allclose(got.stress[0], ref.stress[0], atol=1e-9)
    assert not np.allclose(got.cell[0], job.atoms.cell.array)
