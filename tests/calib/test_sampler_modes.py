"""Other modes found by the MAP search (calib._sampler_modes): their Laplace masses against
quadrature, and the warning a sample() run gives when its walkers all start in one of them.

η(x, θ) = θ²·x with data from θ = 1 has modes at θ = ±1; θ's prior N(0.5, 1) on [−2, 2]
weights them unequally. The posterior is one-dimensional, so the mass of each mode is a
quadrature of exp(log p) over the unconstrained coordinate, split at θ = 0.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp

from calib import Calibrator, Campaign, ConvergenceWarning, Parameter
from calib._sampler_modes import other_modes
from calib._sampler_starts import find_map, laplace_cov
from calib.priors import Normal, Uniform
from simulators import FunctionSimulator

X = np.linspace(0.5, 2.0, 8)
Y = X + 0.05 * np.random.default_rng(3).standard_normal(8)


def _calibrator(power: int, prior) -> Calibrator:
    sim = FunctionSimulator(
        lambda Xr, T: T[:, :1] ** power * Xr[:, :1], ("x",), ("theta",), ("y",), True
    )
    return Calibrator(
        sim,
        [Parameter("theta", -2.0, 2.0, prior=prior)],
        [Campaign("field", x=X, y=Y, noise_sd=0.05)],
        noise="known",
    )


def _quadrature_masses(model) -> tuple[float, float]:
    """log masses of θ < 0 and θ > 0: the unconstrained coordinate on a fine grid (the map
    to θ is increasing, so its sign splits the two modes where θ's does)."""
    u = np.linspace(-8.0, 8.0, 400001)
    lp = np.concatenate([model.log_posterior_numpy(c[:, None]) for c in np.array_split(u, 400)])
    return float(logsumexp(lp[u < 0])), float(logsumexp(lp[u > 0]))


def test_laplace_mass_of_the_other_mode_against_quadrature():
    model = _calibrator(2, Normal(0.5, 1.0)).model
    u_map, lp_map, optima = find_map(model, model.sample_prior(np.random.default_rng(0), 8))
    modes = other_modes(model, optima, u_map, lp_map, laplace_cov(model, u_map))
    assert u_map[0] > 0  # the prior favours θ = +1
    assert len(modes) == 1 and modes[0]["u"][0] < 0
    lo, hi = _quadrature_masses(model)
    exact = float(np.exp(lo - hi))
    assert 0.2 < exact < 0.6  # the prior's weight, about e^(−1)
    assert modes[0]["mass"] == pytest.approx(exact, rel=0.05), (modes[0]["mass"], exact)


def test_a_mode_below_the_mass_threshold_is_not_reported():
    model = _calibrator(2, Normal(0.5, 1.0)).model
    u_map, lp_map, optima = find_map(model, model.sample_prior(np.random.default_rng(0), 8))
    cov_map = laplace_cov(model, u_map)
    assert other_modes(model, optima, u_map, lp_map, cov_map, min_mass=0.9) == []
    # the same optimum found twice (the MAP itself) is one mode
    assert other_modes(model, [(lp_map, u_map, True)] * 3, u_map, lp_map, cov_map) == []


def test_sample_warns_when_the_walkers_all_start_in_one_of_two_modes():
    cal = _calibrator(2, Uniform(-2.0, 2.0))
    with pytest.warns(ConvergenceWarning, match="more than one mode") as caught:
        cal.sample(n_steps=40, seed=1, progress=False)
    text = next(str(w.message) for w in caught if "more than one mode" in str(w.message))
    assert "theta = -0.98" in text and "theta = 0.98" in text  # the two modes, ±1
    assert "init=" in text and "Several modes" in text


def test_a_unimodal_posterior_gives_no_mode_warning():
    cal = _calibrator(1, Uniform(-2.0, 2.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cal.sample(n_steps=40, seed=1, progress=False)
    assert not [w for w in caught if "more than one mode" in str(w.message)]
