"""A small calibration stated as SEPIA states δ and the noise: ρ ~ Beta(1, 0.1) per feature
on its range, Gamma priors on the precisions of data standardized by their sd. Shared by
tests/calib/test_gpmsa_priors.py and test_hmc_coords.py."""

from __future__ import annotations

import numpy as np

from calib import Calibrator, Campaign, Discrepancy, Parameter
from calib.priors import BetaRho, GammaPrecision, Prior
from simulators import FunctionSimulator


def _eta(X, T):
    return T[:, :1] * X[:, :1] + 0.1 * X[:, 1:2]


def sepia_calibrator(h_prior: Prior | None = None) -> Calibrator:
    """k on (0, 3); inputs r on (0, 0.3) and h on (0, 15); δ's length-scale prior of h is
    ``h_prior`` (default SEPIA's, ``BetaRho(1, 0.1, 15)``)."""
    sim = FunctionSimulator(_eta, ("r", "h"), ("k",), ("y",), vectorized=True)
    rng = np.random.default_rng(4)
    x = np.column_stack([rng.uniform(0, 0.3, 8), rng.uniform(0, 15.0, 8)])
    y = x[:, 0] + 0.1 * x[:, 1] + 0.05 * rng.standard_normal(8)
    unit = float(np.std(y))
    delta = Discrepancy(
        "shared",
        scale_prior=GammaPrecision(1.0, 1e-3, unit),
        lengthscale_prior={
            "r": BetaRho(1.0, 0.1, 0.3),
            "h": BetaRho(1.0, 0.1, 15.0) if h_prior is None else h_prior,
        },
    )
    return Calibrator(
        sim,
        [Parameter("k", lower=0.0, upper=3.0)],
        [Campaign("A", x=x, y=y)],
        discrepancy=delta,
        noise="shared",
        noise_prior=GammaPrecision(5.0, 5.0, unit),
    )
