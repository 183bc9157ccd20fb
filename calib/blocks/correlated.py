"""Correlated partial pooling: several partially pooled parameters share one population.

For the members ``a, b, …`` (non-centred partially pooled parameters, ``d`` of them) the
campaign values are drawn jointly (docs/model.md §2c)::

    u_ℓ = μ + diag(τ) L_Ω z_ℓ,   z_ℓ ~ N(0, I_d),   Ω = L_Ω L_Ωᵀ ~ LKJ(η)

Each member keeps its own :class:`PartialPooling` slots (``E.mean``, ``E.logscale``,
``E.z``) as a :class:`CorrelatedMember`, whose pooled group says
``population="correlated"`` (the interweaved move, which assumes independent members,
leaves it alone). The :class:`CorrelatedPooling` block owns the ``d(d − 1)/2``
unconstrained coordinates of Ω's Cholesky factor (:mod:`calib._lkj`), states the LKJ
density with the transform's log-Jacobian as its joint prior term, and gives the factor
to the prior plan, which replaces the members' ``z_ℓ`` by ``L_Ω z_ℓ``. Its named
quantities are the correlations ``corr(a,b)`` (the members in the order given).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .._lkj import LKJ, corr_cholesky, pairs
from ..parameters import Parameter
from ._base import Block, PooledGroup
from .pooling import PartialPooling

__all__ = [
    "DEFAULT_LKJ",
    "CorrelatedMember",
    "CorrelatedPooling",
    "check_correlated",
    "correlate",
    "correlation_draws",
    "correlated_from_config",
    "correlated_to_config",
]

#: the LKJ shape when none is given (docs/model.md §2c: for two parameters ∝ 1 − ρ²)
DEFAULT_LKJ = LKJ(2.0)


def corr_name(a: str, b: str) -> str:
    """The quantity name of the correlation of ``a`` and ``b``: ``"corr(a,b)"``."""
    return f"corr({a},{b})"


class CorrelatedMember(PartialPooling):
    """A partially pooled, non-centred parameter whose ``z_ℓ`` the group correlates.

    The first member in the model's parameter order (the group's ``leader``) names the
    group's correlations and its population quantities, so that they are computed once,
    jointly.
    """

    group: CorrelatedPooling

    def pooled_group(self, slots):
        g = super().pooled_group(slots)
        return PooledGroup(g.mean, g.logscale, g.members, g.centred, population="correlated")

    def named(self, theta, parts):
        out = super().named(theta, parts)
        if self.group.leader is self:
            out.update({n: parts[n] for n in self.group.corr_names})
        return out

    def theta_from(self, x: torch.Tensor, parts: dict) -> torch.Tensor:
        """θ of a new campaign from its standardized, correlated effect ``x (S,)``."""
        u = parts[f"{self.name}.mean"] + parts[f"{self.name}.scale"] * x
        return self.parameter.to_constrained(u)[0]

    def population(self, q, rng):
        """The group's ``E.typical`` and ``E.new`` (one joint draw ``L_Ω z``), from the
        leader; the other members add none."""
        return self.group.population(q, rng) if self.group.leader is self else {}


class CorrelatedPooling(Block):
    """The correlation matrix of a group of partially pooled parameters, with an LKJ prior.

    Parameters
    ----------
    members : the group's member blocks, in the order given by the user
    prior : LKJ
    """

    def __init__(self, members: Sequence[CorrelatedMember], prior: LKJ):
        self.members = list(members)
        self.names = [m.name for m in self.members]
        self.d = len(self.members)
        self.prior = prior
        self.pairs = pairs(self.d)
        self.corr_names = [corr_name(self.names[j], self.names[i]) for i, j in self.pairs]
        self.slot = f"corr({','.join(self.names)})"
        self.leader = self.members[0]
        for m in self.members:
            m.group = self

    def slots(self):
        return [(self.slot, [f"{n} (unconstrained)" for n in self.corr_names])]

    def correlated_members(self) -> list[str]:
        return list(self.names)

    def _y(self, U: torch.Tensor, slots: dict) -> torch.Tensor:
        s = slots[self.slot]
        return U[:, s.start : s.stop]

    def cholesky(self, U, slots):
        return corr_cholesky(self._y(U, slots), self.d)[0]

    def joint_log_prior(self, U, slots):
        # the LKJ density of L_Ω plus log |∂L/∂y| (Stan's cholesky_factor_corr; calib/_lkj.py)
        return self.prior.log_prob_unconstrained(self._y(U, slots), self.d)

    def sample_prior(self, rng, n):
        return self.prior.sample_unconstrained(rng, n, self.d)

    def quantities(self, U, slots):
        L = self.cholesky(U, slots)
        return {
            name: (L[:, i, :] * L[:, j, :]).sum(dim=-1)
            for name, (i, j) in zip(self.corr_names, self.pairs)
        }

    def standard_new(
        self, U: torch.Tensor, slots: dict, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """A new campaign's standardized effects ``L_Ω z``, z ~ N(0, I), for each draw of
        ``U (S, n_dim)``: ``(S,)`` by member name."""
        L = self.cholesky(U, slots)
        z = torch.as_tensor(
            rng.standard_normal((U.shape[0], self.d)), dtype=U.dtype, device=U.device
        )
        x = (L @ z.unsqueeze(-1))[..., 0]
        return {n: x[:, k] for k, n in enumerate(self.names)}

    def population(self, q: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``E.typical`` = g⁻¹(μ) and ``E.new`` = g⁻¹(μ + τ (L_Ω z)_E), z ~ N(0, I), of
        every member, in the members' order."""
        shape = q[self.corr_names[0]].shape
        omega = np.zeros(shape + (self.d, self.d))
        omega[..., range(self.d), range(self.d)] = 1.0
        for name, (i, j) in zip(self.corr_names, self.pairs):
            omega[..., i, j] = omega[..., j, i] = q[name]
        # any square root of Ω serves; the symmetric one stays defined where rounding makes
        # an Ω with a correlation near ±1 indefinite (its negative eigenvalues clipped)
        w, V = np.linalg.eigh(omega)
        root = V * np.sqrt(np.clip(w, 0.0, None))[..., None, :]
        x = np.einsum("...ij,...j->...i", root, rng.standard_normal(shape + (self.d,)))
        cpu = torch.device("cpu")
        out: dict[str, np.ndarray] = {}
        for k, m in enumerate(self.members):
            mu, tau = q[f"{m.name}.mean"], q[f"{m.name}.scale"]
            with torch.no_grad():
                typ = m.parameter.to_constrained(torch.as_tensor(mu, device=cpu))[0]
                new = m.parameter.to_constrained(torch.as_tensor(mu + tau * x[..., k], device=cpu))
            out[f"{m.name}.typical"] = typ.numpy()
            out[f"{m.name}.new"] = new[0].numpy()
        return out

    def to_config(self) -> dict[str, Any]:
        return {"parameters": list(self.names), "correlation": self.prior.to_dict()}


