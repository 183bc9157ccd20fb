"""Other modes: local maxima of the posterior that the MAP search reached away from the MAP,
each with a Laplace estimate of its mass, and the warning that every walker starts at the MAP.

Walkers start in the MAP's Laplace scatter and neither the HMC move nor the DE mix reliably
crosses to a separate mode, while R̂ and the ESS, computed on the draws, cannot see a mode no
walker visited (docs/model.md, "Several modes": on RobustCalibration's first example a
minor mode of θ with 1.3 % of the mass was missed on 7 of 8 seeds). The MAP search runs
L-BFGS from several prior draws; where some of them end at another local maximum that holds
a noticeable share of the mass, the user is told before the draws are trusted.

The mass of a mode at ``u_k`` relative to the MAP's, by the Laplace approximation
(Tierney & Kadane 1986): ``exp(lp_k − lp_map) · √(det Σ_k / det Σ_map)``, ``Σ`` the inverse
Hessian of −log p at each (:func:`calib._sampler_starts.laplace_cov`).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

from ._sampler_starts import laplace_cov
from .likelihood import DTYPE
from .posterior import ConvergenceWarning

#: a mode is reported when its Laplace mass is at least this share of the MAP mode's
MIN_MASS = 1e-3
#: and it lies this many of the MAP mode's sds away (Mahalanobis distance under Σ_map)
MIN_DISTANCE = 4.0


def other_modes(
    model,
    optima: list[tuple[float, np.ndarray | None, bool]],
    u_map: np.ndarray,
    lp_map: float,
    cov_map: np.ndarray | None,
    min_mass: float = MIN_MASS,
    min_distance: float = MIN_DISTANCE,
) -> list[dict]:
    """The converged local maxima among ``optima`` (:func:`calib._sampler_starts.find_map`)
    that lie ``min_distance`` sds of the MAP's Laplace approximation from the MAP and from
    each other and hold at least ``min_mass`` of its mass; each a dict with ``u``,
    ``log_posterior`` and ``mass`` (relative to the MAP mode's), largest mass first.
    ``cov_map`` is the MAP's :func:`~calib._sampler_starts.laplace_cov`; empty where it is
    None (the Hessian not positive definite: no scale to measure by)."""
    if cov_map is None:
        return []
    L = np.linalg.cholesky(cov_map + 1e-12 * np.eye(u_map.size))
    logdet_map = 2.0 * np.log(np.diag(L)).sum()

    def far(a: np.ndarray, b: np.ndarray) -> bool:
        return float(np.linalg.norm(np.linalg.solve(L, a - b))) > min_distance

    found: list[dict] = []
    for val, u, converged in sorted(optima, key=lambda o: -o[0]):
        if u is None or not converged or not math.isfinite(val):
            continue
        if val - lp_map < math.log(min_mass) - 0.5 * u_map.size * 10.0:
            break  # too low for any width to make up (Σ_k would need e^10 the MAP's sd)
        if not far(u, u_map) or any(not far(u, m["u"]) for m in found):
            continue
        cov = laplace_cov(model, u)
        if cov is None:
            continue
        sign, logdet = np.linalg.slogdet(cov)
        if sign <= 0:
            continue
        log_mass = (val - lp_map) + 0.5 * (logdet - logdet_map)
        if log_mass >= math.log(min_mass):
            found.append({"u": u, "log_posterior": val, "mass": math.exp(log_mass)})
    return sorted(found, key=lambda m: -m["mass"])


def _theta_text(model, u: np.ndarray) -> str:
    """θ at ``u`` by name (the first campaign's where θ is per campaign)."""
    U = torch.as_tensor(u.reshape(1, -1), dtype=DTYPE, device="cpu")
    with torch.no_grad():
        theta = model.unpack(U)["theta"][0, 0].cpu().numpy()
    names = list(getattr(model.forward.model, "parameter_names", ()))
    if len(names) != theta.size:
        names = [f"θ{j}" for j in range(theta.size)]
    return ", ".join(f"{n} = {v:.4g}" for n, v in zip(names, theta, strict=True))


def warn_other_modes(model, modes: list[dict], u_map: np.ndarray, lp_map: float) -> None:
    """A ConvergenceWarning naming the modes :func:`other_modes` found, and what to do."""
    if not modes:
        return
    parts = [
        f"{_theta_text(model, m['u'])} (log-posterior {lp_map - m['log_posterior']:.1f} below "
        f"the MAP's, about {100 * m['mass']:.2g} % of the MAP mode's mass by a Laplace "
        "approximation)"
        for m in modes[:3]
    ]
    more = f" and {len(modes) - 3} more" if len(modes) > 3 else ""
    warnings.warn(
        f"the posterior has more than one mode: besides the MAP at {_theta_text(model, u_map)}, "
        f"the MAP search ended at {'; '.join(parts)}{more}. Every walker starts at the MAP and "
        "the sampler may never cross to another mode, which R̂ and the ESS cannot show. Try: "
        "bound the parameters' priors to one mode at a time and compare, or start walkers "
        "in every mode (sample(..., init=)); see docs/model.md, 'Several modes'.",
        ConvergenceWarning,
        stacklevel=5,  # the caller of Calibrator.sample
    )
