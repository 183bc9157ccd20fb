"""Exact Gaussian-process emulator (GPyTorch), batched over outputs.

The emulator of a simulator ``η(x, θ)`` with ``m`` outputs is ``m`` independent GPs, one
per output, held in one GPyTorch model with batch shape ``(m,)`` so that training and
prediction are single batched linear-algebra calls (no Python loop over outputs).

Notation (Rasmussen & Williams 2006, ch. 2): training inputs ``X`` (scaled to the unit
cube), standardized outputs ``y``, kernel ``k``, nugget ``σ²_n``,
``K = k(X, X) + σ²_n I = L Lᵀ``, ``α = K⁻¹ (y − μ(X))``. The latent predictive
distribution at ``X*`` is (R&W eq. 2.25–2.26)

    mean = μ(X*) + k(X*, X) α,
    cov  = k(X*, X*) − Vᵀ V,   V = L⁻¹ k(X, X*).

``predict`` and ``predict_torch`` return this *latent* distribution (the simulator
output itself): the fitted nugget ``σ²_n`` enters ``K`` only, never the predictive
variance.

The nugget is a ratio of the signal variance, ``σ²_n = g σ²_f`` with ``g ≥ min_nugget``,
so that ``K = σ²_f (R + g I)`` with ``R`` a correlation matrix: ``cond(K) ≤ 1 + n / g``
whatever ``σ²_f`` the fit chooses (an absolute floor does not bound it: smooth or linear
outputs drive ``σ²_f`` to 1e6 and more). This floor is the only jitter. Should the
factorization of the fitted ``K`` still fail, ``g`` is raised ×10 at a time up to
``_NUGGET_CAP`` for the failing outputs only (as GPyTorch's ``psd_safe_cholesky`` does with
an absolute jitter), with a :class:`JitterWarning`; the raised nugget is part of the model
from then on (predictions, leave-one-out, ``state_dict``).
"""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import gpytorch
import numpy as np
import torch
from linear_operator.utils.errors import NanError, NotPSDError
from linear_operator.utils.warnings import NumericalWarning

from calib.interfaces import Prediction
from calib.kernels import input_factor, kernel_from_scaled_sq

__all__ = ["GPEmulator", "ConvergenceWarning", "JitterWarning", "resolve_device"]

_KERNELS = ("matern52", "rbf")
_MEANS = ("auto", "constant", "linear")
# mean="auto" takes a linear mean when a least-squares plane reproduces every output to
# this fraction of its sd: the output is linear up to rounding, and a constant-mean GP
# would have to mimic the plane with a signal variance of 1e6 and more.
_LINEAR_RTOL = 1e-6
# "1": the nugget stored as a noise variance (standardized units); "2": as a ratio g of
# the signal variance. from_state_dict reads both.
_STATE_VERSION = "2"
# The largest nugget ratio the jitter escalation goes to. At g = 1e-4, cond(R + g I) is at
# most 1 + 1e4 n, which factorizes in float64 for any correlation matrix R with n far
# beyond what an exact GP can hold; a failure there means non-finite hyperparameters, not
# rounding. A nugget this large also smooths the fit visibly, so the escalation stops.
_NUGGET_CAP = 1e-4


class ConvergenceWarning(UserWarning):
    """Hyperparameter optimization stopped before its convergence criterion was met."""


class JitterWarning(UserWarning):
    """The nugget of some outputs was raised above its fitted value to factorize ``K``."""


class _NonFinite(RuntimeError):
    """An optimizer step produced a non-finite loss, gradient or parameter."""


def resolve_device(device: str | torch.device) -> torch.device:
    """Return the torch device for ``device``, failing clearly when CUDA is absent.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``, ``"cuda"`` or ``"cuda:<index>"``.

    Raises
    ------
    ValueError
        If ``device`` is neither a CPU nor a CUDA device.
    RuntimeError
        If a CUDA device is asked for and CUDA is not available.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={str(device)!r} was asked for but CUDA is not available "
            f"(torch {torch.__version__}); use device='cpu'"
        )
    return dev


def _as_float(a: Any, name: str) -> np.ndarray:
    """``a`` as a float64 array; a ValueError naming the first entry that is not a number."""
    if np.iscomplexobj(a):
        raise ValueError(f"{name}: expected real numbers, got complex dtype {np.asarray(a).dtype}")
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected numbers, got {_first_non_number(a, exc)}") from None


def _first_non_number(a: Any, exc: Exception) -> str:
    """Describe the first entry of ``a`` that float() rejects (a string in a column, say)."""
    columns = getattr(a, "columns", None)  # a pandas DataFrame: name the column too
    try:
        obj = np.asarray(a, dtype=object)
    except ValueError:
        return f"{type(a).__name__} that is not rectangular ({exc})"
    for idx, v in np.ndenumerate(obj):
        try:
            float(v)
        except (TypeError, ValueError):
            where = f"row {idx[0]}" if obj.ndim >= 1 else "the value"
            if obj.ndim == 2:
                col = idx[1]
                label = f" ({columns[col]!r})" if columns is not None else ""
                where += f", column {col}{label}"
            return f"{v!r} ({type(v).__name__}) at {where}"
    return f"{type(a).__name__} that numpy cannot convert to float64 ({exc})"


def _as_2d_float(a: Any, name: str) -> np.ndarray:
    arr = _as_float(a, name)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n, d), got shape {arr.shape}")
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(
            f"{name}: expected finite values, got {arr[i, j]} at row {i}, column {j} "
            f"({int(bad.sum())} non-finite entries in all)"
        )


def validate_training_data(
    inputs: Any, outputs: Any, min_runs_extra: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Check and tidy training data; shared by both emulators. Cheap: runs before any fit.

    Duplicated input rows are merged (their outputs averaged) with a warning: an exact GP
    conditioned twice on one input is singular up to the nugget, and for a deterministic
    simulator the duplicates carry no information. Input columns that do not vary (an
    input held fixed in the design) are allowed: the emulators ignore them.

    Parameters
    ----------
    inputs : array_like of shape (n, d)
    outputs : array_like of shape (n, m) or (n,)
    min_runs_extra : int
        The fit needs at least ``d' + min_runs_extra`` distinct runs, ``d'`` the number of
        input columns that vary.

    Returns
    -------
    inputs : ndarray of shape (n', d)
    outputs : ndarray of shape (n', m)

    Raises
    ------
    ValueError
        Entries that are not numbers, wrong or mismatched shapes, NaN or inf, a single
        distinct run (one run, or every row the same point), or too few distinct runs;
        the message names the argument, what was expected and what was given.
    """
    X = _as_2d_float(inputs, "inputs")
    Y = _as_float(outputs, "outputs")
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise ValueError(f"outputs: expected shape (n, m) or (n,), got shape {Y.shape}")
    if Y.shape[0] != X.shape[0]:
        raise ValueError(
            f"outputs: expected {X.shape[0]} rows (one per row of inputs), got {Y.shape[0]}"
        )
    if X.shape[1] == 0 or Y.shape[1] == 0:
        raise ValueError(
            f"inputs/outputs: expected at least one column each, got shapes {X.shape}, {Y.shape}"
        )
    _check_finite(X, "inputs")
    _check_finite(Y, "outputs")
    n_rows, d = X.shape
    if n_rows == 0:
        raise ValueError("inputs: expected simulator runs, got 0 rows")
    uniq, inverse, counts = np.unique(X, axis=0, return_inverse=True, return_counts=True)
    if uniq.shape[0] == 1:
        given = "1 run" if n_rows == 1 else f"{n_rows} runs that are all the same point"
        raise ValueError(
            f"inputs: expected runs at distinct design points (at least {d + min_runs_extra} "
            f"for {d} inputs), got {given}, {X[0].tolist()}; run the simulator over a "
            "space-filling design of the inputs' ranges (e.g. a Latin hypercube, about 10 "
            "runs per input)"
        )
    if uniq.shape[0] < n_rows:
        inverse = inverse.reshape(-1)
        n_dup = X.shape[0] - uniq.shape[0]
        warnings.warn(
            f"inputs: {n_dup} duplicated row(s) merged; the outputs of identical inputs "
            "were averaged",
            UserWarning,
            stacklevel=3,
        )
        Ym = np.zeros((uniq.shape[0], Y.shape[1]))
        np.add.at(Ym, inverse, Y)
        Y = Ym / counts[:, None]
        # keep the first-seen order of the rows
        first = np.full(uniq.shape[0], X.shape[0])
        np.minimum.at(first, inverse, np.arange(X.shape[0]))
        order = np.argsort(first)
        X, Y = uniq[order], Y[order]
    n = X.shape[0]
    d_var = int(np.sum(X.max(axis=0) > X.min(axis=0)))
    if n < d_var + min_runs_extra:
        dims = f"{d} input dimensions" if d_var == d else f"{d_var} varying input dimensions"
        raise ValueError(
            f"inputs: expected at least {d_var + min_runs_extra} distinct runs for {dims}, "
            f"got {n}; run the simulator at more design points (about 10 per input)"
        )
    return X, Y


