"""Validation of emulators: held-out and leave-one-out diagnostics.

Metrics follow Bastos & O'Hagan (2009), "Diagnostics for Gaussian process emulators",
Technometrics 51(4), 425–438: individual standardized errors, interval coverage and the
Mahalanobis distance of the held-out outputs with its reference distribution.

All functions work on any emulator with ``predict(inputs, full_cov)``; leave-one-out
needs the emulator's closed form (``loo()``, Rasmussen & Williams 2006 eq. 5.12).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["ValidationResult", "held_out", "leave_one_out", "metrics", "mahalanobis"]

_Z90 = stats.norm.ppf(0.95)
_Z95 = stats.norm.ppf(0.975)


@dataclass
class ValidationResult:
    """Diagnostics of an emulator against true simulator outputs.

    Attributes
    ----------
    rmse : ndarray of shape (m,)
        Root mean squared error per output.
    nrmse : ndarray of shape (m,)
        RMSE divided by the population sd of the true outputs (NaN where that sd is 0).
    nrmse_total : float
        Over all outputs together: ``sqrt(Σ err² / Σ (y − ȳ_j)²)``; the measure for
        functional outputs, some of whose entries may not vary.
    q2 : ndarray of shape (m,)
        Predictive coefficient ``1 − Σ err² / Σ (y − ȳ)²`` per output.
    coverage90, coverage95 : ndarray of shape (m,)
        Fraction of true outputs inside the central 90 % / 95 % predictive intervals.
    standardized_errors : ndarray of shape (n, m)
        ``(y − mean) / sd``; approximately N(0, 1) for a valid emulator.
    mean, var : ndarray of shape (n, m)
        The predictions the metrics were computed from.
    mahalanobis : ndarray of shape (m,) or None
        Bastos & O'Hagan's ``D²_MD`` per output (held-out data only).
    mahalanobis_ref_mean, mahalanobis_ref_sd : float or None
        Mean and sd of its reference distribution.
    mahalanobis_pvalue : ndarray of shape (m,) or None
        Two-sided p-value of ``D²_MD`` under the reference distribution.
    """

    rmse: np.ndarray
    nrmse: np.ndarray
    nrmse_total: float
    q2: np.ndarray
    coverage90: np.ndarray
    coverage95: np.ndarray
    standardized_errors: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    mahalanobis: np.ndarray | None = None
    mahalanobis_ref_mean: float | None = None
    mahalanobis_ref_sd: float | None = None
    mahalanobis_pvalue: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        n, m = np.shape(self.mean)
        parts = [
            f"{n} points × {m} outputs",
            f"NRMSE {self.nrmse_total:.3g}",
            f"Q² {np.nanmean(self.q2):.3f}",
            f"coverage {np.nanmean(self.coverage90):.2f} (90 %), "
            f"{np.nanmean(self.coverage95):.2f} (95 %)",
        ]
        if self.mahalanobis_pvalue is not None:
            parts.append(f"Mahalanobis p ≥ {np.nanmin(self.mahalanobis_pvalue):.3g}")
        return f"ValidationResult({'; '.join(parts)}; .summary() for more)"

    def summary(self) -> dict[str, float]:
        """Scalar summaries averaged over outputs."""
        out = {
            "rmse": float(np.mean(self.rmse)),
            "nrmse_total": float(self.nrmse_total),
            "q2": float(np.mean(self.q2)),
            "coverage90": float(np.mean(self.coverage90)),
            "coverage95": float(np.mean(self.coverage95)),
        }
        if self.mahalanobis is not None:
            out["mahalanobis"] = float(np.mean(self.mahalanobis))
            out["mahalanobis_ref_mean"] = float(self.mahalanobis_ref_mean)
            out["mahalanobis_ref_sd"] = float(self.mahalanobis_ref_sd)
        return out


def _as_outputs(y: Any, n: int, name: str = "outputs") -> np.ndarray:
    Y = np.asarray(y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != n:
        raise ValueError(f"{name}: expected shape ({n}, m) or ({n},), got {Y.shape}")
    if not np.all(np.isfinite(Y)):
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return Y


def metrics(y: np.ndarray, mean: np.ndarray, var: np.ndarray) -> ValidationResult:
    """Point and interval metrics of Gaussian predictions ``N(mean, var)`` against ``y``.

    Parameters
    ----------
    y, mean, var : ndarray of shape (n, m)

    Returns
    -------
    ValidationResult
        Without the Mahalanobis diagnostic.
    """
    y = _as_outputs(y, np.shape(mean)[0], "y")
    if y.shape != np.shape(mean) or y.shape != np.shape(var):
        raise ValueError(
            f"y, mean, var: expected equal shapes, got {y.shape}, {np.shape(mean)}, {np.shape(var)}"
        )
    err = y - mean
    sd = np.sqrt(np.maximum(var, 0.0))
    rmse = np.sqrt(np.mean(err**2, axis=0))
    ss_tot = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        nrmse = np.where(ss_tot > 0, rmse / np.sqrt(ss_tot / y.shape[0]), np.nan)
        q2 = np.where(ss_tot > 0, 1.0 - np.sum(err**2, axis=0) / ss_tot, np.nan)
        z = err / sd
    total = float(np.sqrt(np.sum(err**2) / np.sum(ss_tot))) if np.sum(ss_tot) > 0 else np.nan
    return ValidationResult(
        rmse=rmse,
        nrmse=nrmse,
        nrmse_total=total,
        q2=q2,
        coverage90=np.mean(np.abs(err) <= _Z90 * sd, axis=0),
        coverage95=np.mean(np.abs(err) <= _Z95 * sd, axis=0),
        standardized_errors=z,
        mean=np.asarray(mean),
        var=np.asarray(var),
    )


def mahalanobis(
    y: np.ndarray, mean: np.ndarray, cov: np.ndarray, n_train: int, n_mean_params: int
) -> tuple[np.ndarray, float, float, np.ndarray]:
    """Mahalanobis diagnostic of Bastos & O'Hagan (2009, §3.2) per output.

    ``D²_MD = (y − m)ᵀ C⁻¹ (y − m)`` over the ``k`` validation points. For a GP whose
    ``q`` mean coefficients and variance were estimated from ``n`` training runs,

        D²_MD · (n − q) / (k (n − q − 2)) ~ F(k, n − q),

    so ``E[D²_MD] = k`` and ``Var[D²_MD] = 2k (k + n − q − 2) / (n − q − 4)``.

    Parameters
    ----------
    y, mean : ndarray of shape (k, m)
    cov : ndarray of shape (m, k, k)
    n_train, n_mean_params : int
        ``n`` and ``q`` above.

    Returns
    -------
    d2 : ndarray of shape (m,)
        NaN for an output predicted with zero variance at every point, and for one whose
        covariance is not positive definite even with jitter (with a warning).
    ref_mean, ref_sd : float
        ``ref_sd`` is NaN when ``n − q ≤ 4`` (the variance does not exist).
    pvalue : ndarray of shape (m,)
        Two-sided: ``2 min(F(D²), 1 − F(D²))`` under the scaled F distribution.
    """
    k = y.shape[0]
    nq = n_train - n_mean_params
    if nq <= 2:
        raise ValueError(f"n_train - n_mean_params: expected > 2 for the F reference, got {nq}")
    r = (y - mean).T[:, :, None]  # (m, k, 1)
    cov = np.array(cov, dtype=np.float64)
    # an output the emulator predicts with zero variance (one that never varies, such as
    # an initial condition) has no Mahalanobis distance: NaN for it
    degenerate = np.max(np.diagonal(cov, axis1=1, axis2=2), axis=1) <= 0
    cov[degenerate] = np.eye(k)
    L, ok = _robust_cholesky(cov)
    if not ok.all():
        warnings.warn(
            f"mahalanobis: the predictive covariance of output(s) "
            f"{np.flatnonzero(~ok).tolist()[:10]} is not positive definite even with jitter "
            "1e-6 x its mean variance; its D²_MD is NaN. Typical of a near-interpolating fit "
            "(a smooth or linear output), whose tiny predictive variances are differences of "
            "much larger numbers and so mostly rounding",
            UserWarning,
            stacklevel=3,
        )
    w = np.linalg.solve(L, r)  # triangular by structure; small k
    d2 = np.sum(w[..., 0] ** 2, axis=-1)
    d2[degenerate | ~ok] = np.nan
    ref_mean = float(k)
    ref_sd = float(np.sqrt(2 * k * (k + nq - 2) / (nq - 4))) if nq > 4 else float("nan")
    scaled = d2 * nq / (k * (nq - 2))
    cdf = stats.f.cdf(scaled, k, nq)
    with np.errstate(invalid="ignore"):
        pvalue = 2 * np.minimum(cdf, 1 - cdf)
    return d2, ref_mean, ref_sd, pvalue


def _robust_cholesky(cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cholesky of ``(m, k, k)`` covariances with explicit jitter escalation.

    A predictive covariance over many close points is numerically singular; jitter of
    ``10⁻¹²``, then ×100 up to ``10⁻⁶`` times the mean variance is added to the diagonal
    of the failing output only, which changes ``D²`` negligibly for a valid emulator.

    Returns
    -------
    L : ndarray of shape (m, k, k)
        The identity where the factorization failed at every jitter.
    ok : ndarray of shape (m,)
        False where it failed.
    """
    L = np.empty_like(cov)
    ok = np.ones(cov.shape[0], dtype=bool)
    k = cov.shape[-1]
    for j in range(cov.shape[0]):  # outputs: once per validation, not a hot path
        base = float(np.mean(np.diag(cov[j])))
        for jitter in (0.0, 1e-12, 1e-10, 1e-8, 1e-6):
            try:
                L[j] = np.linalg.cholesky(cov[j] + jitter * base * np.eye(k))
                break
            except np.linalg.LinAlgError:
                continue
        else:
            L[j], ok[j] = np.eye(k), False
    return L, ok


