"""Observations at their own output coordinates: the map from the forward model's outputs.

A campaign given with ``coords=`` (:class:`calib.Campaign`) observes its columns at output
coordinates that need not be the simulator's (SEPIA's ball_drop_1: field heights 5, 10,
15, 20 m, simulator heights 1.5, 3, …, 24 m). Each such column is

- one of the forward model's outputs, when its coordinate is one of theirs (to 1e-12 of
  their span): the entries are then exactly those of a NaN-masked ``y (n, m)``;
- otherwise a *virtual output* ``v``, the linear interpolation of the two outputs whose
  coordinates bracket it, ``η_v = (1 − a) η_j + a η_{j+1}``, with ``a`` the fraction of the
  way from ``s_j`` to ``s_{j+1}`` (outputs with one coordinate only; nothing is
  extrapolated). Linear interpolation is what SEPIA does to carry its simulator basis to
  the field indices; its error for a function with curvature ``f''`` on a grid of spacing
  ``h`` is at most ``h² max|f''| / 8`` (docs/emulators.md states it measured).

The outputs of the model's entries are then ``0 … m−1`` (the forward model's) followed by
``m … M−1`` (the virtual ones, one per distinct coordinate over all campaigns), with the
weights ``A (M − m, m)`` of the virtual ones. How each forward model is carried to them:

- a simulator (direct mode): ``η_v = Σ_j A_vj η_j`` of its run, exactly the interpolation;
- an emulator whose ``predict_torch`` takes ``weights=`` (the basis emulator): it
  interpolates its own representation (its basis vectors, :mod:`emulators.basis`);
- any other emulator: mean ``Σ_j A_vj μ_j`` and covariance ``Σ_j A_vj C_j`` of the outputs
  with nonzero weight. For weights ``a_j ≥ 0`` summing to one this covariance is never
  below the variance of ``Σ_j a_j η_j`` whatever the correlation between the outputs
  (``Var(Σ a_j η_j) ≤ (Σ a_j sd_j)² ≤ Σ a_j sd_j²``): the contract gives no cross-output
  covariance, so the bound is taken rather than assuming independence, which would
  understate it.
"""

from __future__ import annotations

import numpy as np
import torch

from .forward import _takes

__all__ = ["FieldOutputs"]

# two coordinates closer than this fraction of the simulator's span are the same point
_SAME = 1e-12


