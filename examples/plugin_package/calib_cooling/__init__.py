"""Newton's law of cooling as a calib simulator plug-in (docs/plugins.md)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["CoolingSimulator"]


class CoolingSimulator:
    """Temperature of a body cooling in still air, read at fixed times.

    ``T(t) = T_air + (T_0 - T_air) exp(-k t)`` (Newton's law of cooling).

    Parameters
    ----------
    times : sequence of float
        The reading times (minutes), one output each.
    initial : float
        The body's temperature ``T_0`` at time 0 (°C).

    Examples
    --------
    >>> sim = CoolingSimulator(times=[0.0, 10.0], initial=90.0)
    >>> sim.run(np.array([20.0]), np.array([0.0]))
    array([90., 90.])
    """

    input_names = ("air",)  # control input: the air temperature (°C)
    parameter_names = ("k",)  # calibration parameter: the cooling rate (1/min)

    def __init__(self, times: Sequence[float] = (1.0, 5.0, 10.0), initial: float = 90.0):
        t = np.asarray(times, dtype=float).reshape(-1)
        if t.size == 0 or not np.isfinite(t).all() or (t < 0).any():
            raise ValueError(f"times: expected finite times >= 0, got {times!r}")
        if not np.isfinite(initial):
            raise ValueError(f"initial: expected a finite temperature, got {initial!r}")
        self.times = t
        self.initial = float(initial)
        self.output_names = tuple(f"T_{i}" for i in range(t.size))
        # the reading times are the outputs' coordinates: a discrepancy δ can then be
        # smooth in time rather than independent per reading
        self.output_coords = t.reshape(-1, 1)

    def run(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """One run: ``x`` (1,) the air temperature, ``theta`` (1,) the rate; returns (m,)."""
        return self.run_batch(np.reshape(x, (1, 1)), np.reshape(theta, (1, 1)))[0]

    def run_batch(self, X: np.ndarray, Theta: np.ndarray) -> np.ndarray:
        """Many runs at once: ``X`` (n, 1), ``Theta`` (n, 1); returns (n, m)."""
        air, k = np.asarray(X, dtype=float)[:, :1], np.asarray(Theta, dtype=float)[:, :1]
        return air + (self.initial - air) * np.exp(-k * self.times)
