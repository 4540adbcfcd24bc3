"""parafit: fit the parameters of atomistic models to reference data.

The user-facing names are re-exported lazily, so ``import parafit`` stays light.
"""

import importlib
from typing import Any

__all__ = [
    "DataSet",
    "Entry",
    "Job",
    "JobCollection",
    "Objective",
    "Parameter",
    "ParameterInterface",
    "__version__",
]

_LAZY = {
    "DataSet": "parafit.dataset",
    "Entry": "parafit.dataset",
    "Job": "parafit.jobs",
    "JobCollection": "parafit.jobs",
    "Objective": "parafit.objective",
    "Parameter": "parafit.parameters",
    "ParameterInterface": "parafit.parameters",
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("parafit")
        except PackageNotFoundError:  # running from a source tree
            return "0.0.0+unknown"
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'parafit' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
