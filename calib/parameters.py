"""Calibration parameters: bounds, prior, pooling, and the bijection to ℝ.

Bounded quantities are sampled in an unconstrained space with the log-Jacobian added, as
Stan does (Stan Reference Manual, "Constraint transforms"). With ``u`` the unconstrained
value and ``θ = g⁻¹(u)``:

============================  ===========================  ================================
bounds                        θ = g⁻¹(u)                   log |dθ/du|
============================  ===========================  ================================
none                          u                            0
lower a                       a + exp(u)                   u
upper b                       b − exp(u)                   u
lower a, upper b              a + (b − a)·σ(u)             log(b − a) + log σ(u) + log σ(−u)
============================  ===========================  ================================

with σ the logistic function. :class:`StackedTransform` applies the bijection of one kind
to several parameters at once (the log-posterior's hot path).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .priors import HalfNormal, Normal, Prior, Uniform, check_prior

__all__ = ["Parameter", "POOLING_MODES", "StackedTransform", "TRANSFORM_KINDS"]

POOLING_MODES = ("complete", "none", "partial", "spike_slab")
#: the spike's sd as a fraction of the slab's τ when ``spike`` is not given (docs/model.md §2b)
DEFAULT_SPIKE = 0.05
TRANSFORM_KINDS = ("identity", "lower", "upper", "both")


def _fixed_value(
    value: Any, name: str, lower: float | None, upper: float | None, prior: Any, pooling: str
) -> float | None:
    """The value of a fixed parameter (``Parameter(..., value=)``), checked."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"Parameter '{name}': value: expected a number, got {value!r}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"Parameter '{name}': value: expected a number, got nan")
    if (lower is not None and v < lower) or (upper is not None and v > upper):
        raise ValueError(
            f"Parameter '{name}': value: expected a number in the bounds [{lower}, {upper}], "
            f"got {v!r}"
        )
    if pooling != "complete":
        raise ValueError(
            f"Parameter '{name}': a fixed value is the same in every campaign: expected "
            f"pooling='complete', got pooling={pooling!r}"
        )
    if prior is not None:
        raise ValueError(
            f"Parameter '{name}': value={v!r} fixes it, so it takes no prior; got prior={prior!r}"
        )
    return v


def _spike(value: Any, name: str, pooling: str) -> float | None:
    """ε of a spike-and-slab parameter (None for the other poolings), checked."""
    if pooling != "spike_slab":
        if value is not None:
            raise ValueError(
                f"Parameter '{name}': spike applies to pooling='spike_slab', got "
                f"pooling={pooling!r}"
            )
        return None
    if value is None:
        return DEFAULT_SPIKE
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"Parameter '{name}': spike: expected a number, got {value!r}")
    v = float(value)
    # above 1/2 the spike is no longer narrow beside the slab: not a "no effect" component
    if not 0.0 < v <= 0.5:
        raise ValueError(f"Parameter '{name}': spike: expected a number in (0, 0.5], got {v!r}")
    return v


def _bound(value: Any, name: str, which: str) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"Parameter '{name}': {which} must be a number or None, got {value!r}"
        ) from None
    if math.isnan(v):
        raise ValueError(f"Parameter '{name}': {which} must not be NaN")
    if math.isinf(v):
        if (which == "lower" and v > 0) or (which == "upper" and v < 0):
            raise ValueError(f"Parameter '{name}': {which} = {v} leaves no admissible value")
        return None
    return v


