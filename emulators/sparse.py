"""Sparse (inducing-point) GP emulator for large run counts: SGPR, Titsias (2009).

An exact GP costs ``O(n³)`` to fit and ``O(n²)`` per predicted point; with thousands of
runs the second dominates a calibration, since every walker predicts at every step. The
sparse GP keeps ``M ≪ n`` inducing inputs ``Z`` and summarizes the runs through the
function values ``u = f(Z)``: ``O(n M²)`` to fit, ``O(M²)`` per predicted point.

Model and notation (standardized outputs, unit-cube inputs, one output): kernel ``k`` with
signal variance ``σ²_f``, nugget ``σ²_n = g σ²_f``, ``K_zz = k(Z, Z) = L_z L_zᵀ``,
``A = L_z⁻¹ K_zx / σ_n``, ``B = I + A Aᵀ``. The hyperparameters (and optionally ``Z``)
maximize Titsias's collapsed variational bound (Titsias 2009, eq. 9)

    log N(y | μ, Q_xx + σ²_n I) − tr(K_xx − Q_xx) / (2 σ²_n),   Q_xx = K_xz K_zz⁻¹ K_zx,

computed by GPyTorch's ``InducingPointKernel`` (the trace term is its added loss term).
The trace term is what makes the approximation honest for emulation: whatever the inducing
points do not capture, the bound moves into ``σ²_n`` instead of pretending to interpolate.
The prediction is Titsias's optimal ``q(u) = N(m_u, Σ_u)`` carried to new inputs
(Titsias 2009, eq. 6; Quiñonero-Candela & Rasmussen 2005 for the algebra):

    mean = μ(X*) + K_*z w,        w = L_z⁻ᵀ B⁻¹ A (y − μ(X)) / σ_n,
    cov  = K_** − K_*z (K_zz⁻¹ − Σ_u) K_z*,   Σ_u = L_z⁻ᵀ B⁻¹ L_z⁻¹.

``K_zz⁻¹ − Σ_u = L_z⁻ᵀ (I − B⁻¹) L_z⁻¹``, and with ``B = U Λ Uᵀ`` (``Λ ≥ 1`` since
``B = I + A Aᵀ``), ``I − B⁻¹ = U (1 − 1/Λ) Uᵀ`` has the real square root
``R = (1 − 1/Λ)^½ Uᵀ L_z⁻¹``: ``cov = K_** − VᵀV`` with ``V = R K_z*``, one GEMM per
output, the same shape of work as the exact GP's ``V = L⁻¹ k(X, X*)`` with ``M`` in place
of ``n``. With ``Z`` = all training inputs this is exactly the exact GP's prediction.

By default the predictive covariance also includes ``σ²_n`` on its diagonal
(``predictive_noise=True``): for a deterministic simulator the fitted ``σ²_n`` is the
sparse approximation's own lack of fit, an error of the emulator the calibration must
carry (300 runs of a 6-input function, ``M = 100``: 95 % intervals covered 0.978 of 1000
held-out runs with it, 0.912 without).

Inducing inputs are chosen among the training inputs by greedy conditional variance (a
pivoted Cholesky of ``K_xx``; Burt, Rasmussen & van der Wilk 2020, §4), first under the
default start's length-scales, then once more under the fitted ones, and the
hyperparameters are refined from there (the alternation of Burt et al. 2020).
"""

from __future__ import annotations

import warnings
from typing import Any

import gpytorch
import numpy as np
import torch

from calib.interfaces import Prediction
from emulators.gp import (
    GPEmulator,
    JitterWarning,
    _BatchGP,
    _Selection,
    _single_thread,
    kernel_matrix,
)

__all__ = ["SparseGPEmulator"]

