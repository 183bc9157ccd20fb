"""The gradient move of calib's sampler: jittered, ensemble-adapted HMC for emcee.

The public names live in two modules and are exported here:

- :mod:`calib.chees`: :class:`ChEESMove`, jittered HMC for all walkers at once with the
  step size, trajectory length and dense metric adapted across the ensemble in warm-up
  (Hoffman, Radul & Sountsov 2021), and :func:`batched_value_and_grad`, the batched
  log-posterior and its autograd gradient that it integrates;
- :mod:`calib.interweave`: :class:`PoolingFlip`, the other (centred ↔ non-centred)
  parameterization of the pooled groups, and :class:`InterweavedMove`, two ChEES moves
  alternating between the model's coordinates and those (Yu & Meng 2011).
"""

from __future__ import annotations

from .chees import ChEESMove, batched_value_and_grad
from .interweave import InterweavedMove, PoolingFlip

__all__ = ["ChEESMove", "InterweavedMove", "PoolingFlip", "batched_value_and_grad"]
