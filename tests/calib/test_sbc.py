"""Simulation-based calibration (Talts et al. 2018) of a partially pooled model with discrepancy.

For each replication the truth is drawn from the prior, data are simulated from the model
(simulator + δ drawn from its GP prior + noise), the posterior is sampled, and the rank of
the true value among L = 49 nearly independent posterior draws is recorded. If the sampler
and the likelihood are right, the ranks are uniform on {0, …, 49}; a chi-square test over
10 bins checks it, at level 0.001 per quantity (Bonferroni over three quantities).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from calib import Calibrator, Campaign, Discrepancy, Parameter
from calib.priors import HalfNormal, LogNormal, Normal
from simulators import FunctionSimulator

N_REP = 100
N_RANK = 49


def _sim():
    return FunctionSimulator(
        lambda X, T: T[:, :1] * X[:, :1] + X[:, :1] ** 2, ("x",), ("k",), ("y",), vectorized=True
    )


def _calibrator(xs, ys):
    camps = [Campaign(f"c{l}", x=x, y=y, noise_sd=0.1) for l, (x, y) in enumerate(zip(xs, ys))]
    return Calibrator(
        _sim(),
        [Parameter("k", pooling="partial")],
        camps,
        discrepancy=Discrepancy(
            "shared",
            "rbf",
            scale_prior=HalfNormal(0.3),
            lengthscale_prior=LogNormal(np.log(0.5), 0.3),
        ),
        noise="known",
        hyperpriors={"k": {"mean": Normal(1.0, 0.5), "scale": HalfNormal(0.4)}},
    )


#: (moves, budget, warm-up): the DE mix as before, and the default gradient move, whose
#: interweaved HMC diverges in the centred coordinates of k's small-scale funnel (5-6 % of
#: its transitions, measured on one replication): SBC checks that they do not bias it
SAMPLERS = {"de": {"moves": "de", "n_steps": 1200}, "hmc": {"n_steps": 200, "warmup": 100}}


@pytest.mark.slow
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_simulation_based_calibration_ranks_are_uniform(sampler):
    rng = np.random.default_rng(2024)
    xs = [np.linspace(0, 1, 6) + 0.03 * l for l in range(3)]
    ranks = {"k.mean": [], "k[c0]": [], "discrepancy.scale": []}
    for rep in range(N_REP):
        cal0 = _calibrator(xs, [np.zeros(6)] * 3)
        u_true = cal0.model.sample_prior(rng, 1)
        with torch.no_grad():
            parts = cal0.model.unpack(torch.as_tensor(u_true))
        k = parts["theta"][0, :, 0].numpy()
        s, ell = float(parts["disc_scale"][0]), float(parts["disc_ls"][0, 0])
        xall = np.concatenate(xs)
        K = s**2 * np.exp(-0.5 * (xall[:, None] - xall[None, :]) ** 2 / ell**2)
        delta = np.linalg.cholesky(K + 1e-10 * np.eye(xall.size)) @ rng.standard_normal(xall.size)
        ys = [
            k[l] * xs[l] + xs[l] ** 2 + delta[6 * l : 6 * l + 6] + 0.1 * rng.standard_normal(6)
            for l in range(3)
        ]
        post = _calibrator(xs, ys).sample(
            n_walkers=16, seed=rep, autocorr_stop=False, **SAMPLERS[sampler]
        )
        truth = {"k.mean": float(parts["k.mean"][0]), "k[c0]": k[0], "discrepancy.scale": s}
        kept = post.kept.shape[0]
        steps = np.linspace(0, kept - 1, N_RANK).round().astype(int)
        walkers = np.arange(N_RANK) % post.n_walkers
        q = post._compute_quantities()
        for name in ranks:
            draws = q[name][steps, walkers]
            ranks[name].append(int((draws < truth[name]).sum()))
    for name, r in ranks.items():
        counts = np.bincount(np.array(r) // 5, minlength=10)
        p = stats.chisquare(counts).pvalue
        assert p > 1e-3, (name, counts, p)
