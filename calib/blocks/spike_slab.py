"""θ of one parameter from a spike-and-slab population (docs/model.md §2b).

``u_ℓ = g(θ_ℓ) ~ π₀ N(μ, (ε τ)²) + (1 − π₀) N(μ, τ²)``: each campaign is either at the
population value μ up to a spike of sd ε τ (no effect) or drawn from the slab N(μ, τ²)
(a real difference). This is the continuous form of George & McCulloch (1993), so both
emcee's moves and the gradient move sample it. It is the partial-pooling block with one
more slot, ``logit π₀``, and the mixture as its population term
(:meth:`SpikeSlabPooling.joint_log_prior`) instead of the normal one: on
``x_ℓ = (u_ℓ − μ)/τ ~ π₀ N(0, ε²) + (1 − π₀) N(0, 1)`` when non-centred (the default, as
for partial pooling), on ``u_ℓ`` itself when centred.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .._beta import Beta
from ..parameters import Parameter
from ._base import Entry, PooledGroup, _log_draws, _plain, _scales
from .pooling import PartialPooling

__all__ = ["DEFAULT_NULL_PRIOR", "SpikeSlabPooling"]

#: π₀'s prior when ``hyperpriors={E: {"null": ...}}`` does not give one: uniform. The
#: multiplicity correction of a screen comes from learning π₀ from all campaigns at once
#: (Scott & Berger 2010), not from a prior that favours the spike; a uniform π₀ lets 30
#: campaigns of which 3 differ and 30 of which 27 differ speak for themselves.
DEFAULT_NULL_PRIOR = Beta(1.0, 1.0)

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_EDGE = 1e-12  # keeps logit π₀ of a prior draw finite


def log_components(
    u: torch.Tensor, mu: torch.Tensor, v: torch.Tensor, logit: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``log π₀ N(u; μ, (ετ)²)`` and ``log (1 − π₀) N(u; μ, τ²)`` without their common
    ``− v − ½ log 2π``, ``u (W, L)`` against ``(W, 1)`` hyperparameters, ``τ = e^v``.

    Written with ``log σ(±logit π₀)`` (no ``log`` of a rounded π₀) so that the sum of the
    two through ``logaddexp`` is finite and smooth for every u.
    """
    r = (u - mu) * torch.exp(-v)
    spike = F.logsigmoid(logit) - math.log(eps) - 0.5 * (r / eps) ** 2
    slab = F.logsigmoid(-logit) - 0.5 * r * r
    return spike, slab


