"""The :class:`~calib.posterior.Posterior` of a chain: fresh from the sampler, resumed, or
read back from an archive."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .posterior import Posterior


def posterior_from_chain(
    calibrator,
    chain: np.ndarray,
    log_prob: np.ndarray,
    accepted: np.ndarray,
    burn: int | None,
    stopped_early: bool,
    info: dict[str, Any],
):
    """The :class:`~calib.posterior.Posterior` of a chain (fresh, resumed or loaded).

    Burn-in: ``burn``, else the gradient move's warm-up (``info["warmup"]``), else half the
    chain.
    """

    n = int(chain.shape[0])
    info = dict(info)
    info.update(n_steps=n, stopped_early=bool(stopped_early))
    ms = info.get("move_state")
    if isinstance(ms, dict):
        info.setdefault("warmup", int(ms.get("n_warmup", 0)))
        info["n_grad_evals"] = int(ms.get("n_grad_evals", 0))
        info["n_divergent"] = int(ms.get("n_divergent", 0))
        if "parts" in ms:  # the interweaved move: model's, then the other coordinates
            info["n_divergent_parts"] = [int(p["n_divergent"]) for p in ms["parts"]]
        info["step_size"] = float(ms.get("step_size", math.nan))
        info["trajectory_length"] = float(ms.get("trajectory", math.nan))
    if burn is None:
        burn = int(info["warmup"]) if "warmup" in info else n // 2
    return Posterior(
        calibrator,
        chain=chain,
        log_prob=log_prob,
        acceptance=np.asarray(accepted, dtype=float) / max(n, 1),
        burn=min(burn, n - 1),
        info=info,
    )