_STATE_VERSION = "1"
# Jitter of K_zz, relative to σ²_f: none unless its Cholesky fails, then from 1e-12 up
# ×10 to this cap (cond(R_zz + 1e-6 I) ≤ 1 + 1e6 M factorizes in float64 for any M here).
_ZZ_JITTER_CAP = 1e-6
# the greedy selection stops adding points whose conditional variance (relative to σ²_f)
# is below this: such a point adds nothing the others do not already represent, and
# would only make K_zz singular
_SELECT_TOL = 1e-10
# below this n M², fitting runs single-threaded (see SparseGPEmulator._optimize): up to
# n = 40 000 runs at M = 500. Measured 10x faster single-threaded at n M² = 4e7 on a
# loaded 2-core machine; where threads start to pay on an idle many-core one is not
# measured here
_ONE_THREAD_WORK = 1e10


def zz_cholesky(Kzz: torch.Tensor, signal_var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower Cholesky factor of ``K_zz`` per output, with a jitter relative to ``σ²_f``
    only where the plain factorization fails.

    The jitter starts at 1e-12 of the signal variance and grows ×10 up to 1e-6 for the
    failing outputs only (GPyTorch's ``psd_safe_cholesky`` adds one absolute jitter to the
    whole batch, meaningless across signal variances of 1e-3 to 1e6). Training and
    prediction both factor ``K_zz`` here, so they use the same matrix.

    Parameters
    ----------
    Kzz : Tensor of shape (m, M, M)
    signal_var : Tensor of shape (m,)

    Returns
    -------
    L : Tensor of shape (m, M, M)
    jitter : Tensor of shape (m,)
        The jitter used, relative to ``σ²_f`` (0 where none was needed).

    Raises
    ------
    numpy.linalg.LinAlgError
        If an output's ``K_zz`` does not factorize even at the cap (non-finite
        hyperparameters, not rounding).
    """
    L, info = torch.linalg.cholesky_ex(Kzz)
    jit = torch.zeros(Kzz.shape[0], dtype=Kzz.dtype, device=Kzz.device)
    if not bool(info.any()):
        return L, jit
    eye = torch.eye(Kzz.shape[-1], dtype=Kzz.dtype, device=Kzz.device)
    L = L.clone()
    while bool(info.any()):
        bad = torch.nonzero(info).flatten()
        jit[bad] = torch.where(jit[bad] > 0, jit[bad] * 10, 1e-12)
        if float(jit[bad].max()) > _ZZ_JITTER_CAP * (1 + 1e-9):
            raise np.linalg.LinAlgError(
                f"SparseGPEmulator: K_zz of output {int(bad[0])} is not positive definite "
                f"even with a jitter of {_ZZ_JITTER_CAP:g} of its signal variance; its "
                "hyperparameters are not finite (please report it with the data)"
            )
        Kb = Kzz[bad] + (jit[bad] * signal_var[bad])[:, None, None] * eye
        Lb, info_b = torch.linalg.cholesky_ex(Kb)
        L = L.index_put((bad,), Lb)  # out of place: autograd flows through the batch
        info = info.index_put((bad,), info_b)
    return L, jit


class _InducingKernel(gpytorch.kernels.InducingPointKernel):
    """GPyTorch's ``InducingPointKernel`` with ``K_zz`` factored by :func:`zz_cholesky`."""

    @property
    def _inducing_inv_root(self) -> torch.Tensor:
        if not self.training and hasattr(self, "_cached_kernel_inv_root"):
            return self._cached_kernel_inv_root
        Kzz = self._inducing_mat
        L, _ = zz_cholesky(Kzz, self.base_kernel.outputscale.reshape(Kzz.shape[0]))
        eye = torch.eye(L.shape[-1], dtype=L.dtype, device=L.device)
        # K_zz = L Lᵀ: the root R with R Rᵀ = K_zz⁻¹ that GPyTorch uses is L⁻ᵀ
        res = torch.linalg.solve_triangular(L, eye, upper=False).mT
        if not self.training:
            self._cached_kernel_inv_root = res
        return res


