"""A finite-element Euler–Bernoulli cantilever with a rotational spring at its support.

The beam ``0 ≤ s ≤ L`` has bending stiffness ``E·I``; at ``s = 0`` its deflection is held
and its rotation resisted by a spring of stiffness ``k`` (N·m/rad; ``k = ∞`` is a perfect
clamp); the end ``s = L`` is free. A point load ``P`` acts at ``s = a``. Outputs are the
deflections at the sensor positions.

Discretization: two-node Hermite cubic elements (deflection and rotation at each node),
element stiffness ``EI/h³ [[12, 6h, −12, 6h], [6h, 4h², −6h, 2h²], [−12, −6h, 12, −6h],
[6h, 2h², −6h, 4h²]]`` and the consistent load vector ``P·N(ξ)`` of the Hermite shape
functions at the load point. For the Euler–Bernoulli beam the Hermite cubics solve the
homogeneous equation exactly, so nodal values are exact for any mesh (Tong 1969). Between
nodes the FE field (the Hermite interpolant) converges as ``h³`` in the loaded element,
where the exact solution's third derivative jumps; adding that element's fixed-end
particular solution makes the sensor deflections exact to round-off for any
``n_elements``.

Closed form used by the tests: the beam is statically determinate, so the spring only
adds a rigid rotation ``φ = P·a/k`` to the clamped solution:
``w(s) = P s² (3a − s) / (6EI)`` for ``s ≤ a``, ``P a² (3s − a) / (6EI)`` for ``s ≥ a``,
plus ``φ·s``; at the tip with ``a = L``: ``PL³/(3EI) + PL²/k``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.linalg import cho_factor, cho_solve

__all__ = ["BeamSimulator"]


def _hermite(xi: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Hermite cubic shape functions ``(n, 4)`` at local coordinates ``xi`` in [0, 1]."""
    xi2, xi3 = xi * xi, xi * xi * xi
    return np.stack(
        [1 - 3 * xi2 + 2 * xi3, h * (xi - 2 * xi2 + xi3), 3 * xi2 - 2 * xi3, h * (xi3 - xi2)],
        axis=-1,
    )


