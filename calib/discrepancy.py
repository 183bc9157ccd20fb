"""The model discrepancy δ: a Gaussian process over the control inputs and output coordinates.

Kennedy & O'Hagan (2001, §4.3) model the simulator's inadequacy as a GP ``δ(x, s)``;
here its kernel is stationary with ARD length-scales in the native units of each input:

- ``"rbf"``:      k(r) = σ_δ² · exp(−r²/2)
- ``"matern52"``: k(r) = σ_δ² · (1 + √5 r + 5r²/3) · exp(−√5 r)

with ``r² = Σ_d (z_d − z'_d)² / ℓ_d²`` over the features ``z = (x, s)``. The marginal sd
``σ_δ`` and the length-scales ``ℓ_d`` are sampled hyperparameters.

This module holds δ's specification (:class:`Discrepancy`); the kernel itself, shared with
the emulator's torch path, is :mod:`calib.kernels` (``sq_dists``, ``kernel_from_sq`` and
``KernelOnDistances`` are re-exported here).
"""

from __future__ import annotations

from .kernels import KERNELS, KernelOnDistances, kernel_from_sq, sq_dists
from .priors import Prior, check_prior

__all__ = [
    "Discrepancy",
    "DISCREPANCY_MODES",
    "KERNELS",
    "sq_dists",
    "kernel_from_sq",
    "KernelOnDistances",
]

DISCREPANCY_MODES = ("none", "shared", "independent")


class Discrepancy:
    """Specification of the discrepancy δ.

    Parameters
    ----------
    mode : {"none", "shared", "independent"}
        ``"shared"``: one δ for all campaigns; ``"independent"``: a δ_ℓ per campaign with
        common hyperparameters; ``"none"``: no discrepancy.
    kernel : {"rbf", "matern52"}
    scale_prior : Prior, optional
        Prior of the GP's marginal sd σ_δ. Default ``HalfNormal(sd_y)``, with ``sd_y`` the
        standard deviation of all observed values.
    lengthscale_prior : Prior, optional
        Prior of every length-scale, in the native units of each input. Default per input
        ``d``: ``LogNormal(log(range_d / 2), 1)``, with ``range_d`` the range of that input
        over all campaigns (1 where the range is zero).

    Examples
    --------
    >>> from calib.priors import HalfNormal, LogNormal
    >>> Discrepancy("shared", kernel="rbf", scale_prior=HalfNormal(1.0),
    ...             lengthscale_prior=LogNormal(0.0, 1.0))
    Discrepancy('shared', kernel='rbf', scale_prior=HalfNormal(scale=1.0), lengthscale_prior=LogNormal(mu=0.0, sigma=1.0))
    """

    def __init__(
        self,
        mode: str = "shared",
        kernel: str = "rbf",
        scale_prior: Prior | None = None,
        lengthscale_prior: Prior | None = None,
    ):
        if mode not in DISCREPANCY_MODES:
            raise ValueError(f"Discrepancy: mode must be one of {DISCREPANCY_MODES}, got {mode!r}")
        if kernel not in KERNELS:
            raise ValueError(f"Discrepancy: kernel must be one of {KERNELS}, got {kernel!r}")
        self.mode = mode
        self.kernel = kernel
        self.scale_prior = check_prior(scale_prior, "Discrepancy: scale_prior")
        self.lengthscale_prior = check_prior(lengthscale_prior, "Discrepancy: lengthscale_prior")
        for name, p in (
            ("scale_prior", self.scale_prior),
            ("lengthscale_prior", self.lengthscale_prior),
        ):
            if p is not None and p.support[0] < 0:
                raise ValueError(
                    f"Discrepancy: {name} must have support on positive values "
                    f"(HalfNormal, HalfCauchy, LogNormal, Gamma, ...), got {p!r}"
                )

    @classmethod
    def coerce(cls, value: Discrepancy | str | None) -> Discrepancy:
        """A Discrepancy from a mode string (defaults), ``None`` (``"none"``) or itself."""
        if value is None:
            return cls("none")
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, cls):
            return value
        raise TypeError(
            f"discrepancy must be a calib.Discrepancy or one of {DISCREPANCY_MODES}, got {value!r}"
        )

    @property
    def active(self) -> bool:
        return self.mode != "none"

    @property
    def couples_campaigns(self) -> bool:
        """One δ for all campaigns (``"shared"``): their entries share a covariance block."""
        return self.mode == "shared"

    @property
    def per_campaign(self) -> bool:
        """A δ of its own for each campaign (``"independent"``): δ links a campaign's
        entries only."""
        return self.mode == "independent"

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "kernel": self.kernel,
            "scale_prior": None if self.scale_prior is None else self.scale_prior.to_dict(),
            "lengthscale_prior": None
            if self.lengthscale_prior is None
            else self.lengthscale_prior.to_dict(),
        }

    def __repr__(self) -> str:
        return (
            f"Discrepancy({self.mode!r}, kernel={self.kernel!r}, scale_prior={self.scale_prior!r}, "
            f"lengthscale_prior={self.lengthscale_prior!r})"
        )
