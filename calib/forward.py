"""The forward model inside the likelihood: the simulator itself (direct mode) or an emulator.

Both adapters take the control inputs of every observation row ``X (n_rows, p)`` and the
parameters of every walker at every row ``Theta (W, n_rows, q)`` and return the mean
``(W, n_rows, m)``, the forward model's own covariance ``(W, m, n_rows, n_rows)`` (``None``
in direct mode, where the simulator is exact) and a mask ``(W,)`` of walkers for which the
forward model failed.

The likelihood's hot path uses :meth:`EmulatorForward.predict`: the emulator for the
outputs that hold observations only (an emulator whose ``predict_torch`` takes
``outputs=`` computes only those; one that does not is asked for all and the observed ones
are selected from its prediction).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import torch

from .interfaces import is_emulator

__all__ = ["SimulatorForward", "EmulatorForward", "make_forward"]


def _run_rows(sim, X: np.ndarray, Theta: np.ndarray) -> np.ndarray:
    """``sim`` at every row, NaN rows where it raised; ``X (k, p)``, ``Theta (k, q)``."""
    m = len(sim.output_names)
    batch = getattr(sim, "run_batch", None)
    if batch is not None:
        try:
            out = np.asarray(batch(X, Theta), dtype=float)
            if out.shape == (X.shape[0], m):
                return out
        except Exception:  # noqa: BLE001 - any simulator failure is isolated row by row below
            pass
    out = np.full((X.shape[0], m), np.nan)
    for i in range(X.shape[0]):
        try:
            r = np.asarray(sim.run(X[i], Theta[i]), dtype=float)
            if r.size == m:
                out[i] = r.reshape(m)
        except Exception:  # noqa: BLE001 - a failed run rejects the walker, not the chain
            pass
    return out


class _SimulatorFn(torch.autograd.Function):
    """Simulator output with a central finite-difference backward pass in θ.

    The MAP search (L-BFGS) needs ∂η/∂θ; a black-box simulator has no derivative, so the
    backward pass evaluates it at θ ± h·e_k for every parameter k in one batched call, with
    ``h = ε^(1/3)·max(|θ_k|, 1e-3)`` (the step that balances truncation and rounding error
    of central differences).
    """

    @staticmethod
    def forward(ctx, theta: torch.Tensor, sim, X: np.ndarray) -> torch.Tensor:
        W, n, q = theta.shape
        th = theta.detach().cpu().numpy()
        Xr = np.broadcast_to(X, (W, n, X.shape[1])).reshape(W * n, X.shape[1])
        out = _run_rows(sim, Xr, th.reshape(W * n, q)).reshape(W, n, -1)
        ctx.sim, ctx.X, ctx.th = sim, X, th
        return torch.as_tensor(out, dtype=theta.dtype, device=theta.device)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        sim, X, th = ctx.sim, ctx.X, ctx.th
        W, n, q = th.shape
        h = np.cbrt(np.finfo(float).eps) * np.maximum(np.abs(th), 1e-3)  # (W, n, q)
        eye = np.eye(q)
        # (2, q, W, n, q): +h and -h steps in each coordinate k
        steps = np.stack([eye[:, None, None, :] * h[None], -eye[:, None, None, :] * h[None]])
        Th = (th[None, None] + steps).reshape(-1, q)
        Xr = np.broadcast_to(X, (2 * q * W, n, X.shape[1])).reshape(2 * q * W * n, X.shape[1])
        f = _run_rows(sim, Xr, Th).reshape(2, q, W, n, -1)
        hk = np.moveaxis(h, -1, 0)[..., None]  # (q, W, n, 1)
        jac = (f[0] - f[1]) / (2.0 * hk)  # (q, W, n, m): ∂η/∂θ_k
        g = torch.as_tensor(np.nan_to_num(jac), dtype=grad_out.dtype, device=grad_out.device)
        grad_theta = torch.einsum("kwnm,wnm->wnk", g, grad_out)
        return grad_theta, None, None


class SimulatorForward:
    """Direct mode: the simulator is evaluated inside the likelihood."""

    emulator = False

    def __init__(self, simulator):
        self.model = simulator

    def __call__(self, X: np.ndarray, theta: torch.Tensor):
        mean = _SimulatorFn.apply(theta, self.model, X)
        failed = ~torch.isfinite(mean).all(dim=-1).all(dim=-1)
        return mean, None, failed


class EmulatorForward:
    """Emulator mode: the emulator's predictive mean and full covariance (modular KOH)."""

    emulator = True

    def __init__(self, emulator):
        self.model = emulator
        self.selects_outputs = _takes_outputs(emulator.predict_torch)
        self._index: dict[tuple[int, ...], torch.Tensor] = {}

    def __call__(self, X: np.ndarray, theta: torch.Tensor):
        W, n, _ = theta.shape
        Xt = torch.as_tensor(X, dtype=theta.dtype, device=theta.device).expand(W, n, -1)
        mean, cov = self.model.predict_torch(torch.cat([Xt, theta], dim=-1))
        failed = ~(torch.isfinite(mean).all(dim=-1).all(dim=-1))
        return mean, cov, failed

    def predict(
        self, X: torch.Tensor, theta: torch.Tensor, outputs: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(W, n, k)`` and covariance ``(W, k, n, n)`` of ``k`` outputs, unchecked.

        Parameters
        ----------
        X : Tensor of shape (n, p)
            Control inputs of the rows.
        theta : Tensor of shape (W, n, q)
        outputs : tuple of int, optional
            The outputs wanted (``k = len(outputs)``); all ``m`` when None.
        """
        W, n, _ = theta.shape
        inputs = torch.cat([X.expand(W, n, -1), theta], dim=-1)
        if outputs is not None and self.selects_outputs:
            try:
                mean, cov = self.model.predict_torch(inputs, outputs=outputs)
            except TypeError:  # a plug-in whose outputs= means something else
                self.selects_outputs = False
            else:
                k = len(outputs)
                if mean.shape[-1] == k and cov.shape[-3] == k:
                    return mean, cov
                self.selects_outputs = False  # it predicted everything anyway
                return self._select(mean, cov, outputs)
        mean, cov = self.model.predict_torch(inputs)
        return (mean, cov) if outputs is None else self._select(mean, cov, outputs)

    def _select(self, mean: torch.Tensor, cov: torch.Tensor, outputs: Sequence[int]):
        key = tuple(outputs)
        idx = self._index.get(key)
        if idx is None:
            idx = self._index[key] = torch.as_tensor(key, device=mean.device)
        return mean.index_select(-1, idx), cov.index_select(-3, idx)


def _takes_outputs(fn) -> bool:
    """Whether ``predict_torch`` has an ``outputs`` parameter (optional in the contract)."""
    try:
        par = inspect.signature(fn).parameters.get("outputs")
    except (TypeError, ValueError):
        return False
    return par is not None and par.kind in (par.POSITIONAL_OR_KEYWORD, par.KEYWORD_ONLY)


def make_forward(model) -> SimulatorForward | EmulatorForward:
    return EmulatorForward(model) if is_emulator(model) else SimulatorForward(model)
