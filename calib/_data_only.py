"""How precisely the data alone, with δ absent, would pin each calibration parameter: the
Gauss–Newton (Laplace) sd at the posterior mean, for the identifiability report.

With J the derivative of the forward model's mean at the observed entries with respect to
the calibration parameter entries (central differences at the posterior mean of θ) and
Σ the entries' variance without δ (noise, jitter and, in emulator mode, the emulator's own
variance), the data-only covariance is ``(Jᵀ Σ⁻¹ J)⁻¹`` (the Fisher information of a
Gaussian regression; e.g. Bates & Watts 1988, §2.3). Its square-root diagonal against the
posterior sd says how much δ widens each parameter: a factor far above 1 means that δ
can take up what the parameter explains, so its value rests on δ's prior
(docs/identifiability.md).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["data_only_sd"]

DTYPE = torch.float64


def data_only_sd(post, entries: list[dict]) -> dict[str, float]:
    """``{entry name: data-only sd}`` in each parameter's units (inf where the data do not
    inform it; NaN where the forward model failed at the perturbed points)."""
    model = post.model
    flat = post.flat_unconstrained()
    with torch.no_grad():
        U = torch.as_tensor(flat.mean(axis=0, keepdims=True), dtype=DTYPE, device=model.device)
        theta0 = model._unpack(U)["theta"]  # (1, L, q)
        K = len(entries)
        theta = theta0.repeat(2 * K + 1, 1, 1)
        steps = np.empty(K)
        for k, e in enumerate(entries):
            draws = post.draws(e["name"])
            scale = max(float(np.std(draws)), 1e-8 * max(abs(float(np.mean(draws))), 1.0))
            steps[k] = 1e-3 * scale
            camp = (
                slice(None) if e["campaign"] is None else model.campaign_names.index(e["campaign"])
            )
            theta[1 + 2 * k, camp, e["j"]] += steps[k]
            theta[2 + 2 * k, camp, e["j"]] -= steps[k]
        mean, emu_cov, _ = model._forward(theta)
        r = model._residuals(mean, model._t_res_idx).reshape(2 * K + 1, -1)  # y − η
        noise_sd = model.noise_block.noise_sd(U, model.slots)
        var = model._t_diag_base if noise_sd is None else model._noise_diag(noise_sd)[0]
        var = var.reshape(-1).clone()
        if emu_cov is not None:
            W = emu_cov.shape[0]
            Ce = emu_cov.reshape(W, -1).index_select(1, model._t_emu_idx)
            Ce = Ce.view(W, model.B, model.Nmax, model.Nmax)[0] * model._t_emu_mask
            var = var + torch.diagonal(Ce, dim1=-2, dim2=-1).reshape(-1)
    live = ~model._t_pad_flat
    r = r[:, live].cpu().numpy()
    w = 1.0 / var[live].cpu().numpy()
    J = (r[2::2] - r[1::2]) / (2.0 * steps[:, None])  # (K, N): ∂η/∂θ_k
    out = {e["name"]: float("nan") for e in entries}
    if not np.isfinite(J).all():
        return out
    F = (J * w) @ J.T
    try:
        cov = np.linalg.inv(F)
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    except np.linalg.LinAlgError:
        sd = np.full(K, np.inf)
    ok = np.linalg.matrix_rank(F) == K
    for k, e in enumerate(entries):
        out[e["name"]] = float(sd[k]) if ok else float("inf")
    return out
