"""Eq. 7 of docs/model.md by one batched Cholesky: the Gaussian log-likelihood of blocks of
residuals, with one jitter retry and the gradient in closed form."""

from __future__ import annotations

import math

import torch

__all__ = ["_LOG_2PI", "_cholesky_retry", "_gaussian_loglik", "_GaussianLogLik"]

_LOG_2PI = math.log(2.0 * math.pi)


def _cholesky_retry(
    C: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Batched Cholesky of ``C (W, B, n, n)``; a failed factorization is retried with
    1e-6·mean(diag) added, then marks the walker failed (its log-posterior becomes −inf;
    its factor is the identity). Returns the factor, the failed walkers ``(W,)`` and the
    retried blocks ``(W, B)``, both None when every factorization succeeded at once."""
    Lc, info = torch.linalg.cholesky_ex(C)
    if not info.any():
        return Lc, None, None
    retried = info != 0  # (W, B)
    scale = torch.diagonal(C, dim1=-2, dim2=-1).mean(dim=-1)  # (W, B)
    eye = torch.eye(C.shape[-1], dtype=C.dtype, device=C.device)
    C2 = C + (1e-6 * scale * retried)[..., None, None] * eye
    Lc, info = torch.linalg.cholesky_ex(C2)
    bad = info != 0
    bad_w = bad.any(dim=1)
    if bad_w.any():
        Lc = torch.where(bad[..., None, None], eye.expand_as(Lc), Lc)
    return Lc, bad_w, retried


def _gaussian_loglik(C: torch.Tensor, r: torch.Tensor, n_obs: int):
    """Eq. 7 for blocks ``C (W, B, n, n)``, residuals ``r (W, B, n)`` (zero at pads) of
    ``n_obs`` observed entries: the log-likelihood ``(W,)``, the failed walkers (or None)
    and what the gradient needs."""
    Lc, bad, retried = _cholesky_retry(C)
    v = torch.linalg.solve_triangular(Lc, r.unsqueeze(-1), upper=False)  # L⁻¹r
    quad = (v * v).sum(dim=(1, 2, 3))  # rᵀC⁻¹r = ‖L⁻¹r‖²
    half_logdet = torch.log(torch.diagonal(Lc, dim1=-2, dim2=-1)).sum(dim=(1, 2))
    ll = -0.5 * (torch.add(quad, half_logdet, alpha=2.0) + n_obs * _LOG_2PI)
    return ll, bad, (Lc, v, retried)


class _GaussianLogLik(torch.autograd.Function):
    """Eq. 7 with its gradient in closed form (Rasmussen & Williams 2006, eq. 5.9):

        ∂ log p / ∂C = ½ (α αᵀ − C⁻¹),   ∂ log p / ∂r = −α,   α = C⁻¹ r,

    from the forward pass's factor (one triangular solve and one ``cholesky_inverse``)
    instead of autograd's path back through the factorization. Where a block was retried
    with ``ε·mean(diag C)`` added, the jitter's own dependence on C adds
    ``ε·tr(∂/∂C₂)/n`` to the diagonal, as autograd would. First derivatives only.
    """

    @staticmethod
    def forward(ctx, C: torch.Tensor, r: torch.Tensor, n_obs: int):
        ll, bad, (Lc, v, retried) = _gaussian_loglik(C, r, n_obs)
        ctx.save_for_backward(Lc, v)
        ctx.retried = retried
        bad = torch.zeros_like(ll, dtype=torch.bool) if bad is None else bad
        ctx.mark_non_differentiable(bad)
        return ll, bad

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor, _):
        Lc, v = ctx.saved_tensors
        alpha = torch.linalg.solve_triangular(Lc.transpose(-1, -2), v, upper=True)  # C⁻¹r
        g4 = g[:, None, None, None]
        G = (alpha * alpha.transpose(-1, -2) - torch.cholesky_inverse(Lc)) * (0.5 * g4)
        if ctx.retried is not None:
            n = G.shape[-1]
            tr = torch.diagonal(G, dim1=-2, dim2=-1).sum(-1)  # (W, B)
            eye = torch.eye(n, dtype=G.dtype, device=G.device)
            G = G + (1e-6 * ctx.retried * tr / n)[..., None, None] * eye
        return G, -(alpha * g4).squeeze(-1), None
