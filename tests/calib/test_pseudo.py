"""δ conditioned on zero pseudo-observations (calib/pseudo.py): constraints δ = 0 and
∇ₓδ = 0 at given points, and the scaled GP (S-GaSP), against dense references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from calib import Calibrator, Campaign, Discrepancy, Parameter
from calib.config import _discrepancy
from calib.priors import HalfNormal, LogNormal, Normal
from calib.pseudo import PseudoConditioning, SlopeKernel
from simulators import FunctionSimulator

KINDS = ("rbf", "matern52")
# central differences with step h: truncation O(h²) and rounding O(ε/h²) in the second
# derivative; h = 1e-4 on unit length-scales puts both near 1e-8
H = 1e-4


def _kernel(kind, a, b, ls):
    r2 = (((a - b) / ls) ** 2).sum()
    if kind == "rbf":
        return np.exp(-0.5 * r2)
    t = np.sqrt(5 * r2)
    return (1 + t + t * t / 3) * np.exp(-t)


def _fd_cov(kind, pa, ta, pb, tb, ls):
    """Covariances of values (type −1) and slopes (type d) by central differences of the
    kernel itself: independent of the closed forms in calib/pseudo.py."""
    out = np.zeros((len(pa), len(pb)))
    eye = np.eye(pa.shape[1]) * H
    for i, (a, t1) in enumerate(zip(pa, ta)):
        for j, (b, t2) in enumerate(zip(pb, tb)):

            def k(da, db, a=a, b=b):
                return _kernel(kind, a + da, b + db, ls)

            z = np.zeros_like(a)
            if t1 < 0 and t2 < 0:
                out[i, j] = k(z, z)
            elif t1 < 0:
                out[i, j] = (k(z, eye[t2]) - k(z, -eye[t2])) / (2 * H)
            elif t2 < 0:
                out[i, j] = (k(eye[t1], z) - k(-eye[t1], z)) / (2 * H)
            else:
                e1, e2 = eye[t1], eye[t2]
                out[i, j] = (k(e1, e2) - k(e1, -e2) - k(-e1, e2) + k(-e1, -e2)) / (4 * H * H)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_value_and_slope_covariances_match_finite_differences(kind):
    rng = np.random.default_rng(0)
    za, zb = rng.uniform(0, 2, (5, 2)), rng.uniform(0, 2, (6, 2))
    zb[0] = za[0]  # coincident points: Matérn's t = 0
    ta, tb = np.array([-1, 0, 1, -1, 0]), np.array([-1, 1, 0, -1, 0, 1])
    ls = np.array([[0.8, 1.3], [1.1, 0.9]])
    got = SlopeKernel(kind, za, ta, zb, tb, "cpu")(torch.as_tensor(ls**-2.0)).numpy()
    for w in range(2):
        ref = _fd_cov(kind, za, ta, zb, tb, ls[w])
        np.testing.assert_allclose(got[w], ref, atol=1e-6)


def _sim():
    return FunctionSimulator(
        lambda X, T: T[:, :1] * X[:, :1], ("x",), ("k",), ("y",), vectorized=True
    )


def _camps(n=5, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for l in range(2):
        x = rng.uniform(0, 2, n)
        y = 1.2 * x + 0.3 * np.sin(2 * x) + 0.05 * rng.standard_normal(n)
        out.append(Campaign(f"c{l}", x=x, y=y, noise_sd=0.05))
    return out


def _cond_cov(kind, X, pts, types, ls, sd, grid=None, lam=None):
    """δ's covariance at X after conditioning on zero pseudo-observations, by hand."""
    allp = np.concatenate([X, pts] + ([grid] if grid is not None else []))
    allt = np.concatenate(
        [np.full(len(X), -1), types] + ([np.full(len(grid), -1)] if grid is not None else [])
    )
    J = _fd_cov(kind, allp, allt, allp, allt, ls)
    n = len(X)
    D = np.zeros(len(allp) - n)
    if grid is not None:
        D[len(pts) :] = len(grid) / lam
    return sd**2 * (J[:n, :n] - J[:n, n:] @ np.linalg.solve(J[n:, n:] + np.diag(D), J[n:, :n]))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["shared", "independent"])
