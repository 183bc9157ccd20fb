"""The cap on the HMC trajectory length T (calib._chees_tuning.T_MAX).

The cap's value rests on one formula: on N(0, I) with the exact flow and a jittered length
uT, u ~ U(0, 1), the lag-1 autocorrelation of every coordinate is E cos(uT) = sin T / T.
It is checked here against the move itself (small steps, so the leapfrog is near exact),
then the cap against the optimum it states, and the cap's effect on a Student-t target,
where ChEES alone lengthens T past it.
"""

from __future__ import annotations

import emcee
import numpy as np
import pytest
from scipy import linalg

from calib._chees_tuning import T_MAX, metric_spread
from calib.chees import ChEESMove


def _normal(U):
    return -0.5 * np.sum(U * U, 1), -U


def _student(nu: float, d: int):
    def vg(U):
        q = np.sum(U * U, 1)
        return -0.5 * (nu + d) * np.log1p(q / nu), -(nu + d) * U / (nu + q)[:, None]

    return vg


def _run(move, vg, d, n_walkers, n_steps, seed, p0_scale=0.5):
    """The chain, and the largest T / (T_MAX × the cap's unit) over its iterations."""
    sampler = emcee.EnsembleSampler(n_walkers, d, lambda x: float(vg(x[None])[0][0]), moves=move)
    sampler.random_state = np.random.RandomState(seed).get_state()
    p0 = p0_scale * np.random.default_rng(seed).standard_normal((n_walkers, d))
    over = 0.0
    for _ in sampler.sample(p0, iterations=n_steps):
        if move._t_scale is not None:
            over = max(over, move.trajectory / (T_MAX * move._t_scale))
    return sampler.get_chain(), over


@pytest.mark.parametrize("T", [2.25, 4.0])
def test_jittered_lag_one_autocorrelation_on_a_standard_normal_is_sin_t_over_t(T):
    """The frozen move at a fixed T, identity metric and a small step: x' = c·x + s·p with
    c = cos(uT), s = sin(uT) and one u per iteration shared by the walkers, so the pooled
    lag-1 autocorrelation Σxx'/Σx² is the iterations' mean of c plus the momenta's noise:
    against E c = sin T / T within 4 standard errors √(Var c / iterations + E s² / pairs)."""
    d, n_walkers, n_steps = 4, 16, 2000
    move = ChEESMove(_normal, d, n_warmup=0, max_leapfrog=1000)
    move.chol, move.step_size, move.trajectory = np.eye(d), 0.01, T
    chain, _ = _run(move, _normal, d, n_walkers, n_steps, seed=1, p0_scale=1.0)
    a, b = chain[:-1].reshape(-1), chain[1:].reshape(-1)
    rho = float(np.sum(a * b) / np.sum(a * a))
    mean_c = np.sin(T) / T
    mean_c2 = 0.5 + np.sin(2 * T) / (4 * T)
    se = np.sqrt((mean_c2 - mean_c**2) / (n_steps - 1) + (1 - mean_c2) / a.size)
    assert abs(rho - mean_c) < 4 * se, (rho, mean_c, se)


def test_t_max_is_where_the_means_ess_per_gradient_peaks_on_a_gaussian():
    """(1 − ρ)/(1 + ρ) with ρ = sin T / T over the mean cost of an iteration, 1 + E⌈uT/ε⌉ ≈
    1.5 + T/(2ε) gradient evaluations (T/2 in the limit ε → 0): its maximum lies at
    T ≈ 4.0–4.1 for the step sizes calib adapts to, and ChEES's 2.25 there reaches about
    half of it."""
    T = np.linspace(0.5, 10.0, 9501)
    rho = np.sin(T) / T
    eff_at = {}
    for eps in (None, 0.3, 0.6, 1.0):
        cost = T / 2 if eps is None else 1.5 + T / (2 * eps)
        eff = (1 - rho) / (1 + rho) / cost
        best = T[np.argmax(eff)]
        assert 3.9 < best < 4.3, (eps, best)
        assert eff[np.searchsorted(T, T_MAX)] > 0.99 * eff.max()
        eff_at[eps] = eff[np.searchsorted(T, 2.25)] / eff.max()
    assert all(0.4 < v < 0.65 for v in eff_at.values()), eff_at


def test_chees_trajectory_is_capped_in_warmup_and_frozen():
    """Student-t with 3 degrees of freedom in 6 dimensions: ChEES alone lengthens T to
    9–15 (its fourth-moment criterion follows the tails); with the cap T never exceeds
    T_MAX posterior sds of the whitened coordinates, in warm-up or after, and ends shorter."""
    d, vg = 6, _student(3.0, 6)
    for seed in range(3):
        free = ChEESMove(vg, d, n_warmup=200, t_max=None)
        _, free_over = _run(free, vg, d, 32, 200, seed)
        assert free.frozen and free.trajectory > 2 * T_MAX, (seed, free.trajectory)
        capped = ChEESMove(vg, d, n_warmup=200)
        _, over = _run(capped, vg, d, 32, 230, seed)
        assert capped.frozen and capped.t_max == T_MAX and capped._t_scale >= 1.0
        assert over <= 1.0 + 1e-12 < free_over, (seed, over, free_over)
        assert capped.trajectory < 0.8 * free.trajectory, (seed, capped.trajectory)


def test_cap_unit_is_the_largest_sd_in_the_metric_coordinates():
    """metric_spread against the generalized eigenproblem S v = λ Σ v (scipy), Σ = LLᵀ: the
    square root of the largest λ, floored at 1; None before five iterations."""
    rng = np.random.default_rng(4)
    d = 5
    a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    sigma, s = a @ a.T + d * np.eye(d), b @ b.T + 0.1 * np.eye(d)
    L = np.linalg.cholesky(sigma)
    for scale in (0.1, 30.0):
        n = 7
        lam = linalg.eigh(scale * s, sigma, eigvals_only=True)[-1]
        got = metric_spread(n * scale * s, n, L)
        assert got == pytest.approx(max(1.0, np.sqrt(lam)), rel=1e-10)
    assert metric_spread(4 * s, 4, L) is None
    # N(0, I) with the adapted metric: the unit is close to 1, the cap close to T_MAX
    move = ChEESMove(_normal, d, n_warmup=200)
    _run(move, _normal, d, 32, 200, seed=0)
    assert 1.0 <= move._t_scale < 1.3, move._t_scale


def test_cap_is_kept_in_the_state_and_an_older_state_stays_uncapped():
    move = ChEESMove(_normal, 3)
    state = move.state_dict()
    assert state["t_max"] == T_MAX
    assert ChEESMove(_normal, 3, state=state).t_max == T_MAX
    # a state saved before the cap was adapted without one: resumed, it stays so
    old = {k: v for k, v in state.items() if k not in ("t_max", "t_scale")}
    assert ChEESMove(_normal, 3, state=old).t_max is None
    assert ChEESMove(_normal, 3, t_max=None).state_dict()["t_max"] is None
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="t_max must be positive or None"):
            ChEESMove(_normal, 3, t_max=bad)
