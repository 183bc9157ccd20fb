"""Fixed δ length-scales, ``Discrepancy(lengthscale={feature: value})`` (issue 16, item 4).

A fixed length-scale has no column in ``u``. The check: the log-posterior with ℓ_h fixed at
5 equals, at every point, that of the same calibration with ℓ_h sampled under a prior,
evaluated with log ℓ_h = log 5 and that column's prior term (its log density and the
Jacobian of the log) taken off: a point mass at 5. For a plain GP δ both are also checked
against a dense reference written here with scipy. Then the layout, the names, the
predictions, the refusals and the configuration round trip.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import calib
from calib import Calibrator, Campaign, Discrepancy, Parameter, _config_parse
from calib.priors import HalfNormal, LogNormal, Normal
from simulators import FunctionSimulator

FIXED = 5.0
LS_H = LogNormal(0.0, 1.0)  # the reference's prior on ℓ_h, whose term is taken off
NOISE = 0.05


def _eta(X, T):
    return T[:, :1] * X[:, :1] + 0.1 * X[:, 1:2]


def _sim():
    return FunctionSimulator(_eta, ("r", "h"), ("k",), ("y",), vectorized=True)


def _campaigns():
    rng = np.random.default_rng(4)
    out = []
    for c, n in (("A", 6), ("B", 4)):
        x = np.column_stack([rng.uniform(0, 0.3, n), rng.uniform(0, 15.0, n)])
        out.append(Campaign(c, x=x, y=x[:, 0] + 0.1 * rng.standard_normal(n), noise_sd=NOISE))
    return out


DISCS = {
    "shared": {"mode": "shared"},
    "matern, independent": {"mode": "independent", "kernel": "matern52"},
    "pooled scales": {"mode": "independent", "scale": "hierarchical"},
    "constrained": {"mode": "shared", "zero_at": [[0.0, 0.0]]},
    "sgasp": {"mode": "shared", "process": "sgasp"},
}


def _pair(kw):
    """The calibration with ℓ_h fixed, and the reference with ℓ_h sampled."""
    kw = dict(kw)
    mode = kw.pop("mode")
    k = [Parameter("k", prior=Normal(1.0, 1.0))]
    fixed = Discrepancy(mode, lengthscale={"h": FIXED}, **kw)
    ref = Discrepancy(mode, lengthscale_prior={"h": LS_H}, **kw)
    return (
        Calibrator(_sim(), k, _campaigns(), discrepancy=fixed, noise="known"),
        Calibrator(_sim(), k, _campaigns(), discrepancy=ref, noise="known"),
    )


@pytest.mark.parametrize("case", list(DISCS))
def test_a_fixed_lengthscale_is_a_point_mass(case):
    fixed, ref = _pair(DISCS[case])
    assert fixed.n_dim == ref.n_dim - 1
    col = ref.labels.index("log discrepancy.lengthscale[h]")
    assert "log discrepancy.lengthscale[h]" not in fixed.labels
    assert "log discrepancy.lengthscale[r]" in fixed.labels
    U = ref.model.sample_prior(np.random.default_rng(7), 6)
    U[:, col] = math.log(FIXED)
    lp_ref = ref.log_posterior(U)
    lp_fixed = fixed.log_posterior(np.delete(U, col, axis=1))
    # the reference's prior term of the column: log p(ℓ) + log ℓ (the Jacobian of u = log ℓ)
    term = stats.lognorm(1.0, scale=1.0).logpdf(FIXED) + math.log(FIXED)
    assert np.isfinite(lp_fixed).all()
    np.testing.assert_allclose(lp_fixed, lp_ref - term, rtol=1e-12, atol=1e-9)
    # the gradient path too (the MAP search and the HMC move use it)
    Ut = torch.tensor(np.delete(U, col, axis=1), requires_grad=True)
    fixed.log_posterior(Ut).sum().backward()
    assert torch.isfinite(Ut.grad).all()


def test_the_dense_reference():
    """A shared plain GP δ: ``y ~ N(η, σ_δ² K(ℓ_r, ℓ_h = 5) + σ_ε² I)`` over both campaigns,
    with the priors of k, σ_δ and ℓ_r (and their log Jacobians) by hand."""
    fixed, _ = _pair(DISCS["shared"])
    camps = _campaigns()
    X = np.vstack([c.x for c in camps])
    y = np.concatenate([np.ravel(c.y) for c in camps])
    sd_y = np.std(y)
    range_r = np.ptp(X[:, 0])
    U = fixed.model.sample_prior(np.random.default_rng(3), 4)
    lab = fixed.labels
    assert lab == ["k (unconstrained)", "log discrepancy.scale", "log discrepancy.lengthscale[r]"]
    for u, lp in zip(U, fixed.log_posterior(U)):
        k, s, lr = u[0], math.exp(u[1]), math.exp(u[2])
        d2 = ((X[:, None, 0] - X[None, :, 0]) / lr) ** 2 + (
            (X[:, None, 1] - X[None, :, 1]) / FIXED
        ) ** 2
        cov = s * s * np.exp(-0.5 * d2) + NOISE**2 * np.eye(len(y))
        mean = k * X[:, 0] + 0.1 * X[:, 1]
        ref = (
            stats.multivariate_normal(mean, cov).logpdf(y)
            + stats.norm(1.0, 1.0).logpdf(k)
            + stats.halfnorm(scale=sd_y).logpdf(s)
            + u[1]
            + stats.lognorm(1.0, scale=range_r / 2.0).logpdf(lr)
            + u[2]
        )
        assert lp == pytest.approx(ref, rel=1e-9)


def test_every_lengthscale_fixed_names_and_predictions():
    k = [Parameter("k", prior=Normal(1.0, 1.0))]
    disc = Discrepancy("shared", lengthscale=2.0, scale_prior=HalfNormal(0.5))
    cal = Calibrator(_sim(), k, _campaigns(), discrepancy=disc, noise="known")
    assert cal.labels == ["k (unconstrained)", "log discrepancy.scale"]
    U = torch.as_tensor(cal.model.sample_prior(np.random.default_rng(0), 3))
    parts = cal.model.unpack(U)
    np.testing.assert_array_equal(parts["disc_ls"].numpy(), np.full((3, 2), 2.0))
    # a fixed length-scale is a setting, not a posterior quantity
    names = cal.model.disc_block.named(parts)
    assert set(names) == {"discrepancy.scale"}
    with pytest.warns(UserWarning):  # 30 steps do not converge: beside the point here
        post = cal.sample(n_walkers=8, n_steps=30, seed=1, moves="de", n_starts=1)
    assert "discrepancy.scale" in post.names
    assert not any("lengthscale" in q for q in post.names)
    pred = post.predict(np.array([[0.1, 3.0]]), campaign="A", n_draws=5, seed=0)
    assert np.isfinite(np.asarray(pred.mean)).all()


def test_refusals():
    with pytest.raises(ValueError, match=r"lengthscale names \['height'\], which are not δ's"):
        Calibrator(
            _sim(),
            [Parameter("k", prior=Normal(1, 1))],
            _campaigns(),
            discrepancy=Discrepancy("shared", lengthscale={"height": 5.0}),
        )
    with pytest.raises(ValueError, match=r"\['h'\] have both a fixed lengthscale and a"):
        Discrepancy("shared", lengthscale={"h": 5.0}, lengthscale_prior={"h": LS_H})
    with pytest.raises(ValueError, match=r"lengthscale\['h'\] must be positive and finite"):
        Discrepancy("shared", lengthscale={"h": 0.0})
    with pytest.raises(TypeError, match=r"lengthscale must be a positive number, got '5'"):
        Discrepancy("shared", lengthscale="5")
    with pytest.raises(ValueError, match="lengthscale needs a discrepancy"):
        Discrepancy("none", lengthscale=1.0)
    with pytest.raises(ValueError, match="fixes every feature's length-scale"):
        Discrepancy("shared", lengthscale=1.0, lengthscale_prior={"h": LS_H})


def test_the_record_keeps_it_and_a_plain_record_is_unchanged():
    disc = Discrepancy("shared", lengthscale={"h": 5.0})
    assert disc.to_dict()["lengthscale"] == {"h": 5.0}
    assert "lengthscale" not in Discrepancy("shared").to_dict()
    assert "lengthscale={'h': 5.0}" in repr(disc)


@pytest.mark.skipif(
    "lengthscale" not in _config_parse._DISCREPANCY_KEYS,
    reason="calib/_config_parse.py does not read discrepancy.lengthscale yet (the lead's file)",
)
def test_archive_round_trip_and_resume(tmp_path):
    fixed, _ = _pair(DISCS["shared"])
    path = tmp_path / "study.h5"
    with pytest.warns(UserWarning):  # a short run: not converged, beside the point
        post = fixed.sample(n_walkers=8, n_steps=20, seed=2, moves="de", archive=path, n_starts=1)
    back = calib.load(path, simulator=_sim())
    assert back.model.labels == fixed.model.labels
    assert back.model.disc_block.fixed == {"h": FIXED}
    np.testing.assert_array_equal(back.chain, post.chain)
    U = post.chain[-1]
    np.testing.assert_array_equal(back.model.log_posterior_numpy(U), fixed.log_posterior(U))
    # another fixed value is another calibration: its resume is refused, naming it
    other = Calibrator(
        _sim(),
        [Parameter("k", prior=Normal(1.0, 1.0))],
        _campaigns(),
        discrepancy=Discrepancy("shared", lengthscale={"h": 6.0}),
        noise="known",
    )
    with pytest.raises(calib.archive.ArchiveError, match="lengthscale"):
        other.sample(n_walkers=8, n_steps=40, seed=2, moves="de", archive=path, resume=True)
