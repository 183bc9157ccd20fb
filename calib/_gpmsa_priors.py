"""Priors stated as GPMSA and SEPIA state them, on calib's own quantities.

GPMSA (Higdon et al. 2008, JASA 103, 570–583) and SEPIA (Gattiker et al. 2020,
github.com/lanl/SEPIA) put a Beta prior on each GP correlation parameter ``ρ = exp(−β/4)``,
the correlation at half the range of an input scaled to ``[0, 1]``, and Gamma priors on
precisions ``λ`` of standardized data. calib
samples a δ length-scale ``ℓ`` (rbf ``exp(−d²/(2ℓ²))`` in native units) and sds ``σ`` in
native units; :class:`BetaRho` and :class:`GammaPrecision` are those priors written as
densities of ``ℓ`` and ``σ`` (the change of variables with its Jacobian), so that a peer's
model can be stated in calib as the peer states it.

Kept apart from :mod:`calib.priors` only for that module's length; both are
:class:`calib.priors.Prior` like the others (``calib.priors.BetaRho``, re-exported there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import integrate, special, stats

from .priors import Prior, StackedLogProb, _params, _positive_finite

__all__ = ["BetaRho", "GammaPrecision"]

_LOG_8 = math.log(8.0)
_TINY = np.finfo(float).tiny
# below this t = span²/(8ℓ²), log((1 − e^(−t))/t) is its series −t/2 + t²/24 (the next
# term, −t⁴/2880, is under 4e-16 there); above it the closed form has no cancellation
_T_SERIES = 1e-3


def _log1mexp_over_t(t: torch.Tensor, lt: torch.Tensor) -> torch.Tensor:
    """``log((1 − e^(−t)) / t)`` for ``t = exp(lt) ≥ 0``, finite with a finite gradient for
    every finite ``lt``, also where ``t`` underflows to 0 (ℓ far in the right tail)."""
    small = t < _T_SERIES
    # the closed form evaluated only where it is used: a masked branch's inf would turn
    # into a NaN gradient through torch.where
    tb = torch.where(small, 1.0, t)
    big = torch.log(-torch.expm1(-tb)) - torch.where(small, 0.0, lt)
    return torch.where(small, t * (t / 24.0 - 0.5), big)


def _beta_rho_terms(x: torch.Tensor, a: Any, b: Any, log_c: Any) -> torch.Tensor:
    """The part of BetaRho's log density that depends on ``x`` (``a, b, log_c`` floats or
    tensors broadcasting against ``x``; ``log_c = log(span²/8)``); ``-inf`` for ``x ≤ 0``."""
    pos = x > 0
    lx = torch.log(torch.where(pos, x, 1.0))
    return torch.where(pos, _beta_rho_of_log(lx, a, b, log_c) - lx, -math.inf)


def _beta_rho_of_log(lx: torch.Tensor, a: Any, b: Any, log_c: Any) -> torch.Tensor:
    """:func:`_beta_rho_terms` at ``x = exp(lx)`` plus ``lx``: the density of ``log ℓ``."""
    lt = log_c - 2.0 * lx  # log t, t = −log ρ: from logs, so that no ℓ underflows t to 0
    t = torch.exp(lt)
    return -a * t - (2.0 * b) * lx + (b - 1.0) * _log1mexp_over_t(t, lt)


def _gamma_precision_terms(x: torch.Tensor, shape: Any, rate: Any, unit: Any) -> torch.Tensor:
    """The part of GammaPrecision's log density that depends on ``x``; ``-inf`` for x ≤ 0."""
    pos = x > 0
    xs = torch.where(pos, x, 1.0)
    q = unit / xs  # √λ
    lp = -(2.0 * shape + 1.0) * torch.log(xs) - rate * q * q
    return torch.where(pos, lp, -math.inf)


