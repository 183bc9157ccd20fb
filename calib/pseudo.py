"""δ conditioned on zero pseudo-observations: constraints from physics and the scaled GP.

Both aids that tell θ from δ (docs/theta_vs_delta.md) are the same operation on δ's GP:
conditioning it on observations of *zero* at fixed pseudo-points ``P``, each a value
``δ(z_j)`` or a slope ``∂δ/∂x_d (z_j)``, with noise variance ``D_j``:

- a constraint (Brynjarsdóttir & O'Hagan 2014, §4): ``δ(x₀) = 0`` or ``∇ₓδ(x₁) = 0``,
  noise-free (``D_j`` a relative jitter only);
- the discretized scaled GP, S-GaSP (Gu & Wang 2018, §3): ``δ(z_j) = 0`` at the ``n``
  distinct observed features with noise variance ``n/λ_z`` (in units of σ_δ²), which is
  ``σ_δ² (R⁻¹ + (λ_z/n) I)⁻¹`` at those points.

The pseudo-observations are zero, so the conditional mean stays zero and the conditional
covariance is (docs/model.md, eq. 6b)::

    k_P(a, b) = σ_δ² [ k(a, b) − k(a, P) (K_PP + D)⁻¹ k(P, b) ]

with ``k`` the unit-variance kernel and its derivative covariances (Rasmussen & Williams
2006, §9.4). Writing ``u = r² = Σ_d (a_d − b_d)²/ℓ_d²``, ``Δ = a − b``, ``g = dk/du`` and
``g' = d²k/du²``::

    cov(δ(a), δ(b))               = k
    cov(δ(a), ∂δ(b)/∂b_e)         = −2 g Δ_e / ℓ_e²
    cov(∂δ(a)/∂a_d, δ(b))         =  2 g Δ_d / ℓ_d²
    cov(∂δ(a)/∂a_d, ∂δ(b)/∂b_e)   = −2 g [d = e] / ℓ_d² − 4 g' Δ_d Δ_e / (ℓ_d² ℓ_e²)

where rbf has ``k = e^{−u/2}``, ``g = −k/2``, ``g' = k/4`` and Matérn 5/2, with
``t = √(5u)``, ``k = (1 + t + t²/3) e^{−t}``, ``g = −(5/6)(1 + t) e^{−t}``,
``g' = (25/12) e^{−t}`` (finite at ``t = 0``: Matérn 5/2 is twice differentiable).

The pseudo-points are the same for every δ process of a model (each campaign's δ in
``"independent"`` mode, each output's δ when outputs have no coordinates): the correction
above is formed for every pair of entries and the mask ``M_ab`` of eq. 6 keeps it within a
process, as it keeps the kernel.
"""

from __future__ import annotations

import numpy as np
import torch

from ._gaussian import _cholesky_retry
from .kernels import _MATERN_FLOOR

__all__ = ["slope_kernel_parts", "SlopeKernel", "PseudoConditioning"]

DTYPE = torch.float64
# noise-free pseudo-observations get this jitter relative to their own prior variance:
# K_PP stays factorizable when constraint points are close (else a retry adds more), and
# a constraint holds to ~1e-6 of δ's sd (its conditional sd is √1e-12 of the prior's)
_RELATIVE_JITTER = 1e-12


