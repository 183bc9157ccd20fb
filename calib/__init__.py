"""calib: Bayesian calibration of computer simulators (Kennedy & O'Hagan 2001) with
per-parameter pooling across experimental campaigns."""

from __future__ import annotations

from . import design, plugins, priors
from .archive import ArchiveError, ArchiveWarning
from .calibrator import Calibrator
from .campaign import Campaign
from .config import load
from .discrepancy import Discrepancy
from .identifiability import IdentifiabilityWarning
from .interfaces import Emulator, Prediction, Simulator, SimulatorError
from .likelihood import SimulatorWarning
from .parameters import Parameter
from .posterior import ConvergenceWarning, Posterior, PosteriorPrediction, Summary
from .priors import LKJ
from .runner import RunSet, run_design

__version__ = "0.1.0"

__all__ = [
    "ArchiveError",
    "ArchiveWarning",
    "RunSet",
    "design",
    "plugins",
    "run_design",
    "Calibrator",
    "ConvergenceWarning",
    "Campaign",
    "Discrepancy",
    "IdentifiabilityWarning",
    "Posterior",
    "PosteriorPrediction",
    "SimulatorWarning",
    "Summary",
    "Emulator",
    "Parameter",
    "Prediction",
    "Simulator",
    "SimulatorError",
    "priors",
    "load",
    "LKJ",
]
