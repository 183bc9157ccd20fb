"""Prior distributions, with a batched torch ``log_prob`` for the sampler.

Every prior has:

- ``log_prob(x)``: the normalized log density of a torch tensor (any shape), elementwise,
  ``-inf`` outside the support;
- ``sample(rng, size)``: NumPy draws;
- ``support``: ``(lower, upper)``;
- ``scipy()``: the same distribution as a frozen :mod:`scipy.stats` object, used for
  quantiles and as the independent reference in tests.

Parameterizations (DESIGN.md §5): ``Normal(mean, sd)``, ``LogNormal(mu, sigma)`` (of the
log), ``HalfNormal(scale)``, ``HalfCauchy(scale)``, ``Uniform(lower, upper)``,
``Gamma(shape, rate)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import stats

__all__ = ["Prior", "Normal", "LogNormal", "HalfNormal", "HalfCauchy", "Uniform", "Gamma"]

_LOG_2PI = math.log(2.0 * math.pi)


def _positive_finite(cls: str, name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{cls}: {name} must be a real number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0.0:
        raise ValueError(f"{cls}: {name} must be finite and > 0, got {value!r}")
    return v


def _finite(cls: str, name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{cls}: {name} must be a real number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{cls}: {name} must be finite, got {value!r}")
    return v


class Prior:
    """Base class of the priors. Subclasses set ``support`` and the three methods."""

    support: tuple[float, float] = (-math.inf, math.inf)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def scipy(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...] = ()) -> np.ndarray:
        """Draws from the prior with the NumPy generator ``rng``."""
        return np.asarray(self.scipy().rvs(size=size, random_state=rng), dtype=float)

    def ppf(self, q: np.ndarray | float) -> np.ndarray:
        """Quantile function."""
        return np.asarray(self.scipy().ppf(q), dtype=float)

    def _outside(self, x: torch.Tensor, lp: torch.Tensor) -> torch.Tensor:
        lo, hi = self.support
        bad = torch.zeros_like(x, dtype=torch.bool)
        if math.isfinite(lo):
            bad = bad | (x < lo)
        if math.isfinite(hi):
            bad = bad | (x > hi)
        return torch.where(bad, torch.full_like(lp, -math.inf), lp)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "type")
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Prior) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.to_dict().items())))

    def to_dict(self) -> dict[str, Any]:
        """Plain description: ``{"type": "Normal", "mean": 0.0, "sd": 1.0}``."""
        return {"type": type(self).__name__, **vars(self)}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Prior:
        """Inverse of :meth:`to_dict`; only the classes of this module are accepted."""
        kinds = {c.__name__: c for c in (Normal, LogNormal, HalfNormal, HalfCauchy, Uniform, Gamma)}
        d = dict(d)
        kind = d.pop("type", None)
        if kind not in kinds:
            raise ValueError(f"prior type must be one of {sorted(kinds)}, got {kind!r}")
        return kinds[kind](**d)


class Normal(Prior):
    """Normal distribution ``N(mean, sd²)``."""

    def __init__(self, mean: float = 0.0, sd: float = 1.0):
        self.mean = _finite("Normal", "mean", mean)
        self.sd = _positive_finite("Normal", "sd", sd)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.sd
        return -0.5 * z * z - math.log(self.sd) - 0.5 * _LOG_2PI

    def scipy(self):
        return stats.norm(self.mean, self.sd)


class LogNormal(Prior):
    """Log-normal distribution: ``log X ~ N(mu, sigma²)``."""

    support = (0.0, math.inf)

    def __init__(self, mu: float = 0.0, sigma: float = 1.0):
        self.mu = _finite("LogNormal", "mu", mu)
        self.sigma = _positive_finite("LogNormal", "sigma", sigma)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        pos = x > 0
        lx = torch.log(torch.where(pos, x, torch.ones_like(x)))
        z = (lx - self.mu) / self.sigma
        lp = -0.5 * z * z - lx - math.log(self.sigma) - 0.5 * _LOG_2PI
        return torch.where(pos, lp, torch.full_like(lp, -math.inf))

    def scipy(self):
        return stats.lognorm(s=self.sigma, scale=math.exp(self.mu))


class HalfNormal(Prior):
    """Half-normal distribution on ``[0, ∞)`` with scale ``scale``."""

    support = (0.0, math.inf)

    def __init__(self, scale: float = 1.0):
        self.scale = _positive_finite("HalfNormal", "scale", scale)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = x / self.scale
        lp = -0.5 * z * z - math.log(self.scale) + 0.5 * math.log(2.0 / math.pi)
        return self._outside(x, lp)

    def scipy(self):
        return stats.halfnorm(scale=self.scale)


class HalfCauchy(Prior):
    """Half-Cauchy distribution on ``[0, ∞)`` with scale ``scale`` (Gelman 2006)."""

    support = (0.0, math.inf)

    def __init__(self, scale: float = 1.0):
        self.scale = _positive_finite("HalfCauchy", "scale", scale)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = x / self.scale
        lp = math.log(2.0 / math.pi) - math.log(self.scale) - torch.log1p(z * z)
        return self._outside(x, lp)

    def scipy(self):
        return stats.halfcauchy(scale=self.scale)


class Uniform(Prior):
    """Uniform distribution on ``[lower, upper]``."""

    def __init__(self, lower: float = 0.0, upper: float = 1.0):
        self.lower = _finite("Uniform", "lower", lower)
        self.upper = _finite("Uniform", "upper", upper)
        if not self.upper > self.lower:
            raise ValueError(
                f"Uniform: upper must be > lower, got lower={lower!r}, upper={upper!r}"
            )
        self.support = (self.lower, self.upper)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "Uniform", "lower": self.lower, "upper": self.upper}

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        lp = torch.full_like(x, -math.log(self.upper - self.lower))
        return self._outside(x, lp)

    def scipy(self):
        return stats.uniform(self.lower, self.upper - self.lower)


class Gamma(Prior):
    """Gamma distribution with ``shape`` (α) and ``rate`` (β): density ∝ x^(α-1) e^(-βx)."""

    support = (0.0, math.inf)

    def __init__(self, shape: float = 2.0, rate: float = 1.0):
        self.shape = _positive_finite("Gamma", "shape", shape)
        self.rate = _positive_finite("Gamma", "rate", rate)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        pos = x > 0
        xs = torch.where(pos, x, torch.ones_like(x))
        lp = (
            self.shape * math.log(self.rate)
            - math.lgamma(self.shape)
            + (self.shape - 1.0) * torch.log(xs)
            - self.rate * xs
        )
        return torch.where(pos, lp, torch.full_like(lp, -math.inf))

    def scipy(self):
        return stats.gamma(a=self.shape, scale=1.0 / self.rate)


def check_prior(value: Any, name: str) -> Prior | None:
    """``None`` or a :class:`Prior`; anything else is a ``TypeError`` naming ``name``."""
    if value is None or isinstance(value, Prior):
        return value
    raise TypeError(
        f"{name} must be a calib.priors prior (Normal, LogNormal, HalfNormal, HalfCauchy, "
        f"Uniform, Gamma) or None, got {value!r}"
    )