class SpikeSlabPooling(PartialPooling):
    """θ_ℓ from ``π₀ N(μ, (ε τ)²) + (1 − π₀) N(μ, τ²)`` on ``u = g(θ)``.

    Slots: ``E.mean`` μ, ``E.logscale`` log τ, ``E.logitnull`` logit π₀ and ``E.z`` holding
    x_ℓ = (u_ℓ − μ)/τ (non-centred) or u_ℓ (centred). Hyperpriors ``mean`` and ``scale``
    as for partial pooling; ``null`` the prior of π₀ (default :data:`DEFAULT_NULL_PRIOR`).
    ε is the parameter's ``spike``.
    """

    def __init__(self, parameter: Parameter, campaigns: list[str], hyperpriors: dict):
        hp = dict(hyperpriors)
        hp.setdefault("null", DEFAULT_NULL_PRIOR)
        super().__init__(parameter, campaigns, hp)
        self.eps = float(parameter.spike)

    def slots(self):
        n = self.name
        mean, logscale, z = super().slots()
        return [mean, logscale, (f"{n}.logitnull", [f"logit {n}.null"]), z]

    def entries(self, slots):
        # μ and log τ as for partial pooling, with no per-column term on the members (the
        # mixture is joint_log_prior's); π₀ by the logistic bijection of (0, 1) with its
        # log-Jacobian, like any bounded column
        n, hp = self.name, self.hyperpriors
        col = slots[f"{n}.logitnull"].start
        return (
            _plain(slots[f"{n}.mean"], hp["mean"])
            + _scales(slots[f"{n}.logscale"], [hp["scale"]])
            + [Entry(col, "both", 0.0, 1.0, hp["null"])]
        )

    def joint_log_prior(self, U: torch.Tensor, slots: dict) -> torch.Tensor:
        """The mixture (eq. 3s) of every campaign ``(W,)``: of x_ℓ, whose density
        ``π₀ N(x; 0, ε²) + (1 − π₀) N(x; 0, 1)`` does not involve τ (non-centred), or of
        u_ℓ, ``π₀ N(u; μ, (ετ)²) + (1 − π₀) N(u; μ, τ²)`` (centred)."""
        n = self.name
        z = slots[f"{n}.z"]
        x = U[:, z.start : z.stop]
        logit = U[:, slots[f"{n}.logitnull"].start].unsqueeze(1)
        if not self.centred:
            zero = torch.zeros_like(logit)
            spike, slab = log_components(x, zero, zero, logit, self.eps)
            return torch.logaddexp(spike, slab).sum(dim=1) - z.size * _HALF_LOG_2PI
        v = U[:, slots[f"{n}.logscale"].start].unsqueeze(1)
        mu = U[:, slots[f"{n}.mean"].start].unsqueeze(1)
        spike, slab = log_components(x, mu, v, logit, self.eps)
        return (torch.logaddexp(spike, slab) - v).sum(dim=1) - z.size * _HALF_LOG_2PI

    def sample_prior(self, rng, n):
        hp, L = self.hyperpriors, len(self.campaigns)
        mean = np.asarray(hp["mean"].sample(rng, n), dtype=float).reshape(n, 1)
        logscale = _log_draws(hp["scale"], rng, n).reshape(n, 1)
        p0 = np.clip(np.asarray(hp["null"].sample(rng, n), dtype=float), _EDGE, 1 - _EDGE)
        logit = (np.log(p0) - np.log1p(-p0)).reshape(n, 1)
        x = self._mixture_z(rng, p0.reshape(n, 1), (n, L))
        if self.centred:
            x = mean + np.exp(logscale) * x
        return np.concatenate([mean, logscale, logit, x], axis=1)

    def _mixture_z(self, rng: np.random.Generator, p0, size) -> np.ndarray:
        """Standardized draws ``(u − μ)/τ`` of the mixture: ε z in the spike, z in the slab."""
        spike = rng.uniform(size=size) < p0
        return rng.standard_normal(size) * np.where(spike, self.eps, 1.0)

    def quantities(self, U, slots):
        out = super().quantities(U, slots)
        out[f"{self.name}.null"] = torch.sigmoid(U[:, slots[f"{self.name}.logitnull"].start])
        return out

    def named(self, theta, parts):
        out = super().named(theta, parts)
        out[f"{self.name}.null"] = parts[f"{self.name}.null"]
        return out

    def pooled_group(self, slots):
        g = super().pooled_group(slots)
        # not N(μ, τ²) members: the prior plan leaves the population term to
        # joint_log_prior and the interweaved move leaves the group alone
        return PooledGroup(g.mean, g.logscale, g.members, g.centred, population="spike_slab")

    def theta_new(self, theta, parts, rng, S):
        """θ of a new campaign: ``g⁻¹(μ + τ ε z)`` with probability π₀, else
        ``g⁻¹(μ + τ z)``, for each draw's (μ, τ, π₀)."""
        n = self.name
        p0 = parts[f"{n}.null"].detach().cpu().numpy().reshape(S, 1)
        z = self._mixture_z(rng, p0, (S, 1))[:, 0]
        z = torch.as_tensor(z, dtype=theta.dtype, device=theta.device)
        u = parts[f"{n}.mean"] + parts[f"{n}.scale"] * z
        return self.parameter.to_constrained(u)[0]

    def population(self, q, rng):
        """``E.typical`` = g⁻¹(μ), and ``E.new``, a new campaign's value from the mixture."""
        n, prm = self.name, self.parameter
        mu, tau, p0 = q[f"{n}.mean"], q[f"{n}.scale"], q[f"{n}.null"]
        u = mu + tau * self._mixture_z(rng, p0, mu.shape)
        cpu = torch.device("cpu")
        with torch.no_grad():
            typical = prm.to_constrained(torch.as_tensor(mu, dtype=torch.float64, device=cpu))[0]
            new = prm.to_constrained(torch.as_tensor(u, dtype=torch.float64, device=cpu))[0]
        return {f"{n}.typical": typical.numpy(), f"{n}.new": new.numpy()}
