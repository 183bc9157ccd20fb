"""The gradient move's normal-score coordinates of ``BetaRho(1, b)`` length-scales
(calib._hmc_coords): the map, its Jacobian, the prior it turns into N(0, 1), a chain on the
heavy-tailed prior against Beta's CDF, and the coordinates' place in a calibration's state."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import emcee
import numpy as np
import pytest
import torch
from scipy import stats

from calib import Calibrator, Campaign, Discrepancy, Parameter
from calib._hmc_coords import BetaRhoScores, ComposedFlip, hmc_coordinates
from calib._sampler_drive import _scores
from calib._sampler_moves import pooling_flip
from calib.archive import read_chain
from calib.diagnostics import ess
from calib.hmc import ChEESMove, PoolingFlip
from calib.priors import BetaRho, GammaPrecision, LogNormal, Normal
from simulators import FunctionSimulator

# the SEPIA-style calibration shared with the other prior tests (tests/reference)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
from sepia_delta import sepia_calibrator  # noqa: E402

Z = np.array([-30.0, -8, -3, -1, 0, 0.5, 1, 3, 6, 12, 20])
MAP = BetaRhoScores([1], [0.3], [0.1])


def _y(z):
    return np.column_stack([np.full_like(z, 0.7), z])


def test_map_round_trips_and_numpy_equals_torch_deep_in_both_tails():
    Y = _y(Z)
    X = MAP.to_model(Y)
    assert np.all(np.isfinite(X)) and np.all(np.diff(X[:, 1]) > 0)  # increasing in z
    np.testing.assert_allclose(MAP.to_other(X), Y, rtol=0, atol=1e-12)
    Xt, ld = MAP.to_model_torch(torch.tensor(Y))
    np.testing.assert_allclose(Xt.numpy(), X, rtol=1e-14, atol=1e-12)
    np.testing.assert_allclose(ld.numpy(), MAP.log_det(Y), rtol=1e-13, atol=1e-12)


def test_log_det_is_the_log_derivative_by_finite_differences():
    Y, h = _y(Z), 1e-6
    up, down = MAP.to_model(Y + [0.0, h]), MAP.to_model(Y - [0.0, h])
    fd = (up[:, 1] - down[:, 1]) / (2 * h)
    np.testing.assert_allclose(MAP.log_det(Y), np.log(fd), rtol=0, atol=1e-7)


@pytest.mark.parametrize("b, span", [(0.1, 0.3), (0.1, 15.0), (1.0, 2.0), (3.0, 1.0)])
def test_the_prior_in_normal_scores_is_a_standard_normal(b, span):
    """log p(ℓ) + log ℓ (the density of x = log ℓ) + log|dx/dz| = log φ(z): the closed form
    the map is built for, with BetaRho's density computed on its own."""
    m = BetaRhoScores([0], [span], [b])
    z = np.linspace(-6.0, 8.0, 57)
    x = m.to_model(z[:, None])[:, 0]
    log_px = BetaRho(1.0, b, span).log_prob(torch.exp(torch.tensor(x))).numpy() + x
    np.testing.assert_allclose(log_px + m.log_det(z[:, None]), stats.norm.logpdf(z), atol=1e-9)


def test_gradient_is_finite_everywhere_a_trajectory_can_reach():
    Y = torch.tensor(_y(np.linspace(-38.0, 38.0, 153)), requires_grad=True)
    X, ld = MAP.to_model_torch(Y)
    (g,) = torch.autograd.grad((X.sum(1) + ld).sum(), Y)
    assert torch.isfinite(X).all() and torch.isfinite(ld).all() and torch.isfinite(g).all()


def test_composed_with_a_pooling_flip_is_both_maps():
    flip = PoolingFlip([0], [2], [[3, 4]], [True])
    scores = BetaRhoScores([1], [0.3], [0.1])
    both = ComposedFlip(flip, scores)
    Y = np.random.default_rng(0).standard_normal((5, 5))
    X = both.to_model(Y)
    np.testing.assert_allclose(X, flip.to_model(scores.to_model(Y)))
    np.testing.assert_allclose(both.to_other(X), Y, atol=1e-12)
    np.testing.assert_allclose(both.log_det(Y), flip.log_det(Y) + scores.log_det(Y))
    Xt, ld = both.to_model_torch(torch.tensor(Y))
    np.testing.assert_allclose(Xt.numpy(), X, atol=1e-13)
    np.testing.assert_allclose(ld.numpy(), both.log_det(Y), atol=1e-12)


