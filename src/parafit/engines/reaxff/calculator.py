"""An ASE calculator for parafit's JAX ReaxFF: a fitted force field usable at once.

Energies in eV, forces in eV/Å, charges in e (ASE's units), plus the per-term
energies in ``results["energy_terms"]`` in kcal/mol (ReaxFF's unit, LAMMPS's names
in :data:`~parafit.engines.reaxff.model.TERMS`). Forces follow LAMMPS (no derivative
through the charge solve). Runs in float64 whatever the global JAX setting.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes

from parafit.engines.jax_cache import enable_compilation_cache
from parafit.engines.reaxff.model import (
    ReaxFFModel,
    StructureLists,
    deform_lists,
    needs_charges,
    stress_voigt,
    structure_energy,
    structure_lists,
    total_energy,
)
from parafit.engines.reaxff.nonbonded import pad_pair_list
from parafit.engines.reaxff.topology import (
    ListSizes,
    pad_topology,
    topology_sizes,
)
from parafit.io.ffield import ForceField, read_ffield

__all__ = ["KCAL_MOL", "ReaxFFCalculator"]

#: 1 kcal/mol in eV.
KCAL_MOL = units.kcal / units.mol


def _power_of_two(n: int) -> int:
    """Padded list size: lists rebuilt during a relaxation reuse a few compiled shapes."""
    return 1 << max(0, (int(n) - 1).bit_length())


class ReaxFFCalculator(Calculator):
    """ReaxFF energies, forces and charges from parafit's JAX engine.

    Args:
        ffield: path of an ``ffield`` file or a :class:`~parafit.io.ffield.ForceField`.
        skin: extra distance [Å] on every list cutoff; lists are rebuilt when an atom
            has moved more than half of it (default 1.0).
        **kwargs: passed to :class:`ase.calculators.calculator.Calculator`.

    The total charge is ``atoms.info.get("charge", 0)``.

    Example:
        >>> from ase.build import molecule
        >>> atoms = molecule("H2O")
        >>> atoms.calc = ReaxFFCalculator(ffield="ffield")  # doctest: +SKIP
        >>> atoms.get_potential_energy(), atoms.calc.results["energy_terms"]["E_bond"]  # doctest: +SKIP
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "charges"]

    def __init__(
        self, ffield: str | Path | ForceField, *, skin: float = 1.0, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        ff = ffield if isinstance(ffield, ForceField) else read_ffield(ffield)
        self._setup(ReaxFFModel(ff), np.zeros(0), skin)

    @classmethod
    def from_model(
        cls, model: ReaxFFModel, values: np.ndarray, *, skin: float = 1.0
    ) -> "ReaxFFCalculator":
        """A calculator of ``model`` at ``values`` (n_params,) of its parameter names.

        Calculators of one model share their compiled functions (the values are an
        input), so many parameter vectors cost no recompilation.
        """
        calc = cls.__new__(cls)
        Calculator.__init__(calc)
        calc._setup(model, np.asarray(values, float), skin)
        return calc

    def _setup(self, model: ReaxFFModel, values: np.ndarray, skin: float) -> None:
        enable_compilation_cache()
        self.model = model
        self.skin = float(skin)
        self._values = values
        self._tables: Any = None
        self._lists: StructureLists | None = None
        self._anchor: np.ndarray | None = None
        self._key: tuple[Any, ...] | None = None

    def _needs_lists(self, atoms: Atoms) -> bool:
        key = (tuple(atoms.numbers), tuple(atoms.pbc), atoms.cell.array.tobytes())
        if key != self._key or self._anchor is None:
            self._key = key
            return True
        moved = np.linalg.norm(atoms.positions - self._anchor, axis=1).max()
        return bool(moved > 0.5 * self.skin)

    def _build(self, atoms: Atoms) -> None:
        types = self.model.type_index(atoms.get_chemical_symbols())
        if self._tables is None:
            self._tables = (
                jax.jit(self.model.tables)(jnp.asarray(self._values))
                if self._values.size
                else self.model.base_tables()
            )
        self._lists = structure_lists(
            self.model,
            atoms.positions,
            atoms.cell.array,
            atoms.pbc,
            types,
            tables=(self._tables,),
            skin=self.skin,
        )
        self._anchor = atoms.positions.copy()

    def _function(self, sizes: ListSizes, n_pairs: int, charged: bool) -> Any:
        key = ("calculator", sizes, n_pairs, charged)
        cache = self.model.compiled
        if key not in cache:
            model = self.model

            def energy(positions, strain, values, types, top, pairs, charge):  # noqa: ANN001, ANN202
                top, pairs = deform_lists(top, pairs, strain)
                terms, q, overflow = structure_energy(
                    model,
                    model.tables(values),
                    types,
                    positions @ strain.T,
                    top,
                    pairs,
                    charge,
                    solve_charges=charged,
                )
                return total_energy(terms), (terms, q, overflow)

            cache[key] = jax.jit(
                jax.value_and_grad(energy, argnums=(0, 1), has_aux=True)
            )
        return cache[key]

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        with jax.enable_x64(True):
            if self._needs_lists(atoms):
                self._build(atoms)
            for attempt in range(2):
                assert self._lists is not None
                top = self._lists.topology
                raw = topology_sizes(top)
                sizes = ListSizes(
                    atoms=raw.atoms,  # positions are not padded here
                    bonds=_power_of_two(raw.bonds),
                    angles=_power_of_two(raw.angles),
                    torsions=_power_of_two(raw.torsions),
                    hbonds=_power_of_two(raw.hbonds),
                    far=_power_of_two(raw.far),
                )
                n_pairs = _power_of_two(self._lists.pairs.i.size)
                charge = float(atoms.info.get("charge", 0.0))
                charged = needs_charges(self._lists.types, charge)
                fn = self._function(sizes, n_pairs, charged)
                (e, (terms, q, overflow)), (grad, d_strain) = fn(
                    jnp.asarray(atoms.positions),
                    jnp.eye(3),
                    jnp.asarray(self._values),
                    jnp.asarray(self._lists.types),
                    pad_topology(top, sizes),
                    pad_pair_list(self._lists.pairs, n_pairs),
                    charge,
                )
                if not bool(overflow) or attempt == 1:
                    break
                self._build(atoms)  # a bond crossed the list threshold: rebuild once
            if atoms.pbc.any() and atoms.cell.rank == 3:  # see relax.has_stress
                self.results["stress"] = (
                    np.asarray(stress_voigt(d_strain, jnp.asarray(atoms.cell.array)))
                    * KCAL_MOL
                )
        self.results["energy"] = float(e) * KCAL_MOL
        self.results["free_energy"] = self.results["energy"]
        self.results["forces"] = -np.asarray(grad) * KCAL_MOL
        self.results["charges"] = np.asarray(q)
        self.results["energy_terms"] = {k: float(v) for k, v in terms.items()}
