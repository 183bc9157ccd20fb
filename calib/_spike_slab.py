"""Which campaigns differ: inclusion probabilities and discoveries of spike-and-slab pooling.

For a parameter with ``pooling="spike_slab"`` (docs/model.md §2b) each campaign's value
``u_ℓ = g(θ_ℓ)`` is in the spike (no effect, "null") or the slab (a real difference).

- :func:`responsibilities`: for every kept draw s, the slab's responsibility
  ``r_ℓ(s) = (1 − π₀) N(u_ℓ; μ, τ²) / [π₀ N(u_ℓ; μ, (ετ)²) + (1 − π₀) N(u_ℓ; μ, τ²)]``
  at that draw's (μ, τ, π₀, u_ℓ): the probability of the slab given everything else.
- :func:`inclusion_probability`: its mean over the draws, ``P(slab | data)``; averaging the
  conditional probability instead of counting indicator draws is Rao-Blackwellization
  (Gelfand & Smith 1990), which has the same expectation and a smaller variance.
- :func:`discoveries`: the Bayesian FDR rule. With ``q_ℓ = 1 − P(slab | data)`` the
  posterior null probability, the expected proportion of false discoveries of a set D
  given the data is ``mean_{ℓ∈D} q_ℓ`` (Newton, Noueiry, Sarkar & Ahlquist 2004;
  Müller, Parmigiani & Rice 2006); the rule reports the largest set, taken in increasing
  ``q``, whose mean is at most the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import check_number

__all__ = ["Discoveries", "discoveries", "inclusion_probability", "responsibilities", "select"]


def _block(post, name: str):
    from .blocks.spike_slab import SpikeSlabPooling

    for block in post.model.param_blocks:
        if block.name == name:
            if isinstance(block, SpikeSlabPooling):
                return block
            break
    have = [b.name for b in post.model.param_blocks if isinstance(b, SpikeSlabPooling)]
    raise ValueError(
        f"name: expected a parameter with pooling='spike_slab' (this posterior has {have}), "
        f"got {name!r}"
    )


def responsibilities(post, name: str) -> np.ndarray:
    """The slab's responsibility of every campaign at every kept draw.

    Parameters
    ----------
    post : Posterior
    name : str
        A parameter with ``pooling="spike_slab"``.

    Returns
    -------
    ndarray of shape (n_kept, n_walkers, L)
        Campaigns in the order of ``post.model.campaign_names``.
    """
    block = _block(post, name)
    k, slots = post.kept, post.model.slots
    z = slots[f"{name}.z"]
    u = k[..., z.start : z.stop]  # u_ℓ (centred) or x_ℓ = (u_ℓ − μ)/τ
    mu = k[..., slots[f"{name}.mean"].start, None]
    v = k[..., slots[f"{name}.logscale"].start, None]
    logit = k[..., slots[f"{name}.logitnull"].start, None]
    # the standardized effect: held as such when non-centred, from u_ℓ when centred
    r = (u - mu) * np.exp(-v) if block.centred else u
    eps = block.eps
    # log σ(±x) = −log(1 + e^∓x): no log of a π₀ rounded to 0 or 1
    spike = -np.logaddexp(0.0, -logit) - np.log(eps) - 0.5 * (r / eps) ** 2
    slab = -np.logaddexp(0.0, logit) - 0.5 * r * r
    return np.exp(slab - np.logaddexp(spike, slab))


def inclusion_probability(post, name: str) -> dict[str, float]:
    """Posterior probability that each campaign is in the slab (differs from the rest).

    Rao-Blackwellized: the mean over the kept draws of :func:`responsibilities`.

    Returns
    -------
    dict
        ``{campaign: P(slab | data)}`` in the campaigns' order.
    """
    p = responsibilities(post, name).reshape(-1, len(post.model.campaign_names)).mean(axis=0)
    return {c: float(x) for c, x in zip(post.model.campaign_names, p)}


def select(null_probability: np.ndarray, fdr: float) -> np.ndarray:
    """Indices of the largest set, in increasing null probability, whose mean null
    probability is at most ``fdr`` (the Bayesian FDR rule; empty when none qualifies).

    The running mean of sorted probabilities never decreases, so the largest qualifying
    set is a prefix of the sorted order.
    """
    q = np.asarray(null_probability, dtype=float)
    order = np.argsort(q, kind="stable")
    running = np.cumsum(q[order]) / np.arange(1, q.size + 1)
    k = int(np.searchsorted(running, fdr, side="right"))
    return order[:k]


@dataclass(frozen=True)
class Discoveries:
    """The campaigns a spike-and-slab screen calls different, at a Bayesian FDR target.

    Attributes
    ----------
    parameter : str
    campaigns : list of str
        The discoveries, most certain first.
    null_probability : dict
        ``{campaign: P(null | data)}`` of every campaign, in the model's order.
    fdr : float
        The target.
    estimated_fdr : float
        The expected false discovery proportion of the set given the data (the mean null
        probability of its members; 0 for an empty set).
    """

    parameter: str
    campaigns: list[str]
    null_probability: dict[str, float]
    fdr: float
    estimated_fdr: float

    def __len__(self) -> int:
        return len(self.campaigns)

    def __iter__(self):
        return iter(self.campaigns)

    def __contains__(self, campaign: object) -> bool:
        return campaign in self.campaigns

    def __str__(self) -> str:
        n, L = len(self.campaigns), len(self.null_probability)
        head = (
            f"{self.parameter}: {n} of {L} campaigns differ at a Bayesian FDR of "
            f"{self.fdr:g} (estimated FDR of the set {self.estimated_fdr:.3f})"
        )
        width = max(len("campaign"), *(len(c) for c in self.null_probability))
        rows = [f"  {'campaign':<{width}}  P(differs)  discovery"]
        order = sorted(self.null_probability, key=lambda c: self.null_probability[c])
        for c in order:
            mark = "yes" if c in self.campaigns else ""
            rows.append(f"  {c:<{width}}  {1.0 - self.null_probability[c]:10.3f}  {mark}")
        return "\n".join([head, *rows])


def discoveries(post, name: str, fdr: float = 0.1) -> Discoveries:
    """The campaigns whose ``name`` differs from the population, at a Bayesian FDR.

    Parameters
    ----------
    post : Posterior
    name : str
        A parameter with ``pooling="spike_slab"``.
    fdr : float
        The target expected false discovery proportion, in (0, 1).

    Returns
    -------
    Discoveries
    """
    fdr = check_number(fdr, "fdr", 0, 1)
    incl = inclusion_probability(post, name)
    camps = list(incl)
    q = np.array([1.0 - incl[c] for c in camps])
    idx = select(q, fdr)
    return Discoveries(
        parameter=name,
        campaigns=[camps[i] for i in idx],
        null_probability={c: float(x) for c, x in zip(camps, q)},
        fdr=fdr,
        estimated_fdr=float(q[idx].mean()) if idx.size else 0.0,
    )
