"""Figures of a calibration, each a function of a :class:`calib.Posterior` (or of an
emulator) returning a :class:`matplotlib.figure.Figure` (docs/figures.md).

Nothing here shows a window or touches matplotlib's global state: save a figure with
``fig.savefig(path)``, or write them all with :func:`save_all` (``calib plot``).

>>> from calib import plotting                       # doctest: +SKIP
>>> plotting.corner(post).savefig("corner.png")      # doctest: +SKIP
>>> plotting.save_all(post, "figures/")              # doctest: +SKIP
"""

from __future__ import annotations

from ._chain import convergence, corner, traces
from ._emulator import emulator_validation
from ._fit import discrepancy, predictive
from ._save import CAPTIONS, save_all
from ._shrinkage import pooled_parameters, pooling

__all__ = [
    "CAPTIONS",
    "convergence",
    "corner",
    "discrepancy",
    "emulator_validation",
    "pooled_parameters",
    "pooling",
    "predictive",
    "save_all",
    "traces",
]
