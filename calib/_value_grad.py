"""The log-posterior and its gradient for all walkers in one batched call: what the HMC
move (:mod:`calib.chees`, :mod:`calib.interweave`) integrates and the MAP search
(:mod:`calib._sampler_starts`) climbs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from .likelihood import DTYPE

if TYPE_CHECKING:  # only for the hints: the flip is used through its methods
    from .interweave import PoolingFlip

__all__ = ["batched_value_and_grad"]


def batched_value_and_grad(
    model, flip: PoolingFlip | None = None
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``U (W, d) -> (log p (W,), ∇ log p (W, d))`` with one batched torch call and autograd.

    With ``flip``, ``U`` are the other parameterization's coordinates and ``log p`` the
    density there (the model's plus ``log|∂x/∂y|``). Walkers whose log-posterior or gradient
    is not finite get ``-inf`` and a zero gradient.
    """

    # a flip that knows its columns' prior in its own coordinates (the normal scores)
    # states it there, and the model leaves those columns' prior out: fewer operations
    skip = getattr(flip, "prior_cols", None)
    if skip is not None and not model.can_skip_prior(skip):
        skip = None

    def fn(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = torch.as_tensor(U, dtype=DTYPE).requires_grad_(True)
        if flip is None:
            lp = model.log_posterior(X)
        elif skip is not None:
            Xm, log_prior = flip.to_model_torch_prior(X)
            lp = model.log_posterior(Xm, skip) + log_prior
        else:
            Xm, log_det = flip.to_model_torch(X)
            lp = model.log_posterior(Xm) + log_det
        ok = torch.isfinite(lp)
        (g,) = torch.autograd.grad(torch.where(ok, lp, torch.zeros_like(lp)).sum(), X)
        lp = lp.detach().numpy().copy()
        g = g.numpy().copy()
        bad = ~np.isfinite(lp) | ~np.isfinite(g).all(axis=1)
        lp[bad] = -np.inf
        g[bad] = 0.0
        return lp, g

    return fn