class FieldOutputs:
    """The forward model's outputs extended by the campaigns' own output coordinates.

    Parameters
    ----------
    output_coords : array (m, r) or None
        The forward model's output coordinates.
    field_coords : list of (array (k_ℓ, r) or None)
        Per campaign, the coordinates of its ``k_ℓ`` columns, or None (its columns are the
        ``m`` outputs).
    names : list of str
        The campaigns' names, for messages.

    Attributes
    ----------
    m, M : int
        The forward model's outputs, and with the virtual ones.
    coords : ndarray (M, r)
        Coordinates of all ``M`` outputs.
    columns : list of (ndarray (k_ℓ,) of int or None)
        Per campaign, the output (in ``0 … M−1``) of each of its columns.
    weights : ndarray (M − m, m)
        Interpolation weights of the virtual outputs.

    Raises
    ------
    ValueError
        Coordinates given for a model without output coordinates, or with another number
        of dimensions; coordinates outside the range of the model's (no extrapolation);
        coordinates that are not the model's where the outputs have more than one
        coordinate, or where the coordinate the interpolation needs is repeated.
    """

    def __init__(
        self,
        output_coords: np.ndarray | None,
        field_coords: list[np.ndarray | None],
        names: list[str],
    ):
        given = [(n, c) for n, c in zip(names, field_coords) if c is not None]
        if output_coords is None:
            raise ValueError(
                f"Campaign '{given[0][0]}': coords given, but the model's outputs have no "
                f"coordinates (a simulator's output_coords; for an emulator pass "
                f"output_coords= to the Calibrator)"
            )
        sim = np.asarray(output_coords, dtype=float)
        m, r = sim.shape
        span = float(np.max(np.ptp(sim, axis=0))) if m > 1 else 1.0
        tol = _SAME * max(span, np.finfo(float).tiny)
        virtual: list[np.ndarray] = []  # coordinates of the virtual outputs, in order
        rows: list[np.ndarray] = []  # their weights (m,)
        self.columns: list[np.ndarray | None] = []
        for name, c in zip(names, field_coords):
            if c is None:
                self.columns.append(None)
                continue
            if c.shape[1] != r:
                raise ValueError(
                    f"Campaign '{name}': coords have {c.shape[1]} dimension(s) per column but "
                    f"the model's output_coords have {r}"
                )
            cols = np.empty(c.shape[0], dtype=np.int64)
            for i, s in enumerate(c):
                d = np.max(np.abs(sim - s), axis=1)
                hit = np.flatnonzero(d <= tol)
                if hit.size > 1:
                    raise ValueError(
                        f"Campaign '{name}': coords[{i}] = {_fmt(s)} is the coordinate of "
                        f"{hit.size} outputs of the model ({hit.tolist()}): which one is "
                        f"observed is ambiguous"
                    )
                if hit.size == 1:
                    cols[i] = int(hit[0])
                    continue
                known = [v for v, cv in enumerate(virtual) if np.max(np.abs(cv - s)) <= tol]
                if known:
                    cols[i] = m + known[0]
                    continue
                rows.append(_weights(sim, s, name, i))
                virtual.append(np.asarray(s, dtype=float))
                cols[i] = m + len(virtual) - 1
            self.columns.append(cols)
        self.m, self.M = m, m + len(virtual)
        self.weights = np.array(rows, dtype=float).reshape(len(rows), m)
        self.coords = np.concatenate([sim, np.array(virtual, dtype=float).reshape(-1, r)])
        self._t: dict[tuple, torch.Tensor] = {}
        self._w: dict[bytes, np.ndarray] = {}

    @property
    def n_virtual(self) -> int:
        return self.M - self.m

    def output_weights(self, outputs: np.ndarray) -> np.ndarray:
        """``(k, m)``: the weights of outputs ``0 … M−1`` (a row of the identity for the
        forward model's own)."""
        full = np.concatenate([np.eye(self.m), self.weights])
        return full[np.asarray(outputs, dtype=np.int64)]

    def _tensor(self, key: str, value: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        k = (key, like.dtype, like.device)
        if k not in self._t:
            self._t[k] = torch.as_tensor(value, dtype=like.dtype, device=like.device)
        return self._t[k]

    def extend_mean(self, mean: torch.Tensor) -> torch.Tensor:
        """``(W, n, m) -> (W, n, M)``: a simulator's outputs and their interpolations."""
        if not self.n_virtual:
            return mean
        A = self._tensor("A", self.weights, mean)
        return torch.cat([mean, mean @ A.T], dim=-1)

    def forward(self, forward, X: np.ndarray, theta: torch.Tensor):
        """``forward(X, theta)`` with the virtual outputs appended: mean ``(W, n, M)``,
        covariance ``(W, M, n, n)`` or None (a simulator), the failed walkers ``(W,)``."""
        mean, cov, failed = forward(X, theta)
        if cov is None:
            return self.extend_mean(mean), None, failed
        Xt = torch.as_tensor(X, dtype=theta.dtype, device=theta.device)
        mv, cv = self.predict(forward, Xt, theta, np.arange(self.m, self.M))
        return torch.cat([mean, mv], dim=-1), torch.cat([cov, cv], dim=-3), failed

    def predict(
        self, forward, X: torch.Tensor, theta: torch.Tensor, outputs: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """An emulator's mean ``(W, n, k)`` and covariance ``(W, k, n, n)`` at outputs
        ``outputs`` (in ``0 … M−1``), on ``theta``'s device (see the module docstring).

        Parameters
        ----------
        forward : calib.forward.EmulatorForward
        X : Tensor (n, p)
        theta : Tensor (W, n, q)
        outputs : ndarray (k,) of int
        """
        outputs = np.asarray(outputs, dtype=np.int64)
        if outputs.max() < self.m:
            return forward.predict(X, theta, tuple(int(j) for j in outputs))
        key = outputs.tobytes()
        w = self._w.get(key)
        if w is None:  # built once per set of outputs: this is the likelihood's hot path
            w = self._w[key] = self.output_weights(outputs)
        em = forward.model
        if _takes(em.predict_torch, "weights"):
            th = theta if forward.fixed is None else forward.fixed.full(theta)
            W, n, _ = th.shape
            inputs = torch.cat([X.expand(W, n, -1), th], dim=-1)
            mean, cov = em.predict_torch(inputs, weights=w)
            return mean.to(theta.device), cov.to(theta.device)
        used = np.flatnonzero(np.any(w != 0, axis=0))
        mean, cov = forward.predict(X, theta, tuple(int(j) for j in used))
        wt = self._tensor(f"w{key.hex()}", w[:, used], mean)  # (k, u)
        return mean @ wt.T, torch.einsum("ku,wuab->wkab", wt, cov)


def _weights(sim: np.ndarray, s: np.ndarray, name: str, i: int) -> np.ndarray:
    """Linear interpolation weights ``(m,)`` of coordinate ``s`` between the model's."""
    m, r = sim.shape
    if r != 1:
        raise ValueError(
            f"Campaign '{name}': coords[{i}] = {_fmt(s)} is not one of the model's output "
            f"coordinates, and calib interpolates along one coordinate only (the model's "
            f"have {r}); observe at the model's coordinates"
        )
    t, x = sim[:, 0], float(s[0])
    lo, hi = float(t.min()), float(t.max())
    if not lo <= x <= hi:
        raise ValueError(
            f"Campaign '{name}': coords[{i}] = {x:.6g} is outside the range of the model's "
            f"output coordinates [{lo:.6g}, {hi:.6g}]; calib interpolates, it does not "
            f"extrapolate"
        )
    below, above = t[t < x], t[t > x]
    a, b = below.max(), above.min()
    ja, jb = np.flatnonzero(t == a), np.flatnonzero(t == b)
    if ja.size > 1 or jb.size > 1:
        raise ValueError(
            f"Campaign '{name}': coords[{i}] = {x:.6g} falls between output coordinates "
            f"{a:.6g} and {b:.6g}, and one of them belongs to several of the model's "
            f"outputs: the interpolation is ambiguous"
        )
    w = np.zeros(m)
    frac = (x - a) / (b - a)
    w[ja[0]], w[jb[0]] = 1.0 - frac, frac
    return w


def _fmt(s: np.ndarray) -> str:
    s = np.asarray(s).reshape(-1)
    return f"{s[0]:.6g}" if s.size == 1 else "(" + ", ".join(f"{v:.6g}" for v in s) + ")"
