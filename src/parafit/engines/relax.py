"""Run one job with one ASE calculator: single points, geometry optimizations, PES scans.

This is the generic runner behind every engine whose tasks move atoms. It takes a job
and a ready ASE calculator (built for one parameter vector) and returns a
:class:`~parafit.engines.base.JobResults` with ``n_vectors = 1``; engines stack the
results of several vectors with :func:`~parafit.engines.base.stack_results`.

Nothing here raises for a bad parameter vector: any exception, and any non-finite
energy, force or stress, gives NaN results with the ``FAILED`` status bit (logged at
DEBUG). No files are written and nothing is printed (ASE optimizers get
``logfile=None``, ``trajectory=None``).

Conventions:

* Geometry optimization: ASE optimizer ``lbfgs`` (``ase.optimize.LBFGS``), ``bfgs``,
  ``fire`` or ``bfgslinesearch``, run with ``fmax`` [eV/Å] and
  ``steps=max_iterations``; ``relax_cell`` wraps the atoms in
  ``ase.filters.FrechetCellFilter``. Atoms listed in ``job.metadata["fixed_atoms"]``
  (0-based) are held by ``ase.constraints.FixAtoms``. Reported forces are the raw
  model forces (``apply_constraint=False``). The task's harmonic restraints
  (``task.restraints``) are added to the model by :class:`RestrainedCalculator` while
  relaxing only; the reported energy, forces and stress are the model's own at the
  final geometry.
* PES scan: at each point every scanned coordinate is set by moving the *last* atom of
  the coordinate together with its fragment (see :func:`moving_atoms`), the first atom
  (distance) or the first two atoms (angle, dihedral) staying put. A relaxed scan then
  relaxes with the coordinates held by ``ase.constraints.FixInternals`` and starts each
  point from the previous point's relaxed geometry (as AMS does); a rigid scan sets the
  coordinates on the input geometry and only evaluates.
"""

import logging
import math
from collections.abc import Collection, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixAtoms, FixInternals
from ase.geometry import find_mic

from parafit.engines.base import JobResults, Status, failed_results
from parafit.errors import EngineError
from parafit.jobs import (
    AngleRestraint,
    BondRestraint,
    GeometryOptimization,
    Job,
    PESScan,
    Restraint,
    ScanCoordinate,
    SinglePoint,
)

__all__ = [
    "DEFAULT_PROPERTIES",
    "RestrainedCalculator",
    "failed_job_results",
    "restraint_energy_and_forces",
    "has_stress",
    "moving_atoms",
    "rigid_scan_geometries",
    "run_job",
    "validate_job",
]

logger = logging.getLogger(__name__)

DEFAULT_PROPERTIES: tuple[str, ...] = ("energy", "forces", "stress")


def has_stress(atoms: Atoms) -> bool:
    """Whether parafit reports a stress for ``atoms``: periodic in some direction and a 3-D cell.

    Non-periodic jobs get ``stress = None`` from every engine (ASE's ``LennardJones``
    gives no stress either when the cell is not 3-D).
    """
    return bool(atoms.pbc.any()) and atoms.cell.rank == 3


def _fixed_atoms(job: Job) -> list[int]:
    fixed = job.metadata.get("fixed_atoms") if job.metadata else None
    if fixed is None:
        return []
    return [int(i) for i in fixed]


def validate_job(job: Job) -> None:
    """Check what :func:`run_job` needs from a job, before any evaluation.

    Raises:
        EngineError: ``metadata["fixed_atoms"]`` is not a list of valid 0-based atom
            indices, or a periodic job has a cell that is not 3-D.
    """
    n = len(job.atoms)
    try:
        fixed = _fixed_atoms(job)
    except (TypeError, ValueError) as err:
        raise EngineError(
            f"job {job.id!r}: metadata 'fixed_atoms' must be a list of 0-based atom "
            f"indices; got {job.metadata.get('fixed_atoms')!r}."
        ) from err
    bad = [i for i in fixed if not 0 <= i < n]
    if bad:
        raise EngineError(
            f"job {job.id!r}: fixed atom index {bad[0]} out of range for {n} atoms (indices are 0-based)."
        )
    if job.atoms.pbc.any() and job.atoms.cell.rank < 3:
        raise EngineError(
            f"job {job.id!r}: periodic structure (pbc={job.atoms.pbc.tolist()}) needs three "
            "non-zero cell vectors; give the cell or set pbc=False."
        )


