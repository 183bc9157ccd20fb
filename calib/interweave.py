"""Interweaving the two parameterizations of a hierarchy: :class:`PoolingFlip` and
:class:`InterweavedMove` (two :class:`calib.chees.ChEESMove` s alternating).

A partially pooled quantity with campaign values ``u_ℓ = μ + τ z_ℓ`` can be sampled in the
centred coordinates ``(μ, log τ, u)`` or the non-centred ``(μ, log τ, z)``. Each is a funnel
where the other is not: the centred one when the data say little about each ``u_ℓ`` (small
τ is a narrow neck a fixed step size cannot enter: the move is biased, and divergences are
the only sign), the non-centred one when they say much. Following the interweaving strategy
of Yu & Meng (2011, "To center or not to center: that is not the question", JCGS 20(3)), the
move alternates: even iterations run HMC in the model's own coordinates, odd ones in the
other, each with its own adapted step size, trajectory length and metric. The map
``z ↦ u = μ + e^{log τ} z`` is a bijection, so a kernel that leaves the density in the other
coordinates invariant, ``π(y) = π(x(y))·|∂x/∂y|`` with ``log|∂x/∂y| = ±L·log τ`` per group,
leaves the posterior invariant; the alternation of two invariant kernels is invariant, and
it mixes wherever either one does.
"""

from __future__ import annotations

from typing import Any

import emcee
import numpy as np
import torch

from ._hmc_coords import ComposedFlip
from ._value_grad import batched_value_and_grad
from .chees import ChEESMove
from .likelihood import DTYPE

__all__ = ["PoolingFlip", "InterweavedMove"]


