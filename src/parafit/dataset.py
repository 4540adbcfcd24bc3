"""Data sets: entries comparing expressions over job results with reference values.

SKELETON written by the lead; the data-set helper completes this module.
The dataclass fields of :class:`Entry` are a shared contract: do not rename them.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parafit.units import Unit

__all__ = ["DataSet", "Entry"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One data-set entry.

    Attributes:
        expression: e.g. ``"energy('a') - energy('b')"``.
        reference: reference value in ``unit`` (float, or array for vector extractors),
            or None when not known yet.
        sigma: acceptable error in ``unit`` (> 0).
        weight: importance (dimensionless, >= 0), scalar or one per component.
        unit: display unit; ``value_in_unit = unit.factor * value_in_internal_units``.
        metadata: free keys (Description, Source, Group, ...), kept on round trips.
    """

    expression: str
    reference: float | np.ndarray | None
    sigma: float
    weight: float | np.ndarray = 1.0
    unit: Unit = field(default_factory=lambda: Unit("", 1.0))
    metadata: Mapping[str, Any] = field(default_factory=dict)


class DataSet:  # completed by the data-set helper
    pass
