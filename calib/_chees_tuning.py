"""The ChEES move's adaptation arithmetic (:mod:`calib.chees`): the criteria T ascends,
the cap on T, the trajectory-length gradient estimate and the metric's covariance and
Cholesky factor."""

from __future__ import annotations

import math

import numpy as np

CRITERIA = ("chees", "chees_rate")  # what T maximizes; the first is the default

#: The cap on the trajectory length T, in units of the posterior's largest sd in the
#: whitened coordinates x̃ = L⁻¹x (:func:`metric_spread`; about 1 once the metric is adapted).
#: On N(0, I) the exact flow with jittered length uT, u ~ U(0, 1), gives the lag-1
#: autocorrelation ρ(T) = E cos(uT) = sin T / T of every coordinate, so the ESS of a mean per
#: gradient evaluation, (1 − ρ)/(1 + ρ) over the mean number of steps, peaks at T ≈ 4.0–4.1
#: (step size 0–1) and halves by T ≈ 6. ChEES puts T at 2.25 there (the second moments'
#: optimum); on curved or heavy-tailed posteriors its fourth-moment criterion, led by the
#: one direction where ‖x̃‖² changes most, lengthened T to 5–14 (docs/model.md).
T_MAX = 4.0
_SPREAD_MIN_ITERATIONS = 5  # iterations of a window before its spread is read


def metric_spread(window_sum: np.ndarray, n: int, chol: np.ndarray) -> float | None:
    """The largest posterior sd in the whitened coordinates of the metric ``chol``: the square
    root of the largest eigenvalue of ``L⁻¹ S L⁻ᵀ``, S the cross-walker covariance pooled
    over the ``n`` iterations of the current window (``window_sum / n``), at least 1; None
    before the window holds 5 iterations. Above 1 where the metric is still too narrow in
    some direction (a short warm-up): the cap then widens with it."""
    if n < _SPREAD_MIN_ITERATIONS:
        return None
    a = np.linalg.solve(chol, window_sum / n)
    w = np.linalg.solve(chol, a.T)
    lam = float(np.linalg.eigvalsh(0.5 * (w + w.T))[-1])
    return math.sqrt(lam) if lam > 1.0 else 1.0


def t_cap(t_max: float | None, scale: float | None) -> float:
    """The cap on T: ``t_max`` sds of :func:`metric_spread` (inf where either is None: a
    state saved before the cap, or no spread measured yet)."""
    if t_max is None or scale is None:
        return math.inf
    return float(t_max) * float(scale)


def cross_walker_cov(x: np.ndarray) -> np.ndarray:
    """Cross-walker covariance of ``x (W, d)``."""
    c = x - x.mean(axis=0)
    return c.T @ c / max(x.shape[0] - 1, 1)


def shrunk_chol(cov: np.ndarray, n: int) -> np.ndarray:
    """Cholesky factor of the covariance shrunk towards 10⁻³ I with weight 5/(n + 5), as
    Stan's windowed adaptation regularizes a short window (``n`` draws behind it); the
    diagonal alone if the estimate is still not positive definite."""
    d = cov.shape[0]
    reg = (n / (n + 5.0)) * cov + 1e-3 * (5.0 / (n + 5.0)) * np.eye(d)
    try:
        L = np.linalg.cholesky(reg)
    except np.linalg.LinAlgError:
        L = np.diag(np.sqrt(np.maximum(np.diag(reg), 1e-12)))
    return L


def log_t_gradient(
    xt0: np.ndarray, xt1: np.ndarray, p1: np.ndarray, wts: np.ndarray, t: float, criterion: str
) -> float:
    """The acceptance-weighted estimate of the criterion's derivative in ``log T``.

    ``xt0``, ``xt1`` (W, d) the walkers before and after a trajectory of length ``t = uT``
    (preconditioned coordinates), ``p1`` the momenta at its end, ``wts`` the weights
    (acceptance probabilities, 0 for a divergence). ChEES (Hoffman et al. 2021, eq. 7,
    times ``t`` for the log scale): ``ĝ_i = t·(‖c1_i‖² − ‖c0_i‖²)·c1_i·p1_i``; the rate
    ``C/t``: ``(ĝ_i − C_i)/t`` with ``C_i = ¼(‖c1_i‖² − ‖c0_i‖²)²``. ``c1`` is centred on
    the weighted mean of ``xt1``, ``c0`` on the mean of ``xt0``.
    """
    keep = wts > 0  # a divergent walker (weight 0) may hold overflowing values
    xt1 = np.where(keep[:, None], xt1, 0.0)
    p1 = np.where(keep[:, None], p1, 0.0)
    m1 = (wts[:, None] * xt1).sum(axis=0) / wts.sum()
    c1 = xt1 - m1
    c0 = xt0 - xt0.mean(axis=0)
    change = np.sum(c1 * c1, 1) - np.sum(c0 * c0, 1)
    gi = t * change * np.sum(c1 * p1, 1)
    if criterion == "chees_rate":
        # per unit of trajectory length, so per gradient evaluation:
        # d/dlog t [C/t] = (dC/dlog t − C)/t
        gi = (gi - 0.25 * change**2) / t
    gi = np.where(keep, gi, 0.0)
    return float((wts * gi).sum() / wts.sum())
