"""HSIC sensitivity analysis: which parameters the loss depends on.

See ``docs/sensitivity.md``. The numeric core is :mod:`parafit.sensitivity.hsic`;
:func:`analyze_samples` runs the whole pipeline on samples and returns an
:class:`HSICResult`.
"""

from parafit.sensitivity.analysis import analyze_samples as analyze_samples
from parafit.sensitivity.kernels import (
    KERNELS as KERNELS,
)
from parafit.sensitivity.kernels import (
    ConjunctiveGaussianKernel as ConjunctiveGaussianKernel,
)
from parafit.sensitivity.kernels import (
    GaussianKernel as GaussianKernel,
)
from parafit.sensitivity.kernels import (
    make_kernel as make_kernel,
)
from parafit.sensitivity.result import HSICResult as HSICResult

__all__ = [
    "KERNELS",
    "ConjunctiveGaussianKernel",
    "GaussianKernel",
    "HSICResult",
    "analyze_samples",
    "make_kernel",
]
