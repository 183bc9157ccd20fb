"""Where the chain starts: the maximum a posteriori by L-BFGS from prior draws
(:func:`find_map`), and the walkers scattered around it by the Laplace approximation."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import optimize

from .likelihood import DTYPE


def _value_and_grad(u: np.ndarray, model) -> tuple[float, np.ndarray]:
    """−log p at ``u (n_dim,)`` and its gradient (autograd); ``inf`` and zeros where either
    is not finite, which L-BFGS treats as a step too far."""
    # on the CPU, beside scipy's arrays: log_posterior moves U to the model's device and
    # brings the value (and so the gradient) back
    U = torch.as_tensor(u.reshape(1, -1), dtype=DTYPE, device="cpu").requires_grad_(True)
    lp = model.log_posterior(U)[0]
    if not torch.isfinite(lp):
        return math.inf, np.zeros_like(u)
    (g,) = torch.autograd.grad(lp, U)
    g = g.numpy().reshape(-1)
    if not np.isfinite(g).all():
        return math.inf, np.zeros_like(u)
    return -float(lp.detach()), -g


def find_map(
    model, starts: np.ndarray, maxiter: int = 500
) -> tuple[np.ndarray, float, list[float]]:
    """Maximize the log-posterior from each start with L-BFGS (torch autograd gradients).

    Parameters
    ----------
    model : calib.likelihood.Model
    starts : array of shape (n_starts, n_dim)

    Returns
    -------
    u_map : array of shape (n_dim,)
        The best optimum found.
    lp_map : float
        Its log-posterior.
    optima : list of (float, array or None, bool)
        Every start's end: the log-posterior reached (``-inf`` where the start failed), the
        position (None there) and whether L-BFGS reported convergence.
    """
    best_u, best = None, -math.inf
    optima = []
    failures = getattr(model.forward, "failures", None)
    if failures is not None:
        failures.clear()  # what failed during this search
    for u0 in starts:
        f0, _ = _value_and_grad(u0, model)
        if not math.isfinite(f0):
            optima.append((-math.inf, None, False))
            continue
        res = optimize.minimize(
            _value_and_grad,
            u0,
            args=(model,),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": maxiter},
        )
        val = -float(res.fun) if np.isfinite(res.fun) else -math.inf
        optima.append((val, np.asarray(res.x, dtype=float), bool(res.success)))
        if val > best:
            best, best_u = val, np.asarray(res.x, dtype=float)
    if best_u is None:
        if failures:
            why, x, theta = failures[0]
            names = list(getattr(model.forward.model, "parameter_names", ()))
            at = ", ".join(f"{n} = {v:.6g}" for n, v in zip(names, theta)) or str(theta)
            raise RuntimeError(
                f"no start gave a finite log-posterior: the simulator failed; first, {why} "
                f"(at x = {x}, {at})"
            )
        raise RuntimeError(
            "no start gave a finite log-posterior: check that the simulator runs at the "
            "parameters' prior values and that the priors admit the data"
        )
    return best_u, best, optima


def laplace_cov(model, u: np.ndarray) -> np.ndarray | None:
    """The Laplace covariance H⁻¹ at ``u``, H the Hessian of −log p by central differences
    of the autograd gradient; None where it is not finite or not positive definite (a flat
    or funnel-shaped mode)."""
    d = u.size
    h = 1e-4
    grads = []
    for k in range(d):
        e = np.zeros(d)
        e[k] = h
        fp, gp = _value_and_grad(u + e, model)
        fm, gm = _value_and_grad(u - e, model)
        if not (math.isfinite(fp) and math.isfinite(fm)):
            return None
        grads.append((gp - gm) / (2 * h))
    H = np.array(grads)
    H = 0.5 * (H + H.T)
    try:
        w, V = np.linalg.eigh(H)
    except np.linalg.LinAlgError:
        return None
    if not np.all(w > 1e-10):
        return None
    return (V / w) @ V.T


def _laplace_scatter(
    u_map: np.ndarray, cov: np.ndarray | None, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Walkers around the MAP: N(u_map, cov), ``cov`` its :func:`laplace_cov`, shrunk by
    1/2 so no walker starts in the tails; a small isotropic ball where ``cov`` is None (a
    flat or funnel-shaped mode)."""
    d = u_map.size
    if cov is None:
        return u_map + 1e-2 * rng.standard_normal((n, d))
    Lc = np.linalg.cholesky(cov + 1e-12 * np.eye(d))
    return u_map + 0.5 * rng.standard_normal((n, d)) @ Lc.T
