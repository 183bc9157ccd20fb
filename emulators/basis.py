"""Principal-component basis GP emulator for functional outputs (Higdon et al. 2008).

Higdon, Gattiker, Williams & Rightley (2008), "Computer model calibration using
high-dimensional output", JASA 103(482), §2.1: the ``n × m`` outputs are centred per
output and divided by one overall scale (so a time course or a field keeps its shape,
and outputs that never vary, such as an initial condition, do not blow up); the
standardized outputs ``Z`` are written as ``Z ≈ W Φᵀ`` with ``Φ (m, K)`` the leading
principal directions scaled by their singular values; each weight series ``w_k`` is
emulated by an independent GP (one batched :class:`~emulators.gp.GPEmulator`).

Predictive distribution of output ``j`` at points ``X*``:

    mean_j = μ_j + s Σ_k φ_jk E[w_k(X*)],
    cov_j  = s² (Σ_k φ_jk² C_k(X*, X*) + t_j I),

with ``C_k`` the latent covariance of weight ``k`` and ``t_j`` the truncation variance
of output ``j`` (the mean squared residual of the rank-``K`` reconstruction on the
training runs), added independently at each point. The covariance *between* outputs
(``Σ_k φ_jk φ_lk C_k``) is dropped: the contract returns one ``(n, n)`` block per output.

At an output coordinate between the simulator's (``predict_torch(weights=)``, used for
``Campaign(coords=)``): each basis vector and the mean are interpolated linearly along the
coordinate, ``φ_vk = Σ_j a_vj φ_jk``, ``μ_v = Σ_j a_vj μ_j`` (SEPIA carries its basis to
the field indices the same way), so the weights' GPs are unchanged and the prediction is
the interpolated field itself; the truncation variance is interpolated too,
``t_v = Σ_j a_vj t_j`` (for weights ≥ 0 summing to one, never below the variance of the
interpolated residual whatever its correlation between neighbouring outputs).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from calib.interfaces import Prediction
from emulators.gp import GPEmulator, validate_training_data

__all__ = ["BasisGPEmulator"]

_STATE_VERSION = "1"


class BasisGPEmulator:
    """GP emulator of functional outputs through a principal-component basis.

    Parameters
    ----------
    explained_variance : float
        Keep the fewest components whose share of the standardized output variance
        reaches this fraction (Higdon et al. 2008 keep 99 %; the default 0.99999 keeps the
        truncation error of smooth fields well under 1 %).
    max_components : int, optional
        Upper bound on the number of components.
    **gp_options
        Passed to :class:`~emulators.gp.GPEmulator` (``kernel``, ``mean``,
        ``n_restarts``, ``device``, ``seed``, ...).

    Attributes
    ----------
    n_inputs, n_outputs, n_components : int
    basis : ndarray of shape (n_outputs, n_components)
        ``Φ`` in standardized units.
    truncation_var : ndarray of shape (n_outputs,)
        Truncation variance ``t_j`` in standardized units.
    explained : ndarray of shape (n_components,)
        Cumulative explained variance fraction.
    """

    def __init__(
        self,
        explained_variance: float = 0.99999,
        max_components: int | None = None,
        **gp_options: Any,
    ) -> None:
        if not 0.0 < explained_variance <= 1.0:
            raise ValueError(
                f"explained_variance: expected a fraction in (0, 1], got {explained_variance!r}"
            )
        if max_components is not None and int(max_components) < 1:
            raise ValueError(f"max_components: expected an integer >= 1, got {max_components!r}")
        self.explained_variance = float(explained_variance)
        self.max_components = None if max_components is None else int(max_components)
        self.gp_options = dict(gp_options)
        GPEmulator(**self.gp_options)  # validate the options now, not after the SVD
        self._fitted = False

    @property
    def n_mean_params(self) -> int:
        return self.gp_.n_mean_params

    @property
    def n_train(self) -> int:
        return self.gp_.n_train

    @property
    def training_outputs(self) -> np.ndarray:
        return self._train_y.copy()

    def fit(self, inputs: np.ndarray, outputs: np.ndarray) -> BasisGPEmulator:
        """Fit the basis and the component GPs.

        Parameters
        ----------
        inputs : array_like of shape (n, p + q)
        outputs : array_like of shape (n, m)

        Returns
        -------
        self

        Raises
        ------
        ValueError
            As :meth:`GPEmulator.fit`.

        Warns
        -----
        UserWarning
            As :meth:`GPEmulator.fit`, and if no output varies (then every output is
            predicted as its constant, with zero variance).
        """
        min_runs_extra = 3 if self.gp_options.get("mean") == "linear" else 2
        X, Y = validate_training_data(inputs, outputs, min_runs_extra)
        n, m = Y.shape
        mu = Y.mean(axis=0)
        scale = float(np.sqrt(np.mean((Y - mu) ** 2)))
        if scale <= 4 * np.finfo(float).eps * float(np.abs(mu).max()):
            # nothing varies: one zero component, so that every prediction is μ exactly
            warnings.warn(
                "outputs: no column varies; every output is predicted as its constant, "
                "with zero variance",
                UserWarning,
                stacklevel=2,
            )
            mu, scale, K = Y[0].copy(), 1.0, 1
            W, Phi, frac = np.zeros((n, 1)), np.zeros((m, 1)), np.ones(1)
            self._trunc = np.zeros(m)
        else:
            Z = (Y - mu) / scale
            U, S, Vt = np.linalg.svd(Z, full_matrices=False)
            frac = np.cumsum(S**2) / np.sum(S**2)
            K = int(np.searchsorted(frac, self.explained_variance * (1 - 1e-12)) + 1)
            K = min(K, len(S), n - 1)
            if self.max_components is not None:
                K = min(K, self.max_components)
            # weights of unit sample variance: Z = (√n U_K)(S_K V_Kᵀ / √n) + residual
            W = U[:, :K] * np.sqrt(n)
            Phi = (Vt[:K].T * S[:K]) / np.sqrt(n)  # (m, K)
            resid = Z - W @ Phi.T
            self._trunc = np.mean(resid**2, axis=0)  # (m,)
        with warnings.catch_warnings():
            # the zero weight of constant outputs is expected here, not news to the user
            warnings.filterwarnings("ignore", "outputs: column", UserWarning)
            self.gp_ = GPEmulator(**self.gp_options).fit(X, W)
        self._train_x, self._train_y = X, Y
        self._mu, self._scale, self._phi = mu, scale, Phi
        self._explained = frac[:K]
        self.n_inputs, self.n_outputs, self.n_components = X.shape[1], m, K
        self._reset_selections()
        self._fitted = True
        return self

    def _reset_selections(self) -> None:
        """Forget the basis rows cached per selection of outputs (after fitting or loading)."""
        self._selections: dict[tuple[int, ...] | None, _Selection] = {}

    @property
    def basis(self) -> np.ndarray:
        return self._phi.copy()

    @property
    def truncation_var(self) -> np.ndarray:
        return self._trunc.copy()

    @property
    def explained(self) -> np.ndarray:
        return self._explained.copy()

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError("BasisGPEmulator: call fit() (or from_state_dict) first")

    def predict(self, inputs: np.ndarray, full_cov: bool = False) -> Prediction:
        """Predictive distribution of the functional output, in original units.

        Parameters
        ----------
        inputs : array_like of shape (n, p + q)
        full_cov : bool
            Also return ``cov (m, n, n)``: per output, the covariance across points
            implied by the basis plus the truncation variance on the diagonal.

        Returns
        -------
        Prediction
            ``mean (n, m)``, ``var (n, m)``, optionally ``cov (m, n, n)``.
        """
        self._check_fitted()
        w = self.gp_.predict(inputs, full_cov=full_cov)  # weights: (n, K)
        s2 = self._scale**2
        mean = self._mu + self._scale * (w.mean @ self._phi.T)
        var = s2 * (w.var @ (self._phi**2).T + self._trunc)
        cov = None
        if full_cov:
            n = w.mean.shape[0]
            cov = np.einsum("jk,kab->jab", self._phi**2, w.cov)
            cov[:, np.arange(n), np.arange(n)] += self._trunc[:, None]
            cov *= s2
        return Prediction(mean=mean, var=var, cov=cov)

    def predict_torch(
        self,
        inputs: torch.Tensor,
        outputs: Sequence[int] | None = None,
        weights: np.ndarray | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched, differentiable prediction (see the module docstring for the form).

        Parameters
        ----------
        inputs : Tensor of shape (W, n, d) or (n, d)
        outputs : sequence of int, optional
            Map the weights onto these outputs only (their rows of the basis), in this
            order. Every component GP is evaluated either way. Default: all.
        weights : array of shape (k, m), optional
            Instead of ``outputs``: predict ``k`` interpolations ``Σ_j a_ij η_j`` of the
            outputs, one per row of nonnegative weights summing to one (the module
            docstring says how); a row of the identity is output ``j`` itself.

        Returns
        -------
        mean : Tensor of shape (W, n, k) or (n, k)
        cov : Tensor of shape (W, k, n, n) or (k, n, n)
            ``k`` = ``len(outputs)``, the rows of ``weights``, or ``m``. Per output;
            cross-output covariance dropped; truncation variance added on the diagonal.

        Raises
        ------
        ValueError
            Both ``outputs`` and ``weights``; weights of another shape, negative, or rows
            that do not sum to one.
        """
        self._check_fitted()
        gp = self.gp_
        x, squeeze = gp._torch_inputs(inputs)
        sel = self._selection(outputs) if weights is None else self._weighted(outputs, weights)
        wm, wc = gp._predict(x, gp._selection(None))  # (W, n, K), (W, K, n, n)
        mean = sel.mu + self._scale * (wm @ sel.phi_t)  # (W, n, k)
        n = wc.shape[-1]
        # Σ_k φ_jk² C_k as one matmul over the flattened (n, n) blocks
        cov = (sel.phi2 @ wc.flatten(-2)).unflatten(-1, (n, n))
        cov = (self._scale * self._scale) * (cov + sel.trunc_eye(n))
        if squeeze:
            mean, cov = mean[0], cov[0]
        return mean.to(inputs.device), cov.to(inputs.device)

    def _selection(self, outputs: Sequence[int] | None) -> _Selection:
        key = None if outputs is None else tuple(int(j) for j in outputs)
        sel = self._selections.get(key)
        if sel is None:
            m = self.n_outputs
            if key is not None and (not key or min(key) < 0 or max(key) >= m):
                raise ValueError(
                    f"outputs: expected indices in [0, {m}), at least one, got {list(key)}"
                )
            if len(self._selections) >= 16:
                self._selections.clear()
            sel = self._selections[key] = _Selection(self, key)
        return sel

    def _weighted(self, outputs: Sequence[int] | None, weights: np.ndarray) -> _Selection:
        """The selection of interpolated outputs, checked and cached by its weights."""
        if outputs is not None:
            raise ValueError("give outputs= or weights=, not both")
        a = np.asarray(weights, dtype=np.float64)
        key = ("weights", a.shape, a.tobytes())
        sel = self._selections.get(key)
        if sel is None:  # checked once per set of weights (the likelihood reuses them)
            m = self.n_outputs
            if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] != m:
                raise ValueError(f"weights: expected shape (k, {m}) with k >= 1, got {a.shape}")
            bad = not np.isfinite(a).all() or (a < 0).any()
            if bad or np.abs(a.sum(axis=1) - 1).max() > 1e-9:
                raise ValueError("weights: expected nonnegative rows summing to one")
            if len(self._selections) >= 16:
                self._selections.clear()
            sel = self._selections[key] = _Selection(self, None, a)
        return sel

    def loo(self) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form leave-one-out of the weights mapped through the basis.

        The basis itself is not recomputed without the held-out run (an approximation);
        the truncation variance is added.

        Returns
        -------
        mean, var : ndarray of shape (n, m)
        """
        self._check_fitted()
        wm, wv = self.gp_.loo()
        mean = self._mu + self._scale * (wm @ self._phi.T)
        var = self._scale**2 * (wv @ (self._phi**2).T + self._trunc)
        return mean, var

    def state_dict(self) -> dict[str, np.ndarray | str | float]:
        """Basis, scaling and the component GP's state (keys ``gp/...``); no pickle."""
        self._check_fitted()
        state: dict[str, np.ndarray | str | float] = {
            "class": "BasisGPEmulator",
            "version": _STATE_VERSION,
            "explained_variance": self.explained_variance,
            "max_components": float(self.max_components or 0),
            "train_inputs": self._train_x.copy(),
            "train_outputs": self._train_y.copy(),
            "output_mean": self._mu.copy(),
            "output_scale": float(self._scale),
            "basis": self._phi.copy(),
            "truncation_var": self._trunc.copy(),
            "explained": self._explained.copy(),
        }
        for k, v in self.gp_.state_dict().items():
            state[f"gp/{k}"] = v
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: str | None = None) -> BasisGPEmulator:
        """Rebuild a fitted basis emulator from :meth:`state_dict` without retraining."""
        if state.get("class") != "BasisGPEmulator":
            raise ValueError(f"state: expected class 'BasisGPEmulator', got {state.get('class')!r}")
        gp = GPEmulator.from_state_dict(
            {k[3:]: v for k, v in state.items() if k.startswith("gp/")}, device=device
        )
        mc = int(state["max_components"])
        em = cls(
            explained_variance=float(state["explained_variance"]),
            max_components=mc or None,
            kernel=gp.kernel,
            mean=gp.mean,
            n_restarts=gp.n_restarts,
            adam_iter=gp.adam_iter,
            lbfgs_iter=gp.lbfgs_iter,
            adam_lr=gp.adam_lr,
            min_nugget=gp.min_nugget,
            priors=gp.priors,
            device=str(gp.device),
            seed=gp.seed,
        )
        em.gp_ = gp
        em._train_x = np.asarray(state["train_inputs"], dtype=np.float64)
        em._train_y = np.asarray(state["train_outputs"], dtype=np.float64)
        em._mu = np.asarray(state["output_mean"], dtype=np.float64)
        em._scale = float(state["output_scale"])
        em._phi = np.asarray(state["basis"], dtype=np.float64)
        em._trunc = np.asarray(state["truncation_var"], dtype=np.float64)
        em._explained = np.asarray(state["explained"], dtype=np.float64)
        em.n_inputs, em.n_outputs = em._train_x.shape[1], em._train_y.shape[1]
        em.n_components = em._phi.shape[1]
        em._reset_selections()
        em._fitted = True
        return em

    def __repr__(self) -> str:
        extra = (
            f", n_components={self.n_components}, n_outputs={self.n_outputs}"
            if self._fitted
            else ""
        )
        return f"BasisGPEmulator(explained_variance={self.explained_variance}{extra})"