class _BatchSGPR(_BatchGP):
    """``m`` independent SGPR models with batch shape ``(m,)``, nugget relative to ``σ²_f``.

    The exact GP's mean, kernel, nugget and priors (:class:`~emulators.gp._BatchGP`), its
    scale kernel then wrapped in the inducing-point kernel.
    """

    def __init__(
        self,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        inducing: torch.Tensor,
        kernel: str,
        mean: str,
        priors: bool,
        min_nugget: float,
        learn_inducing: bool,
    ) -> None:
        super().__init__(train_x, train_y, kernel, mean, priors, min_nugget)
        self.covar_module = _InducingKernel(self.covar_module, inducing, self.likelihood)
        self.covar_module.inducing_points.requires_grad_(bool(learn_inducing))

    @property
    def scale_kernel(self) -> gpytorch.kernels.ScaleKernel:
        return self.covar_module.base_kernel


def greedy_inducing(
    u: torch.Tensor, lengthscale: torch.Tensor, kernel: str, n_inducing: int
) -> torch.Tensor:
    """Indices of ``n_inducing`` training inputs chosen by greedy conditional variance.

    Each step takes the input whose variance given those already chosen is largest (a
    pivoted Cholesky of the correlation matrix; Burt, Rasmussen & van der Wilk 2020,
    §4, who show it near-optimal for the collapsed bound). Once every remaining input's
    conditional variance is below ``1e-10`` (the chosen ones represent the rest), the
    remaining picks follow the order of the inputs' farthest distance to the chosen set in
    the kernel's metric, which keeps ``K_zz`` as well conditioned as it can be.

    Parameters
    ----------
    u : Tensor of shape (n, d)
        Unit-cube training inputs.
    lengthscale : Tensor of shape (m, d)
    kernel : {"matern52", "rbf"}
    n_inducing : int
        ``M ≤ n``.

    Returns
    -------
    Tensor of shape (m, M), int64
    """
    m, n = lengthscale.shape[0], u.shape[0]
    z = u.unsqueeze(0) / lengthscale[:, None, :]  # (m, n, d)
    one = torch.ones(m, dtype=u.dtype, device=u.device)
    var = torch.ones(m, n, dtype=u.dtype, device=u.device)  # conditional variance / σ²_f
    far = torch.ones(m, n, dtype=u.dtype, device=u.device)  # min over chosen of 1 − k
    rows = torch.zeros(m, n_inducing, n, dtype=u.dtype, device=u.device)
    idx = torch.zeros(m, n_inducing, dtype=torch.long, device=u.device)
    ar = torch.arange(m, device=u.device)
    taken = torch.zeros(m, n, dtype=torch.bool, device=u.device)
    for j in range(n_inducing):
        # the pivoted Cholesky while it has variance left, then the farthest input
        live = var.masked_fill(taken, -1.0).amax(-1) > _SELECT_TOL  # (m,)
        score = torch.where(live[:, None], var, far).masked_fill(taken, -1.0)
        i = score.argmax(-1)  # (m,)
        idx[:, j] = i
        taken[ar, i] = True
        k_i = kernel_matrix(z[ar, i].unsqueeze(1), z, kernel, one).squeeze(1)  # (m, n)
        far = torch.minimum(far, 1.0 - k_i)
        # one step of the pivoted Cholesky: e = (k_i − Σ_l e_l[i] e_l) / sqrt(var_i)
        e = k_i - torch.einsum("mj,mjn->mn", rows[ar, :j, i], rows[:, :j])
        piv = var[ar, i].clamp_min(_SELECT_TOL).sqrt()
        e = torch.where(live[:, None], e / piv[:, None], 0.0)
        rows[:, j] = e
        var = var - e**2
    return idx


class _SparseSelection(_Selection):
    """The fitted tensors of some outputs, arranged for :meth:`GPEmulator._predict`: the
    ``M`` inducing inputs in place of the runs, ``w`` in place of ``α``, ``V = R K_z*``."""

    def __init__(self, em: SparseGPEmulator, idx: list[int] | None):
        sl = self._select(em, idx, em._zz)
        self.alpha = em._w[sl].unsqueeze(-2)  # (k, 1, M): mean = μ + K_*z w
        self.R = em._R[sl]  # (k, M, M)
        self.noise = (em._noise[sl] if em.predictive_noise else em._noise[sl] * 0)[:, None, None]

    def project(self, K: torch.Tensor) -> torch.Tensor:
        """``V = R K_z*`` (module docstring): ``cov = K_** − VᵀV``."""
        return self.R @ K


