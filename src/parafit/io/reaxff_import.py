"""Import a classic ReaxFF training-set directory (geo + trainset.in [+ control, valSet/]).

Layout read by :func:`import_reaxff_directory`::

    DIR/geo              structures (BGF blocks, parafit.io.reaxff_geo)
    DIR/trainset.in      training data (parafit.io.trainset)
    DIR/control          optional: imaxit, endmm, icelop for NORMAL RUN blocks
    DIR/valSet/geo       optional validation structures
    DIR/valSet/trainset.in
    DIR/valSet/control   optional; default: DIR/control

Which geo blocks become which jobs (see :func:`parafit.io.reaxff_geo.rutype_task`):

========================================  ==================================================
geo block                                 job task
========================================  ==================================================
``RUTYPE SINGLE POINT``, ``MAXIT 0``      :class:`~parafit.jobs.SinglePoint`
``RUTYPE NORMAL RUN`` (or no RUTYPE)      :class:`~parafit.jobs.GeometryOptimization`: FIRE,
                                          ``max_iterations`` = control ``imaxit`` (default
                                          50), ``fmax`` = sqrt(3) x ``endmm`` (default 1.0
                                          kcal/mol/Å) in eV/Å, ``pretend_converged``
``RUTYPE MAXIT n`` / ``ENDPO x``          as NORMAL RUN with n steps / criterion x
``RUTYPE DOUBLE``/``LOW PRECISION``       as NORMAL RUN with 2x steps and x/2 criterion /
                                          half the steps
``RUTYPE CELL OPT [n]``                   as NORMAL RUN with ``relax_cell=True`` (needs
                                          ``CRYSTX``); ``NO CELL OPT`` turns it off
``BOND/ANGLE/TORSION RESTRAINT`` lines    harmonic restraints of the optimization
``CRYSTX``                                periodic cell (ReaxFF orientation)
========================================  ==================================================

The validation structures join the same job collection. A structure named in both
geo files must be the same (atoms, cell and task); it is then one job.
"""

from pathlib import Path

import numpy as np

from parafit.dataset import DataSet
from parafit.errors import FormatError, InputError
from parafit.io.reaxff_geo import ReaxFFControl, read_control, read_geo
from parafit.io.trainset import HeatfoMode, read_trainset
from parafit.jobs import Job, JobCollection

__all__ = ["import_reaxff_directory"]

VALIDATION_DIR = "valSet"


def _same_job(a: Job, b: Job) -> bool:
    return (
        a.atoms.get_chemical_symbols() == b.atoms.get_chemical_symbols()
        and np.array_equal(a.atoms.positions, b.atoms.positions)
        and np.array_equal(np.asarray(a.atoms.cell), np.asarray(b.atoms.cell))
        and np.array_equal(a.atoms.pbc, b.atoms.pbc)
        and a.task == b.task
    )


def import_reaxff_directory(
    directory: str | Path,
    *,
    heatfo: HeatfoMode = "skip",
    type_map: dict[str, str] | None = None,
) -> tuple[JobCollection, DataSet, DataSet | None]:
    """Read a ReaxFF training directory into jobs, a training set and a validation set.

    Args:
        directory: folder with ``geo`` and ``trainset.in``, optionally ``control`` and
            ``valSet/`` (its own ``geo`` and ``trainset.in``).
        heatfo: what to do with HEATFO lines (see
            :func:`parafit.io.trainset.read_trainset`).
        type_map: force-field type -> element symbol for types whose element cannot
            be read from their letters (see :func:`parafit.io.reaxff_geo.read_geo`).

    Returns:
        ``(jobs, training_set, validation_set)``: all structures of both geo files
        (training first, in file order), the data set of ``trainset.in`` and that of
        ``valSet/trainset.in`` (None without a ``valSet`` folder). Both data sets are
        validated against the jobs.

    Raises:
        InputError: a missing file, an unknown structure in a trainset.in or an atom
            number out of range (with ``.path`` and ``.line``).
        FormatError: a malformed file, or a structure defined differently in
            ``geo`` and ``valSet/geo``.

    Example:
        >>> jobs, train, val = import_reaxff_directory(
        ...     "/work/shared/data/reaxff-benchmarks/disulfide"
        ... )  # doctest: +SKIP
        >>> len(jobs), len(train), len(val)  # doctest: +SKIP
        (458, 4875, 970)
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("not a directory.", path=directory)
    for name in ("geo", "trainset.in"):
        if not (directory / name).is_file():
            raise InputError(
                f"a ReaxFF training directory needs {name!r}; it is missing.",
                path=directory / name,
            )
    control: ReaxFFControl | None = None
    if (directory / "control").is_file():
        control = read_control(directory / "control")
    jobs = read_geo(directory / "geo", control, type_map=type_map)
    training = read_trainset(directory / "trainset.in", jobs, heatfo=heatfo)
    training.validate(jobs)

    validation: DataSet | None = None
    val_dir = directory / VALIDATION_DIR
    if val_dir.is_dir():
        for name in ("geo", "trainset.in"):
            if not (val_dir / name).is_file():
                raise InputError(
                    f"the validation folder needs {name!r}; it is missing.",
                    path=val_dir / name,
                )
        val_control = control
        if (val_dir / "control").is_file():
            val_control = read_control(val_dir / "control")
        val_jobs = read_geo(val_dir / "geo", val_control, type_map=type_map)
        validation = read_trainset(val_dir / "trainset.in", val_jobs, heatfo=heatfo)
        validation.validate(val_jobs)
        for job in val_jobs:
            if job.id in jobs:
                if not _same_job(jobs[job.id], job):
                    raise FormatError(
                        f"structure {job.id!r} differs between {directory / 'geo'} and "
                        f"{val_dir / 'geo'}; rename one of them (in geo and trainset.in).",
                        path=val_dir / "geo",
                        key=job.id,
                    )
                continue
            jobs.add(job)
    return jobs, training, validation