def _optimizer_class(name: str) -> type:
    from ase.optimize import BFGS, FIRE, LBFGS, BFGSLineSearch

    return {
        "lbfgs": LBFGS,
        "bfgs": BFGS,
        "fire": FIRE,
        "bfgslinesearch": BFGSLineSearch,
    }[name]


def failed_job_results(
    job: Job,
    *,
    properties: Collection[str] = DEFAULT_PROPERTIES,
    status: int = int(Status.FAILED),
    n_steps: int = 0,
) -> JobResults:
    """NaN results for one vector (n_vectors = 1) with the fields :func:`run_job` fills.

    Unlike :func:`~parafit.engines.base.failed_results` it also fills the scan
    coordinates and positions of PES scans, and leaves ``stress`` None for jobs without
    a stress (see :func:`has_stress`), so failed and successful vectors stack.
    """
    base = failed_results(
        job, 1, n_points=job.task.n_points if isinstance(job.task, PESScan) else None
    )
    n = len(job.atoms)
    scan_coordinates = scan_positions = None
    if isinstance(job.task, PESScan):
        scan_coordinates = np.full(
            (1, job.task.n_points, len(job.task.coordinates)), np.nan
        )
        scan_positions = np.full((1, job.task.n_points, n, 3), np.nan)
    moves = not isinstance(job.task, SinglePoint)
    return JobResults(
        energy=base.energy,
        positions=base.positions,
        cell=base.cell,
        pbc=base.pbc,
        status=np.array([status], dtype=np.int64),
        forces=base.forces if (moves or "forces" in properties) else None,
        stress=base.stress
        if ("stress" in properties and has_stress(job.atoms))
        else None,
        charges=np.full((1, n), np.nan) if "charges" in properties else None,
        scan_energies=base.scan_energies,
        scan_coordinates=scan_coordinates,
        scan_positions=scan_positions,
        n_steps=np.array([n_steps], dtype=np.int64),
    )


def _all_finite(*arrays: np.ndarray | None) -> bool:
    return all(a is None or bool(np.all(np.isfinite(a))) for a in arrays)


def run_job(
    job: Job,
    calculator: Calculator,
    /,
    *,
    properties: Collection[str] = DEFAULT_PROPERTIES,
) -> JobResults:
    """Run ``job`` with ``calculator`` (one parameter vector); never raises for a bad model.

    Args:
        job: the job; its atoms are copied, never changed.
        calculator: a fresh ASE calculator for one parameter vector.
        properties: what to report besides the energy: ``forces`` (always computed for
            tasks that move atoms), ``stress`` (periodic jobs only, see
            :func:`has_stress`), ``charges``.

    Returns:
        JobResults with n_vectors = 1: energy (1,) [eV], forces (1, n_atoms, 3) [eV/Å],
        stress (1, 6) Voigt [eV/Å^3] or None, positions (1, n_atoms, 3) [Å] and cell
        (1, 3, 3) [Å] of the final geometry, n_steps (1,) optimizer steps; for a PES
        scan also scan_energies (1, n_points) [eV], scan_coordinates
        (1, n_points, n_coordinates) [Å or degrees] measured after relaxation and
        scan_positions (1, n_points, n_atoms, 3) [Å]; the energy, positions, forces and
        stress are those of the lowest scan point. Status bits: ``FAILED`` (exception
        or non-finite values; results NaN), ``GEOOPT_NOT_CONVERGED`` (results kept if
        ``task.pretend_converged``, for scans always kept).
    """
    try:
        with np.errstate(all="ignore"):
            task = job.task
            if isinstance(task, SinglePoint):
                return _single_point(job, calculator, properties)
            if isinstance(task, GeometryOptimization):
                return _optimize(job, task, calculator, properties)
            if isinstance(task, PESScan):
                return _scan(job, task, calculator, properties)
            raise TypeError(f"unknown task type {type(task).__name__}")
    except Exception as err:  # a bad parameter vector must not stop a run
        logger.debug("job %r failed with %s: %s", job.id, type(err).__name__, err)
        return failed_job_results(job, properties=properties)