def test_chain_on_the_heavy_tailed_prior_follows_betas_cdf():
    """Target: log ℓ with SEPIA's BetaRho(1, 0.1) prior (its right tail e^(−0.2 x)) beside an
    independent N(0, 1). P(ρ ≤ r) = 1 − (1 − r)^0.1; each estimate is within 4.5 Monte Carlo
    sd of it, the sd from the indicator's own ESS."""
    span = 0.3
    prior = BetaRho(1.0, 0.1, span)

    def logp(X: torch.Tensor) -> torch.Tensor:
        x = X[:, 0]
        return prior.log_prob(torch.exp(x)) + x - 0.5 * X[:, 1] ** 2

    m = BetaRhoScores([0], [span], [0.1])

    def vg(Y: np.ndarray):
        Yt = torch.tensor(Y, requires_grad=True)
        X, ld = m.to_model_torch(Yt)
        lp = logp(X) + ld
        (g,) = torch.autograd.grad(lp.sum(), Yt)
        return lp.detach().numpy(), g.numpy()

    W, n_warm, n_keep = 32, 150, 500
    move = ChEESMove(vg, 2, n_warmup=n_warm, flip=m)
    assert move.coordinates == m.kind
    sampler = emcee.EnsembleSampler(
        W, 2, lambda X: logp(torch.as_tensor(X)).numpy(), vectorize=True, moves=move
    )
    sampler.random_state = np.random.RandomState(3).get_state()
    p0 = m.to_model(np.random.default_rng(3).standard_normal((W, 2)))
    sampler.run_mcmc(p0, n_warm + n_keep)
    chain = sampler.get_chain()[n_warm:]
    # the stored log-posterior is the model's, not the move's coordinates'
    flat = chain.reshape(-1, 2)
    np.testing.assert_allclose(
        sampler.get_log_prob()[n_warm:].reshape(-1), logp(torch.as_tensor(flat)).numpy()
    )
    rho = np.exp(-(span**2) / (8.0 * np.exp(2.0 * chain[..., 0])))
    for r in (0.05, 0.3, 0.7, 0.95, 0.999):
        p = 1.0 - (1.0 - r) ** 0.1
        ind = (rho <= r).astype(float)
        n_eff = float(ess(ind))
        assert n_eff > 2000, (r, n_eff)
        assert abs(ind.mean() - p) < 4.5 * math.sqrt(p * (1 - p) / n_eff), (r, ind.mean(), p)


@pytest.mark.parametrize("h_prior", [BetaRho(2.0, 0.1, 15.0), LogNormal(1.0, 1.0)])
def test_only_beta_rho_length_scales_with_a_equal_to_one_are_mapped(h_prior):
    model = sepia_calibrator(h_prior).model
    m = hmc_coordinates(model)
    assert m.cols.tolist() == [model.slots["discrepancy.loglengthscale"].start]
    np.testing.assert_allclose(m.log_c, [math.log(0.3 / math.sqrt(8.0))])
    assert hmc_coordinates(_conjugate().model) is None


def _conjugate():
    sim = FunctionSimulator(lambda X, T: T[:, :1], (), ("theta",), ("y",), vectorized=True)
    y = np.array([0.1, 0.5, 0.2])
    return Calibrator(
        sim,
        [Parameter("theta", prior=Normal(0.0, 1.0))],
        [Campaign("A", x=None, y=y, noise_sd=0.5)],
    )


@pytest.mark.filterwarnings("ignore::calib.ConvergenceWarning")  # short runs: state only
def test_a_calibration_runs_in_the_scores_and_resumes_in_them_exactly(tmp_path):
    cal = sepia_calibrator(LogNormal(1.0, 1.0))
    kw = dict(n_walkers=8, seed=2, warmup=30, autocorr_stop=False, progress=False)
    ref = cal.sample(n_steps=70, **kw)
    assert ref.info["move_state"]["coordinates"] == "beta-rho-scores"
    flat = ref.chain.reshape(-1, ref.chain.shape[-1])
    np.testing.assert_allclose(
        ref.log_prob.reshape(-1), cal.model.log_posterior_numpy(flat), rtol=1e-10
    )
    path = tmp_path / "s.h5"
    cal.sample(n_steps=20, archive=path, checkpoint_every=6, **kw)  # stops in the warm-up
    assert read_chain(path).info["move_state"]["coordinates"] == "beta-rho-scores"
    post = cal.sample(n_steps=70, archive=path, resume=True, checkpoint_every=6, **kw)
    np.testing.assert_array_equal(post.chain, ref.chain)
    assert post.info["move_state"] == ref.info["move_state"]


def test_a_state_adapted_in_the_models_coordinates_resumes_in_them():
    model = sepia_calibrator(LogNormal(1.0, 1.0)).model
    old = {"kind": "chees-hmc"}  # a state written before the scores (no "coordinates")
    assert _scores(model, old) is None
    assert _scores(model, {"coordinates": "beta-rho-scores"}) is not None
    assert _scores(model, None) is not None


