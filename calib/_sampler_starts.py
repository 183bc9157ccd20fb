"""Where the chain starts: the maximum a posteriori by L-BFGS from prior draws, all starts
in lockstep (:func:`find_map`), and the walkers scattered around it by the Laplace
approximation."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ._lbfgs import minimize_batch
from ._value_grad import batched_value_and_grad


def _value_and_grad(model) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``U (k, n_dim) -> (−log p (k,), its gradient (k, n_dim))``, one batched call;
    ``inf`` and zeros where either is not finite, which L-BFGS treats as a step too far."""
    # U is put on the CPU beside numpy's arrays: log_posterior moves it to the model's
    # device and brings the value (and so the gradient) back
    vg = batched_value_and_grad(model)

    def fn(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lp, g = vg(U)
        return -lp, -g

    return fn


def find_map(
    model, starts: np.ndarray, maxiter: int = 500
) -> tuple[np.ndarray, float, list[tuple[float, np.ndarray | None, bool]]]:
    """Maximize the log-posterior from every start at once: L-BFGS in lockstep, one
    batched log-posterior call per iteration (:func:`calib._lbfgs.minimize_batch`).

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
        position (None there) and whether L-BFGS converged.
    """
    failures = getattr(model.forward, "failures", None)
    if failures is not None:
        failures.clear()  # what failed during this search
    fn = _value_and_grad(model)
    starts = np.asarray(starts, dtype=float)
    ok = np.isfinite(fn(starts)[0])
    optima: list[tuple[float, np.ndarray | None, bool]] = [(-math.inf, None, False)] * len(starts)
    if not ok.any():
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
    X, f, converged = minimize_batch(fn, starts[ok], maxiter=maxiter)
    for i, x_i, f_i, c_i in zip(np.flatnonzero(ok), X, f, converged, strict=True):
        optima[i] = (-float(f_i), x_i, bool(c_i))
    best = int(np.argmin(f))
    return X[best], -float(f[best]), optima


def laplace_cov(model, u: np.ndarray) -> np.ndarray | None:
    """The Laplace covariance H⁻¹ at ``u``, H the Hessian of −log p by central differences
    of the autograd gradient (all 2·n_dim points in one batched call); None where it is not
    finite or not positive definite (a flat or funnel-shaped mode)."""
    d = u.size
    h = 1e-4
    E = h * np.eye(d)
    f, g = _value_and_grad(model)(np.concatenate([u + E, u - E]))
    if not np.isfinite(f).all():
        return None
    H = (g[:d] - g[d:]) / (2 * h)
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
