"""Predictions: the exact Gaussian conditional of δ or of reality at new points, per
posterior draw (docs/model.md, eq. 9), for :meth:`calib.Posterior.predict` and
:meth:`calib.Posterior.discrepancy`.

With campaigns observed at their own output coordinates (``Campaign(coords=)``,
:mod:`calib._field_coords`) the forward model is evaluated with its virtual outputs
(``model.forward_rows``), so the observed entries at interpolated coordinates condition the
prediction exactly as they enter the likelihood. Predictions are at the model's ``m``
outputs by default; ``outputs=`` asks for any of the ``M`` (a campaign's own columns are
``model.field.columns[ℓ]``), reality there being the interpolated forward model plus δ at
that coordinate, as in the likelihood; ``coords=`` at any coordinates inside the range of
the model's, through further virtual outputs interpolated the same way
(:mod:`calib._predict_coords`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from ._gaussian import _cholesky_retry
from ._predict_coords import prediction_outputs
from ._threads import torch_threads
from .kernels import kernel_from_sq, sq_dists

if TYPE_CHECKING:
    from .likelihood import Model

__all__ = ["conditional_mean", "predictive"]

DTYPE = torch.float64


def predictive(
    model: Model,
    U: torch.Tensor,
    X_new: np.ndarray,
    campaign: int | None,
    what: str,
    theta_new: torch.Tensor | None = None,
    disc_scale_new: torch.Tensor | None = None,
    outputs: np.ndarray | None = None,
    coords: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact Gaussian conditional of δ or of reality ζ = η + δ at new points, per draw.

    For every posterior draw ``U_s`` the data give, with ``r = y − E[η]`` the residuals of
    the block that holds the campaign and ``C`` its covariance (eq. 6),

        E[f* | y] = m* + K*o C⁻¹ r,    Cov[f* | y] = K** − K*o C⁻¹ Ko*

    (docs/model.md, eq. 9), where for ``what="discrepancy"`` f* = δ*, m* = 0 and the
    covariances are δ's; for ``what="reality"`` f* = η* + δ*, m* is the forward model's
    mean and the emulator's covariances (zero in direct mode) are added to δ's.

    Parameters
    ----------
    U : (S, n_dim) posterior draws
    X_new : (n*, p) control inputs
    campaign : index of an existing campaign, or None for a new campaign
    what : "discrepancy" or "reality"
    theta_new : (S, q), required when ``campaign`` is None
    disc_scale_new : (S,), σ_δ of the new campaign when δ's scales are pooled
        (docs/model.md §3c; required then when ``campaign`` is None)
    outputs : (k,) int in ``0 … M−1``, optional
        The outputs to predict: the model's ``0 … m−1`` or the virtual ones of campaigns'
        own coordinates (``model.field``); default the ``m`` outputs of the model.
    coords : (k,) or (k, r), or "campaign", optional
        Instead of ``outputs``: the output coordinates to predict at, any inside the range
        of the model's, or the campaign's own (:func:`calib._predict_coords.check_coords`;
        ``"campaign"`` is ``outputs=model.field.columns[ℓ]``). One of the model's
        coordinates is that output; one between them is the forward model interpolated
        there as the likelihood interpolates (:class:`calib._field_coords.FieldOutputs`),
        with δ at that coordinate.

    Returns
    -------
    mean : (S, n*, k), ``k = m`` by default
    cov : (S, n*·k, n*·k), entries ordered row-major over (point, output)
    failed : (S,) draws whose forward model or factorization failed

    All three on the device of ``U``; the arithmetic runs on the model's.

    Raises
    ------
    ValueError
        ``outputs`` out of range, both ``outputs`` and ``coords``, or ``coords`` refused by
        :func:`calib._predict_coords.check_coords`.
    """
    field, M = model.field, model.M
    if coords is not None:
        if outputs is not None:
            raise ValueError("give outputs= or coords=, not both")
        # the model's outputs, extended by virtual ones at coordinates that are not among
        # them: its first M are the model's, so the observed entries index them unchanged
        field, outputs = prediction_outputs(model, coords, campaign)
        M = model.M if field is None else field.M
    dev = U.device
    U = U.to(model.device)
    if theta_new is not None:
        theta_new = theta_new.to(model.device)
    if disc_scale_new is not None:
        disc_scale_new = disc_scale_new.to(model.device)
    parts = model._unpack(U)
    theta = parts["theta"]
    S = theta.shape[0]
    n_new = X_new.shape[0]
    if outputs is None:
        out, k = np.arange(model.m), model.m
    else:
        out = np.asarray(outputs, dtype=np.int64).reshape(-1)
        k = out.size
        if k == 0 or out.min() < 0 or out.max() >= M:
            raise ValueError(f"outputs: expected indices in [0, {M}), got {out.tolist()}")
    th = theta[:, campaign, :] if campaign is not None else theta_new
    n_rows = model.X_rows.shape[0]
    Theta = torch.cat(
        [theta[:, model._t_row_campaign, :], th[:, None, :].expand(S, n_new, model.q)], dim=1
    )
    # with the virtual outputs of campaigns' own coordinates: mean (S, ·, M), the residuals
    # index it by M (calib/_field_coords.py)
    X_all = np.concatenate([model.X_rows, X_new])
    if M == model.M:
        mean_all, cov_all, failed = model.forward_rows(X_all, Theta)
        mean_obs = mean_all[:, :n_rows]
        emu_obs = None if cov_all is None else cov_all[..., :n_rows, :n_rows]
    else:  # extended by coords=: the observed entries are among the first M outputs
        mean_all, cov_all, failed = field.forward(model.forward, X_all, Theta)
        mean_obs = mean_all[:, :n_rows, : model.M]
        emu_obs = None if cov_all is None else cov_all[:, : model.M, :n_rows, :n_rows]
    r = model._residuals(mean_obs, model._t_res_full)
    C = model._covariance(U, parts.get("noise_sd"), emu_obs, model._t_emu_idx_full)
    Lc, bad, _ = _cholesky_retry(C)
    failed = failed if bad is None else failed | bad

    # the new entries (point i*, output j), row-major
    ii = np.repeat(np.arange(n_new), k)
    jj = np.tile(out, n_new)
    n_star = n_new * k
    reality = what == "reality"
    if reality:
        sel = slice(None, model.m) if outputs is None else model._tensor(out)
        new = mean_all[:, n_rows:, sel]
        mean = new.reshape(S, n_star).clone()
    else:
        mean = torch.zeros(S, n_star, dtype=DTYPE, device=model.device)
    prior = torch.zeros(S, n_star, n_star, dtype=DTYPE, device=model.device)
    b = 0 if model.B == 1 else campaign  # the block that informs this campaign, if any
    cross = None
    if b is not None:
        cross = torch.zeros(S, n_star, model.Nmax, dtype=DTYPE, device=model.device)
        idx = model.block_idx[b]
        live = ~model.block_pad[b]
    if model.discrepancy.active:
        feats = [X_new[ii]]
        if model.output_coords is not None:  # every output's coordinate, virtual ones too
            at = model.output_coords if field is None else field.coords
            feats.append(at[jj])
        z_new = np.concatenate(feats, axis=1)
        kind, ls = model.discrepancy.kernel, parts["disc_ls"]
        sc = _scale(parts, campaign, disc_scale_new)
        same_out = (
            (jj[:, None] == jj[None, :]) if model.split_outputs else np.ones((n_star, n_star), bool)
        )
        K = kernel_from_sq(kind, model._tensor(sq_dists(z_new, z_new), DTYPE), sc, ls)
        V_new = None
        if model._pseudo is not None:  # δ conditioned on its pseudo-observations (eq. 6b)
            Lp, inv_sq, _ = model._pseudo_factor(U, parts.get("noise_sd"))
            V_new = model._pseudo.cross(z_new, inv_sq, Lp)
            var = (sc * sc)[:, None, None]
            K = K - var * (V_new.transpose(1, 2) @ V_new)
        prior = prior + K * model._tensor(same_out, DTYPE)
        if cross is not None:
            mask = np.broadcast_to(live, (n_star, model.Nmax)).copy()
            if model.discrepancy.per_campaign:
                mask &= model.obs_campaign[idx][None, :] == (-1 if campaign is None else campaign)
            if model.split_outputs:
                mask &= jj[:, None] == model.obs_col[idx][None, :]
            Kx = kernel_from_sq(
                kind, model._tensor(sq_dists(z_new, model.z_obs[idx]), DTYPE), sc, ls
            )
            if V_new is not None:
                V_obs = model._pseudo.cross(model.z_obs[idx], inv_sq, Lp)
                Kx = Kx - var * (V_new.transpose(1, 2) @ V_obs)
            cross = cross + Kx * model._tensor(mask, DTYPE)
    if reality and cov_all is not None:
        jt, it = model._tensor(jj), model._tensor(ii + n_rows)
        E = cov_all[:, jt[:, None], it[:, None], it[None, :]]
        prior = prior + E * model._tensor(jj[:, None] == jj[None, :], DTYPE)
        if cross is not None:
            ro = model._tensor(model.obs_row[idx])
            Ex = cov_all[:, jt[:, None], it[:, None], ro[None, :]]
            mk = (jj[:, None] == model.obs_col[idx][None, :]) & live[None, :]
            cross = cross + Ex * model._tensor(mk, DTYPE)
    if cross is not None:
        Lb = Lc[:, b]
        v = torch.linalg.solve_triangular(Lb, r[:, b].unsqueeze(-1), upper=False)  # (S, N, 1)
        A = torch.linalg.solve_triangular(Lb, cross.transpose(1, 2), upper=False)  # (S, N, n*)
        mean = mean + (A.transpose(1, 2) @ v).squeeze(-1)
        prior = prior - A.transpose(1, 2) @ A
    cov = 0.5 * (prior + prior.transpose(1, 2))
    return mean.reshape(S, n_new, k).to(dev), cov.to(dev), failed.to(dev)