class PoolingFlip:
    """The other parameterization of every pooled group: centred ↔ non-centred.

    Parameters
    ----------
    mean, logscale : sequence of int, length G
        Coordinates of each group's population mean μ and log scale log τ.
    members : array of int, shape (G, L)
        Coordinates of each group's ``L`` campaign values.
    centred : sequence of bool, length G
        Whether the model's coordinates hold the campaign values ``u_ℓ`` (centred) or the
        standardized ``z_ℓ = (u_ℓ − μ)/τ``; the other coordinates hold the other one.
    """

    def __init__(self, mean, logscale, members, centred):
        self.mean = np.asarray(mean, dtype=np.int64)
        self.logscale = np.asarray(logscale, dtype=np.int64)
        self.members = np.asarray(members, dtype=np.int64)
        self.centred = np.asarray(centred, dtype=bool)
        G = self.mean.size
        if self.members.ndim != 2 or self.members.shape[0] != G or self.logscale.size != G:
            raise ValueError(
                f"members: expected shape ({G}, L) beside {G} means and log scales, got "
                f"{self.members.shape} and {self.logscale.size}"
            )
        # log|∂x/∂y| = Σ_g ±L·log τ_g: + where the model is centred (u = μ + τ z)
        self._sign = np.where(self.centred, 1.0, -1.0) * self.members.shape[1]
        self._t = {k: torch.as_tensor(getattr(self, k)) for k in ("mean", "logscale", "members")}
        self._t["centred"] = torch.as_tensor(self.centred)[:, None]
        self._t["sign"] = torch.as_tensor(self._sign, dtype=DTYPE)

    def _affine(self, X, mu, v, to_u):
        """``μ + e^v w`` where ``to_u``, else ``(w − μ) e^{−v}`` (numpy or torch)."""
        lib = torch if isinstance(X, torch.Tensor) else np
        w = X[:, self.members] if lib is np else X[:, self._t["members"]]
        with np.errstate(over="ignore", invalid="ignore"):  # a divergent trajectory's far end
            u = mu[..., None] + lib.exp(v)[..., None] * w
            z = (w - mu[..., None]) * lib.exp(-v)[..., None]
            return lib.where(to_u, u, z)

    def to_other(self, X: np.ndarray) -> np.ndarray:
        """Model coordinates ``(W, d)`` → the other parameterization's."""
        Y = X.copy()
        mu, v = X[:, self.mean], X[:, self.logscale]
        Y[:, self.members] = self._affine(X, mu, v, ~self.centred[:, None])
        return Y

    def to_model(self, Y: np.ndarray) -> np.ndarray:
        """The other parameterization's coordinates ``(W, d)`` → the model's."""
        X = Y.copy()
        mu, v = Y[:, self.mean], Y[:, self.logscale]
        X[:, self.members] = self._affine(Y, mu, v, self.centred[:, None])
        return X

    def log_det(self, Y: np.ndarray) -> np.ndarray:
        """``log|∂x/∂y|`` per walker."""
        return Y[:, self.logscale] @ self._sign

    def to_model_torch(self, Y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`to_model` and :meth:`log_det` in torch (differentiable)."""
        t = self._t
        mu, v = Y[:, t["mean"]], Y[:, t["logscale"]]
        flat = t["members"].reshape(-1)
        w = self._affine(Y, mu, v, t["centred"]).reshape(Y.shape[0], -1)
        X = Y.index_copy(1, flat, w)
        return X, v @ t["sign"]


class InterweavedMove(emcee.moves.Move):
    """Two :class:`ChEESMove` s alternating: even iterations in the model's coordinates, odd
    ones in the other parameterization of its pooled groups (module docstring).

    Each part adapts in its own iterations: the first ``⌈n_warmup/2⌉`` calls of the even
    part and ``⌊n_warmup/2⌋`` of the odd part are its warm-up, so both are frozen after
    ``n_warmup`` iterations.
    """

    def __init__(self, model_move: ChEESMove, other_move: ChEESMove):
        if other_move.flip is None or other_move.flip is model_move.flip:
            raise ValueError("InterweavedMove: the second move must carry the pooling flip")
        self.parts = (model_move, other_move)
        self.iteration = 0

    @classmethod
    def build(
        cls, model, flip: PoolingFlip, wrap=None, n_warmup: int = 200, scores=None, **options
    ):
        """Both parts on ``model``'s batched log-posterior (``wrap`` is applied to each
        value-and-gradient function, e.g. to count calls); ``options`` go to both. With
        ``scores`` (:func:`calib._hmc_coords.hmc_coordinates`) both parts integrate the
        length-scales in their prior's normal scores."""
        wrap = wrap or (lambda f: f)
        d = model.n_dim
        if scores is not None:
            flip = ComposedFlip(flip, scores)
        even = ChEESMove(
            wrap(batched_value_and_grad(model, scores)),
            d,
            n_warmup=(n_warmup + 1) // 2,
            flip=scores,
            **options,
        )
        odd = ChEESMove(
            wrap(batched_value_and_grad(model, flip)),
            d,
            n_warmup=n_warmup // 2,
            flip=flip,
            **options,
        )
        return cls(even, odd)

    def propose(self, model, state):
        move = self.parts[self.iteration % 2]
        self.iteration += 1
        return move.propose(model, state)

    @property
    def n_warmup(self) -> int:
        return sum(m.n_warmup for m in self.parts)

    @property
    def frozen(self) -> bool:
        return all(m.frozen for m in self.parts)

    def state_dict(self) -> dict[str, Any]:
        """The parts' states, with their totals and the model-coordinates part's step size
        and trajectory length at the top level."""
        parts = [m.state_dict() for m in self.parts]
        return {
            "kind": "interweaved-hmc",
            "iteration": self.iteration,
            "n_warmup": self.n_warmup,
            "frozen": self.frozen,
            "n_grad_evals": sum(p["n_grad_evals"] for p in parts),
            "n_divergent": sum(p["n_divergent"] for p in parts),
            "step_size": parts[0]["step_size"],
            "trajectory": parts[0]["trajectory"],
            "coordinates": parts[0]["coordinates"],
            "parts": parts,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "interweaved-hmc":
            raise ValueError(f"not an interweaved HMC move state: kind={state.get('kind')!r}")
        for m, ps in zip(self.parts, state["parts"], strict=True):
            m.load_state_dict(ps)
        self.iteration = int(state["iteration"])
