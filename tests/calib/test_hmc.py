"""The gradient move (ChEES-adapted HMC vectorized over walkers) and the convergence verdict.

Exactness: a centred, funnel-shaped hierarchy (eight schools with the standard errors
halved) against quadrature of the scale's marginal, tolerance 4 Monte Carlo standard errors
from the chain's own ESS. The exact-posterior tests of test_sampler_exact.py run with this
move too.
"""

from __future__ import annotations

import warnings

import emcee
import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp

from calib import Calibrator, Campaign, ConvergenceWarning, Parameter
from calib.archive import read_chain
from calib.chees import CRITERIA
from calib.diagnostics import ess
from calib.hmc import ChEESMove, InterweavedMove, PoolingFlip
from calib.priors import Normal
from simulators import FunctionSimulator

Y8 = np.array([28.0, 8, -3, 7, -1, 1, 18, 12])
SE8 = 0.5 * np.array([15.0, 10, 16, 11, 9, 11, 10, 18])


def _funnel_logp(U: torch.Tensor) -> torch.Tensor:
    """Centred hierarchy: μ ~ N(0, 5²), τ ~ HalfCauchy(5), θ_j ~ N(μ, τ²), y_j ~ N(θ_j, se_j²);
    sampled as (μ, log τ, θ) with the Jacobian τ."""
    mu, v, th = U[:, 0], U[:, 1], U[:, 2:]
    tau = torch.exp(v)
    lp = -0.5 * (mu / 5.0) ** 2 + torch.log(5.0 / (25.0 + tau**2)) + v
    lp = lp - 0.5 * (((th - mu[:, None]) / tau[:, None]) ** 2).sum(1) - th.shape[1] * v
    return lp - 0.5 * (((torch.as_tensor(Y8) - th) / torch.as_tensor(SE8)) ** 2).sum(1)


def _value_and_grad(U: np.ndarray):
    X = torch.as_tensor(U).requires_grad_(True)
    lp = _funnel_logp(X)
    (g,) = torch.autograd.grad(lp.sum(), X)
    return lp.detach().numpy(), g.numpy()


class _FunnelModel:
    """The funnel as a model: what :meth:`InterweavedMove.build` needs."""

    n_dim = 10

    def log_posterior(self, U):
        return _funnel_logp(U)


#: the funnel's pooled group: μ at 0, log τ at 1, the eight θ_j (centred) at 2..9
FUNNEL_FLIP = PoolingFlip([0], [1], [list(range(2, 10))], [True])


def _funnel_chain(n_warmup=300, target_accept=0.8, seed=1, interweave=True):
    W, d = 32, 10
    if interweave:
        move = InterweavedMove.build(
            _FunnelModel(), FUNNEL_FLIP, n_warmup=n_warmup, target_accept=target_accept
        )
    else:
        move = ChEESMove(_value_and_grad, d, n_warmup=n_warmup, target_accept=target_accept)
    sampler = emcee.EnsembleSampler(
        W, d, lambda U: _funnel_logp(torch.as_tensor(U)).numpy(), vectorize=True, moves=move
    )
    rng = np.random.default_rng(seed)
    p0 = np.column_stack([rng.normal(5, 1, W), rng.normal(1.5, 0.3, W), rng.normal(5, 3, (W, 8))])
    sampler.random_state = np.random.RandomState(seed).get_state()
    return sampler, move, p0


def _log_tau_moments():
    """Mean, sd and kurtosis of log τ by quadrature on a grid in log τ (a grid in τ misses
    the mass of the neck: it put the sd at 0.82 where it is 0.777): y_j | μ, τ ~
    N(μ, se_j² + τ²), μ integrated on a grid."""
    mu = np.linspace(-30, 40, 1401)
    lg = np.linspace(-15, np.log(200), 5000)
    M, LT = np.meshgrid(mu, lg, indexing="ij")
    T = np.exp(LT)
    logp = (
        stats.norm.logpdf(M, 0, 5)
        + stats.halfcauchy.logpdf(T, scale=5)
        + LT  # dτ = τ d log τ
        + stats.norm.logpdf(Y8, M[..., None], np.sqrt(SE8**2 + T[..., None] ** 2)).sum(-1)
    )
    lt = logsumexp(logp, axis=0)
    w = np.exp(lt - logsumexp(lt))
    m = float((w * lg).sum())
    v = float((w * (lg - m) ** 2).sum())
    return m, np.sqrt(v), float((w * (lg - m) ** 4).sum()) / v**2