def _evaluate(
    atoms: Atoms, properties: Collection[str], *, forces: bool
) -> dict[str, np.ndarray | None]:
    """Energy, forces, stress, charges of ``atoms`` at its current geometry."""
    out: dict[str, np.ndarray | None] = {
        "energy": np.array([atoms.get_potential_energy()], dtype=float),
        "forces": atoms.get_forces(apply_constraint=False)[None].copy()
        if forces
        else None,
        "stress": None,
        "charges": None,
    }
    if "stress" in properties and has_stress(atoms):
        out["stress"] = np.asarray(
            atoms.get_stress(voigt=True, apply_constraint=False), dtype=float
        )[None].copy()
    if "charges" in properties:
        out["charges"] = np.asarray(atoms.get_charges(), dtype=float)[None].copy()
    return out


def _results(
    atoms: Atoms,
    values: dict[str, np.ndarray | None],
    *,
    status: int = 0,
    n_steps: int = 0,
    **scan: np.ndarray,
) -> JobResults:
    return JobResults(
        energy=values["energy"],  # type: ignore[arg-type]
        positions=atoms.positions[None].copy(),
        cell=np.asarray(atoms.cell)[None].copy(),
        pbc=np.asarray(atoms.pbc, dtype=bool).copy(),
        status=np.array([status], dtype=np.int64),
        forces=values["forces"],
        stress=values["stress"],
        charges=values["charges"],
        n_steps=np.array([n_steps], dtype=np.int64),
        **scan,
    )


def _single_point(
    job: Job, calculator: Calculator, properties: Collection[str]
) -> JobResults:
    atoms = job.atoms.copy()
    atoms.calc = calculator
    values = _evaluate(atoms, properties, forces="forces" in properties)
    if not _all_finite(*values.values()):
        return failed_job_results(job, properties=properties)
    return _results(atoms, values)


# ---- harmonic restraints ------------------------------------------------------------


