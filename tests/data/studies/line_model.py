"""The simulator of the test studies: a line through the origin, shifted by c."""

import numpy as np


def line(X, T):
    """``y = k·x + c`` for ``X (n, 1)``, ``T (n, 2)`` -> ``(n, 1)``."""
    X, T = np.asarray(X, dtype=float), np.asarray(T, dtype=float)
    return T[:, :1] * X[:, :1] + T[:, 1:2]
