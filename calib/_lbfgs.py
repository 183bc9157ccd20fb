"""L-BFGS from many starts at once: one batched call of the objective per iteration.

The MAP search (:func:`calib._sampler_starts.find_map`) starts from several prior draws.
Run one after another, each start pays the fixed cost of a log-posterior call (hundreds of
small torch operations) once per evaluation; in lockstep, the starts share every call, as
the walkers do in sampling. The method is L-BFGS as Nocedal & Wright (2006, *Numerical
Optimization*, 2nd ed.) state it: the two-loop recursion (Algorithm 7.4) with the initial
scaling γ = sᵀy / yᵀy (eq. 7.20), and a line search for the weak Wolfe conditions
(eq. 3.6, c₁ = 10⁻⁴, c₂ = 0.9) by bisection and doubling of the step (Lewis & Overton 2013,
*Math. Program.* 141, §4.2), which makes the curvature sᵀy positive; a pair (s, y) is kept
only where it is, which keeps every direction a descent direction (§6.1).

Each start stops on its own, with scipy's L-BFGS-B tests and tolerances: the largest
gradient component at most ``gtol``, or a relative reduction of the objective at most
``ftol`` (both count as converged); ``maxiter`` iterations, or a line search that finds no
decrease from a steepest-descent step, count as not converged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ARMIJO_C1 = 1e-4
WOLFE_C2 = 0.9
MAX_SEARCH = 40


def minimize_batch(
    fun: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    x0: np.ndarray,
    maxiter: int = 500,
    memory: int = 10,
    gtol: float = 1e-5,
    ftol: float = 2.220446049250313e-09,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimize ``fun`` from every row of ``x0 (n, d)`` at once.

    ``fun(X (k, d)) -> (f (k,), ∇f (k, d))`` for any subset of rows, ``f = +inf`` where the
    objective is not finite (a step there is shortened). Every start must have a finite
    value at ``x0``. Returns the end points ``(n, d)``, their values ``(n,)`` and whether each
    start converged ``(n,)``.
    """
    x = np.array(x0, dtype=float)
    n, d = x.shape
    f, g = fun(x)
    f, g = np.array(f, dtype=float), np.array(g, dtype=float)
    if not np.isfinite(f).all():
        raise ValueError("minimize_batch: every start needs a finite objective")
    S, Y = np.zeros((n, memory, d)), np.zeros((n, memory, d))
    rho = np.zeros((n, memory))
    count = np.zeros(n, dtype=int)  # pairs held, the newest at (head - 1) % memory
    head = np.zeros(n, dtype=int)
    active = np.abs(g).max(axis=1) > gtol
    converged = ~active
    rows = np.arange(n)
    for _ in range(maxiter):
        a = rows[active]
        if a.size == 0:
            break
        p = _direction(g[a], S[a], Y[a], rho[a], count[a], head[a])
        slope = np.einsum("kd,kd->k", p, g[a])
        uphill = ~(slope < 0)  # round-off can spoil a direction: steepest descent instead
        if uphill.any():
            count[a[uphill]] = 0
            p[uphill] = -g[a[uphill]]
            slope[uphill] = -np.einsum("kd,kd->k", g[a[uphill]], g[a[uphill]])
        # the first step of a fresh memory has unit length (scipy's L-BFGS-B does the same)
        t = np.where(count[a] == 0, 1.0 / np.maximum(np.linalg.norm(p, axis=1), 1e-300), 1.0)
        x_new, f_new, g_new = x[a].copy(), np.full(a.size, np.inf), np.zeros((a.size, d))
        # the bracket [lo, hi] of the step, with f and its slope along p at lo
        lo, hi = np.zeros(a.size), np.full(a.size, np.inf)
        f_lo, s_lo = f[a].copy(), slope.copy()
        pending = np.ones(a.size, dtype=bool)
        for _ in range(MAX_SEARCH):
            k = np.flatnonzero(pending)
            trial = x[a[k]] + t[k, None] * p[k]
            fk, gk = fun(trial)
            sk = np.einsum("kd,kd->k", gk, p[k])
            armijo = np.isfinite(fk) & (fk <= f[a[k]] + ARMIJO_C1 * t[k] * slope[k])
            armijo &= (trial != x[a[k]]).any(axis=1)  # a step too short to move is none
            wolfe = armijo & (sk >= WOLFE_C2 * slope[k])
            # the last point with sufficient decrease is kept should the search run out
            j = k[armijo]
            x_new[j], f_new[j], g_new[j] = trial[armijo], fk[armijo], gk[armijo]
            pending[k[wolfe]] = False
            short = armijo & ~wolfe  # still going down steeply: a longer step
            j = k[short]
            lo[j], f_lo[j], s_lo[j] = t[j], fk[short], sk[short]
            hi[k[~armijo]] = t[k[~armijo]]
            k = k[~wolfe]
            t[k] = _next_step(lo[k], hi[k], f_lo[k], s_lo[k], t[k], fk[~wolfe])
            if not pending.any():
                break
        pending &= ~np.isfinite(f_new)  # out of trials: a point with sufficient decrease does
        stuck = a[pending]
        # no decrease along a quasi-Newton direction: forget the memory and try steepest
        # descent; along steepest descent already: stop (scipy: ABNORMAL_TERMINATION)
        fresh = count[stuck] == 0
        active[stuck[fresh]] = False
        count[stuck[~fresh]] = 0
        moved = a[~pending]
        m = ~pending
        s, y = x_new[m] - x[moved], g_new[m] - g[moved]
        sy = np.einsum("kd,kd->k", s, y)
        keep = sy > 1e-10 * np.linalg.norm(s, axis=1) * np.linalg.norm(y, axis=1)
        kept = moved[keep]
        slot = head[kept]
        S[kept, slot], Y[kept, slot], rho[kept, slot] = s[keep], y[keep], 1.0 / sy[keep]
        head[kept] = (slot + 1) % memory
        count[kept] = np.minimum(count[kept] + 1, memory)
        f_old = f[moved]
        x[moved], f[moved], g[moved] = x_new[m], f_new[m], g_new[m]
        small_g = np.abs(g[moved]).max(axis=1) <= gtol
        small_f = f_old - f[moved] <= ftol * np.maximum(
            np.maximum(np.abs(f_old), np.abs(f[moved])), 1.0
        )
        done = small_g | small_f
        converged[moved[done]] = True
        active[moved[done]] = False
    return x, f, converged


