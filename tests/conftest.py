"""Shared fixtures: a small Lennard-Jones argon problem written to disk.

The reference data are made with ASE's own ``LennardJones`` calculator (an independent
implementation) at known parameters, so fits can be checked for parameter recovery.
"""

from pathlib import Path

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.calculators.lj import LennardJones
from ase.cluster import Icosahedron

SHARED = Path(__file__).resolve().parents[2] / "shared"
if not SHARED.is_dir():  # CI clones the project next to shared/
    SHARED = Path(__file__).resolve().parents[1].parent / "shared"

TRUE_EPS = 0.0104  # eV
TRUE_RMIN = 3.82  # Å
CUTOFF = 9.0  # Å


def ase_lj(
    atoms: Atoms, eps: float = TRUE_EPS, rmin: float = TRUE_RMIN
) -> tuple[float, np.ndarray]:
    """Energy [eV] and forces [eV/Å] from ASE's LennardJones (shifted at the cutoff)."""
    a = atoms.copy()
    a.calc = LennardJones(
        epsilon=eps, sigma=rmin / 2 ** (1 / 6), rc=CUTOFF, smooth=False
    )
    return a.get_potential_energy(), a.get_forces()


def argon_structures() -> list[tuple[str, Atoms]]:
    """Dimers, a trimer and a rattled 13-atom cluster."""
    out = []
    for r in (3.4, 3.6, 3.8, 4.0, 4.4, 5.0, 6.0):
        out.append((f"dimer_{r:.2f}", Atoms("Ar2", positions=[[0, 0, 0], [0, 0, r]])))
    out.append(
        ("trimer", Atoms("Ar3", positions=[[0, 0, 0], [3.9, 0, 0], [1.8, 3.3, 0]]))
    )
    cluster = Icosahedron("Ar", 2, latticeconstant=5.3)
    cluster.rattle(0.05, seed=3)
    out.append(("cluster13", cluster))
    return out


def write_lj_problem(
    directory: Path,
    *,
    start: tuple[float, float] = (0.0095, 3.95),
    optimizers: list[dict] | None = None,
    exit_conditions: dict | None = None,
    extra_config: dict | None = None,
    forces: bool = True,
) -> Path:
    """Write job collection, data set, interface and parafit.yaml; return the input file."""
    from parafit.dataset import DataSet
    from parafit.jobs import Job, JobCollection
    from parafit.parameters import Parameter, ParameterInterface

    directory.mkdir(parents=True, exist_ok=True)
    structures = argon_structures()
    jobs = JobCollection(Job(name, atoms) for name, atoms in structures)
    ds = DataSet()
    e_ref = {name: ase_lj(atoms)[0] for name, atoms in structures}
    for name, atoms in structures:
        energy, f = ase_lj(atoms)
        if name.startswith("dimer") and name != "dimer_6.00":
            ds.add_entry(
                f"energy('{name}') - energy('dimer_6.00')",
                energy - e_ref["dimer_6.00"],
                sigma=1e-4,
            )
        elif not name.startswith("dimer"):
            ds.add_entry(f"energy('{name}')", energy, sigma=1e-3)
        if forces and name in ("trimer", "cluster13"):
            ds.add_entry(f"forces('{name}')", f, sigma=1e-3)
    iface = ParameterInterface(
        [
            Parameter(
                "Ar.Ar:eps",
                start[0],
                range=(0.008, 0.013),
                atoms=("Ar", "Ar"),
                block="LJ",
            ),
            Parameter(
                "Ar.Ar:rmin", start[1], range=(3.5, 4.2), atoms=("Ar", "Ar"), block="LJ"
            ),
        ],
        model="lj",
    )
    jobs.save(directory / "job_collection.yaml")
    ds.save(directory / "training_set.yaml")
    iface.save(directory / "parameter_interface.yaml")
    config = {
        "task": "optimization",
        "job_collection": "job_collection.yaml",
        "parameter_interface": "parameter_interface.yaml",
        "engine": {"type": "lj", "elements": ["Ar"], "cutoff": CUTOFF, "shift": True},
        "training_set": {"path": "training_set.yaml", "loss": "sse"},
        "optimizers": optimizers or [{"type": "cma", "sigma0": 0.2}],
        "exit_conditions": exit_conditions or {"max_evaluations": 300},
        "seed": 1,
    }
    config.update(extra_config or {})
    path = directory / "parafit.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def lj_problem(tmp_path: Path) -> Path:
    """Input file of a small LJ argon problem (true eps=0.0104 eV, rmin=3.82 Å)."""
    return write_lj_problem(tmp_path / "inputs")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared test data folder (../shared/data)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not present")
    return path


@pytest.fixture(scope="session")
def disulfide_jobs(shared_data: Path):
    """(folder, jobs) of the disulfide ReaxFF benchmark set (training and validation)."""
    from parafit.io.reaxff_import import import_reaxff_directory

    root = shared_data / "reaxff-benchmarks" / "disulfide"
    jobs, _, _ = import_reaxff_directory(root)
    return root, jobs
