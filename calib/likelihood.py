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
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .discrepancy import Discrepancy, KernelOnDistances, kernel_from_sq, sq_dists
from .parameters import Parameter, StackedTransform
from .priors import HalfNormal, LogNormal, Normal, Prior, StackedLogProb, stack

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


@dataclass
class _PriorGroup:
    """Columns of U that share a bijection kind and a prior class: one vectorized term."""

    cols: list[int]
    transform: StackedTransform
    log_prob: StackedLogProb
    theta: bool  # the columns are θ of completely or unpooled parameters


def _transform_range(kind: str, lower: float | None, upper: float | None) -> tuple[float, float]:
    """The closed range of θ = g⁻¹(u) over u ∈ [−∞, ∞] (θ of kind "both" is clamped)."""
    if kind == "both":
        return lower, upper
    if kind == "lower":
        return lower, math.inf
    if kind == "upper":
        return -math.inf, upper
    return -math.inf, math.inf


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
    ):
        self.device = torch.device("cpu") if device is None else torch.device(device)
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
        self._dsq = None
        if discrepancy.active:
            z = self.z_obs[idx]  # (B, Nmax, D)
            self._dsq = np.stack([sq_dists(z[b], z[b]) for b in range(self.B)], axis=1)
            mask = ~pad[:, :, None] & ~pad[:, None, :]
            if discrepancy.mode == "independent":
                c = self.obs_campaign[idx]
                mask &= c[:, :, None] == c[:, None, :]
            if self.split_outputs:
                j = self.obs_col[idx]
                mask &= j[:, :, None] == j[:, None, :]
            # None when δ links every pair (one block, no pads, one output): skip the product
            self._t_dmask = None if mask.all() else self._tensor(mask, DTYPE)

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
        self._build_prior_plan()
        self._build_likelihood_plan()
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
                # the slot holds u_ℓ = g(θ_ℓ) when centred, z_ℓ = (u_ℓ − μ)/τ when not
                v = "u" if prm.centered else "z"
                add(f"{n}.z", [f"{n}.{v}[{c}]" for c in cl])
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

    # -------------------------------------------------------------------- static plans
    def _build_prior_plan(self) -> None:
        """Group the columns of U for the vectorized transforms and prior terms of (2)–(5).

        Every column has a bijection kind and a prior on its constrained value; columns
        with the same kind and prior class (and role) form one :class:`_PriorGroup`, whose
        term is one :class:`StackedTransform` and one :func:`calib.priors.stack`
        evaluation. The constant parts of all terms are summed here once.
        """
        std = Normal(0.0, 1.0)
        entries = []  # (column, kind, lower, upper, prior, is θ)

        def scales(name: str, priors: list[Prior]) -> None:
            # a sampled log: x = exp(u), log-Jacobian u
            s = self.slots[name]
            entries.extend(
                (s.start + k, "lower", 0.0, None, pr, False) for k, pr in enumerate(priors)
            )

        def plain(name: str, prior: Prior) -> None:
            s = self.slots[name]
            entries.extend(
                (c, "identity", None, None, prior, False) for c in range(s.start, s.stop)
            )

        for prm in self.parameters:
            n = prm.name
            if prm.pooling in ("complete", "none"):
                s = self.slots[n]
                for c in range(s.start, s.stop):
                    entries.append((c, prm.kind, prm.lower, prm.upper, prm.prior, True))
            else:
                hp = self.hyperpriors[n]
                plain(f"{n}.mean", hp["mean"])
                scales(f"{n}.logscale", [hp["scale"]])
                if not prm.centered:
                    plain(f"{n}.z", std)  # centred: N(u; μ, τ²) is added in _prior
        if self.discrepancy.active:
            scales("discrepancy.logscale", [self.disc_scale_prior])
            scales("discrepancy.loglengthscale", self.disc_ls_priors)
        if self.noise in ("shared", "per_campaign"):
            scales("noise.logsd", [self.noise_prior] * self.slots["noise.logsd"].size)
        elif self.noise == "hierarchical":
            hp = self.hyperpriors["noise"]
            plain("noise.mean", hp["mean"])
            scales("noise.logscale", [hp["scale"]])
            plain("noise.z", std)

        keyed: dict[tuple, list] = {}
        for c, kind, lo, hi, prior, is_theta in entries:
            r_lo, r_hi = _transform_range(kind, lo, hi)
            s_lo, s_hi = prior.support
            inside = s_lo <= r_lo and r_hi <= s_hi  # no support check needed
            keyed.setdefault((kind, type(prior), inside, is_theta), []).append((c, lo, hi, prior))
        groups = []
        for (kind, _, inside, is_theta), cols in keyed.items():
            groups.append(
                _PriorGroup(
                    cols=[c for c, *_ in cols],
                    transform=StackedTransform(
                        kind,
                        [lo for _, lo, _, _ in cols],
                        [hi for *_, hi, _ in cols],
                        device=self.device,
                    ),
                    log_prob=stack([pr for *_, pr in cols], inside=inside, device=self.device),
                    theta=is_theta,
                )
            )
        self._prior_groups = groups
        self._prior_const = sum(g.transform.const + g.log_prob.const for g in groups)
        # the groups' columns as one split of U (one view per group and a single backward
        # node), after a permutation when a group's columns are not side by side
        order = [c for g in groups for c in g.cols]
        self._prior_perm = None if order == list(range(self.n_dim)) else self._tensor(order)
        self._prior_sizes = [len(g.cols) for g in groups]

        # θ (W, L, q) from the θ groups' outputs, concatenated in group order
        pos = {c: k for k, c in enumerate(c for g in groups if g.theta for c in g.cols)}
        fixed = [j for j, prm in enumerate(self.parameters) if prm.pooling != "partial"]
        idx = np.zeros((self.L, len(fixed)), dtype=np.int64)
        for k, j in enumerate(fixed):
            s = self.slots[self.parameters[j].name]
            for l in range(self.L):
                idx[l, k] = pos[s.start + (l if s.size > 1 else 0)]
        self._t_theta_idx = self._tensor(idx)
        # θ in group order, the same for every campaign: a view instead of a gather
        self._theta_view = bool((idx == np.arange(len(fixed))).all())
        partial = [j for j, prm in enumerate(self.parameters) if prm.pooling == "partial"]
        self._partial = None
        if partial:
            # g(θ_ℓ) = μ + τ z_ℓ for all partially pooled parameters at once, then θ by kind
            names = [self.parameters[j].name for j in partial]
            by_kind: dict[str, list[int]] = {}
            for k, j in enumerate(partial):
                by_kind.setdefault(self.parameters[j].kind, []).append(k)
            kinds = [
                (
                    self._tensor(ks),
                    StackedTransform(
                        kind,
                        [self.parameters[partial[k]].lower for k in ks],
                        [self.parameters[partial[k]].upper for k in ks],
                        device=self.device,
                    ),
                )
                for kind, ks in by_kind.items()
            ]
            order = fixed + [partial[k] for ks, _ in kinds for k in ks.tolist()]
            self._partial = {
                "mu": self._tensor([self.slots[f"{n}.mean"].start for n in names]),
                "v": self._tensor([self.slots[f"{n}.logscale"].start for n in names]),
                "z": self._tensor(
                    [[self.slots[f"{n}.z"].start + l for n in names] for l in range(self.L)]
                ),
                "kinds": kinds,
                "perm": self._tensor(np.argsort(order)),
            }
            c = [self.parameters[j].centered for j in partial]
            self._partial["centred"] = (
                None if not any(c) else self._tensor(c)  # (q_partial,) bool
            )
            self._partial["all_centred"] = all(c)

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
        full = (self.obs_row * self.m + self.obs_col)[idx].reshape(-1)
        self._t_res_full = self._tensor(full)
        self._t_res_idx = self._t_res_full
        # the constant diagonal of eq. 6: jitter, known noise, 1 at pads
        base = pad.astype(float) + self.jitter
        if self.noise == "known":
            kv = self.known_var[idx]
            kv[pad] = 0.0
            base = base + kv
        self._t_diag_base = self._tensor(base, DTYPE)  # (B, Nmax)
        self._t_diag_matrix = torch.diag_embed(self._t_diag_base)  # (B, Nmax, Nmax)
        self._kernel = None
        if self.discrepancy.active:
            self._kernel = KernelOnDistances(self.discrepancy.kernel, self._dsq, self.device)
            s = self.slots["discrepancy.logscale"]
            self._sl_disc_scale = slice(s.start, s.stop)
            s = self.slots["discrepancy.loglengthscale"]
            self._sl_disc_ls = slice(s.start, s.stop)
        self._diagonal = not self.discrepancy.active and not self.forward.emulator
        self._emu_outputs = self._t_emu_idx = self._t_emu_idx_full = None
        if not self.forward.emulator:
            return
        # emulator mode: the emulator is asked for the outputs with observations only. It
        # is evaluated at every row, as the full prediction is: a GP's mean k(x*, X)α
        # carries rounding errors of ~1e-10 relative (α is large where the runs are dense)
        # that change with the shape of its matrix products, so leaving out rows without
        # observations would change the values at that level for a negligible saving.
        cols = np.unique(self.obs_col)
        nr, nc = len(self.X_rows), cols.size
        self._emu_outputs = None if nc == self.m else tuple(int(c) for c in cols)
        self._t_emu_x = self._tensor(self.X_rows, DTYPE)  # (n_rows, p)
        ci = np.searchsorted(cols, self.obs_col)
        self._t_res_idx = self._tensor((self.obs_row * nc + ci)[idx].reshape(-1))
        self._t_emu_idx = self._emulator_gather(self.obs_row, ci, nr)
        self._t_emu_idx_full = self._emulator_gather(self.obs_row, self.obs_col, nr)
        # C_η couples entries of one output only (the contract's per-output covariance)
        j = self.obs_col[idx]
        same = (j[:, :, None] == j[:, None, :]) & ~pad[:, :, None] & ~pad[:, None, :]
        self._t_emu_mask = self._tensor(same, DTYPE)  # (B, Nmax, Nmax)

    def _emulator_gather(self, ri: np.ndarray, ci: np.ndarray, nr: int) -> torch.Tensor:
        """Flat positions of cov[j_a, i_a, i_b] in a covariance ``(W, ·, nr, nr)``, for
        every pair (a, b) of every block (pads point anywhere; they are masked)."""
        r, c = ri[self.block_idx], ci[self.block_idx]  # (B, Nmax)
        e = c[:, :, None] * nr * nr + r[:, :, None] * nr + r[:, None, :]
        return self._tensor(e.reshape(-1))

    def _tensor(self, value, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A constant of the model (array, list) as a tensor on the model's device."""
        return torch.as_tensor(value, dtype=dtype, device=self.device)

    # -------------------------------------------------------------------- unpacking
    def _prior(self, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Log prior with log-Jacobians (W,), θ ``(W, L, q)`` and noise sd ``(W, L)`` or None."""
        W = U.shape[0]
        terms, thetas = [], []
        cols = U if self._prior_perm is None else U[:, self._prior_perm]
        for g, u in zip(self._prior_groups, cols.split(self._prior_sizes, dim=1)):
            x, logdet = g.transform(u)
            t = g.log_prob(x)
            t = logdet if t is None else (t if logdet is None else t + logdet)
            if t is not None:
                terms.append(t)
            if g.theta:
                thetas.append(x)
        if not terms:
            lp = torch.full((W,), self._prior_const, dtype=U.dtype, device=U.device)
        else:
            lp = (terms[0] if len(terms) == 1 else torch.cat(terms, dim=1)).sum(dim=1)
            lp = lp + self._prior_const
        theta = None
        if thetas:
            x = thetas[0] if len(thetas) == 1 else torch.cat(thetas, dim=1)
            if self._theta_view:
                theta = x.unsqueeze(1).expand(W, self.L, x.shape[1])
            else:
                theta = x[:, self._t_theta_idx]  # (W, L, q_fixed)
        if self._partial is not None:
            pp = self._partial
            # non-centred: g(θ_ℓ) = μ + τ z_ℓ; centred: g(θ_ℓ) = u_ℓ ~ N(μ, τ²)
            # (Papaspiliopoulos, Roberts & Sköld 2007; docs/model.md §2)
            v = U[:, pp["v"]].unsqueeze(1)
            tau = torch.exp(v)
            mu = U[:, pp["mu"]].unsqueeze(1)
            x = U[:, pp["z"]]  # (W, L, q_partial)
            g = mu + tau * x
            if pp["centred"] is not None:
                c = pp["centred"]
                z = (x - mu) / tau
                t = -0.5 * z * z - v - 0.5 * _LOG_2PI  # log N(u; μ, τ²)
                if pp["all_centred"]:
                    g = x
                else:
                    g = torch.where(c, x, g)
                    t = t * c
                lp = lp + t.sum(dim=(1, 2))
            parts = [] if theta is None else [theta]
            parts += [tr.theta(g[..., ks]) for ks, tr in pp["kinds"]]
            theta = torch.cat(parts, dim=-1)[..., pp["perm"]]
        return lp, theta, self._noise_sd(U)

    def _noise_sd(self, U: torch.Tensor) -> torch.Tensor | None:
        if self.noise in ("shared", "per_campaign"):
            s = self.slots["noise.logsd"]
            return torch.exp(U[:, s.start : s.stop]).expand(U.shape[0], self.L)
        if self.noise == "hierarchical":
            # log σ_ℓ = m + s z_ℓ: variance components pooled, non-centred
            m, v, z = (self._u(U, n) for n in ("noise.mean", "noise.logscale", "noise.z"))
            return torch.exp(m + torch.exp(v) * z)
        return None

    def unpack(self, U: torch.Tensor) -> dict[str, torch.Tensor]:
        """Constrained quantities and the log prior (with log-Jacobians) of ``U (W, n_dim)``.

        Returns a dict with ``theta (W, L, q)``, ``log_prior (W,)``, and where present
        ``disc_scale (W,)``, ``disc_ls (W, D)``, ``noise_sd (W, L)``, ``<name>.mean (W,)``,
        ``<name>.scale (W,)``, ``noise.mean``, ``noise.scale``; on the device of ``U``.
        """
        return {k: v.to(U.device) for k, v in self._unpack(U.to(self.device)).items()}

    def _unpack(self, U: torch.Tensor) -> dict[str, torch.Tensor]:
        """:meth:`unpack` of ``U`` on the model's device."""
        lp, theta, noise_sd = self._prior(U)
        out: dict[str, torch.Tensor] = {"theta": theta, "log_prior": lp}
        for prm in self.parameters:
            if prm.pooling == "partial":
                n = prm.name
                out[f"{n}.mean"] = self._u(U, f"{n}.mean")[:, 0]
                out[f"{n}.scale"] = torch.exp(self._u(U, f"{n}.logscale")[:, 0])
        if self.discrepancy.active:
            out["disc_scale"] = torch.exp(self._u(U, "discrepancy.logscale")[:, 0])
            out["disc_ls"] = torch.exp(self._u(U, "discrepancy.loglengthscale"))
        if noise_sd is not None:
            out["noise_sd"] = noise_sd
        if self.noise == "hierarchical":
            out["noise.mean"] = self._u(U, "noise.mean")[:, 0]
            out["noise.scale"] = torch.exp(self._u(U, "noise.logscale")[:, 0])
        return out

    # -------------------------------------------------------------------- likelihood pieces
    def _forward(self, theta: torch.Tensor):
        """Forward mean and covariance at every observation row (an emulator: of the
        observed outputs only), and the failed mask (None in emulator mode: checked only
        when a value is not finite)."""
        W, L = theta.shape[0], self.L
        if self.forward.emulator:
            n = self._t_emu_x.shape[0]
            th = theta.expand(W, n, self.q) if L == 1 else theta[:, self._t_row_campaign]
            mean, cov = self.forward.predict(self._t_emu_x, th, self._emu_outputs)
            return mean, cov, None
        n = self.X_rows.shape[0]
        th = theta.expand(W, n, self.q) if L == 1 else theta[:, self._t_row_campaign]
        return self.forward(self.X_rows, th)

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
        C = None
        if self._kernel is not None:
            C = self._kernel(U[:, self._sl_disc_scale], U[:, self._sl_disc_ls])
            if self._t_dmask is not None:
                C = C.mul_(self._t_dmask) if inplace else C * self._t_dmask
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

    def _cholesky(self, C: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Batched Cholesky with one retry (:func:`_cholesky_retry`); the failed walkers."""
        Lc, bad, _ = _cholesky_retry(C)
        return Lc, bad

    def _log_likelihood(
        self, U: torch.Tensor, theta: torch.Tensor, noise_sd: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Eq. 7 (δ and the emulator's error integrated out): ll (W,), the forward mean at
        the evaluated entries and the failed walkers, or None when none failed. An
        emulator's mean is not checked here (see :meth:`log_posterior`)."""
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
            return -0.5 * (quad + logdet + self.N * _LOG_2PI), mean, failed
        C = self._covariance(U, noise_sd, emu_cov, self._t_emu_idx)
        ll, bad = self._gaussian(C, r)
        if bad is not None:
            failed = bad if failed is None else failed | bad
        return ll, mean, failed

    # -------------------------------------------------------------------- the posterior
    def log_posterior(self, U: torch.Tensor) -> torch.Tensor:
        """Log-posterior (up to a constant) of ``U (n_walkers, n_dim)`` -> ``(n_walkers,)``.

        Walkers whose forward model fails, or whose covariance cannot be factorized, get
        ``-inf``; their count is kept in ``self.failures``. ``U`` may live on any device:
        it is moved to the model's (differentiably) and the result comes back on ``U``'s,
        so a caller's gradient is on its own device.
        """
        return self._log_posterior(U.to(self.device)).to(U.device)

    def _log_posterior(self, U: torch.Tensor) -> torch.Tensor:
        """:meth:`log_posterior` of ``U`` on the model's device."""
        lp, theta, noise_sd = self._prior(U)
        ll, mean, failed = self._log_likelihood(U, theta, noise_sd)
        total = lp + ll
        if (failed is None or not failed.any()) and torch.isfinite(total).all():
            self.failures = 0
            return total
        # some value is not finite: the forward model failed (non-finite mean), the
        # factorization failed, or the prior is zero; eq. 8's rules, walker by walker
        if self.forward.emulator:  # the emulator's mean at the entries it was asked for
            bad_mean = ~torch.isfinite(mean).flatten(1).all(dim=1)
            failed = bad_mean if failed is None else failed | bad_mean
        ok = torch.isfinite(lp)
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

        All three on the device of ``U``; the arithmetic runs on the model's.
        """
        dev = U.device
        U = U.to(self.device)
        if theta_new is not None:
            theta_new = theta_new.to(self.device)
        parts = self._unpack(U)
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
        r = self._residuals(mean_all[:, :n_rows], self._t_res_full)
        C = self._covariance(U, parts.get("noise_sd"), emu_obs, self._t_emu_idx_full)
        Lc, bad = self._cholesky(C)
        failed = failed if bad is None else failed | bad

        # the new entries (point i*, output j), row-major
        ii = np.repeat(np.arange(n_new), m)
        jj = np.tile(np.arange(m), n_new)
        n_star = n_new * m
        reality = what == "reality"
        if reality:
            mean = mean_all[:, n_rows:, :].reshape(S, n_star).clone()
        else:
            mean = torch.zeros(S, n_star, dtype=DTYPE, device=self.device)
        prior = torch.zeros(S, n_star, n_star, dtype=DTYPE, device=self.device)
        b = 0 if self.B == 1 else campaign  # the block that informs this campaign, if any
        cross = None
        if b is not None:
            cross = torch.zeros(S, n_star, self.Nmax, dtype=DTYPE, device=self.device)
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
            K = kernel_from_sq(kind, self._tensor(sq_dists(z_new, z_new), DTYPE), sc, ls)
            prior = prior + K * self._tensor(same_out, DTYPE)
            if cross is not None:
                mask = np.broadcast_to(live, (n_star, self.Nmax)).copy()
                if self.discrepancy.mode == "independent":
                    mask &= self.obs_campaign[idx][None, :] == (
                        -1 if campaign is None else campaign
                    )
                if self.split_outputs:
                    mask &= jj[:, None] == self.obs_col[idx][None, :]
                Kx = kernel_from_sq(
                    kind, self._tensor(sq_dists(z_new, self.z_obs[idx]), DTYPE), sc, ls
                )
                cross = cross + Kx * self._tensor(mask, DTYPE)
        if reality and cov_all is not None:
            jt, it = self._tensor(jj), self._tensor(ii + n_rows)
            E = cov_all[:, jt[:, None], it[:, None], it[None, :]]
            prior = prior + E * self._tensor(jj[:, None] == jj[None, :], DTYPE)
            if cross is not None:
                ro = self._tensor(self.obs_row[idx])
                Ex = cov_all[:, jt[:, None], it[:, None], ro[None, :]]
                mk = (jj[:, None] == self.obs_col[idx][None, :]) & live[None, :]
                cross = cross + Ex * self._tensor(mk, DTYPE)
        if cross is not None:
            Lb = Lc[:, b]
            v = torch.linalg.solve_triangular(Lb, r[:, b].unsqueeze(-1), upper=False)  # (S, N, 1)
            A = torch.linalg.solve_triangular(Lb, cross.transpose(1, 2), upper=False)  # (S, N, n*)
            mean = mean + (A.transpose(1, 2) @ v).squeeze(-1)
            prior = prior - A.transpose(1, 2) @ A
        cov = 0.5 * (prior + prior.transpose(1, 2))
        return mean.reshape(S, n_new, m).to(dev), cov.to(dev), failed.to(dev)

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
                z = rng.standard_normal((n, self.L))
                if prm.centered:
                    s = self.slots
                    mu = U[:, s[f"{prm.name}.mean"].start, None]
                    tau = np.exp(U[:, s[f"{prm.name}.logscale"].start, None])
                    z = mu + tau * z
                put(f"{prm.name}.z", z)
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
