"""Emulator plug-ins for calib (GPyTorch Gaussian processes)."""

__all__: list[str] = []
