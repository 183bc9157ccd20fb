"""The drop-time field shared by the tests of observations at their own output coordinates
(tests/calib/test_field_coords.py, test_field_coords_predict.py, test_predict_coords.py).

A field like SEPIA's ball_drop_1: simulator heights 1.5, 3, …, 24 m, field heights 5, 10,
15, 20 m (15 m is a simulator height, the others are interpolated), and the basis emulator
every one of those tests fits to the same 30 runs.
"""

from __future__ import annotations

import numpy as np

from emulators import BasisGPEmulator
from simulators import FunctionSimulator

H = np.arange(1, 17) * 1.5  # simulator heights (m)
FIELD = np.array([5.0, 10.0, 15.0, 20.0])
G = 9.81
R_FIELD = np.array([0.1, 0.2, 0.4])
X_NEW = np.array([[0.15], [0.3]])


def drop(X: np.ndarray, T: np.ndarray, h: np.ndarray = H) -> np.ndarray:
    """Drop time with a drag-like stretch: sqrt(2h/g)·(1 + C h / (40 R))."""
    R, C = X[:, :1], T[:, :1]
    return np.sqrt(2 * h[None, :] / G) * (1 + C * h[None, :] / (40 * R))


def sim(heights: np.ndarray = H) -> FunctionSimulator:
    """The simulator of :func:`drop` at ``heights``."""
    return FunctionSimulator(
        lambda X, T: drop(X, T, heights),
        ("R",),
        ("C",),
        tuple(f"t{k}" for k in range(heights.size)),
        vectorized=True,
        output_coords=heights,
    )


def fit_basis() -> tuple[BasisGPEmulator, np.ndarray, np.ndarray]:
    """The basis emulator fitted to 30 runs (R ~ U(0.05, 0.5), C ~ U(0, 1); seed 0), with
    those runs' inputs and outputs."""
    rng = np.random.default_rng(0)
    inputs = np.column_stack([rng.uniform(0.05, 0.5, 30), rng.uniform(0.0, 1.0, 30)])
    outputs = drop(inputs[:, :1], inputs[:, 1:])
    em = BasisGPEmulator(n_restarts=None, adam_iter=30, lbfgs_iter=60, seed=0)
    return em.fit(inputs, outputs), inputs, outputs