@pytest.mark.filterwarnings("ignore::calib.ConvergenceWarning")  # short runs: state only
def test_a_pooled_hierarchy_interweaves_in_the_scores_and_resumes_exactly(tmp_path):
    """Partial pooling and a BetaRho δ: the interweaved move's two parts both integrate the
    length-scale in its scores (the other part through the composed map); the stored
    log-posterior is the model's; a run stopped in the warm-up resumes bit for bit."""
    cal = _pooled(seed=7, n=6)
    kw = dict(n_walkers=8, seed=3, warmup=30, autocorr_stop=False, progress=False)
    ref = cal.sample(n_steps=60, **kw)
    state = ref.info["move_state"]
    assert state["kind"] == "interweaved-hmc" and state["coordinates"] == "beta-rho-scores"
    assert [p["coordinates"] for p in state["parts"]] == ["beta-rho-scores"] * 2
    flat = ref.chain.reshape(-1, ref.chain.shape[-1])
    np.testing.assert_allclose(
        ref.log_prob.reshape(-1), cal.model.log_posterior_numpy(flat), rtol=1e-10
    )
    path = tmp_path / "h.h5"
    cal.sample(n_steps=17, archive=path, checkpoint_every=5, **kw)
    post = cal.sample(n_steps=60, archive=path, resume=True, checkpoint_every=5, **kw)
    np.testing.assert_array_equal(post.chain, ref.chain)
    assert post.info["move_state"] == ref.info["move_state"]


def _eta(X, T):
    return T[:, :1] * X[:, :1] + 0.1 * X[:, 1:2]


def _full_path(model, flip, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The move's density in its coordinates the long way: the model's whole log-posterior
    at x(y) plus log|dx/dy|, and its autograd gradient."""
    X = torch.tensor(Y, requires_grad=True)
    Xm, log_det = flip.to_model_torch(X)
    lp = model.log_posterior(Xm) + log_det
    (g,) = torch.autograd.grad(lp.sum(), X)
    return lp.detach().numpy(), g.numpy()


@pytest.mark.parametrize("pooled", [False, True], ids=["scores", "composed"])
def test_the_scores_prior_in_closed_form_equals_the_long_way(pooled):
    """batched_value_and_grad leaves the BetaRho columns' prior out of the model and adds
    log φ(z) (their prior in the scores, exactly N(0, 1)): the same density and gradient
    as the model's whole log-posterior plus log|dx/dz|, deep into both tails of z."""
    from calib.chees import batched_value_and_grad

    cal = sepia_calibrator() if not pooled else _pooled()
    model = cal.model
    scores = hmc_coordinates(model)
    flip = scores
    if pooled:
        flip = ComposedFlip(pooling_flip(model), scores)
    assert model.can_skip_prior(flip.prior_cols)
    rng = np.random.default_rng(5)
    Y = flip.to_other(model.sample_prior(rng, 12))
    Y[:4, scores.cols] = [[-7.0, 6.0], [9.0, -3.0], [0.0, 15.0], [-20.0, 20.0]]
    lp, g = batched_value_and_grad(model, flip)(Y)
    want_lp, want_g = _full_path(model, flip, Y)
    assert np.isfinite(lp).all()
    np.testing.assert_allclose(lp, want_lp, rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(g, want_g, rtol=1e-8, atol=1e-8)


def test_a_group_the_scores_cover_only_in_part_keeps_the_long_way():
    """BetaRho(2, 0.1) on h shares r's prior group but has no scores: the model cannot
    leave out only r's term, so the move takes the long way, with the same result."""
    from calib.chees import batched_value_and_grad

    model = sepia_calibrator(BetaRho(2.0, 0.1, 15.0)).model
    scores = hmc_coordinates(model)
    assert not model.can_skip_prior(scores.prior_cols)
    Y = scores.to_other(model.sample_prior(np.random.default_rng(6), 6))
    lp, g = batched_value_and_grad(model, scores)(Y)
    want_lp, want_g = _full_path(model, scores, Y)
    np.testing.assert_array_equal(lp, want_lp)
    np.testing.assert_array_equal(g, want_g)


def _pooled(seed: int = 8, n: int = 5) -> Calibrator:
    """Three campaigns of ``n`` points, k partially pooled, a BetaRho δ over (r, h)."""
    rng = np.random.default_rng(seed)
    sim = FunctionSimulator(_eta, ("r", "h"), ("k",), ("y",), vectorized=True)
    camps = []
    for l in range(3):
        x = np.column_stack([rng.uniform(0, 0.3, n), rng.uniform(0, 15.0, n)])
        y = (1.0 + 0.2 * l) * x[:, 0] + 0.1 * x[:, 1] + 0.05 * rng.standard_normal(n)
        camps.append(Campaign(f"c{l}", x=x, y=y))
    delta = Discrepancy(
        "shared",
        scale_prior=GammaPrecision(1.0, 1e-3, 0.5),
        lengthscale_prior={"r": BetaRho(1.0, 0.1, 0.3), "h": BetaRho(1.0, 0.1, 15.0)},
    )
    return Calibrator(
        sim,
        [Parameter("k", 0.0, 3.0, pooling="partial")],
        camps,
        discrepancy=delta,
        noise="shared",
        noise_prior=GammaPrecision(5.0, 5.0, 0.5),
    )
