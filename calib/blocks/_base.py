"""What every block is: its slots, prior entries and pooled group (see :mod:`calib.blocks`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..parameters import Parameter
from ..priors import Normal, Prior

_STD = Normal(0.0, 1.0)
_TINY = 1e-300  # floor before a log of a prior draw of a scale


@dataclass
class Slot:
    """A named stretch of the unconstrained vector."""

    name: str
    start: int
    size: int
    labels: list[str] = field(default_factory=list)

    @property
    def stop(self) -> int:
        return self.start + self.size


@dataclass(frozen=True)
class Entry:
    """One column of ``u``: its bijection kind and bounds, the prior on its constrained
    value, and whether it is θ of a completely or unpooled parameter."""

    col: int
    kind: str
    lower: float | None
    upper: float | None
    prior: Prior
    theta: bool = False


@dataclass(frozen=True)
class PooledGroup:
    """The columns of one pooled group: mean, log scale, members, and how they are held.

    ``population`` is ``"normal"`` for ``g(θ_ℓ) ~ N(μ, τ²)``: the prior plan adds that term
    for centred members and the interweaved move includes the group. Any other value (a
    mixture, a correlated population) means the block states the population term itself
    (:meth:`Block.joint_log_prior`) and the interweaved move, which assumes independent
    normal members, leaves the group alone.
    """

    mean: int
    logscale: int
    members: list[int]
    centred: bool
    population: str = "normal"


class Block:
    """One kind of unknown: a stretch of slots of the unconstrained vector."""

    #: θ is assembled from the blocks that have it (the pooling blocks)
    parameter: Parameter | None = None

    def slots(self) -> list[tuple[str, list[str]]]:
        """``(slot name, labels)`` in the order they sit in ``u``."""
        return []

    def entries(self, slots: dict) -> list[Entry]:
        """The bijection and prior of each of the block's columns that has a prior term."""
        return []

    def sample_prior(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` prior draws of the block's columns, ``(n, size)``, in slot order."""
        return np.zeros((n, 0))

    def quantities(self, U: torch.Tensor, slots: dict) -> dict[str, torch.Tensor]:
        """The block's own constrained quantities of ``U (W, n_dim)`` (not θ or σ), by name."""
        return {}

    def pooled_group(self, slots: dict) -> PooledGroup | None:
        """The (mean, log scale, members) columns if the block is a pooled group."""
        return None

    def joint_log_prior(self, U: torch.Tensor, slots: dict) -> torch.Tensor | None:
        """A prior term ``(W,)`` of the block's columns that is not a product of per-column
        terms (a mixture, a density of a correlation matrix with its log-Jacobian); ``None``
        for none. The prior plan adds it for every block whose class overrides this."""
        return None

    def correlated_members(self) -> list[str]:
        """Names of the non-centred partially pooled parameters whose standardized effects
        the block correlates: the prior plan replaces their ``z_ℓ`` by ``L z_ℓ`` with ``L``
        from :meth:`cholesky`, so that ``g(θ_ℓ) = μ + τ ⊙ L z_ℓ``."""
        return []

    def cholesky(self, U: torch.Tensor, slots: dict) -> torch.Tensor:
        """The lower Cholesky factor ``(W, d, d)`` of the members' correlation matrix."""
        raise NotImplementedError(f"{type(self).__name__} correlates no parameters")

    def to_config(self) -> dict[str, Any]:
        """The block's specification as plain data."""
        return {}


def _scales(slot, priors: list[Prior]) -> list[Entry]:
    """Columns holding a log: ``x = exp(u)`` with log-Jacobian ``u``."""
    return [Entry(slot.start + k, "lower", 0.0, None, pr) for k, pr in enumerate(priors)]


def _plain(slot, prior: Prior) -> list[Entry]:
    return [Entry(c, "identity", None, None, prior) for c in range(slot.start, slot.stop)]


def _log_draws(prior: Prior, rng: np.random.Generator, size) -> np.ndarray:
    return np.log(np.maximum(prior.sample(rng, size), _TINY))


def truncated_draws(prm: Parameter, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Prior draws of θ truncated to the bounds, by inverse CDF, kept off the bounds."""
    return prm.prior.truncated_ppf(rng.uniform(0.001, 0.999, size=size), prm.lower, prm.upper)


def layout(blocks: list[Block]) -> tuple[dict[str, Slot], int, list[str]]:
    """The slots of ``u`` by name, its length and its column labels, blocks in order."""
    slots: list[Slot] = []
    pos = 0
    for block in blocks:
        for name, labels in block.slots():
            slots.append(Slot(name, pos, len(labels), labels))
            pos += len(labels)
    return {s.name: s for s in slots}, pos, [lab for s in slots for lab in s.labels]
