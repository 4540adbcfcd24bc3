"""Build the parafit inputs of the argon example from ``reference.extxyz``.

Writes, next to this script: ``job_collection.yaml`` (50 single points),
``training_set.yaml`` and ``validation_set.yaml`` (energies and forces), and
``parameter_interface.yaml`` (the two LJ parameters of Ar–Ar, both active). The
committed ``parafit.yaml`` ties them together. Run it again after regenerating the
reference data::

    python examples/argon_lj/make_inputs.py

Choices:

- Energies of clusters and liquid boxes are compared per atom (``energy('x')/N``) so a
  108-atom box does not outweigh a dimer; sigma 0.5 meV (per atom), i.e. a few per
  cent of the well depth (12.3 meV).
- Forces have sigma 5 meV/Å and enter only for clusters and liquid boxes.
- Training: all dimers and trimers, Ar13 clusters 1-4, liquid boxes 1-3.
  Validation: the Ar38 clusters, Ar13 cluster 5 and liquid boxes 4-5, so overfitting
  to the small clusters would show.
"""

from pathlib import Path

from parafit.dataset import DataSet
from parafit.io.ase_import import import_ase_file
from parafit.parameters import Parameter, ParameterInterface
from parafit.units import Unit

HERE = Path(__file__).resolve().parent
MEV = Unit("meV", 1000.0)
MEV_PER_ANGSTROM = Unit("meV/angstrom", 1000.0)
VALIDATION = ("cluster38_", "cluster13_05", "liquid_04", "liquid_05")


def main() -> None:
    jobs, imported = import_ase_file(HERE / "reference.extxyz")
    training, validation = DataSet(), DataSet()
    for entry in imported:
        job_id = entry.expression.split("'")[1]
        target = validation if job_id.startswith(VALIDATION) else training
        n = len(jobs[job_id].atoms)
        if entry.expression.startswith("energy"):
            if n <= 3:
                target.add_entry(
                    entry.expression,
                    1000.0 * float(entry.reference),
                    sigma=0.5,
                    unit=MEV,
                )
            else:
                target.add_entry(
                    f"energy('{job_id}')/{n}",
                    1000.0 * float(entry.reference) / n,
                    sigma=0.5,
                    unit=MEV,
                    metadata={"Description": "energy per atom"},
                )
        elif entry.expression.startswith("forces") and n > 3:
            target.add_entry(
                entry.expression,
                1000.0 * entry.reference,
                sigma=5.0,
                unit=MEV_PER_ANGSTROM,
            )
    interface = ParameterInterface(
        [
            Parameter(
                "Ar.Ar:eps",
                0.0100,
                range=(0.005, 0.020),
                atoms=("Ar", "Ar"),
                block="LJ",
                description="well depth [eV]",
                equation="u(r) = eps*((rmin/r)^12 - 2*(rmin/r)^6)",
            ),
            Parameter(
                "Ar.Ar:rmin",
                3.60,
                range=(3.30, 4.20),
                atoms=("Ar", "Ar"),
                block="LJ",
                description="distance of the minimum [Å]",
                equation="u(r) = eps*((rmin/r)^12 - 2*(rmin/r)^6)",
            ),
        ],
        model="lj",
    )
    jobs.save(HERE / "job_collection.yaml")
    training.save(HERE / "training_set.yaml")
    validation.save(HERE / "validation_set.yaml")
    interface.save(HERE / "parameter_interface.yaml")
    print(
        f"{len(jobs)} jobs, {len(training)} training entries, {len(validation)} validation entries"
    )


if __name__ == "__main__":
    main()