def _direction(
    g: np.ndarray, S: np.ndarray, Y: np.ndarray, rho: np.ndarray, count: np.ndarray, head
) -> np.ndarray:
    """−H∇f by the two-loop recursion (Nocedal & Wright, Algorithm 7.4), for every start
    at once with its own memory (``count`` pairs, the newest at ``head - 1``)."""
    k, memory, _ = S.shape
    rows = np.arange(k)
    q = g.copy()
    alpha = np.zeros((k, memory))
    for j in range(memory):  # newest to oldest
        slot = (head - 1 - j) % memory
        use = j < count
        a_j = np.where(use, rho[rows, slot] * np.einsum("kd,kd->k", S[rows, slot], q), 0.0)
        alpha[:, j] = a_j
        q -= a_j[:, None] * Y[rows, slot]
    newest = (head - 1) % memory
    s, y = S[rows, newest], Y[rows, newest]
    yy = np.einsum("kd,kd->k", y, y)
    gamma = np.where(count > 0, np.einsum("kd,kd->k", s, y) / np.where(yy > 0, yy, 1.0), 1.0)
    r = gamma[:, None] * q
    for j in reversed(range(memory)):  # oldest to newest
        slot = (head - 1 - j) % memory
        use = j < count
        beta = np.where(use, rho[rows, slot] * np.einsum("kd,kd->k", Y[rows, slot], r), 0.0)
        r += (alpha[:, j] - beta)[:, None] * S[rows, slot] * use[:, None]
    return -r


def _next_step(
    lo: np.ndarray, hi: np.ndarray, f_lo: np.ndarray, s_lo: np.ndarray, t: np.ndarray, f_t
) -> np.ndarray:
    """The next trial step: twice the step while no step has failed the sufficient decrease
    (``hi`` infinite); else the minimizer of the quadratic through ``f`` and its slope at
    ``lo`` and ``f`` at ``hi`` (``f_t``, where the last trial was ``hi``), kept at least a
    tenth of the bracket from either end, or the bracket's midpoint where that quadratic
    has no minimum or ``f`` was not finite (Nocedal & Wright §3.5)."""
    bracket = np.isfinite(hi)
    width = np.where(bracket, hi - lo, 0.0)
    curv = np.where(bracket & (t == hi), f_t - f_lo - s_lo * width, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        quad = lo - s_lo * width**2 / (2.0 * curv)
    quad = np.where(np.isfinite(quad) & (curv > 0), quad, lo + 0.5 * width)
    quad = np.clip(quad, lo + 0.1 * width, hi - 0.1 * width)
    return np.where(bracket, quad, 2.0 * t)
