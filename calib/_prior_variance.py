"""The calibration parameter entries of a model and their prior variances.

An entry is one θ common to all campaigns, or one campaign's θ of a parameter that is not
completely pooled, named as :meth:`calib.Posterior.draws` names it. Its prior variance is
the denominator of the contraction ``1 − Var_post / Var_prior`` of the identifiability
report (:mod:`calib.identifiability`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._threads import torch_threads
from .blocks import CompletePooling, PartialPooling

__all__ = ["PRIOR_DRAWS", "prior_variances", "theta_entries"]

DTYPE = torch.float64
_CPU = torch.device("cpu")

#: prior draws for the Monte Carlo prior variance of a partially pooled θ
PRIOR_DRAWS = 4000


def theta_entries(model) -> list[dict]:
    """The calibration parameter entries: one per parameter whose θ is common to all
    campaigns, one per campaign otherwise, named as :meth:`calib.Posterior.draws` names them."""
    out = []
    for j, block in enumerate(model.param_blocks):
        if isinstance(block, CompletePooling):
            out.append({"name": block.name, "parameter": block.name, "campaign": None, "j": j})
            continue
        for c in model.campaign_names:
            out.append(
                {"name": f"{block.name}[{c}]", "parameter": block.name, "campaign": c, "j": j}
            )
    return out


def prior_variances(model, entries: list[dict], seed: int | None) -> dict[str, float]:
    """Var_prior of every entry under the model's prior.

    A completely pooled or unpooled θ has the parameter's prior truncated to its bounds:
    its variance by quadrature (exact; the model's ``sample_prior`` keeps its draws within
    the 0.1 % and 99.9 % quantiles, for starts, which would bias the variance low by ~2 %
    for a Normal prior). A partially pooled θ has the marginal of ``g⁻¹(μ + τ z)`` over the
    hyperpriors: Monte Carlo from ``PRIOR_DRAWS`` of ``model.sample_prior`` (which draws the
    hyperparameters from their priors untruncated), all campaigns' columns together (they
    are exchangeable a priori).
    """
    out: dict[str, float] = {}
    pooled = [b for b in model.param_blocks if isinstance(b, PartialPooling)]
    theta = None
    if pooled:
        U = model.sample_prior(np.random.default_rng(seed), PRIOR_DRAWS)
        with torch.no_grad(), torch_threads(1):
            t = model.unpack(torch.as_tensor(U, dtype=DTYPE, device=_CPU))["theta"]
        theta = t.numpy()  # (n, L, q)
    for e in entries:
        block = model.param_blocks[e["j"]]
        if isinstance(block, PartialPooling):
            v = theta[:, :, e["j"]].reshape(-1)
            v = v[np.isfinite(v)]
            out[e["name"]] = float(np.var(v, ddof=1)) if v.size > 1 else math.nan
        else:
            out[e["name"]] = _truncated_variance(block.parameter)
    return out


def _truncated_variance(prm) -> float:
    """Variance of ``prm.prior`` truncated to ``[prm.lower, prm.upper]``; inf when the
    prior's variance is infinite and the bounds do not cut it off."""
    dist = prm.prior.scipy()
    lo, hi = prm.prior.support
    a = -math.inf if prm.lower is None else prm.lower
    b = math.inf if prm.upper is None else prm.upper
    if a <= lo and b >= hi:
        return float(dist.var())
    if not (math.isfinite(a) and math.isfinite(b)) and not math.isfinite(float(dist.var())):
        return math.inf
    mean = float(dist.expect(lambda t: t, lb=a, ub=b, conditional=True))
    return float(dist.expect(lambda t: (t - mean) ** 2, lb=a, ub=b, conditional=True))
