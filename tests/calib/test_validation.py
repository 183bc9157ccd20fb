"""Priors, parameters, campaigns and the Calibrator: checks, transforms, clear errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from calib import Calibrator, Campaign, Discrepancy, Parameter
from calib.priors import Gamma, HalfCauchy, HalfNormal, LogNormal, Normal, Prior, Uniform
from simulators import FunctionSimulator

PRIORS = [
    Normal(0.3, 1.7),
    LogNormal(-0.2, 0.6),
    HalfNormal(2.5),
    HalfCauchy(0.7),
    Uniform(-1, 3),
    Gamma(2.5, 1.3),
]


@pytest.mark.parametrize("prior", PRIORS, ids=lambda p: type(p).__name__)
def test_prior_log_prob_matches_scipy(prior):
    lo, hi = prior.support
    x = np.linspace(max(lo, -5) + 1e-3, min(hi, 8) - 1e-3, 41)
    got = prior.log_prob(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(got, prior.scipy().logpdf(x), rtol=1e-12, atol=1e-12)
    if math.isfinite(lo):
        assert prior.log_prob(torch.tensor([lo - 1.0])).item() == -math.inf
    draws = prior.sample(np.random.default_rng(0), 20000)
    assert stats.kstest(draws, prior.scipy().cdf).pvalue > 1e-3
    assert Prior.from_dict(prior.to_dict()) == prior


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: Normal(0, -1), "Normal: sd must be finite and > 0, got -1"),
        (lambda: Normal(float("nan"), 1), "Normal: mean must be finite"),
        (lambda: LogNormal(0, 0), "LogNormal: sigma must be finite and > 0, got 0"),
        (lambda: HalfNormal(float("inf")), "HalfNormal: scale must be finite and > 0"),
        (lambda: HalfCauchy(-2), "HalfCauchy: scale must be finite and > 0, got -2"),
        (lambda: Uniform(2, 1), "Uniform: upper must be > lower, got lower=2, upper=1"),
        (lambda: Gamma(0, 1), "Gamma: shape must be finite and > 0, got 0"),
        (lambda: Gamma(1, "fast"), "Gamma: rate must be a real number, got 'fast'"),
    ],
)
def test_prior_argument_errors(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@given(st.floats(allow_nan=False, allow_infinity=False, max_value=0.0, min_value=-1e300))
def test_nonpositive_scales_are_refused(v):
    for cls in (HalfNormal, HalfCauchy):
        with pytest.raises(ValueError, match="scale must be finite and > 0"):
            cls(v)


BOUNDS = [(None, None), (2.0, None), (None, -1.0), (-3.0, 5.0), (150e9, 250e9)]


@pytest.mark.parametrize("lower,upper", BOUNDS)
@given(u=st.floats(min_value=-8, max_value=8))
@settings(max_examples=40, deadline=None)
def test_bijection_round_trip_and_log_jacobian(lower, upper, u):
    p = Parameter("t", lower, upper, prior=Normal(0.0, 1e12))
    t, logdet = p.to_constrained(torch.tensor([u], dtype=torch.float64))
    back = p.to_unconstrained(t.numpy())[0]
    assert back == pytest.approx(u, abs=1e-6 * max(1.0, abs(u)))
    h = 1e-6
    tp = p.to_constrained(torch.tensor([u + h], dtype=torch.float64))[0].item()
    tm = p.to_constrained(torch.tensor([u - h], dtype=torch.float64))[0].item()
    fd = math.log(abs(tp - tm) / (2 * h))
    assert logdet.item() == pytest.approx(fd, abs=1e-5)


@given(lo=st.floats(-1e6, 1e6), width=st.floats(-1e6, 0.0))
def test_reversed_bounds_are_refused(lo, width):
    with pytest.raises(ValueError, match="lower must be < upper"):
        Parameter("E", lower=lo, upper=lo + width)


def test_parameter_errors():
    with pytest.raises(ValueError, match="unbounded parameter needs a prior, got prior=None"):
        Parameter("m")
    with pytest.raises(ValueError, match="pooling must be one of"):
        Parameter("E", 0, 1, pooling="some")
    with pytest.raises(TypeError, match="prior must be a calib.priors prior"):
        Parameter("E", 0, 1, prior="normal")
    with pytest.raises(ValueError, match="does not overlap the bounds"):
        Parameter("E", -3, -1, prior=HalfNormal(1.0))
    assert Parameter("E", 0, 1).prior == Uniform(0, 1)


@given(n=st.integers(1, 20), extra=st.integers(1, 5))
def test_campaign_row_mismatch_named(n, extra):
    with pytest.raises(
        ValueError, match=f"Campaign 'batch-B': y has {n} rows but x has {n + extra}"
    ):
        Campaign("batch-B", x=np.zeros((n + extra, 2)), y=np.zeros(n))


def test_campaign_errors():
    with pytest.raises(ValueError, match="x contains NaN or inf in 1 row"):
        Campaign("A", x=[[0.0], [np.nan]], y=[1.0, 2.0])
    with pytest.raises(ValueError, match="y has no rows"):
        Campaign("A", x=np.zeros((0, 1)), y=[])
    with pytest.raises(ValueError, match="no observed value"):
        Campaign("A", x=[1.0, 2.0], y=[np.nan, np.nan])
    with pytest.raises(ValueError, match="noise_sd must be finite and > 0"):
        Campaign("A", x=[1.0], y=[1.0], noise_sd=0.0)
    with pytest.raises(ValueError, match="y contains inf"):
        Campaign("A", x=[1.0], y=[np.inf])


def _sim():
    return FunctionSimulator(
        lambda X, T: T[:, :1] * X[:, :1], ("x",), ("k",), ("y",), vectorized=True
    )


def test_calibrator_errors_before_any_work():
    camp = Campaign("A", x=[1.0, 2.0], y=[1.0, 2.1])
    k = Parameter("k", 0, 5)
    with pytest.raises(ValueError, match=r"\['kk'\] are not parameters of the simulator"):
        Calibrator(_sim(), [Parameter("kk", 0, 1)], [camp])
    with pytest.raises(ValueError, match=r"campaigns: duplicate names \[.A.\]"):
        Calibrator(_sim(), [k], [camp, Campaign("A", x=[1.0], y=[1.0])])
    with pytest.raises(
        ValueError, match=r"noise='known' but campaign\(s\) \['A'\] have no noise_sd"
    ):
        Calibrator(_sim(), [k], [camp], noise="known")
    with pytest.raises(ValueError, match="x has 2 columns but the simulator has 1"):
        Calibrator(_sim(), [k], [Campaign("B", x=np.ones((2, 2)), y=[1.0, 2.0])])
    with pytest.raises(ValueError, match="noise must be one of"):
        Calibrator(_sim(), [k], [camp], noise="gaussian")
    with pytest.raises(ValueError, match="discrepancy: mode must be one of|mode must be one of"):
        Calibrator(_sim(), [k], [camp], discrepancy="global")
    with pytest.raises(ValueError, match=r"hyperpriors: 'k' is not a partially pooled parameter"):
        Calibrator(_sim(), [k], [camp], hyperpriors={"k": {"mean": Normal(0, 1)}})
    with pytest.raises(ValueError, match="partially pooled, unbounded and has no prior"):
        Calibrator(_sim(), [Parameter("k", pooling="partial")], [camp])
    with pytest.raises(ValueError, match="campaigns must list at least one Campaign"):
        Calibrator(_sim(), [k], [])
    with pytest.raises(TypeError, match="model must be a simulator"):
        Calibrator(object(), [k], [camp])
    cal = Calibrator(_sim(), [k], [camp], discrepancy=Discrepancy("shared"))
    with pytest.raises(ValueError, match="n_walkers must be an even integer"):
        cal.sample(n_walkers=3, n_steps=10)
    with pytest.raises(ValueError, match=r"U: expected shape \(n_walkers, 4\)"):
        cal.log_posterior(np.zeros((2, 3)))


def test_posterior_draws_naming():
    rng = np.random.default_rng(0)
    camps = [Campaign(c, x=rng.uniform(0, 1, 5), y=rng.normal(1, 0.1, 5)) for c in ("A", "B")]
    cal = Calibrator(_sim(), [Parameter("k", 0, 5, pooling="partial")], camps, noise="shared")
    post = cal.sample(n_walkers=12, n_steps=200, seed=0, autocorr_stop=False)
    n = 100 * 12
    assert post.draws("k", campaign="A").shape == (n,)
    assert post.draws("k.mean").shape == (n,) and post.draws("k.scale").min() > 0
    assert post.draws("noise.sd", campaign="B").shape == (n,)  # a global quantity, any campaign
    with pytest.raises(ValueError, match="differs between campaigns: give campaign="):
        post.draws("k")
    with pytest.raises(ValueError, match="campaign must be one of"):
        post.draws("k", campaign="C")
    with pytest.raises(KeyError, match="no quantity 'q'"):
        post.draws("q")
    s = post.summary()
    assert {r["name"] for r in s.rows} == set(post.names) and "k.scale" in str(s)


def test_same_seed_same_chain():
    camp = Campaign("A", x=[0.2, 0.5, 0.9], y=[0.4, 1.1, 1.7])
    cal = Calibrator(_sim(), [Parameter("k", 0, 5)], [camp], noise="shared")
    a = cal.sample(n_walkers=8, n_steps=50, seed=4, autocorr_stop=False)
    b = cal.sample(n_walkers=8, n_steps=50, seed=4, autocorr_stop=False)
    np.testing.assert_array_equal(a.chain, b.chain)


def test_results_print_short():
    """issue 12: a PosteriorPrediction's repr was 1,310 characters of raw arrays."""
    from calib.interfaces import Prediction
    from calib.posterior import PosteriorPrediction

    rng = np.random.default_rng(0)
    m = rng.normal(size=(200, 2))
    p = PosteriorPrediction(m, m**2, m - 1, m + 1, rng.normal(size=(50, 200, 2)), 0.9, ("a", "b"))
    assert len(repr(p)) < 200 and "200 points × 2 outputs (a, b)" in repr(p)
    assert "50 draws, 90% interval" in repr(p)
    q = Prediction(m, m**2)
    assert len(repr(q)) < 200 and "200 points × 2 outputs" in repr(q)


def test_replicates_that_contradict_a_known_noise_are_reported():
    """issue 13 item 14: exact duplicate x, noise_sd 1e-8, replicates scattering by 0.05."""
    rng = np.random.default_rng(0)
    x = np.repeat(np.linspace(0, 1, 5), 3)
    y = 1.0 + x + 0.05 * rng.standard_normal(15)
    with pytest.warns(
        UserWarning, match=r"replicates .* scatter by an sd of 0.0\d+ where noise_sd says 1e-08"
    ):
        Calibrator(
            _sim(), [Parameter("k", 0, 5)], [Campaign("A", x=x, y=y, noise_sd=1e-8)], noise="known"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # replicates that agree with the stated noise: silent
        Calibrator(
            _sim(), [Parameter("k", 0, 5)], [Campaign("A", x=x, y=y, noise_sd=0.05)], noise="known"
        )