def _difference_vectors(atoms: Atoms, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Vectors r_b - r_a for each (a, b), (n_pairs, 3) [Å]; minimum image if periodic."""
    pos = atoms.positions
    d = np.array([pos[b] - pos[a] for a, b in pairs], dtype=float).reshape(-1, 3)
    if atoms.pbc.any():
        d = find_mic(d, atoms.cell, atoms.pbc)[0]
    return d


def _restraint_terms(
    r: Restraint, atoms: Atoms
) -> tuple[float, list[tuple[int, int]], np.ndarray]:
    """Energy [eV] of one restraint and its gradient with respect to its difference vectors.

    Returns:
        (energy, pairs, g): ``g[m]`` (3,) is dE/d(r_b - r_a) for ``pairs[m] = (a, b)``
        [eV/Å].
    """
    if isinstance(r, BondRestraint):
        pairs = [(r.i, r.j)]
        (d,) = _difference_vectors(atoms, pairs)
        dist = float(np.linalg.norm(d))
        delta = dist - r.target
        g = (r.force_constant * delta / dist) * d if dist > 0 else np.zeros(3)
        return 0.5 * r.force_constant * delta**2, pairs, g[None]
    if isinstance(r, AngleRestraint):
        pairs = [(r.j, r.i), (r.j, r.k)]  # u = r_i - r_j, v = r_k - r_j
        u, v = _difference_vectors(atoms, pairs)
        nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
        cos = float(np.clip(u @ v / (nu * nv), -1.0, 1.0))
        theta = math.acos(cos)
        delta = theta - math.radians(r.target)
        sin = max(math.sqrt(max(1.0 - cos * cos, 0.0)), 1e-8)
        dtheta_du = -(v / (nu * nv) - cos * u / nu**2) / sin
        dtheta_dv = -(u / (nu * nv) - cos * v / nv**2) / sin
        de = r.force_constant * delta
        return (
            0.5 * r.force_constant * delta**2,
            pairs,
            np.array([de * dtheta_du, de * dtheta_dv]),
        )
    # torsion: b1 = r_j - r_i, b2 = r_k - r_j, b3 = r_l - r_k
    pairs = [(r.i, r.j), (r.j, r.k), (r.k, r.l)]
    b1, b2, b3 = _difference_vectors(atoms, pairs)
    m, n = np.cross(b1, b2), np.cross(b2, b3)
    nb2 = float(np.linalg.norm(b2))
    mm, nn = float(m @ m), float(n @ n)
    if nb2 == 0.0 or mm == 0.0 or nn == 0.0:  # undefined dihedral: no restraint force
        return 0.0, pairs, np.zeros((3, 3))
    phi = math.atan2(nb2 * float(b1 @ n), float(m @ n))  # IUPAC sign, as ASE
    delta = (phi - math.radians(r.target) + math.pi) % (2 * math.pi) - math.pi
    dphi_di = -nb2 / mm * m
    dphi_dl = nb2 / nn * n
    dphi_dk = (
        float(b1 @ b2) / nb2**2 * dphi_di - (1.0 + float(b3 @ b2) / nb2**2) * dphi_dl
    )
    de = r.force_constant * delta
    g = de * np.array([-dphi_di, dphi_dk + dphi_dl, dphi_dl])
    return 0.5 * r.force_constant * delta**2, pairs, g


def restraint_energy_and_forces(
    restraints: Sequence[Restraint], atoms: Atoms
) -> tuple[float, np.ndarray, np.ndarray]:
    """Total energy, forces and stress of harmonic restraints.

    ``E = sum k/2 (x - target)^2`` over the restraints (bond: x the distance [Å], k
    [eV/Å^2]; angle and torsion: x in radians, k [eV/rad^2], torsion differences
    wrapped to [-pi, pi)). Distances and angles use the minimum image in periodic
    cells. An undefined angle or torsion (collinear atoms) gives no force.

    Args:
        restraints: the restraints (0-based atom indices).
        atoms: the structure.

    Returns:
        (energy [eV], forces (n_atoms, 3) [eV/Å], stress (6,) Voigt [eV/Å^3], zero
        when the cell has no volume). The stress is ``(1/V) sum_m g_m (x) d_m`` over
        the difference vectors ``d_m`` the restraints depend on.
    """
    forces = np.zeros((len(atoms), 3))
    virial = np.zeros((3, 3))
    energy = 0.0
    for r in restraints:
        e, pairs, g = _restraint_terms(r, atoms)
        energy += e
        d = _difference_vectors(atoms, pairs)
        for (a, b), gm, dm in zip(pairs, g, d, strict=True):
            forces[a] += gm  # d(r_b - r_a)/d r_a = -1, force = -dE/dr
            forces[b] -= gm
            virial += np.outer(gm, dm)
    volume = (
        abs(float(np.linalg.det(np.asarray(atoms.cell)))) if atoms.pbc.any() else 0.0
    )
    stress = np.zeros(6)
    if volume > 0:
        sym = 0.5 * (virial + virial.T) / volume
        stress = sym[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return energy, forces, stress


class RestrainedCalculator(Calculator):
    """An ASE calculator plus harmonic restraints (see :func:`restraint_energy_and_forces`).

    Energy, forces and stress are the wrapped calculator's plus the restraints'. Used by
    :func:`run_job` to relax a :class:`~parafit.jobs.GeometryOptimization` that has
    restraints.

    Args:
        calculator: the model's calculator.
        restraints: the restraints (0-based atom indices).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, calculator: Calculator, restraints: Sequence[Restraint]) -> None:
        super().__init__()
        self.calculator = calculator
        self.restraints = tuple(restraints)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        target = atoms if atoms is not None else self.atoms
        energy, forces, stress = restraint_energy_and_forces(self.restraints, target)
        self.results["energy"] = (
            float(self.calculator.get_potential_energy(target)) + energy
        )
        self.results["free_energy"] = self.results["energy"]
        self.results["forces"] = np.asarray(self.calculator.get_forces(target)) + forces
        if "stress" in properties:
            self.results["stress"] = (
                np.asarray(self.calculator.get_stress(target), dtype=float) + stress
            )