# ---------------------------------------------------------------------- building
def check_correlated(
    correlated: Any, hyperpriors: dict, parameters: Sequence[Parameter]
) -> tuple[list[tuple[tuple[str, ...], LKJ]], dict]:
    """The groups of ``Calibrator(correlated=)`` with their LKJ priors, checked, and the
    hyperpriors left for the per-parameter checks.

    Parameters
    ----------
    correlated : sequence of sequences of parameter names, or None
    hyperpriors : the Calibrator's ``hyperpriors``; a key that is a group (a tuple of its
        names, in its order) holds ``{"correlation": LKJ(η)}``
    parameters : the Calibrator's parameters

    Returns
    -------
    groups : list of ``(names, LKJ)``, the default :data:`DEFAULT_LKJ` where none is given
    hyperpriors : ``hyperpriors`` without the groups' keys

    Raises
    ------
    ValueError, TypeError
        Naming the group or parameter: fewer than two names, a repeated name, a name in two
        groups, a parameter that is not partially pooled and non-centred, a hyperprior key
        that is no group, a correlation prior that is not an LKJ.
    """
    if not isinstance(hyperpriors, dict):
        raise TypeError(f"hyperpriors must be a dict, got {type(hyperpriors).__name__}")
    by_name = {p.name: p for p in parameters}
    groups: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for g in correlated or []:
        if isinstance(g, str) or not all(isinstance(n, str) for n in g):
            raise TypeError(
                f"correlated: each group is a sequence of parameter names, such as "
                f"('a', 'b'), got {g!r}"
            )
        g = tuple(g)
        if len(g) < 2 or len(set(g)) != len(g):
            raise ValueError(f"correlated: a group needs two or more distinct names, got {g!r}")
        for n in g:
            prm = by_name.get(n)
            if prm is None:
                raise ValueError(
                    f"correlated: {n!r} is not a parameter; expected some of {list(by_name)}"
                )
            if n in seen:
                raise ValueError(f"correlated: parameter {n!r} is in two groups")
            if prm.pooling != "partial" or prm.value is not None:
                raise ValueError(
                    f"correlated: parameter {n!r} must be partially pooled "
                    f"(pooling='partial'), got pooling={prm.pooling!r}"
                )
            if prm.centered:
                raise ValueError(
                    f"correlated: parameter {n!r} must be non-centred (centered=False): its "
                    f"campaign values are μ + τ L z, so its slots hold z"
                )
            seen.add(n)
        groups.append(g)
    rest, out = {}, []
    for key, hp in hyperpriors.items():
        if not isinstance(key, tuple):
            rest[key] = hp
            continue
        if key not in groups:
            raise ValueError(
                f"hyperpriors: {key!r} is not a group of correlated=; expected one of {groups}"
            )
        if not isinstance(hp, dict) or set(hp) != {"correlation"}:
            raise ValueError(
                f"hyperpriors[{key!r}]: expected {{'correlation': LKJ(eta)}}, got {hp!r}"
            )
        if not isinstance(hp["correlation"], LKJ):
            raise TypeError(
                f"hyperpriors[{key!r}]['correlation'] must be calib.priors.LKJ, got "
                f"{hp['correlation']!r}"
            )
    for g in groups:
        prior = hyperpriors.get(g, {}).get("correlation", DEFAULT_LKJ)
        out.append((g, prior))
    return out, rest