class SparseGPEmulator(GPEmulator):
    """Sparse GP emulator (SGPR, Titsias 2009) for thousands of runs and more.

    The same contract, options and behaviour as :class:`~emulators.GPEmulator` (scaling,
    relative nugget, priors, mean choice, multi-start Adam then L-BFGS, constant outputs,
    ``predict``, ``predict_torch`` with ``outputs=``, ``state_dict``, ``loo``), with the
    exact marginal likelihood replaced by Titsias's collapsed bound on ``M`` inducing
    inputs. Fit ``O(n M²)`` per iteration, prediction ``O(M²)`` per point (the exact GP's
    are ``O(n³)`` and ``O(n²)``). With ``n_inducing ≥ n`` every training input is an
    inducing input and the predictions are the exact GP's.

    Parameters
    ----------
    n_inducing : int
        ``M``, the number of inducing inputs (at most the number of runs). Default 500.
    learn_inducing : bool
        Also optimize the inducing inputs' positions (``M × d`` more parameters per
        output); default False: they stay at training inputs chosen by greedy conditional
        variance, which Burt et al. (2020) show near-optimal.
    predictive_noise : bool
        Add the fitted nugget ``σ²_n`` to the predictive variance (default True): in a
        sparse GP it is the approximation's lack of fit, part of the emulator's error.
    kernel, mean, n_restarts, adam_iter, lbfgs_iter, adam_lr, min_nugget, priors, device, seed
        As :class:`~emulators.GPEmulator`; ``min_nugget`` defaults to 1e-8 here (the
        bound's trace term puts the fitted ratio far above it once ``M < n``).

    Examples
    --------
    >>> em = SparseGPEmulator(n_inducing=300, seed=0).fit(X, Y)   # doctest: +SKIP
    >>> mean, cov = em.predict_torch(Xw)                           # doctest: +SKIP
    """

    _selection_type = _SparseSelection

    def __init__(
        self,
        n_inducing: int = 500,
        learn_inducing: bool = False,
        predictive_noise: bool = True,
        kernel: str = "matern52",
        mean: str = "auto",
        n_restarts: int | None = None,
        adam_iter: int = 60,
        lbfgs_iter: int = 200,
        adam_lr: float = 0.05,
        min_nugget: float = 1e-8,
        priors: bool = True,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        if isinstance(n_inducing, bool) or int(n_inducing) != n_inducing or n_inducing < 1:
            raise ValueError(f"n_inducing: expected an integer >= 1, got {n_inducing!r}")
        super().__init__(
            kernel=kernel,
            mean=mean,
            n_restarts=n_restarts,
            adam_iter=adam_iter,
            lbfgs_iter=lbfgs_iter,
            adam_lr=adam_lr,
            min_nugget=min_nugget,
            priors=priors,
            device=device,
            seed=seed,
        )
        self.n_inducing = int(n_inducing)
        self.learn_inducing = bool(learn_inducing)
        self.predictive_noise = bool(predictive_noise)

    # ------------------------------------------------------------------ fitting
    def fit(
        self, inputs: np.ndarray, outputs: np.ndarray, progress: bool | None = None
    ) -> SparseGPEmulator:
        """Fit on simulator runs; see :meth:`GPEmulator.fit` (the same checks and warnings).

        Returns
        -------
        self
        """
        return super().fit(inputs, outputs, progress)

    def _m_inducing(self) -> int:
        return min(self.n_inducing, self.n_train)

    def _new_model(
        self, tx: torch.Tensor, ty: torch.Tensor, inducing: torch.Tensor | None = None
    ) -> _BatchSGPR:
        """The SGPR model; ``inducing`` (default: a greedy choice under length-scales 0.5)."""
        if inducing is None:
            ls = torch.full((self.n_outputs, self.n_inputs), 0.5, dtype=torch.float64)
            inducing = self._inducing_from(ls.to(self.device))
        return _BatchSGPR(
            tx,
            ty,
            inducing,
            self.kernel,
            self.mean_,
            self.priors,
            self.min_nugget,
            self.learn_inducing,
        )

    def _inducing_from(self, lengthscale: torch.Tensor) -> torch.Tensor:
        """Inducing inputs ``(m, M, d)``: all training inputs, or a greedy choice of ``M``."""
        tx, _ = self._scaled_train()
        u = tx[0]
        M = self._m_inducing()
        if M >= u.shape[0]:
            return u.unsqueeze(0).expand(self.n_outputs, -1, -1).clone()
        with torch.no_grad():
            idx = greedy_inducing(u, lengthscale, self.kernel, M)
        return u[idx]

    def _per_output_loss(self) -> torch.Tensor:
        """Negative collapsed bound plus negative log prior, per output, / n.

        GPyTorch's ``InducingPointKernel`` gives the covariance ``Q_xx + σ²_n I`` as a low
        rank plus diagonal operator and the trace term as its added loss. Its log density
        must go through that operator's Woodbury solve and determinant lemma (``O(n M²)``,
        Cholesky of the ``M × M`` capacitance matrix, exact): the exact GP's settings
        (``log_prob=False``) would densify it into an ``n × n`` Cholesky, 5 s per
        evaluation at n = 1000 instead of 0.1 s.
        """
        with gpytorch.settings.fast_computations(
            covar_root_decomposition=False, log_prob=True, solves=False
        ):
            return super()._per_output_loss()

    def _optimize(self) -> None:
        """Multi-start fit (as the exact GP's), then the inducing inputs chosen again under
        the fitted length-scales and the hyperparameters refined from where they are."""
        # An SGPR iteration is a few (n, M) elementwise passes and n M² products: with the
        # GPyTorch kernels' OpenMP elementwise ops, two threads on a loaded 2-core machine
        # spin-wait more than they compute. Measured at n = 1000, M = 200 (load average
        # 10): 0.38–0.55 s per bound and gradient single-threaded, 5.0–5.4 s with two.
        with _single_thread(self.n_train * self._m_inducing() ** 2 < _ONE_THREAD_WORK):
            self._optimize_twice()

    def _optimize_twice(self) -> None:
        super()._optimize()
        if self._m_inducing() >= self.n_train:
            return  # every run is an inducing input: nothing to choose
        before = {n: p.detach().clone() for n, p in self.model_.named_parameters()}
        with torch.no_grad():
            ls = self.model_.scale_kernel.base_kernel.lengthscale.detach().reshape(
                self.n_outputs, -1
            )
            self.model_.covar_module.inducing_points.copy_(self._inducing_from(ls))
        self.model_.covar_module._clear_cache()
        with self._training_context():
            # L-BFGS only: Adam's first steps would move away from a fitted optimum
            saved, self.adam_iter = self.adam_iter, 0
            try:
                ok, converged = self._run_start()
            finally:
                self.adam_iter = saved
            if not ok:  # keep the first round's fit, with its inducing inputs
                self.model_.covar_module._clear_cache()
                with torch.no_grad():
                    for n, p in self.model_.named_parameters():
                        p.copy_(before[n])
            else:
                self.converged_ = self.converged_ and converged
            with torch.no_grad():
                self.neg_log_posterior_ = self._per_output_loss().detach().cpu().numpy()

    def _finalize(self) -> None:
        """Cache ``w`` and ``R`` of the prediction (module docstring) once."""
        model = self.model_
        model.eval()
        model.covar_module._clear_cache()
        with torch.no_grad():
            m = self.n_outputs
            self._cache_hyperparameters()
            tx, ty = self._scaled_train()
            u = tx[0]
            Z = model.covar_module.inducing_points.detach()  # (m, M, d)
            self._zz = Z / self._ls[:, None, :]
            zt = u.unsqueeze(0) / self._ls[:, None, :]
            Kzz = kernel_matrix(self._zz, self._zz, self.kernel, self._os)
            Kzx = kernel_matrix(self._zz, zt, self.kernel, self._os)  # (m, M, n)
            Lz = self._inducing_cholesky(Kzz)
            g = model.likelihood.noise_covar.ratio.detach().reshape(m)
            self._noise = g * self._os
            sn = self._noise.sqrt()[:, None, None]
            A = torch.linalg.solve_triangular(Lz, Kzx, upper=False) / sn  # (m, M, n)
            eye = torch.eye(A.shape[1], dtype=torch.float64, device=self.device)
            lam, U = torch.linalg.eigh(eye + A @ A.transpose(-1, -2))
            lam = lam.clamp_min(1.0)  # B = I + AAᵀ ≥ I: below 1 is rounding
            Lz_inv = torch.linalg.solve_triangular(Lz, eye.expand_as(Lz), upper=False)
            Ut_Lzinv = U.transpose(-1, -2) @ Lz_inv  # (m, M, M)
            self._R = (1.0 - 1.0 / lam).sqrt().unsqueeze(-1) * Ut_Lzinv
            resid = ty - self._mean_fn(u)  # (m, n)
            # w = L_z⁻ᵀ B⁻¹ A r / σ_n = (Uᵀ L_z⁻¹)ᵀ Λ⁻¹ Uᵀ A r / σ_n
            Ar = (A @ resid.unsqueeze(-1)).squeeze(-1) / sn[..., 0]
            coef = (U.transpose(-1, -2) @ Ar.unsqueeze(-1)).squeeze(-1) / lam
            self._w = (Ut_Lzinv.transpose(-1, -2) @ coef.unsqueeze(-1)).squeeze(-1)  # (m, M)
            # for loo: A and B's eigenpairs
            self._A, self._lam, self._U = A, lam, U
            self._cache_scaling()
        self._fitted = True

    def _inducing_cholesky(self, Kzz: torch.Tensor) -> torch.Tensor:
        """:func:`zz_cholesky`, warning where the jitter it needed is above 1e-10."""
        L, jit = zz_cholesky(Kzz, self._os)
        if float(jit.max()) > 1e-10:
            warnings.warn(
                f"SparseGPEmulator: K_zz of output(s) {torch.nonzero(jit).flatten().tolist()[:10]} "
                f"needed a jitter of up to {float(jit.max()):.0e} of the signal variance to "
                "factorize: inducing inputs nearly coincide at the fitted length-scales; "
                "fewer inducing inputs (n_inducing) avoid it",
                JitterWarning,
                stacklevel=4,
            )
        return L

    # --------------------------------------------------------------- prediction
    def predict(self, inputs: np.ndarray, full_cov: bool = False) -> Prediction:
        """Predictive distribution at new inputs, in original output units.

        Parameters and returns as :meth:`GPEmulator.predict`; computed by the same algebra
        as :meth:`predict_torch` (tested against GPyTorch's own SGPR prediction and, with
        every run an inducing input, against the exact GP), the nugget included where
        ``predictive_noise``.
        """
        self._check_fitted()
        X = self._check_inputs(inputs)
        x = torch.as_tensor(X, dtype=torch.float64, device=self.device)
        sel = self._selection(None)
        with torch.no_grad():
            if full_cov:
                mean, cov = self._predict(x.unsqueeze(0), sel)
                mean, cov = mean[0], cov[0]
                var = torch.diagonal(cov, dim1=-2, dim2=-1).T
                cov = cov.cpu().numpy()
            else:
                # each point its own "walker": only the variances are formed
                chunk = max(1, 2_000_000 // max(1, self.n_outputs * self._R.shape[-1]))
                means, vars_ = [], []
                for s in range(0, X.shape[0], chunk):
                    mu, c = self._predict(x[s : s + chunk].unsqueeze(1), sel)
                    means.append(mu[:, 0])
                    vars_.append(c[:, :, 0, 0])
                mean, var = torch.cat(means), torch.cat(vars_)
                cov = None
        return Prediction(mean=mean.cpu().numpy(), var=var.clamp_min(0.0).cpu().numpy(), cov=cov)

    # ------------------------------------------------------------ leave-one-out
    def loo(self) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form leave-one-out predictions under the sparse model's covariance.

        Rasmussen & Williams (2006) eq. 5.12 with ``K̃ = Q_xx + σ²_n I`` (the covariance
        of the collapsed bound's Gaussian term) in place of ``K``, its inverse by Woodbury:
        ``K̃⁻¹ = (I − Aᵀ B⁻¹ A) / σ²_n``; ``O(n M²)``. The held-out *observation*,
        so the nugget is included.

        Returns
        -------
        mean, var : ndarray of shape (n, m)
        """
        self._check_fitted()
        with torch.no_grad():
            tx, ty = self._scaled_train()
            r = ty - self._mean_fn(tx[0])  # (m, n)
            s2 = self._noise[:, None]
            C = (self._U.transpose(-1, -2) @ self._A) / self._lam.sqrt().unsqueeze(-1)
            diag = (1.0 - C.pow(2).sum(-2)) / s2  # (m, n)
            Ar = (self._A @ r.unsqueeze(-1)).squeeze(-1)
            BinvAr = self._U @ (
                (self._U.transpose(-1, -2) @ Ar.unsqueeze(-1)).squeeze(-1) / self._lam
            ).unsqueeze(-1)
            Kinv_r = (r - (self._A.transpose(-1, -2) @ BinvAr).squeeze(-1)) / s2
            mean = ty - Kinv_r / diag
            var = 1.0 / diag
        return self._to_output_units(mean, var)

    # -------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, np.ndarray | str | float]:
        """Everything needed to rebuild the fitted emulator: :meth:`GPEmulator.state_dict`
        (the inducing inputs among the raw parameters) with the sparse options."""
        state = super().state_dict()
        state["class"] = "SparseGPEmulator"
        state["version"] = _STATE_VERSION
        state["n_inducing"] = float(self.n_inducing)
        state["learn_inducing"] = float(self.learn_inducing)
        state["predictive_noise"] = float(self.predictive_noise)
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: str | None = None) -> SparseGPEmulator:
        """Rebuild a fitted emulator from :meth:`state_dict` without retraining.

        Parameters
        ----------
        state : dict
        device : str, optional
            Override the device (default ``"cpu"``).
        """
        if state.get("class") != "SparseGPEmulator":
            raise ValueError(
                f"state: expected class 'SparseGPEmulator', got {state.get('class')!r}"
            )
        version = str(state.get("version"))
        if version != _STATE_VERSION:
            raise ValueError(
                f"state: expected version '{_STATE_VERSION}', got {version!r}; written by a "
                "newer emulators package"
            )
        em = cls(
            n_inducing=int(state["n_inducing"]),
            learn_inducing=bool(state["learn_inducing"]),
            predictive_noise=bool(state["predictive_noise"]),
            **cls._state_options(state, device),
        )
        inducing = np.asarray(state["param/covar_module.inducing_points"])
        em._restore_model(state, inducing=torch.as_tensor(inducing, device=em.device))
        em.n_failed_starts_ = 0
        em.converged_ = True
        em._check_state_ranges()
        em._finalize()
        return em

    def _check_state_ranges(self) -> None:
        """:meth:`GPEmulator._check_state_ranges`, and finite inducing inputs."""
        super()._check_state_ranges()
        if not bool(torch.isfinite(self.model_.covar_module.inducing_points).all()):
            raise ValueError("state: the inducing inputs hold NaN or inf; the state is damaged")

    def __repr__(self) -> str:
        fitted = f", n_inputs={self.n_inputs}, n_outputs={self.n_outputs}" if self._fitted else ""
        mean = self.mean_ if self._fitted else self.mean
        return (
            f"SparseGPEmulator(n_inducing={self.n_inducing}, kernel={self.kernel!r}, "
            f"mean={mean!r}{fitted})"
        )