@pytest.mark.parametrize("process", ["gp", "sgasp"])
def test_loglik_matches_dense_reference(kind, mode, process):
    camps = _camps()
    lam = 5.0
    disc = Discrepancy(
        mode,
        kernel=kind,
        zero_at=[[0.0], [1.0]],
        zero_slope_at=[[0.0]],
        process=process,
        scaling=lam if process == "sgasp" else None,
    )
    cal = Calibrator(
        _sim(), [Parameter("k", prior=Normal(1, 1))], camps, discrepancy=disc, noise="known"
    )
    model = cal.model
    U = torch.as_tensor(model.sample_prior(np.random.default_rng(1), 3))
    ll = (model.log_posterior(U) - model.unpack(U)["log_prior"]).numpy()
    pts, types = np.array([[0.0], [1.0], [0.0]]), np.array([-1, -1, 0])
    xs = [c.x.reshape(-1, 1) for c in camps]
    grid = np.unique(np.concatenate(xs), axis=0) if process == "sgasp" else None
    for w in range(3):
        parts = model.unpack(U[w : w + 1])
        k = parts["theta"][0, 0, 0].item()
        sd, ls = parts["disc_scale"][0].item(), parts["disc_ls"][0].numpy()
        sets = [(np.concatenate(xs), np.concatenate([c.y.reshape(-1) for c in camps]))]
        if mode == "independent":
            sets = [(x, c.y.reshape(-1)) for x, c in zip(xs, camps)]
        ref = 0.0
        for X, y in sets:
            C = _cond_cov(kind, X, pts, types, ls, sd, grid, lam) + 0.05**2 * np.eye(len(y))
            ref += stats.multivariate_normal(k * X[:, 0], C).logpdf(y)
        # the finite-difference covariances (~1e-8) and calib's 1e-12 relative jitter on
        # the constraints, through a solve: agreement to ~1e-7 of the value
        assert abs(ll[w] - ref) < 1e-6 * (1 + abs(ref)), (w, ll[w], ref)


@pytest.mark.parametrize("kind", KINDS)
def test_sgasp_covariance_is_gu_and_wang_formula(kind):
    """Without constraints the S-GaSP's covariance at the n observed inputs is
    σ²(R⁻¹ + (λ_z/n) I)⁻¹ (Gu & Wang 2018): the closed form, with its own inverses."""
    camps = _camps(n=6)[:1]
    lam = 7.0
    disc = Discrepancy(
        "shared",
        kernel=kind,
        scale_prior=HalfNormal(1.0),
        lengthscale_prior=LogNormal(np.log(0.3), 0.1),  # R well conditioned: inv(R) exact
        process="sgasp",
        scaling=lam,
    )
    cal = Calibrator(
        _sim(), [Parameter("k", prior=Normal(1, 1))], camps, discrepancy=disc, noise="known"
    )
    model = cal.model
    U = torch.as_tensor(model.sample_prior(np.random.default_rng(3), 4))
    ll = (model.log_posterior(U) - model.unpack(U)["log_prior"]).numpy()
    x, y = camps[0].x.reshape(-1), camps[0].y.reshape(-1)
    n = len(x)
    for w in range(4):
        parts = model.unpack(U[w : w + 1])
        ls = parts["disc_ls"][0, 0].item()
        sd, k = parts["disc_scale"][0].item(), parts["theta"][0, 0, 0].item()
        R = np.array([[_kernel(kind, a, b, ls) for b in x] for a in x])
        C = sd**2 * np.linalg.inv(np.linalg.inv(R) + lam / n * np.eye(n)) + 0.05**2 * np.eye(n)
        ref = stats.multivariate_normal(k * x, C).logpdf(y)
        assert abs(ll[w] - ref) < 1e-8 * (1 + abs(ref)), (w, ll[w], ref)


