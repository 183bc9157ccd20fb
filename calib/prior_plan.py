"""The log prior of the unconstrained vector, with the log-Jacobians, vectorized.

Every column of ``u`` has a bijection kind and a prior on its constrained value (the
blocks of :mod:`calib.blocks` state them as :class:`calib.blocks.Entry`); columns with the
same kind, prior class and role form one group, whose term is one
:class:`calib.parameters.StackedTransform` and one :func:`calib.priors.stack` evaluation
(docs/model.md, eqs. 2–5, and "Cost of one log-posterior call"). θ of every campaign is
assembled from the θ groups and, for the partially pooled parameters, from
``g(θ_ℓ) = μ + τ z_ℓ`` (non-centred) or ``u_ℓ`` (centred) for all of them at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ._gaussian import _LOG_2PI
from .blocks import Block, PartialPooling
from .parameters import StackedTransform
from .priors import StackedLogProb, stack

__all__ = ["PriorPlan"]


def _tensor(device: torch.device, value, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.as_tensor(value, dtype=dtype, device=device)


@dataclass
class _PriorGroup:
    """Columns of U that share a bijection kind and a prior class: one vectorized term."""

    cols: list[int]
    transform: StackedTransform
    log_prob: StackedLogProb
    theta: bool  # the columns are θ of completely or unpooled parameters
    #: the columns are logs (x = exp(u)) and the prior states the density of u
    of_log: bool = field(init=False)

    def __post_init__(self) -> None:
        tr = self.transform
        self.of_log = tr.kind == "lower" and tr.a is None and self.log_prob.of_log is not None


def _transform_range(kind: str, lower: float | None, upper: float | None) -> tuple[float, float]:
    """The closed range of θ = g⁻¹(u) over u ∈ [−∞, ∞] (θ of kind "both" is clamped)."""
    if kind == "both":
        return lower, upper
    if kind == "lower":
        return lower, math.inf
    if kind == "upper":
        return -math.inf, upper
    return -math.inf, math.inf


class PriorPlan:
    """The vectorized prior terms and θ of the blocks (built once per model).

    Columns of U with the same bijection kind and prior class (and role) form one
    :class:`_PriorGroup`, whose term is one :class:`StackedTransform` and one
    :func:`calib.priors.stack` evaluation; the constant parts of all terms are summed here
    once.

    Parameters
    ----------
    blocks : the model's blocks, in the order of ``u``
    slots : the model's slots by name
    n_dim : length of ``u``
    L : number of campaigns
    device : where the plan's constants live
    """

    def __init__(self, blocks: list[Block], slots: dict, n_dim: int, L: int, device: torch.device):
        self.L = L
        param_blocks = [b for b in blocks if b.parameter is not None]
        entries = [e for block in blocks for e in block.entries(slots)]
        keyed: dict[tuple, list] = {}
        for e in entries:
            r_lo, r_hi = _transform_range(e.kind, e.lower, e.upper)
            s_lo, s_hi = e.prior.support
            inside = s_lo <= r_lo and r_hi <= s_hi  # no support check needed
            keyed.setdefault((e.kind, type(e.prior), inside, e.theta), []).append(
                (e.col, e.lower, e.upper, e.prior)
            )
        groups = []
        for (kind, _, inside, is_theta), cols in keyed.items():
            groups.append(
                _PriorGroup(
                    cols=[c for c, *_ in cols],
                    transform=StackedTransform(
                        kind,
                        [lo for _, lo, _, _ in cols],
                        [hi for *_, hi, _ in cols],
                        device=device,
                    ),
                    log_prob=stack([pr for *_, pr in cols], inside=inside, device=device),
                    theta=is_theta,
                )
            )
        self.groups = groups
        self.const = sum(g.transform.const + g.log_prob.const for g in groups)
        # the groups' columns as one split of U (one view per group and a single backward
        # node), after a permutation when a group's columns are not side by side
        order = [c for g in groups for c in g.cols]
        self.perm = None if order == list(range(n_dim)) else _tensor(device, order)
        self.sizes = [len(g.cols) for g in groups]

        # θ (W, L, q) from the θ groups' outputs, concatenated in group order
        pos = {c: k for k, c in enumerate(c for g in groups if g.theta for c in g.cols)}
        pooled = [isinstance(b, PartialPooling) for b in param_blocks]
        fixed = [j for j, p in enumerate(pooled) if not p]
        idx = np.zeros((self.L, len(fixed)), dtype=np.int64)
        for k, j in enumerate(fixed):
            s = slots[param_blocks[j].parameter.name]
            for l in range(self.L):
                idx[l, k] = pos[s.start + (l if s.size > 1 else 0)]
        self.theta_idx = _tensor(device, idx)
        # θ in group order, the same for every campaign: a view instead of a gather
        self.theta_view = bool((idx == np.arange(len(fixed))).all())
        partial = [j for j, p in enumerate(pooled) if p]
        self.partial = None
        self.correlators: list[tuple[Block, torch.Tensor]] = []
        if partial:
            # g(θ_ℓ) = μ + τ z_ℓ for all partially pooled parameters at once, then θ by kind
            groups = [param_blocks[j].pooled_group(slots) for j in partial]
            by_kind: dict[str, list[int]] = {}
            for k, j in enumerate(partial):
                by_kind.setdefault(param_blocks[j].parameter.kind, []).append(k)
            kinds = [
                (
                    _tensor(device, ks),
                    StackedTransform(
                        kind,
                        [param_blocks[partial[k]].parameter.lower for k in ks],
                        [param_blocks[partial[k]].parameter.upper for k in ks],
                        device=device,
                    ),
                )
                for kind, ks in by_kind.items()
            ]
            order = fixed + [partial[k] for ks, _ in kinds for k in ks.tolist()]
            self.partial = {
                "mu": _tensor(device, [g.mean for g in groups]),
                "v": _tensor(device, [g.logscale for g in groups]),
                "z": _tensor(device, [[g.members[l] for g in groups] for l in range(self.L)]),
                "kinds": kinds,
                "perm": _tensor(device, np.argsort(order)),
            }
            c = [g.centred for g in groups]
            self.partial["centred"] = (
                None if not any(c) else _tensor(device, c)  # (q_partial,) bool
            )
            self.partial["all_centred"] = all(c)
            # the N(u; μ, τ²) term of centred members whose population is normal (a block
            # with another population states its own term: joint_log_prior)
            t = [g.centred and g.population == "normal" for g in groups]
            self.partial["term"] = None if t == c else _tensor(device, t)
            names = [param_blocks[j].parameter.name for j in partial]
            self.correlators = [
                (b, _tensor(device, _member_positions(b, names, groups)))
                for b in blocks
                if b.correlated_members()
            ]
        elif any(b.correlated_members() for b in blocks):
            raise ValueError("correlated pooling: no partially pooled parameter to correlate")
        self.slots = slots
        self.joint = [b for b in blocks if type(b).joint_log_prior is not Block.joint_log_prior]

    def can_skip(self, cols) -> bool:
        """Whether ``cols`` are exactly the columns of some groups of no θ, which
        ``skip=`` can leave out."""
        want = {int(c) for c in cols}
        covered = set()
        for g in self.groups:
            if want & set(g.cols):
                if g.theta or not set(g.cols) <= want:
                    return False
                covered |= set(g.cols)
        return covered == want and not self.joint

    def __call__(
        self, U: torch.Tensor, skip: tuple[int, ...] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log prior with log-Jacobians ``(W,)`` and θ ``(W, L, q)`` of ``U (W, n_dim)``.

        ``skip``: columns whose prior term (with its log-Jacobian) is left out, each a
        whole group's (:meth:`can_skip`): a caller that integrates those columns in
        coordinates where it knows their prior in closed form adds it itself
        (:func:`calib._value_grad.batched_value_and_grad` with the normal scores of
        :mod:`calib._hmc_coords`)."""
        W = U.shape[0]
        terms, thetas = [], []
        cols = U if self.perm is None else U[:, self.perm]
        const = self.const
        for g, u in zip(self.groups, cols.split(self.sizes, dim=1)):
            if skip is not None and not g.theta and g.cols[0] in skip:
                const -= g.transform.const + g.log_prob.const
                continue
            if g.of_log:  # x = exp(u): the density of u itself (StackedLogProb.of_log)
                t = g.log_prob.of_log(u)
                x = torch.exp(u) if g.theta else None
            else:
                x, logdet = g.transform(u)
                t = g.log_prob(x)
                t = logdet if t is None else (t if logdet is None else t + logdet)
            if t is not None:
                terms.append(t)
            if g.theta:
                thetas.append(x)
        if not terms:
            lp = torch.full((W,), const, dtype=U.dtype, device=U.device)
        else:
            lp = (terms[0] if len(terms) == 1 else torch.cat(terms, dim=1)).sum(dim=1)
            lp = lp + const
        theta = None
        if thetas:
            x = thetas[0] if len(thetas) == 1 else torch.cat(thetas, dim=1)
            if self.theta_view:
                theta = x.unsqueeze(1).expand(W, self.L, x.shape[1])
            else:
                theta = x[:, self.theta_idx]  # (W, L, q_fixed)
        if self.partial is not None:
            pp = self.partial
            # non-centred: g(θ_ℓ) = μ + τ z_ℓ; centred: g(θ_ℓ) = u_ℓ ~ N(μ, τ²)
            # (Papaspiliopoulos, Roberts & Sköld 2007; docs/model.md §2)
            v = U[:, pp["v"]].unsqueeze(1)
            tau = torch.exp(v)
            mu = U[:, pp["mu"]].unsqueeze(1)
            x = U[:, pp["z"]]  # (W, L, q_partial)
            for block, k in self.correlators:  # z_ℓ → L z_ℓ: y = x Lᵀ per walker
                chol = block.cholesky(U, self.slots)
                x = x.index_copy(2, k, x[..., k] @ chol.transpose(-1, -2))
            g = mu + tau * x
            if pp["centred"] is not None:
                c = pp["centred"]
                z = (x - mu) / tau
                t = -0.5 * z * z - v - 0.5 * _LOG_2PI  # log N(u; μ, τ²)
                if pp["all_centred"]:
                    g = x
                else:
                    g = torch.where(c, x, g)
                if pp["term"] is not None:
                    t = t * pp["term"]
                elif not pp["all_centred"]:
                    t = t * c
                lp = lp + t.sum(dim=(1, 2))
            parts = [] if theta is None else [theta]
            parts += [tr.theta(g[..., ks]) for ks, tr in pp["kinds"]]
            theta = torch.cat(parts, dim=-1)[..., pp["perm"]]
        for block in self.joint:
            lp = lp + block.joint_log_prior(U, self.slots)
        return lp, theta


def _member_positions(block: Block, names: list[str], groups: list) -> list[int]:
    """Positions among the partially pooled parameters of the members ``block`` correlates
    (each must be partially pooled and non-centred)."""
    out = []
    for name in block.correlated_members():
        if name not in names:
            raise ValueError(
                f"correlated pooling: parameter '{name}' must have pooling='partial', "
                "and it is not partially pooled"
            )
        k = names.index(name)
        if groups[k].centred:
            raise ValueError(
                f"correlated pooling: parameter '{name}' must be non-centred "
                "(centered=False), got centered=True"
            )
        out.append(k)
    return out
