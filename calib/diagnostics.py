"""Convergence diagnostics of an ensemble chain: τ_int, effective sample size, split R̂."""

from __future__ import annotations

import emcee
import numpy as np

__all__ = ["integrated_time", "ess", "split_rhat"]


def integrated_time(chain: np.ndarray) -> np.ndarray:
    """Integrated autocorrelation time per coordinate (Goodman & Weare 2010; emcee's
    estimator with Sokal's automatic window, averaged over walkers).

    Parameters
    ----------
    chain : array of shape (n_steps, n_walkers) or (n_steps, n_walkers, k)

    Returns
    -------
    array of shape () or (k,)
    """
    x = np.asarray(chain, dtype=float)
    scalar = x.ndim == 2
    if scalar:
        x = x[:, :, None]
    tau = emcee.autocorr.integrated_time(x, tol=0, quiet=True)
    return tau[0] if scalar else tau


def ess(chain: np.ndarray) -> np.ndarray:
    """Effective sample size ``n_steps · n_walkers / τ_int`` per coordinate."""
    x = np.asarray(chain, dtype=float)
    return x.shape[0] * x.shape[1] / integrated_time(x)


def split_rhat(chain: np.ndarray) -> np.ndarray:
    """Split R̂ (Gelman et al. 2013, BDA3 §11.4) with every walker's chain split in halves.

    Parameters
    ----------
    chain : array of shape (n_steps, n_walkers) or (n_steps, n_walkers, k)
    """
    x = np.asarray(chain, dtype=float)
    scalar = x.ndim == 2
    if scalar:
        x = x[:, :, None]
    n = x.shape[0] // 2
    halves = np.concatenate([x[:n], x[n : 2 * n]], axis=1)  # (n, 2W, k)
    means = halves.mean(axis=0)
    var_w = halves.var(axis=0, ddof=1).mean(axis=0)
    var_b = n * means.var(axis=0, ddof=1)
    var_hat = (n - 1) / n * var_w + var_b / n
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.sqrt(var_hat / var_w)
    r = np.where(var_w > 0, r, 1.0)
    return r[0] if scalar else r
