"""The unknowns of a calibration, one class per block of the unconstrained vector.

The sampler moves one vector ``u`` of real numbers. It is made of blocks, each one kind of
unknown with its own layout, bijection, prior and meaning:

=========================  =========================================  =======================
block                      slots of ``u``                             constrained quantities
=========================  =========================================  =======================
:class:`CompletePooling`   ``E``: g(θ), one for all campaigns          ``E``
:class:`NoPooling`         ``E``: g(θ_ℓ), one per campaign             ``E[c]``
:class:`PartialPooling`    ``E.mean`` μ, ``E.logscale`` log τ,         ``E[c]``, ``E.mean``,
                           ``E.z``: z_ℓ (non-centred) or u_ℓ (centred) ``E.scale``
:class:`SpikeSlabPooling`  as PartialPooling, and ``E.null``: π₀     as PartialPooling,
                           (the spike's share; a Beta prior)          and ``E.null``
:class:`CorrelatedMember`  as PartialPooling (non-centred z_ℓ)        as PartialPooling
:class:`CorrelatedPooling` ``corr(a,b)``: the unconstrained            ``corr(a,b)``
                           Cholesky factor of Ω (LKJ prior)
:class:`DiscrepancyHyper`  ``discrepancy.logscale``,                   ``discrepancy.scale``,
                           ``discrepancy.loglengthscale``              ``…lengthscale[f]``
pooled δ scales            ``discrepancy.logscale`` m,                 ``discrepancy.scale[c]``,
(PooledDiscrepancyHyper)   ``…logscale.sd`` log s, ``…w``: w_ℓ,        ``…scale.mean``,
                           ``discrepancy.loglengthscale``              ``…scale.sd``
:class:`KnownNoise`        (none)                                     (none)
:class:`SharedNoise`       ``noise.logsd`` (one)                      ``noise.sd``
:class:`PerCampaignNoise`  ``noise.logsd`` (one per campaign)         ``noise.sd[c]``
:class:`HierarchicalNoise` ``noise.mean``, ``noise.logscale``,        ``noise.sd[c]``,
                           ``noise.z``                                ``noise.mean``, ``…scale``
=========================  =========================================  =======================

Each block states its slots and labels (:meth:`Block.slots`), the bijection kind and prior
of every column (:meth:`Block.entries`, which :class:`calib.likelihood.Model` groups into
vectorized terms), its prior draws (:meth:`Block.sample_prior`), its constrained
quantities by name (:meth:`Block.quantities`, :meth:`Block.named`) and, where it has one,
its draw for a new campaign. The pooled ones (:class:`PartialPooling`,
:class:`HierarchicalNoise`, :class:`PooledDiscrepancyHyper`) also name their (mean, log scale, members) columns for the
interweaved move (:meth:`Block.pooled_group`). A new kind of unknown is one new class here.

The model's maths (docs/model.md §2) is unchanged by this organisation: a partially pooled
parameter has ``g(θ_ℓ) = μ + τ z_ℓ`` with ``z_ℓ ~ N(0, 1)`` (non-centred) or ``g(θ_ℓ) = u_ℓ ~
N(μ, τ²)`` (centred; Papaspiliopoulos, Roberts & Sköld 2007); hierarchical noise has
``log σ_ℓ = m + s z_ℓ``, pooled δ scales ``log σ_δℓ = m + s w_ℓ``. Spike-and-slab pooling
(§2b) has ``g(θ_ℓ) ~ π₀ N(μ, (ετ)²) + (1 − π₀) N(μ, τ²)``; correlated pooling (§2c)
``g(θ_ℓ) = μ + diag(τ) L_Ω z_ℓ`` over its members, Ω with an LKJ prior.
"""

from __future__ import annotations

from ._base import Block, Entry, PooledGroup, Slot, layout, truncated_draws
from .correlated import CorrelatedMember, CorrelatedPooling
from .delta import DiscrepancyHyper, PooledDiscrepancyHyper
from .noise import (
    NOISE_MODES,
    HierarchicalNoise,
    KnownNoise,
    PerCampaignNoise,
    SharedNoise,
    noise_block,
)
from .pooling import CompletePooling, NoPooling, PartialPooling, pooling_block
from .spike_slab import SpikeSlabPooling

__all__ = [
    "Block",
    "SpikeSlabPooling",
    "CompletePooling",
    "DiscrepancyHyper",
    "Entry",
    "PooledGroup",
    "truncated_draws",
    "Slot",
    "layout",
    "HierarchicalNoise",
    "KnownNoise",
    "NOISE_MODES",
    "NoPooling",
    "PartialPooling",
    "PerCampaignNoise",
    "PooledDiscrepancyHyper",
    "SharedNoise",
    "noise_block",
    "pooling_block",
    "CorrelatedMember",
    "CorrelatedPooling",
]
