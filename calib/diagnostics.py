"""Convergence diagnostics of MCMC draws: rank-normalized split-R̂, bulk/tail ESS, MCSE.

One vectorized implementation of the diagnostics recommended by

    Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization, folding, and
    localization: an improved R̂ for assessing convergence of MCMC", *Bayesian Analysis*
    16(2), 667-718 (arXiv:1903.08008), cited below as [V21].

This module is the public API (the functions below, their conventions and degenerate
cases); the estimators they share (ranks, FFT autocovariances, Geyer's ESS, split-R̂,
quantiles) are in ``calib/_chain_stats.py``.

Layout
------
Every function takes ``chain`` of shape ``(n_steps, n_chains)`` or ``(n_steps, n_chains, k)``:
each emcee walker is one chain, and ``k`` quantities are processed at once (the returned
arrays have shape ``(k,)``, or are scalars for 2-D input). Nothing loops in Python over
chains or quantities: ranks come from one sort per quantity, autocovariances from one real
FFT along the step axis for all chains and quantities together, and the Geyer truncation is
done with cumulative reductions.

Section numbers refer to the published paper: §3.1 split-R̂, §3.2 ESS of multiple chains,
§4 rank normalization, folding and the bulk/tail ESS, §4.4 MCSE of quantiles.

Conventions (those of ArviZ 0.23 and Stan's ``posterior`` package)
------------------------------------------------------------------
* *Split chains*: every chain is cut into its first and last ``n_steps // 2`` draws; for an
  odd ``n_steps`` the middle draw is dropped ([V21] §3.1). ``M = 2 · n_chains`` split chains
  of ``N = n_steps // 2`` draws each, ``S = M · N`` draws in all.
* *Rank normalization* ([V21] §4): ``z = Φ⁻¹((r − 3/8) / (S − 2·3/8 + 1))`` with
  ``r`` the average rank (ties share their mean rank) among all ``S`` split draws (Blom 1958).
* Quantiles (the 5 % / 95 % thresholds of the tail-ESS, the MCSE of quantiles) are taken over
  *all* draws, middle draws included, with the type-7 (linear) definition.

Degenerate input
----------------
* A quantity whose split draws are all equal (a constant): ``rhat`` is **1.0** (ArviZ returns
  NaN with a RuntimeWarning; a constant carries no evidence of non-convergence, and 1.0 keeps
  ``max(rhat) < 1.01`` checks meaningful), every ESS is the number of split draws ``S`` (as
  ArviZ), ``mcse_*`` are 0. If the chains are each constant but at different values, ``rhat``
  is ``inf`` (ArviZ: a huge finite number) and the ESS are computed as usual (small).
* Constancy of the raw draws (for :func:`ess_mean`, :func:`mcse_mean`) is judged relative to
  their magnitude: ``max − min ≤ 16 ε · max|x|``; rank-based statistics only need exact ties.
* A quantity containing NaN or ±inf gets NaN everywhere; fewer than 4 steps gives NaN (as
  ArviZ). No RuntimeWarning is emitted in any of these cases.
* ArviZ returns NaN for R̂ of a single chain; here the two halves of that chain are compared.
"""

from __future__ import annotations

import numpy as np

# the estimators themselves: calib/_chain_stats.py; this module is the public API
from ._chain_stats import _Draws, _fast_len, _is_const

__all__ = [
    "rhat",
    "ess_bulk",
    "ess_tail",
    "ess_mean",
    "mcse_mean",
    "mcse_quantile",
    "summarize",
    "integrated_time",
    "ess",
    "split_rhat",
]

_TAIL_PROBS = (0.05, 0.95)
_SOKAL_C = 5.0  # emcee's automatic-window constant


# ---------------------------------------------------------------------------- public API
def rhat(chain: np.ndarray) -> np.ndarray:
    """Rank-normalized split-R̂ ([V21] §4, as recommended there and used by Stan).

    ``R̂ = max(R̂_bulk, R̂_folded)``: the split-R̂ (``sqrt(var⁺/W)``, [V21] §3.1) of the
    rank-normalized split chains, and of the rank-normalized folded split chains
    ``|x − median(x)|`` (sensitive to differing scales). Matches ``arviz.rhat(...,
    method="rank")``.

    Parameters
    ----------
    chain : array of shape (n_steps, n_chains) or (n_steps, n_chains, k)

    Returns
    -------
    array of shape () or (k,)
        1.0 for a constant quantity (ArviZ: NaN), ``inf`` when every chain is stuck at its
        own value, NaN with non-finite draws or fewer than 4 steps.
    """
    d = _Draws(chain)
    return d.out(d.rhat()) if d.usable else d.nan()