def slope_kernel_parts(kind: str, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Unit-variance ``k(u)``, ``g = dk/du`` and ``g' = d²k/du²`` at ``u = r²``."""
    if kind == "rbf":
        k = torch.exp(-0.5 * u)
        return k, -0.5 * k, 0.25 * k
    # floored as in calib.kernels: √ keeps a finite derivative at coincident points
    t = torch.sqrt((5.0 * u).clamp_min(_MATERN_FLOOR))
    e = torch.exp(-t)
    k = (1.0 + t + t * t / 3.0) * e
    return k, (-5.0 / 6.0) * (1.0 + t) * e, (25.0 / 12.0) * e


class SlopeKernel:
    """Unit-variance covariances of δ's values and slopes between two fixed point sets.

    Parameters
    ----------
    kind : {"rbf", "matern52"}
    za : (na, D), zb : (nb, D) features
    ta : (na,), tb : (nb,) what each point observes: −1 the value, ``d ≥ 0`` the slope
        along feature ``d``
    device : where the constants live
    """

    def __init__(self, kind, za, ta, zb, tb, device):
        self.kind = kind
        diff = za.T[:, :, None] - zb.T[:, None, :]  # (D, na, nb), Δ = a − b
        t = lambda v: torch.as_tensor(v, device=device)  # noqa: E731
        self.D = diff.shape[0]
        self.sq = t(diff.reshape(self.D, -1) ** 2).to(DTYPE)  # (D, na·nb)
        self.shape = diff.shape[1:]
        ta, tb = np.asarray(ta), np.asarray(tb)
        ra, rb = ta >= 0, tb >= 0
        self.any_slope = bool(ra.any() or rb.any())
        if not self.any_slope:
            return
        ia, ib = np.arange(len(ta)), np.arange(len(tb))
        # Δ along the slope's own feature (row's for rows, column's for columns), 0 for values
        da = np.where(ra[:, None], diff[np.maximum(ta, 0)[:, None], ia[:, None], ib], 0.0)
        db = np.where(rb[None, :], diff[np.maximum(tb, 0)[None, :], ia[:, None], ib], 0.0)
        self.da, self.db = t(da).to(DTYPE), t(db).to(DTYPE)
        self.ta, self.tb = t(np.maximum(ta, 0)), t(np.maximum(tb, 0))
        self.vv = t(~ra[:, None] & ~rb[None, :])
        self.vd = t(~ra[:, None] & rb[None, :])
        self.dv = t(ra[:, None] & ~rb[None, :])
        self.dd = t(ra[:, None] & rb[None, :])
        self.same = t((ra[:, None] & rb[None, :] & (ta[:, None] == tb[None, :])).astype(float))
        self.same = self.same.to(DTYPE)

    def __call__(self, inv_sq: torch.Tensor) -> torch.Tensor:
        """``(W, na, nb)`` for ``inv_sq = ℓ⁻² (W, D)``."""
        W = inv_sq.shape[0]
        u = (inv_sq @ self.sq).view(W, *self.shape)
        k, g, g2 = slope_kernel_parts(self.kind, u)
        if not self.any_slope:
            return k
        A = self.da * inv_sq[:, self.ta][:, :, None]  # Δ_d/ℓ_d² of the row's slope
        B = self.db * inv_sq[:, self.tb][:, None, :]  # Δ_e/ℓ_e² of the column's slope
        dd = -2.0 * g * self.same * inv_sq[:, self.ta][:, :, None] - 4.0 * g2 * A * B
        out = torch.where(self.vv, k, dd)
        out = torch.where(self.vd, -2.0 * g * B, out)
        return torch.where(self.dv, 2.0 * g * A, out)


class PseudoConditioning:
    """δ's pseudo-observations of a model, and the correction they make to its covariance.

    Parameters
    ----------
    discrepancy : calib.Discrepancy
        Its ``zero_at`` / ``zero_slope_at`` (control-input points) and ``process``.
    z_obs : (N, D) features of the observed entries; z_blocks : (B, Nmax, D) per block
    p : number of control inputs (the first ``p`` features; slopes are along these)
    output_coords : (m, r) or None
        With coordinates, a constraint at ``x₀`` holds at ``(x₀, s_j)`` for every output.
    device : where the constants live
    """

    def __init__(self, discrepancy, z_obs, z_blocks, p, output_coords, device):
        kind = discrepancy.kernel
        self.scaling = discrepancy.scaling
        self.device = device
        pts, types = [], []

        def with_coords(x: np.ndarray) -> np.ndarray:
            if output_coords is None:
                return x
            m = output_coords.shape[0]
            return np.concatenate(
                [np.repeat(x, m, axis=0), np.tile(output_coords, (x.shape[0], 1))], axis=1
            )

        if discrepancy.zero_at is not None:
            z = with_coords(discrepancy.zero_at)
            pts.append(z)
            types.append(np.full(len(z), -1))
        if discrepancy.zero_slope_at is not None:
            z = with_coords(discrepancy.zero_slope_at)
            for d in range(p):
                pts.append(z)
                types.append(np.full(len(z), d))
        n_exact = sum(len(t) for t in types)
        self.scaled = discrepancy.process == "sgasp"
        if self.scaled:
            z = np.unique(z_obs, axis=0)  # the distinct observed features: the S-GaSP's grid
            pts.append(z)
            types.append(np.full(len(z), -1))
        zP = np.concatenate(pts, axis=0)
        tP = np.concatenate(types)
        self.nP = len(tP)
        self.n_grid = self.nP - n_exact  # S-GaSP's n (0 without it)
        sgasp = np.arange(self.nP) >= n_exact
        self.kind, self.zP, self.tP = kind, zP, tP
        self._t_sgasp = torch.as_tensor(sgasp, device=device)
        self._t_exact = torch.as_tensor(~sgasp, device=device).to(DTYPE)
        self.pp = SlopeKernel(kind, zP, tP, zP, tP, device)
        B, Nmax, D = z_blocks.shape
        self.B, self.Nmax = B, Nmax
        self.cross_obs = SlopeKernel(
            kind, z_blocks.reshape(B * Nmax, D), np.full(B * Nmax, -1), zP, tP, device
        )
        # the range of each feature over the grid, for the S-GaSP's default λ_z
        self.grid_range = None
        if self.scaled:
            self.grid_range = torch.as_tensor(
                np.ptp(zP[n_exact:], axis=0), dtype=DTYPE, device=device
            )

    # ---------------------------------------------------------------- the factor
    def factor_for(self, U, slots, noise_sd, noise_weights, known_var):
        """:meth:`factor` for the walkers ``U (W, n_dim)`` of a model: the factor of
        ``K_PP + D``, ``ℓ⁻² (W, D)`` and the failed walkers (or None).

        ``noise_sd (W, L)`` or None (known noise, mean variance ``known_var``) and each
        campaign's share of the entries ``noise_weights (L,)`` give σ_ε² for the S-GaSP's
        default λ_z."""
        ls, sc = slots["discrepancy.loglengthscale"], slots["discrepancy.logscale"]
        inv_sq = torch.exp(U[:, ls.start : ls.stop] * -2.0)
        grid_var = None
        if self.scaled:
            if self.scaling is None:  # the reference implementation's rule, per walker
                if noise_sd is None:
                    noise_var = torch.full_like(U[:, 0], known_var)
                else:
                    noise_var = (noise_sd * noise_sd) @ noise_weights
                lam = self.default_scaling(inv_sq, U[:, sc.start], noise_var)
            elif isinstance(self.scaling, float):
                lam = torch.full_like(U[:, 0], self.scaling)
            else:
                lam = torch.exp(U[:, slots["discrepancy.logscaling"].start])
            grid_var = self.n_grid / lam
        Lc, bad = self.factor(inv_sq, grid_var)
        return Lc, inv_sq, bad

    def factor(self, inv_sq: torch.Tensor, grid_var: torch.Tensor | None):
        """Cholesky factor of ``K_PP + D`` ``(W, nP, nP)`` and the failed walkers (or None).

        ``grid_var (W,)``: the S-GaSP's pseudo-noise ``n/λ_z`` per walker (None without it).
        """
        K = self.pp(inv_sq)
        diag = torch.diagonal(K, dim1=-2, dim2=-1) * (_RELATIVE_JITTER * self._t_exact)
        if grid_var is not None:
            diag = torch.where(self._t_sgasp, grid_var[:, None].expand_as(diag), diag)
        K = K + torch.diag_embed(diag)
        Lc, bad, _ = _cholesky_retry(K.unsqueeze(1))
        return Lc[:, 0], bad

    def default_scaling(
        self, inv_sq: torch.Tensor, log_scale: torch.Tensor, noise_var: torch.Tensor
    ) -> torch.Tensor:
        """λ_z by RobustCalibration's default rule (Gu 2018-, ``R/functions.R``):
        ``λ_z = sqrt(n · ‖range / ℓ‖ · σ_δ² / σ_ε²)`` per walker, with ``range`` each
        feature's range over the grid and ``σ_ε²`` the mean noise variance."""
        norm = torch.sqrt((inv_sq * self.grid_range**2).sum(dim=-1))
        return torch.sqrt(self.n_grid * norm * torch.exp(2.0 * log_scale) / noise_var)

    # ---------------------------------------------------------------- corrections
    def solve_cross(self, Lc: torch.Tensor, K_pa: torch.Tensor) -> torch.Tensor:
        """``V = L⁻¹ K_Pa`` for ``K_pa (W, nP, n)``: the correction between sets a and b
        is ``V_aᵀ V_b``."""
        return torch.linalg.solve_triangular(Lc, K_pa, upper=False)

    def correction_obs(self, Lc: torch.Tensor, inv_sq: torch.Tensor) -> torch.Tensor:
        """``k(a, P)(K_PP + D)⁻¹ k(P, b)`` for every pair of every block, ``(W, B, Nmax,
        Nmax)``, unit variance (pads are masked by the caller)."""
        W = inv_sq.shape[0]
        K_ap = self.cross_obs(inv_sq)  # (W, B·Nmax, nP)
        V = self.solve_cross(Lc, K_ap.transpose(1, 2)).view(W, self.nP, self.B, self.Nmax)
        return torch.einsum("wpbi,wpbj->wbij", V, V)

    def cross(self, z: np.ndarray, inv_sq: torch.Tensor, Lc: torch.Tensor) -> torch.Tensor:
        """``V = L⁻¹ k(P, z)`` ``(W, nP, n)`` for value points ``z (n, D)`` (predictions)."""
        sk = SlopeKernel(self.kind, z, np.full(len(z), -1), self.zP, self.tP, self.device)
        return self.solve_cross(Lc, sk(inv_sq).transpose(1, 2))


def check_points(value, name: str) -> np.ndarray | None:
    """A constraint's points as a finite ``(k, p)`` float array (``p`` checked by the model)."""
    if value is None:
        return None
    arr = np.asarray(value, dtype=float) if not isinstance(value, np.ndarray) else value
    if np.iscomplexobj(arr):
        raise ValueError(f"Discrepancy: {name} must be real, got a complex array")
    arr = np.asarray(arr, dtype=float)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(
            f"Discrepancy: {name} must be a (k, p) array of control-input points "
            f"(k ≥ 1), got shape {np.shape(value)}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"Discrepancy: {name} must be finite, got {arr.tolist()}")
    return arr
