"""The LKJ prior on a correlation matrix, sampled through its unconstrained Cholesky factor.

A ``d × d`` correlation matrix Ω = L Lᵀ is held as ``k = d(d − 1)/2`` real numbers ``y``,
as Stan's ``cholesky_factor_corr`` transform does (Stan Reference Manual, "Constraint
transforms", "Cholesky factors of correlation matrices"):

- canonical partial correlations ``z_ij = tanh(y_ij)`` for ``i > j`` (rows in order, the
  columns of a row left to right);
- the Cholesky factor row by row: ``L_00 = 1``; for ``i ≥ 1``
  ``L_ij = z_ij · sqrt(1 − Σ_{m<j} L_im²)`` (``j < i``) and
  ``L_ii = sqrt(1 − Σ_{m<i} L_im²)``, so every row has unit norm;
- ``log |∂L/∂y| = Σ_{i>j} [log(1 − z_ij²) + ½ log(1 − Σ_{m<j} L_im²)]``.

Since ``1 − Σ_{m<j} L_im² = Π_{m<j} (1 − z_im²)``, everything is computed from
``log(1 − z²) = 2 log sech y``, which stays finite for any ``y``.

The LKJ density (Lewandowski, Kurowicka & Joe 2009) is ``p(Ω) ∝ det(Ω)^(η−1)``; on the
factor (Stan Functions Reference, ``lkj_corr_cholesky``),
``log p(L) = Σ_{i≥1} (d − i + 2η − 3) log L_ii − log c_d(η)`` (``i`` from 0). Written in
the partial correlations the density is a product (LKJ 2009, §3.2, the C-vine): the
``z_ij`` are independent with ``(z_ij + 1)/2 ~ Beta(β_j, β_j)``, ``β_j = η + (d − 2 − j)/2``;
the normalizing constant follows, and so do exact prior draws. Column 0 holds the
correlations themselves, hence the marginal of any correlation:
``(ρ + 1)/2 ~ Beta(η − 1 + d/2, η − 1 + d/2)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import special, stats

__all__ = ["LKJ", "corr_cholesky", "pairs"]

_LOG2 = math.log(2.0)


def pairs(d: int) -> list[tuple[int, int]]:
    """The ``(i, j)``, ``i > j``, of the unconstrained coordinates, in their order."""
    return [(i, j) for i in range(1, d) for j in range(i)]


def _log1m_tanh2(y: torch.Tensor) -> torch.Tensor:
    """``log(1 − tanh² y) = 2 (log 2 − |y| − log(1 + e^(−2|y|)))``, finite for every y."""
    a = y.abs()
    return 2.0 * (_LOG2 - a - torch.nn.functional.softplus(-2.0 * a))


_CONSTANTS: dict[tuple, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}


def _constants(d: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For the ``k`` coordinates of a ``d × d`` factor: ``E (k, k)``, ``E[m, c] = 1`` when
    m is an earlier coordinate of c's row (the exclusive cumulative sum along a row as one
    product); ``R (k, d − 1)``, row membership; and where the entries go in the flattened
    factor (the ``k`` below the diagonal, then the ``d − 1`` diagonal ones after L_00)."""
    key = (d, str(device))
    if key not in _CONSTANTS:
        ps = pairs(d)
        E = [[float(pm[0] == pc[0] and pm[1] < pc[1]) for pc in ps] for pm in ps]
        R = [[float(p[0] == i) for i in range(1, d)] for p in ps]
        where = [i * d + j for i, j in ps] + [i * d + i for i in range(1, d)]
        _CONSTANTS[key] = (
            torch.tensor(E, dtype=torch.float64, device=device).reshape(len(ps), len(ps)),
            torch.tensor(R, dtype=torch.float64, device=device).reshape(len(ps), d - 1),
            torch.tensor(where, dtype=torch.long, device=device),
        )
    return _CONSTANTS[key]