# Default prior boxes (lower, upper, tail sd in log units) for unit-cube inputs and
# standardized outputs. They are flat in the log of each hyperparameter over every value
# a fit can reasonably need and only keep the optimizer out of degenerate corners:
# length-scales far below any design spacing, signal variances far beyond the (unit)
# output variance, a nugget above the signal variance (the nugget box is on the ratio
# σ²_n / σ²_f). They are deliberately this weak: on the borehole data
# (tests/emulators/test_borehole.py) any prior that pulls length-scales towards O(1),
# e.g. log-normal with sd 3, raises the test RMSE from 0.69 to 0.85, because the inputs
# with tiny effects need length-scales of 1e4 and more.
_LS_BOX = (1e-2, 1e5, 1.0)
_OS_BOX = (1e-3, 1e6, 1.0)
_NOISE_BOX = (1e-12, 1.0, 1.0)


class LogBoxPrior(gpytorch.priors.Prior):
    """Smoothed uniform prior on ``log x``: flat on ``[log lower, log upper]``.

    Outside the box the log-density falls as a Gaussian of sd ``tail_sd`` (log units) in
    the distance to it, so the prior is proper and differentiable. The density is on
    ``log x`` (the scale the optimizer effectively moves on), so it adds no ``-log x``
    pull towards zero, unlike a density on ``x`` such as GPyTorch's log-normal prior.
    Elementwise: no reduction over trailing axes.

    Parameters
    ----------
    lower, upper : float
        The box, ``0 < lower < upper``.
    tail_sd : float
        Sd of the Gaussian tails, in log units.
    """

    arg_constraints: dict = {}
    support = torch.distributions.constraints.positive

    def __init__(self, lower: float, upper: float, tail_sd: float = 1.0) -> None:
        if not 0 < lower < upper:
            raise ValueError(f"lower, upper: expected 0 < lower < upper, got {lower}, {upper}")
        super().__init__(validate_args=False)
        self.log_lower = math.log(lower)
        self.log_upper = math.log(upper)
        self.tail_sd = float(tail_sd)
        self._log_norm = math.log(
            self.log_upper - self.log_lower + math.sqrt(2 * math.pi) * self.tail_sd
        )

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        lx = torch.log(x)
        dist = (self.log_lower - lx).clamp_min(0.0) + (lx - self.log_upper).clamp_min(0.0)
        return -0.5 * (dist / self.tail_sd) ** 2 - self._log_norm

    def __repr__(self) -> str:
        return f"LogBoxPrior({math.exp(self.log_lower):g}, {math.exp(self.log_upper):g})"


class _NuggetRatioNoise(gpytorch.likelihoods.noise_models.HomoskedasticNoise):
    """Homoskedastic noise ``σ²_n = g σ²_f``: the nugget as a ratio ``g`` of the signal variance.

    The raw parameter (GPyTorch's ``raw_noise``) holds ``g``, constrained to
    ``g ≥ min_ratio``; ``noise`` is ``g σ²_f`` and enters the training covariance only, as
    GPyTorch's own homoskedastic noise does.

    Parameters
    ----------
    signal_variance : callable
        Returns ``σ²_f`` with shape ``(m, 1)``. A callable rather than the kernel module
        itself, so that the kernel's parameters are not registered a second time here.
    min_ratio : float
    batch_shape : torch.Size
    """

    def __init__(self, signal_variance, min_ratio: float, batch_shape: torch.Size) -> None:
        super().__init__(
            noise_constraint=gpytorch.constraints.GreaterThan(min_ratio), batch_shape=batch_shape
        )
        self._signal_variance = signal_variance

    @property
    def ratio(self) -> torch.Tensor:
        """The nugget ratio ``g``, shape ``(m, 1)``."""
        return self.raw_noise_constraint.transform(self.raw_noise)

    @ratio.setter
    def ratio(self, value: torch.Tensor) -> None:
        self._set_noise(value)

    @property
    def noise(self) -> torch.Tensor:
        return self.ratio * self._signal_variance()


class _BatchGP(gpytorch.models.ExactGP):
    """``m`` independent exact GPs with batch shape ``(m,)``, nugget relative to ``σ²_f``.

    :class:`emulators.sparse._BatchSGPR` builds on it: the same mean, kernel, nugget and
    priors, with ``covar_module`` wrapped afterwards (hence :attr:`scale_kernel`).
    """

    def __init__(
        self, train_x, train_y, kernel: str, mean: str, priors: bool, min_nugget: float
    ) -> None:
        m, _, d = train_x.shape
        batch = torch.Size([m])
        super().__init__(
            train_x, train_y, gpytorch.likelihoods.GaussianLikelihood(batch_shape=batch)
        )
        if mean == "constant":
            self.mean_module = gpytorch.means.ConstantMean(batch_shape=batch)
        else:
            self.mean_module = gpytorch.means.LinearMean(d, batch_shape=batch)
        ls_prior = LogBoxPrior(*_LS_BOX) if priors else None
        if kernel == "matern52":
            base = gpytorch.kernels.MaternKernel(
                nu=2.5, ard_num_dims=d, batch_shape=batch, lengthscale_prior=ls_prior
            )
        else:
            base = gpytorch.kernels.RBFKernel(
                ard_num_dims=d, batch_shape=batch, lengthscale_prior=ls_prior
            )
        self.covar_module = gpytorch.kernels.ScaleKernel(base, batch_shape=batch)
        likelihood = self.likelihood
        # through scale_kernel, not covar_module: a subclass may wrap the scale kernel
        likelihood.noise_covar = _NuggetRatioNoise(
            lambda: self.scale_kernel.outputscale.unsqueeze(-1), min_nugget, batch
        )
        if priors:
            # the closure keeps a trailing axis so the prior stays per output
            self.covar_module.register_prior(
                "outputscale_prior",
                LogBoxPrior(*_OS_BOX),
                lambda mod: mod.outputscale.unsqueeze(-1),
            )
            likelihood.register_prior(
                "noise_prior", LogBoxPrior(*_NOISE_BOX), lambda mod: mod.noise_covar.ratio
            )

    @property
    def scale_kernel(self) -> gpytorch.kernels.ScaleKernel:
        """The ``ScaleKernel`` holding ``σ²_f`` and, as its base kernel, the length-scales."""
        return self.covar_module

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


def _gp_settings():
    """GPyTorch settings for exact float64 linear algebra: Cholesky always, no CG/Lanczos."""
    return _Stack(
        gpytorch.settings.max_cholesky_size(10**9),
        gpytorch.settings.fast_computations(
            covar_root_decomposition=False, log_prob=False, solves=False
        ),
        gpytorch.settings.fast_pred_var(False),
        gpytorch.settings.skip_posterior_variances(False),
        gpytorch.settings.debug(False),
    )


class _flush_denormals:
    """Flush subnormal floats to zero while training.

    Kernel values such as ``exp(-√5 r)`` for far-apart points under short trial
    length-scales underflow to subnormal numbers, whose arithmetic is 10-100x slower on
    x86 CPUs; in the backward pass this made whole fits 10x slower. Zero is the right
    value for them. torch has no getter for the flag: it is restored to torch's default
    (off).
    """

    def __enter__(self):
        torch.set_flush_denormal(True)

    def __exit__(self, *exc):
        torch.set_flush_denormal(False)
        return False


