"""ReaxFF support: parameter names and the parameter interface of an ``ffield``.

The file format lives in :mod:`parafit.io.ffield`, the legacy ``params`` file and the
ParAMS ``ffield_min``/``ffield_max``/``ffield_bool`` triple in
:mod:`parafit.io.reaxff_params`.
"""

from parafit.engines.reaxff.names import ffield_with_values as ffield_with_values
from parafit.engines.reaxff.names import interface_from_ffield as interface_from_ffield

__all__ = ["ffield_with_values", "interface_from_ffield"]
