"""δ's hyperparameters: its marginal sd and one length-scale per feature."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..priors import HalfNormal, LogNormal, Prior
from ._base import _TINY, Block, _log_draws, _scales


class DiscrepancyHyper(Block):
    """δ's marginal sd and one length-scale per feature, both sampled as logs."""

    def __init__(self, scale_prior: Prior, lengthscale_priors: list[Prior], features: list[str]):
        self.scale_prior = scale_prior
        self.lengthscale_priors = list(lengthscale_priors)
        self.features = list(features)

    @classmethod
    def with_defaults(
        cls, discrepancy: Any, y_sd: float, z_obs: np.ndarray, features: list[str]
    ) -> DiscrepancyHyper:
        """The block of a :class:`calib.Discrepancy`, its unset priors by the data's scale:
        ``σ_δ ~ HalfNormal(sd of y)``, each length-scale ``LogNormal(log(range / 2), 1)``
        over that feature's observed range (docs/model.md §3)."""
        D = z_obs.shape[1]
        scale = discrepancy.scale_prior or HalfNormal(y_sd)
        if discrepancy.lengthscale_prior is not None:
            ls = [discrepancy.lengthscale_prior] * D
        else:
            rng = np.ptp(z_obs, axis=0) if z_obs.shape[0] > 0 else np.ones(D)
            ls = [LogNormal(math.log((r if r > 0 else 1.0) / 2.0), 1.0) for r in rng]
        return cls(scale, ls, features)

    def slots(self):
        return [
            ("discrepancy.logscale", ["log discrepancy.scale"]),
            (
                "discrepancy.loglengthscale",
                [f"log discrepancy.lengthscale[{f}]" for f in self.features],
            ),
        ]

    def entries(self, slots):
        return _scales(slots["discrepancy.logscale"], [self.scale_prior]) + _scales(
            slots["discrepancy.loglengthscale"], self.lengthscale_priors
        )

    def sample_prior(self, rng, n):
        scale = _log_draws(self.scale_prior, rng, n).reshape(n, 1)
        if not self.features:
            return np.concatenate([scale, np.zeros((n, 0))], axis=1)
        ls = np.column_stack([pr.sample(rng, n) for pr in self.lengthscale_priors])
        return np.concatenate([scale, np.log(np.maximum(ls, _TINY))], axis=1)

    def quantities(self, U, slots):
        s, ls = slots["discrepancy.logscale"], slots["discrepancy.loglengthscale"]
        return {
            "disc_scale": torch.exp(U[:, s.start]),
            "disc_ls": torch.exp(U[:, ls.start : ls.stop]),
        }

    def named(self, parts: dict) -> dict[str, torch.Tensor]:
        out = {"discrepancy.scale": parts["disc_scale"]}
        for d, f in enumerate(self.features):
            out[f"discrepancy.lengthscale[{f}]"] = parts["disc_ls"][:, d]
        return out
