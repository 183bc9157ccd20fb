"""δ's hyperparameters: its marginal sd, one length-scale per feature and, for an S-GaSP δ
whose scaling has a prior, its scaling λ_z."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..priors import HalfNormal, LogNormal, Prior
from ._base import _TINY, Block, _log_draws, _scales


class DiscrepancyHyper(Block):
    """δ's marginal sd and one length-scale per feature, both sampled as logs."""

    def __init__(
        self,
        scale_prior: Prior,
        lengthscale_priors: list[Prior],
        features: list[str],
        scaling_prior: Prior | None = None,
    ):
        self.scale_prior = scale_prior
        self.lengthscale_priors = list(lengthscale_priors)
        self.features = list(features)
        self.scaling_prior = scaling_prior

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
        scaling = discrepancy.scaling if isinstance(discrepancy.scaling, Prior) else None
        return cls(scale, ls, features, scaling)

    def slots(self):
        out = [
            ("discrepancy.logscale", ["log discrepancy.scale"]),
            (
                "discrepancy.loglengthscale",
                [f"log discrepancy.lengthscale[{f}]" for f in self.features],
            ),
        ]
        if self.scaling_prior is not None:
            out.append(("discrepancy.logscaling", ["log discrepancy.scaling"]))
        return out

    def entries(self, slots):
        out = _scales(slots["discrepancy.logscale"], [self.scale_prior]) + _scales(
            slots["discrepancy.loglengthscale"], self.lengthscale_priors
        )
        if self.scaling_prior is not None:
            out += _scales(slots["discrepancy.logscaling"], [self.scaling_prior])
        return out

    def sample_prior(self, rng, n):
        parts = [_log_draws(self.scale_prior, rng, n).reshape(n, 1)]
        if self.features:
            ls = np.column_stack([pr.sample(rng, n) for pr in self.lengthscale_priors])
            parts.append(np.log(np.maximum(ls, _TINY)))
        if self.scaling_prior is not None:
            parts.append(_log_draws(self.scaling_prior, rng, n).reshape(n, 1))
        return np.concatenate(parts + [np.zeros((n, 0))], axis=1)

    def quantities(self, U, slots):
        s, ls = slots["discrepancy.logscale"], slots["discrepancy.loglengthscale"]
        out = {
            "disc_scale": torch.exp(U[:, s.start]),
            "disc_ls": torch.exp(U[:, ls.start : ls.stop]),
        }
        if self.scaling_prior is not None:
            out["disc_scaling"] = torch.exp(U[:, slots["discrepancy.logscaling"].start])
        return out

    def named(self, parts: dict) -> dict[str, torch.Tensor]:
        out = {"discrepancy.scale": parts["disc_scale"]}
        for d, f in enumerate(self.features):
            out[f"discrepancy.lengthscale[{f}]"] = parts["disc_ls"][:, d]
        if "disc_scaling" in parts:
            out["discrepancy.scaling"] = parts["disc_scaling"]
        return out
