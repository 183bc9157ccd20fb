"""The model discrepancy δ: a Gaussian process over the control inputs and output coordinates.

Kennedy & O'Hagan (2001, §4.3) model the simulator's inadequacy as a GP ``δ(x, s)``;
here its kernel is stationary with ARD length-scales in the native units of each input:

- ``"rbf"``:      k(r) = σ_δ² · exp(−r²/2)
- ``"matern52"``: k(r) = σ_δ² · (1 + √5 r + 5r²/3) · exp(−√5 r)

with ``r² = Σ_d (z_d − z'_d)² / ℓ_d²`` over the features ``z = (x, s)``. The marginal sd
``σ_δ`` and the length-scales ``ℓ_d`` are sampled hyperparameters.
"""

from __future__ import annotations

import math

import numpy as np
import torch

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
KERNELS = ("rbf", "matern52")
_SQRT5 = math.sqrt(5.0)


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


def sq_dists(z1: np.ndarray, z2: np.ndarray) -> np.ndarray:
    """Per-dimension squared differences: ``(n1, D)``, ``(n2, D)`` -> ``(D, n1, n2)``."""
    return (z1.T[:, :, None] - z2.T[:, None, :]) ** 2


def kernel_from_sq(
    kind: str, dsq: torch.Tensor, scale: torch.Tensor, lengthscale: torch.Tensor
) -> torch.Tensor:
    """Kernel matrices for a batch of hyperparameters.

    Parameters
    ----------
    kind : {"rbf", "matern52"}
    dsq : tensor of shape (D, ...)
        Per-dimension squared differences (:func:`sq_dists` gives ``(D, n1, n2)``; leading
        block dimensions may follow ``D``).
    scale : tensor of shape (S,)
        Marginal sd σ_δ.
    lengthscale : tensor of shape (S, D)

    Returns
    -------
    tensor of shape (S, ...)
    """
    D, rest = dsq.shape[0], dsq.shape[1:]
    flat = dsq.reshape(D, -1)
    shape = (-1,) + (1,) * len(rest)
    inplace = not torch.is_grad_enabled()  # the sampler's path: save passes over memory
    if kind == "rbf":
        # σ² exp(−r²/2) = exp(2 log σ − Σ_d dsq_d / (2 ℓ_d²)): one matrix product, one exp
        a = ((-0.5 * lengthscale.reciprocal() ** 2) @ flat).reshape((-1,) + rest)
        logvar = (2.0 * torch.log(scale)).reshape(shape)
        if inplace:
            return a.add_(logvar).exp_()
        return torch.exp(a + logvar)
    # Matérn 5/2 (Rasmussen & Williams 2006, eq. 4.17); r from r² with a floor so the
    # gradient of sqrt stays finite at r = 0 (the kernel value there is exact either way)
    r2 = ((lengthscale.reciprocal() ** 2) @ flat).reshape((-1,) + rest)
    var = (scale * scale).reshape(shape)
    r = torch.sqrt(r2.clamp_min(1e-300))
    return var * (1.0 + _SQRT5 * r + (5.0 / 3.0) * r2) * torch.exp(-_SQRT5 * r)


class KernelOnDistances:
    """The δ kernel on fixed feature pairs, for a batch of log-hyperparameters.

    The log-posterior evaluates the kernel on the same observed entries at every call,
    with the sampled ``log σ_δ`` and ``log ℓ_d``: the per-dimension squared differences
    are flattened (and, for rbf, multiplied by −½) once here, so a call is one matrix
    product and one exp (rbf)::

        k = exp(2 log σ_δ + Σ_d (−½ dsq_d) ℓ_d⁻²),   ℓ_d⁻² = exp(−2 log ℓ_d)

    Parameters
    ----------
    kind : {"rbf", "matern52"}
    dsq : ndarray of shape (D, ...)
        Per-dimension squared differences (:func:`sq_dists`, block dimensions may follow).
    device : torch.device or str, optional
        Where the distances live (the device of the hyperparameters it will be given);
        default the CPU.
    """

    def __init__(self, kind: str, dsq: np.ndarray, device: torch.device | str | None = None):
        if kind not in KERNELS:
            raise ValueError(f"kind must be one of {KERNELS}, got {kind!r}")
        self.kind = kind
        self.shape = tuple(dsq.shape[1:])
        n = int(np.prod(self.shape))
        flat = torch.as_tensor(dsq, dtype=torch.float64, device=device).reshape(dsq.shape[0], n)
        self.flat = -0.5 * flat if kind == "rbf" else flat  # (D, P)

    def __call__(self, log_scale: torch.Tensor, log_lengthscale: torch.Tensor) -> torch.Tensor:
        """``(S, ...)`` kernel values for ``log_scale (S, 1)``, ``log_lengthscale (S, D)``."""
        inv_sq = torch.exp(log_lengthscale * -2.0)  # ℓ⁻², (S, D)
        S = inv_sq.shape[0]
        if self.kind == "rbf":
            return torch.exp(torch.addmm(log_scale, inv_sq, self.flat, beta=2.0)).view(
                S, *self.shape
            )
        # Matérn 5/2 as kernel_from_sq, with the variance σ² = exp(2 log σ) in the exponent
        r2 = inv_sq @ self.flat
        r = torch.sqrt(r2.clamp_min(1e-300))
        poly = torch.add(1.0 + _SQRT5 * r, r2, alpha=5.0 / 3.0)
        return (poly * torch.exp(torch.add(2.0 * log_scale, r, alpha=-_SQRT5))).view(S, *self.shape)
