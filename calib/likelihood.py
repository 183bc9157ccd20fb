"""The KOH log-posterior, batched over walkers, with the discrepancy marginalized.

Everything here is a function of tensors: the :class:`Model` is built once from validated
inputs (by :class:`calib.Calibrator`) and then maps unconstrained vectors
``U (n_walkers, n_dim)`` to log-posterior values ``(n_walkers,)``. The formulas are
derived in docs/model.md; the equation numbers below refer to that document.

The unknowns. ``U``'s columns are the blocks of :mod:`calib.blocks` (θ of each parameter by
its pooling, δ's hyperparameters, the noise model), in that order; their log prior is
:class:`calib.prior_plan.PriorPlan`.

Observed entries and covariance blocks (:class:`calib.observations.Observations`). Every
observed value is one entry; entries are grouped in covariance blocks independent a
priori, padded to a common size with unit diagonal and zero residual, which adds nothing to
the quadratic form or the log-determinant, so one batched Cholesky serves all blocks of all
walkers.

Covariance of a block (docs/model.md, eq. 6)::

    C = σ_δ² k(z_a, z_b; ℓ) M_ab  +  C_emu  +  diag(σ_a²)  +  ε I

with ``M_ab`` 1 when δ links entries a and b (same campaign for ``"independent"``; same
output when the outputs have no coordinates), ``ε`` the documented jitter. δ's term, with
pooled σ_δℓ (eq. 6c) or conditioned on pseudo-observations (eq. 4b), is
:class:`calib._delta_cov.DeltaCovariance`.

Cost. A call is many small tensor operations around one small batched Cholesky, so the
number of operations, not their size, sets its cost: everything that does not depend on
U (indices, masks, distances, the constant diagonal, prior constants) is built once in
``Model.__init__``; the transforms and priors of all columns that share a bijection kind
and a prior family are one vectorized evaluation each (:class:`calib.parameters.
StackedTransform`, :func:`calib.priors.stack`); an emulator is asked only for the outputs
that hold observations; the gradient of eq. 7 is its closed form; the checks for failed
walkers run only when some value is not finite (docs/model.md, "Cost of one log-posterior
call").
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ._delta_cov import DeltaCovariance
from ._emulator_plan import EmulatorPlan
from ._gaussian import _LOG_2PI, _gaussian_loglik, _GaussianLogLik
from .blocks import (
    NOISE_MODES,
    Block,
    DiscrepancyHyper,
    PartialPooling,
    layout,
    noise_block,
    pooling_block,
)
from .blocks.correlated import correlate
from .discrepancy import Discrepancy
from .observations import Observations
from .parameters import Parameter
from .prior_plan import PriorPlan
from .priors import Prior

__all__ = ["Model", "NOISE_MODES", "SimulatorWarning"]

DTYPE = torch.float64


class SimulatorWarning(UserWarning):
    """The forward model failed (raised, NaN or inf) for some walkers; they were rejected."""


class Model:
    """The compiled calibration problem (built by :class:`calib.Calibrator`).

    Parameters
    ----------
    forward : SimulatorForward or EmulatorForward
    parameters : list of Parameter, in the forward model's θ-column order
    campaign_names : list of str
    xs, ys, noises : per campaign ``x (n, p)``, ``y (n, m)``, known ``noise_sd (n, m)`` or None
    output_coords : array (m, r) or None
    input_names : names of the control inputs (for labels)
    discrepancy : Discrepancy
    noise : one of NOISE_MODES
    hyperpriors : {parameter name or "noise": {"mean": Prior, "scale": Prior}}
    noise_prior : Prior or None
    device : torch.device, optional
        Where the model's constants live and its arithmetic runs (default the CPU; checked
        by :func:`calib._device.resolve_device`). Its methods take tensors on any device and
        return their results on the device of the tensor they were given.
    correlated : list of (names, LKJ), optional
        Groups of partially pooled parameters pooled jointly, each with its LKJ prior
        (:func:`calib.blocks.correlated.check_correlated`; docs/model.md §2c).
    field_coords : list of (array (k_ℓ, r) or None), optional
        Per campaign, its columns' own output coordinates (``Campaign(coords=)``).
    """

    def __init__(
        self,
        forward,
        parameters: list[Parameter],
        campaign_names: list[str],
        xs: list[np.ndarray],
        ys: list[np.ndarray],
        noises: list[np.ndarray | None],
        output_coords: np.ndarray | None,
        input_names: tuple[str, ...],
        discrepancy: Discrepancy,
        noise: str,
        hyperpriors: dict[str, dict[str, Prior]],
        noise_prior: Prior | None = None,
        device: torch.device | None = None,
        correlated: list | None = None,
        field_coords: list[np.ndarray | None] | None = None,
    ):
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.forward = forward
        self.parameters = list(parameters)
        self.campaign_names = list(campaign_names)
        self.L = len(campaign_names)
        self.q = len(parameters)
        self.p = xs[0].shape[1]
        self.m = ys[0].shape[1] if output_coords is None else output_coords.shape[0]
        self.input_names = tuple(input_names)
        self.output_coords = output_coords
        self.discrepancy = discrepancy
        self.noise = noise
        for name in ("zero_at", "zero_slope_at"):
            pts = getattr(discrepancy, name, None)
            if pts is not None and pts.shape[1] != self.p:
                raise ValueError(
                    f"Discrepancy: {name} must have one column per control input "
                    f"({self.p}: {', '.join(input_names) or 'none'}), got shape {pts.shape}"
                )

        # ---------------------------------------------------------------- the data
        # the observed entries, δ's features and the covariance blocks (calib/observations.py)
        # are the model's own attributes: the likelihood plan, predictions and checks read them
        joint = discrepancy.couples_campaigns or forward.emulator
        indep = discrepancy.per_campaign
        obs = Observations(
            xs, ys, noises, output_coords, input_names, joint, indep, field_coords, campaign_names
        )
        for key, value in vars(obs).items():
            setattr(self, key, value)
        self._dsq = obs.delta_sq_dists() if discrepancy.active else None
        if discrepancy.active:
            mask = obs.delta_mask()
            # None when δ links every pair (one block, no pads, one output): skip the product
            self._t_dmask = None if mask.all() else self._tensor(mask, DTYPE)

        # ---------------------------------------------------------------- the unknowns
        # one block per kind of unknown (calib/blocks.py), in the order they sit in u
        cl = self.campaign_names
        self.param_blocks = [
            pooling_block(prm, cl, hyperpriors.get(prm.name)) for prm in self.parameters
        ]
        self.hyperpriors = {
            b.name: b.hyperpriors for b in self.param_blocks if isinstance(b, PartialPooling)
        }
        # correlated groups: their members become CorrelatedMember blocks, and each group's
        # correlation matrix is a block of its own right after the parameters
        corr_blocks = correlate(self.param_blocks, correlated or [])
        blocks: list[Block] = list(self.param_blocks) + corr_blocks
        self.disc_block = None
        if discrepancy.active:
            self.disc_block = DiscrepancyHyper.with_defaults(
                discrepancy, self.y_sd, self.z_obs, self.feature_names, cl
            )
            self.disc_scale_prior = self.disc_block.scale_prior
            self.disc_ls_priors = self.disc_block.lengthscale_priors
            blocks.append(self.disc_block)
        self.noise_block = noise_block(noise, cl, self.y_sd, noise_prior, hyperpriors.get("noise"))
        if hasattr(self.noise_block, "prior"):
            self.noise_prior = self.noise_block.prior
        if hasattr(self.noise_block, "hyperpriors"):
            self.hyperpriors["noise"] = self.noise_block.hyperpriors
        blocks.append(self.noise_block)
        self.blocks = blocks

        self.slots, self.n_dim, self.labels = layout(self.blocks)
        self._prior_plan = PriorPlan(self.blocks, self.slots, self.n_dim, self.L, self.device)
        self._build_likelihood_plan()
        # walkers of the last log_posterior call whose forward model failed or whose
        # covariance could not be factorized; of those, the latter alone
        self.failures = self.factor_failures = 0

    def _build_likelihood_plan(self) -> None:
        """Indices, masks and constants of eqs. 6–7 for the observed entries, built once."""
        idx, pad = self.block_idx, self.block_pad
        self._has_pads = bool(pad.any())
        self._t_pad_flat = self._tensor(pad.reshape(-1))
        self._t_livef = self._tensor(~pad, DTYPE)
        y = self.y_obs[idx]
        y[pad] = 0.0
        self._t_y_blk = self._tensor(y.reshape(-1), DTYPE)  # (B·Nmax)
        self._t_row_campaign = self._tensor(self.row_campaign)
        self._t_blk_campaign = self._tensor(self.obs_campaign[idx])  # (B, Nmax)
        # residual gathers: from the forward mean (W, n_rows, m) (direct mode, predictions)
        full = (self.obs_row * self.M + self.obs_col)[idx].reshape(-1)  # M: _field_coords
        self._t_res_full = self._tensor(full)
        self._t_res_idx = self._t_res_full
        # the constant diagonal of eq. 6: jitter, known noise, 1 at pads
        base = pad.astype(float) + self.jitter
        if self.noise_block.known:
            kv = self.known_var[idx]
            kv[pad] = 0.0
            base = base + kv
        self._t_diag_base = self._tensor(base, DTYPE)  # (B, Nmax)
        self._t_diag_matrix = torch.diag_embed(self._t_diag_base)  # (B, Nmax, Nmax)
        # δ's term of eq. 6 (pooled σ_δℓ, pseudo-observations): calib/_delta_cov.py
        self._delta = DeltaCovariance(self) if self.discrepancy.active else None
        self._pseudo = None if self._delta is None else self._delta.pseudo
        self._diagonal = not self.discrepancy.active and not self.forward.emulator
        self._emu = self._emu_outputs = self._t_emu_idx = self._t_emu_idx_full = None
        if not self.forward.emulator:
            return
        # emulator mode: the outputs it is asked for, the gathers of its covariance
        # (calib/_emulator_plan.py); predictions and checks read them as the model's
        emu = self._emu = EmulatorPlan(self)
        self._emu_outputs, self._t_res_idx = emu.outputs, emu.t_res_idx
        self._t_emu_idx, self._t_emu_idx_full = emu.t_idx, emu.t_idx_full
        self._t_emu_mask = emu.t_mask

    def _tensor(self, value, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A constant of the model (array, list) as a tensor on the model's device."""
        return torch.as_tensor(value, dtype=dtype, device=self.device)

    # -------------------------------------------------------------------- unpacking
    def _prior(
        self, U: torch.Tensor, skip: tuple[int, ...] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Log prior with log-Jacobians (W,), θ ``(W, L, q)`` and noise sd ``(W, L)`` or None
        (``skip``: :meth:`calib.prior_plan.PriorPlan.__call__`)."""
        lp, theta = self._prior_plan(U, skip)
        return lp, theta, self.noise_block.noise_sd(U, self.slots)

    def can_skip_prior(self, cols: tuple[int, ...]) -> bool:
        """Whether ``skip_prior=cols`` is allowed (:meth:`calib.prior_plan.PriorPlan.can_skip`)."""
        return self._prior_plan.can_skip(cols)

    def unpack(self, U: torch.Tensor) -> dict[str, torch.Tensor]:
        """Constrained quantities and the log prior (with log-Jacobians) of ``U (W, n_dim)``.

        Returns a dict with ``theta (W, L, q)``, ``log_prior (W,)``, and where present
        ``disc_scale (W,)`` (or, pooled, ``disc_scales (W, L)``, ``disc_scale_mean``,
        ``disc_scale_sd``), ``disc_ls (W, D)``, ``noise_sd (W, L)``, ``<name>.mean (W,)``,
        ``<name>.scale (W,)``, ``noise.mean``, ``noise.scale``; on the device of ``U``.
        """
        return {k: v.to(U.device) for k, v in self._unpack(U.to(self.device)).items()}

    def _unpack(self, U: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`unpack` of ``U`` on the model's device."""
        lp, theta, noise_sd = self._prior(U)
        out: dict[str, torch.Tensor] = {"theta": theta, "log_prior": lp}
        for block in self.blocks[:-1]:
            out.update(block.quantities(U, self.slots))
        if noise_sd is not None:
            out["noise_sd"] = noise_sd
        out.update(self.noise_block.quantities(U, self.slots))
        return out

    # -------------------------------------------------------------------- likelihood pieces
    def _forward(self, theta: torch.Tensor):
        """Forward mean and covariance at every observation row (an emulator: of the
        observed outputs only), and the failed mask (None in emulator mode: checked only
        when a value is not finite)."""
        W, L = theta.shape[0], self.L
        if self.forward.emulator:
            mean, cov = self._emu.predict(self, theta)
            return mean, cov, None
        n = self.X_rows.shape[0]
        th = theta.expand(W, n, self.q) if L == 1 else theta[:, self._t_row_campaign]
        return self.forward_rows(self.X_rows, th)

    def forward_rows(self, X: np.ndarray, theta: torch.Tensor):
        """``self.forward`` at rows ``X``, and at campaigns' own output coordinates
        (outputs ``m … M−1``, :meth:`calib._field_coords.FieldOutputs.forward`)."""
        f = self.forward
        return f(X, theta) if self.M == self.m else self.field.forward(f, X, theta)

    def _residuals(self, mean: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``y − η`` per block, ``(W, B, Nmax)``, zero at pads."""
        W = mean.shape[0]
        r = self._t_y_blk - mean.reshape(W, -1).index_select(1, index)
        if self._has_pads:
            r = r.masked_fill(self._t_pad_flat, 0.0)
        return r.view(W, self.B, self.Nmax)

    def _noise_diag(self, noise_sd: torch.Tensor) -> torch.Tensor:
        """Noise variances, jitter and 1 at pads on the diagonal, ``(W, B, Nmax)``."""
        var = (noise_sd * noise_sd)[:, self._t_blk_campaign]
        if self._has_pads:
            return torch.addcmul(self._t_diag_base, var, self._t_livef)
        return var + self._t_diag_base

    def _pseudo_factor(self, U: torch.Tensor, noise_sd: torch.Tensor | None):
        """δ's pseudo-observations for the walkers (eq. 4b): factor, ℓ⁻², failed walkers."""
        return self._delta.factor(U, noise_sd)

    def _covariance(
        self,
        U: torch.Tensor,
        noise_sd: torch.Tensor | None,
        emu_cov: torch.Tensor | None,
        emu_index: torch.Tensor | None,
    ) -> torch.Tensor:
        """``C (W, B, Nmax, Nmax)`` of eq. 6 for the walkers' hyperparameters.

        ``emu_cov`` is the emulator's covariance and ``emu_index`` the flat positions of
        its entries ``cov[j_a, i_a, i_b]`` for the blocks' pairs (its layout's gather).
        Without gradients, the sums are formed in place in the kernel's fresh output.
        """
        W = U.shape[0]
        inplace = not torch.is_grad_enabled()
        C = None if self._delta is None else self._delta(U, noise_sd, inplace)
        if emu_cov is not None:
            Ce = emu_cov.reshape(W, -1).index_select(1, emu_index).view(W, self.B, self.Nmax, -1)
            if C is None:
                C = Ce * self._t_emu_mask
            elif inplace:
                C.addcmul_(Ce, self._t_emu_mask)
            else:
                C = torch.addcmul(C, Ce, self._t_emu_mask)
        if C is None:  # neither δ nor an emulator (predictions in direct mode)
            C = torch.zeros(W, self.B, self.Nmax, self.Nmax, dtype=DTYPE, device=U.device)
        if noise_sd is None:  # known noise: a constant diagonal
            return C.add_(self._t_diag_matrix) if inplace else C + self._t_diag_matrix
        diag = self._noise_diag(noise_sd)
        if inplace:
            C.diagonal(dim1=-2, dim2=-1).add_(diag)
            return C
        return C + torch.diag_embed(diag)

    def _gaussian(
        self, C: torch.Tensor, r: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Eq. 7 by one batched Cholesky: log-likelihood (W,) and the failed walkers or None."""
        if torch.is_grad_enabled() and (C.requires_grad or r.requires_grad):
            ll, bad = _GaussianLogLik.apply(C, r, self.N)
            return ll, (bad if bad.any() else None)
        ll, bad, _ = _gaussian_loglik(C, r, self.N)
        return ll, bad

    def _log_likelihood(
        self, U: torch.Tensor, theta: torch.Tensor, noise_sd: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Eq. 7 (δ and the emulator's error integrated out): ll (W,), the forward mean at
        the evaluated entries, the walkers whose forward model failed and those whose
        covariance could not be factorized (each None when none). An emulator's mean is
        not checked here (see :meth:`log_posterior`)."""
        mean, emu_cov, failed = self._forward(theta)
        r = self._residuals(mean, self._t_res_idx)
        if self._diagonal:
            # no δ, no emulator: the covariance is diagonal, no factorization
            var = (
                self._t_diag_base.expand(r.shape)
                if noise_sd is None
                else self._noise_diag(noise_sd)
            )
            quad = (r * r / var).sum(dim=(1, 2))
            logdet = torch.log(var).sum(dim=(1, 2))
            return -0.5 * (quad + logdet + self.N * _LOG_2PI), mean, failed, None
        C = self._covariance(U, noise_sd, emu_cov, self._t_emu_idx)
        ll, bad = self._gaussian(C, r)
        return ll, mean, failed, bad

    # -------------------------------------------------------------------- the posterior
    def log_posterior(
        self, U: torch.Tensor, skip_prior: tuple[int, ...] | None = None
    ) -> torch.Tensor:
        """Log-posterior (up to a constant) of ``U (n_walkers, n_dim)`` -> ``(n_walkers,)``.

        Walkers whose forward model fails, or whose covariance cannot be factorized, get
        ``-inf``; their count is kept in ``self.failures``, the latter's alone in
        ``self.factor_failures``. ``U`` may live on any device:
        it is moved to the model's (differentiably) and the result comes back on ``U``'s,
        so a caller's gradient is on its own device. ``skip_prior``: columns whose prior
        term is left out (:meth:`calib.prior_plan.PriorPlan.can_skip` must hold).
        """
        return self._log_posterior(U.to(self.device), skip_prior).to(U.device)

    def _log_posterior(self, U: torch.Tensor, skip: tuple[int, ...] | None = None) -> torch.Tensor:
        """:meth:`log_posterior` of ``U`` on the model's device."""
        lp, theta, noise_sd = self._prior(U, skip)
        ll, mean, failed, bad = self._log_likelihood(U, theta, noise_sd)
        total = lp + ll
        if failed is None and bad is None and torch.isfinite(total).all():
            self.failures = self.factor_failures = 0
            return total
        # some value is not finite: the forward model failed (non-finite mean), the
        # factorization failed, or the prior is zero; eq. 8's rules, walker by walker
        if self.forward.emulator:  # the emulator's mean at the entries it was asked for
            bad_mean = ~torch.isfinite(mean).flatten(1).all(dim=1)
            failed = bad_mean if failed is None else failed | bad_mean
        ok = torch.isfinite(lp)
        none = torch.zeros_like(ok)
        failed = none if failed is None else failed
        bad = none if bad is None else bad & ~failed
        self.failures = int(((failed | bad) & ok).sum())
        self.factor_failures = int((bad & ok).sum())
        ll = torch.where(failed | bad | ~torch.isfinite(ll), torch.full_like(ll, -math.inf), ll)
        return torch.where(ok, lp + ll, torch.full_like(lp, -math.inf))

    def log_posterior_numpy(self, U: np.ndarray) -> np.ndarray:
        """NumPy in, NumPy out, no gradient: the function emcee calls."""
        with torch.no_grad():
            out = self.log_posterior(torch.as_tensor(np.atleast_2d(U), dtype=DTYPE)).numpy()
        return np.where(np.isnan(out), -np.inf, out)

    # -------------------------------------------------------------------- predictions
    def predictive(
        self,
        U: torch.Tensor,
        X_new: np.ndarray,
        campaign: int | None,
        what: str,
        theta_new: torch.Tensor | None = None,
        disc_scale_new: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Exact Gaussian conditional of δ or of reality at new points, per draw: see
        :func:`calib.conditional.predictive` (docs/model.md, eq. 9)."""
        from .conditional import predictive

        return predictive(self, U, X_new, campaign, what, theta_new, disc_scale_new)

    # -------------------------------------------------------------------- prior draws
    def sample_prior(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draws of ``U (n, n_dim)`` from the prior (for starts and simulation-based checks)."""
        U = np.zeros((n, self.n_dim))
        pos = 0
        for block in self.blocks:
            draws = block.sample_prior(rng, n)
            U[:, pos : pos + draws.shape[1]] = draws
            pos += draws.shape[1]
        return U
