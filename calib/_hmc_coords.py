"""The gradient move's own coordinates for heavy-tailed length-scales: a length-scale with a
``BetaRho(1, b)`` prior is integrated in its prior's normal scores, ``z = Φ⁻¹(F(ρ))``.

Why. SEPIA's δ prior ``ρ ~ Beta(1, 0.1)`` puts its mass near ρ = 1 (a smooth δ). In the
model's coordinate ``x = log ℓ`` its right tail falls only as ``e^(−2b·x)`` (rate 0.2), and
the likelihood, flat once δ is smooth, does not shorten it: on SEPIA's ball_drop_1 the
posterior of ``log ℓ_R`` has a median of 0.5 and a 99.9 % quantile of 34, while its left
side is a steep wall. A dense metric scaled by that tail makes the wall stiff in the
preconditioned coordinates, and the step size falls to 0.1 (docs/benchmarks.md).

The map. For ``a = 1`` Beta's CDF is ``F(ρ) = 1 − (1 − ρ)^b``, so with ``ρ = e^(−t)``,
``t = span²/(8ℓ²)`` (:class:`calib.priors.BetaRho`):

    Φ(−z) = (1 − ρ)^b,   q = (1 − ρ) = Φ(−z)^(1/b),   t = −log(1 − q),
    x = log ℓ = log(span/√8) − ½ log t,
    log |dx/dz| = −log 2b + log q + log φ(z) − log Φ(−z) − log t − log(1 − q).

The prior of ``z`` is exactly N(0, 1), so where the likelihood is flat the tail is Gaussian.
The model is unchanged: the move integrates ``log p(x(z)) + log |dx/dz|`` and stores the
model's coordinates and log-posterior (:class:`calib.chees.ChEESMove`, ``flip``). Other
``a`` would need the incomplete Beta function, which torch lacks: those keep ``log ℓ``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.special import log_ndtr, ndtri_exp

from ._gpmsa_priors import BetaRho
from .likelihood import DTYPE

__all__ = ["BetaRhoScores", "ComposedFlip", "hmc_coordinates"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_HALF = math.log(0.5)
# below this q, log t = log q + q/2 (t = −log(1 − q) = q + q²/2 + …; the next term q²/24
# is under 1e-17 there), where t itself would round or underflow
_Q_SERIES = 1e-8


class BetaRhoScores:
    """``log ℓ ↔ z`` on the columns ``cols`` of a model with ``BetaRho(1, b)`` priors.

    The interface of :class:`calib.interweave.PoolingFlip`: :meth:`to_other`,
    :meth:`to_model`, :meth:`log_det`, :meth:`to_model_torch`.
    """

    kind = "beta-rho-scores"

    def __init__(self, cols, spans, bs):
        self.cols = np.asarray(cols, dtype=np.int64)
        self.log_c = np.log(np.asarray(spans, dtype=float)) - 0.5 * math.log(8.0)
        self.b = np.asarray(bs, dtype=float)
        cpu = torch.device("cpu")  # moved to the walkers' device in to_model_torch
        self._t = {
            "cols": torch.as_tensor(self.cols, device=cpu),
            "log_c": torch.as_tensor(self.log_c, dtype=DTYPE, device=cpu),
            "b": torch.as_tensor(self.b, dtype=DTYPE, device=cpu),
        }

    @property
    def prior_cols(self) -> tuple[int, ...]:
        """The model's columns whose prior :meth:`to_model_torch_prior` states in ``z``."""
        return tuple(int(c) for c in self.cols)

    @staticmethod
    def _x_and_log_det(z, log_c, b, lib, det: bool = True):
        """``x = log ℓ`` and ``log |dx/dz|`` of ``z`` (numpy or torch, elementwise; the
        latter None unless ``det``)."""
        lnd = (torch.special.log_ndtr if lib is torch else log_ndtr)(-z)  # log Φ(−z)
        logq = lnd / b
        q = lib.exp(logq)
        # log(1 − q): log1p where q is small, log(−expm1(log q)) where q is near 1
        near1 = logq > _LOG_HALF
        # (each branch evaluated at a safe value where it is not used: an unused branch's
        # inf would turn into a NaN gradient through where)
        log1mq = lib.where(
            near1,
            lib.log(-lib.expm1(lib.where(logq < -1e-300, logq, -1e-300))),
            lib.log1p(-lib.where(near1, 0.0, q)),
        )
        small = q < _Q_SERIES
        t = -log1mq
        log_t = lib.where(small, logq + 0.5 * q, lib.log(lib.where(small, 1.0, t)))
        x = log_c - 0.5 * log_t
        if not det:
            return x, None
        log_phi = -0.5 * z * z - _HALF_LOG_2PI
        log_det = -lib.log(2.0 * b) + logq + log_phi - lnd - log_t - log1mq
        return x, log_det

    def to_model(self, Y: np.ndarray) -> np.ndarray:
        """The move's coordinates ``(W, d)`` → the model's."""
        X = np.array(Y, dtype=float)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            X[:, self.cols] = self._x_and_log_det(Y[:, self.cols], self.log_c, self.b, np)[0]
        return X

    def log_det(self, Y: np.ndarray) -> np.ndarray:
        """``log |∂x/∂y|`` per walker."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            ld = self._x_and_log_det(Y[:, self.cols], self.log_c, self.b, np)[1]
        return ld.sum(axis=1)

    def to_other(self, X: np.ndarray) -> np.ndarray:
        """The model's coordinates ``(W, d)`` → the move's: ``z = −Φ⁻¹((1 − ρ)^b)``."""
        Y = np.array(X, dtype=float)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            log_t = 2.0 * (self.log_c - X[:, self.cols])
            t = np.exp(log_t)
            # log(1 − ρ) = log(1 − e^(−t)), accurate at both ends (t/2: its series' term)
            log1mrho = np.where(
                t < _Q_SERIES,
                log_t - 0.5 * t,
                np.where(t > math.log(2.0), np.log1p(-np.exp(-t)), np.log(-np.expm1(-t))),
            )
            Y[:, self.cols] = -ndtri_exp(self.b * log1mrho)
        return Y

    def to_model_torch(self, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`to_model` and :meth:`log_det` in torch (differentiable)."""
        cols, log_c, b = (self._t[k].to(Y.device) for k in ("cols", "log_c", "b"))
        x, ld = self._x_and_log_det(Y[:, cols], log_c, b, torch)
        return Y.index_copy(1, cols, x), ld.sum(dim=1)

    def to_model_torch_prior(self, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's coordinates and ``Σ log φ(z)`` over the scores: the prior of those
        columns with every Jacobian, ``p(x(z)) |dx/dz|``, which is N(0, 1) in ``z``
        exactly. With the model's log-posterior less those columns' prior
        (``skip_prior=`` :attr:`prior_cols`) it is :meth:`to_model_torch`'s density in
        fewer operations: neither the BetaRho density nor ``log |dx/dz|`` is evaluated."""
        cols, log_c, b = (self._t[k].to(Y.device) for k in ("cols", "log_c", "b"))
        z = Y[:, cols]
        x, _ = self._x_and_log_det(z, log_c, b, torch, det=False)
        log_phi = -0.5 * (z * z).sum(dim=1) - len(self.cols) * _HALF_LOG_2PI
        return Y.index_copy(1, cols, x), log_phi


class ComposedFlip:
    """Two maps on disjoint columns, applied one after the other (``inner`` nearer the
    model): the interweaved move's other parameterization in the scores' coordinates. Its
    ``kind`` is the inner map's (the pooling flip does not change the coordinates' name)."""

    def __init__(self, outer, inner):
        self.outer, self.inner = outer, inner
        self.kind = inner.kind

    def to_model(self, Y: np.ndarray) -> np.ndarray:
        return self.inner.to_model(self.outer.to_model(Y))

    def to_other(self, X: np.ndarray) -> np.ndarray:
        return self.outer.to_other(self.inner.to_other(X))

    def log_det(self, Y: np.ndarray) -> np.ndarray:
        # each map reads only its own columns, which the other leaves as they are
        return self.outer.log_det(Y) + self.inner.log_det(Y)

    def to_model_torch(self, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        Z, ld_outer = self.outer.to_model_torch(Y)
        X, ld_inner = self.inner.to_model_torch(Z)
        return X, ld_outer + ld_inner

    @property
    def prior_cols(self) -> tuple[int, ...] | None:
        return getattr(self.inner, "prior_cols", None)

    def to_model_torch_prior(self, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`to_model_torch` with the inner map's prior in place of its Jacobian
        (:meth:`BetaRhoScores.to_model_torch_prior`)."""
        Z, ld_outer = self.outer.to_model_torch(Y)
        X, log_prior = self.inner.to_model_torch_prior(Z)
        return X, ld_outer + log_prior


def hmc_coordinates(model) -> BetaRhoScores | None:
    """The scores map of the model's ``BetaRho(1, b)`` log length-scale columns, or None."""
    found = [
        (e.col, e.prior)
        for block in model.blocks
        for e in block.entries(model.slots)
        if isinstance(e.prior, BetaRho) and e.prior.a == 1.0 and e.kind == "lower" and not e.lower
    ]
    if not found:
        return None
    return BetaRhoScores([c for c, _ in found], [p.span for _, p in found], [p.b for _, p in found])
