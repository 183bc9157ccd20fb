"""The prior plan's hooks for blocks with a joint population term (calib/prior_plan.py):
a correlating block's ``L z_ℓ``, a group whose population is not normal, and a block's own
``joint_log_prior``, each checked against the same quantities written out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from calib import Parameter
from calib.blocks import Block, PartialPooling, PooledGroup, layout
from calib.prior_plan import PriorPlan
from calib.priors import Normal

CPU = torch.device("cpu")
CAMPAIGNS = ["c0", "c1", "c2"]
HYPER = {"mean": Normal(0.0, 2.0), "scale": Normal(0.0, 1.0)}  # HalfNormal-like via exp


def _pooled(name: str, centered: bool = False) -> PartialPooling:
    prm = Parameter(name, pooling="partial", centered=centered)
    return PartialPooling(prm, CAMPAIGNS, dict(HYPER))


class _FixedCorrelation(Block):
    """Correlates two members with a fixed ρ and adds a known constant term."""

    def __init__(self, names, rho):
        self.names, self.rho = list(names), rho

    def correlated_members(self):
        return self.names

    def cholesky(self, U, slots):
        r = self.rho
        chol = torch.tensor([[1.0, 0.0], [r, math.sqrt(1 - r * r)]], dtype=U.dtype, device=U.device)
        return chol.expand(U.shape[0], 2, 2)

    def joint_log_prior(self, U, slots):
        return torch.full((U.shape[0],), 0.25, dtype=U.dtype, device=U.device)


class _OtherPopulation(PartialPooling):
    """A centred member whose population term the block states itself (here: none)."""

    def pooled_group(self, slots):
        g = super().pooled_group(slots)
        return PooledGroup(g.mean, g.logscale, g.members, g.centred, population="other")


def _plan(blocks):
    slots, n_dim, _ = layout(blocks)
    return PriorPlan(blocks, slots, n_dim, len(CAMPAIGNS), CPU), slots, n_dim


def test_correlating_block_gives_mu_plus_tau_L_z_and_its_term():
    a, b = _pooled("a"), _pooled("b")
    blocks = [a, b, _FixedCorrelation(["a", "b"], 0.6)]
    plan, slots, n_dim = _plan(blocks)
    ref_plan, *_ = _plan([a, b])
    U = torch.as_tensor(np.random.default_rng(1).normal(size=(5, n_dim)), dtype=torch.float64)
    lp, theta = plan(U)
    lp_ref, _ = ref_plan(U)
    # the z_ℓ keep their N(0, 1) terms (the Jacobian of z → Lz is the correlation prior's)
    np.testing.assert_allclose(lp.numpy(), lp_ref.numpy() + 0.25, rtol=1e-12)
    chol = np.array([[1.0, 0.0], [0.6, 0.8]])
    u = U.numpy()
    z = np.stack([u[:, slots["a.z"].start : slots["a.z"].stop], u[:, slots["b.z"].start :]], -1)
    mu = u[:, [slots["a.mean"].start, slots["b.mean"].start]]
    tau = np.exp(u[:, [slots["a.logscale"].start, slots["b.logscale"].start]])
    expected = mu[:, None, :] + tau[:, None, :] * (z @ chol.T)
    np.testing.assert_allclose(theta.numpy(), expected, rtol=1e-12)


def test_correlating_a_centred_or_unpooled_parameter_is_refused():
    with pytest.raises(ValueError, match="'a' must be non-centred"):
        _plan([_pooled("a", centered=True), _pooled("b"), _FixedCorrelation(["a", "b"], 0.5)])
    with pytest.raises(ValueError, match="'c' must have pooling='partial'"):
        _plan([_pooled("a"), _pooled("b"), _FixedCorrelation(["a", "c"], 0.5)])


def test_a_population_other_than_normal_gets_no_normal_term():
    normal, other = (
        _pooled("a", centered=True),
        _OtherPopulation(Parameter("b", pooling="partial", centered=True), CAMPAIGNS, dict(HYPER)),
    )
    plan, slots, n_dim = _plan([normal, other])
    U = torch.as_tensor(np.random.default_rng(2).normal(size=(4, n_dim)), dtype=torch.float64)
    lp, theta = plan(U)
    u = U.numpy()
    # by hand: hyperprior terms of both groups (μ ~ N(0, 2); log τ column with prior N(0, 1)
    # on τ plus the log-Jacobian log τ) and log N(u_ℓ; μ, τ²) of the normal group only
    expected = np.zeros(len(u))
    for name in ("a", "b"):
        m, v = u[:, slots[f"{name}.mean"].start], u[:, slots[f"{name}.logscale"].start]
        expected += stats.norm.logpdf(m, 0, 2) + stats.norm.logpdf(np.exp(v), 0, 1) + v
    m, v = u[:, slots["a.mean"].start], u[:, slots["a.logscale"].start]
    ua = u[:, slots["a.z"].start : slots["a.z"].stop]
    expected += stats.norm.logpdf(ua, m[:, None], np.exp(v)[:, None]).sum(axis=1)
    np.testing.assert_allclose(lp.numpy(), expected, rtol=1e-10)
    # θ is still assembled from the centred values
    np.testing.assert_allclose(theta[..., 1].numpy(), u[:, slots["b.z"].start :], rtol=0)