def ess_bulk(chain: np.ndarray) -> np.ndarray:
    """Bulk effective sample size: ESS of the rank-normalized split chains ([V21] §4).

    Geyer's initial monotone sequence estimator on multiple chains ([V21] §3.2), as Stan and
    ``arviz.ess(..., method="bulk")``.

    Parameters
    ----------
    chain : array of shape (n_steps, n_chains) or (n_steps, n_chains, k)

    Returns
    -------
    array of shape () or (k,)
        The number of split draws for a constant quantity.
    """
    d = _Draws(chain)
    return d.out(d.ess_bulk()) if d.usable else d.nan()


def ess_tail(chain: np.ndarray) -> np.ndarray:
    """Tail effective sample size ([V21] §4).

    ``min(ESS(I(x ≤ q₀.₀₅)), ESS(I(x ≤ q₀.₉₅)))`` on split chains, the quantiles taken over
    all draws; as ``arviz.ess(..., method="tail")``.

    Parameters
    ----------
    chain : array of shape (n_steps, n_chains) or (n_steps, n_chains, k)

    Returns
    -------
    array of shape () or (k,)
    """
    d = _Draws(chain)
    return d.out(d.ess_quantiles(_TAIL_PROBS).min(axis=0)) if d.usable else d.nan()


def ess_mean(chain: np.ndarray) -> np.ndarray:
    """Split-chain ESS of the draws themselves, for the MCSE of the mean ([V21] §3.2).

    As ``arviz.ess(..., method="mean")``.

    Parameters
    ----------
    chain : array of shape (n_steps, n_chains) or (n_steps, n_chains, k)

    Returns
    -------
    array of shape () or (k,)
    """
    d = _Draws(chain)
    return d.out(d.ess_mean) if d.usable else d.nan()


def mcse_mean(chain: np.ndarray) -> np.ndarray:
    """Monte Carlo standard error of the posterior mean: ``sd / sqrt(ess_mean)``.

    ``sd`` is the standard deviation (ddof=1) of all draws; as ``arviz.mcse(...,
    method="mean")``.

    Parameters
    ----------
    chain : array of shape (n_steps, n_chains) or (n_steps, n_chains, k)

    Returns
    -------
    array of shape () or (k,)
    """
    d = _Draws(chain)
    return d.out(d.mcse_mean()) if d.usable else d.nan()


def mcse_quantile(chain: np.ndarray, prob: float) -> np.ndarray:
    """Monte Carlo standard error of the ``prob`` quantile ([V21] §4.4).

    With ``S_p`` the ESS of ``I(x ≤ q_p)`` on split chains, the rank of the quantile has the
    approximate posterior ``Beta(S_p·p + 1, S_p·(1−p) + 1)``; its ``Φ(±1)`` quantiles ``a, b``
    give the order statistics ``x_(⌊aS−1⌋)`` and ``x_(⌈bS−1⌉)`` of the ``S`` sorted draws (0-based,
    clipped to the range) and the MCSE is half their distance. As ``arviz.mcse(...,
    method="quantile", prob=prob)``.

    Parameters
    ----------
    chain : array of shape (n_steps, n_chains) or (n_steps, n_chains, k)
    prob : float in (0, 1)

    Returns
    -------
    array of shape () or (k,)
    """
    prob = float(prob)
    if not 0.0 < prob < 1.0:
        raise ValueError(f"prob must lie in (0, 1), got {prob}")
    d = _Draws(chain)
    if not d.usable:
        return d.nan()
    return d.out(d.mcse_quantile(prob, d.ess_quantiles((prob,))[0]))