def held_out(emulator: Any, inputs: np.ndarray, outputs: np.ndarray) -> ValidationResult:
    """Validate an emulator on runs it was not trained on.

    Parameters
    ----------
    emulator : fitted emulator
        Needs ``predict(inputs, full_cov=True)``; the Mahalanobis diagnostic also needs
        ``n_mean_params`` and the number of training runs (``n_train``).
    inputs : array_like of shape (k, d)
    outputs : array_like of shape (k, m) or (k,)

    Returns
    -------
    ValidationResult
    """
    X = np.asarray(inputs, dtype=np.float64)
    Y = _as_outputs(outputs, X.shape[0])
    pred = emulator.predict(X, full_cov=True)
    if Y.shape != pred.mean.shape:
        raise ValueError(f"outputs: expected shape {pred.mean.shape}, got {Y.shape}")
    res = metrics(Y, pred.mean, pred.var)
    n_train = getattr(emulator, "n_train", None)
    q = getattr(emulator, "n_mean_params", None)
    if pred.cov is not None and n_train is not None and q is not None and n_train - q > 2:
        d2, rm, rs, p = mahalanobis(Y, pred.mean, pred.cov, n_train, q)
        res.mahalanobis, res.mahalanobis_ref_mean = d2, rm
        res.mahalanobis_ref_sd, res.mahalanobis_pvalue = rs, p
    return res


def leave_one_out(emulator: Any) -> ValidationResult:
    """Closed-form leave-one-out diagnostics with the fitted hyperparameters.

    Uses Rasmussen & Williams (2006) eq. 5.12 (no refitting): each training run is
    predicted from the others with the same hyperparameters. The predictive variance is
    that of the held-out observation (the nugget included).

    Parameters
    ----------
    emulator : fitted emulator with ``loo()`` and ``training_outputs``

    Returns
    -------
    ValidationResult
        Without the Mahalanobis diagnostic (not defined for leave-one-out).
    """
    if not callable(getattr(emulator, "loo", None)):
        raise TypeError(
            f"emulator: expected an emulator with a closed-form loo(), got "
            f"{type(emulator).__name__}"
        )
    mean, var = emulator.loo()
    return metrics(emulator.training_outputs, mean, var)
