"""Simulator plug-ins for calib: a Python callable, an external command, reference models."""

from .function import FunctionSimulator

__all__ = ["FunctionSimulator"]
