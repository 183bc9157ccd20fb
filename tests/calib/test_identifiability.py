"""The identifiability report (issue 11, item 3): it flags θ exactly confounded with δ, not
θ beside a zero δ; its contraction against the conjugate closed form within Monte Carlo
error; its correlations and δ share against the draws and the closed-form δ by hand."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import calib
from calib import (
    Calibrator,
    Campaign,
    Discrepancy,
    IdentifiabilityWarning,
    Parameter,
    Posterior,
)
from calib.diagnostics import ess
from calib.priors import HalfNormal, LogNormal, Normal
from simulators import FunctionSimulator

TRADED, BARELY = "traded against δ", "barely informed"


def _sim(f):
    return FunctionSimulator(f, ("x",), ("theta",), ("y",), vectorized=True)


def _sample(cal, n_steps=300):
    # a small budget: the report's flags hold far from their thresholds, so these posteriors
    # need not meet the convergence targets (the closed-form test states the ESS it uses)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", calib.ConvergenceWarning)
        warnings.simplefilter("ignore", calib.SimulatorWarning)
        return cal.sample(
            n_walkers=16, n_steps=n_steps, warmup=100, seed=1, moves="hmc", autocorr_stop=False
        )


@pytest.fixture(scope="module")
def confounded():
    """η = θ (a constant) and a shared δ with a long length-scale, which is a constant as
    well: only θ + δ is identified, and θ's prior sits away from the data."""
    rng = np.random.default_rng(3)
    x = np.linspace(0, 1, 8)
    camp = Campaign("a", x=x, y=2.0 + 0.05 * rng.standard_normal(8), noise_sd=0.05)
    disc = Discrepancy(
        "shared", scale_prior=HalfNormal(5.0), lengthscale_prior=LogNormal(np.log(5.0), 0.5)
    )
    sim = _sim(lambda X, T: T[:, :1] + 0.0 * X[:, :1])
    cal = Calibrator(
        sim, [Parameter("theta", prior=Normal(0.0, 1.0))], [camp], discrepancy=disc, noise="known"
    )
    return _sample(cal)


@pytest.fixture(scope="module")
def zero_delta():
    """η = θ·x and data made exactly by it (plus small noise), with a default δ."""
    rng = np.random.default_rng(3)
    x = np.linspace(0.2, 4, 10)
    camp = Campaign("a", x=x, y=1.5 * x + 0.05 * rng.standard_normal(10), noise_sd=0.05)
    sim = _sim(lambda X, T: T[:, :1] * X[:, :1])
    prm = Parameter("theta", prior=Normal(1.0, 1.0))
    return _sample(Calibrator(sim, [prm], [camp], discrepancy=Discrepancy("shared"), noise="known"))


def test_theta_confounded_with_delta_is_flagged_and_summary_says_so(confounded):
    with pytest.warns(IdentifiabilityWarning, match=r"theta: .*traded against δ"):
        rep = confounded.identifiability()
    row = rep["theta"]
    assert TRADED in row["flags"] and BARELY in row["flags"], rep
    assert rep.delta and rep.warnings and "zero_at" in rep.warnings[0]
    assert "traded against δ" in str(rep)
    json.dumps(rep.to_dict())  # plain data
    s = confounded.summary()
    assert s.notes and s.notes[0].startswith("theta: ")
    assert "\nnote: theta: " in str(s)
    assert "notes" not in s.to_dict()  # the rows only, as `calib summary --json` prints them


def test_theta_beside_a_zero_delta_is_not_flagged(zero_delta):
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        rep = zero_delta.identifiability()
    row = rep["theta"]
    assert row["flags"] == [] and rep.warnings == [], rep
    assert row["contraction"] > 0.9
    s = zero_delta.summary()
    assert s.notes == [] and "note:" not in str(s)


def test_contraction_matches_the_conjugate_closed_form():
    # η = θ·x, θ ~ N(0, s0²), known noise σ: Var_post = 1 / (1/s0² + Σx²/σ²)
    rng = np.random.default_rng(7)
    x, sigma, s0 = np.linspace(0.2, 1.0, 5), 0.8, 1.0
    camp = Campaign("a", x=x, y=0.7 * x + sigma * rng.standard_normal(5), noise_sd=sigma)
    sim = _sim(lambda X, T: T[:, :1] * X[:, :1])
    post = _sample(
        Calibrator(sim, [Parameter("theta", prior=Normal(0.0, s0))], [camp], noise="known"), 600
    )
    rep = post.identifiability()
    row = rep["theta"]
    v_post = 1.0 / (1.0 / s0**2 + (x**2).sum() / sigma**2)
    exact = 1.0 - v_post / s0**2
    assert row["prior_var"] == s0**2  # the prior's own variance, not a Monte Carlo one
    # the error is that of the sample variance: Var·√((κ−1)/ESS), κ = 3 for a normal, with
    # the ESS of (θ − θ̄)² (test_sampler_exact.py)
    th = post._compute_quantities()["theta"]
    n_eff = float(ess((th - th.mean()) ** 2))
    assert n_eff >= 400, n_eff
    tol = 4 * v_post * np.sqrt(2.0 / n_eff) / s0**2
    assert abs(row["contraction"] - exact) < tol, (row["contraction"], exact, tol)
    # no δ: contraction only
    assert not rep.delta and row["corr"] == {} and row["delta_share"] is None
    assert rep.shares == [] and "no discrepancy" in str(rep)


