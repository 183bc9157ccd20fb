"""The Beta prior on a probability (the spike's weight π₀ of spike-and-slab pooling).

Kept apart from :mod:`calib.priors` only for that module's length; it is a
:class:`calib.priors.Prior` like the others (``calib.priors.Beta`` once re-exported there).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from .priors import Prior, _positive_finite

__all__ = ["Beta"]


class Beta(Prior):
    """Beta distribution on (0, 1): density ∝ x^(a−1) (1 − x)^(b−1).

    Parameters
    ----------
    a, b : float
        Both finite and > 0. ``Beta(1, 1)`` is uniform.

    Examples
    --------
    >>> Beta(2.0, 8.0).scipy().mean()
    0.2
    """

    support = (0.0, 1.0)

    def __init__(self, a: float = 1.0, b: float = 1.0):
        self.a = _positive_finite("Beta", "a", a)
        self.b = _positive_finite("Beta", "b", b)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        inside = (x >= 0.0) & (x <= 1.0)
        xs = x.clamp(0.0, 1.0)
        const = math.lgamma(self.a + self.b) - math.lgamma(self.a) - math.lgamma(self.b)
        # xlogy: (a − 1)·log x is 0, not nan, at x = 0 when a = 1 (the uniform's end points)
        lp = (
            torch.xlogy(torch.full_like(xs, self.a - 1.0), xs)
            + torch.xlogy(torch.full_like(xs, self.b - 1.0), 1.0 - xs)
            + const
        )
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...] = ()) -> np.ndarray:
        return np.asarray(rng.beta(self.a, self.b, size=size), dtype=float)

    def scipy(self):
        return stats.beta(self.a, self.b)
