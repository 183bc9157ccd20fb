"""Pooling behaves as the theory says; δ draws follow their closed-form conditional."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from calib import Calibrator, Campaign, Discrepancy, Parameter, Posterior
from calib.priors import HalfNormal, LogNormal, Normal
from simulators import FunctionSimulator


def _linear():
    return FunctionSimulator(
        lambda X, T: T[:, :1] * X[:, :1], ("x",), ("k",), ("y",), vectorized=True
    )


def test_partial_pooling_lies_between_and_shrinks_small_campaigns_more():
    rng = np.random.default_rng(4)
    sizes = {"small": 3, "medium": 8, "large": 30}
    true_k = {"small": 2.6, "medium": 1.4, "large": 2.0}
    camps = []
    for name, n in sizes.items():
        x = rng.uniform(0.5, 1.5, n)
        camps.append(
            Campaign(name, x=x, y=true_k[name] * x + 0.3 * rng.standard_normal(n), noise_sd=0.3)
        )
    means, mcse = {}, {}
    for pooling in ("complete", "none", "partial"):
        cal = Calibrator(
            _linear(),
            [Parameter("k", prior=Normal(2.0, 2.0), pooling=pooling)],
            camps,
            noise="known",
            hyperpriors={"k": {"mean": Normal(2.0, 2.0), "scale": HalfNormal(0.5)}}
            if pooling == "partial"
            else None,
        )
        # the gradient move converges here (R̂ < 1.01, ESS ≥ 400: checked), the DE mix did not
        post = cal.sample(n_walkers=16, seed=11, moves="hmc")
        assert post.converged, post.diagnostics()["worst"]
        means[pooling] = {c: post.draws("k", campaign=c).mean() for c in sizes}
        table = post.summary()
        mcse[pooling] = {
            c: table["k" if pooling == "complete" else f"k[{c}]"]["mcse"] for c in sizes
        }
    shrink = {}
    for c in sizes:
        lo, hi = sorted([means["none"][c], means["complete"][c]])
        # the large campaign is barely shrunk (~0.001): compare within 4 Monte Carlo errors
        tol = 4 * np.sqrt(sum(mcse[p][c] ** 2 for p in mcse))
        assert lo - tol < means["partial"][c] < hi + tol, (c, means, tol)
        shrink[c] = (means["none"][c] - means["partial"][c]) / (
            means["none"][c] - means["complete"][c]
        )
    assert shrink["small"] > shrink["medium"] > shrink["large"], shrink


def _delta_problem():
    rng = np.random.default_rng(8)
    camps = []
    for l in range(2):
        x = rng.uniform(0, 2, 6)
        camps.append(
            Campaign(
                f"c{l}",
                x=x,
                y=1.2 * x + 0.3 * np.sin(2 * x) + 0.05 * rng.standard_normal(6),
                noise_sd=0.05,
            )
        )
    return camps


@pytest.mark.parametrize("mode", ["shared", "independent"])
@pytest.mark.parametrize("kernel", ["rbf", "matern52"])
def test_delta_draws_match_closed_form_conditional(mode, kernel):
    camps = _delta_problem()
    disc = Discrepancy(
        mode, kernel, scale_prior=HalfNormal(0.5), lengthscale_prior=LogNormal(0.0, 0.5)
    )
    cal = Calibrator(
        _linear(), [Parameter("k", prior=Normal(1.0, 1.0))], camps, discrepancy=disc, noise="known"
    )
    # a posterior whose every draw is the same point: the δ draws are then exactly N(m, V)
    u = np.array([1.1, np.log(0.3), np.log(0.7)])  # k, log s, log ℓ
    post = Posterior(
        cal,
        chain=np.tile(u, (4000, 2, 1)),
        log_prob=np.zeros((4000, 2)),
        acceptance=np.ones(2),
        burn=0,
    )
    xs = np.array([0.1, 0.9, 1.7, 2.5])
    pred = post.discrepancy(xs[:, None], campaign="c1", n_draws=None, seed=1)
    # closed form, written independently: stack the data the δ of c1 sees
    k, s, ell = 1.1, 0.3, 0.7

    def kern(a, b):
        r = np.abs(a[:, None] - b[None, :]) / ell
        if kernel == "rbf":
            return s**2 * np.exp(-0.5 * r**2)
        return s**2 * (1 + np.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-np.sqrt(5) * r)

    used = camps if mode == "shared" else [camps[1]]
    xo = np.concatenate([c.x[:, 0] for c in used])
    yo = np.concatenate([c.y for c in used])
    C = kern(xo, xo) + 0.05**2 * np.eye(xo.size) + cal.model.jitter * np.eye(xo.size)
    Ks = kern(xs, xo)
    m = Ks @ np.linalg.solve(C, yo - k * xo)
    V = kern(xs, xs) - Ks @ np.linalg.solve(C, Ks.T)
    d = pred.draws[:, :, 0]
    n = d.shape[0]
    np.testing.assert_allclose(pred.mean[:, 0], m, rtol=1e-9, atol=1e-12)  # exact means, averaged
    np.testing.assert_allclose(pred.sd[:, 0], np.sqrt(np.diag(V)), rtol=1e-7)
    # the draws: mean within 4 standard errors, covariance within 4 standard errors per entry
    se = np.sqrt(np.diag(V) / n)
    assert np.all(np.abs(d.mean(0) - m) < 4 * se)
    emp = np.cov(d.T)
    se_cov = np.sqrt((V**2 + np.outer(np.diag(V), np.diag(V))) / n)
    assert np.all(np.abs(emp - V) < 4 * se_cov + 1e-15)
    # Hotelling-style check of the whole vector
    z = np.linalg.solve(np.linalg.cholesky(V + 1e-14 * np.eye(4)), (d.mean(0) - m)) * np.sqrt(n)
    assert stats.chi2(4).sf((z**2).sum()) > 1e-4


def test_reality_prediction_is_simulator_plus_delta():
    camps = _delta_problem()
    disc = Discrepancy(
        "shared", "rbf", scale_prior=HalfNormal(0.5), lengthscale_prior=LogNormal(0.0, 0.5)
    )
    cal = Calibrator(
        _linear(), [Parameter("k", prior=Normal(1.0, 1.0))], camps, discrepancy=disc, noise="known"
    )
    u = np.array([1.1, np.log(0.3), np.log(0.7)])
    post = Posterior(
        cal, chain=np.tile(u, (50, 2, 1)), log_prob=np.zeros((50, 2)), acceptance=np.ones(2), burn=0
    )
    xs = np.array([[0.3], [1.1]])
    dz = post.discrepancy(xs, campaign="c0", n_draws=None)
    pz = post.predict(xs, campaign="c0", n_draws=None)
    np.testing.assert_allclose(pz.mean, 1.1 * xs + dz.mean, rtol=1e-12)
    np.testing.assert_allclose(pz.sd, dz.sd, rtol=1e-12)
    noisy = post.predict(xs, campaign="c0", noise=True, n_draws=None)
    np.testing.assert_allclose(noisy.sd, np.sqrt(dz.sd**2 + 0.05**2), rtol=1e-12)


def test_summary_gives_the_population_in_the_parameters_own_units():
    """issue 12: E.mean and E.scale act on u = g(E); E.typical = g⁻¹(μ) and E.new =
    g⁻¹(μ + τz) are in E's units, computed here from the draws by hand."""
    rng = np.random.default_rng(5)
    sim = FunctionSimulator(
        lambda X, T: T[:, :1] * X[:, :1], ("x",), ("E",), ("y",), vectorized=True
    )
    x = np.linspace(1, 2, 5)
    camps = [
        Campaign(c, x=x, y=e * x + 0.1 * rng.standard_normal(5), noise_sd=0.1)
        for c, e in (("A", 2.0), ("B", 2.4), ("C", 2.2))
    ]
    E = Parameter("E", 1.0, 4.0, pooling="partial")
    post = Calibrator(sim, [E], camps, noise="known").sample(
        n_walkers=8, n_steps=60, warmup=30, seed=1, autocorr_stop=False
    )
    s = post.summary()
    mu = post.draws("E.mean").reshape(-1)
    typical = 1.0 + 3.0 / (1.0 + np.exp(-mu))  # g⁻¹ of the bounds' logit
    assert s["E.typical"]["mean"] == pytest.approx(typical.mean(), rel=1e-12)
    assert s["E.typical"]["q50"] == pytest.approx(np.quantile(typical, 0.5), rel=1e-12)
    assert 1.0 < s["E.new"]["q5"] < s["E.typical"]["q50"] < s["E.new"]["q95"] < 4.0
    assert s["E.new"]["sd"] > s["E.typical"]["sd"]  # a new campaign adds the spread τ
    assert "E.typical" not in post.diagnostics()["rhat"]  # not part of the verdict