class Parameter:
    """A calibration parameter θ.

    Parameters
    ----------
    name : str
        Must be one of the simulator's ``parameter_names``.
    lower, upper : float or None
        Bounds (``None`` or ``±inf`` for none). Both given: ``lower < upper``.
    prior : Prior or None
        Prior of θ (for ``pooling="partial"``: used only to derive default hyperpriors).
        A bounded parameter without a prior has ``Uniform(lower, upper)``; an unbounded one
        needs a prior (or, when partially pooled, hyperpriors given to the Calibrator).
        A prior whose support reaches past the bounds is truncated to them.
    pooling : {"complete", "none", "partial", "spike_slab"}
        ``"complete"``: one θ for all campaigns; ``"none"``: an independent θ per campaign,
        each with the prior; ``"partial"``: ``u_ℓ = g(θ_ℓ) ~ N(μ, τ²)``; ``"spike_slab"``:
        ``u_ℓ ~ π₀ N(μ, (ε τ)²) + (1 − π₀) N(μ, τ²)``, a campaign either at the population
        value (the spike) or truly different (the slab), with ``π₀`` sampled
        (docs/model.md §2b; ``Posterior.inclusion_probability``, ``Posterior.discoveries``).
    value : float, optional
        Fix the parameter at this value: it is passed to the simulator (or emulator) but
        not sampled, and recorded in the archive (e.g. a support stiffness at ``inf`` for a
        clamp). ``pooling`` must stay ``"complete"`` and no ``prior`` is given; bounds, if
        given, must contain it.
    centered : bool
        For ``pooling="partial"``: sample ``z_ℓ = (u_ℓ − μ)/τ ~ N(0, 1)`` (non-centred,
        the default) or ``u_ℓ`` itself (centred, ``centered=True``). The same posterior
        either way; the sampler's speed differs, by 10× on calib's benchmark problems:
        centred when every campaign pins its θ well (several precise observations per
        campaign, the usual calibration case), non-centred when campaigns have few or noisy
        observations (Papaspiliopoulos, Roberts & Sköld 2007). docs/model.md §2 has the
        measurements; a ConvergenceWarning on a population scale suggests the switch.
        ``pooling="spike_slab"`` takes it too: the mixture on ``z_ℓ`` or on ``u_ℓ``.
    spike : float, optional
        For ``pooling="spike_slab"``: ε, the spike's sd as a fraction of the slab's τ, in
        (0, 0.5]; default 0.05 (docs/model.md §2b says why). Refused for other poolings.

    Examples
    --------
    >>> Parameter("E", lower=150e9, upper=250e9, pooling="partial")
    Parameter('E', lower=150000000000.0, upper=250000000000.0, prior=Uniform(...), pooling='partial')
    """

    def __init__(
        self,
        name: str,
        lower: float | None = None,
        upper: float | None = None,
        prior: Prior | None = None,
        pooling: str = "complete",
        centered: bool = False,
        value: float | None = None,
        spike: float | None = None,
    ):
        if not isinstance(name, str) or not name:
            raise TypeError(f"Parameter: name must be a non-empty string, got {name!r}")
        if "." in name:
            raise ValueError(f"Parameter: name must not contain '.', got {name!r}")
        self.name = name
        self.lower = _bound(lower, name, "lower")
        self.upper = _bound(upper, name, "upper")
        #: the bounds as given (None where the prior's support supplied ``lower``/``upper``):
        #: a design box takes the prior's quantiles on a side the user left open
        self.given_bounds = (self.lower, self.upper)
        if self.lower is not None and self.upper is not None and not self.lower < self.upper:
            raise ValueError(
                f"Parameter '{name}': lower must be < upper, got lower={lower!r}, upper={upper!r}"
            )
        if pooling not in POOLING_MODES:
            raise ValueError(
                f"Parameter '{name}': pooling must be one of {POOLING_MODES}, got {pooling!r}"
            )
        self.pooling = pooling
        if not isinstance(centered, bool):
            raise TypeError(f"Parameter '{name}': centered must be True or False, got {centered!r}")
        self.centered = centered
        self.spike = _spike(spike, name, pooling)
        self.value = _fixed_value(value, name, self.lower, self.upper, prior, pooling)
        if self.value is not None:  # not sampled: no prior, no transform
            self.prior = None
            return
        prior = check_prior(prior, f"Parameter '{name}': prior")
        if prior is None and self.bounded:
            prior = Uniform(self.lower, self.upper)
        if prior is not None:
            lo, hi = prior.support
            a = -math.inf if self.lower is None else self.lower
            b = math.inf if self.upper is None else self.upper
            if max(lo, a) >= min(hi, b):
                raise ValueError(
                    f"Parameter '{name}': prior {prior!r} has support [{lo}, {hi}] which does "
                    f"not overlap the bounds [{a}, {b}]"
                )
            # a prior whose mass inside the bounds underflows to 0 would make every start
            # fail with "θ = nan" later: say so here (a Normal(100, 1) on [-5, 5])
            fa, fb = prior.scipy().cdf([max(lo, a), min(hi, b)])
            if not fb - fa > 0:
                raise ValueError(
                    f"Parameter '{name}': prior {prior!r} puts no mass (in double precision) "
                    f"inside the bounds [{a}, {b}]"
                )
            # the sampler's unconstrained space follows the prior's support where it is
            # narrower than the bounds (a LogNormal prior makes θ positive)
            if math.isfinite(lo) and (self.lower is None or lo > self.lower):
                self.lower = lo
            if math.isfinite(hi) and (self.upper is None or hi < self.upper):
                self.upper = hi
        if prior is None and pooling not in ("partial", "spike_slab"):
            raise ValueError(
                f"Parameter '{name}': an unbounded parameter needs a prior, got prior=None "
                f"(give prior=..., or bounds for a Uniform prior)"
            )
        self.prior = prior

    # ------------------------------------------------------------------ bijection
    @property
    def bounded(self) -> bool:
        """True when both bounds are finite."""
        return self.lower is not None and self.upper is not None

    @property
    def kind(self) -> str:
        """Which bijection of the table above: one of :data:`TRANSFORM_KINDS`."""
        if self.bounded:
            return "both"
        return (
            "lower" if self.lower is not None else "upper" if self.upper is not None else "identity"
        )

    def to_unconstrained(self, theta: np.ndarray | float) -> np.ndarray:
        """``u = g(θ)`` (NumPy); values on a bound map to ±inf."""
        t = np.asarray(theta, dtype=float)
        a, b = self.lower, self.upper
        with np.errstate(divide="ignore", invalid="ignore"):
            if a is not None and b is not None:
                p = (t - a) / (b - a)
                return np.log(p) - np.log1p(-p)
            if a is not None:
                return np.log(t - a)
            if b is not None:
                return np.log(b - t)
        return t.copy()

    def to_constrained(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``θ = g⁻¹(u)`` and ``log |dθ/du|`` (torch, elementwise, any shape)."""
        a, b = self.lower, self.upper
        if a is not None and b is not None:
            theta = a + (b - a) * torch.sigmoid(u)
            logdet = math.log(b - a) + F.logsigmoid(u) + F.logsigmoid(-u)
            # σ(u) rounds to 0 or 1 for |u| ≳ 37: keep θ strictly inside the bounds' closure
            return theta.clamp(a, b), logdet
        if a is not None:
            return a + torch.exp(u), u.clone()
        if b is not None:
            return b - torch.exp(u), u.clone()
        return u.clone(), torch.zeros_like(u)

    def log_prior(self, theta: torch.Tensor) -> torch.Tensor:
        """Log prior density of θ (truncation to the bounds adds only a constant)."""
        if self.prior is None:
            raise ValueError(f"Parameter '{self.name}' has no prior of its own")
        return self.prior.log_prob(theta)

    # ------------------------------------------------------------------ pooling
    def unconstrained_moments(self) -> tuple[float, float]:
        """Mean and sd of ``g(θ)`` under the prior, by quantile averaging.

        ``E[g(θ)] = ∫₀¹ g(F⁻¹(p)) dp`` with the midpoint rule on 4000 quantiles; the prior is
        truncated to the bounds first. Used for the default hyperpriors of partial pooling.
        """
        if self.prior is None:
            raise ValueError(f"Parameter '{self.name}' has no prior to derive hyperpriors from")
        q = (np.arange(4000) + 0.5) / 4000
        u = self.to_unconstrained(self.prior.truncated_ppf(q, self.lower, self.upper))
        u = u[np.isfinite(u)]
        return float(u.mean()), float(max(u.std(), 1e-6))

    def default_hyperpriors(self) -> dict[str, Prior]:
        """Hyperpriors of a partially pooled parameter when none are given.

        ``μ ~ Normal(m, s)`` and ``τ ~ HalfNormal(s)`` with ``m``, ``s`` the mean and sd of
        ``g(θ)`` under the parameter's prior (for ``Uniform`` on bounds: m = 0, s = π/√3),
        so the population is as wide as the prior and the campaigns may differ by as much.
        """
        if self.prior is None:
            raise ValueError(
                f"Parameter '{self.name}': partial pooling of an unbounded parameter with no "
                f"prior needs hyperpriors={{'{self.name}': {{'mean': ..., 'scale': ...}}}}"
            )
        m, s = self.unconstrained_moments()
        return {"mean": Normal(m, s), "scale": HalfNormal(s)}

    def to_dict(self) -> dict[str, Any]:
        d = {
            "name": self.name,
            "lower": self.lower,
            "upper": self.upper,
            "prior": None if self.prior is None else self.prior.to_dict(),
            "pooling": self.pooling,
            "centered": self.centered,
            "value": self.value,
        }
        if self.spike is not None:  # only spike-and-slab has it: other archives unchanged
            d["spike"] = self.spike
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Parameter:
        prior = None if d.get("prior") is None else Prior.from_dict(d["prior"])
        # archives written before the option existed were non-centred
        return cls(
            d["name"],
            d.get("lower"),
            d.get("upper"),
            prior,
            d.get("pooling", "complete"),
            centered=bool(d.get("centered", False)),
            value=d.get("value"),
            spike=d.get("spike"),
        )

    def __repr__(self) -> str:
        return (
            f"Parameter({self.name!r}, lower={self.lower!r}, upper={self.upper!r}, "
            f"prior={self.prior!r}, pooling={self.pooling!r}"
            + (
                ", centered=True"
                if self.pooling in ("partial", "spike_slab") and self.centered
                else ""
            )
            + ("" if self.value is None else f", value={self.value!r}")
            + ("" if self.spike is None else f", spike={self.spike!r}")
            + ")"
        )


class StackedTransform:
    """``θ = g⁻¹(u)`` for ``k`` quantities of one bijection kind on the columns of ``u``.

    The table of the module docstring, with the bounds as tensors: one sigmoid (or one exp)
    for all columns instead of one per parameter, and the constant part of the
    log-Jacobian (``Σ log(b − a)``) summed once.

    Parameters
    ----------
    kind : one of :data:`TRANSFORM_KINDS`
    lower, upper : sequences of k floats or None
        The bounds of each column (as ``Parameter.lower`` / ``Parameter.upper``).
    device : torch.device or str, optional
        Where the bounds live (the device of the ``u`` it will be given); default the CPU.

    Attributes
    ----------
    const : float
        ``Σ_i`` of the part of ``log |dθ_i/du_i|`` that does not depend on u.
    """

    def __init__(
        self,
        kind: str,
        lower: list[float | None],
        upper: list[float | None],
        device: torch.device | str | None = None,
    ):
        if kind not in TRANSFORM_KINDS:
            raise ValueError(f"kind must be one of {TRANSFORM_KINDS}, got {kind!r}")
        self.kind = kind
        self.k = len(lower)
        self.const = 0.0
        t = lambda v: torch.tensor(v, dtype=torch.float64, device=device)  # noqa: E731
        if kind == "both":
            self.a, self.b = t(lower), t(upper)
            self.width = self.b - self.a
            self.const = float(sum(math.log(b - a) for a, b in zip(lower, upper)))
        elif kind == "lower":
            self.a = None if all(a == 0.0 for a in lower) else t(lower)
        elif kind == "upper":
            self.b = t(upper)

    def __call__(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``θ`` and the u-dependent part of ``log |dθ/du|`` (``None`` where it is 0)."""
        if self.kind == "both":
            theta = self.a + self.width * torch.sigmoid(u)  # as Parameter.to_constrained
            # σ(u) rounds to 0 or 1 for |u| ≳ 37: keep θ in the bounds' closure
            return theta.clamp(self.a, self.b), F.logsigmoid(u) + F.logsigmoid(-u)
        if self.kind == "lower":
            e = torch.exp(u)
            return (e if self.a is None else self.a + e), u
        if self.kind == "upper":
            return self.b - torch.exp(u), u
        return u, None

    def theta(self, u: torch.Tensor) -> torch.Tensor:
        """``θ`` alone."""
        if self.kind == "both":
            return (self.a + self.width * torch.sigmoid(u)).clamp(self.a, self.b)
        return self(u)[0]
