"""The batched log-posterior against a dense, independent NumPy/SciPy computation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import expit

from calib import Calibrator, Campaign, Discrepancy, Parameter
from calib.priors import Gamma, HalfCauchy, HalfNormal, LogNormal, Normal
from simulators import FunctionSimulator


def _sim(n_out: int, coords: bool):
    def f(X, T):
        base = T[:, 0:1] * np.sin(X[:, 0:1] + T[:, 1:2]) + X[:, 1:2] * T[:, 2:3]
        return base + 0.3 * np.arange(n_out)[None, :] * T[:, 1:2]

    c = np.linspace(0.0, 1.0, n_out) if coords else None
    return FunctionSimulator(
        f,
        ("x1", "x2"),
        ("a", "b", "c"),
        tuple(f"o{j}" for j in range(n_out)),
        vectorized=True,
        output_coords=c,
    )


def _problem(pooling, disc, noise, missing, n_out=1, coords=False, seed=0):
    rng = np.random.default_rng(seed)
    sim = _sim(n_out, coords)
    params = [
        Parameter("a", 0.5, 3.0, pooling=pooling[0]),
        Parameter("b", prior=Normal(0.2, 0.7), pooling=pooling[1]),
        # c centred, a and b non-centred (the default): both forms, and a mix, are checked
        Parameter("c", lower=0.0, prior=Gamma(2.0, 1.5), pooling=pooling[2], centered=True),
    ]
    camps = []
    for l, n in enumerate((5, 3, 4)):
        x = rng.uniform(0, 2, (n, 2))
        y = rng.normal(1.0, 1.0, (n, n_out))
        if missing:
            y[rng.uniform(size=y.shape) < 0.25] = np.nan
            y[0, 0] = 0.7  # keep at least one observed value
        sd = rng.uniform(0.1, 0.4, (n, n_out)) if noise == "known" else None
        camps.append(Campaign(f"c{l}", x=x, y=y, noise_sd=sd))
    d = Discrepancy(disc, kernel="matern52" if seed % 2 else "rbf") if disc != "none" else "none"
    hyper = {}
    if "partial" in pooling:
        hyper = {p.name: {"scale": HalfCauchy(0.8)} for p in params if p.pooling == "partial"}
    if noise == "hierarchical":
        hyper["noise"] = {"mean": Normal(-1.0, 1.0)}
    return (
        Calibrator(sim, params, camps, discrepancy=d, noise=noise, hyperpriors=hyper),
        sim,
        params,
        camps,
    )


# ---------------------------------------------------------------------- the reference
def _constrain(prm, u):
    a, b = prm.lower, prm.upper
    if a is not None and b is not None:
        return a + (b - a) * expit(u), math.log(b - a) + math.log(expit(u)) + math.log(expit(-u))
    if a is not None:
        return a + math.exp(u), u
    return u, 0.0


def _kern(kind, z1, z2, s, ls):
    r = math.sqrt(sum((z1[d] - z2[d]) ** 2 / ls[d] ** 2 for d in range(len(ls))))
    if kind == "rbf":
        return s * s * math.exp(-0.5 * r * r)
    return s * s * (1 + math.sqrt(5) * r + 5 * r * r / 3) * math.exp(-math.sqrt(5) * r)


def _reference(cal, sim, camps, u):
    """log prior + log likelihood by explicit loops and scipy densities."""
    model = cal.model
    L = len(camps)
    lp = 0.0
    pos = 0
    theta = np.zeros((L, 3))
    for j, prm in enumerate(cal.parameters):
        if prm.pooling == "complete":
            t, ld = _constrain(prm, u[pos])
            lp += prm.prior.scipy().logpdf(t) + ld
            theta[:, j] = t
            pos += 1
        elif prm.pooling == "none":
            for l in range(L):
                t, ld = _constrain(prm, u[pos + l])
                lp += prm.prior.scipy().logpdf(t) + ld
                theta[l, j] = t
            pos += L
        else:
            hp = model.hyperpriors[prm.name]
            mu, v, z = u[pos], u[pos + 1], u[pos + 2 : pos + 2 + L]
            lp += hp["mean"].scipy().logpdf(mu) + hp["scale"].scipy().logpdf(math.exp(v)) + v
            if prm.centered:  # z holds u_ℓ = g(θ_ℓ) ~ N(μ, τ²)
                lp += stats.norm.logpdf(z, mu, math.exp(v)).sum()
                for l in range(L):
                    theta[l, j] = _constrain(prm, z[l])[0]
            else:  # z_ℓ ~ N(0, 1), g(θ_ℓ) = μ + τ z_ℓ
                lp += stats.norm.logpdf(z).sum()
                for l in range(L):
                    theta[l, j] = _constrain(prm, mu + math.exp(v) * z[l])[0]
            pos += 2 + L
    disc = model.discrepancy
    if disc.active:
        s = math.exp(u[pos])
        lp += model.disc_scale_prior.scipy().logpdf(s) + u[pos]
        D = model.D
        ls = np.exp(u[pos + 1 : pos + 1 + D])
        for d in range(D):
            lp += model.disc_ls_priors[d].scipy().logpdf(ls[d]) + u[pos + 1 + d]
        pos += 1 + D
    if cal.noise in ("shared", "per_campaign"):
        k = 1 if cal.noise == "shared" else L
        sd = np.exp(u[pos : pos + k])
        for v in u[pos : pos + k]:
            lp += model.noise_prior.scipy().logpdf(math.exp(v)) + v
        sd = np.broadcast_to(sd, (L,))
    elif cal.noise == "hierarchical":
        hp = model.hyperpriors["noise"]
        mn, v, z = u[pos], u[pos + 1], u[pos + 2 : pos + 2 + L]
        lp += hp["mean"].scipy().logpdf(mn) + hp["scale"].scipy().logpdf(math.exp(v)) + v
        lp += stats.norm.logpdf(z).sum()
        sd = np.exp(mn + math.exp(v) * z)
    # every observed entry
    ent = []
    for l, c in enumerate(camps):
        y = c.y.reshape(c.y.shape[0], -1)
        for i in range(y.shape[0]):
            out = sim.run(c.x[i], theta[l])
            for j in range(y.shape[1]):
                if np.isfinite(y[i, j]):
                    var = c.noise_sd[i, j] ** 2 if cal.noise == "known" else sd[l] ** 2
                    zf = list(c.x[i])
                    if sim.output_coords is not None:
                        zf += list(sim.output_coords[j])
                    ent.append((l, j, y[i, j], out[j], var, zf))
    N = len(ent)
    C = np.zeros((N, N))
    for a, b in itertools.product(range(N), range(N)):
        la, ja, *_ = ent[a]
        lb, jb, *_ = ent[b]
        if a == b:
            C[a, a] += ent[a][4] + model.jitter
        if disc.active:
            link = disc.mode == "shared" or la == lb
            if sim.output_coords is None and len(sim.output_names) > 1:
                link = link and ja == jb
            if link:
                C[a, b] += _kern(disc.kernel, ent[a][5], ent[b][5], s, ls)
    y = np.array([e[2] for e in ent])
    mu = np.array([e[3] for e in ent])
    return lp + stats.multivariate_normal(mu, C).logpdf(y)


CASES = [
    (pool, disc, noise, missing)
    for pool in [
        ("complete", "complete", "complete"),
        ("none", "partial", "complete"),
        ("partial", "none", "partial"),
    ]
    for disc in ("none", "shared", "independent")
    for noise in ("known", "shared", "per_campaign", "hierarchical")
    for missing in (False, True)
]


@pytest.mark.parametrize("pooling,disc,noise,missing", CASES)
def test_log_posterior_matches_dense_reference(pooling, disc, noise, missing):
    seed = CASES.index((pooling, disc, noise, missing))
    cal, sim, params, camps = _problem(pooling, disc, noise, missing, seed=seed)
    rng = np.random.default_rng(seed)
    U = cal.model.sample_prior(rng, 4) * 0.5  # shrunk towards the centre: moderate values
    got = cal.log_posterior(U)
    want = np.array([_reference(cal, sim, camps, u) for u in U])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)


@pytest.mark.parametrize("disc", ["shared", "independent"])
@pytest.mark.parametrize("coords", [False, True])
def test_multi_output_matches_dense_reference(disc, coords):
    cal, sim, params, camps = _problem(
        ("partial", "complete", "none"), disc, "per_campaign", True, n_out=3, coords=coords, seed=7
    )
    U = cal.model.sample_prior(np.random.default_rng(3), 3) * 0.5
    want = np.array([_reference(cal, sim, camps, u) for u in U])
    np.testing.assert_allclose(cal.log_posterior(U), want, rtol=1e-9)


def test_batched_equals_one_walker_at_a_time():
    cal, *_ = _problem(("partial", "none", "complete"), "shared", "hierarchical", True, seed=5)
    U = cal.model.sample_prior(np.random.default_rng(1), 16) * 0.5
    batched = cal.log_posterior(U)
    single = np.array([cal.log_posterior(u[None])[0] for u in U])
    np.testing.assert_allclose(batched, single, rtol=1e-12)


def test_gradient_matches_finite_differences():
    cal, *_ = _problem(("partial", "complete", "none"), "shared", "per_campaign", False, seed=2)
    u0 = cal.model.sample_prior(np.random.default_rng(4), 1)[0] * 0.5
    U = torch.tensor(u0[None], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(cal.log_posterior(U)[0], U)
    fd = np.zeros_like(u0)
    for k in range(u0.size):
        e = np.zeros_like(u0)
        e[k] = 1e-5
        fd[k] = (cal.log_posterior((u0 + e)[None])[0] - cal.log_posterior((u0 - e)[None])[0]) / 2e-5
    np.testing.assert_allclose(g.numpy()[0], fd, rtol=1e-4, atol=1e-5)


def test_failing_simulator_gives_minus_inf_and_a_warning():
    def f(x, t):
        if t[0] > 2.0:
            raise RuntimeError("solver diverged")
        if t[0] > 1.5:
            return [np.nan]
        return [t[0] * x[0]]

    sim = FunctionSimulator(f, ("x",), ("k",), ("y",))
    cal = Calibrator(
        sim,
        [Parameter("k", 0.0, 3.0)],
        [Campaign("A", x=[0.1, 0.5, 0.9], y=[0.1, 0.5, 0.9], noise_sd=0.1)],
        noise="known",
    )
    U = np.array([[-2.0], [0.5], [1.5]])  # k = 0.36, 1.87 (NaN), 2.45 (raises)
    import calib

    with pytest.warns(calib.SimulatorWarning, match="2 of 3"):
        lp = cal.log_posterior(U)
    assert np.isfinite(lp[0]) and lp[1] == -np.inf and lp[2] == -np.inf


def test_prior_draws_give_finite_log_posterior():
    cal, *_ = _problem(("partial", "none", "partial"), "independent", "hierarchical", True, seed=11)
    U = cal.model.sample_prior(np.random.default_rng(0), 50)
    assert np.isfinite(cal.log_posterior(U)).mean() > 0.9


def test_lognormal_and_halfnormal_priors_used_as_given():
    # the prior of a positive parameter defines its unconstrained space (log)
    p = Parameter("k", prior=LogNormal(0.0, 0.5))
    assert p.lower == 0.0 and p.upper is None
    p = Parameter("s", prior=HalfNormal(2.0))
    assert p.lower == 0.0
