"""Emulator mode: the emulator's mean and full covariance inside the KOH likelihood."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.stats import qmc

from calib import Calibrator, Campaign, Discrepancy, Parameter
from calib.priors import HalfNormal, LogNormal
from emulators import GPEmulator
from simulators import FunctionSimulator


def eta(X, T):
    return T[:, :1] * np.sin(2.0 * X[:, :1]) + T[:, 1:2] * X[:, :1] ** 2


def _sim():
    return FunctionSimulator(eta, ("x",), ("a", "b"), ("y",), vectorized=True)


PARAMS = [Parameter("a", 0.5, 2.0, pooling="partial"), Parameter("b", -1.0, 1.0)]


def _runs(n, seed=0):
    u = qmc.LatinHypercube(d=3, seed=seed).random(n)
    X = np.column_stack([u[:, 0], 0.5 + 1.5 * u[:, 1], -1.0 + 2.0 * u[:, 2]])
    return X, eta(X[:, :1], X[:, 1:])


def _campaigns(seed=1):
    rng = np.random.default_rng(seed)
    out = []
    for l, (a, n) in enumerate([(1.1, 5), (1.4, 4)]):
        x = rng.uniform(0, 1, n)
        y = a * np.sin(2 * x) + 0.3 * x**2 + 0.05 * rng.standard_normal(n)
        y[-1] = np.nan if l == 1 else y[-1]
        out.append(Campaign(f"c{l}", x=x, y=y))
    return out


@pytest.fixture(scope="module")
def emulator():
    X, Y = _runs(40)
    return GPEmulator(seed=0).fit(X, Y)


@pytest.mark.parametrize("disc", ["none", "shared", "independent"])
def test_emulator_log_likelihood_matches_dense_reference(emulator, disc):
    camps = _campaigns()
    d = (
        Discrepancy(disc, "rbf", scale_prior=HalfNormal(0.3), lengthscale_prior=LogNormal(0, 1))
        if disc != "none"
        else "none"
    )
    cal = Calibrator(
        emulator, PARAMS, camps, discrepancy=d, noise="per_campaign", input_names=("x",)
    )
    model = cal.model
    U = model.sample_prior(np.random.default_rng(2), 3) * 0.5
    got = cal.log_posterior(U)

    for u, g in zip(U, got):
        with torch.no_grad():
            parts = model.unpack(torch.as_tensor(u[None]))
        theta = parts["theta"][0].numpy()  # (L, q)
        rows, camp_of = [], []
        for l, c in enumerate(camps):
            for i in range(c.y.shape[0]):
                rows.append(np.concatenate([c.x[i], theta[l]]))
                camp_of.append(l)
        # the emulator's own prediction (predict_torch = predict to 1e-10 is tested in
        # tests/emulators); what is checked here is how the likelihood assembles it
        with torch.no_grad():
            mean_t, cov_t = emulator.predict_torch(torch.as_tensor(np.array(rows)))
        mean_e, cov_e = mean_t.numpy(), cov_t.numpy()
        obs = [
            (r, camp_of[r])
            for r in range(len(rows))
            if np.isfinite(np.concatenate([c.y for c in camps])[r])
        ]
        y = np.concatenate([c.y for c in camps])
        idx = np.array([r for r, _ in obs])
        C = cov_e[0][np.ix_(idx, idx)].copy()
        sd = parts["noise_sd"][0].numpy()
        C += np.diag([sd[l] ** 2 for _, l in obs]) + model.jitter * np.eye(idx.size)
        if disc != "none":
            s, ell = parts["disc_scale"][0].item(), parts["disc_ls"][0, 0].item()
            xs = np.array([rows[r][0] for r in idx])
            K = s**2 * np.exp(-0.5 * (xs[:, None] - xs[None, :]) ** 2 / ell**2)
            if disc == "independent":
                K *= np.equal.outer([l for _, l in obs], [l for _, l in obs])
            C += K
        ll = stats.multivariate_normal(mean_e[idx, 0], C).logpdf(y[idx])
        np.testing.assert_allclose(g, parts["log_prior"][0].item() + ll, rtol=1e-9)


def _fit_both(n_runs, seed):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.05, 0.95, 10)
    y = 1.3 * np.sin(2 * x) + 0.2 * x**2 + 0.05 * rng.standard_normal(10)
    camps = [Campaign("A", x=x, y=y, noise_sd=0.05)]
    params = [Parameter("a", 0.5, 2.0), Parameter("b", -1.0, 1.0)]
    kw = dict(n_walkers=32, n_steps=800, warmup=200, seed=seed, autocorr_stop=False)
    direct = Calibrator(_sim(), params, camps, noise="known").sample(**kw)
    X, Y = _runs(n_runs, seed=seed)
    em = GPEmulator(seed=0).fit(X, Y)
    emu = Calibrator(em, params, camps, noise="known", input_names=("x",)).sample(**kw)
    for post in (direct, emu):  # the tolerances below presume many effective draws
        assert post.converged and post.diagnostics()["ess_min"] > 2000
    return direct, emu


def test_accurate_emulator_agrees_with_direct_mode():
    direct, emu = _fit_both(60, seed=3)
    for name in ("a", "b"):
        d, e = direct.draws(name), emu.draws(name)
        assert abs(d.mean() - e.mean()) < 0.1 * d.std(), (name, d.mean(), e.mean(), d.std())
        assert abs(e.std() / d.std() - 1) < 0.15, (name, d.std(), e.std())


def test_coarse_emulator_is_wider_not_falsely_confident():
    direct, emu = _fit_both(5, seed=4)
    assert emu.draws("a").std() > 1.2 * direct.draws("a").std()
    # and its predictions of reality carry the emulator's uncertainty
    xs = np.array([[0.5]])
    assert emu.predict(xs, n_draws=300).sd[0, 0] > direct.predict(xs, n_draws=300).sd[0, 0]