class BetaRho(Prior):
    """A length-scale ``ℓ > 0`` whose GPMSA correlation parameter ``ρ`` is ``Beta(a, b)``.

    GPMSA and SEPIA scale each input to ``[0, 1]`` by its range (``span``) and write the
    correlation as ``exp(−β d_u²)`` with ``ρ = exp(−β/4)`` (Higdon et al. 2008);
    SEPIA's default prior on δ's ``ρ`` is ``Beta(1, 0.1)``, mass near ρ = 1 (a smooth δ).
    calib's rbf ``exp(−d²/(2ℓ²))`` in native units ``d = span · d_u`` gives
    ``β = span²/(2ℓ²)``, so

        ρ(ℓ) = exp(−t),  t = span² / (8ℓ²),

    increasing in ℓ, with ``dρ/dℓ = ρ · span²/(4ℓ³) = ρ · 2t/ℓ``. The density of ℓ is the
    Beta density of ρ(ℓ) times that Jacobian:

        log p(ℓ) = log B(a, b)⁻¹ + (a − 1) log ρ + (b − 1) log(1 − ρ) + log ρ + log(2t/ℓ)
                 = log B(a, b)⁻¹ + log 2 − a t + b log t + (b − 1) log((1 − e^(−t))/t) − log ℓ,

    the second form evaluated (from ``log ℓ``; no cancellation at either end). Its right
    tail falls as ``ℓ^(−1−2b)`` (heavy for b = 0.1: moments of order ≥ 2b are infinite),
    its left tail as ``exp(−a span²/(8ℓ²))``.

    Parameters
    ----------
    a, b : float
        The Beta shape parameters of ρ, both finite and > 0 (SEPIA's default for δ: 1, 0.1).
    span : float
        The range of the input, finite and > 0 (SEPIA: the design's max − min of the
        input before scaling to [0, 1]), in the units of ℓ.

    Examples
    --------
    >>> p = BetaRho(1.0, 0.1, span=15.0)
    >>> bool(abs(float(p.scipy().cdf(p.ppf(0.3))) - 0.3) < 1e-12)
    True
    """

    support = (0.0, math.inf)

    def __init__(self, a: float = 1.0, b: float = 0.1, span: float = 1.0):
        self.a = _positive_finite("BetaRho", "a", a)
        self.b = _positive_finite("BetaRho", "b", b)
        self.span = _positive_finite("BetaRho", "span", span)

    def _const(self) -> float:
        log_norm = math.lgamma(self.a + self.b) - math.lgamma(self.a) - math.lgamma(self.b)
        return log_norm + math.log(2.0) + self.b * self._log_c()

    def _log_c(self) -> float:
        return 2.0 * math.log(self.span) - _LOG_8

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self._const() + _beta_rho_terms(x, self.a, self.b, self._log_c())

    @classmethod
    def _stack(
        cls, priors: Sequence[BetaRho], inside: bool, device: torch.device | None = None
    ) -> StackedLogProb:
        # x = 0 (exp(u) underflowed) has density 0 whatever `inside` says: one formula
        a, b = _params(priors, "a", device), _params(priors, "b", device)
        log_c = torch.tensor([p._log_c() for p in priors], dtype=torch.float64, device=device)
        const = sum(p._const() for p in priors)
        return StackedLogProb(
            const,
            lambda x: _beta_rho_terms(x, a, b, log_c),
            lambda u: _beta_rho_of_log(u, a, b, log_c),
        )

    def scipy(self):
        return _beta_rho(self.a, self.b, scale=self.span)