def _optimize(
    job: Job,
    task: GeometryOptimization,
    calculator: Calculator,
    properties: Collection[str],
) -> JobResults:
    atoms = job.atoms.copy()
    atoms.calc = (
        RestrainedCalculator(calculator, task.restraints)
        if task.restraints
        else calculator
    )
    fixed = _fixed_atoms(job)
    if fixed:
        atoms.set_constraint([*atoms.constraints, FixAtoms(indices=fixed)])
    target = atoms
    if task.relax_cell:
        from ase.filters import FrechetCellFilter

        target = FrechetCellFilter(atoms)
    opt = _optimizer_class(task.optimizer)(target, logfile=None, trajectory=None)
    converged = bool(opt.run(fmax=task.fmax, steps=task.max_iterations))
    n_steps = int(opt.nsteps)
    status = 0 if converged else int(Status.GEOOPT_NOT_CONVERGED)
    if not converged and not task.pretend_converged:
        return failed_job_results(
            job,
            properties=properties,
            status=status | int(Status.FAILED),
            n_steps=n_steps,
        )
    atoms.calc = calculator  # report the model without the restraints
    values = _evaluate(atoms, properties, forces=True)
    if not _all_finite(*values.values(), atoms.positions, np.asarray(atoms.cell)):
        return failed_job_results(
            job,
            properties=properties,
            status=status | int(Status.FAILED),
            n_steps=n_steps,
        )
    return _results(atoms, values, status=status, n_steps=n_steps)


# ---- PES scans -----------------------------------------------------------------------


