"""δ's part of the covariance of the observed entries (docs/model.md, eqs. 4b, 6 and 6c).

For the entries a, b of a covariance block, δ contributes

    σ_δ² k(z_a, z_b; ℓ) M_ab                              one σ_δ (scale="common")
    σ_δℓ(a) σ_δℓ(b) k(z_a, z_b; ℓ) M_ab                   pooled σ_δℓ (scale="hierarchical")

with ``k`` the unit-variance kernel, or its conditional ``k_P`` of eq. 4b when δ is
conditioned on zero pseudo-observations (:mod:`calib.pseudo`), and ``M_ab`` the linking mask
of eq. 6. With pooled scales δ is ``"independent"``, so ``M_ab`` is zero across campaigns and
the product is ``σ_δℓ² k`` within campaign ℓ: the unit kernel (and its unit correction) is
computed once and scaled by the outer product of the per-entry σ_δ, gathered by the entries'
campaigns. The common σ_δ keeps its own path (the kernel with ``log σ_δ`` folded into its
exponent, :class:`calib.kernels.KernelOnDistances`), whose values the tests pin.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from .blocks._base import Slot
from .kernels import KernelOnDistances
from .pseudo import PseudoConditioning

if TYPE_CHECKING:
    from .likelihood import Model

__all__ = ["DeltaCovariance"]

DTYPE = torch.float64


class DeltaCovariance:
    """δ's covariance between the observed entries of every block, for a batch of walkers.

    Built once per model, after its layout and its block plan (indices, mask, the entries'
    campaigns).

    Parameters
    ----------
    model : calib.likelihood.Model
        With an active discrepancy.
    """

    def __init__(self, model: Model):
        disc = model.discrepancy
        self.slots = model.slots
        self.block = model.disc_block
        self.pooled = self.block.pooled
        self.kernel = KernelOnDistances(disc.kernel, model._dsq, model.device)
        s = model.slots["discrepancy.logscale"]  # log σ_δ, or m of the pooled σ_δℓ
        self.sl_scale = slice(s.start, s.stop)
        self.mask = model._t_dmask
        self.blk_campaign = model._t_blk_campaign  # (B, Nmax): σ_δℓ of each entry
        self.pseudo = None
        if disc.conditioned:
            # δ conditioned on zero pseudo-observations (constraints, S-GaSP): eq. 4b
            self.pseudo = PseudoConditioning(
                disc,
                model.z_obs,
                model.z_obs[model.block_idx],
                model.p,
                model.output_coords,
                model.device,
            )
            self.obs_share = model._tensor(model.n_obs_campaign / model.N, DTYPE)
            kv = model.known_var
            self.known_var = None if kv is None else float(np.mean(kv))

    def factor(self, U: torch.Tensor, noise_sd: torch.Tensor | None):
        """δ's pseudo-observations for the walkers (eq. 4b): factor, ℓ⁻², failed walkers.

        With pooled scales λ_z is fixed or sampled (:class:`calib.Discrepancy` refuses the
        default rule, eq. 4e, which needs one σ_δ), so the σ_δ slot is not read."""
        slots = self.slots
        if self.block.fixed:
            # factor_for reads log ℓ from U's length-scale slot, which holds the sampled ones
            # only: give it U with every feature's log ℓ appended and the slot moved there
            full = self.block.log_lengthscales(U, slots)
            n = U.shape[1]
            U = torch.cat([U, full], dim=1)
            name = "discrepancy.loglengthscale"
            slots = {**slots, name: Slot(name, n, full.shape[1])}
        return self.pseudo.factor_for(U, slots, noise_sd, self.obs_share, self.known_var)

    def scales(self, U: torch.Tensor) -> torch.Tensor:
        """Pooled scales only: σ_δℓ of every campaign ``(W, L)``."""
        return self.block.scales(U, self.slots)

    def __call__(
        self, U: torch.Tensor, noise_sd: torch.Tensor | None, inplace: bool
    ) -> torch.Tensor:
        """δ's masked covariance ``(W, B, Nmax, Nmax)`` of eq. 6; a walker whose
        pseudo-observations cannot be factorized gets NaN (it fails).

        ``inplace``: no gradient is recorded, the products may overwrite fresh buffers."""
        if self.pooled:
            C = self._pooled(U, noise_sd, inplace)
        else:
            C = self.kernel(U[:, self.sl_scale], self.block.log_lengthscales(U, self.slots))
            if self.pseudo is not None:
                var = torch.exp(U[:, self.sl_scale] * 2.0)[:, :, None, None]
                C = self._conditioned(C, U, noise_sd, var)
        if self.mask is not None:
            C = C.mul_(self.mask) if inplace else C * self.mask
        return C

    def _pooled(self, U: torch.Tensor, noise_sd: torch.Tensor | None, inplace: bool):
        """``σ_δℓ(a) σ_δℓ(b) k_(P)(a, b)``: the unit-variance kernel (log σ = 0) and unit
        correction, scaled by the entries' σ_δ (eq. 6c)."""
        log_ls = self.block.log_lengthscales(U, self.slots)
        C = self.kernel(torch.zeros_like(U[:, self.sl_scale]), log_ls)
        if self.pseudo is not None:
            C = self._conditioned(C, U, noise_sd)
        g = self.scales(U)[:, self.blk_campaign]  # (W, B, Nmax)
        a, b = g.unsqueeze(-1), g.unsqueeze(-2)
        return C.mul_(a).mul_(b) if inplace else C * a * b

    def _conditioned(self, C, U, noise_sd, var=None):
        """``C − var · k(a, P)(K_PP + D)⁻¹ k(P, b)`` (eq. 4b; ``var`` None: unit variance);
        a walker whose ``K_PP + D`` cannot be factorized gets NaN (it fails)."""
        Lc, inv_sq, bad = self.factor(U, noise_sd)
        corr = self.pseudo.correction_obs(Lc, inv_sq)
        C = C - (corr if var is None else var * corr)
        if bad is not None:
            C = torch.where(bad[:, None, None, None], math.nan, C)
        return C