class GammaPrecision(Prior):
    """An sd ``σ > 0`` whose precision ``λ = unit²/σ²`` is ``Gamma(shape, rate)``.

    SEPIA samples precisions (δ's ``lamVz``, the noise's ``lamOs``) of data standardized
    by a scalar sd ``unit`` (``SepiaData.standardize_y``), with Gamma(shape, rate) priors;
    calib samples sds in native units. With ``|dλ/dσ| = 2 unit²/σ³`` the density of σ is

        log p(σ) = shape · log(rate) − log Γ(shape) + log 2 + 2 shape · log(unit)
                   − (2 shape + 1) log σ − rate · unit²/σ²,

    the square root of an inverse-gamma variable: ``σ² ~ InvGamma(shape, rate · unit²)``.

    Parameters
    ----------
    shape, rate : float
        The Gamma prior of λ (shape α, rate β: density ∝ λ^(α−1) e^(−βλ)), both finite and
        > 0. SEPIA's default for δ's precision: ``Gamma(1, 1e-3)``.
    unit : float
        The sd the peer's data were standardized by, finite and > 0, in the units of σ
        (1: precisions of the data as they are).

    Examples
    --------
    >>> p = GammaPrecision(5.0, 5.0, unit=0.5)
    >>> round(float(p.ppf(0.5)), 4)   # σ at the median precision, unit/√median(λ)
    0.5173
    """

    support = (0.0, math.inf)

    def __init__(self, shape: float = 1.0, rate: float = 1e-3, unit: float = 1.0):
        self.shape = _positive_finite("GammaPrecision", "shape", shape)
        self.rate = _positive_finite("GammaPrecision", "rate", rate)
        self.unit = _positive_finite("GammaPrecision", "unit", unit)

    def _const(self) -> float:
        a = self.shape
        return (
            a * math.log(self.rate) - math.lgamma(a) + math.log(2.0) + 2 * a * math.log(self.unit)
        )

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self._const() + _gamma_precision_terms(x, self.shape, self.rate, self.unit)

    @classmethod
    def _stack(
        cls, priors: Sequence[GammaPrecision], inside: bool, device: torch.device | None = None
    ) -> StackedLogProb:
        shape, rate = _params(priors, "shape", device), _params(priors, "rate", device)
        unit = _params(priors, "unit", device)
        const = sum(p._const() for p in priors)
        # the density of u = log σ: −2 shape · u − rate · unit² · e^(−2u)
        c2 = rate * unit * unit
        return StackedLogProb(
            const,
            lambda x: _gamma_precision_terms(x, shape, rate, unit),
            lambda u: -2.0 * shape * u - c2 * torch.exp(-2.0 * u),
        )

    def scipy(self):
        # σ = unit · √rate · T with T = G^(−1/2), G ~ Gamma(shape, 1): λ = G / rate
        return _inv_sqrt_gamma(self.shape, scale=self.unit * math.sqrt(self.rate))


class _BetaRhoGen(stats.rv_continuous):
    """ℓ = 1/√(8t), t = −log ρ, ρ ~ Beta(a, b): :class:`BetaRho` with span 1 (scale = span).

    The upper tail (ρ → 1, where b < 1 puts its mass) is computed from ``1 − ρ``, which
    is Beta(b, a): ρ itself rounds to 1 there (Beta(1, 0.1): ``P(1 − ρ < 1e-20) = 0.01``).
    """

    def _logpdf(self, x, a, b):
        # BetaRho.log_prob's formula (see its docstring) with span = 1, in NumPy
        lx = np.log(x)
        lt = -_LOG_8 - 2.0 * lx
        t = np.exp(lt)
        with np.errstate(divide="ignore", invalid="ignore"):
            big = np.log(-np.expm1(-t)) - lt
        r = np.where(t < _T_SERIES, t * (t / 24.0 - 0.5), big)
        log_norm = special.gammaln(a + b) - special.gammaln(a) - special.gammaln(b)
        return log_norm + math.log(2.0) + b * lt - a * t + (b - 1.0) * r - lx

    def _pdf(self, x, a, b):
        return np.exp(self._logpdf(x, a, b))

    def _tails(self, x, a, b):
        # P(ρ ≤ ρ(x)) and P(1 − ρ ≤ 1 − ρ(x)), which sum to 1, each from its own variable:
        # near ρ = 1 (b < 1) ρ rounds to 1 and only 1 − ρ = −expm1(−t) keeps the digits
        t = 1.0 / (8.0 * x * x)
        return special.betainc(a, b, np.exp(-t)), special.betainc(b, a, -np.expm1(-t))

    def _cdf(self, x, a, b):
        lo, hi = self._tails(x, a, b)
        return np.where(lo < 0.5, lo, 1.0 - hi)

    def _sf(self, x, a, b):
        lo, hi = self._tails(x, a, b)
        return np.where(hi < 0.5, hi, 1.0 - lo)

    def _ell(self, t):
        return 1.0 / np.sqrt(8.0 * np.maximum(t, _TINY))

    def _ppf(self, q, a, b):
        q, a, b = np.broadcast_arrays(q, a, b)
        lower = q <= 0.5
        rho = special.betaincinv(a, b, np.where(lower, q, 0.5))
        w = special.betaincinv(b, a, np.where(lower, 0.5, 1.0 - q))  # 1 − ρ, exact 1 − q
        return self._ell(np.where(lower, -np.log(rho), -np.log1p(-w)))

    def _isf(self, q, a, b):
        q, a, b = np.broadcast_arrays(q, a, b)
        upper = q <= 0.5
        w = special.betaincinv(b, a, np.where(upper, q, 0.5))
        rho = special.betaincinv(a, b, np.where(upper, 0.5, 1.0 - q))
        return self._ell(np.where(upper, -np.log1p(-w), -np.log(rho)))

    def _rvs(self, a, b, size=None, random_state=None):
        w = random_state.beta(b, a, size=size)  # 1 − ρ, drawn directly for the upper tail
        return self._ell(-np.log1p(-w))

    def _stats(self, a, b):
        return *_mean_var(self._munp, a, b), None, None

    def _munp(self, n, a, b):
        # E ℓⁿ = E (8t)^(−n/2) = ∫ (8t)^(−n/2) e^(−at) (1 − e^(−t))^(b−1) dt / B(a, b),
        # finite iff b > n/2 (near t = 0 the integrand is ∝ t^(b−1−n/2))
        def one(n, a, b):
            if b <= n / 2.0:
                return math.inf
            lb = special.betaln(a, b)

            def f(t):
                lf = -0.5 * n * math.log(8.0 * t) - a * t + (b - 1.0) * math.log(-math.expm1(-t))
                return math.exp(lf - lb)

            return integrate.quad(f, 0.0, 1.0)[0] + integrate.quad(f, 1.0, math.inf)[0]

        return np.vectorize(one, otypes=[float])(n, a, b)


