"""The model discrepancy δ: a Gaussian process over the control inputs and output coordinates.

Kennedy & O'Hagan (2001, §4.3) model the simulator's inadequacy as a GP ``δ(x, s)``;
here its kernel is stationary with ARD length-scales in the native units of each input:

- ``"rbf"``:      k(r) = σ_δ² · exp(−r²/2)
- ``"matern52"``: k(r) = σ_δ² · (1 + √5 r + 5r²/3) · exp(−√5 r)

with ``r² = Σ_d (z_d − z'_d)² / ℓ_d²`` over the features ``z = (x, s)``. The marginal sd
``σ_δ`` and the length-scales ``ℓ_d`` are sampled hyperparameters (a length-scale may be
fixed instead, ``lengthscale=``); with
``scale="hierarchical"`` each campaign's δ_ℓ has its own σ_δℓ, pooled:
``log σ_δℓ ~ N(m, s²)`` (docs/model.md §3c).

This module holds δ's specification (:class:`Discrepancy`); the kernel itself, shared with
the emulator's torch path, is :mod:`calib.kernels` (``sq_dists``, ``kernel_from_sq`` and
``KernelOnDistances`` are re-exported here).
"""

from __future__ import annotations

import numpy as np

from .kernels import KERNELS, KernelOnDistances, kernel_from_sq, sq_dists
from .priors import Prior, check_prior
from .pseudo import check_points

__all__ = [
    "Discrepancy",
    "DISCREPANCY_MODES",
    "PROCESSES",
    "SCALES",
    "KERNELS",
    "sq_dists",
    "kernel_from_sq",
    "KernelOnDistances",
]

