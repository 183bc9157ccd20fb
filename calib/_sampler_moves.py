"""The sampler's moves: the derivative-free ensemble mix, the choice between it and the
gradient move, and the other parameterization of pooled groups that the interweaved gradient
move alternates with (:class:`calib.hmc.PoolingFlip`)."""

from __future__ import annotations

from typing import Any

import emcee

from .hmc import PoolingFlip


def de_moves() -> list[tuple[Any, float]]:
    """DEMove 0.8 + StretchMove 0.2: the derivative-free ensemble mix (docs/model.md)."""
    return [(emcee.moves.DEMove(), 0.8), (emcee.moves.StretchMove(), 0.2)]


#: the name the derivative-free mix had when it was the default
default_moves = de_moves


def _is_hmc(moves: Any) -> bool:
    """Whether ``moves`` selects the gradient move: ``"hmc"`` or the default (None)."""
    if moves is None:
        return True
    if isinstance(moves, str):
        if moves not in ("hmc", "de"):
            raise ValueError(f"moves must be 'hmc', 'de' or emcee moves, got {moves!r}")
        return moves == "hmc"
    return False


def _moves_name(moves: Any) -> str:
    """What the checkpoints store as ``info["moves"]``: ``"hmc"``, ``"de"`` or the repr of
    the user's emcee moves."""
    if moves is None:
        return "hmc"
    if isinstance(moves, str):
        return moves
    return repr(moves)


def pooling_flip(model) -> PoolingFlip | None:
    """The other parameterization of the model's pooled groups (partially pooled parameters
    and hierarchical noise), or None if it has none."""
    groups = [
        g
        for g in (b.pooled_group(model.slots) for b in model.blocks)
        if g is not None and g.population == "normal"  # the move assumes N(μ, τ²) members
    ]
    if not groups:
        return None
    return PoolingFlip(
        [g.mean for g in groups],
        [g.logscale for g in groups],
        [g.members for g in groups],
        [g.centred for g in groups],
    )