def test_centred_funnel_scale_against_quadrature():
    """The interweaved move (centred and non-centred iterations alternating) is unbiased on
    the funnel's scale; tolerances as in test_sampler_exact.py (4 MCSE, the sd's from the
    exact kurtosis and the ESS of (x − x̄)²)."""
    sampler, move, p0 = _funnel_chain()
    sampler.run_mcmc(p0, 1300)
    x = sampler.get_chain()[300:, :, 1]  # log τ, walkers as chains
    mean, sd, kurt = _log_tau_moments()
    n_eff, n_eff_sq = float(ess(x)), float(ess((x - x.mean()) ** 2))
    assert min(n_eff, n_eff_sq) >= 400, f"ESS {n_eff:.0f}/{n_eff_sq:.0f} too small"
    assert abs(x.mean() - mean) < 4 * sd / np.sqrt(n_eff), (x.mean(), mean, n_eff)
    tol_sd = 4 * sd * np.sqrt(kurt - 1) / (2 * np.sqrt(n_eff_sq))
    assert abs(x.std() - sd) < tol_sd, (x.std(), sd, tol_sd)


def test_pooling_flip_is_a_bijection_with_its_jacobian():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 10))
    Y = FUNNEL_FLIP.to_other(X)
    assert np.allclose(FUNNEL_FLIP.to_model(Y), X, rtol=0, atol=1e-14)
    # u = μ + τ z: the other coordinates of the centred θ_j are (θ_j − μ)/τ
    assert np.allclose(Y[:, 2:], (X[:, 2:] - X[:, :1]) / np.exp(X[:, 1:2]))
    Xt, log_det = FUNNEL_FLIP.to_model_torch(torch.as_tensor(Y))
    assert np.array_equal(Xt.numpy(), FUNNEL_FLIP.to_model(Y))
    for i in range(len(Y)):
        J = torch.autograd.functional.jacobian(
            lambda y: FUNNEL_FLIP.to_model_torch(y[None])[0][0], torch.as_tensor(Y[i])
        )
        assert float(torch.logdet(J)) == pytest.approx(float(log_det[i]), abs=1e-12)
        assert FUNNEL_FLIP.log_det(Y)[i] == pytest.approx(float(log_det[i]), abs=1e-12)


def test_adaptation_is_frozen_after_warmup():
    sampler, move, p0 = _funnel_chain(n_warmup=60, interweave=False)
    state = sampler.run_mcmc(p0, 60)
    assert move.frozen
    frozen = move.state_dict()
    sampler.run_mcmc(state, 40)
    after = move.state_dict()
    for k in ("step_size", "trajectory", "chol", "target_accept", "max_leapfrog"):
        assert after[k] == frozen[k], k
    assert after["iteration"] == 100 and after["n_grad_evals"] > frozen["n_grad_evals"]
    # the state round-trips: a move built from it continues identically
    again = ChEESMove(_value_and_grad, 10, state=after)
    assert again.state_dict() == after


@pytest.mark.parametrize("criterion", CRITERIA)
@pytest.mark.parametrize("d", [2, 6])
def test_trajectory_adapts_to_the_chees_optimum_of_a_standard_normal(d, criterion):
    """On N(0, I) the exact flow is x cos t + p sin t, so ‖x_t‖² − ‖x‖² has second moment
    4d·sin²t and ChEES with t = uT, u ~ U(0, 1) is ∝ E_u sin²(uT), largest at T ≈ 2.25; per
    unit length ("chees_rate"), (1/T)∫₀ᵀ sin²(s)/s ds, largest where sin²T equals the
    integral, T ≈ 1.75 (the leapfrog at ε ≈ 1 turns a little faster and rounds its steps up,
    so the adapted T is somewhat shorter). Before 2026-11-28 T was held ≥ ε after every
    step-size restart, whose first ε is 10× the last: T ended at 5–24 here. Without that
    floor the rate's T fell below one step, where its estimate cannot see T, and went to
    1e-4–1e-2 (one step an iteration): the rate's T is floored at the ε settled in the last
    metric window."""

    def vg(U):
        return -0.5 * np.sum(U * U, 1), -U

    for seed in range(3):
        move = ChEESMove(vg, d, n_warmup=200, criterion=criterion)
        sampler = emcee.EnsembleSampler(32, d, lambda x: -0.5 * float(x @ x), moves=move)
        sampler.random_state = np.random.RandomState(seed).get_state()
        p0 = 0.5 * np.random.default_rng(seed).standard_normal((32, d))
        sampler.run_mcmc(p0, 200)
        assert move.frozen
        assert 0.75 < move.trajectory < 3.5, (seed, move.trajectory, move.step_size)


