"""δ's hyperparameters: its marginal sd (one, or one per campaign pooled as variance
components), one length-scale per feature (those not fixed by ``Discrepancy(lengthscale=)``)
and, for an S-GaSP δ whose scaling has a prior, its scaling λ_z."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..priors import HalfNormal, LogNormal, Normal, Prior
from ._base import _STD, _TINY, Block, PooledGroup, _log_draws, _plain, _scales


class DiscrepancyHyper(Block):
    """δ's marginal sd and one length-scale per feature, both sampled as logs.

    ``fixed`` (feature name → value) are length-scales held fixed: they have no column in
    ``u`` and no prior, ``lengthscale_priors`` are those of the other features in order,
    and ``disc_ls`` (:meth:`log_lengthscales`) has every feature's value in its column.
    """

    def __init__(
        self,
        scale_prior: Prior,
        lengthscale_priors: list[Prior],
        features: list[str],
        scaling_prior: Prior | None = None,
        fixed: dict[str, float] | None = None,
    ):
        self.scale_prior = scale_prior
        self.lengthscale_priors = list(lengthscale_priors)
        self.features = list(features)
        self.scaling_prior = scaling_prior
        self.fixed = dict(fixed or {})
        self.sampled = [f for f in self.features if f not in self.fixed]
        # columns of [sampled log ℓ, fixed log ℓ] in feature order
        order = [self.features.index(f) for f in self.sampled + list(self.fixed)]
        self._perm = np.argsort(order)
        self._log_fixed = np.log([self.fixed[f] for f in self.fixed])
        self._t: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

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
        fixed = _fixed_lengthscales(discrepancy, features)
        ls = [
            p
            for f, p in zip(features, _lengthscale_priors(discrepancy, z_obs, features))
            if f not in fixed
        ]
        if discrepancy.pooled_scale:
            # the hierarchical noise's defaults (noise_block): the same kind of quantity
            hp = {"mean": Normal(math.log(y_sd / 2.0), 1.5), "scale": HalfNormal(1.0)}
            hp.update(discrepancy.hyperpriors)
            camps = list(campaigns or [])
            return PooledDiscrepancyHyper(hp, ls, features, camps, scaling, fixed)
        scale = discrepancy.scale_prior or HalfNormal(y_sd)
        return cls(scale, ls, features, scaling, fixed)

    def slots(self):
        out = [
            ("discrepancy.logscale", ["log discrepancy.scale"]),
            (
                "discrepancy.loglengthscale",
                [f"log discrepancy.lengthscale[{f}]" for f in self.sampled],
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
        if self.sampled:
            ls = np.column_stack([pr.sample(rng, n) for pr in self.lengthscale_priors])
            parts.append(np.log(np.maximum(ls, _TINY)))
        if self.scaling_prior is not None:
            parts.append(_log_draws(self.scaling_prior, rng, n).reshape(n, 1))
        return parts

    def log_lengthscales(self, U: torch.Tensor, slots) -> torch.Tensor:
        """``log ℓ (W, D)`` of every feature: the sampled columns of ``U``, with the fixed
        values in their features' columns (the columns themselves when none is fixed)."""
        ls = slots["discrepancy.loglengthscale"]
        sampled = U[:, ls.start : ls.stop]
        if not self.fixed:
            return sampled
        key = (U.dtype, U.device)
        if key not in self._t:
            self._t[key] = (
                torch.as_tensor(self._log_fixed, dtype=U.dtype, device=U.device),
                torch.as_tensor(self._perm, device=U.device),
            )
        values, perm = self._t[key]
        full = torch.cat([sampled, values.expand(U.shape[0], -1)], dim=1)
        return full.index_select(1, perm)

    def quantities(self, U, slots):
        s = slots["discrepancy.logscale"]
        out = {
            "disc_scale": torch.exp(U[:, s.start]),
            "disc_ls": torch.exp(self.log_lengthscales(U, slots)),
        }
        if self.scaling_prior is not None:
            out["disc_scaling"] = torch.exp(U[:, slots["discrepancy.logscaling"].start])
        return out

    def named(self, parts: dict) -> dict[str, torch.Tensor]:
        return {"discrepancy.scale": parts["disc_scale"], **self._kernel_named(parts)}

    def _kernel_named(self, parts: dict) -> dict[str, torch.Tensor]:
        # a fixed length-scale is a setting, not a quantity of the posterior (as a fixed θ)
        out = {
            f"discrepancy.lengthscale[{f}]": parts["disc_ls"][:, d]
            for d, f in enumerate(self.features)
            if f not in self.fixed
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
        fixed: dict[str, float] | None = None,
    ):
        super().__init__(None, lengthscale_priors, features, scaling_prior, fixed)
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
        out = {
            "disc_scales": self.scales(U, slots),
            "disc_scale_mean": U[:, slots["discrepancy.logscale"].start],
            "disc_scale_sd": torch.exp(U[:, slots["discrepancy.logscale.sd"].start]),
            "disc_ls": torch.exp(self.log_lengthscales(U, slots)),
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


def _fixed_lengthscales(discrepancy: Any, features: list[str]) -> dict[str, float]:
    """``Discrepancy(lengthscale=)`` by feature name: one value for every feature, or the
    features named (checked against δ's features)."""
    given = getattr(discrepancy, "lengthscale", None)
    if given is None:
        return {}
    if not isinstance(given, dict):
        return dict.fromkeys(features, float(given))
    unknown = sorted(set(given) - set(features))
    if unknown:
        raise ValueError(
            f"Discrepancy: lengthscale names {unknown}, which are not δ's features; "
            f"expected some of {features}"
        )
    return {f: float(given[f]) for f in features if f in given}


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
