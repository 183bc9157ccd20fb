"""Simulator plug-ins for calib: a Python callable, an external command, reference models.

The reference models are imported from their modules (``simulators.beam``,
``simulators.reaction_network``) so that importing this package stays light.
"""

from .command import CommandSimulator
from .function import FunctionSimulator

__all__ = ["CommandSimulator", "FunctionSimulator"]