def test_sgasp_default_scaling_is_the_reference_rule():
    """λ_z = sqrt(n · ‖range/ℓ‖ · σ_δ²/σ_ε²) (RobustCalibration's default, R/functions.R)."""
    rng = np.random.default_rng(2)
    z = rng.uniform(0, 3, (7, 2))
    disc = Discrepancy("shared", process="sgasp")
    pc = PseudoConditioning(disc, z, z[None], 2, None, "cpu")
    ls = np.array([[0.5, 2.0], [1.5, 0.7]])
    log_sd, noise_var = np.array([0.1, -0.4]), np.array([0.01, 0.2])
    got = pc.default_scaling(
        torch.as_tensor(ls**-2.0), torch.as_tensor(log_sd), torch.as_tensor(noise_var)
    ).numpy()
    rng_d = z.max(0) - z.min(0)
    ref = np.sqrt(7 * np.sqrt(((rng_d / ls) ** 2).sum(1)) * np.exp(2 * log_sd) / noise_var)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def _predictive(model, U, X, campaign):
    theta_new = None if campaign is not None else model.unpack(U)["theta"][:, 0]
    mean, cov, failed = model.predictive(U, X, campaign, "discrepancy", theta_new)
    assert not failed.any()
    sd = torch.sqrt(torch.diagonal(cov, dim1=1, dim2=2).clamp_min(0.0))
    return mean, sd


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["shared", "independent"])
def test_delta_vanishes_and_is_flat_at_the_constraints(kind, mode):
    camps = _camps()
    cal = Calibrator(
        _sim(),
        [Parameter("k", prior=Normal(1, 1))],
        camps,
        discrepancy=Discrepancy(mode, kernel=kind, zero_at=[[0.5]], zero_slope_at=[[0.5]]),
        noise="known",
    )
    free = Calibrator(
        _sim(),
        [Parameter("k", prior=Normal(1, 1))],
        camps,
        discrepancy=Discrepancy(mode, kernel=kind, zero_at=[[0.5]]),
        noise="known",
    )
    U = torch.as_tensor(cal.model.sample_prior(np.random.default_rng(4), 6))
    scale = cal.model.unpack(U)["disc_scale"]
    ls = cal.model.unpack(U)["disc_ls"][:, 0]
    for campaign in (0, 1, None):  # every campaign's δ and a new campaign's
        mean, sd = _predictive(cal.model, U, np.array([[0.5]]), campaign)
        # the constraint's conditional sd is √(1e-12) of the prior's (calib/pseudo.py)
        assert (sd[:, 0] < 2e-6 * scale).all() and (mean.abs()[:, 0, 0] < 2e-6 * scale).all()
        # a step h away: sd(δ) ∝ h² with a zero slope, ∝ h with the value only, so halving
        # h quarters the first and halves the second (h = ℓ/50: higher orders ~ √5 h/ℓ,
        # the 1e-6 σ floor of the jitter ~ 1 % of the smaller sd)
        for w in range(len(U)):
            h = 0.02 * ls[w].item()
            X = np.array([[0.5 + h], [0.5 + h / 2]])
            _, sd_flat = _predictive(cal.model, U[w : w + 1], X, campaign)
            _, sd_free = _predictive(free.model, U[w : w + 1], X, campaign)
            ratio_flat, ratio_free = sd_flat[0, 1] / sd_flat[0, 0], sd_free[0, 1] / sd_free[0, 0]
            assert abs(ratio_flat - 0.25) < 0.03 and abs(ratio_free - 0.5) < 0.05


def test_constraints_hold_for_every_output_coordinate_and_output():
    """With output coordinates a constraint holds at (x₀, s_j) for every output; without
    them every output's δ is constrained."""
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 2, 6)
    s = np.array([0.0, 0.5, 1.0])

    def f(X, T):
        return T[:, :1] * X[:, :1] * (1 + s[None, :])

    for coords in (s[:, None], None):
        sim = FunctionSimulator(f, ("x",), ("k",), ("a", "b", "c"), vectorized=True)
        y = 1.1 * x[:, None] * (1 + s[None, :]) + 0.2 * np.sin(x)[:, None]
        camp = Campaign("c", x=x, y=y + 0.01 * rng.standard_normal(y.shape), noise_sd=0.01)
        cal = Calibrator(
            sim,
            [Parameter("k", prior=Normal(1, 1))],
            [camp],
            discrepancy=Discrepancy("shared", zero_at=[[0.3]]),
            noise="known",
            output_coords=coords,
        )
        U = torch.as_tensor(cal.model.sample_prior(np.random.default_rng(7), 3))
        scale = cal.model.unpack(U)["disc_scale"]
        mean, sd = _predictive(cal.model, U, np.array([[0.3], [1.2]]), 0)
        assert (sd[:, :3] < 2e-6 * scale[:, None]).all()  # the three outputs at x₀
        assert (sd[:, 3:] > 1e-3 * scale[:, None]).all()  # away from it, δ is free


def test_bad_constraints_are_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="zero_at must be finite"):
        Discrepancy("shared", zero_at=[[np.nan]])
    with pytest.raises(ValueError, match="zero_slope_at needs a discrepancy"):
        Discrepancy("none", zero_slope_at=[[0.0]])
    with pytest.raises(ValueError, match="scaling is the S-GaSP"):
        Discrepancy("shared", scaling=2.0)
    with pytest.raises(ValueError, match="scaling must be positive"):
        Discrepancy("shared", process="sgasp", scaling=-1.0)
    with pytest.raises(ValueError, match="process must be one of"):
        Discrepancy("shared", process="gasp")
    with pytest.raises(ValueError, match=r"zero_at must have one column per control input"):
        Calibrator(
            _sim(),
            [Parameter("k", prior=Normal(1, 1))],
            _camps(),
            discrepancy=Discrepancy("shared", zero_at=[[0.0, 1.0]]),
            noise="known",
        )