def _bond_components(atoms: Atoms, cut: tuple[int, int]) -> np.ndarray:
    """Connected-component label of each atom in the covalent bond graph without bond ``cut``.

    Two atoms are bonded when closer than 1.2 times the sum of their covalent radii
    (``ase.neighborlist.natural_cutoffs(atoms, mult=1.2)``), periodic images included.
    """
    from ase.neighborlist import natural_cutoffs, neighbor_list
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(atoms)
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.2))
    keep = ~(((i == cut[0]) & (j == cut[1])) | ((i == cut[1]) & (j == cut[0])))
    graph = coo_matrix((np.ones(int(keep.sum())), (i[keep], j[keep])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def moving_atoms(atoms: Atoms, coordinate: ScanCoordinate) -> np.ndarray:
    """Indices of the atoms that move when ``coordinate`` is set.

    The last atom of the coordinate moves together with its fragment: the atoms still
    connected to it by bonds (d < 1.2 x the sum of covalent radii) once the bond a0-a1 (distance)
    or a1-a2 (angle, dihedral) is cut. If that fragment holds a0 (distance) or a0/a1
    (angle, dihedral), e.g. in a ring or an extended solid, only the last atom moves.
    For a distance between two molecules the whole second molecule moves rigidly.

    Args:
        atoms: the structure.
        coordinate: the scanned coordinate.

    Returns:
        (n_moving,) int array of 0-based atom indices.
    """
    a = coordinate.atoms
    last = a[-1]
    if coordinate.kind == "distance":
        cut, still = (a[0], a[1]), {a[0]}
    else:
        cut, still = (a[1], a[2]), {a[0], a[1]}
    labels = _bond_components(atoms, cut)
    fragment = np.flatnonzero(labels == labels[last])
    if any(labels[s] == labels[last] for s in still):
        return np.array([last])
    return fragment


def _vector(atoms: Atoms, a: int, b: int, mic: bool) -> np.ndarray:
    """Vector from atom a to atom b [Å] (minimum image if ``mic``)."""
    d = atoms.positions[b] - atoms.positions[a]
    if mic:
        d = find_mic(d[None], atoms.cell, atoms.pbc)[0][0]
    return d


def _rotate(vectors: np.ndarray, axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotate (n, 3) vectors about the unit ``axis`` by ``angle_deg`` (right-hand rule, Rodrigues)."""
    k = axis / np.linalg.norm(axis)
    t = np.radians(angle_deg)
    c, s = np.cos(t), np.sin(t)
    return vectors * c + np.cross(k, vectors) * s + np.outer(vectors @ k, k) * (1 - c)


def _measure(
    atoms: Atoms, coordinate: ScanCoordinate, mic: bool, near: float | None = None
) -> float:
    """Current value of ``coordinate`` [Å or degrees]; dihedrals wrapped to be nearest ``near``."""
    a = coordinate.atoms
    if coordinate.kind == "distance":
        return float(atoms.get_distance(a[0], a[1], mic=mic))
    if coordinate.kind == "angle":
        return float(atoms.get_angle(a[0], a[1], a[2], mic=mic))
    value = float(atoms.get_dihedral(a[0], a[1], a[2], a[3], mic=mic))
    if near is not None:
        value = near + ((value - near + 180.0) % 360.0 - 180.0)
    return value


def _set_coordinate(
    atoms: Atoms,
    coordinate: ScanCoordinate,
    value: float,
    moving: np.ndarray,
    mic: bool,
) -> None:
    """Move the atoms in ``moving`` so that ``coordinate`` takes ``value``."""
    a = coordinate.atoms
    pos = atoms.positions  # a view: changed in place, constraints not applied
    if coordinate.kind == "distance":
        d = _vector(atoms, a[0], a[1], mic)
        pos[moving] += (value / np.linalg.norm(d) - 1.0) * d
        return
    if coordinate.kind == "angle":
        pivot = a[1]
        v0, v2 = _vector(atoms, a[1], a[0], mic), _vector(atoms, a[1], a[2], mic)
        axis = np.cross(v0, v2)
        collinear = np.linalg.norm(axis) < 1e-10 * np.linalg.norm(v0) * np.linalg.norm(
            v2
        )
        if collinear:  # any axis perpendicular to v2 will do
            trial = np.eye(3)[int(np.argmin(np.abs(v2)))]
            axis = np.cross(v2, trial)
        diff = value - _measure(atoms, coordinate, mic)
    else:
        pivot = a[2]
        axis = _vector(atoms, a[1], a[2], mic)
        diff = value - _measure(atoms, coordinate, mic)
    rel = np.array([_vector(atoms, pivot, m, mic) for m in moving]).reshape(-1, 3)
    pos[moving] = pos[pivot] + _rotate(rel, axis, diff)


def _internals(
    coordinates: Sequence[ScanCoordinate], values: Sequence[float], mic: bool
) -> FixInternals:
    bonds, angles, dihedrals = [], [], []
    for c, v in zip(coordinates, values, strict=True):
        target = [float(v), list(c.atoms)]
        if c.kind == "distance":
            bonds.append(target)
        elif c.kind == "angle":
            angles.append(target)
        else:
            dihedrals.append([float(v) % 360.0, list(c.atoms)])
    return FixInternals(
        bonds=bonds or None,
        angles_deg=angles or None,
        dihedrals_deg=dihedrals or None,
        mic=mic,
    )


def rigid_scan_geometries(job: Job) -> tuple[np.ndarray, np.ndarray]:
    """The geometries of a rigid (``relaxed=False``) PES scan, without any calculator.

    Each point starts from the job's structure and sets the scanned coordinates in
    order (as :func:`run_job` does), so a rigid scan is a set of single points.

    Returns:
        ``(positions (n_points, n_atoms, 3) [Å], coordinates (n_points,
        n_coordinates))``: the geometries and the coordinates measured on them [Å or
        degrees].

    Raises:
        ValueError: the job is not a rigid PES scan.
    """
    task = job.task
    if not isinstance(task, PESScan) or task.relaxed:
        raise ValueError(f"job {job.id!r} is not a rigid PES scan.")
    atoms = job.atoms.copy()
    atoms.set_constraint()
    mic = bool(atoms.pbc.any())
    coords = task.coordinates
    moving = [moving_atoms(atoms, c) for c in coords]
    start = atoms.positions.copy()
    positions = np.empty((task.n_points, len(atoms), 3))
    measured = np.empty((task.n_points, len(coords)))
    for k in range(task.n_points):
        atoms.positions[:] = start
        targets = [c.values[k] for c in coords]
        for c, value, move in zip(coords, targets, moving, strict=True):
            _set_coordinate(atoms, c, value, move, mic)
        positions[k] = atoms.positions
        measured[k] = [
            _measure(atoms, c, mic, near=v)
            for c, v in zip(coords, targets, strict=True)
        ]
    return positions, measured


def _scan(
    job: Job, task: PESScan, calculator: Calculator, properties: Collection[str]
) -> JobResults:
    atoms = job.atoms.copy()
    atoms.set_constraint()
    atoms.calc = calculator
    mic = bool(atoms.pbc.any())
    fixed = _fixed_atoms(job)
    coords = task.coordinates
    moving = [moving_atoms(atoms, c) for c in coords]
    start = atoms.positions.copy()
    n_points, n_atoms = task.n_points, len(atoms)
    scan_energies = np.full((1, n_points), np.nan)
    scan_coordinates = np.full((1, n_points, len(coords)), np.nan)
    scan_positions = np.full((1, n_points, n_atoms, 3), np.nan)
    per_point: list[dict[str, np.ndarray | None]] = []
    n_steps, status = 0, 0
    for k in range(n_points):
        atoms.set_constraint()
        if not task.relaxed:
            atoms.positions[:] = start
        targets = [c.values[k] for c in coords]
        for c, value, move in zip(coords, targets, moving, strict=True):
            _set_coordinate(atoms, c, value, move, mic)
        if task.relaxed:
            constraints: list[object] = [_internals(coords, targets, mic)]
            if fixed:
                constraints.append(FixAtoms(indices=fixed))
            atoms.set_constraint(constraints)
            opt = _optimizer_class(task.optimizer)(atoms, logfile=None, trajectory=None)
            if not opt.run(fmax=task.fmax, steps=task.max_iterations):
                status |= int(Status.GEOOPT_NOT_CONVERGED)
            n_steps += int(opt.nsteps)
        values = _evaluate(atoms, properties, forces=True)
        per_point.append(values)
        scan_energies[0, k] = values["energy"][0]  # type: ignore[index]
        scan_coordinates[0, k] = [
            _measure(atoms, c, mic, near=v)
            for c, v in zip(coords, targets, strict=True)
        ]
        scan_positions[0, k] = atoms.positions
    atoms.set_constraint()
    if not _all_finite(
        scan_energies,
        scan_coordinates,
        scan_positions,
        *(v for p in per_point for v in p.values()),
    ):
        return failed_job_results(
            job,
            properties=properties,
            status=status | int(Status.FAILED),
            n_steps=n_steps,
        )
    best = int(np.argmin(scan_energies[0]))
    atoms.positions[:] = scan_positions[0, best]
    return _results(
        atoms,
        per_point[best],
        status=status,
        n_steps=n_steps,
        scan_energies=scan_energies,
        scan_coordinates=scan_coordinates,
        scan_positions=scan_positions,
    )