DISCREPANCY_MODES = ("none", "shared", "independent")
PROCESSES = ("gp", "sgasp")
SCALES = ("common", "hierarchical")


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
    lengthscale_prior : Prior or dict of str to Prior, optional
        Prior of every length-scale, in the native units of each input; or one prior per
        feature by name (``{"radius": LogNormal(log(0.1), 0.5), "height": ...}``: inputs in
        different units), the features not named keeping the default. Default per input
        ``d``: ``LogNormal(log(range_d / 2), 1)``, with ``range_d`` the range of that input
        over all campaigns (1 where the range is zero).
    lengthscale : float or dict of str to float, optional
        Fixed length-scales, not sampled: one value for every feature, or values by feature
        name (``{"height": 5.0}``), the others sampled under their priors. A fixed one has no
        column in the sampled vector and no prior; a feature cannot have both.
    zero_at : array of shape (k, p), optional
        Control-input points where the model is known to be exact: δ = 0 there, for every
        campaign's δ and (with output coordinates) at every output coordinate. Exact: δ is
        conditioned on noise-free zero values (Brynjarsdóttir & O'Hagan 2014, §4;
        docs/theta_vs_delta.md).
    zero_slope_at : array of shape (k', p), optional
        Control-input points where δ is known to be flat: ∂δ/∂x_d = 0 for every control
        input d (Rasmussen & Williams 2006, §9.4 for the slopes' covariances).
    process : {"gp", "sgasp"}
        ``"gp"`` (default): δ is a Gaussian process. ``"sgasp"``: the scaled Gaussian
        process of Gu & Wang (2018), which keeps δ small in L2 over the observed inputs, so
        that the simulator, not δ, explains what it can (docs/model.md §3b).
    scaling : float or Prior, optional
        S-GaSP only: its scaling parameter λ_z (larger: δ held closer to 0). A float fixes
        it; a Prior (on positive values) samples it; None (default) sets it per draw by
        RobustCalibration's rule ``λ_z = sqrt(n · ‖range/ℓ‖ · σ_δ² / σ_ε²)``.
    scale : {"common", "hierarchical"}
        ``"common"`` (default): one σ_δ for every δ. ``"hierarchical"`` (mode
        ``"independent"`` only): each campaign's δ_ℓ has its own σ_δℓ, pooled as variance
        components, ``log σ_δℓ = m + s w_ℓ``, ``w_ℓ ~ N(0, 1)`` (docs/model.md §3c), so a
        small campaign's σ_δℓ borrows strength from the others instead of collapsing to 0.
    hyperpriors : dict, optional
        ``scale="hierarchical"`` only: ``{"mean": Prior on m, "scale": Prior on s}``, either
        or both. Defaults ``m ~ Normal(log(sd_y / 2), 1.5)``, ``s ~ HalfNormal(1)`` (those
        of the hierarchical noise; ``sd_y`` the sd of all observed values).

    Raises
    ------
    ValueError
        ``scale="hierarchical"`` with a mode other than ``"independent"``, with a
        ``scale_prior`` (the hyperpriors replace it), or with an S-GaSP whose ``scaling``
        is None (its default rule needs one σ_δ).

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
        lengthscale_prior: Prior | dict[str, Prior] | None = None,
        *,
        lengthscale: float | dict[str, float] | None = None,
        zero_at=None,
        zero_slope_at=None,
        process: str = "gp",
        scaling: float | Prior | None = None,
        scale: str = "common",
        hyperpriors: dict[str, Prior] | None = None,
    ):
        if mode not in DISCREPANCY_MODES:
            raise ValueError(f"Discrepancy: mode must be one of {DISCREPANCY_MODES}, got {mode!r}")
        if kernel not in KERNELS:
            raise ValueError(f"Discrepancy: kernel must be one of {KERNELS}, got {kernel!r}")
        self.mode = mode
        self.kernel = kernel
        self.scale_prior = check_prior(scale_prior, "Discrepancy: scale_prior")
        self.lengthscale_prior = _check_lengthscale_prior(lengthscale_prior)
        per_feature = self.lengthscale_prior if isinstance(self.lengthscale_prior, dict) else {}
        for name, p in (
            ("scale_prior", self.scale_prior),
            ("lengthscale_prior", None if per_feature else self.lengthscale_prior),
            *((f"lengthscale_prior[{k!r}]", v) for k, v in per_feature.items()),
        ):
            if p is not None and p.support[0] < 0:
                raise ValueError(
                    f"Discrepancy: {name} must have support on positive values "
                    f"(HalfNormal, HalfCauchy, LogNormal, Gamma, ...), got {p!r}"
                )
        self.lengthscale = _check_lengthscale(lengthscale, mode, per_feature)
        if process not in PROCESSES:
            raise ValueError(f"Discrepancy: process must be one of {PROCESSES}, got {process!r}")
        self.process = process
        self.zero_at = check_points(zero_at, "zero_at")
        self.zero_slope_at = check_points(zero_slope_at, "zero_slope_at")
        for name, pts in (("zero_at", self.zero_at), ("zero_slope_at", self.zero_slope_at)):
            if pts is not None and mode == "none":
                raise ValueError(f"Discrepancy: {name} needs a discrepancy, but mode is 'none'")
        if process == "sgasp" and mode == "none":
            raise ValueError("Discrepancy: process='sgasp' needs a discrepancy, but mode is 'none'")
        self.scaling = _check_scaling(scaling, process)
        self.scale = scale
        self.hyperpriors = _check_scale(self, hyperpriors)

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

    @property
    def conditioned(self) -> bool:
        """δ is conditioned on zero pseudo-observations (constraints or the S-GaSP)."""
        return self.zero_at is not None or self.zero_slope_at is not None or self.process == "sgasp"

    @property
    def pooled_scale(self) -> bool:
        """Each campaign's δ_ℓ has its own σ_δℓ, pooled (``scale="hierarchical"``)."""
        return self.scale == "hierarchical"

    def to_dict(self) -> dict:
        out = {
            "mode": self.mode,
            "kernel": self.kernel,
            "scale_prior": None if self.scale_prior is None else self.scale_prior.to_dict(),
            "lengthscale_prior": _prior_dict(self.lengthscale_prior),
        }
        # the keys below only when set: a plain GP's record (and fingerprint) is unchanged
        if self.lengthscale is not None:
            out["lengthscale"] = self.lengthscale
        for name in ("zero_at", "zero_slope_at"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name).tolist()
        if self.process != "gp":
            out["process"] = self.process
            if isinstance(self.scaling, Prior):
                out["scaling"] = self.scaling.to_dict()
            elif self.scaling is not None:
                out["scaling"] = float(self.scaling)
        if self.pooled_scale:
            out["scale"] = self.scale
            if self.hyperpriors:
                out["hyperpriors"] = {k: p.to_dict() for k, p in self.hyperpriors.items()}
        return out

    def __repr__(self) -> str:
        extra = "" if self.lengthscale is None else f", lengthscale={self.lengthscale!r}"
        for name in ("zero_at", "zero_slope_at"):
            if getattr(self, name) is not None:
                extra += f", {name}={getattr(self, name).tolist()}"
        if self.process != "gp":
            extra += f", process={self.process!r}, scaling={self.scaling!r}"
        if self.pooled_scale:
            extra += f", scale={self.scale!r}, hyperpriors={self.hyperpriors!r}"
        return (
            f"Discrepancy({self.mode!r}, kernel={self.kernel!r}, scale_prior={self.scale_prior!r}, "
            f"lengthscale_prior={self.lengthscale_prior!r}{extra})"
        )


def _check_scaling(value, process: str) -> float | Prior | None:
    """The S-GaSP's λ_z: None, a positive finite float or a Prior on positive values."""
    if value is None:
        return None
    if process != "sgasp":
        raise ValueError(
            f"Discrepancy: scaling is the S-GaSP's λ_z; it needs process='sgasp', "
            f"got process={process!r}"
        )
    if isinstance(value, Prior):
        if value.support[0] < 0:
            raise ValueError(
                f"Discrepancy: scaling must be a prior on positive values, got {value!r}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"Discrepancy: scaling must be a positive number or a Prior, got {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"Discrepancy: scaling must be positive and finite, got {value!r}")
    return float(value)


def _check_scale(disc: Discrepancy, hyperpriors) -> dict[str, Prior]:
    """``scale`` and its hyperpriors, checked against the rest of ``disc``."""
    if disc.scale not in SCALES:
        raise ValueError(f"Discrepancy: scale must be one of {SCALES}, got {disc.scale!r}")
    if not disc.pooled_scale:
        if hyperpriors is not None:
            raise ValueError(
                "Discrepancy: hyperpriors are those of a pooled σ_δ; they need "
                f"scale='hierarchical', got scale={disc.scale!r}"
            )
        return {}
    if disc.mode != "independent":
        raise ValueError(
            "Discrepancy: scale='hierarchical' gives each campaign's δ its own σ_δ; it needs "
            f"mode='independent', got mode={disc.mode!r}"
        )
    if disc.scale_prior is not None:
        raise ValueError(
            "Discrepancy: scale_prior is the prior of one σ_δ; with scale='hierarchical' give "
            "hyperpriors={'mean': ..., 'scale': ...} (of log σ_δℓ ~ N(mean, scale²)) instead"
        )
    if disc.process == "sgasp" and disc.scaling is None:
        # RobustCalibration's rule (docs/model.md eq. 4e) sets λ_z from one σ_δ
        raise ValueError(
            "Discrepancy: process='sgasp' with scaling=None sets λ_z from one σ_δ, but "
            "scale='hierarchical' has one per campaign: give scaling= a number or a Prior"
        )
    if hyperpriors is None:
        return {}
    if not isinstance(hyperpriors, dict):
        raise TypeError(
            f"Discrepancy: hyperpriors must be a dict with 'mean' and/or 'scale', got "
            f"{hyperpriors!r}"
        )
    bad = sorted(set(hyperpriors) - {"mean", "scale"})
    if bad:
        raise ValueError(f"Discrepancy: hyperpriors keys must be 'mean' or 'scale', got {bad}")
    # a None entry means that side's default (as in an archive's record)
    out = {
        k: check_prior(v, f"Discrepancy: hyperpriors[{k!r}]")
        for k, v in hyperpriors.items()
        if v is not None
    }
    if "scale" in out and out["scale"].support[0] < 0:
        raise ValueError(
            f"Discrepancy: hyperpriors['scale'] must be a prior on positive values, got "
            f"{out['scale']!r}"
        )
    return out


def _check_lengthscale_prior(value) -> Prior | dict[str, Prior] | None:
    """One Prior for every feature, or ``{feature name: Prior}`` (the features not named
    keep their default); the names are checked against δ's features by the model."""
    if not isinstance(value, dict):
        return check_prior(value, "Discrepancy: lengthscale_prior")
    if not value or not all(isinstance(k, str) for k in value):
        raise ValueError(
            "Discrepancy: lengthscale_prior as a dict maps feature names (str) to priors, "
            f"got {value!r}"
        )
    return {k: check_prior(v, f"Discrepancy: lengthscale_prior[{k!r}]") for k, v in value.items()}


def _check_lengthscale(value, mode: str, per_feature: dict) -> float | dict[str, float] | None:
    """Fixed length-scales: None, one positive finite number for every feature, or
    ``{feature name: number}``; the names are checked against δ's features by the model."""
    if value is None:
        return None
    if mode == "none":
        raise ValueError("Discrepancy: lengthscale needs a discrepancy, but mode is 'none'")

    def number(v, where: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"Discrepancy: {where} must be a positive number, got {v!r}")
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"Discrepancy: {where} must be positive and finite, got {v!r}")
        return float(v)

    if not isinstance(value, dict):
        if per_feature:
            raise ValueError(
                f"Discrepancy: lengthscale={value!r} fixes every feature's length-scale, so "
                f"lengthscale_prior for {sorted(per_feature)} would never be used"
            )
        return number(value, "lengthscale")
    if not value or not all(isinstance(k, str) for k in value):
        raise ValueError(
            f"Discrepancy: lengthscale as a dict maps feature names (str) to numbers, got {value!r}"
        )
    both = sorted(set(value) & set(per_feature))
    if both:
        raise ValueError(
            f"Discrepancy: {both} have both a fixed lengthscale and a lengthscale_prior; "
            f"give one or the other"
        )
    return {k: number(v, f"lengthscale[{k!r}]") for k, v in value.items()}


def _prior_dict(value) -> dict | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: p.to_dict() for k, p in value.items()}
    return value.to_dict()
