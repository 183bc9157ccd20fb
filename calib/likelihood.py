"""The KOH log-posterior, batched over walkers, with the discrepancy marginalized.

Everything here is a function of tensors: the :class:`Model` is built once from validated
inputs (by :class:`calib.Calibrator`) and then maps unconstrained vectors
``U (n_walkers, n_dim)`` to log-posterior values ``(n_walkers,)``. The formulas are
derived in docs/model.md; the equation numbers below refer to that document.

Observed entries. Every observed value ``y_ℓij`` (row ``i`` of campaign ``ℓ``, output ``j``;
missing values dropped) is one entry ``a`` with features ``z_a = (x_ℓi, s_j)`` for δ.

Blocks. Entries are grouped in blocks that are independent a priori: one block per campaign
when δ is ``"none"`` or ``"independent"`` in direct mode, and a single block of all entries
when δ is ``"shared"`` (one δ couples the campaigns) or an emulator is used (the emulator's
error is one GP over all campaigns' points). Blocks are padded to a common size with unit
diagonal and zero residual, which adds nothing to the quadratic form or the log-determinant,
so one batched Cholesky serves all blocks of all walkers.

Covariance of a block (docs/model.md, eq. 6)::

    C = σ_δ² k(z_a, z_b; ℓ) M_ab  +  C_emu  +  diag(σ_a²)  +  ε I

with ``M_ab`` 1 when δ links entries a and b (same campaign for ``"independent"``; same
output when the outputs have no coordinates), ``ε`` the documented jitter.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .discrepancy import Discrepancy, kernel_from_sq, sq_dists
from .parameters import Parameter
from .priors import HalfNormal, LogNormal, Normal, Prior

__all__ = ["Model", "NOISE_MODES", "SimulatorWarning"]

NOISE_MODES = ("known", "shared", "per_campaign", "hierarchical")
DTYPE = torch.float64
_LOG_2PI = math.log(2.0 * math.pi)


class SimulatorWarning(UserWarning):
    """The forward model failed (raised, NaN or inf) for some walkers; they were rejected."""


@dataclass
class Slot:
    """A named stretch of the unconstrained vector."""

    name: str
    start: int
    size: int
    labels: list[str] = field(default_factory=list)

    @property
    def stop(self) -> int:
        return self.start + self.size


def _std_normal_logpdf(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * z * z - 0.5 * _LOG_2PI


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
    ):
        self.forward = forward
        self.parameters = list(parameters)
        self.campaign_names = list(campaign_names)
        self.L = len(campaign_names)
        self.q = len(parameters)
        self.p = xs[0].shape[1]
        self.m = ys[0].shape[1]
        self.input_names = tuple(input_names)
        self.output_coords = output_coords
        self.discrepancy = discrepancy
        self.noise = noise

        # ---------------------------------------------------------------- the data
        self.xs, self.ys, self.noises = xs, ys, noises
        self.row_offsets = np.cumsum([0] + [x.shape[0] for x in xs])
        self.X_rows = np.concatenate(xs, axis=0)  # (n_rows, p)
        self.row_campaign = np.concatenate([np.full(x.shape[0], l) for l, x in enumerate(xs)])
        obs_row, obs_col, obs_camp, y_obs, known_var = [], [], [], [], []
        for l, y in enumerate(ys):
            i, j = np.nonzero(np.isfinite(y))
            obs_row.append(i + self.row_offsets[l])
            obs_col.append(j)
            obs_camp.append(np.full(i.size, l))
            y_obs.append(y[i, j])
            if noises[l] is not None:
                known_var.append(noises[l][i, j] ** 2)
        self.obs_row = np.concatenate(obs_row)
        self.obs_col = np.concatenate(obs_col)
        self.obs_campaign = np.concatenate(obs_camp)
        self.y_obs = np.concatenate(y_obs)
        self.N = self.y_obs.size
        self.n_obs_campaign = np.bincount(self.obs_campaign, minlength=self.L)
        self.known_var = np.concatenate(known_var) if noise == "known" else None
        self.y_sd = float(np.std(self.y_obs)) if self.N > 1 else 0.0
        if not self.y_sd > 0:
            self.y_sd = max(float(np.mean(np.abs(self.y_obs))), 1.0)
        # jitter ε = 1e-10 · var(y): keeps Cholesky stable, far below any modelled variance
        self.jitter = 1e-10 * self.y_sd**2

        # ---------------------------------------------------------------- δ features
        feats = [self.X_rows[self.obs_row]]
        feat_names = list(self.input_names)
        if output_coords is not None:
            feats.append(output_coords[self.obs_col])
            r = output_coords.shape[1]
            feat_names += ["s"] if r == 1 else [f"s{k}" for k in range(r)]
        self.z_obs = np.concatenate(feats, axis=1)  # (N, D)
        self.feature_names = feat_names
        self.D = self.z_obs.shape[1]
        # outputs without coordinates get independent δ per output (common hyperparameters)
        self.split_outputs = output_coords is None and self.m > 1

        # ---------------------------------------------------------------- blocks
        joint = discrepancy.mode == "shared" or forward.emulator
        groups = (
            [np.arange(self.N)]
            if joint
            else [np.flatnonzero(self.obs_campaign == l) for l in range(self.L)]
        )
        self.B = len(groups)
        self.Nmax = max(g.size for g in groups)
        idx = np.zeros((self.B, self.Nmax), dtype=np.int64)
        pad = np.ones((self.B, self.Nmax), dtype=bool)
        for b, g in enumerate(groups):
            idx[b, : g.size] = g
            pad[b, : g.size] = False
        self.block_idx = idx
        self.block_pad = pad
        self._t_idx = torch.as_tensor(idx)
        self._t_pad = torch.as_tensor(pad)
        self._t_padf = torch.as_tensor(pad, dtype=DTYPE)
        self._t_y = torch.as_tensor(self.y_obs, dtype=DTYPE)
        self._t_obs_campaign = torch.as_tensor(self.obs_campaign)
        self._t_row_campaign = torch.as_tensor(self.row_campaign)
        self._t_obs_flat = torch.as_tensor(self.obs_row * self.m + self.obs_col)
        if self.known_var is not None:
            kv = self.known_var[idx]
            kv[pad] = 0.0
            self._t_known_var = torch.as_tensor(kv, dtype=DTYPE)
        if discrepancy.active:
            z = self.z_obs[idx]  # (B, Nmax, D)
            self._t_dsq = torch.as_tensor(
                np.stack([sq_dists(z[b], z[b]) for b in range(self.B)], axis=1), dtype=DTYPE
            )  # (D, B, Nmax, Nmax)
            mask = ~pad[:, :, None] & ~pad[:, None, :]
            if discrepancy.mode == "independent":
                c = self.obs_campaign[idx]
                mask &= c[:, :, None] == c[:, None, :]
            if self.split_outputs:
                j = self.obs_col[idx]
                mask &= j[:, :, None] == j[:, None, :]
            # None when δ links every pair (one block, no pads, one output): skip the product
            self._t_dmask = None if mask.all() else torch.as_tensor(mask, dtype=DTYPE)

        # ---------------------------------------------------------------- priors
        self.hyperpriors = {}
        for prm in self.parameters:
            if prm.pooling == "partial":
                hp = dict(prm.default_hyperpriors()) if prm.prior is not None else {}
                hp.update(hyperpriors.get(prm.name, {}))
                self.hyperpriors[prm.name] = hp
        if discrepancy.active:
            self.disc_scale_prior = discrepancy.scale_prior or HalfNormal(self.y_sd)
            if discrepancy.lengthscale_prior is not None:
                self.disc_ls_priors = [discrepancy.lengthscale_prior] * self.D
            else:
                rng = np.ptp(self.z_obs, axis=0) if self.N > 0 else np.ones(self.D)
                self.disc_ls_priors = [
                    LogNormal(math.log((r if r > 0 else 1.0) / 2.0), 1.0) for r in rng
                ]
        if noise in ("shared", "per_campaign"):
            self.noise_prior = noise_prior or HalfNormal(self.y_sd)
        if noise == "hierarchical":
            hp = {"mean": Normal(math.log(self.y_sd / 2.0), 1.5), "scale": HalfNormal(1.0)}
            hp.update(hyperpriors.get("noise", {}))
            self.hyperpriors["noise"] = hp

        self._build_layout()
        self.failures = 0  # forward-model failures seen by the last log_posterior call

    # -------------------------------------------------------------------- layout
    def _build_layout(self) -> None:
        slots: list[Slot] = []
        pos = 0

        def add(name: str, labels: list[str]) -> None:
            nonlocal pos
            slots.append(Slot(name, pos, len(labels), labels))
            pos += len(labels)

        cl = self.campaign_names
        for prm in self.parameters:
            n = prm.name
            if prm.pooling == "complete":
                add(n, [f"{n} (unconstrained)"])
            elif prm.pooling == "none":
                add(n, [f"{n}[{c}] (unconstrained)" for c in cl])
            else:
                add(f"{n}.mean", [f"{n}.mean"])
                add(f"{n}.logscale", [f"log {n}.scale"])
                add(f"{n}.z", [f"{n}.z[{c}]" for c in cl])
        if self.discrepancy.active:
            add("discrepancy.logscale", ["log discrepancy.scale"])
            add(
                "discrepancy.loglengthscale",
                [f"log discrepancy.lengthscale[{f}]" for f in self.feature_names],
            )
        if self.noise == "shared":
            add("noise.logsd", ["log noise.sd"])
        elif self.noise == "per_campaign":
            add("noise.logsd", [f"log noise.sd[{c}]" for c in cl])
        elif self.noise == "hierarchical":
            add("noise.mean", ["noise.mean"])
            add("noise.logscale", ["log noise.scale"])
            add("noise.z", [f"noise.z[{c}]" for c in cl])
        self.slots = {s.name: s for s in slots}
        self.n_dim = pos
        self.labels = [lab for s in slots for lab in s.labels]

    def _u(self, U: torch.Tensor, name: str) -> torch.Tensor:
        s = self.slots[name]
        return U[:, s.start : s.stop]

    # -------------------------------------------------------------------- unpacking
    def unpack(self, U: torch.Tensor) -> dict[str, torch.Tensor]:
        """Constrained quantities and the log prior (with log-Jacobians) of ``U (W, n_dim)``.

        Returns a dict with ``theta (W, L, q)``, ``log_prior (W,)``, and where present
        ``disc_scale (W,)``, ``disc_ls (W, D)``, ``noise_sd (W, L)``, ``<name>.mean (W,)``,
        ``<name>.scale (W,)``, ``noise.mean``, ``noise.scale``.
        """
        W = U.shape[0]
        lp = torch.zeros(W, dtype=U.dtype, device=U.device)
        out: dict[str, torch.Tensor] = {}
        thetas = []
        for prm in self.parameters:
            n = prm.name
            if prm.pooling in ("complete", "none"):
                u = self._u(U, n)  # (W, 1) or (W, L)
                th, logdet = prm.to_constrained(u)
                lp = lp + (prm.log_prior(th) + logdet).sum(dim=1)
                thetas.append(th.expand(W, self.L))
            else:
                # non-centred: g(θ_ℓ) = μ + τ z_ℓ (Papaspiliopoulos et al. 2007; Betancourt &
                # Girolami 2015); τ = exp(v) contributes the Jacobian v
                mu = self._u(U, f"{n}.mean")[:, 0]
                v = self._u(U, f"{n}.logscale")[:, 0]
                z = self._u(U, f"{n}.z")
                tau = torch.exp(v)
                hp = self.hyperpriors[n]
                lp = lp + hp["mean"].log_prob(mu) + hp["scale"].log_prob(tau) + v
                lp = lp + _std_normal_logpdf(z).sum(dim=1)
                th, _ = prm.to_constrained(mu[:, None] + tau[:, None] * z)
                out[f"{n}.mean"], out[f"{n}.scale"] = mu, tau
                thetas.append(th)
        out["theta"] = torch.stack(thetas, dim=-1)  # (W, L, q)
        if self.discrepancy.active:
            v = self._u(U, "discrepancy.logscale")[:, 0]
            s = torch.exp(v)
            lp = lp + self.disc_scale_prior.log_prob(s) + v
            vl = self._u(U, "discrepancy.loglengthscale")
            ls = torch.exp(vl)
            for d, pr in enumerate(self.disc_ls_priors):
                lp = lp + pr.log_prob(ls[:, d]) + vl[:, d]
            out["disc_scale"], out["disc_ls"] = s, ls
        if self.noise in ("shared", "per_campaign"):
            v = self._u(U, "noise.logsd")
            sd = torch.exp(v)
            lp = lp + (self.noise_prior.log_prob(sd) + v).sum(dim=1)
            out["noise_sd"] = sd.expand(W, self.L)
        elif self.noise == "hierarchical":
            # log σ_ℓ = m + s z_ℓ: variance components pooled, non-centred
            mn = self._u(U, "noise.mean")[:, 0]
            v = self._u(U, "noise.logscale")[:, 0]
            z = self._u(U, "noise.z")
            s = torch.exp(v)
            hp = self.hyperpriors["noise"]
            lp = lp + hp["mean"].log_prob(mn) + hp["scale"].log_prob(s) + v
            lp = lp + _std_normal_logpdf(z).sum(dim=1)
            out["noise_sd"] = torch.exp(mn[:, None] + s[:, None] * z)
            out["noise.mean"], out["noise.scale"] = mn, s
        out["log_prior"] = lp
        return out

    # -------------------------------------------------------------------- likelihood pieces
    def forward_rows(self, theta: torch.Tensor):
        """Forward model at every observation row: θ ``(W, L, q)`` -> mean ``(W, n_rows, m)``,
        covariance ``(W, m, n_rows, n_rows)`` or None, failed ``(W,)``."""
        return self.forward(self.X_rows, theta[:, self._t_row_campaign, :])

    def block_covariance(
        self, parts: dict[str, torch.Tensor], emu_cov: torch.Tensor | None
    ) -> torch.Tensor:
        """``C (W, B, Nmax, Nmax)`` of eq. 6 for the walkers' hyperparameters."""
        diag = self._diag_var(parts)  # (W, B, Nmax): noise, jitter, 1 at pads
        W = diag.shape[0]
        inplace = not torch.is_grad_enabled()
        if self.discrepancy.active:
            C = kernel_from_sq(
                self.discrepancy.kernel, self._t_dsq, parts["disc_scale"], parts["disc_ls"]
            )
            if self._t_dmask is not None:
                C = C.mul_(self._t_dmask) if inplace else C * self._t_dmask
        else:
            C = torch.zeros(W, self.B, self.Nmax, self.Nmax, dtype=diag.dtype)
        if emu_cov is not None:
            C = C + self._emulator_block(emu_cov)
        if inplace:
            C.diagonal(dim1=-2, dim2=-1).add_(diag)
            return C
        return C + torch.diag_embed(diag)

    def _emulator_block(self, cov: torch.Tensor) -> torch.Tensor:
        """Emulator covariance between observed entries: cov[j_a, i_a, i_b]·[j_a = j_b]."""
        rows = torch.as_tensor(self.obs_row[self.block_idx])  # (B, Nmax)
        cols = torch.as_tensor(self.obs_col[self.block_idx])
        Ce = cov[:, cols[:, :, None], rows[:, :, None], rows[:, None, :]]  # (W, B, Nmax, Nmax)
        same = (
            (cols[:, :, None] == cols[:, None, :])
            & ~self._t_pad[:, :, None]
            & ~self._t_pad[:, None, :]
        )
        return Ce * same.to(Ce.dtype)

    def residuals(self, mean_rows: torch.Tensor) -> torch.Tensor:
        """``y − η`` per block, ``(W, B, Nmax)``, zero at pads."""
        W = mean_rows.shape[0]
        mean_obs = mean_rows.reshape(W, -1)[:, self._t_obs_flat]  # (W, N)
        r = (self._t_y - mean_obs)[:, self._t_idx]
        return r.masked_fill(self._t_pad, 0.0)

    def log_likelihood_parts(
        self, parts: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Marginal log-likelihood with δ integrated out (eq. 7), and the failed mask."""
        mean, emu_cov, failed = self.forward_rows(parts["theta"])
        r = self.residuals(mean)
        if not self.discrepancy.active and emu_cov is None:
            # diagonal covariance: no Cholesky needed
            C_diag = self._diag_var(parts)
            quad = (r * r / C_diag).sum(dim=(1, 2))
            logdet = torch.log(C_diag).sum(dim=(1, 2))
        else:
            C = self.block_covariance(parts, emu_cov)
            Lc, bad = self._cholesky(C)
            failed = failed | bad
            v = torch.linalg.solve_triangular(Lc, r.unsqueeze(-1), upper=False).squeeze(-1)
            quad = (v * v).sum(dim=(1, 2))
            logdet = 2.0 * torch.log(torch.diagonal(Lc, dim1=-2, dim2=-1)).sum(dim=(1, 2))
        ll = -0.5 * (quad + logdet + self.N * _LOG_2PI)
        return ll, failed

    def _diag_var(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        W = parts["theta"].shape[0]
        diag = self._t_padf.expand(W, -1, -1) + self.jitter
        if self.noise == "known":
            return diag + self._t_known_var
        sd = parts["noise_sd"]
        camp = self._t_obs_campaign[self._t_idx]
        return diag + (sd * sd)[:, camp] * (1.0 - self._t_padf)

    def _cholesky(self, C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched Cholesky; a failed factorization is retried with 1e-6·mean(diag) added,
        then marks the walker failed (its log-posterior becomes −inf)."""
        Lc, info = torch.linalg.cholesky_ex(C)
        bad = info != 0  # (W, B)
        if bad.any():
            scale = torch.diagonal(C, dim1=-2, dim2=-1).mean(dim=-1)  # (W, B)
            eye = torch.eye(C.shape[-1], dtype=C.dtype, device=C.device)
            C2 = C + (1e-6 * scale * bad)[..., None, None] * eye
            Lc, info = torch.linalg.cholesky_ex(C2)
            bad = info != 0
        bad_w = bad.any(dim=1)
        if bad_w.any():
            eye = torch.eye(C.shape[-1], dtype=C.dtype, device=C.device)
            Lc = torch.where(bad[..., None, None], eye.expand_as(Lc), Lc)
        return Lc, bad_w

    # -------------------------------------------------------------------- the posterior
    def log_posterior(self, U: torch.Tensor) -> torch.Tensor:
        """Log-posterior (up to a constant) of ``U (n_walkers, n_dim)`` -> ``(n_walkers,)``.

        Walkers whose forward model fails, or whose covariance cannot be factorized, get
        ``-inf``; their count is kept in ``self.failures``.
        """
        parts = self.unpack(U)
        lp = parts["log_prior"]
        ok = torch.isfinite(lp)
        ll, failed = self.log_likelihood_parts(parts)
        self.failures = int((failed & ok).sum())
        ll = torch.where(failed | ~torch.isfinite(ll), torch.full_like(ll, -math.inf), ll)
        return torch.where(ok, lp + ll, torch.full_like(lp, -math.inf))

    def log_posterior_numpy(self, U: np.ndarray) -> np.ndarray:
        """NumPy in, NumPy out, no gradient: the function emcee calls."""
        with torch.no_grad():
            out = self.log_posterior(torch.as_tensor(np.atleast_2d(U), dtype=DTYPE)).numpy()
        return np.where(np.isnan(out), -np.inf, out)

    def warn_failures(self, count: int, total: int) -> None:
        if count:
            warnings.warn(
                f"the forward model failed (raised, or returned NaN/inf) or the covariance was "
                f"not positive definite for {count} of {total} evaluations; those got "
                f"log-posterior -inf",
                SimulatorWarning,
                stacklevel=3,
            )

    # -------------------------------------------------------------------- predictions
    def predictive(
        self,
        U: torch.Tensor,
        X_new: np.ndarray,
        campaign: int | None,
        what: str,
        theta_new: torch.Tensor | None = None,
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

        Returns
        -------
        mean : (S, n*, m)
        cov : (S, n*·m, n*·m), entries ordered row-major over (point, output)
        failed : (S,) draws whose forward model or factorization failed
        """
        parts = self.unpack(U)
        theta = parts["theta"]
        S = theta.shape[0]
        n_new = X_new.shape[0]
        m = self.m
        th = theta[:, campaign, :] if campaign is not None else theta_new
        n_rows = self.X_rows.shape[0]
        Theta = torch.cat(
            [theta[:, self._t_row_campaign, :], th[:, None, :].expand(S, n_new, self.q)], dim=1
        )
        mean_all, cov_all, failed = self.forward(np.concatenate([self.X_rows, X_new]), Theta)
        emu_obs = None if cov_all is None else cov_all[..., :n_rows, :n_rows]
        r = self.residuals(mean_all[:, :n_rows])
        C = self.block_covariance(parts, emu_obs)
        Lc, bad = self._cholesky(C)
        failed = failed | bad

        # the new entries (point i*, output j), row-major
        ii = np.repeat(np.arange(n_new), m)
        jj = np.tile(np.arange(m), n_new)
        n_star = n_new * m
        reality = what == "reality"
        if reality:
            mean = mean_all[:, n_rows:, :].reshape(S, n_star).clone()
        else:
            mean = torch.zeros(S, n_star, dtype=DTYPE)
        prior = torch.zeros(S, n_star, n_star, dtype=DTYPE)
        b = 0 if self.B == 1 else campaign  # the block that informs this campaign, if any
        cross = None
        if b is not None:
            cross = torch.zeros(S, n_star, self.Nmax, dtype=DTYPE)
            idx = self.block_idx[b]
            live = ~self.block_pad[b]
        if self.discrepancy.active:
            feats = [X_new[ii]]
            if self.output_coords is not None:
                feats.append(self.output_coords[jj])
            z_new = np.concatenate(feats, axis=1)
            kind, sc, ls = self.discrepancy.kernel, parts["disc_scale"], parts["disc_ls"]
            same_out = (
                (jj[:, None] == jj[None, :])
                if self.split_outputs
                else np.ones((n_star, n_star), bool)
            )
            K = kernel_from_sq(kind, torch.as_tensor(sq_dists(z_new, z_new), dtype=DTYPE), sc, ls)
            prior = prior + K * torch.as_tensor(same_out, dtype=DTYPE)
            if cross is not None:
                mask = np.broadcast_to(live, (n_star, self.Nmax)).copy()
                if self.discrepancy.mode == "independent":
                    mask &= self.obs_campaign[idx][None, :] == (
                        -1 if campaign is None else campaign
                    )
                if self.split_outputs:
                    mask &= jj[:, None] == self.obs_col[idx][None, :]
                Kx = kernel_from_sq(
                    kind, torch.as_tensor(sq_dists(z_new, self.z_obs[idx]), dtype=DTYPE), sc, ls
                )
                cross = cross + Kx * torch.as_tensor(mask, dtype=DTYPE)
        if reality and cov_all is not None:
            jt, it = torch.as_tensor(jj), torch.as_tensor(ii + n_rows)
            E = cov_all[:, jt[:, None], it[:, None], it[None, :]]
            prior = prior + E * torch.as_tensor(jj[:, None] == jj[None, :], dtype=DTYPE)
            if cross is not None:
                ro = torch.as_tensor(self.obs_row[idx])
                Ex = cov_all[:, jt[:, None], it[:, None], ro[None, :]]
                mk = (jj[:, None] == self.obs_col[idx][None, :]) & live[None, :]
                cross = cross + Ex * torch.as_tensor(mk, dtype=DTYPE)
        if cross is not None:
            Lb = Lc[:, b]
            v = torch.linalg.solve_triangular(Lb, r[:, b].unsqueeze(-1), upper=False)  # (S, N, 1)
            A = torch.linalg.solve_triangular(Lb, cross.transpose(1, 2), upper=False)  # (S, N, n*)
            mean = mean + (A.transpose(1, 2) @ v).squeeze(-1)
            prior = prior - A.transpose(1, 2) @ A
        cov = 0.5 * (prior + prior.transpose(1, 2))
        return mean.reshape(S, n_new, m), cov, failed

    # -------------------------------------------------------------------- prior draws
    def sample_prior(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draws of ``U (n, n_dim)`` from the prior (for starts and simulation-based checks)."""
        U = np.zeros((n, self.n_dim))

        def put(name: str, values: np.ndarray) -> None:
            s = self.slots[name]
            U[:, s.start : s.stop] = np.asarray(values).reshape(n, s.size)

        for prm in self.parameters:
            if prm.pooling == "partial":
                hp = self.hyperpriors[prm.name]
                put(f"{prm.name}.mean", hp["mean"].sample(rng, n))
                put(f"{prm.name}.logscale", np.log(np.maximum(hp["scale"].sample(rng, n), 1e-300)))
                put(f"{prm.name}.z", rng.standard_normal((n, self.L)))
            else:
                k = 1 if prm.pooling == "complete" else self.L
                put(prm.name, prm.to_unconstrained(_truncated_draws(prm, rng, (n, k))))
        if self.discrepancy.active:
            put(
                "discrepancy.logscale",
                np.log(np.maximum(self.disc_scale_prior.sample(rng, n), 1e-300)),
            )
            ls = (
                np.column_stack([pr.sample(rng, n) for pr in self.disc_ls_priors])
                if self.D
                else np.zeros((n, 0))
            )
            put("discrepancy.loglengthscale", np.log(np.maximum(ls, 1e-300)))
        if self.noise in ("shared", "per_campaign"):
            k = self.slots["noise.logsd"].size
            put("noise.logsd", np.log(np.maximum(self.noise_prior.sample(rng, (n, k)), 1e-300)))
        elif self.noise == "hierarchical":
            hp = self.hyperpriors["noise"]
            put("noise.mean", hp["mean"].sample(rng, n))
            put("noise.logscale", np.log(np.maximum(hp["scale"].sample(rng, n), 1e-300)))
            put("noise.z", rng.standard_normal((n, self.L)))
        return U


def _truncated_draws(prm: Parameter, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Prior draws truncated to the bounds, by inverse CDF, kept off the bounds themselves."""
    dist = prm.prior.scipy()
    a = -math.inf if prm.lower is None else prm.lower
    b = math.inf if prm.upper is None else prm.upper
    fa, fb = float(dist.cdf(a)), float(dist.cdf(b))
    u = rng.uniform(0.001, 0.999, size=size)
    return dist.ppf(fa + (fb - fa) * u)
