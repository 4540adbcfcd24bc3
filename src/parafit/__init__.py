"""parafit: fit the parameters of atomistic models to reference data.

The user-facing names are re-exported lazily, so ``import parafit`` stays light.
"""

import importlib
from typing import Any

__all__ = [
    "DataSet",
    "Entry",
    "GeometryOptimization",
    "HSICResult",
    "Job",
    "JobCollection",
    "JobResults",
    "Objective",
    "PESScan",
    "Parameter",
    "ParameterInterface",
    "ScanCoordinate",
    "SinglePoint",
    "__version__",
    "analyze_samples",
    "load_config",
    "register_engine",
    "register_extractor",
    "register_optimizer",
    "run_task",
]

_LAZY = {
    "DataSet": "parafit.dataset",
    "Entry": "parafit.dataset",
    "GeometryOptimization": "parafit.jobs",
    "HSICResult": "parafit.sensitivity",
    "analyze_samples": "parafit.sensitivity",
    "Job": "parafit.jobs",
    "JobCollection": "parafit.jobs",
    "JobResults": "parafit.engines.base",
    "Objective": "parafit.objective",
    "PESScan": "parafit.jobs",
    "Parameter": "parafit.parameters",
    "ParameterInterface": "parafit.parameters",
    "ScanCoordinate": "parafit.jobs",
    "SinglePoint": "parafit.jobs",
    "load_config": "parafit.config",
    "register_engine": "parafit.engines.base",
    "register_extractor": "parafit.extractors",
    "register_optimizer": "parafit.optimizers.base",
    "run_task": "parafit.tasks",
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
