"""Emulator plug-ins for calib (GPyTorch Gaussian processes).

- :class:`GPEmulator`: exact GP regression, independent outputs batched in one model.
- :class:`BasisGPEmulator`: principal-component basis GP for functional outputs.
- :mod:`emulators.validation`: held-out and leave-one-out diagnostics.
"""

from emulators import validation
from emulators.basis import BasisGPEmulator
from emulators.gp import ConvergenceWarning, GPEmulator, JitterWarning

__all__ = ["GPEmulator", "BasisGPEmulator", "ConvergenceWarning", "JitterWarning", "validation"]
