"""The stationary kernels of calib: RBF and Matérn 5/2 on squared distances, in torch.

One implementation serves δ (:mod:`calib.discrepancy`, per-dimension squared differences of
the features) and the emulator's torch prediction path (:mod:`emulators.gp`, squared
distances of length-scale-divided inputs). With ``r² = Σ_d (z_d − z'_d)² / ℓ_d²``
(Rasmussen & Williams 2006, eqs. 4.9 and 4.17):

- ``"rbf"``:      k(r) = σ² · exp(−r²/2)
- ``"matern52"``: k(r) = σ² · (1 + √5 r + 5r²/3) · exp(−√5 r)

Both are written on the *scaled* squared distance ``s = c² r²`` (``c² = ½`` for rbf, ``5``
for Matérn; :func:`sq_factor`), which is the kernel's own exponent, and on the log variance
``log σ²``:

- ``"rbf"``:      k = exp(log σ² − s)
- ``"matern52"``: k = (1 + t + t²/3) · exp(log σ² − t),  t = √s

so that the factor ``c²`` is applied once to small inputs (the length-scales, or the
inputs, :func:`input_factor`) instead of to every kernel value, and σ² costs no extra
multiplication. :func:`kernel_from_scaled_sq` is that map, differentiable in ``s`` and
``log σ²``; :func:`kernel_from_sq` and :class:`KernelOnDistances` build ``s`` from
per-dimension squared differences (:func:`sq_dists`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.autograd.function import once_differentiable

__all__ = [
    "KERNELS",
    "sq_factor",
    "input_factor",
    "kernel_from_scaled_sq",
    "sq_dists",
    "kernel_from_sq",
    "KernelOnDistances",
]

KERNELS = ("rbf", "matern52")
_SQ_FACTOR = {"rbf": 0.5, "matern52": 5.0}
# √ of _SQ_FACTOR, written as the emulator always computed it (its values, bit for bit)
_INPUT_FACTOR = {"rbf": math.sqrt(0.5), "matern52": math.sqrt(5.0)}
# r² is floored here for Matérn's √: t and the derivative 1/(2t) of √ stay finite at r = 0
# (the kernel's value there is exact either way, dk/dr = 0 at r = 0)
_MATERN_FLOOR = 1e-300


def _check_kind(kind: str) -> None:
    if kind not in KERNELS:
        raise ValueError(f"kind must be one of {KERNELS}, got {kind!r}")


def sq_factor(kind: str) -> float:
    """``c²``: the factor on ``r²`` that gives the kernel's scaled squared distance ``s``.

    Parameters
    ----------
    kind : {"rbf", "matern52"}

    Returns
    -------
    float
        ``0.5`` (rbf) or ``5.0`` (Matérn 5/2).
    """
    _check_kind(kind)
    return _SQ_FACTOR[kind]


def input_factor(kind: str) -> float:
    """``c``: the factor on length-scale-divided inputs whose squared distance is ``s``.

    Parameters
    ----------
    kind : {"rbf", "matern52"}

    Returns
    -------
    float
        ``√½`` (rbf) or ``√5`` (Matérn 5/2).
    """
    _check_kind(kind)
    return _INPUT_FACTOR[kind]


def kernel_from_scaled_sq(
    kind: str, s: torch.Tensor, log_var: torch.Tensor, overwrite: bool = False
) -> torch.Tensor:
    """Kernel values from scaled squared distances ``s = c² r²`` and the log variance.

    Parameters
    ----------
    kind : {"rbf", "matern52"}
    s : Tensor
        Scaled squared distances (:func:`sq_factor`). Negative values (rounding in
        ``‖a‖² + ‖b‖² − 2a·b``) count as 0.
    log_var : Tensor
        ``log σ²``, broadcastable against ``s`` (e.g. ``(S, 1, 1)`` for ``s (S, n1, n2)``).
    overwrite : bool
        ``s`` is a scratch buffer: when no gradient is being recorded and the result has
        ``s``'s shape, the result is computed in it (the same arithmetic in one buffer
        instead of several; the values are the same bit for bit).

    Returns
    -------
    Tensor of the broadcast shape of ``s`` and ``log_var``
        Differentiable in ``s`` and ``log_var``; Matérn's backward pass is its closed form.
    """
    _check_kind(kind)
    if (
        overwrite
        and not torch.is_grad_enabled()
        and torch.broadcast_shapes(s.shape, log_var.shape) == s.shape
    ):
        if kind == "rbf":
            return s.clamp_min_(0.0).neg_().add_(log_var).exp_()
        t = s.clamp_min_(_MATERN_FLOOR).sqrt_()
        poly = (t + 1.0).addcmul_(t, t, value=1.0 / 3.0)
        # log σ² − t as −t + log σ²: the same rounding
        return poly.mul_(t.neg_().add_(log_var).exp_())
    if kind == "rbf":
        return torch.exp(log_var - s.clamp_min(0.0))
    return _Matern52.apply(s, log_var)


class _Matern52(torch.autograd.Function):
    """Matérn 5/2 from ``s = 5 r²`` and ``log σ²``, with its derivatives in closed form.

    With ``t = √s``: ``k = (1 + t + t²/3) e``, ``e = exp(log σ² − t)``, and

        ∂k/∂s = −e (1 + t) / 6      (finite at t = 0, where dk/dt = 0),
        ∂k/∂log σ² = k.

    ``s`` is floored at 1e-300 so that ``t`` is defined; the derivative in ``s`` is 0 below
    the floor, as the floor's. The backward pass is a few elementwise products over the
    values instead of autograd's chain through sqrt, exp and the polynomial; the values are
    those of the plain formula, bit for bit. Gradients are reduced to each input's shape
    where ``s`` and ``log σ²`` broadcast.
    """

    @staticmethod
    def forward(ctx, s: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        t = torch.sqrt(s.clamp_min(_MATERN_FLOOR))
        e = torch.exp(log_var - t)
        k = torch.addcmul(t + 1.0, t, t, value=1.0 / 3.0) * e
        ctx.shapes = (s.shape, log_var.shape)
        # k is kept for ∂/∂log σ² only when that gradient is wanted (it costs a buffer)
        keep = k if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(t, e, s >= _MATERN_FLOOR, keep)
        return k

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        t, e, inside, k = ctx.saved_tensors
        s_shape, lv_shape = ctx.shapes
        d_s = d_lv = None
        if ctx.needs_input_grad[0]:
            d_s = t + 1.0
            d_s = d_s.mul_(e) if e.shape == d_s.shape else d_s * e
            d_s = d_s.mul_(grad).mul_(-1.0 / 6.0).masked_fill_(~inside, 0.0)
            if d_s.shape != s_shape:
                d_s = d_s.sum_to_size(s_shape)
        if ctx.needs_input_grad[1]:
            d_lv = grad * k
            if d_lv.shape != lv_shape:
                d_lv = d_lv.sum_to_size(lv_shape)
        return d_s, d_lv


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
        Marginal sd σ.
    lengthscale : tensor of shape (S, D)

    Returns
    -------
    tensor of shape (S, ...)
    """
    _check_kind(kind)
    D, rest = dsq.shape[0], dsq.shape[1:]
    flat = dsq.reshape(D, -1)
    shape = (-1,) + (1,) * len(rest)
    # s = Σ_d (c² ℓ_d⁻²) dsq_d: the factor on the (S, D) length-scales, not on the values
    s = ((lengthscale.reciprocal() ** 2 * sq_factor(kind)) @ flat).reshape((-1,) + rest)
    log_var = (2.0 * torch.log(scale)).reshape(shape)
    # without gradients (the sampler's path) s is fresh: reuse it, fewer passes over memory
    return kernel_from_scaled_sq(kind, s, log_var, overwrite=True)