def correlate(
    param_blocks: list, groups: Sequence[tuple[Sequence[str], LKJ]]
) -> list[CorrelatedPooling]:
    """Replace the groups' members among ``param_blocks`` (in place) by
    :class:`CorrelatedMember` blocks and return one :class:`CorrelatedPooling` per group."""
    index = {b.name: k for k, b in enumerate(param_blocks)}
    out = []
    for names, prior in groups:
        members = []
        for n in names:
            old = param_blocks[index[n]]
            member = CorrelatedMember(old.parameter, old.campaigns, old.hyperpriors)
            param_blocks[index[n]] = member
            members.append(member)
        block = CorrelatedPooling(members, prior)
        # the leader is the first member in the model's order: it names the group's quantities
        block.leader = min(members, key=lambda m: index[m.name])
        out.append(block)
    return out


def correlation_draws(post: Any, a: str, b: str) -> np.ndarray:
    """Posterior draws of the correlation of ``a`` and ``b`` (either order)."""
    for block in post.model.blocks:
        if isinstance(block, CorrelatedPooling) and a in block.names and b in block.names:
            if a == b:
                raise ValueError(f"correlation: give two different parameters, got {a!r} twice")
            i, j = block.names.index(a), block.names.index(b)
            first, second = (a, b) if i < j else (b, a)
            return post.draws(corr_name(first, second))
    raise ValueError(
        f"correlation: {a!r} and {b!r} are not pooled together; give "
        f"Calibrator(..., correlated=[({a!r}, {b!r})])"
    )


# ---------------------------------------------------------------------- configuration
def correlated_to_config(calibrator: Any) -> list[dict[str, Any]]:
    """``[{"parameters": [...], "correlation": {"type": "LKJ", "eta": η}}]`` (resolved)."""
    return [b.to_config() for b in calibrator.model.blocks if isinstance(b, CorrelatedPooling)]


def correlated_from_config(value: Any) -> tuple[list[tuple[str, ...]], dict]:
    """``correlated=`` and the hyperpriors of the groups from a configuration's
    ``correlated``: a list of groups, each a list of names (the default LKJ) or a table
    ``{parameters = [...], correlation = {type = "LKJ", eta = η}}``."""
    if value is None:
        return [], {}
    if not isinstance(value, list):
        raise TypeError(f"correlated: expected a list of groups, got {value!r}")
    groups, hyper = [], {}
    for i, g in enumerate(value):
        if isinstance(g, dict):
            unknown = set(g) - {"parameters", "correlation"}
            if unknown or "parameters" not in g:
                raise ValueError(
                    f"correlated[{i}]: expected a table {{parameters, correlation}}, got {g!r}"
                )
            names = g["parameters"]
            prior = g.get("correlation")
        else:
            names, prior = g, None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"correlated[{i}]: expected a list of parameter names, got {names!r}")
        groups.append(tuple(names))
        if prior is not None:
            try:
                hyper[tuple(names)] = {"correlation": LKJ.from_dict(prior)}
            except (ValueError, TypeError) as exc:
                raise type(exc)(f"correlated[{i}].correlation: {exc}") from None
    return groups, hyper