class _single_thread:
    """Run single-threaded when ``on`` (the thread count is restored after)."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def __enter__(self):
        self.saved = torch.get_num_threads()
        if self.on:
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)
        return False


def _threads_for(n: int) -> _single_thread:
    """Train single-threaded when each output's matrix is small (``n < 500``).

    For batches of small Cholesky factorizations the OpenMP synchronization costs more
    than the work: on a loaded 2-core machine, spin-waiting worker threads made a 200-run
    fit 20x slower (36 s against 1.9 s single-threaded), and a 200-run, 50-output fit 4x
    slower. From n = 1000 two threads win (5.9 s against 9.4 s). The thread count is
    restored after.
    """
    return _single_thread(n < 500)


class _ignore_numerical_warnings:
    """``warnings.catch_warnings()`` with GPyTorch's ``NumericalWarning`` ignored inside."""

    def __enter__(self):
        self.ctx = warnings.catch_warnings()
        self.ctx.__enter__()
        warnings.filterwarnings("ignore", category=NumericalWarning)

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc)


class _Stack:
    def __init__(self, *ctx):
        self.ctx = ctx

    def __enter__(self):
        for c in self.ctx:
            c.__enter__()

    def __exit__(self, *exc):
        for c in reversed(self.ctx):
            c.__exit__(*exc)
        return False