def test_interweaved_adaptation_is_frozen_and_its_state_round_trips():
    sampler, move, p0 = _funnel_chain(n_warmup=61)
    state = sampler.run_mcmc(p0, 61)
    assert move.frozen and [m.n_warmup for m in move.parts] == [31, 30]
    frozen = move.state_dict()
    sampler.run_mcmc(state, 40)
    after = move.state_dict()
    for a, b in zip(frozen["parts"], after["parts"], strict=True):
        for k in ("step_size", "trajectory", "chol", "target_accept", "max_leapfrog"):
            assert a[k] == b[k], k
    assert after["iteration"] == 101 and after["n_grad_evals"] > frozen["n_grad_evals"]
    again = InterweavedMove.build(_FunnelModel(), FUNNEL_FLIP, n_warmup=61)
    again.load_state_dict(after)
    assert again.state_dict() == after
    with pytest.raises(ValueError, match="not an interweaved HMC move state"):
        again.load_state_dict(after["parts"][0])


def test_move_state_is_checked():
    move = ChEESMove(_value_and_grad, 10)
    with pytest.raises(ValueError, match="not a ChEES-HMC move state"):
        move.load_state_dict({"kind": "other"})
    with pytest.raises(ValueError, match="target_accept must be in"):
        ChEESMove(_value_and_grad, 10, target_accept=1.0)


def _conjugate():
    rng = np.random.default_rng(0)
    y = 0.3 + 0.5 * rng.standard_normal(12)
    sim = FunctionSimulator(lambda X, T: T[:, :1], (), ("theta",), ("y",), vectorized=True)
    return Calibrator(
        sim,
        [Parameter("theta", prior=Normal(1.0, 2.0))],
        [Campaign("A", x=None, y=y, noise_sd=0.5)],
        noise="known",
    )


def test_resume_with_the_gradient_move_is_exact(tmp_path):
    cal = _conjugate()
    kw = dict(n_walkers=8, seed=4, moves="hmc", warmup=40, autocorr_stop=False)
    ref = cal.sample(n_steps=120, **kw)
    path = tmp_path / "s.h5"
    # the first run stops inside the warm-up: the adaptation state must travel too
    cal.sample(n_steps=30, archive=path, checkpoint_every=7, **kw)
    assert read_chain(path).info["move_state"]["iteration"] == 30
    post = cal.sample(n_steps=120, archive=path, resume=True, checkpoint_every=7, **kw)
    np.testing.assert_array_equal(post.chain, ref.chain)
    np.testing.assert_array_equal(post.log_prob, ref.log_prob)
    assert post.info["move_state"] == ref.info["move_state"]
    with pytest.raises(ValueError, match="resume with the same moves"):
        cal.sample(n_steps=200, archive=path, resume=True, n_walkers=8, seed=4, moves="de")


def test_resume_with_the_interweaved_move_is_exact(tmp_path):
    """A pooled hierarchy: the default move interweaves; a run stopped inside the warm-up
    and resumed (without naming the moves) equals the uninterrupted one bit for bit."""
    cal = _hierarchy()
    kw = dict(n_walkers=8, seed=5, warmup=40, autocorr_stop=False)
    ref = cal.sample(n_steps=90, **kw)
    assert ref.info["move_state"]["kind"] == "interweaved-hmc"
    path = tmp_path / "h.h5"
    cal.sample(n_steps=25, archive=path, checkpoint_every=6, **kw)
    post = cal.sample(n_steps=90, archive=path, resume=True, checkpoint_every=6, **kw)
    np.testing.assert_array_equal(post.chain, ref.chain)
    np.testing.assert_array_equal(post.log_prob, ref.log_prob)
    assert post.info["move_state"] == ref.info["move_state"]


