"""An independent quadrature reference for θ's posterior on a one-input KOH problem.

Written in plain NumPy from the formulas, sharing no code with calib: the test of the
simple machine (tests/test_simple_machine.py) compares calib's sampled posterior of θ with
this one. The model, for observations ``y_i`` at inputs ``x_i`` (one control input):

    y_i = θ·x_i + δ(x_i) + ε_i,   ε_i ~ N(0, σ_ε²) with σ_ε known,
    θ ~ Uniform(a, b),   δ ~ GP(0, σ_δ² ρ_ℓ),   σ_δ ~ p_σ,   ℓ ~ p_ℓ,

so that, δ integrated out, ``y | θ, σ_δ, ℓ ~ N(θ x, C)`` with ``C = K_δ + σ_ε² I`` (Kennedy
& O'Hagan 2001, §4.5). The four discrepancies differ in ``K_δ`` only:

- ``"none"``: ``K_δ = 0``;
- ``"gp"``: ``K_δ = σ_δ² R``, ``R_ij = ρ(x_i − x_j)``;
- ``"constrained"``: the GP conditioned on noise-free ``δ(0) = 0`` and ``δ'(0) = 0``
  (Brynjarsdóttir & O'Hagan 2014, §4): the joint Gaussian of
  ``[δ(x_1..n), δ(0), δ'(0)]`` is written out and its first block conditioned by hand,
  ``K_δ = K_xx − K_xa K_aa⁻¹ K_ax``. The covariances with the slope are the kernel's
  derivatives, ``cov(δ(a), δ'(b)) = ∂k/∂b`` and ``cov(δ'(a), δ'(b)) = ∂²k/∂a∂b``
  (Rasmussen & Williams 2006, §9.4), taken here by central finite differences of the kernel
  (any kernel) or, for the rbf, in closed form (the test checks that both agree);
- ``"sgasp"``: the discretized scaled GP of Gu & Wang (2018) at the n distinct inputs,
  ``K_δ = σ_δ² (R⁻¹ + (λ_z/n) I)⁻¹``, computed from the eigendecomposition
  ``R = Q diag(r) Qᵀ`` as ``σ_δ² Q diag(r / (1 + r λ_z/n)) Qᵀ`` (no inverse of R, which is
  nearly singular for long length-scales).

The posterior of θ is the marginal likelihood on a grid over (θ, log σ_δ, log ℓ), times the
priors (with the Jacobians σ_δ and ℓ of the log grids), summed over the two
hyperparameter axes. The θ grid is laid twice: once over the whole prior interval, then
over the region that holds the mass (±12 sd of the first pass), so that a posterior a
hundred times narrower than the prior is resolved as well as a broad one.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

KINDS = ("none", "gp", "constrained", "sgasp")


def unit_kernel(a: np.ndarray, b: np.ndarray, ls: float, kernel: str = "rbf") -> np.ndarray:
    """The unit-variance correlation ``ρ((a − b)/ℓ)`` between 1-D point sets, (na, nb)."""
    r = np.abs(np.subtract.outer(np.asarray(a, float), np.asarray(b, float))) / ls
    if kernel == "rbf":
        return np.exp(-0.5 * r**2)
    if kernel == "matern52":
        t = np.sqrt(5.0) * r
        return (1.0 + t + t**2 / 3.0) * np.exp(-t)
    raise ValueError(f"kernel must be 'rbf' or 'matern52', got {kernel!r}")


def slope_covariances_fd(
    x: np.ndarray, a: float, ls: float, kernel: str = "rbf"
) -> tuple[np.ndarray, np.ndarray]:
    """``cov(δ(x_i), δ'(a))`` (n,) and ``var(δ'(a))`` (scalar), unit variance, by central
    finite differences of the kernel: ∂k(x, b)/∂b and ∂²k(a', b)/∂a'∂b at b = a' = a."""
    h = 1e-4 * ls
    k = lambda p, q: unit_kernel(p, q, ls, kernel)  # noqa: E731
    c = (k(x, [a + h]) - k(x, [a - h]))[:, 0] / (2 * h)
    v = (k([a + h], [a + h]) - k([a + h], [a - h]) - k([a - h], [a + h]) + k([a - h], [a - h]))[
        0, 0
    ] / (4 * h * h)
    return c, float(v)


def slope_covariances_rbf(x: np.ndarray, a: float, ls: float) -> tuple[np.ndarray, np.ndarray]:
    """The same two covariances in closed form for the rbf ``k = exp(−(p − q)²/(2ℓ²))``:
    ``∂k(x, b)/∂b = k·(x − b)/ℓ²`` and ``∂²k/∂p∂q = k·(1/ℓ² − (p − q)²/ℓ⁴)`` (at p = q: 1/ℓ²)."""
    x = np.asarray(x, float)
    k = np.exp(-0.5 * (x - a) ** 2 / ls**2)
    return k * (x - a) / ls**2, 1.0 / ls**2


def constrained_corr(
    x: np.ndarray, ls: float, kernel: str = "rbf", at: float = 0.0, derivs: str = "fd"
) -> np.ndarray:
    """δ's unit-variance covariance at ``x`` given ``δ(at) = 0`` and ``δ'(at) = 0``, (n, n).

    The joint covariance of ``[δ(x), δ(at), δ'(at)]`` is assembled block by block and the
    first block conditioned on the other two: ``K_xx − K_xa K_aa⁻¹ K_ax``. ``derivs``:
    ``"fd"`` (finite differences of any kernel) or ``"exact"`` (rbf closed form)."""
    x = np.asarray(x, float)
    if derivs == "exact":
        if kernel != "rbf":
            raise ValueError("derivs='exact' is written for the rbf only")
        c_slope, v_slope = slope_covariances_rbf(x, at, ls)
    else:
        c_slope, v_slope = slope_covariances_fd(x, at, ls, kernel)
    K_xx = unit_kernel(x, x, ls, kernel)
    K_xa = np.column_stack([unit_kernel(x, [at], ls, kernel)[:, 0], c_slope])
    # cov(δ(a), δ'(a)) = ∂k(a, b)/∂b at b = a: zero for a stationary, even kernel
    K_aa = np.array([[1.0, 0.0], [0.0, v_slope]])
    return K_xx - K_xa @ np.linalg.solve(K_aa, K_xa.T)


def sgasp_corr(x: np.ndarray, ls: float, lam: float, kernel: str = "rbf") -> np.ndarray:
    """Gu & Wang's discretized S-GaSP correlation ``(R⁻¹ + (λ_z/n) I)⁻¹`` at the n distinct
    inputs ``x``, by the eigendecomposition of R."""
    x = np.asarray(x, float)
    n = x.size
    r, Q = np.linalg.eigh(unit_kernel(x, x, ls, kernel))
    r = np.clip(r, 0.0, None)  # round-off can leave tiny negative eigenvalues
    return (Q * (r / (1.0 + r * lam / n))) @ Q.T


def default_scaling(x: np.ndarray, scale: float, ls: float, noise_sd: float) -> float:
    """RobustCalibration's default λ_z for one input, as calib documents it:
    ``sqrt(n · (range/ℓ) · σ_δ²/σ_ε²)`` with n the distinct inputs and range their span."""
    xs = np.unique(np.asarray(x, float))
    return float(np.sqrt(xs.size * (np.ptp(xs) / ls) * scale**2 / noise_sd**2))


def delta_corr(x: np.ndarray, ls: float, kind: str, kernel: str = "rbf", lam: float | None = None):
    """δ's unit-variance covariance at x for one of :data:`KINDS` (``"none"`` excluded)."""
    if kind == "gp":
        return unit_kernel(x, x, ls, kernel)
    if kind == "constrained":
        return constrained_corr(x, ls, kernel)
    if kind == "sgasp":
        return sgasp_corr(x, ls, lam, kernel)
    raise ValueError(f"kind must be one of {KINDS[1:]}, got {kind!r}")


def _loglik_theta(theta: np.ndarray, x: np.ndarray, y: np.ndarray, C: np.ndarray) -> np.ndarray:
    """``log N(y; θx, C)`` for every θ of the grid, up to the constant −n/2·log 2π."""
    L = np.linalg.cholesky(C)
    v = np.linalg.solve(L, (y[None, :] - theta[:, None] * x[None, :]).T)
    return -0.5 * (v * v).sum(0) - np.log(np.diag(L)).sum()


def log_posterior_grid(
    theta: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    noise_sd: float,
    kind: str,
    scale_logpdf=None,
    ls_logpdf=None,
    log_scale: np.ndarray | None = None,
    log_ls: np.ndarray | None = None,
    kernel: str = "rbf",
    lam: float | None = None,
    jitter: float = 0.0,
) -> np.ndarray:
    """Unnormalized log posterior of θ on its grid, the hyperparameters summed out.

    Parameters
    ----------
    theta : (nt,) grid inside the prior interval of θ (uniform prior: no term)
    x, y : (n,) inputs and observations
    noise_sd : the known observation sd σ_ε
    kind : one of :data:`KINDS`
    scale_logpdf, ls_logpdf : callables, log densities of σ_δ and ℓ (not for ``"none"``)
    log_scale, log_ls : grids of log σ_δ and log ℓ (not for ``"none"``)
    kernel : ``"rbf"`` or ``"matern52"``
    lam : the S-GaSP's λ_z (``kind="sgasp"``): a number, or ``"default"`` for
        :func:`default_scaling` at every grid point
    jitter : added to C's diagonal (calib adds 1e-10·var(y))

    Returns
    -------
    (nt,) log weights of the θ grid (normalize with logsumexp)
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    eye = np.eye(x.size)
    base = (noise_sd**2 + jitter) * eye
    if kind == "none":
        return _loglik_theta(theta, x, y, base)
    per_draw = kind == "sgasp" and lam == "default"
    out = np.empty((log_scale.size, log_ls.size, theta.size))
    for c, lv in enumerate(log_ls):
        if not per_draw:
            R = delta_corr(x, np.exp(lv), kind, kernel, lam)
        lp_ls = ls_logpdf(np.exp(lv)) + lv  # Jacobian of the log grid
        for b, sv in enumerate(log_scale):
            if per_draw:
                R = sgasp_corr(x, np.exp(lv), default_scaling(x, np.exp(sv), np.exp(lv), noise_sd))
            lp = scale_logpdf(np.exp(sv)) + sv + lp_ls
            out[b, c] = _loglik_theta(theta, x, y, np.exp(2 * sv) * R + base) + lp
    return logsumexp(out, axis=(0, 1))


def moments(grid: np.ndarray, logw: np.ndarray) -> tuple[float, float, float]:
    """Mean, sd and kurtosis of a 1-D density on a grid from its log weights."""
    w = np.exp(logw - logsumexp(logw))
    m = float((w * grid).sum())
    v = float((w * (grid - m) ** 2).sum())
    k = float((w * (grid - m) ** 4).sum()) / v**2
    return m, float(np.sqrt(v)), k


def theta_posterior(
    x: np.ndarray,
    y: np.ndarray,
    noise_sd: float,
    kind: str,
    bounds: tuple[float, float] = (0.0, 1.0),
    n_theta: int = 801,
    **kw,
) -> dict[str, float]:
    """Mean, sd, kurtosis and the 5 % / 95 % quantiles of θ's posterior, by the two-pass
    θ grid (see the module docstring); ``kw`` go to :func:`log_posterior_grid`."""
    a, b = bounds
    grid = np.linspace(a, b, n_theta + 2)[1:-1]
    m, s, _ = moments(grid, log_posterior_grid(grid, x, y, noise_sd, kind, **kw))
    lo, hi = max(a, m - 12 * s), min(b, m + 12 * s)
    grid = np.linspace(lo, hi, n_theta)
    logw = log_posterior_grid(grid, x, y, noise_sd, kind, **kw)
    m, s, k = moments(grid, logw)
    cdf = np.cumsum(np.exp(logw - logsumexp(logw)))
    q05, q95 = (float(np.interp(p, cdf, grid)) for p in (0.05, 0.95))
    return {"mean": m, "sd": s, "kurtosis": k, "q05": q05, "q95": q95}
