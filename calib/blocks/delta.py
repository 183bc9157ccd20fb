"""δ's hyperparameters: its marginal sd (one, or one per campaign pooled as variance
components), one length-scale per feature and, for an S-GaSP δ whose scaling has a prior,
its scaling λ_z."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..priors import HalfNormal, LogNormal, Normal, Prior
from ._base import _STD, _TINY, Block, PooledGroup, _log_draws, _plain, _scales


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

    #: one σ_δ for every δ (:class:`PooledDiscrepancyHyper`: one per campaign)
    pooled = False

    @classmethod
    def with_defaults(
        cls,
        discrepancy: Any,
        y_sd: float,
        z_obs: np.ndarray,
        features: list[str],
        campaigns: list[str] | None = None,
    ) -> DiscrepancyHyper:
        """The block of a :class:`calib.Discrepancy`, its unset priors by the data's scale:
        ``σ_δ ~ HalfNormal(sd of y)``, each length-scale ``LogNormal(log(range / 2), 1)``
        over that feature's observed range (docs/model.md §3); with
        ``scale="hierarchical"`` a :class:`PooledDiscrepancyHyper` over ``campaigns``, its
        ``m ~ Normal(log(sd_y / 2), 1.5)`` and ``s ~ HalfNormal(1)`` (§3c)."""
        scaling = discrepancy.scaling if isinstance(discrepancy.scaling, Prior) else None
        if discrepancy.pooled_scale:
            # the hierarchical noise's defaults (noise_block): the same kind of quantity
            hp = {"mean": Normal(math.log(y_sd / 2.0), 1.5), "scale": HalfNormal(1.0)}
            hp.update(discrepancy.hyperpriors)
            ls = _lengthscale_priors(discrepancy, z_obs, features)
            return PooledDiscrepancyHyper(hp, ls, features, list(campaigns or []), scaling)
        scale = discrepancy.scale_prior or HalfNormal(y_sd)
        return cls(scale, _lengthscale_priors(discrepancy, z_obs, features), features, scaling)

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
        return np.concatenate(parts + self._kernel_draws(rng, n) + [np.zeros((n, 0))], axis=1)

    def _kernel_draws(self, rng, n) -> list[np.ndarray]:
        """Prior draws of the log length-scales and log λ_z, after the σ_δ columns."""
        parts = []
        if self.features:
            ls = np.column_stack([pr.sample(rng, n) for pr in self.lengthscale_priors])
            parts.append(np.log(np.maximum(ls, _TINY)))
        if self.scaling_prior is not None:
            parts.append(_log_draws(self.scaling_prior, rng, n).reshape(n, 1))
        return parts

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
        return {"discrepancy.scale": parts["disc_scale"], **self._kernel_named(parts)}

    def _kernel_named(self, parts: dict) -> dict[str, torch.Tensor]:
        out = {
            f"discrepancy.lengthscale[{f}]": parts["disc_ls"][:, d]
            for d, f in enumerate(self.features)
        }
        if "disc_scaling" in parts:
            out["discrepancy.scaling"] = parts["disc_scaling"]
        return out


class PooledDiscrepancyHyper(DiscrepancyHyper):
    """δ_ℓ's marginal sds pooled as variance components, non-centred (docs/model.md §3c):
    ``log σ_δℓ = m + s w_ℓ``, ``w_ℓ ~ N(0, 1)``, with (m, log s, w) sampled, the
    length-scales (and a sampled λ_z) as in :class:`DiscrepancyHyper`.

    The slot of m keeps the plain block's name ``discrepancy.logscale``: readers of δ's
    hyperparameter columns (the identifiability report's correlations) find the typical
    log σ_δ there; its label is ``discrepancy.scale.mean``.
    """

    pooled = True

    def __init__(
        self,
        hyperpriors: dict[str, Prior],
        lengthscale_priors: list[Prior],
        features: list[str],
        campaigns: list[str],
        scaling_prior: Prior | None = None,
    ):
        super().__init__(None, lengthscale_priors, features, scaling_prior)
        self.hyperpriors = dict(hyperpriors)
        self.campaigns = list(campaigns)

    def slots(self):
        out = super().slots()
        pooled = [
            ("discrepancy.logscale", ["discrepancy.scale.mean"]),
            ("discrepancy.logscale.sd", ["log discrepancy.scale.sd"]),
            ("discrepancy.w", [f"discrepancy.w[{c}]" for c in self.campaigns]),
        ]
        return pooled + out[1:]

    def entries(self, slots):
        hp = self.hyperpriors
        out = (
            _plain(slots["discrepancy.logscale"], hp["mean"])
            + _scales(slots["discrepancy.logscale.sd"], [hp["scale"]])
            + _plain(slots["discrepancy.w"], _STD)
            + _scales(slots["discrepancy.loglengthscale"], self.lengthscale_priors)
        )
        if self.scaling_prior is not None:
            out += _scales(slots["discrepancy.logscaling"], [self.scaling_prior])
        return out

    def sample_prior(self, rng, n):
        mean = np.asarray(self.hyperpriors["mean"].sample(rng, n)).reshape(n, 1)
        logsd = _log_draws(self.hyperpriors["scale"], rng, n).reshape(n, 1)
        w = rng.standard_normal((n, len(self.campaigns)))
        return np.concatenate([mean, logsd, w] + self._kernel_draws(rng, n), axis=1)

    def scales(self, U: torch.Tensor, slots: dict) -> torch.Tensor:
        """σ_δℓ of every campaign ``(W, L)``."""
        m = U[:, slots["discrepancy.logscale"].start].unsqueeze(1)
        v = U[:, slots["discrepancy.logscale.sd"].start].unsqueeze(1)
        w = slots["discrepancy.w"]
        return torch.exp(m + torch.exp(v) * U[:, w.start : w.stop])

    def quantities(self, U, slots):
        ls = slots["discrepancy.loglengthscale"]
        out = {
            "disc_scales": self.scales(U, slots),
            "disc_scale_mean": U[:, slots["discrepancy.logscale"].start],
            "disc_scale_sd": torch.exp(U[:, slots["discrepancy.logscale.sd"].start]),
            "disc_ls": torch.exp(U[:, ls.start : ls.stop]),
        }
        if self.scaling_prior is not None:
            out["disc_scaling"] = torch.exp(U[:, slots["discrepancy.logscaling"].start])
        return out

    def named(self, parts: dict) -> dict[str, torch.Tensor]:
        sc = parts["disc_scales"]
        out = {f"discrepancy.scale[{c}]": sc[:, l] for l, c in enumerate(self.campaigns)}
        out["discrepancy.scale.mean"] = parts["disc_scale_mean"]
        out["discrepancy.scale.sd"] = parts["disc_scale_sd"]
        return {**out, **self._kernel_named(parts)}

    def pooled_group(self, slots):
        w = slots["discrepancy.w"]
        return PooledGroup(
            slots["discrepancy.logscale"].start,
            slots["discrepancy.logscale.sd"].start,
            list(range(w.start, w.stop)),
            False,
        )

    def new_campaign_scale(self, parts: dict, rng: np.random.Generator, S: int) -> np.ndarray:
        """σ_δ of a new campaign per draw ``(S,)``: ``exp(m + s z)``, ``z ~ N(0, 1)``."""
        m, s = parts["disc_scale_mean"].cpu().numpy(), parts["disc_scale_sd"].cpu().numpy()
        return np.exp(m + s * rng.standard_normal(S))


def _lengthscale_priors(discrepancy: Any, z_obs: np.ndarray, features: list[str]) -> list:
    """The length-scales' priors: the one given for every feature, or those given by
    feature name; every other feature ``LogNormal(log(range / 2), 1)`` over its observed
    range (1 where the range is 0)."""
    D = z_obs.shape[1]
    given = discrepancy.lengthscale_prior
    if given is not None and not isinstance(given, dict):
        return [given] * D
    given = given or {}
    unknown = sorted(set(given) - set(features))
    if unknown:
        raise ValueError(
            f"Discrepancy: lengthscale_prior names {unknown}, which are not δ's features; "
            f"expected some of {features}"
        )
    rng = np.ptp(z_obs, axis=0) if z_obs.shape[0] > 0 else np.ones(D)
    return [
        given.get(f) or LogNormal(math.log((r if r > 0 else 1.0) / 2.0), 1.0)
        for f, r in zip(features, rng)
    ]