def training_cholesky(
    K: torch.Tensor, signal_var: torch.Tensor, ratio: torch.Tensor, cap: float = _NUGGET_CAP
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cholesky factor of ``K + g σ²_f I`` per output, raising ``g`` ×10 where it fails.

    The jitter is relative to each output's signal variance, like the nugget it adds to,
    and only the outputs whose factorization fails get more (GPyTorch's
    ``psd_safe_cholesky`` adds one absolute jitter, which is meaningless across signal
    variances from 1e-3 to 1e6).

    Parameters
    ----------
    K : Tensor of shape (m, n, n)
        Noise-free training covariance ``σ²_f R`` of each output.
    signal_var : Tensor of shape (m,)
        ``σ²_f``.
    ratio : Tensor of shape (m,)
        Fitted nugget ratios ``g``.
    cap : float
        Largest ratio tried.

    Returns
    -------
    L : Tensor of shape (m, n, n)
    ratio : Tensor of shape (m,)
        The ratios used: ``g``, or ``g · 10^k`` where the factorization needed it.

    Raises
    ------
    numpy.linalg.LinAlgError
        If ``K`` has non-finite entries, or an output's factorization still fails at the
        cap (which only non-finite or non-positive-semidefinite ``R`` can cause).
    """
    bad_k = ~torch.isfinite(K).flatten(1).all(-1)
    if bool(bad_k.any()):
        j = int(torch.nonzero(bad_k)[0, 0])
        raise np.linalg.LinAlgError(
            f"GPEmulator: the training covariance of output {j} has non-finite entries "
            f"(signal variance {float(signal_var[j]):.3g}); its hyperparameters are not finite"
        )
    eye = torch.eye(K.shape[-1], dtype=K.dtype, device=K.device)
    ratio = ratio.clone()
    L, info = torch.linalg.cholesky_ex(K + (ratio * signal_var)[:, None, None] * eye)
    while bool(info.any()):
        bad = torch.nonzero(info).flatten()
        ratio[bad] *= 10.0
        over = bad[ratio[bad] > cap * (1 + 1e-9)]
        if over.numel():
            j = int(over[0])
            raise np.linalg.LinAlgError(
                f"GPEmulator: the training covariance of output {j} is not positive definite "
                f"even with the nugget raised to {cap:g} of its signal variance "
                f"({float(signal_var[j]):.3g}): the kernel matrix itself is not positive "
                "semidefinite, which is not rounding (please report it with the data)"
            )
        Kb = K[bad] + (ratio[bad] * signal_var[bad])[:, None, None] * eye
        L[bad], info[bad] = torch.linalg.cholesky_ex(Kb)
    return L, ratio


def kernel_matrix(
    z1: torch.Tensor, z2: torch.Tensor, kernel: str, outputscale: torch.Tensor
) -> torch.Tensor:
    """Stationary kernel between length-scale-divided inputs.

    Parameters
    ----------
    z1 : Tensor of shape (..., m, n1, d)
    z2 : Tensor of shape (..., m, n2, d)
        Inputs already divided by the per-output length-scales.
    kernel : {"matern52", "rbf"}
    outputscale : Tensor of shape (m,)

    Returns
    -------
    Tensor of shape (..., m, n1, n2)
    """
    # ||a - b||² = ||a||² + ||b||² − 2 a·b: one matmul instead of an (n1, n2, d) tensor;
    # clamped at 0 against rounding. The clamp also makes the gradient of sqrt(r²) at
    # r = 0 zero instead of NaN, which is right for both kernels (dk/dr = 0 at r = 0).
    # Written for few passes over the (..., n1, n2) result, the bulk of predict_torch's
    # cost beyond the solve: the kernel's constant (√5 for Matérn, √½ for RBF) scales the
    # small inputs, not the result; −2 a·b, ||a||² and ||b||² are added in place to the
    # fresh matmul output (autograd needs none of the overwritten values); the signal
    # variance enters the exponent as its log, so it costs no extra multiplication. The
    # kernel's formula is calib.kernels's, shared with δ.
    c = input_factor(kernel)
    a, b = z1 * c, z2 * c
    r2 = (a * -2.0) @ b.transpose(-1, -2)
    r2 = r2.add_(a.pow(2).sum(-1, keepdim=True)).add_(b.pow(2).sum(-1).unsqueeze(-2))
    return kernel_from_scaled_sq(kernel, r2, torch.log(outputscale)[..., None, None], True)


class _Gram(torch.autograd.Function):
    """``VᵀV`` per batch, with the backward pass ``V (G + Gᵀ)`` as one batched product."""

    @staticmethod
    def forward(ctx, V: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(V)
        return V.transpose(-1, -2) @ V

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (V,) = ctx.saved_tensors
        return V @ (grad + grad.transpose(-1, -2))


class _Selection:
    """The fitted tensors of some outputs, arranged for :meth:`GPEmulator._predict`.

    Built once per selection of outputs (the likelihood asks for the same observed outputs
    at every call), so that a prediction neither indexes the fitted state nor recomputes
    the training side of the kernel (``a = z·c``, ``−2a``, ``‖a‖²`` of kernel_matrix).
    """

    #: added to the predictive covariance's diagonal (k, 1, 1); None: nothing (latent)
    noise: torch.Tensor | None = None

    def __init__(self, em: GPEmulator, idx: list[int] | None):
        sl = self._select(em, idx, em._zt)
        self.alpha = em._alpha[sl].unsqueeze(-2)  # (k, 1, N)
        self.L = em._L[sl]
        small = em._L.shape[-1] < 500  # where _finalize cached L⁻¹ (see _predict)
        self.linv = em._Linv[sl] if small else None

    def _select(self, em: GPEmulator, idx: list[int] | None, points: torch.Tensor) -> Any:
        """Set what every emulator's selection holds; ``points (m, N, d)`` are the inputs
        ``k(·, X*)`` is taken against, divided by the length-scales. Returns the index."""
        sl = slice(None) if idx is None else torch.as_tensor(idx, device=em.device)
        c = input_factor(em.kernel)
        self.k = em.n_outputs if idx is None else len(idx)
        a = points[sl] * c  # (k, N, d): the points as kernel_matrix scales them
        self.a_m2 = a * -2.0
        self.a_sq = a.pow(2).sum(-1, keepdim=True)  # (k, N, 1)
        self.ls = em._ls[sl][:, None, :]  # (k, 1, d)
        self.log_os = torch.log(em._os[sl])[:, None, None]  # (k, 1, 1)
        self.log_os_w = torch.log(em._os[sl][:, None])[..., None, None]  # (k, 1, 1, 1)
        self.mc = em._mc[sl][:, None]  # (k, 1)
        self.mw = None if em.mean_ == "constant" else em._mw[sl]  # (k, d)
        self.ymean = em._t_ymean[sl][:, None]
        self.yscale = em._t_yscale[sl][:, None]
        self.yvar = (em._t_yscale[sl] ** 2)[:, None, None]
        return sl

    def project(self, K: torch.Tensor) -> torch.Tensor:
        """``V = L⁻¹ K`` of ``K = k(X, X*) (k, N, W·n)``: ``cov = k(X*, X*) − VᵀV``."""
        # below ~500 runs the GEMM with the cached L⁻¹ beats the triangular solve
        # (3.0 vs 4.3 ms at N = 200); above, its doubled flops lose (73 vs 56 ms at 1000)
        if self.linv is not None:
            return self.linv @ K
        return torch.linalg.solve_triangular(self.L, K, upper=False)


class GPEmulator:
    """Exact GP emulator: one independent GP per output, batched in one GPyTorch model.

    Inputs are scaled to the unit cube and each output is standardized; both are undone
    exactly in predictions (means shifted and scaled, variances scaled by the output
    variance). Hyperparameters (ARD length-scales, signal variance, nugget, mean
    coefficients) are maximum a posteriori under weakly informative priors, found by Adam
    then L-BFGS from ``n_restarts`` starts; for each output the start with the best
    penalized marginal likelihood is kept.

    Parameters
    ----------
    kernel : {"matern52", "rbf"}
        ARD Matérn-5/2 (default) or squared-exponential kernel.
    mean : {"auto", "constant", "linear"}
        Prior mean function of each GP. ``"auto"`` (default): linear if a least-squares
        plane in the inputs reproduces every output to 1e-6 of its sd (an exactly linear
        simulator, which a GP with a constant mean only mimics with a huge signal
        variance), otherwise constant. The choice is ``mean_`` after fitting.
    n_restarts : int, optional
        Optimizer starts. The first start is a fixed default; the others are random.
        ``None`` (default): ``max(1, min(4, 1000 // n))`` for ``n`` runs, i.e. 4 up to
        250 runs, 1 from 1000 runs (a 1000-run fit is ~15 s per start on 2 cores).
    adam_iter, lbfgs_iter : int
        Iterations of Adam (learning rate ``adam_lr``) and then of L-BFGS per start.
    min_nugget : float
        Lower bound of the nugget *ratio* ``g = σ²_n / σ²_f`` (nugget over signal
        variance), which bounds ``cond(K)`` by ``1 + n / min_nugget``; this is the only
        jitter, explicit and stored with the emulator. Smooth outputs press the fitted
        ``g`` against this bound, and their accuracy improves as it is lowered (a 300-run,
        6-input quadratic: normalized RMSE 9.7e-4 at 1e-8, 4.0e-4 at 1e-10, 1.6e-4 at
        1e-12); the default 1e-10 is the ratio the earlier absolute floor of 1e-8 gave
        at a typical signal variance of 100. If the fitted ``K`` still does not factorize,
        the failing outputs' ``g`` is raised ×10 at a time up to 1e-4, with a
        :class:`JitterWarning`.
    priors : bool
        Put the default priors on the hyperparameters (:class:`LogBoxPrior`, flat in the
        log over length-scales ``[1e-2, 1e5]``, signal variance ``[1e-3, 1e6]`` and nugget
        ratio ``[1e-12, 1]``, standardized units); ``False`` gives plain maximum likelihood.
    device : str
        ``"cpu"`` or ``"cuda"``; ``"cuda"`` raises if CUDA is not available.
    seed : int
        Seed of the random starts.

    Attributes
    ----------
    n_inputs, n_outputs : int
        Dimensions of the fitted inputs and outputs.
    mean_ : {"constant", "linear"}
        The mean function fitted (``mean``, or what ``"auto"`` chose).
    n_mean_params : int
        Coefficients of the mean function (1, or 1 + the number of varying inputs for a
        linear mean); the ``q`` of Bastos & O'Hagan's (2009) reference distribution.

    Examples
    --------
    >>> em = GPEmulator(seed=0).fit(X, Y)          # doctest: +SKIP
    >>> pred = em.predict(Xnew)                     # doctest: +SKIP
    >>> pred.mean.shape, pred.var.shape             # doctest: +SKIP
    ((k, m), (k, m))
    """

    def __init__(
        self,
        kernel: str = "matern52",
        mean: str = "auto",
        n_restarts: int | None = None,
        adam_iter: int = 60,
        lbfgs_iter: int = 200,
        adam_lr: float = 0.05,
        min_nugget: float = 1e-10,
        priors: bool = True,
        device: str = "cpu",
        seed: int = 0,
    ) -> None:
        if kernel not in _KERNELS:
            raise ValueError(f"kernel: expected one of {_KERNELS}, got {kernel!r}")
        if mean not in _MEANS:
            raise ValueError(f"mean: expected one of {_MEANS}, got {mean!r}")
        if n_restarts is not None and int(n_restarts) < 1:
            raise ValueError(f"n_restarts: expected None or an integer >= 1, got {n_restarts!r}")
        if not (min_nugget > 0 and math.isfinite(min_nugget)):
            raise ValueError(f"min_nugget: expected a positive float, got {min_nugget!r}")
        self.kernel = kernel
        self.mean = mean
        self.n_restarts = None if n_restarts is None else int(n_restarts)
        self.adam_iter = int(adam_iter)
        self.lbfgs_iter = int(lbfgs_iter)
        self.adam_lr = float(adam_lr)
        self.min_nugget = float(min_nugget)
        self.priors = bool(priors)
        self.device = resolve_device(device)
        self.seed = int(seed)
        self._fitted = False

    # ------------------------------------------------------------------ fitting
    @property
    def n_mean_params(self) -> int:
        """Coefficients of the mean function: 1 (constant) or 1 + varying inputs (linear)."""
        return 1 if self.mean_ == "constant" else 1 + int(np.sum(self._upper > self._lower))

    @property
    def n_train(self) -> int:
        """Number of distinct training runs (after merging duplicates)."""
        return int(self._train_x.shape[0])

    @property
    def training_inputs(self) -> np.ndarray:
        """Training inputs ``(n_train, n_inputs)`` after merging duplicates."""
        return self._train_x.copy()

    @property
    def training_outputs(self) -> np.ndarray:
        """Training outputs ``(n_train, n_outputs)`` after merging duplicates."""
        return self._train_y.copy()

    def fit(
        self, inputs: np.ndarray, outputs: np.ndarray, progress: bool | None = None
    ) -> GPEmulator:
        """Fit the emulator on simulator runs.

        Parameters
        ----------
        inputs : array_like of shape (n, p + q)
            Control inputs then calibration parameters.
        outputs : array_like of shape (n, m) or (n,)
        progress : bool, optional
            A progress bar over the optimizer's starts (tqdm, on stderr); default: when
            stderr is a terminal.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            Entries that are not numbers, wrong shapes, non-finite values, or fewer than
            ``d + 2`` (constant mean) / ``d + 3`` (linear mean) distinct runs, ``d`` the
            number of input columns that vary (a single run and an all-duplicate design
            included). Checked before any fitting.

        Warns
        -----
        UserWarning
            Duplicated input rows (merged, outputs averaged); input columns that do not
            vary (ignored: predictions do not depend on them); output columns that do not
            vary (predicted as that constant, with zero variance; no GP is fitted to them).
        ConvergenceWarning
            L-BFGS stopped at its iteration limit for some output, or every start failed.
        JitterWarning
            The fitted training covariance of some output needed a larger nugget to
            factorize (see ``min_nugget``).
        """
        X, Y = validate_training_data(inputs, outputs, 3 if self.mean == "linear" else 2)
        lower, upper = X.min(axis=0), X.max(axis=0)
        fixed = np.flatnonzero(upper == lower)
        if fixed.size:
            warnings.warn(
                f"inputs: column(s) {fixed.tolist()} do not vary in the design (values "
                f"{X[0, fixed].tolist()}); the emulator ignores them, so its predictions "
                "are those at these values whatever is asked",
                UserWarning,
                stacklevel=2,
            )
        mean, sd = Y.mean(axis=0), Y.std(axis=0)
        # variation at the level of rounding counts as none: standardizing it would fit noise
        const = sd <= 4 * np.finfo(float).eps * np.abs(mean)
        if const.any():
            warnings.warn(
                f"outputs: column(s) {np.flatnonzero(const).tolist()} do not vary (value(s) "
                f"{Y[0, const].tolist()[:5]}); they are predicted as that constant, with zero "
                "variance, and no GP is fitted to them",
                UserWarning,
                stacklevel=2,
            )
        self.n_inputs = X.shape[1]
        self.n_outputs = Y.shape[1]
        self._lower, self._upper = lower, upper
        self._y_mean = np.where(const, Y[0], mean)
        # scale 0 maps every prediction of a constant output to its value, variance 0
        self._y_scale = np.where(const, 0.0, sd)
        self._train_x = X
        self._train_y = Y
        self.mean_ = self._choose_mean()
        self._build_model()
        self._progress = sys.stderr.isatty() if progress is None else bool(progress)
        self._optimize()
        self._finalize()
        return self

    def _choose_mean(self) -> str:
        """Resolve ``mean="auto"``: linear if a plane reproduces every varying output."""
        if self.mean != "auto":
            return self.mean
        tx, ty = self._scaled_train()
        u, z = tx[0].cpu().numpy(), ty.cpu().numpy().T  # (n, d), (n, m), outputs sd 1
        varying = self._y_scale > 0
        if not varying.any() or len(u) < int(np.sum(np.ptp(u, axis=0) > 0)) + 3:
            return "constant"
        A = np.column_stack([np.ones(len(u)), u])
        resid = z - A @ np.linalg.lstsq(A, z, rcond=None)[0]
        rms = np.sqrt(np.mean(resid[:, varying] ** 2, axis=0))
        return "linear" if float(rms.max()) <= _LINEAR_RTOL else "constant"

    def _input_span(self) -> np.ndarray:
        """Scale of the unit-cube map; inf for an input fixed in the design, which maps to 0."""
        span = self._upper - self._lower
        return np.where(span > 0, span, np.inf)

    def _scaled_train(self) -> tuple[torch.Tensor, torch.Tensor]:
        u = (self._train_x - self._lower) / self._input_span()
        # a constant output (scale 0) is all zeros, not 0/0
        z = (self._train_y - self._y_mean) / np.where(self._y_scale > 0, self._y_scale, np.inf)
        tx = torch.as_tensor(u, dtype=torch.float64, device=self.device)
        ty = torch.as_tensor(z.T.copy(), dtype=torch.float64, device=self.device)
        m = self.n_outputs
        return tx.unsqueeze(0).expand(m, *tx.shape), ty

    def _build_model(self, **kwargs: Any) -> None:
        """``model_`` (:meth:`_new_model` with ``kwargs``) in float64 on the device."""
        tx, ty = self._scaled_train()
        self.model_ = self._new_model(tx, ty, **kwargs)
        self.model_.double().to(self.device)
        # outputs that vary: a constant output's loss is left out, so its GP stays at the
        # start values (on all-zero data the likelihood would drive σ²_f towards 0)
        self._fit_weight = torch.as_tensor(
            (self._y_scale > 0).astype(np.float64), device=self.device
        )

    def _new_model(self, tx: torch.Tensor, ty: torch.Tensor) -> gpytorch.models.ExactGP:
        """The GPyTorch model on scaled training data ``tx (m, n, d)``, ``ty (m, n)``."""
        return _BatchGP(tx, ty, self.kernel, self.mean_, self.priors, self.min_nugget)

    def _per_output_loss(self) -> torch.Tensor:
        """Negative log marginal likelihood plus negative log prior, per output, / n."""
        model = self.model_
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
        out = model(*model.train_inputs)
        return -mll(out, model.train_targets)

    def _draw_start(self, rng: np.random.Generator, start: int) -> None:
        """Set the hyperparameters of start ``start`` (0: a fixed default, else random)."""
        m, d = self.n_outputs, self.n_inputs
        if start == 0:
            ls = np.full((m, d), 0.5)
            os_ = np.ones(m)
            nug = np.full(m, 1e-4)
        else:
            ls = np.exp(rng.uniform(math.log(0.1), math.log(3.0), size=(m, d)))
            os_ = np.exp(rng.uniform(math.log(0.3), math.log(3.0), size=m))
            nug = np.exp(rng.uniform(math.log(1e-6), math.log(1e-2), size=m))
        model = self.model_
        t = lambda a: torch.as_tensor(a, dtype=torch.float64, device=self.device)  # noqa: E731
        model.scale_kernel.base_kernel.lengthscale = t(ls[:, None, :])
        model.scale_kernel.outputscale = t(os_)
        model.likelihood.noise_covar.ratio = t(np.maximum(nug, 2 * self.min_nugget)[:, None])
        with torch.no_grad():
            if self.mean_ == "constant":
                model.mean_module.constant.zero_()
            else:
                model.mean_module.weights.zero_()
                model.mean_module.bias.zero_()

    def _run_start(self) -> tuple[bool, bool]:
        """Optimize from the current hyperparameters.

        Returns ``(ok, converged)``. On a non-finite loss, gradient or parameter, or a
        failed Cholesky, the hyperparameters are reset to the last finite iterate and
        ``ok`` is False.
        """
        model = self.model_
        params = [p for p in model.parameters() if p.requires_grad]

        def snapshot():
            return [p.detach().clone() for p in params]

        def restore(snap):
            with torch.no_grad():
                for p, s in zip(params, snap):
                    p.copy_(s)

        def loss_and_grad() -> torch.Tensor:
            for p in params:
                p.grad = None
            try:
                loss = (self._per_output_loss() * self._fit_weight).sum()
            except (NotPSDError, NanError) as exc:
                raise _NonFinite(str(exc)) from exc
            if not torch.isfinite(loss):
                raise _NonFinite("non-finite loss")
            loss.backward()
            if any(p.grad is not None and not torch.isfinite(p.grad).all() for p in params):
                raise _NonFinite("non-finite gradient")
            return loss

        good = snapshot()
        model.train()
        try:
            adam = torch.optim.Adam(params, lr=self.adam_lr)
            for _ in range(self.adam_iter):
                loss_and_grad()
                good = snapshot()
                adam.step()
                if not all(torch.isfinite(p).all() for p in params):
                    raise _NonFinite("non-finite parameter")
            lbfgs = torch.optim.LBFGS(
                params,
                lr=1.0,
                max_iter=self.lbfgs_iter,
                max_eval=int(self.lbfgs_iter * 1.5),
                tolerance_grad=1e-5,
                tolerance_change=1e-9,
                history_size=20,
                line_search_fn="strong_wolfe",
            )
            last = {"snap": snapshot()}

            def closure():
                loss = loss_and_grad()
                last["snap"] = snapshot()
                return loss

            lbfgs.step(closure)
            if not all(torch.isfinite(p).all() for p in params):
                raise _NonFinite("non-finite parameter")
            state = lbfgs.state[lbfgs._params[0]]
            converged = state.get("n_iter", 0) < self.lbfgs_iter
            if not converged:
                # stopped at the iteration cap: converged only if the gradient is flat
                loss_and_grad()
                gmax = max(float(p.grad.abs().max()) for p in params if p.grad is not None)
                converged = gmax < 1e-3
            return True, converged
        except _NonFinite:
            restore(good)
            return False, False

    def _training_context(self) -> _Stack:
        """Settings of every optimizer run: exact linear algebra, subnormals flushed, the
        thread count for ``n``, and GPyTorch's numerical warnings silenced (it adds an
        absolute jitter where a trial iterate's K does not factorize, and warns each time;
        only the final K matters to the user, and _finalize factors it with a relative
        jitter and its own JitterWarning)."""
        return _Stack(
            _gp_settings(),
            _flush_denormals(),
            _threads_for(self.n_train),
            _ignore_numerical_warnings(),
        )

    def _optimize(self) -> None:
        rng = np.random.default_rng(self.seed)
        n_restarts = self.n_restarts or max(1, min(4, 1000 // self.n_train))
        self.n_restarts_ = n_restarts
        results = []  # (raw state, per-output loss, converged)
        failures = []
        start, max_attempts = 0, 2 * n_restarts + 2
        with self._training_context(), contextlib.ExitStack() as stack:
            bar = None
            if getattr(self, "_progress", False):
                from tqdm.auto import tqdm

                bar = tqdm(total=n_restarts, desc="emulator", unit="start", leave=False)
                stack.callback(bar.close)
            while len(results) < n_restarts and start < max_attempts:
                self._draw_start(rng, start)
                start += 1
                ok, converged = self._run_start()
                try:
                    with torch.no_grad():
                        loss = self._per_output_loss().detach().cpu().numpy()
                except (NotPSDError, NanError):
                    loss = np.full(self.n_outputs, np.inf)
                if not np.all(np.isfinite(loss)):
                    ok = False
                pstate = {n: p.detach().clone() for n, p in self.model_.named_parameters()}
                if ok:
                    results.append((pstate, loss, converged))
                    if bar is not None:
                        bar.update(1)
                else:
                    failures.append((pstate, np.where(np.isfinite(loss), loss, np.inf)))
        self.n_failed_starts_ = len(failures)
        if failures:
            warnings.warn(
                f"GPEmulator.fit: {len(failures)} optimizer start(s) produced a non-finite "
                "loss, gradient or parameter and were discarded",
                ConvergenceWarning,
                stacklevel=3,
            )
        if not results:
            # every start failed: keep the last finite iterate of the best failed start,
            # or, if none had one, the fixed default start without optimization
            usable = [(st, loss, False) for st, loss in failures if np.isfinite(loss).all()]
            if not usable:
                self._draw_start(rng, 0)
                with torch.no_grad(), _gp_settings():
                    try:
                        loss = self._per_output_loss().cpu().numpy()
                    except (NotPSDError, NanError):
                        loss = np.full(self.n_outputs, np.nan)
                if not np.isfinite(loss).all():
                    raise RuntimeError(
                        "GPEmulator.fit: every optimizer start failed and the default "
                        "hyperparameters give a non-finite marginal likelihood; check the "
                        "training data or raise min_nugget"
                    )
                pstate = {n: p.detach().clone() for n, p in self.model_.named_parameters()}
                usable = [(pstate, loss, False)]
            warnings.warn(
                "GPEmulator.fit: every optimizer start failed; the emulator keeps the "
                "last finite hyperparameters found and may be poor",
                ConvergenceWarning,
                stacklevel=3,
            )
            results = usable
        losses = np.stack([r[1] for r in results])  # (starts, m)
        best = np.argmin(np.where(np.isfinite(losses), losses, np.inf), axis=0)  # (m,)
        idx = torch.as_tensor(best, device=self.device)
        ar = torch.arange(self.n_outputs, device=self.device)
        with torch.no_grad():
            for n, p in self.model_.named_parameters():
                stacked = torch.stack([r[0][n] for r in results])  # (starts, m, ...)
                p.copy_(stacked[idx, ar])
        self.neg_log_posterior_ = losses[best, np.arange(self.n_outputs)]
        not_conv = [k for k in range(self.n_outputs) if not results[best[k]][2]]
        self.converged_ = not not_conv
        if not_conv and len(failures) < start:
            warnings.warn(
                f"GPEmulator.fit: L-BFGS reached its iteration limit ({self.lbfgs_iter}) "
                f"without converging for output(s) {not_conv[:10]}"
                f"{' ...' if len(not_conv) > 10 else ''}; raise lbfgs_iter",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _finalize(self) -> None:
        """Cache the training Cholesky factor and α (R&W Algorithm 2.1) once.

        Where ``K`` does not factorize at the fitted nugget, the nugget is raised (see
        :func:`training_cholesky`) in the model itself, so that GPyTorch's ``predict``,
        ``predict_torch``, ``loo`` and ``state_dict`` all use the same ``K``.
        """
        model = self.model_
        model.eval()
        with torch.no_grad():
            m = self.n_outputs
            self._cache_hyperparameters()
            tx, ty = self._scaled_train()
            u = tx[0]
            self._zt = u.unsqueeze(0) / self._ls[:, None, :]  # (m, N, d)
            K = kernel_matrix(self._zt, self._zt, self.kernel, self._os)
            n = u.shape[0]
            eye = torch.eye(n, dtype=torch.float64, device=self.device)
            noise_covar = model.likelihood.noise_covar
            fitted = g = noise_covar.ratio.detach().reshape(m)
            L, ratio = training_cholesky(K, self._os, g)
            while not torch.equal(ratio, g):
                # raised: store it in the model, and factor with the model's own value
                # (the constraint's round trip may move it by an ulp), so that a state
                # reloaded from its raw parameters gives this L bit for bit
                noise_covar.ratio = ratio[:, None]
                g = noise_covar.ratio.detach().reshape(m)
                L, ratio = training_cholesky(K, self._os, g)
            raised = torch.nonzero(ratio != fitted).flatten().tolist()
            if raised:
                model.prediction_strategy = None  # GPyTorch's cache of the old K
                warnings.warn(
                    f"GPEmulator: the training covariance of output(s) {raised[:10]} is not "
                    "positive definite to working precision at the fitted nugget ratio "
                    f"{float(fitted[raised[0]]):.1e} (signal variance "
                    f"{float(self._os[raised[0]]):.3g}, shortest length-scale "
                    f"{float(self._ls[raised[0]].min()):.3g}); the nugget was raised x10 at a "
                    f"time to {float(ratio[raised[0]]):.1e} of the signal variance (cap "
                    f"{_NUGGET_CAP:g}), which smooths the fit by about that fraction. Typical of "
                    "a nearly linear or very smooth output: mean='linear' or a larger "
                    "min_nugget avoids it",
                    JitterWarning,
                    stacklevel=3,
                )
            self._noise = (ratio * self._os).reshape(m)
            self._L = L
            # L⁻¹ once, for small n: V = L⁻¹ k(X, X*) is then one GEMM (see predict_torch)
            if n < 500:
                eye_b = eye.expand(self.n_outputs, n, n)
                self._Linv = torch.linalg.solve_triangular(L, eye_b, upper=False)
            resid = ty - self._mean_fn(u)  # (m, N)
            self._alpha = torch.cholesky_solve(resid.unsqueeze(-1), L).squeeze(-1)
            self._cache_scaling()
        self._fitted = True

    def _cache_hyperparameters(self) -> None:
        """The fitted model's ``σ²_f``, length-scales and mean coefficients, detached."""
        model, m = self.model_, self.n_outputs
        self._ls = model.scale_kernel.base_kernel.lengthscale.detach().reshape(m, -1)
        self._os = model.scale_kernel.outputscale.detach().reshape(m)
        if self.mean_ == "constant":
            self._mc = model.mean_module.constant.detach().reshape(m)
            self._mw = torch.zeros(m, self.n_inputs, dtype=torch.float64, device=self.device)
        else:
            self._mc = model.mean_module.bias.detach().reshape(m)
            self._mw = model.mean_module.weights.detach().reshape(m, self.n_inputs)

    def _cache_scaling(self) -> None:
        """The input and output scaling as tensors, and an empty cache of selections."""
        self._t_lower = torch.as_tensor(self._lower, device=self.device)
        self._t_span = torch.as_tensor(self._input_span(), device=self.device)
        self._t_ymean = torch.as_tensor(self._y_mean, device=self.device)
        self._t_yscale = torch.as_tensor(self._y_scale, device=self.device)
        self._selections: dict[tuple[int, ...] | None, Any] = {}

    def _mean_fn(self, u: torch.Tensor) -> torch.Tensor:
        """Prior mean at unit-cube inputs ``u (..., n, d)`` → ``(..., m, n)``."""
        return self._mc[:, None] + (u @ self._mw.T).transpose(-1, -2)

    # --------------------------------------------------------------- prediction
    def _check_fitted(self) -> None:
        if not self._fitted:
            raise RuntimeError("GPEmulator: call fit() (or from_state_dict) before predicting")

    def _check_inputs(self, inputs: Any) -> np.ndarray:
        X = _as_2d_float(inputs, "inputs")
        if X.shape[1] != self.n_inputs:
            raise ValueError(
                f"inputs: expected {self.n_inputs} columns (as in training), got {X.shape[1]}"
            )
        _check_finite(X, "inputs")
        return X

    def predict(self, inputs: np.ndarray, full_cov: bool = False) -> Prediction:
        """Latent predictive distribution at new inputs, in original output units.

        Computed by GPyTorch's exact prediction (the reference that ``predict_torch`` is
        tested against).

        Parameters
        ----------
        inputs : array_like of shape (n, p + q)
        full_cov : bool
            Also return the covariance across the ``n`` points for each output.

        Returns
        -------
        Prediction
            ``mean (n, m)``, ``var (n, m)`` and, with ``full_cov``, ``cov (m, n, n)``.
        """
        self._check_fitted()
        X = self._check_inputs(inputs)
        m = self.n_outputs
        u = torch.as_tensor((X - self._lower) / self._input_span(), device=self.device).unsqueeze(0)
        # chunks bound the memory of the (m, chunk, N) cross-covariance
        chunk = X.shape[0] if full_cov else max(1, 2_000_000 // max(1, m * len(self._train_x)))
        means, vars_ = [], []
        cov = None
        self.model_.eval()
        with torch.no_grad(), _gp_settings():
            for s in range(0, X.shape[0], chunk):
                ub = u[:, s : s + chunk].expand(m, -1, -1)
                f = self.model_(ub)
                means.append(f.mean)
                if full_cov:
                    c = f.covariance_matrix
                    vars_.append(torch.diagonal(c, dim1=-2, dim2=-1))
                    cov = c
                else:
                    # the diagonal itself: f.variance would floor it at 1e-10 (GPyTorch's
                    # min_variance) with a warning, though near-interpolating fits have
                    # smaller latent variances; it is clamped at 0 below, as predict_torch's
                    vars_.append(f.lazy_covariance_matrix.diagonal(dim1=-2, dim2=-1))
        scale = self._y_scale
        mean = torch.cat(means, -1).cpu().numpy().T * scale + self._y_mean
        var = torch.cat(vars_, -1).clamp_min(0.0).cpu().numpy().T * scale**2
        if cov is not None:
            cov = cov.cpu().numpy() * (scale**2)[:, None, None]
        return Prediction(mean=mean, var=var, cov=cov)

    def predict_torch(
        self, inputs: torch.Tensor, outputs: Sequence[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched, differentiable latent prediction from the cached factors.

        Plain torch with the training Cholesky factor ``L`` and ``α`` cached at fit time;
        no loop over walkers or outputs. The covariance is that of the latent simulator
        output (the fitted nugget is not added), in original output units.

        Parameters
        ----------
        inputs : Tensor of shape (W, n, d) or (n, d)
            float64; walkers × points × (p + q) inputs. Computed on the emulator's
            device; the results are returned on the device of ``inputs``.
        outputs : sequence of int, optional
            Predict only these outputs (indices into the ``m`` outputs), in this order:
            the other outputs' GPs are not evaluated. Default: all.

        Returns
        -------
        mean : Tensor of shape (W, n, k) or (n, k)
        cov : Tensor of shape (W, k, n, n) or (k, n, n)
            ``k`` = ``len(outputs)``, or ``m``.
        """
        x, squeeze = self._torch_inputs(inputs)
        mean, cov = self._predict(x, self._selection(outputs))
        if squeeze:
            mean, cov = mean[0], cov[0]
        return mean.to(inputs.device), cov.to(inputs.device)

    def _torch_inputs(self, inputs: Any) -> tuple[torch.Tensor, bool]:
        """``inputs`` checked, as float64 ``(W, n, d)`` on the emulator's device."""
        self._check_fitted()
        if not isinstance(inputs, torch.Tensor):
            raise TypeError(f"inputs: expected a torch.Tensor, got {type(inputs).__name__}")
        if inputs.ndim not in (2, 3) or inputs.shape[-1] != self.n_inputs:
            raise ValueError(
                f"inputs: expected shape (W, n, {self.n_inputs}) or (n, {self.n_inputs}), "
                f"got {tuple(inputs.shape)}"
            )
        x = inputs.to(device=self.device, dtype=torch.float64)
        squeeze = x.ndim == 2
        return (x.unsqueeze(0) if squeeze else x), squeeze

    #: what :meth:`_selection` builds: the fitted tensors arranged for :meth:`_predict`
    _selection_type: type = _Selection

    def _selection(self, outputs: Sequence[int] | None) -> Any:
        """The cached :attr:`_selection_type` of ``outputs`` (``None``: all), checked once."""
        key = None if outputs is None else tuple(int(j) for j in outputs)
        sel = self._selections.get(key)
        if sel is None:
            if key is not None and (not key or min(key) < 0 or max(key) >= self.n_outputs):
                raise ValueError(
                    f"outputs: expected indices in [0, {self.n_outputs}), at least one, "
                    f"got {list(key)}"
                )
            if len(self._selections) >= 16:
                self._selections.clear()
            sel = self._selection_type(self, None if key is None else list(key))
            self._selections[key] = sel
        return sel

    def _predict(self, x: torch.Tensor, sel: _Selection) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(W, n, k)`` and covariance ``(W, k, n, n)`` of the selected outputs.

        R&W eqs. 2.25–2.26 at inputs ``x (W, n, d)``, in original output units. All
        walkers' points side by side, ``(k, N, W·n)``: the cross-covariance, the mean and
        ``V = L⁻¹ k(X, X*)`` are one large GEMM per output instead of W small ones; of the
        covariance only each walker's own ``(n, n)`` block is formed. Each output's
        arithmetic is the same whichever outputs are selected. The selection supplies
        ``V`` (:meth:`_Selection.project`), so that a subclass with other fitted factors
        (:class:`~emulators.SparseGPEmulator`: ``M`` inducing inputs for the ``N`` runs)
        predicts through this same code.
        """
        W, n, d = x.shape
        k, N = sel.k, sel.a_m2.shape[1]
        c = input_factor(self.kernel)
        u = (x - self._t_lower) / self._t_span  # (W, n, d)
        zf = u.reshape(1, W * n, d) / sel.ls  # (k, W·n, d)
        # k(X, X*) as kernel_matrix(z_train, zf), its training side cached in sel
        b = zf * c
        b_sq = b.pow(2).sum(-1)  # (k, W·n)
        r2 = (sel.a_m2 @ b.transpose(-1, -2)).add_(sel.a_sq).add_(b_sq.unsqueeze(-2))
        Kts = kernel_from_scaled_sq(self.kernel, r2, sel.log_os, True)  # (k, N, W·n)
        mean = sel.mc if sel.mw is None else sel.mc + sel.mw @ u.reshape(W * n, d).T
        mean = mean + (sel.alpha @ Kts).squeeze(-2)  # (k, W·n)
        V = sel.project(Kts).view(k, N, W, n).permute(0, 2, 1, 3).contiguous()  # (k, W, N, n)
        # k(X*, X*) per walker: kernel_matrix(z, z) with z = zf as (k, W, n, d)
        bw = b.view(k, W, n, d)
        bw_sq = b_sq.view(k, W, n)
        r2 = ((bw * -2.0) @ bw.transpose(-1, -2)).add_(bw_sq.unsqueeze(-1))
        r2 = r2.add_(bw_sq.unsqueeze(-2))
        Kss = kernel_from_scaled_sq(self.kernel, r2, sel.log_os_w, True)
        VtV = _Gram.apply(V) if V.requires_grad else V.transpose(-1, -2) @ V
        cov = Kss - VtV
        if sel.noise is not None:
            eye = torch.eye(n, dtype=cov.dtype, device=cov.device)
            cov = cov + sel.noise[:, None] * eye
        cov = cov.permute(1, 0, 2, 3)  # (W, k, n, n)
        mean = mean * sel.yscale + sel.ymean  # (k, W·n)
        return mean.view(k, W, n).permute(1, 2, 0), cov * sel.yvar

    # -------------------------------------------------------------- persistence
    def hyperparameters(self) -> dict[str, np.ndarray]:
        """Fitted hyperparameters in standardized units (unit-cube inputs).

        Returns
        -------
        dict
            ``lengthscale (m, d)``, ``outputscale (m,)``, ``noise (m,)`` (the nugget
            ``σ²_n``), ``nugget_ratio (m,)`` (``σ²_n / σ²_f``), ``mean_constant (m,)``,
            ``mean_weights (m, d)``. The length-scale of an input fixed in the design is
            not fitted (its start value).
        """
        self._check_fitted()
        c = lambda t: t.detach().cpu().numpy().copy()  # noqa: E731
        return {
            "lengthscale": c(self._ls),
            "outputscale": c(self._os),
            "noise": c(self._noise),
            "nugget_ratio": c(self._noise / self._os),
            "mean_constant": c(self._mc),
            "mean_weights": c(self._mw),
        }

    def state_dict(self) -> dict[str, np.ndarray | str | float]:
        """Everything needed to rebuild the fitted emulator, as arrays, strings, floats.

        The raw GPyTorch parameters are stored bit for bit (keys ``param/<name>``), so
        :meth:`from_state_dict` predicts identically without retraining.
        """
        self._check_fitted()
        state: dict[str, np.ndarray | str | float] = {
            "class": "GPEmulator",
            "version": _STATE_VERSION,
            "kernel": self.kernel,
            "mean": self.mean_,
            "n_restarts": float(self.n_restarts or 0),
            "adam_iter": float(self.adam_iter),
            "lbfgs_iter": float(self.lbfgs_iter),
            "adam_lr": self.adam_lr,
            "min_nugget": self.min_nugget,
            "priors": float(self.priors),
            "seed": float(self.seed),
            "train_inputs": self._train_x.copy(),
            "train_outputs": self._train_y.copy(),
            "input_lower": self._lower.copy(),
            "input_upper": self._upper.copy(),
            "output_mean": self._y_mean.copy(),
            "output_scale": self._y_scale.copy(),
        }
        for k, v in self.hyperparameters().items():
            state[f"hyper/{k}"] = v
        for n, p in self.model_.named_parameters():
            state[f"param/{n}"] = p.detach().cpu().numpy().copy()
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any], device: str | None = None) -> GPEmulator:
        """Rebuild a fitted emulator from :meth:`state_dict` without retraining.

        States of version 1 stored the nugget as a noise variance; it is converted to the
        ratio ``σ²_n / σ²_f`` (the same ``K``), and ``min_nugget`` is lowered to that ratio
        where it was above it.

        Parameters
        ----------
        state : dict
        device : str, optional
            Override the device (default ``"cpu"``).

        Warns
        -----
        JitterWarning
            If the stored ``K`` does not factorize on this machine at the stored nugget.
        """
        if state.get("class") != "GPEmulator":
            raise ValueError(f"state: expected class 'GPEmulator', got {state.get('class')!r}")
        version = str(state.get("version", "1"))
        if version not in ("1", _STATE_VERSION):
            raise ValueError(
                f"state: expected version '1' or '{_STATE_VERSION}', got {version!r}; "
                "written by a newer emulators package"
            )
        min_nugget = float(state["min_nugget"])
        if version == "1":
            old_ratio = np.asarray(state["hyper/noise"]) / np.asarray(state["hyper/outputscale"])
            # strictly below: GPyTorch's constraint is lower + softplus(raw)
            min_nugget = min(min_nugget, 0.5 * float(old_ratio.min()))
        em = cls(**{**cls._state_options(state, device), "min_nugget": min_nugget})
        em._restore_model(state)
        with torch.no_grad():
            if version == "1":
                em.model_.likelihood.noise_covar.ratio = torch.as_tensor(
                    old_ratio[:, None], device=em.device
                )
        em.n_failed_starts_ = 0
        em.converged_ = True
        em._check_state_ranges()  # before the factorization, which would fail less clearly
        em._finalize()
        return em

    @staticmethod
    def _state_options(state: dict[str, Any], device: str | None) -> dict[str, Any]:
        """The constructor's arguments that :meth:`state_dict` stores, read back."""
        return {
            "kernel": str(state["kernel"]),
            "mean": str(state["mean"]),
            "n_restarts": int(state["n_restarts"]) or None,
            "adam_iter": int(state["adam_iter"]),
            "lbfgs_iter": int(state["lbfgs_iter"]),
            "adam_lr": float(state["adam_lr"]),
            "min_nugget": float(state["min_nugget"]),
            "priors": bool(state["priors"]),
            "device": device or "cpu",
            "seed": int(state["seed"]),
        }

    def _restore_model(self, state: dict[str, Any], **model_kwargs: Any) -> None:
        """Training data, scaling and the model's raw parameters from :meth:`state_dict`
        (``model_kwargs`` go to :meth:`_new_model`)."""
        self._train_x = np.asarray(state["train_inputs"], dtype=np.float64)
        self._train_y = np.asarray(state["train_outputs"], dtype=np.float64)
        self._lower = np.asarray(state["input_lower"], dtype=np.float64)
        self._upper = np.asarray(state["input_upper"], dtype=np.float64)
        self._y_mean = np.asarray(state["output_mean"], dtype=np.float64)
        self._y_scale = np.asarray(state["output_scale"], dtype=np.float64)
        self.n_inputs = self._train_x.shape[1]
        self.n_outputs = self._train_y.shape[1]
        self.mean_ = self.mean  # stored resolved: "constant" or "linear"
        self._build_model(**model_kwargs)
        with torch.no_grad():
            for n, p in self.model_.named_parameters():
                p.copy_(torch.as_tensor(np.asarray(state[f"param/{n}"]), device=self.device))

    #: what a fit can produce (a fitted state outside is damaged, issue 13 item 3): far
    #: beyond the prior boxes, and loose enough for a fit without priors
    _STATE_RANGES = {
        "lengthscale": (1e-8, 1e30),
        "outputscale": (1e-30, 1e30),
        "nugget_ratio": (0.0, 1e6),
    }

    def _check_state_ranges(self) -> None:
        """Refuse a restored state whose values no fit produces: non-finite training data
        or standardization, a negative output standardization, hyperparameters outside
        :attr:`_STATE_RANGES` (an edited archive once loaded with a length-scale of 1e308
        and an output scale of 0)."""
        arrays = {
            "train_inputs": self._train_x,
            "train_outputs": self._train_y,
            "input_lower": self._lower,
            "input_upper": self._upper,
            "output_mean": self._y_mean,
            "output_scale": self._y_scale,
        }
        for key, value in arrays.items():
            if not np.isfinite(value).all():
                raise ValueError(f"state: {key} holds NaN or inf; the state is damaged")
        if (self._y_scale < 0).any():  # 0 is a constant output (predicted exactly)
            raise ValueError(
                f"state: output_scale must be ≥ 0, got {self._y_scale.tolist()}; the state is "
                f"damaged"
            )
        model = self.model_
        with torch.no_grad():
            hyper = {
                "lengthscale": model.scale_kernel.base_kernel.lengthscale,
                "outputscale": model.scale_kernel.outputscale,
                "nugget_ratio": model.likelihood.noise_covar.ratio,
            }
        for key, (lo, hi) in self._STATE_RANGES.items():
            v = hyper[key].detach().cpu().numpy()
            bad = ~np.isfinite(v) | (v <= lo) | (v > hi)
            if bad.any():
                raise ValueError(
                    f"state: {key} {float(v[bad].ravel()[0]):g} is outside ({lo:g}, {hi:g}], what a "
                    f"fit can produce; the state is damaged"
                )

    # ------------------------------------------------------------ leave-one-out
    def loo(self) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form leave-one-out predictions with the fitted hyperparameters.

        Rasmussen & Williams (2006) eq. 5.12: with ``K`` including the nugget,
        ``μ_i = y_i − [K⁻¹ r]_i / [K⁻¹]_ii`` and ``σ²_i = 1 / [K⁻¹]_ii`` (``r`` the
        residual from the prior mean). This is the predictive distribution of the held-out
        *observation* ``y_i``, so it includes the nugget.

        Returns
        -------
        mean, var : ndarray of shape (n, m)
            In original output units.
        """
        self._check_fitted()
        with torch.no_grad():
            n = self._L.shape[-1]
            eye = torch.eye(n, dtype=torch.float64, device=self.device).expand(self.n_outputs, n, n)
            Kinv = torch.cholesky_solve(eye, self._L)
            d = torch.diagonal(Kinv, dim1=-2, dim2=-1)  # (m, N)
            tx, ty = self._scaled_train()
            mean = ty - self._alpha / d
            var = 1.0 / d
        return self._to_output_units(mean, var)

    def _to_output_units(
        self, mean: torch.Tensor, var: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray]:
        """Standardized ``mean, var (m, n)`` as arrays ``(n, m)`` in original output units."""
        mean = mean.cpu().numpy().T * self._y_scale + self._y_mean
        var = var.cpu().numpy().T * self._y_scale**2
        return mean, var

    def __repr__(self) -> str:
        fitted = f", n_inputs={self.n_inputs}, n_outputs={self.n_outputs}" if self._fitted else ""
        mean = self.mean_ if self._fitted else self.mean
        return f"GPEmulator(kernel={self.kernel!r}, mean={mean!r}{fitted})"