class _InvSqrtGammaGen(stats.rv_continuous):
    """T = G^(−1/2), G ~ Gamma(shape, 1): :class:`GammaPrecision` up to its scale.

    ``f(t) = 2 t^(−2α−1) e^(−1/t²) / Γ(α)``; ``P(T ≤ t) = P(G ≥ 1/t²)``."""

    def _logpdf(self, x, a):
        return math.log(2.0) - special.gammaln(a) - (2.0 * a + 1.0) * np.log(x) - 1.0 / (x * x)

    def _pdf(self, x, a):
        return np.exp(self._logpdf(x, a))

    def _cdf(self, x, a):
        return special.gammaincc(a, 1.0 / (x * x))

    def _sf(self, x, a):
        return special.gammainc(a, 1.0 / (x * x))

    def _ppf(self, q, a):
        return 1.0 / np.sqrt(np.maximum(special.gammainccinv(a, q), _TINY))

    def _isf(self, q, a):
        return 1.0 / np.sqrt(np.maximum(special.gammaincinv(a, q), _TINY))

    def _rvs(self, a, size=None, random_state=None):
        return 1.0 / np.sqrt(np.maximum(random_state.standard_gamma(a, size=size), _TINY))

    def _stats(self, a):
        return *_mean_var(self._munp, a), None, None

    def _munp(self, n, a):
        # E T^n = E G^(−n/2) = Γ(α − n/2) / Γ(α), finite iff α > n/2
        n, a = np.broadcast_arrays(np.asarray(n, dtype=float), np.asarray(a, dtype=float))
        ok = a > n / 2.0
        safe = np.where(ok, a - n / 2.0, 1.0)
        return np.where(ok, np.exp(special.gammaln(safe) - special.gammaln(a)), np.inf)


def _mean_var(munp, *args) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance from the raw moments, inf where a moment is (scipy's generic
    ``mu2 − mu²`` would give inf − inf = nan for a heavy tail)."""
    m1, m2 = np.asarray(munp(1, *args)), np.asarray(munp(2, *args))
    with np.errstate(invalid="ignore"):
        var = np.where(np.isfinite(m2), m2 - m1 * m1, np.inf)
    return m1, var


_beta_rho = _BetaRhoGen(a=0.0, name="beta_rho", shapes="a, b")
_inv_sqrt_gamma = _InvSqrtGammaGen(a=0.0, name="inv_sqrt_gamma", shapes="a")
