"""Units: internal units are ASE's (eV, Å, eV/Å, e, degrees, eV/Å^3).

A data-set entry has a display unit ``(label, factor)`` with
``value_in_unit = factor * value_in_internal_units``. ParAMS files give factors
relative to the unit its extractor returns: atomic units (Hartree, bohr) for energies,
forces and stresses, but Å, degrees and e for geometries and charges. The data-set
reader therefore converts with each extractor's ParAMS default unit
(``Extractor.params_default_factor``); :func:`params_factor_to_internal` covers only
the atomic-unit quantities (energy, forces, stress). All
constants come from :mod:`ase.units` (CODATA 2014 in ASE).
"""

from dataclasses import dataclass

from ase import units as _ase

__all__ = [
    "ANGSTROM",
    "BOHR",
    "DEGREE",
    "EV",
    "EV_PER_ANGSTROM",
    "HARTREE",
    "KCAL_PER_MOL",
    "KJ_PER_MOL",
    "Unit",
    "internal_factor_to_params",
    "params_factor_to_internal",
]

HARTREE: float = float(_ase.Hartree)  # eV
BOHR: float = float(_ase.Bohr)  # Å
KCAL_PER_MOL: float = float(_ase.kcal / _ase.mol)  # eV
KJ_PER_MOL: float = float(_ase.kJ / _ase.mol)  # eV


@dataclass(frozen=True, slots=True)
class Unit:
    """A display unit: ``value_in_unit = factor * value_in_internal_units``.

    Attributes:
        label: e.g. ``"kcal/mol"``.
        factor: dimensionless conversion factor from internal units.
    """

    label: str
    factor: float

    def to_internal(self, value: float) -> float:
        """Value in this unit -> value in internal units."""
        return value / self.factor

    def from_internal(self, value: float) -> float:
        """Value in internal units -> value in this unit."""
        return value * self.factor


EV = Unit("eV", 1.0)
ANGSTROM = Unit("angstrom", 1.0)
DEGREE = Unit("degree", 1.0)
EV_PER_ANGSTROM = Unit("eV/angstrom", 1.0)
EV_PER_ANGSTROM3 = Unit("eV/angstrom^3", 1.0)
ELEMENTARY_CHARGE = Unit("e", 1.0)
ANGSTROM3 = Unit("angstrom^3", 1.0)

# Dimension of each extractor's value, as (power of energy, power of length), so that
# ParAMS factors (relative to Hartree, bohr) can be converted to ours (eV, Å).
_DIMENSIONS: dict[str, tuple[int, int]] = {
    "energy": (1, 0),
    "forces": (1, -1),
    "stress": (1, -3),
    "length": (0, 1),
    "volume": (0, 3),
    "angle": (0, 0),
    "charge": (0, 0),
}


def _atomic_in_internal(dimension: str) -> float:
    """Size of the atomic unit of ``dimension`` in internal units (e.g. 1 Ha = 27.2 eV)."""
    e_pow, l_pow = _DIMENSIONS[dimension]
    return HARTREE**e_pow * BOHR**l_pow


def params_factor_to_internal(factor: float, dimension: str) -> float:
    """Convert a ParAMS unit factor (relative to atomic units) to a parafit factor.

    ParAMS: ``value_in_unit = factor * value_in_atomic_units``. For
    ``energy``, ``kcal/mol, 627.5096`` becomes ``kcal/mol, 23.06...`` (per eV).

    Args:
        factor: ParAMS factor.
        dimension: one of ``energy, forces, stress, length, volume, angle, charge``.
    """
    return factor / _atomic_in_internal(dimension)


def internal_factor_to_params(factor: float, dimension: str) -> float:
    """Inverse of :func:`params_factor_to_internal`."""
    return factor * _atomic_in_internal(dimension)
