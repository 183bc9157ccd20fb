"""The sampler against exact posteriors (closed form and quadrature written from the formulas).

Tolerances come from Monte Carlo error: for a posterior mean, ``4·sd/√ESS``; for a posterior
sd, ``4·sd·√(κ−1)/(2√ESS)`` with κ the exact kurtosis (the standard error of a sample
variance is ``σ²√((κ−1)/n)``). The ESS is the chain's own (bulk ESS of x for the mean, of
(x − x̄)² for the sd); every test asserts both are large enough to make the check sharp.

Every test runs with both kinds of move: the derivative-free ensemble mix (``"de"``, with the
budgets it needs) and the gradient move (``"hmc"``, ChEES-adapted HMC: 200 warm-up iterations
then 1000 kept, each walker an independent chain; with 500 kept the hierarchical model's
μ came out with an sd 4.5 standard errors low, the tails being explored slowly).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from calib import Calibrator, Campaign, Discrepancy, Parameter
from calib.diagnostics import ess
from calib.priors import HalfNormal, LogNormal, Normal
from simulators import FunctionSimulator


def _moments(grid: np.ndarray, logw: np.ndarray) -> tuple[float, float, float]:
    """Mean, sd and kurtosis of a 1-D marginal on a grid from log weights."""
    w = np.exp(logw - logsumexp(logw))
    m = float((w * grid).sum())
    v = float((w * (grid - m) ** 2).sum())
    k = float((w * (grid - m) ** 4).sum()) / v**2
    return m, np.sqrt(v), k


# the DE mix's runs take 1-2 minutes each on two cores: they run with the slow tests (CI
# runs both), the default gradient move's with every `make test`
@pytest.fixture(params=[pytest.param("de", marks=pytest.mark.slow), "hmc"])
def moves(request):
    return request.param


def _sample(cal, moves, n_walkers, n_steps, seed):
    if moves == "hmc":
        return cal.sample(
            n_walkers=n_walkers,
            n_steps=1200,
            warmup=200,
            seed=seed,
            moves="hmc",
            autocorr_stop=False,
        )
    return cal.sample(n_walkers=n_walkers, n_steps=n_steps, seed=seed, autocorr_stop=False)


def _check(post, name, mean, sd, kurt, min_ess=400, campaign=None):
    x = post._compute_quantities()[post._key(name, campaign)]
    n_eff = float(ess(x))
    # the sd is estimated from the mean of (x − x̄)², whose autocorrelation is its own: HMC's
    # draws of x can be anticorrelated (ESS above the draw count) while those of x² are not
    n_eff_sq = float(ess((x - x.mean()) ** 2))
    assert min(n_eff, n_eff_sq) >= min_ess, f"{name}: ESS {n_eff:.0f}/{n_eff_sq:.0f} too small"
    flat = x.reshape(-1)
    tol_mean = 4 * sd / np.sqrt(n_eff)
    tol_sd = 4 * sd * np.sqrt(kurt - 1) / (2 * np.sqrt(n_eff_sq))
    assert abs(flat.mean() - mean) < tol_mean, (name, flat.mean(), mean, tol_mean, n_eff)
    assert abs(flat.std() - sd) < tol_sd, (name, flat.std(), sd, tol_sd, n_eff)


def test_conjugate_normal_complete_pooling(moves):
    rng = np.random.default_rng(0)
    sigma, m0, s0 = 0.5, 1.0, 2.0
    y = 0.3 + sigma * rng.standard_normal(12)
    sim = FunctionSimulator(lambda X, T: T[:, :1], (), ("theta",), ("y",), vectorized=True)
    cal = Calibrator(
        sim,
        [Parameter("theta", prior=Normal(m0, s0))],
        [
            Campaign("A", x=None, y=y[:7], noise_sd=sigma),
            Campaign("B", x=None, y=y[7:], noise_sd=sigma),
        ],
        noise="known",
    )
    post = _sample(cal, moves, 16, 3000, seed=3)
    prec = 1 / s0**2 + y.size / sigma**2
    mn, sn = (m0 / s0**2 + y.sum() / sigma**2) / prec, prec**-0.5
    _check(post, "theta", mn, sn, 3.0)


def _hierarchy_against_quadrature(moves, sizes, data_seed, seed, centered):
    """θ_ℓ ~ N(μ, τ²) partially pooled over campaigns of ``sizes`` observations, against 2-D
    quadrature of (μ, τ)."""
    rng = np.random.default_rng(data_seed)
    sigma = 1.0
    truth = 0.5 + 0.8 * rng.standard_normal(len(sizes))
    camps, ybar = [], []
    for l, n in enumerate(sizes):
        y = truth[l] + sigma * rng.standard_normal(n)
        camps.append(Campaign(f"c{l}", x=None, y=y, noise_sd=sigma))
        ybar.append(y.mean())
    ybar, nl = np.array(ybar), np.array(sizes)
    mu_prior, tau_prior = Normal(0.0, 3.0), HalfNormal(1.5)
    sim = FunctionSimulator(lambda X, T: T[:, :1], (), ("theta",), ("y",), vectorized=True)
    cal = Calibrator(
        sim,
        [Parameter("theta", pooling="partial", centered=centered)],
        camps,
        noise="known",
        hyperpriors={"theta": {"mean": mu_prior, "scale": tau_prior}},
    )
    assert cal.labels[2] == ("theta.u[c0]" if centered else "theta.z[c0]")
    post = _sample(cal, moves, 32, 6000, seed=seed)
    # exact: ȳ_ℓ | μ, τ ~ N(μ, τ² + σ²/n_ℓ), θ_ℓ integrated out in closed form
    mu = np.linspace(-6, 7, 801)
    tau = np.linspace(1e-6, 8, 1200)
    M, T = np.meshgrid(mu, tau, indexing="ij")
    var = T[..., None] ** 2 + sigma**2 / nl
    logp = (
        mu_prior.scipy().logpdf(M)
        + tau_prior.scipy().logpdf(T)
        + stats.norm.logpdf(ybar, M[..., None], np.sqrt(var)).sum(-1)
    )
    _check(post, "theta.mean", *_moments(mu, logsumexp(logp, axis=1)))
    _check(post, "theta.scale", *_moments(tau, logsumexp(logp, axis=0)))


def test_hierarchical_normal_against_2d_quadrature(moves):
    _hierarchy_against_quadrature(moves, (2, 3, 5, 8, 4), data_seed=1, seed=5, centered=False)


def test_centred_hierarchy_against_2d_quadrature(moves):
    """Sampled centred (``centered=True``) on informative campaigns, where the centred form
    is the efficient one."""
    _hierarchy_against_quadrature(moves, (20, 30, 25, 40, 15), data_seed=6, seed=9, centered=True)


def test_koh_rbf_discrepancy_against_3d_quadrature(moves):
    rng = np.random.default_rng(2)
    x = np.linspace(0, 1, 10)
    sigma = 0.05
    y = 1.3 * x + 0.15 * np.sin(5 * x) + sigma * rng.standard_normal(x.size)
    th_prior, s_prior, l_prior = Normal(1.0, 1.0), HalfNormal(0.5), LogNormal(np.log(0.3), 0.5)
    sim = FunctionSimulator(
        lambda X, T: T[:, :1] * X[:, :1], ("x",), ("theta",), ("y",), vectorized=True
    )
    cal = Calibrator(
        sim,
        [Parameter("theta", prior=th_prior)],
        [Campaign("A", x=x, y=y, noise_sd=sigma)],
        discrepancy=Discrepancy("shared", "rbf", scale_prior=s_prior, lengthscale_prior=l_prior),
        noise="known",
    )
    post = _sample(cal, moves, 32, 5000, seed=7)
    # exact: y | θ, s, ℓ ~ N(θx, s²K_ℓ + σ²I); quadrature over θ and log s, log ℓ
    th = np.linspace(-1.5, 4.0, 221)
    ls_ = np.linspace(np.log(1e-3), np.log(3.0), 70)
    ll_ = np.linspace(np.log(0.02), np.log(3.0), 70)
    d2 = (x[:, None] - x[None, :]) ** 2
    logp = np.empty((th.size, ls_.size, ll_.size))
    for b, lsv in enumerate(ls_):
        for c, llv in enumerate(ll_):
            C = np.exp(2 * lsv) * np.exp(-0.5 * d2 / np.exp(2 * llv)) + sigma**2 * np.eye(x.size)
            C += 1e-10 * np.var(y) * np.eye(x.size)
            Lc = np.linalg.cholesky(C)
            r = y[None, :] - th[:, None] * x[None, :]
            v = np.linalg.solve(Lc, r.T)
            ll = -0.5 * (v * v).sum(0) - np.log(np.diag(Lc)).sum()
            # the log-scale grid carries the Jacobians s and ℓ
            logp[:, b, c] = (
                ll
                + th_prior.scipy().logpdf(th)
                + s_prior.scipy().logpdf(np.exp(lsv))
                + lsv
                + l_prior.scipy().logpdf(np.exp(llv))
                + llv
            )
    _check(post, "theta", *_moments(th, logsumexp(logp, axis=(1, 2))))
