"""Shared fixtures of the emulator tests: small smooth test functions, fixed seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emulators import GPEmulator

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"


def smooth(X: np.ndarray) -> np.ndarray:
    """Two smooth outputs of three inputs, on very different scales."""
    # wiggly enough that the fitted signal variances stay O(1-100) and K well conditioned
    y1 = np.sin(7 * X[:, 0]) + np.cos(6 * X[:, 1]) - 0.5 * X[:, 2]
    y2 = 1e3 * (np.cos(6 * X[:, 1]) * X[:, 0] + np.sin(5 * X[:, 2])) + 5e3
    return np.column_stack([y1, y2])


@pytest.fixture(scope="session")
def train_data():
    rng = np.random.default_rng(0)
    # native units far from the unit cube, so the scaling is exercised
    lo, hi = np.array([-2.0, 10.0, 100.0]), np.array([1.0, 12.0, 400.0])
    U = rng.uniform(size=(30, 3))
    Xn = lo + U * (hi - lo)
    return Xn, smooth(U), lo, hi


@pytest.fixture(scope="session")
def fitted(train_data):
    Xn, Y, _, _ = train_data
    # a floor on the nugget keeps the fixtures' matrices well conditioned (cond(K) ~ 1e6),
    # so the comparisons at 1e-8 and 1e-10 test the algebra, not the rounding of a
    # near-singular K (at the default floor 1e-8, cond(K) ~ 1e9 and any two correct
    # implementations differ by ~1e-7 relative)
    return GPEmulator(n_restarts=2, min_nugget=1e-6, seed=1).fit(Xn, Y)


@pytest.fixture(scope="session")
def fitted_rbf_linear(train_data):
    Xn, Y, _, _ = train_data
    return GPEmulator(kernel="rbf", mean="linear", n_restarts=2, min_nugget=1e-6, seed=2).fit(Xn, Y)
