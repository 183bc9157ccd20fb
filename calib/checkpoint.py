"""A checkpoint of an emcee chain: everything needed to continue it exactly, as plain arrays.

A data class of its own so that both the sampler (which makes and resumes checkpoints) and
the archive (which stores and reads them) use it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Checkpoint"]


@dataclass
class Checkpoint:
    """Everything needed to continue an emcee chain exactly, as plain arrays.

    Attributes
    ----------
    chain : ndarray of shape (n_steps, n_walkers, n_dim)
    log_prob : ndarray of shape (n_steps, n_walkers)
    accepted : ndarray of int, shape (n_walkers,)
        Accepted proposals per walker (emcee's backend counts).
    rng_state : tuple
        ``numpy.random.RandomState.get_state()`` of emcee's generator after the last step:
        ``("MT19937", keys (624,) uint32, pos, has_gauss, cached_gaussian)``.
    stopped_early : bool
        The convergence rule stopped the chain (it will not be continued).
    info : dict
        Seed, budget, MAP, sampler settings (JSON-able); ``"move_state"`` holds the gradient
        move's settings and adapted state (:meth:`calib.hmc.ChEESMove.state_dict`).
    """

    chain: np.ndarray
    log_prob: np.ndarray
    accepted: np.ndarray
    rng_state: tuple
    stopped_early: bool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return int(self.chain.shape[0])