def corr_cholesky(y: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The Cholesky factor of a correlation matrix and the transform's log-Jacobian.

    Parameters
    ----------
    y : tensor (W, d(d − 1)/2), float64
        Unconstrained coordinates, in the order of :func:`pairs`.
    d : int
        Size of the correlation matrix.

    Returns
    -------
    L : tensor (W, d, d)
        Lower triangular, positive diagonal, rows of unit norm.
    log_jacobian : tensor (W,)
        ``log |∂(L_ij, i > j)/∂y|`` (module docstring).
    """
    W = y.shape[0]
    E, R, where = _constants(d, y.device)
    lw = _log1m_tanh2(y)  # log(1 − z²)
    # s_ij = Σ_{m<j} log(1 − z_im²): the log squared length of row i left before column j
    s = lw @ E
    values = torch.cat([torch.tanh(y) * torch.exp(0.5 * s), torch.exp(0.5 * (lw @ R))], dim=1)
    flat = torch.zeros(W, d * d, dtype=y.dtype, device=y.device)
    flat[:, 0] = 1.0
    L = flat.index_copy(1, where, values).view(W, d, d)
    return L, (lw + 0.5 * s).sum(dim=1)


class LKJ:
    """LKJ prior on a ``d × d`` correlation matrix Ω: ``p(Ω) ∝ det(Ω)^(η − 1)``.

    Not a scalar :class:`calib.priors.Prior`: it is the prior of a whole correlation matrix
    (``Calibrator(correlated=...)``, docs/model.md §2c), evaluated on the unconstrained
    Cholesky coordinates of :func:`corr_cholesky`.

    Parameters
    ----------
    eta : float
        Shape, > 0. ``η = 1`` is uniform over correlation matrices; ``η > 1`` favours
        weak correlations (each correlation's marginal is ``(ρ + 1)/2 ~ Beta(η − 1 + d/2,
        η − 1 + d/2)``); ``η < 1`` favours strong ones. calib's default is ``η = 2``: for
        two parameters a density ∝ 1 − ρ², which keeps the posterior off ρ = ±1 when a
        handful of campaigns say little about the correlation (the value in the Stan User's
        Guide's multivariate hierarchical prior), yet barely moves it when they say much.

    Examples
    --------
    >>> from calib.priors import LKJ
    >>> float(LKJ(2.0).marginal(2).mean())  # of (ρ + 1)/2
    0.5
    """

    def __init__(self, eta: float = 2.0):
        try:
            v = float(eta)
        except (TypeError, ValueError):
            raise TypeError(f"LKJ: eta must be a real number, got {eta!r}") from None
        if not math.isfinite(v) or v <= 0.0:
            raise ValueError(f"LKJ: eta must be finite and > 0, got {eta!r}")
        self.eta = v
        self._beta_cache: dict[tuple, torch.Tensor] = {}  # β_j by (d, device)
        self._log_c: dict[int, float] = {}

    def __repr__(self) -> str:
        return f"LKJ(eta={self.eta!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LKJ) and other.eta == self.eta

    def __hash__(self) -> int:
        return hash(("LKJ", self.eta))

    def to_dict(self) -> dict[str, Any]:
        """Plain description: ``{"type": "LKJ", "eta": 2.0}``."""
        return {"type": "LKJ", "eta": self.eta}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> LKJ:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or d.get("type") != "LKJ" or set(d) != {"type", "eta"}:
            raise ValueError(f"an LKJ prior is {{type = 'LKJ', eta = <number>}}, got {d!r}")
        return LKJ(d["eta"])

    def _betas(self, d: int) -> np.ndarray:
        """``β_j`` of every coordinate (the Beta law of its partial correlation)."""
        return np.array([self.eta + (d - 2 - j) / 2.0 for _, j in pairs(d)])

    def log_normalizer(self, d: int) -> float:
        """``log c_d(η)``: Σ over coordinates of ``(2β_j − 1) log 2 + log B(β_j, β_j)``."""
        if d not in self._log_c:
            b = self._betas(d)
            self._log_c[d] = float(np.sum((2.0 * b - 1.0) * _LOG2 + special.betaln(b, b)))
        return self._log_c[d]

    def log_prob_cholesky(self, L: torch.Tensor) -> torch.Tensor:
        """Normalized log density of the factor ``L (W, d, d)`` (Stan's
        ``lkj_corr_cholesky``): ``Σ_{i≥1} (d − i + 2η − 3) log L_ii − log c_d(η)``."""
        d = L.shape[-1]
        i = torch.arange(1, d, dtype=L.dtype, device=L.device)
        logdiag = torch.log(torch.diagonal(L, dim1=-2, dim2=-1)[..., 1:])
        return ((d - i + 2.0 * self.eta - 3.0) * logdiag).sum(dim=-1) - self.log_normalizer(d)

    def log_prob_unconstrained(self, y: torch.Tensor, d: int) -> torch.Tensor:
        """Log density ``(W,)`` of ``y (W, d(d−1)/2)``: the LKJ density of its factor plus
        the transform's log-Jacobian, ``log p(L(y)) + log |∂L/∂y|``.

        Collected by partial correlation, the two are ``Σ β_j log(1 − z_ij²) − log c_d(η)``
        (the powers of ``log L_ii`` and of the Jacobian's factors add up to ``β_j``; module
        docstring), evaluated so: the factor itself is not needed. The test suite checks it
        against :meth:`log_prob_cholesky` plus :func:`corr_cholesky`'s log-Jacobian.
        """
        key = (d, str(y.device))
        if key not in self._beta_cache:
            self._beta_cache[key] = torch.tensor(self._betas(d), dtype=y.dtype, device=y.device)
        return (_log1m_tanh2(y) * self._beta_cache[key]).sum(dim=1) - self.log_normalizer(d)

    def sample_unconstrained(self, rng: np.random.Generator, n: int, d: int) -> np.ndarray:
        """``n`` exact prior draws of ``y``, ``(n, d(d−1)/2)``: independent partial
        correlations, ``(z + 1)/2 ~ Beta(β_j, β_j)`` (LKJ 2009, the C-vine), ``y = atanh z``,
        kept inside ``|z| ≤ 1 − 1e-12`` (a starting point must have a finite density)."""
        b = self._betas(d)
        z = 2.0 * rng.beta(b, b, size=(n, b.size)) - 1.0
        return np.arctanh(np.clip(z, -1.0 + 1e-12, 1.0 - 1e-12))

    def marginal(self, d: int) -> Any:
        """The law of ``(ρ + 1)/2`` for any one correlation of a ``d × d`` Ω, as a frozen
        :mod:`scipy.stats` Beta (LKJ 2009, §3.2)."""
        a = self.eta - 1.0 + d / 2.0
        return stats.beta(a, a)
