"""Fit per-element-pair Lennard-Jones to ASE's shipped S22x5 CCSD(T) dimer curves.

S22x5 (Gráfová et al., J. Chem. Theory Comput. 6, 2365 (2010)): 22 molecular dimers, each
at 0.9, 1.0, 1.2, 1.5 and 2.0 times the equilibrium intermolecular distance, with
CCSD(T)/CBS interaction energies, shipped in ``ase.data.s22``. Monomers are rigid along
each curve, so ``energy(dimer) - energy(A) - energy(B)`` is the interaction energy and
intramolecular LJ terms cancel exactly. 20 parameters (eps, rmin for each of the 10
pairs of H, C, N, O) are fitted to 110 entries.
"""

from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.data import s22

from parafit import DataSet, Job, JobCollection
from parafit.engines.lj import LJEngine
from parafit.recorder import read_evaluations
from parafit.tasks import run_task
from parafit.units import KCAL_PER_MOL, Unit

KCAL = Unit("kcal/mol", 1.0 / KCAL_PER_MOL)
DISTANCES = ("0.9", "1.0", "1.2", "1.5", "2.0")


def _build(directory: Path) -> Path:
    jobs = JobCollection()
    ds = DataSet()
    for name in s22.s22:
        n_a, _ = s22.get_number_of_dimer_atoms(name)
        base = s22.create_s22_system(f"{name}_1.0")
        jobs.add(Job(f"{name}_A", base[:n_a].copy()))
        jobs.add(Job(f"{name}_B", base[n_a:].copy()))
        for d in DISTANCES:
            dimer = s22.create_s22_system(f"{name}_{d}")
            job_id = f"{name}_{d}"
            jobs.add(
                Job(
                    job_id,
                    dimer,
                    metadata={"source": "ase.data.s22 (S22x5, CCSD(T)/CBS)"},
                )
            )
            e_int = s22.get_interaction_energy_s22x5(name, dist=float(d))
            ds.add_entry(
                f"energy('{job_id}') - energy('{name}_A') - energy('{name}_B')",
                e_int / KCAL_PER_MOL,
                sigma=0.3,
                unit=KCAL,
                metadata={"Group": name},
            )
    engine = LJEngine(["C", "H", "N", "O"], cutoff=20.0, shift=False)
    starts = {"H": 2.6, "C": 3.8, "N": 3.6, "O": 3.4}
    values = {}
    for a, b in engine.pairs:
        values[f"{a}.{b}:eps"] = 0.004
        values[f"{a}.{b}:rmin"] = 0.5 * (starts[a] + starts[b])
    iface = engine.default_interface(values=values)
    from parafit.parameters import Parameter, ParameterInterface

    iface = ParameterInterface(
        [
            Parameter(
                p.name,
                p.value,
                range=(2e-4, 0.03) if p.name.endswith("eps") else (2.0, 4.8),
                atoms=p.atoms,
                block=p.block,
            )
            for p in iface
        ],
        model="lj",
    )
    directory.mkdir(parents=True, exist_ok=True)
    jobs.save(directory / "jobs.yaml")
    ds.save(directory / "s22x5.yaml")
    iface.save(directory / "params.yaml")
    config = {
        "job_collection": "jobs.yaml",
        "parameter_interface": "params.yaml",
        "engine": {
            "type": "lj",
            "elements": ["C", "H", "N", "O"],
            "cutoff": 20.0,
            "shift": False,
        },
        "training_set": "s22x5.yaml",
        "optimizers": [{"type": "cma", "sigma0": 0.25, "popsize": 24}],
        "exit_conditions": {"max_evaluations": 8000},
        "seed": 7,
    }
    (directory / "parafit.yaml").write_text(yaml.safe_dump(config))
    return directory / "parafit.yaml"


@pytest.mark.slow
def test_lj_fit_to_s22x5(tmp_path: Path) -> None:
    inp = _build(tmp_path / "in")
    ds = DataSet.load(tmp_path / "in/s22x5.yaml")
    assert len(ds) == 110
    result = run_task(inp, tmp_path / "out")
    data = read_evaluations(tmp_path / "out/optimization")
    initial = data["training_loss"][0]
    assert result.best_loss < 0.05 * initial
    stats = (
        tmp_path / "out/optimization/training_set_results/best/stats.txt"
    ).read_text()
    mae = float(stats.split("energy", 1)[1].split()[1])
    # A two-parameter pair potential without charges cannot describe hydrogen bonds,
    # dispersion and stacking at once: a 30,000-evaluation run levels off at MAE 2.67,
    # RMSE 4.18 kcal/mol (from MAE 26, RMSE 93 at the start); 8,000 evaluations get there.
    assert mae < 3.0, stats
    initial_stats = (
        tmp_path / "out/optimization/training_set_results/initial/stats.txt"
    ).read_text()
    assert mae < 0.5 * float(initial_stats.split("energy", 1)[1].split()[1])
    assert np.isfinite(result.best_loss)
