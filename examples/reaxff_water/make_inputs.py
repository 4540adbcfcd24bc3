"""Build the parafit inputs of the ReaxFF water example from ``reference.yaml``.

Writes, next to this script:

- ``ffield``: the H and O part of the ReaxFF water force field (see README.md for its
  provenance), cut out of the full file with :meth:`ForceField.restrict_to`.
- ``job_collection.yaml``: three rigid PES scans of one water molecule
  (``oh_stretch``: one O-H bond 0.80-1.50 Å, 29 points; ``oh_dissociation``: the same
  bond at equilibrium and 1.55-2.50 Å, 21 points; ``symmetric_stretch``: both O-H
  bonds, 9 points).
- ``training_set.yaml``: ``pes('oh_stretch')``, the B3LYP scan energies relative to
  their minimum, sigma 1 kcal/mol (about ParAMS's default 0.002 Ha for ``pes``).
- ``validation_set.yaml``: ``pes('symmetric_stretch')`` the same way, and
  ``pes('oh_dissociation', relative_to='first')``: the bond-breaking curve relative to
  the equilibrium geometry (its first point), a test of extrapolation.
- ``parameter_interface.yaml``: every parameter of the ffield, with only the 12
  H.O bond parameters of the ParAMS sensitivity tutorial active (ranges ±20% of the
  value, ±1 around a zero value, as ParAMS sets them).

Run it again after regenerating the reference data or to rebuild the ffield
(the full force field comes from ``--source``, by default the water ReaxFF of
``../shared/data/reaxff-golden``)::

    python examples/reaxff_water/make_inputs.py
"""

import argparse
from pathlib import Path

import numpy as np
import yaml
from ase import Atoms

from parafit.dataset import DataSet
from parafit.engines.reaxff.names import interface_from_ffield
from parafit.io.ffield import read_ffield, write_ffield
from parafit.jobs import Job, JobCollection, PESScan, ScanCoordinate
from parafit.units import KCAL_PER_MOL, Unit

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = (
    HERE.parents[1].parent
    / "shared"
    / "data"
    / "reaxff-golden"
    / "water_300_no_pbc"
    / "ffield"
)
HEADER = (
    "Reactive MD-force field: Water, H and O only (LAMMPS acks2_ff.water, "
    "Achtyl et al. 2015); parafit examples/reaxff_water"
)
KCAL = Unit("kcal/mol", 1.0 / KCAL_PER_MOL)
SIGMA_KCAL = 1.0
# The 12 parameters of the H.O bond block analysed in the ParAMS sensitivity tutorial.
ACTIVE = tuple(
    f"H.O:{name}"
    for name in (
        "D_e^sigma",
        "D_e^pi",
        "D_e^pipi",
        "p_be1",
        "p_bo5",
        "p_bo6",
        "p_ovun1",
        "p_be2",
        "p_bo3",
        "p_bo4",
        "p_bo1",
        "p_bo2",
    )
)


def water(r_eq: float, angle: float) -> Atoms:
    """Water at its equilibrium geometry: O at the origin, H1 on +x, H2 in the xy plane."""
    t = np.radians(angle)
    return Atoms(
        "OHH",
        positions=[
            [0.0, 0.0, 0.0],
            [r_eq, 0.0, 0.0],
            [r_eq * np.cos(t), r_eq * np.sin(t), 0.0],
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help="full water ffield"
    )
    args = parser.parse_args()

    ref = yaml.safe_load((HERE / "reference.yaml").read_text())
    geometry = ref["geometry"]
    atoms = water(geometry["r_eq_angstrom"], geometry["angle_eq_degree"])
    scans = ref["scans"]

    def scan_job(
        job_id: str, coordinates: tuple[ScanCoordinate, ...], text: str
    ) -> Job:
        return Job(
            job_id,
            atoms,
            PESScan(coordinates, relaxed=False),
            metadata={"description": text},
        )

    oh, off, sym = (
        scans[k] for k in ("oh_stretch", "oh_dissociation", "symmetric_stretch")
    )
    jobs = JobCollection(
        [
            scan_job(
                "oh_stretch",
                (ScanCoordinate("distance", (0, 1), tuple(oh["r_OH1"])),),
                "rigid scan of the O-H1 bond, 0.80-1.50 Å; H2 and the angle fixed",
            ),
            scan_job(
                "oh_dissociation",
                (ScanCoordinate("distance", (0, 1), tuple(off["r_OH1"])),),
                "O-H1 at equilibrium, then 1.55-2.50 Å (bond breaking); rigid",
            ),
            scan_job(
                "symmetric_stretch",
                (
                    ScanCoordinate("distance", (0, 1), tuple(sym["r_OH1"])),
                    ScanCoordinate("distance", (0, 2), tuple(sym["r_OH2"])),
                ),
                "rigid symmetric stretch of both O-H bonds, 0.85-1.25 Å",
            ),
        ]
    )
    training, validation = DataSet(), DataSet()

    def add(target: DataSet, job_id: str, relative_to: str) -> None:
        e = np.asarray(scans[job_id]["energy_ev"])
        e = e - (e.min() if relative_to == "min" else e[0])
        expression = f"pes('{job_id}')"
        if relative_to != "min":
            expression = f"pes('{job_id}', relative_to='{relative_to}')"
        target.add_entry(
            expression,
            e / KCAL_PER_MOL,
            sigma=SIGMA_KCAL,
            unit=KCAL,
            metadata={
                "Description": f"B3LYP/def2-TZVP {job_id}, relative to the "
                + ("lowest point" if relative_to == "min" else "first point")
            },
        )

    add(training, "oh_stretch", "min")
    add(validation, "symmetric_stretch", "min")
    add(validation, "oh_dissociation", "first")

    forcefield = read_ffield(args.source).restrict_to(["H", "O"], header=HEADER)
    interface = interface_from_ffield(forcefield).with_active(ACTIVE)

    write_ffield(forcefield, HERE / "ffield")
    jobs.save(HERE / "job_collection.yaml")
    training.save(HERE / "training_set.yaml")
    validation.save(HERE / "validation_set.yaml")
    interface.save(HERE / "parameter_interface.yaml")
    print(
        f"{len(jobs)} jobs, {len(training)} training and {len(validation)} validation entries, "
        f"{interface.n_active} active parameters of {len(interface)}"
    )


if __name__ == "__main__":
    main()