def test_correlations_are_those_of_the_draws(confounded):
    rep = confounded._identifiability(cheap=True)
    row = rep["theta"]
    th = confounded.draws("theta")
    want = {
        "log discrepancy.scale": np.corrcoef(th, np.log(confounded.draws("discrepancy.scale"))),
        "log discrepancy.lengthscale[x]": np.corrcoef(
            th, np.log(confounded.draws("discrepancy.lengthscale[x]"))
        ),
    }
    assert set(row["corr"]) == set(want)
    for label, c in want.items():
        assert row["corr"][label] == pytest.approx(c[0, 1], rel=1e-9, abs=1e-12)
    top = max(want, key=lambda k: abs(want[k][0, 1]))
    assert row["corr_with"] == top
    assert row["max_abs_corr"] == pytest.approx(abs(want[top][0, 1]), rel=1e-9)


def test_delta_share_against_the_closed_form_conditional():
    # every draw the same point: δ̂ is the closed-form conditional mean, η̂ = k·x
    rng = np.random.default_rng(8)
    camps = []
    for c in range(2):
        x = rng.uniform(0, 2, 6)
        y = 1.2 * x + 0.3 * np.sin(2 * x) + 0.05 * rng.standard_normal(6)
        camps.append(Campaign(f"c{c}", x=x, y=y, noise_sd=0.05))
    disc = Discrepancy("shared", scale_prior=HalfNormal(0.5), lengthscale_prior=LogNormal(0.0, 0.5))
    cal = Calibrator(
        _sim(lambda X, T: T[:, :1] * X[:, :1]),
        [Parameter("theta", prior=Normal(1.0, 1.0))],
        camps,
        discrepancy=disc,
        noise="known",
    )
    k, s, ell = 1.1, 0.3, 0.7
    u = np.array([k, np.log(s), np.log(ell)])
    post = Posterior(
        cal, chain=np.tile(u, (20, 2, 1)), log_prob=np.zeros((20, 2)), acceptance=np.ones(2), burn=0
    )
    rep = post.identifiability()
    xo = np.concatenate([c.x[:, 0] for c in camps])
    yo = np.concatenate([c.y for c in camps])
    K = s**2 * np.exp(-0.5 * ((xo[:, None] - xo[None, :]) / ell) ** 2)
    C = K + (0.05**2 + cal.model.jitter) * np.eye(xo.size)
    d = K @ np.linalg.solve(C, yo - k * xo)
    eta = k * xo

    def share(sl):
        sd2 = (d[sl] ** 2).sum()
        return sd2 / (sd2 + ((eta[sl] - yo[sl].mean()) ** 2).sum())

    got = {r["campaign"]: r["share"] for r in rep.shares}
    assert got.keys() == {"c0", "c1", None}
    assert got["c0"] == pytest.approx(share(slice(0, 6)), rel=1e-9)
    assert got["c1"] == pytest.approx(share(slice(6, 12)), rel=1e-9)
    assert got[None] == pytest.approx(share(slice(None)), rel=1e-9)
    assert rep["theta"]["delta_share"] == got[None]  # a θ common to both campaigns: all entries


@pytest.mark.parametrize("n_draws", [0, 2.5, "200"])
def test_a_bad_n_draws_is_refused(zero_delta, n_draws):
    with pytest.raises(ValueError, match=r"n_draws: expected a positive integer, got"):
        zero_delta.identifiability(n_draws=n_draws)


def test_data_only_sd_is_the_closed_form_and_a_zero_delta_widens_little(zero_delta):
    # η = θ·x with known noise σ: the data-only sd is σ/√Σx² at every θ (linear: the
    # central difference is exact up to rounding)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        row = zero_delta.identifiability()["theta"]
    x = np.linspace(0.2, 4, 10)
    assert row["data_sd"] == pytest.approx(0.05 / np.sqrt((x**2).sum()), rel=1e-6)
    assert row["widening"] == pytest.approx(np.sqrt(row["post_var"]) / row["data_sd"])
    assert row["widening"] < 25  # measured 17: a δ that can mimic θx, honestly widened
