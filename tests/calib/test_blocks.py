"""The blocks of the unconstrained vector, each against its own definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from calib import Discrepancy, Parameter
from calib.blocks import (
    CompletePooling,
    DiscrepancyHyper,
    HierarchicalNoise,
    KnownNoise,
    NoPooling,
    PartialPooling,
    PerCampaignNoise,
    SharedNoise,
    layout,
    noise_block,
    pooling_block,
    truncated_draws,
)
from calib.priors import Gamma, HalfCauchy, HalfNormal, Normal

CAMPAIGNS = ["a", "b", "c"]


def _all_blocks():
    E = Parameter("E", 1.0, 5.0, pooling="partial")
    k = Parameter("k", lower=0.0, prior=Gamma(2.0, 1.0), pooling="none")
    c = Parameter("c", prior=Normal(0.0, 2.0))
    m = Parameter("m", 0.0, 1.0, pooling="partial", centered=True)
    disc = DiscrepancyHyper.with_defaults(
        Discrepancy("shared"), 1.5, np.array([[0.0, 1.0], [2.0, 5.0]]), ["x", "s"]
    )
    return [
        pooling_block(E, CAMPAIGNS),
        pooling_block(k, CAMPAIGNS),
        pooling_block(c, CAMPAIGNS),
        pooling_block(m, CAMPAIGNS, {"scale": HalfCauchy(0.5)}),
        disc,
    ]


NOISES = [
    noise_block("known", CAMPAIGNS, 1.0, None, None),
    noise_block("shared", CAMPAIGNS, 1.0, None, None),
    noise_block("per_campaign", CAMPAIGNS, 1.0, HalfNormal(0.3), None),
    noise_block("hierarchical", CAMPAIGNS, 1.0, None, {"scale": HalfNormal(0.5)}),
]


def test_the_mode_strings_pick_the_classes_and_defaults():
    kinds = [type(b) for b in _all_blocks()[:4]]
    assert kinds == [PartialPooling, NoPooling, CompletePooling, PartialPooling]
    assert [type(b) for b in NOISES] == [
        KnownNoise,
        SharedNoise,
        PerCampaignNoise,
        HierarchicalNoise,
    ]
    # defaults by the data's sd, given hyperpriors override one key at a time
    assert NOISES[1].prior == HalfNormal(1.0)
    assert NOISES[2].prior == HalfNormal(0.3)
    assert NOISES[3].hyperpriors == {"mean": Normal(math.log(0.5), 1.5), "scale": HalfNormal(0.5)}
    assert _all_blocks()[3].hyperpriors["scale"] == HalfCauchy(0.5)
    # a Uniform prior on bounds: g(θ) is standard logistic, sd π/√3 (midpoint rule: 1e-3)
    mean = _all_blocks()[3].hyperpriors["mean"]
    assert mean.mean == pytest.approx(0.0, abs=1e-12)
    assert mean.sd == pytest.approx(math.pi / math.sqrt(3.0), rel=1e-3)
    with pytest.raises(ValueError, match="noise must be one of"):
        noise_block("loud", CAMPAIGNS, 1.0, None, None)


@pytest.mark.parametrize("noise", NOISES, ids=lambda b: b.mode)
def test_slots_entries_and_prior_draws_agree(noise):
    blocks = _all_blocks() + [noise]
    slots, n_dim, labels = layout(blocks)
    assert len(labels) == n_dim
    # slots tile u in order, without gaps
    pos = 0
    for s in slots.values():
        assert s.start == pos
        pos = s.stop
    assert pos == n_dim
    rng = np.random.default_rng(0)
    widths = [b.sample_prior(rng, 7).shape for b in blocks]
    sizes = [sum(len(lab) for _, lab in b.slots()) for b in blocks]
    assert widths == [(7, k) for k in sizes]
    # every column has at most one prior entry, and only the centred members have none
    cols = [e.col for b in blocks for e in b.entries(slots)]
    assert len(cols) == len(set(cols))
    centred = set(range(slots["m.z"].start, slots["m.z"].stop))
    assert set(range(n_dim)) - set(cols) == centred


def test_noise_sd_is_the_documented_function_of_u():
    W = 4
    for block in NOISES:
        slots, n_dim, _ = layout([block])
        U = torch.as_tensor(np.random.default_rng(1).normal(size=(W, n_dim)))
        sd = block.noise_sd(U, slots)
        if isinstance(block, KnownNoise):
            assert sd is None
            continue
        u = U.numpy()
        if isinstance(block, SharedNoise):
            expect = np.repeat(np.exp(u[:, :1]), 3, axis=1)
        elif isinstance(block, PerCampaignNoise):
            expect = np.exp(u)
        else:  # log σ_ℓ = m + s z_ℓ
            expect = np.exp(u[:, :1] + np.exp(u[:, 1:2]) * u[:, 2:])
        np.testing.assert_allclose(sd.numpy(), expect, rtol=1e-15)
        assert sd.shape == (W, 3)


def test_a_new_campaign_draws_from_the_population():
    # g(θ_new) = μ + τ z for a bounded parameter: θ_new in the bounds, its logit normal
    E = pooling_block(Parameter("E", 1.0, 5.0, pooling="partial"), CAMPAIGNS)
    S = 20000
    parts = {
        "E.mean": torch.full((S,), 0.3, dtype=torch.float64),
        "E.scale": torch.full((S,), 0.7, dtype=torch.float64),
    }
    theta = torch.zeros(S, 3, dtype=torch.float64)
    new = E.theta_new(theta, parts, np.random.default_rng(2), S).numpy()
    assert ((new > 1.0) & (new < 5.0)).all()
    u = np.log((new - 1.0) / (5.0 - new))
    # mean within 4 standard errors of 0.3, sd within 4 of 0.7 (n = 20000)
    assert abs(u.mean() - 0.3) < 4 * 0.7 / math.sqrt(S)
    assert abs(u.std() - 0.7) < 4 * 0.7 / math.sqrt(2 * S)


def test_truncated_prior_draws_follow_the_truncated_prior():
    p = Parameter("k", lower=0.5, upper=3.0, prior=Gamma(2.0, 1.0), pooling="none")
    draws = truncated_draws(p, np.random.default_rng(3), (4000, 1))[:, 0]
    assert ((draws > 0.5) & (draws < 3.0)).all()
    dist = stats.gamma(2.0, scale=1.0)
    fa, fb = dist.cdf(0.5), dist.cdf(3.0)
    # the draws avoid the outer 0.1 % of the truncated mass at each end (kept off the bounds)
    cdf = lambda x: np.clip(((dist.cdf(x) - fa) / (fb - fa) - 0.001) / 0.998, 0.0, 1.0)  # noqa: E731
    assert stats.kstest(draws, cdf).pvalue > 0.001


def test_a_new_kind_of_unknown_is_one_class():
    from calib.blocks import Block, Entry

    class Offset(Block):
        def slots(self):
            return [("offset", ["offset"])]

        def entries(self, slots):
            return [Entry(slots["offset"].start, "identity", None, None, Normal(0.0, 1.0))]

    blocks = _all_blocks() + [Offset(), NOISES[1]]
    slots, n_dim, labels = layout(blocks)
    assert labels[slots["offset"].start] == "offset"
    assert slots["noise.logsd"].start == slots["offset"].stop