def test_settings_round_trip_through_the_config():
    disc = Discrepancy(
        "independent",
        kernel="matern52",
        zero_at=[[0.0]],
        zero_slope_at=[[0.0], [2.0]],
        process="sgasp",
        scaling=LogNormal(0.0, 1.0),
    )
    back = _discrepancy(disc.to_dict())
    assert back.to_dict() == disc.to_dict()
    assert repr(back) == repr(disc)
    plain = Discrepancy("shared")
    assert set(plain.to_dict()) == {"mode", "kernel", "scale_prior", "lengthscale_prior"}


def test_sampled_scaling_is_a_column_with_its_prior():
    cal = Calibrator(
        _sim(),
        [Parameter("k", prior=Normal(1, 1))],
        _camps(),
        discrepancy=Discrepancy("shared", process="sgasp", scaling=LogNormal(1.0, 0.5)),
        noise="known",
    )
    model = cal.model
    assert model.labels[-1] == "log discrepancy.scaling"
    U = torch.as_tensor(model.sample_prior(np.random.default_rng(0), 2000))
    lam = model.unpack(U)["disc_scaling"].numpy()
    # prior draws of λ_z follow LogNormal(1, 0.5): mean of log within 4 standard errors
    assert abs(np.log(lam).mean() - 1.0) < 4 * 0.5 / np.sqrt(2000)
    # the log prior of that column is the LogNormal's on λ plus the log-Jacobian log λ
    u = U[:5].clone()
    base = model.unpack(u)["log_prior"]
    u2 = u.clone()
    u2[:, -1] += 0.3
    diff = (model.unpack(u2)["log_prior"] - base).numpy()
    lam1, lam2 = np.exp(u[:, -1].numpy()), np.exp(u2[:, -1].numpy())
    ref = (
        stats.lognorm(0.5, scale=np.e).logpdf(lam2)
        + np.log(lam2)
        - stats.lognorm(0.5, scale=np.e).logpdf(lam1)
        - np.log(lam1)
    )
    np.testing.assert_allclose(diff, ref, rtol=1e-10)


def test_per_feature_lengthscale_priors():
    """issue 16, item 4: one prior per feature by name, the others keep their default."""
    rng = np.random.default_rng(1)
    x = np.column_stack([rng.uniform(0, 0.3, 8), rng.uniform(0, 15.0, 8)])
    sim = FunctionSimulator(
        lambda X, T: T[:, :1] * X[:, :1] + X[:, 1:2], ("r", "h"), ("k",), ("y",), True
    )
    camp = Campaign("c", x=x, y=x[:, 0] + x[:, 1] + 0.01 * rng.standard_normal(8), noise_sd=0.01)
    disc = Discrepancy("shared", lengthscale_prior={"h": LogNormal(np.log(5.0), 0.5)})
    cal = Calibrator(sim, [Parameter("k", prior=Normal(1, 1))], [camp], discrepancy=disc)
    priors = cal.model.disc_block.lengthscale_priors
    assert repr(priors[1]) == repr(LogNormal(np.log(5.0), 0.5))
    # r keeps the default by its own range
    assert priors[0].mu == pytest.approx(np.log(np.ptp(x[:, 0]) / 2.0))
    # the log prior of the h column is the given LogNormal's, with the Jacobian of log
    U = torch.as_tensor(cal.model.sample_prior(np.random.default_rng(2), 4))
    col = cal.model.slots["discrepancy.loglengthscale"].start + 1
    U2 = U.clone()
    U2[:, col] += 0.2
    diff = (cal.model.unpack(U2)["log_prior"] - cal.model.unpack(U)["log_prior"]).numpy()
    a, b = np.exp(U[:, col].numpy()), np.exp(U2[:, col].numpy())
    ref = stats.lognorm(0.5, scale=5.0)
    np.testing.assert_allclose(diff, ref.logpdf(b) + np.log(b) - ref.logpdf(a) - np.log(a))
    back = _discrepancy(disc.to_dict())
    assert back.to_dict() == disc.to_dict()
    with pytest.raises(ValueError, match=r"names \['height'\], which are not δ's features"):
        Calibrator(
            sim,
            [Parameter("k", prior=Normal(1, 1))],
            [camp],
            discrepancy=Discrepancy("shared", lengthscale_prior={"height": HalfNormal(1.0)}),
        )
    with pytest.raises(ValueError, match=r"lengthscale_prior\['h'\] must have support"):
        Discrepancy("shared", lengthscale_prior={"h": Normal(0, 1)})