class BeamSimulator:
    """Cantilever with a rotational support spring under a point load (FEM).

    Parameters
    ----------
    length : float
        ``L`` (m).
    second_moment : float
        Second moment of area ``I`` (m⁴).
    sensors : sequence of float
        Positions ``s`` in ``[0, L]`` where deflections are output (m).
    n_elements : int
        Number of equal elements.

    Attributes
    ----------
    input_names : ("load", "load_position")
        Point load ``P`` (N, positive downwards) and its position ``a`` (m).
    parameter_names : ("E", "support_stiffness")
        Young's modulus (Pa) and the rotational spring ``k`` (N·m/rad, ``np.inf`` = clamp).
    output_names : tuple of str
        ``"deflection_0"``, … one per sensor (m, positive downwards).
    output_coords : ndarray of shape (m, 1)
        The sensor positions.

    Examples
    --------
    >>> beam = BeamSimulator(2.0, 8e-6, sensors=[1.0, 2.0])
    >>> beam.run([1e3, 2.0], [2e11, np.inf])   # tip: PL³/(3EI)
    array([0.00052083, 0.00166667])
    """

    input_names = ("load", "load_position")
    parameter_names = ("E", "support_stiffness")

    def __init__(
        self,
        length: float,
        second_moment: float,
        sensors: Sequence[float],
        n_elements: int = 40,
    ):
        self.length = float(length)
        self.second_moment = float(second_moment)
        if not (math.isfinite(self.length) and self.length > 0):
            raise ValueError(f"BeamSimulator: length must be finite and > 0, got {length!r}")
        if not (math.isfinite(self.second_moment) and self.second_moment > 0):
            raise ValueError(
                f"BeamSimulator: second_moment must be finite and > 0, got {second_moment!r}"
            )
        s = np.atleast_1d(np.asarray(sensors, dtype=float))
        if s.ndim != 1 or s.size == 0 or not np.isfinite(s).all():
            raise ValueError(f"BeamSimulator: sensors must be finite positions, got {sensors!r}")
        if (s < 0).any() or (s > self.length).any():
            raise ValueError(
                f"BeamSimulator: sensors must lie in [0, length={self.length}], got {s.tolist()}"
            )
        if (
            isinstance(n_elements, bool)
            or not isinstance(n_elements, (int, np.integer))
            or (n_elements < 1)
        ):
            raise ValueError(
                f"BeamSimulator: n_elements must be an integer >= 1, got {n_elements!r}"
            )
        self.sensors = s
        self.n_elements = int(n_elements)
        self.output_names = tuple(f"deflection_{i}" for i in range(s.size))
        self.output_coords = s.reshape(-1, 1).copy()

        # a uniform mesh: sensors are not made nodes, since two close sensors would make
        # a short element and an ill-conditioned stiffness; the sensor values are made
        # exact by the element's particular solution instead (see _at)
        self.nodes = np.linspace(0.0, self.length, self.n_elements + 1)
        self._h = np.diff(self.nodes)
        self._k_unit = self._assemble()

    # ------------------------------------------------------------------ FE pieces
    def _assemble(self) -> np.ndarray:
        """Global stiffness for ``E·I = 1``, all ``2·n_nodes`` DOFs (w, θ per node), in
        extended precision for the residuals of the iterative refinement."""
        n = 2 * self.nodes.size
        K = np.zeros((n, n), dtype=np.longdouble)
        for e, h in enumerate(self._h):
            h = np.longdouble(h)
            ke = (
                np.array(
                    [
                        [12, 6 * h, -12, 6 * h],
                        [6 * h, 4 * h * h, -6 * h, 2 * h * h],
                        [-12, -6 * h, 12, -6 * h],
                        [6 * h, 2 * h * h, -6 * h, 4 * h * h],
                    ],
                    dtype=np.longdouble,
                )
                / h**3
            )
            d = slice(2 * e, 2 * e + 4)
            K[d, d] += ke
        return K

    def _loads(self, load: np.ndarray, position: np.ndarray) -> np.ndarray:
        """Consistent nodal load vectors ``(2·n_nodes, n)`` of point loads."""
        e = np.clip(np.searchsorted(self.nodes, position, side="right") - 1, 0, self._h.size - 1)
        h = self._h[e]
        xi = np.clip((position - self.nodes[e]) / h, 0.0, 1.0)
        F = np.zeros((2 * self.nodes.size, load.size))
        cols = np.arange(load.size)
        N = _hermite(xi, h) * load[:, None]
        for k in range(4):
            np.add.at(F, (2 * e + k, cols), N[:, k])
        return F

    def _check(self, X: np.ndarray, Theta: np.ndarray) -> None:
        def bad(mask: np.ndarray, what: str, got: np.ndarray) -> None:
            if mask.any():
                i = int(np.flatnonzero(mask)[0])
                raise ValueError(f"BeamSimulator: {what}, got {float(got[i])!r} in row {i}")

        bad(~np.isfinite(X[:, 0]), "load must be finite", X[:, 0])
        pos = X[:, 1]
        bad(
            ~((pos >= 0) & (pos <= self.length)),
            f"load_position must lie in [0, {self.length}]",
            pos,
        )
        bad(
            ~(np.isfinite(Theta[:, 0]) & (Theta[:, 0] > 0)), "E must be finite and > 0", Theta[:, 0]
        )
        bad(~(Theta[:, 1] > 0), "support_stiffness must be > 0 (np.inf: clamped)", Theta[:, 1])

    def _solve(self, X: np.ndarray, Theta: np.ndarray) -> np.ndarray:
        """Nodal displacements ``(n, 2·n_nodes)`` for each row."""
        n = X.shape[0]
        U = np.zeros((n, 2 * self.nodes.size))
        F = self._loads(X[:, 0], X[:, 1])
        # one factorization per distinct (E, k), shared by all the load cases that use it
        pairs, group = np.unique(Theta, axis=0, return_inverse=True)
        group = np.ravel(group)
        for g, (E, k) in enumerate(pairs):
            rows = np.flatnonzero(group == g)
            # clamp: w₀ = θ₀ = 0; spring: w₀ = 0 and θ₀ held by k
            free = np.arange(2 if np.isinf(k) else 1, self._k_unit.shape[0])
            K = (np.longdouble(E) * np.longdouble(self.second_moment)) * self._k_unit[
                np.ix_(free, free)
            ]
            if not np.isinf(k):
                K[0, 0] += np.longdouble(k)
            Ff = F[np.ix_(free, rows)]
            K64 = K.astype(float)
            chol = cho_factor(K64)
            u = cho_solve(chol, Ff)
            # The stiffness of a cantilever has a condition number growing like n⁴ (more
            # with a soft spring or a short element between close sensors), which costs
            # 7–12 digits in a plain float64 solve. Iterative refinement with the residual
            # in extended precision recovers the float64 accuracy (Higham 2002, ch. 12).
            for _ in range(3):
                r = Ff.astype(np.longdouble) - K @ u.astype(np.longdouble)
                u = u + cho_solve(chol, r.astype(float))
            U[np.ix_(rows, free)] = u.T
        return U

    # ------------------------------------------------------------------ Simulator
    def _at(
        self, points: np.ndarray, U: np.ndarray, X: np.ndarray, Theta: np.ndarray, exact: bool
    ) -> np.ndarray:
        """Deflection ``(n, len(points))`` from nodal displacements ``U (n, 2·n_nodes)``.

        Inside an element the deflection is the Hermite interpolant of its nodal values
        plus, in the element that carries the load, the deflection of that element alone
        with both ends fixed under the load (the FE nodal values are exact, so the sum
        is the exact solution; Przemieniecki 1968, §11). The fixed-fixed beam of length
        ``h`` with ``P`` at ``α`` from its left end, ``β = h − α``, deflects
        ``P β² x² (3αh − (3α + β) x) / (6 EI h³)`` for ``x ≤ α`` (mirror for ``x ≥ α``).
        """
        e = np.clip(np.searchsorted(self.nodes, points, side="right") - 1, 0, self._h.size - 1)
        h = self._h[e]
        xi = np.clip((points - self.nodes[e]) / h, 0.0, 1.0)
        N = _hermite(xi, h)  # (k, 4)
        dofs = 2 * e[:, None] + np.arange(4)  # (k, 4)
        W = np.einsum("kj,nkj->nk", N, U[:, dofs])
        if not exact:
            return W
        P, pos = X[:, 0], X[:, 1]
        el = np.clip(np.searchsorted(self.nodes, pos, side="right") - 1, 0, self._h.size - 1)
        same = el[:, None] == e[None, :]  # (n, k): the point lies in the loaded element
        if same.any():
            hh = h[None, :]
            alpha = np.clip(pos[:, None] - self.nodes[e][None, :], 0.0, hh)
            beta = hh - alpha
            x = xi[None, :] * hh
            left = beta**2 * x**2 * (3 * alpha * hh - (3 * alpha + beta) * x)
            xr = hh - x
            right = alpha**2 * xr**2 * (3 * beta * hh - (3 * beta + alpha) * xr)
            bubble = np.where(x <= alpha, left, right) / (6 * hh**3)
            EI = Theta[:, 0:1] * self.second_moment
            W = W + np.where(same, P[:, None] * bubble / EI, 0.0)
        return W

    def run_batch(self, X: np.ndarray, Theta: np.ndarray) -> np.ndarray:
        """Deflections ``(n, m)`` at the sensors for ``X (n, 2)``, ``Theta (n, 2)``."""
        X = np.asarray(X, dtype=float).reshape(-1, 2)
        Theta = np.asarray(Theta, dtype=float).reshape(-1, 2)
        if X.shape[0] != Theta.shape[0]:
            raise ValueError(
                f"BeamSimulator: X has {X.shape[0]} rows but Theta has {Theta.shape[0]}"
            )
        self._check(X, Theta)
        return self._at(self.sensors, self._solve(X, Theta), X, Theta, exact=True)

    def run(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Deflections ``(m,)`` for ``x = (load, load_position)``, ``theta = (E, k)``."""
        return self.run_batch(np.reshape(x, (1, 2)), np.reshape(theta, (1, 2)))[0]

    def deflection(
        self,
        points: Sequence[float],
        x: np.ndarray,
        theta: np.ndarray,
        exact: bool = True,
    ) -> np.ndarray:
        """Deflection at any ``points`` in ``[0, L]`` for one run.

        With ``exact=False`` the plain FE field (the Hermite interpolant of the nodal
        values), which converges as ``h³`` in the loaded element.
        """
        X = np.reshape(np.asarray(x, dtype=float), (1, 2))
        T = np.reshape(np.asarray(theta, dtype=float), (1, 2))
        self._check(X, T)
        p = np.asarray(points, dtype=float).ravel()
        return self._at(p, self._solve(X, T), X, T, exact)[0]

    def __repr__(self) -> str:
        return (
            f"BeamSimulator(length={self.length}, second_moment={self.second_moment}, "
            f"sensors={self.sensors.tolist()}, n_elements={self.n_elements})"
        )
