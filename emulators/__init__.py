"""Emulator plug-ins for calib (GPyTorch Gaussian processes).

- :class:`GPEmulator`: exact GP regression, independent outputs batched in one model.
- :class:`BasisGPEmulator`: principal-component basis GP for functional outputs.
- :class:`SparseGPEmulator`: inducing-point (SGPR) GP for thousands of runs and more.
- :mod:`emulators.validation`: held-out and leave-one-out diagnostics.
"""

from emulators import validation
from emulators.basis import BasisGPEmulator
from emulators.gp import ConvergenceWarning, GPEmulator, JitterWarning
from emulators.sparse import SparseGPEmulator

__all__ = [
    "GPEmulator",
    "BasisGPEmulator",
    "SparseGPEmulator",
    "ConvergenceWarning",
    "JitterWarning",
    "validation",
]