def summarize(chain: np.ndarray) -> dict[str, np.ndarray]:
    """All diagnostics of :mod:`calib.diagnostics` in one pass over the draws.

    The sort of the split draws is shared by the bulk and folded rank normalizations and the
    quantiles; the ESS of the 5 %/95 % indicators serves both the tail-ESS and the MCSE of
    those quantiles.

    Parameters
    ----------
    chain : array of shape (n_steps, n_chains) or (n_steps, n_chains, k)

    Returns
    -------
    dict with keys ``rhat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean``, ``mcse_q5``,
    ``mcse_q95``, each of shape () or (k,), equal to the single functions' results.
    """
    d = _Draws(chain)
    keys = ("rhat", "ess_bulk", "ess_tail", "mcse_mean", "mcse_q5", "mcse_q95")
    if not d.usable:
        return {key: d.nan() for key in keys}
    r = d.rhat()  # sorts the split draws once, for the ranks and the quantiles
    e_tail = d.ess_quantiles(_TAIL_PROBS)
    values = (
        r,
        d.ess_bulk(),
        e_tail.min(axis=0),
        d.mcse_mean(),
        d.mcse_quantile(_TAIL_PROBS[0], e_tail[0]),
        d.mcse_quantile(_TAIL_PROBS[1], e_tail[1]),
    )
    return {key: d.out(v) for key, v in zip(keys, values)}


def integrated_time(chain: np.ndarray) -> np.ndarray:
    """Integrated autocorrelation time per quantity, in steps (emcee's estimator).

    The normalized autocorrelation function of every chain (walker), averaged over chains,
    summed as ``τ(M) = 1 + 2 Σ_{t=1}^{M} ρ(t)`` up to Sokal's automatic window, the first
    ``M`` with ``M ≥ 5 τ(M)``, else the last lag (Goodman & Weare 2010; Foreman-Mackey et al.
    2013). Equal to ``emcee.autocorr.integrated_time(chain, tol=0)`` to rounding, computed
    with one FFT for all chains and quantities. It is not split and not rank-normalized: use
    :func:`ess_bulk` for the ESS.

    Parameters
    ----------
    chain : array of shape (n_steps, n_chains) or (n_steps, n_chains, k)

    Returns
    -------
    array of shape () or (k,)
        1.0 for a constant quantity; a constant chain (stuck walker) among others counts as
        perfectly correlated (ρ ≡ 1) where emcee returns NaN; NaN for non-finite draws or
        fewer than 2 steps.
    """
    x = np.asarray(chain, dtype=float)
    if x.ndim not in (2, 3):
        raise ValueError(
            f"chain: expected shape (n_steps, n_chains) or (n_steps, n_chains, k), got {x.shape}"
        )
    scalar = x.ndim == 2
    if scalar:
        x = x[:, :, None]
    n, m, k = x.shape
    valid = np.isfinite(x).all(axis=(0, 1)) & (n >= 2)
    if n < 2 or m < 1 or k == 0:
        tau = np.full(k, np.nan)
        return tau[0] if scalar else tau
    xt = np.ascontiguousarray(np.where(valid, x, 0.0).transpose(2, 1, 0))  # (k, m, n)
    lo, hi = xt.min(axis=-1), xt.max(axis=-1)
    stuck = _is_const(lo, hi)  # (k, m)
    xc = xt - xt.mean(axis=-1, keepdims=True)
    c0 = np.einsum("kmn,kmn->km", xc, xc)
    weight = np.where(stuck, 0.0, 1.0 / np.where(stuck, 1.0, c0))  # normalizes ρ(0) = 1
    nfft = _fast_len(2 * n)
    f = np.fft.rfft(xc, n=nfft, axis=-1)
    fv = f.view(np.float64)
    power = np.einsum("kmf,kmf,km->kf", fv, fv, weight).reshape(k, -1, 2).sum(axis=-1)
    rho = (np.fft.irfft(power, n=nfft, axis=-1)[:, :n] + stuck.sum(axis=1)[:, None]) / m
    taus = 2.0 * np.cumsum(rho, axis=1) - 1.0
    inside = np.arange(n) < _SOKAL_C * taus
    window = np.where(inside.all(axis=1), n - 1, np.argmin(inside, axis=1))
    tau = taus[np.arange(k), window]
    constant = stuck.all(axis=1) & _is_const(lo.min(axis=1), hi.max(axis=1))
    tau = np.where(constant, 1.0, tau)
    tau = np.where(valid, tau, np.nan)
    return tau[0] if scalar else tau


#: Former name: the bulk-ESS is now the ESS reported everywhere.
ess = ess_bulk
#: Former name: the rank-normalized split-R̂.
split_rhat = rhat