def test_verdict_stop_rule_and_warning():
    cal = _conjugate()
    with pytest.warns(ConvergenceWarning, match=r"has not converged after 60 of 60 steps"):
        short = cal.sample(n_walkers=8, n_steps=60, seed=1, moves="hmc", warmup=30)
    assert not short.converged
    d = short.diagnostics()
    assert not d["converged"] and d["worst"][0]["name"] == "theta"
    assert short.summary()["theta"]["ok"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        post = cal.sample(n_walkers=16, n_steps=2000, seed=1, moves="hmc", warmup=100)
    assert post.converged and post.info["stopped_early"]
    assert post.chain.shape[0] < 2000
    d = post.diagnostics()
    assert d["rhat_max"] < 1.01 and d["ess_min"] >= 400
    assert post.summary()["theta"]["ok"] is True
    assert d["n_grad_evals"] > 0 and d["step_size"] > 0


def test_bad_sampler_settings_are_refused_before_work():
    cal = _conjugate()
    with pytest.raises(ValueError, match="moves must be 'hmc', 'de'"):
        cal.sample(moves="nuts")
    with pytest.raises(ValueError, match="n_walkers must be an even integer ≥ 4"):
        cal.sample(n_walkers=2, moves="hmc")
    with pytest.raises(ValueError, match="warmup must be smaller than n_steps"):
        cal.sample(n_steps=100, warmup=100, moves="hmc")
    with pytest.raises(ValueError, match="target_ess: expected a positive number"):
        cal.sample(target_ess=0)
    with pytest.raises(ValueError, match="time_budget: expected a positive number of seconds"):
        cal.sample(time_budget=-1)
    with pytest.raises(ValueError, match="give n_steps or max_steps"):
        cal.sample(n_steps=100, max_steps=200)
    with pytest.raises(ValueError, match="n_steps: expected an integer ≥ 2, got 1"):
        cal.sample(max_steps=1)
    # issue 13: truncated or accepted before
    with pytest.raises(ValueError, match="burn: expected an integer ≥ 0, got 2.5"):
        cal.sample(burn=2.5)
    with pytest.raises(ValueError, match="min_steps: expected an integer ≥ 0, got -1"):
        cal.sample(min_steps=-1)
    for seed in (-1, 2**70, 1.5):
        with pytest.raises(
            ValueError, match=r"seed: expected None or an integer in \[0, 2\*\*63\)"
        ):
            cal.sample(seed=seed)
    with pytest.raises(ValueError, match="target_accept: expected a number in \\(0, 1\\), got 1.2"):
        cal.sample(target_accept=1.2)


def _hierarchy():
    """k partially pooled over four campaigns of 20 well-measured points each."""
    rng = np.random.default_rng(3)
    sim = FunctionSimulator(lambda X, T: T[:, :1], (), ("k",), ("y",), vectorized=True)
    camps = [
        Campaign(f"c{l}", x=None, y=1.0 + 0.3 * l + 0.05 * rng.standard_normal(20), noise_sd=0.05)
        for l in range(4)
    ]
    return Calibrator(sim, [Parameter("k", prior=Normal(1, 1), pooling="partial")], camps)


def test_warning_suggests_the_other_parameterization_of_a_slow_population():
    cal = _hierarchy()
    with pytest.warns(ConvergenceWarning, match=r"centered=True"):
        cal.sample(n_walkers=20, n_steps=40, seed=0, moves="de")


def test_centered_is_checked_and_round_trips():
    with pytest.raises(TypeError, match="centered must be True or False, got 'yes'"):
        Parameter("k", 0, 1, pooling="partial", centered="yes")
    p = Parameter("k", 0, 1, pooling="partial", centered=True)
    q = Parameter.from_dict(p.to_dict())
    assert q.centered and "centered=True" in repr(q)
    old = {k: v for k, v in p.to_dict().items() if k != "centered"}
    assert not Parameter.from_dict(old).centered  # archives from before the option


def test_time_budget_ends_the_run_at_a_check():
    cal = _conjugate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        post = cal.sample(
            n_walkers=8,
            n_steps=100_000,
            seed=2,
            moves="hmc",
            warmup=50,
            time_budget=1e-3,
            autocorr_stop=False,
            check_every=20,
        )
    assert post.info.get("stopped_by_time_budget") and post.chain.shape[0] == 20


def test_progress_defaults_to_off_when_stderr_is_not_a_terminal(capfd):
    _conjugate().sample(n_walkers=8, n_steps=60, seed=1, warmup=30, autocorr_stop=False)
    assert "sampling" not in capfd.readouterr().err  # pytest's stderr is no terminal
    _conjugate().sample(
        n_walkers=8, n_steps=60, seed=1, warmup=30, autocorr_stop=False, progress=True
    )
    assert "sampling (acceptance" in capfd.readouterr().err


@pytest.mark.parametrize(
    "fn, match",
    [
        (
            lambda x, t: (_ for _ in ()).throw(ValueError("solver diverged")),
            r"it raised ValueError: solver diverged \(at x = \[\], theta = 1",
        ),
        (lambda x, t: np.array([np.nan]), r"it returned non-finite values \[nan\]"),
        (
            lambda x, t: np.zeros(3),
            r"it raised ValueError: FunctionSimulator: the function returned 3 values",
        ),
    ],
)
def test_a_failing_simulator_is_named_in_the_error(fn, match):
    """issue 13 item 9: raising, NaN and wrong-shape simulators all gave the same message."""
    sim = FunctionSimulator(fn, (), ("theta",), ("y",))
    cal = Calibrator(
        sim,
        [Parameter("theta", prior=Normal(1.0, 2.0))],
        [Campaign("A", x=None, y=[0.3])],
        noise="shared",
    )
    with pytest.raises(RuntimeError, match=match):
        cal.sample(n_walkers=8, n_steps=10, seed=0)


@pytest.mark.parametrize("criterion", ["chees", "chees_rate"])
def test_log_t_gradient_is_the_derivative_of_the_criterion(criterion):
    """On a standard normal the Hamiltonian flow is exact, x(t) = x cos t + p sin t, with
    velocity p(t) = −x sin t + p cos t; the estimate at t must be d/dlog t of the weighted
    criterion ¼Σw(‖x(t) − m₁‖² − ‖x − m₀‖²)²/Σw (divided by t for the rate), with the
    centring means held at their values, as the estimator treats them (central differences)."""
    from calib.chees import log_t_gradient

    rng = np.random.default_rng(3)
    x0, p0 = rng.standard_normal((16, 4)), rng.standard_normal((16, 4))
    w = rng.uniform(0.2, 1.0, 16)
    t = 0.7

    def flow(s):
        return x0 * np.cos(s) + p0 * np.sin(s), -x0 * np.sin(s) + p0 * np.cos(s)

    x1, p1 = flow(t)
    m1 = (w[:, None] * x1).sum(0) / w.sum()
    m0 = x0.mean(0)

    def crit(log_s):
        s = np.exp(log_s)
        xs = flow(s)[0]
        c = 0.25 * (np.sum((xs - m1) ** 2, 1) - np.sum((x0 - m0) ** 2, 1)) ** 2
        c = (w * c).sum() / w.sum()
        return c / s if criterion == "chees_rate" else c

    h = 1e-6
    fd = (crit(np.log(t) + h) - crit(np.log(t) - h)) / (2 * h)
    got = log_t_gradient(x0, x1, p1, w, t, criterion)
    assert got == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_trajectory_criterion_is_checked_and_kept_in_the_state():
    with pytest.raises(ValueError, match="criterion must be one of"):
        ChEESMove(_value_and_grad, 10, criterion="esjd")
    move = ChEESMove(_value_and_grad, 10, criterion="chees_rate")
    state = move.state_dict()
    assert state["criterion"] == "chees_rate"
    assert ChEESMove(_value_and_grad, 10, state=state).criterion == "chees_rate"
    # a state saved before the criterion was a setting was adapted with plain ChEES
    old = {k: v for k, v in ChEESMove(_value_and_grad, 10).state_dict().items() if k != "criterion"}
    assert ChEESMove(_value_and_grad, 10, state=old).criterion == "chees"
    assert ChEESMove(_value_and_grad, 10).criterion == "chees"  # the default
    cal = _conjugate()
    with pytest.raises(ValueError, match="trajectory_criterion must be one of"):
        cal.sample(n_steps=10, trajectory_criterion="long", progress=False)


def test_warning_suggests_longer_trajectories_for_a_slow_lengthscale():
    """A short run with a δ: its length-scale is among the unconverged quantities, and the
    warning names the plain-ChEES criterion (the default), only when the rate criterion
    was used."""
    from calib import Discrepancy

    rng = np.random.default_rng(0)
    x = np.linspace(0.0, 1.0, 8)[:, None]
    sim = FunctionSimulator(
        lambda X, T: X[:, :1] * T[:, :1], ("x",), ("k",), ("y",), vectorized=True
    )
    cal = Calibrator(
        sim,
        [Parameter("k", prior=Normal(1, 1))],
        [Campaign("A", x=x, y=(1.2 * x[:, 0] + 0.1 * rng.standard_normal(8))[:, None])],
        discrepancy=Discrepancy("shared"),
        noise="shared",
    )
    kw = dict(n_walkers=8, n_steps=24, warmup=12, seed=0, progress=False, autocorr_stop=False)
    with pytest.warns(ConvergenceWarning, match=r"trajectory_criterion='chees'"):
        cal.sample(trajectory_criterion="chees_rate", **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cal.sample(**kw)
    assert not any("trajectory_criterion" in str(w.message) for w in caught)
