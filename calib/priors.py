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
``Gamma(shape, rate)``, ``Beta(a, b)``; as GPMSA and SEPIA state them (on a δ
length-scale and an sd): ``BetaRho(a, b, span)``, ``GammaPrecision(shape, rate, unit)``.

:func:`stack` evaluates several priors of one class on the columns of a tensor in one
vectorized pass (the log-posterior's hot path): the same formulas with the parameters as
tensors, the constant parts summed once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from ._lkj import LKJ as LKJ  # a prior on a correlation matrix (Calibrator(correlated=))

__all__ = [
    "Prior",
    "Normal",
    "LogNormal",
    "HalfNormal",
    "HalfCauchy",
    "Uniform",
    "Gamma",
    "Beta",
    "BetaRho",
    "GammaPrecision",
    "StackedLogProb",
    "stack",
    "LKJ",
]

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

    def truncated_ppf(
        self, q: np.ndarray | float, lower: float | None, upper: float | None
    ) -> np.ndarray:
        """Quantile function of the prior truncated to ``[lower, upper]`` (None: open side).

        ``F⁻¹(F(a) + q (F(b) − F(a)))``: the one inverse CDF behind the prior draws of a
        bounded parameter, a design's box on an open side and the default hyperpriors.
        """
        dist = self.scipy()
        a = -math.inf if lower is None else lower
        b = math.inf if upper is None else upper
        fa, fb = float(dist.cdf(a)), float(dist.cdf(b))
        return dist.ppf(fa + (fb - fa) * np.asarray(q))

    @classmethod
    def _stack(
        cls, priors: Sequence[Prior], inside: bool, device: torch.device | None = None
    ) -> StackedLogProb:
        """Column-stacked log density (see :func:`stack`); this fallback calls each prior."""

        def fn(x: torch.Tensor) -> torch.Tensor:
            return torch.stack([p.log_prob(x[..., i]) for i, p in enumerate(priors)], dim=-1)

        return StackedLogProb(0.0, fn)

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
        d = dict(d)
        kind = d.pop("type", None)
        if kind not in _FAMILIES:
            raise ValueError(f"prior type must be one of {sorted(_FAMILIES)}, got {kind!r}")
        return _FAMILIES[kind](**d)


class Normal(Prior):
    """Normal distribution ``N(mean, sd²)``."""

    def __init__(self, mean: float = 0.0, sd: float = 1.0):
        self.mean = _finite("Normal", "mean", mean)
        self.sd = _positive_finite("Normal", "sd", sd)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.sd
        return -0.5 * z * z - math.log(self.sd) - 0.5 * _LOG_2PI

    @classmethod
    def _stack(
        cls, priors: Sequence[Normal], inside: bool, device: torch.device | None = None
    ) -> StackedLogProb:
        mean, sd = _params(priors, "mean", device), _params(priors, "sd", device)
        const = sum(-math.log(p.sd) - 0.5 * _LOG_2PI for p in priors)
        if all(p.mean == 0.0 and p.sd == 1.0 for p in priors):
            return StackedLogProb(const, lambda x: -0.5 * x * x)

        def fn(x: torch.Tensor) -> torch.Tensor:
            z = (x - mean) / sd
            return -0.5 * z * z

        return StackedLogProb(const, fn)

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

    @classmethod
    def _stack(
        cls, priors: Sequence[LogNormal], inside: bool, device: torch.device | None = None
    ) -> StackedLogProb:
        mu, sigma = _params(priors, "mu", device), _params(priors, "sigma", device)
        const = sum(-math.log(p.sigma) - 0.5 * _LOG_2PI for p in priors)

        def fn(x: torch.Tensor) -> torch.Tensor:
            pos = x > 0  # x = 0 has density 0 (-inf), also where exp(u) underflowed
            lx = torch.log(torch.where(pos, x, 1.0))
            z = (lx - mu) / sigma
            return torch.where(pos, -0.5 * z * z - lx, -math.inf)

        return StackedLogProb(const, fn, lambda u: -0.5 * ((u - mu) / sigma) ** 2)

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

    @classmethod
    def _stack(
        cls, priors: Sequence[HalfNormal], inside: bool, device: torch.device | None = None
    ) -> StackedLogProb:
        scale = _params(priors, "scale", device)
        const = sum(-math.log(p.scale) + 0.5 * math.log(2.0 / math.pi) for p in priors)

        def fn(x: torch.Tensor) -> torch.Tensor:
            z = x / scale
            lp = -0.5 * z * z
            return lp if inside else torch.where(x < 0, -math.inf, lp)

        return StackedLogProb(const, fn)

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

    @classmethod
    def _stack(
        cls, priors: Sequence[HalfCauchy], inside: bool, device: torch.device | None = None
    ) -> StackedLogProb:
        scale = _params(priors, "scale", device)
        const = sum(math.log(2.0 / math.pi) - math.log(p.scale) for p in priors)

        def fn(x: torch.Tensor) -> torch.Tensor:
            z = x / scale
            lp = -torch.log1p(z * z)
            return lp if inside else torch.where(x < 0, -math.inf, lp)

        return StackedLogProb(const, fn)

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

    @classmethod
    def _stack(
        cls, priors: Sequence[Uniform], inside: bool, device: torch.device | None = None
    ) -> StackedLogProb:
        const = sum(-math.log(p.upper - p.lower) for p in priors)
        if inside:
            return StackedLogProb(const, None)  # constant on the support
        lo, hi = _params(priors, "lower", device), _params(priors, "upper", device)

        def fn(x: torch.Tensor) -> torch.Tensor:
            return torch.where((x < lo) | (x > hi), -math.inf, torch.zeros_like(x))

        return StackedLogProb(const, fn)

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

    @classmethod
    def _stack(
        cls, priors: Sequence[Gamma], inside: bool, device: torch.device | None = None
    ) -> StackedLogProb:
        shape, rate = _params(priors, "shape", device), _params(priors, "rate", device)
        const = sum(p.shape * math.log(p.rate) - math.lgamma(p.shape) for p in priors)

        def fn(x: torch.Tensor) -> torch.Tensor:
            pos = x > 0
            xs = torch.where(pos, x, 1.0)
            lp = (shape - 1.0) * torch.log(xs) - rate * xs
            return torch.where(pos, lp, -math.inf)

        return StackedLogProb(const, fn, lambda u: shape * u - rate * torch.exp(u))

    def scipy(self):
        return stats.gamma(a=self.shape, scale=1.0 / self.rate)


@dataclass(frozen=True)
class StackedLogProb:
    """Log densities of ``k`` priors on the ``k`` columns of ``x (..., k)``, vectorized.

    The log density of column ``i`` is ``const_i + fn(x)[..., i]``; ``const`` is
    ``Σ_i const_i`` (the part that does not depend on x, summed once) and ``fn`` is ``None``
    when nothing depends on x (a uniform density on its support).

    ``of_log``, where a family states it: ``u ↦ fn(exp(u)) + u``, the density of
    ``u = log x`` (the same ``const``), written in ``u`` so that a positive parameter
    sampled as its log needs neither ``exp`` nor ``log`` nor a guard for ``x = 0``: fewer
    operations per call (and per gradient), and exact where ``exp(u)`` underflows.
    """

    const: float
    fn: Callable[[torch.Tensor], torch.Tensor] | None
    of_log: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor | None:
        return None if self.fn is None else self.fn(x)


def stack(
    priors: Sequence[Prior], inside: bool = False, device: torch.device | str | None = None
) -> StackedLogProb:
    """One vectorized log density for ``k`` priors, column ``i`` of ``x`` under ``priors[i]``.

    Parameters
    ----------
    priors : sequence of Prior
        All of one class for a single vectorized formula (else each is called in turn).
    inside : bool
        The caller guarantees ``x`` lies in every prior's closed support (a value clamped
        to bounds within it, or ``exp(u)`` for a support of ``[0, ∞)``): the check that
        maps values outside it to ``-inf`` is skipped. Boundary values that have density
        zero (``x = 0`` under LogNormal or Gamma) are still ``-inf``.
    device : torch.device or str, optional
        Where the priors' parameters live (the device of the ``x`` it will be given);
        default the CPU.

    Returns
    -------
    StackedLogProb
        ``const + fn(x).sum(-1)`` equals ``Σ_i priors[i].log_prob(x[..., i])``.

    Examples
    --------
    >>> lp = stack([Normal(0.0, 1.0), Normal(1.0, 2.0)])
    >>> x = torch.zeros(5, 2, dtype=torch.float64)
    >>> bool(torch.allclose(lp.const + lp(x).sum(-1),
    ...                     Normal(0.0, 1.0).log_prob(x[:, 0]) + Normal(1.0, 2.0).log_prob(x[:, 1])))
    True
    """
    priors = list(priors)
    kind = type(priors[0])
    # the vectorized formula only where the class itself defines it next to its log_prob
    # (a subclass that overrides log_prob is called prior by prior)
    if "_stack" in vars(kind) and all(type(p) is kind for p in priors):
        return kind._stack(priors, inside, device)
    return Prior._stack.__func__(Prior, priors, inside, device)


def _params(priors: Sequence[Prior], name: str, device: torch.device | str | None) -> torch.Tensor:
    return torch.tensor(
        [float(getattr(p, name)) for p in priors], dtype=torch.float64, device=device
    )


def check_prior(value: Any, name: str) -> Prior | None:
    """``None`` or a :class:`Prior`; anything else is a ``TypeError`` naming ``name``."""
    if value is None or isinstance(value, Prior):
        return value
    raise TypeError(
        f"{name} must be a calib.priors prior ({', '.join(_FAMILIES)}) or None, got {value!r}"
    )


# Priors like the others, defined in their own modules for this one's length
from ._beta import Beta  # noqa: E402
from ._gpmsa_priors import BetaRho, GammaPrecision  # noqa: E402

#: The registry: the prior classes a dict (an archive) or a study file may name by ``type``.
_FAMILIES: dict[str, type[Prior]] = {
    c.__name__: c
    for c in (
        Normal,
        LogNormal,
        HalfNormal,
        HalfCauchy,
        Uniform,
        Gamma,
        Beta,
        BetaRho,
        GammaPrecision,
    )
}
