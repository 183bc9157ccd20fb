"""calib: Bayesian calibration of computer simulators (Kennedy & O'Hagan 2001) with
per-parameter pooling across experimental campaigns."""

from __future__ import annotations

from . import priors
from .campaign import Campaign
from .interfaces import Emulator, Prediction, Simulator, SimulatorError
from .parameters import Parameter

__version__ = "0.1.0"

__all__ = [
    "Campaign",
    "Emulator",
    "Parameter",
    "Prediction",
    "Simulator",
    "SimulatorError",
    "priors",
]
