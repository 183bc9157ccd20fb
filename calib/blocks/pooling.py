"""θ of one parameter by its pooling across campaigns: complete, none or partial."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..parameters import Parameter
from ._base import _STD, Block, Entry, PooledGroup, _log_draws, _plain, _scales, truncated_draws


class _Pooling(Block):
    """θ of one parameter; ``campaigns`` the campaign names."""

    def __init__(self, parameter: Parameter, campaigns: list[str]):
        self.parameter = parameter
        self.campaigns = list(campaigns)

    @property
    def name(self) -> str:
        return self.parameter.name

    def named(self, theta: torch.Tensor, parts: dict) -> dict[str, torch.Tensor]:
        """θ of each campaign ``theta (S, L)`` and the block's quantities, by display name."""
        return {f"{self.name}[{c}]": theta[:, l] for l, c in enumerate(self.campaigns)}

    def population(self, q: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``E.typical`` and ``E.new`` where the block has a population (none here)."""
        return {}

    def to_config(self) -> dict[str, Any]:
        return self.parameter.to_dict()


class CompletePooling(_Pooling):
    """One θ shared by every campaign, ``u = g(θ)``."""

    def slots(self):
        return [(self.name, [f"{self.name} (unconstrained)"])]

    def entries(self, slots):
        p, s = self.parameter, slots[self.name]
        return [Entry(c, p.kind, p.lower, p.upper, p.prior, True) for c in range(s.start, s.stop)]

    def sample_prior(self, rng, n):
        return self.parameter.to_unconstrained(truncated_draws(self.parameter, rng, (n, 1)))

    def named(self, theta, parts):
        return {self.name: theta[:, 0]}

    def theta_new(self, theta: torch.Tensor, parts: dict, rng, S: int) -> torch.Tensor:
        """θ of a new campaign: the common value."""
        return theta[:, 0]


class NoPooling(_Pooling):
    """A θ of its own for each campaign, independent a priori."""

    def slots(self):
        return [(self.name, [f"{self.name}[{c}] (unconstrained)" for c in self.campaigns])]

    entries = CompletePooling.entries

    def sample_prior(self, rng, n):
        size = (n, len(self.campaigns))
        return self.parameter.to_unconstrained(truncated_draws(self.parameter, rng, size))

    def theta_new(self, theta, parts, rng, S):
        """θ of a new campaign: a fresh prior draw (the campaigns share nothing)."""
        draws = truncated_draws(self.parameter, rng, (S, 1))[:, 0]
        return torch.as_tensor(draws, dtype=theta.dtype, device=theta.device)


class PartialPooling(_Pooling):
    """θ_ℓ drawn from a population: ``g(θ_ℓ) ~ N(μ, τ²)`` with hyperpriors on μ and τ."""

    def __init__(self, parameter: Parameter, campaigns: list[str], hyperpriors: dict):
        super().__init__(parameter, campaigns)
        self.hyperpriors = hyperpriors
        self.centred = parameter.centered

    def slots(self):
        n = self.name
        v = "u" if self.centred else "z"  # the slot holds u_ℓ when centred, z_ℓ when not
        return [
            (f"{n}.mean", [f"{n}.mean"]),
            (f"{n}.logscale", [f"log {n}.scale"]),
            (f"{n}.z", [f"{n}.{v}[{c}]" for c in self.campaigns]),
        ]

    def entries(self, slots):
        n, hp = self.name, self.hyperpriors
        out = _plain(slots[f"{n}.mean"], hp["mean"]) + _scales(
            slots[f"{n}.logscale"], [hp["scale"]]
        )
        if not self.centred:  # centred: N(u; μ, τ²) is the model's own term
            out += _plain(slots[f"{n}.z"], _STD)
        return out

    def sample_prior(self, rng, n):
        mean = np.asarray(self.hyperpriors["mean"].sample(rng, n)).reshape(n, 1)
        logscale = _log_draws(self.hyperpriors["scale"], rng, n).reshape(n, 1)
        z = rng.standard_normal((n, len(self.campaigns)))
        if self.centred:
            z = mean + np.exp(logscale) * z
        return np.concatenate([mean, logscale, z], axis=1)

    def quantities(self, U, slots):
        n = self.name
        return {
            f"{n}.mean": U[:, slots[f"{n}.mean"].start],
            f"{n}.scale": torch.exp(U[:, slots[f"{n}.logscale"].start]),
        }

    def named(self, theta, parts):
        out = super().named(theta, parts)
        out[f"{self.name}.mean"] = parts[f"{self.name}.mean"]
        out[f"{self.name}.scale"] = parts[f"{self.name}.scale"]
        return out

    def pooled_group(self, slots):
        n = self.name
        z = slots[f"{n}.z"]
        return PooledGroup(
            slots[f"{n}.mean"].start,
            slots[f"{n}.logscale"].start,
            list(range(z.start, z.stop)),
            self.centred,
        )

    def theta_new(self, theta, parts, rng, S):
        """θ of a new campaign: ``g⁻¹(μ + τ z)``, z ~ N(0, 1) (docs/model.md §2)."""
        z = torch.as_tensor(rng.standard_normal(S), dtype=theta.dtype, device=theta.device)
        u = parts[f"{self.name}.mean"] + parts[f"{self.name}.scale"] * z
        return self.parameter.to_constrained(u)[0]

    def population(self, q, rng):
        """``E.typical`` = g⁻¹(μ), the population's median, and ``E.new`` = g⁻¹(μ + τ z)."""
        n, prm = self.name, self.parameter
        mu, tau = q[f"{n}.mean"], q[f"{n}.scale"]
        z = rng.standard_normal(mu.shape)
        cpu = torch.device("cpu")
        with torch.no_grad():
            typical = prm.to_constrained(torch.as_tensor(mu, dtype=torch.float64, device=cpu))[0]
            new = prm.to_constrained(torch.as_tensor(mu + tau * z, dtype=torch.float64, device=cpu))
        return {f"{n}.typical": typical.numpy(), f"{n}.new": new[0].numpy()}


def pooling_block(
    parameter: Parameter, campaigns: list[str], hyperpriors: dict | None = None
) -> _Pooling:
    """The block of a parameter's pooling mode (the one place the mode string is read)."""
    if parameter.pooling in ("partial", "spike_slab"):
        hp = dict(parameter.default_hyperpriors()) if parameter.prior is not None else {}
        hp.update(hyperpriors or {})
        if parameter.pooling == "spike_slab":
            from .spike_slab import SpikeSlabPooling  # a subclass of PartialPooling

            return SpikeSlabPooling(parameter, campaigns, hp)
        return PartialPooling(parameter, campaigns, hp)
    if parameter.pooling == "none":
        return NoPooling(parameter, campaigns)
    return CompletePooling(parameter, campaigns)