class _Selection:
    """The basis rows of some outputs, or their interpolations ``a (k, m)``, on the
    emulator's device."""

    def __init__(
        self, em: BasisGPEmulator, key: tuple[int, ...] | None, a: np.ndarray | None = None
    ):
        dev = em.gp_.device
        rows = slice(None) if key is None else list(key)
        if a is None:
            phi_np, mu_np, trunc_np = em._phi[rows], em._mu[rows], em._trunc[rows]
        else:  # linear interpolation of each basis vector, the mean and t_j
            phi_np, mu_np, trunc_np = a @ em._phi, a @ em._mu, a @ em._trunc
        phi = torch.as_tensor(phi_np, device=dev)  # (k, K)
        self.k = phi.shape[0]
        self.mu = torch.as_tensor(mu_np, device=dev)
        self.phi_t = phi.T
        self.phi2 = phi**2
        self._trunc = torch.as_tensor(trunc_np, device=dev)  # (k,)
        self._eyes: dict[int, torch.Tensor] = {}

    def trunc_eye(self, n: int) -> torch.Tensor:
        """``t_j I_n`` as ``(k, n, n)``."""
        e = self._eyes.get(n)
        if e is None:
            if len(self._eyes) >= 8:
                self._eyes.clear()
            eye = torch.eye(n, dtype=torch.float64, device=self._trunc.device)
            e = self._eyes[n] = self._trunc[:, None, None] * eye
        return e