class KernelOnDistances:
    """The δ kernel on fixed feature pairs, for a batch of log-hyperparameters.

    The log-posterior evaluates the kernel on the same observed entries at every call,
    with the sampled ``log σ`` and ``log ℓ_d``: the per-dimension squared differences are
    flattened and multiplied by the kernel's ``c²`` (:func:`sq_factor`; for rbf by −½)
    once here, so that a call is one matrix product and the kernel's map (rbf: one exp,
    its exponent formed by the product itself)::

        k = exp(2 log σ + Σ_d (−½ dsq_d) ℓ_d⁻²),   ℓ_d⁻² = exp(−2 log ℓ_d)

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
        _check_kind(kind)
        self.kind = kind
        self.shape = tuple(dsq.shape[1:])
        n = int(np.prod(self.shape))
        flat = torch.as_tensor(dsq, dtype=torch.float64, device=device).reshape(dsq.shape[0], n)
        factor = sq_factor(kind)
        self.flat = (-factor if kind == "rbf" else factor) * flat  # (D, P)

    def __call__(self, log_scale: torch.Tensor, log_lengthscale: torch.Tensor) -> torch.Tensor:
        """``(S, ...)`` kernel values for ``log_scale (S, 1)``, ``log_lengthscale (S, D)``."""
        inv_sq = torch.exp(log_lengthscale * -2.0)  # ℓ⁻², (S, D)
        S = inv_sq.shape[0]
        if self.kind == "rbf":
            # kernel_from_scaled_sq's exp(log σ² − s), its exponent as one addmm: fused,
            # and the same rounding as log σ² + (−s)
            a = torch.addmm(log_scale, inv_sq, self.flat, beta=2.0)
            k = torch.exp(a) if torch.is_grad_enabled() else a.exp_()
        else:
            k = kernel_from_scaled_sq(self.kind, inv_sq @ self.flat, 2.0 * log_scale, True)
        return k.view(S, *self.shape)
