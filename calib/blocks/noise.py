"""The noise model: known, one shared σ, one σ per campaign, or pooled variance components."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..priors import HalfNormal, Normal, Prior
from ._base import _STD, Block, PooledGroup, _log_draws, _plain, _scales

NOISE_MODES = ("known", "shared", "per_campaign", "hierarchical")


class _Noise(Block):
    mode = ""
    known = False

    def __init__(self, campaigns: list[str]):
        self.campaigns = list(campaigns)

    def noise_sd(self, U: torch.Tensor, slots: dict) -> torch.Tensor | None:
        """σ of every campaign ``(W, L)``, or None when the noise is known."""
        return None

    def named(self, parts: dict) -> dict[str, torch.Tensor]:
        return {f"noise.sd[{c}]": parts["noise_sd"][:, l] for l, c in enumerate(self.campaigns)}

    def new_campaign_sd(self, parts: dict, rng: np.random.Generator, S: int) -> np.ndarray:
        """σ of a new campaign's measurements per draw ``(S,)``."""
        raise ValueError("noise='known': give noise_sd= for a new campaign's observations")

    def to_config(self):
        return {"noise": self.mode}


class KnownNoise(_Noise):
    """σ given with the data (on the covariance's constant diagonal)."""

    mode = "known"
    known = True

    def named(self, parts):
        return {}


class _LogSd(_Noise):
    """σ sampled as ``log σ`` with a prior on σ."""

    def __init__(self, campaigns: list[str], prior: Prior):
        super().__init__(campaigns)
        self.prior = prior

    def _size(self) -> int:
        return len(self.campaigns)

    def slots(self):
        return [("noise.logsd", self._labels())]

    def entries(self, slots):
        return _scales(slots["noise.logsd"], [self.prior] * self._size())

    def sample_prior(self, rng, n):
        return _log_draws(self.prior, rng, (n, self._size()))

    def noise_sd(self, U, slots):
        s = slots["noise.logsd"]
        return torch.exp(U[:, s.start : s.stop]).expand(U.shape[0], len(self.campaigns))

    def to_config(self):
        return {"noise": self.mode, "noise_prior": self.prior.to_dict()}


class SharedNoise(_LogSd):
    """One σ for every campaign."""

    mode = "shared"

    def _size(self):
        return 1

    def _labels(self):
        return ["log noise.sd"]

    def named(self, parts):
        return {"noise.sd": parts["noise_sd"][:, 0]}

    def new_campaign_sd(self, parts, rng, S):
        return parts["noise_sd"][:, 0].numpy()


class PerCampaignNoise(_LogSd):
    """A σ of its own for each campaign, independent a priori."""

    mode = "per_campaign"

    def _labels(self):
        return [f"log noise.sd[{c}]" for c in self.campaigns]

    def new_campaign_sd(self, parts, rng, S):
        return self.prior.sample(rng, S)  # no population: the prior


class HierarchicalNoise(_Noise):
    """Pooled variance components: ``log σ_ℓ = m + s z_ℓ``, z_ℓ ~ N(0, 1) (non-centred)."""

    mode = "hierarchical"

    def __init__(self, campaigns: list[str], hyperpriors: dict):
        super().__init__(campaigns)
        self.hyperpriors = hyperpriors

    def slots(self):
        return [
            ("noise.mean", ["noise.mean"]),
            ("noise.logscale", ["log noise.scale"]),
            ("noise.z", [f"noise.z[{c}]" for c in self.campaigns]),
        ]

    def entries(self, slots):
        hp = self.hyperpriors
        return (
            _plain(slots["noise.mean"], hp["mean"])
            + _scales(slots["noise.logscale"], [hp["scale"]])
            + _plain(slots["noise.z"], _STD)
        )

    def sample_prior(self, rng, n):
        mean = np.asarray(self.hyperpriors["mean"].sample(rng, n)).reshape(n, 1)
        logscale = _log_draws(self.hyperpriors["scale"], rng, n).reshape(n, 1)
        z = rng.standard_normal((n, len(self.campaigns)))
        return np.concatenate([mean, logscale, z], axis=1)

    def noise_sd(self, U, slots):
        m = U[:, slots["noise.mean"].start : slots["noise.mean"].stop]
        v = U[:, slots["noise.logscale"].start : slots["noise.logscale"].stop]
        z = U[:, slots["noise.z"].start : slots["noise.z"].stop]
        return torch.exp(m + torch.exp(v) * z)

    def quantities(self, U, slots):
        return {
            "noise.mean": U[:, slots["noise.mean"].start],
            "noise.scale": torch.exp(U[:, slots["noise.logscale"].start]),
        }

    def named(self, parts):
        out = super().named(parts)
        out["noise.mean"] = parts["noise.mean"]
        out["noise.scale"] = parts["noise.scale"]
        return out

    def pooled_group(self, slots):
        z = slots["noise.z"]
        return PooledGroup(
            slots["noise.mean"].start,
            slots["noise.logscale"].start,
            list(range(z.start, z.stop)),
            False,
        )

    def new_campaign_sd(self, parts, rng, S):
        ls = parts["noise.mean"].numpy() + parts["noise.scale"].numpy() * rng.standard_normal(S)
        return np.exp(ls)

    def to_config(self):
        return {
            "noise": self.mode,
            "hyperpriors": {k: p.to_dict() for k, p in self.hyperpriors.items()},
        }


def noise_block(
    mode: str, campaigns: list[str], y_sd: float, prior: Prior | None, hyperpriors: dict | None
) -> _Noise:
    """The block of a noise mode (the one place the mode string is read).

    Defaults scale with the data's sd ``y_sd``: σ ~ HalfNormal(y_sd); for hierarchical
    noise ``m ~ Normal(log(y_sd / 2), 1.5)``, ``s ~ HalfNormal(1)``.
    """
    if mode == "known":
        return KnownNoise(campaigns)
    if mode == "hierarchical":
        hp = {"mean": Normal(math.log(y_sd / 2.0), 1.5), "scale": HalfNormal(1.0)}
        hp.update(hyperpriors or {})
        return HierarchicalNoise(campaigns, hp)
    cls = {"shared": SharedNoise, "per_campaign": PerCampaignNoise}.get(mode)
    if cls is None:
        raise ValueError(f"noise must be one of {NOISE_MODES}, got {mode!r}")
    return cls(campaigns, prior or HalfNormal(y_sd))