def conditional_mean(
    model: Model,
    U: np.ndarray,
    X_new: np.ndarray,
    campaign: int,
    what: str,
    outputs: np.ndarray | None = None,
    chunk: int = 256,
) -> np.ndarray:
    """The average over the draws of the conditional means, ``(n*, k)``: the posterior
    mean of :meth:`calib.Posterior.predict` (``what="reality"``) or
    :meth:`calib.Posterior.discrepancy` (Rao–Blackwellized), at any ``outputs``.

    Parameters
    ----------
    U : (S, n_dim) posterior draws (unconstrained), evaluated ``chunk`` at a time
    X_new, campaign, what, outputs : as :func:`predictive`

    Raises
    ------
    RuntimeError
        The forward model failed for every draw.
    """
    means = []
    for a in range(0, U.shape[0], chunk):
        Ut = torch.as_tensor(U[a : a + chunk], dtype=DTYPE, device=torch.device("cpu"))
        with torch.no_grad(), torch_threads(1):
            mean, _, failed = predictive(model, Ut, X_new, campaign, what, outputs=outputs)
        means.append(mean.cpu().numpy()[~failed.cpu().numpy()])
    kept = np.concatenate(means)
    if kept.shape[0] == 0:
        raise RuntimeError("the forward model failed for every posterior draw")
    return kept.mean(axis=0)


def _scale(parts: dict, campaign: int | None, new: torch.Tensor | None) -> torch.Tensor:
    """σ_δ of the δ that is predicted, per draw ``(S,)``: the common one, or with pooled
    scales the campaign's σ_δℓ (a new campaign's: ``new``, drawn from the population)."""
    if "disc_scale" in parts:
        return parts["disc_scale"]
    if campaign is not None:
        return parts["disc_scales"][:, campaign]
    if new is None:
        raise ValueError("δ's scales are pooled: a new campaign's δ needs disc_scale_new")
    return new
