"""The emulator's validation picture: predicted against actual with intervals, and the
standardized errors (Bastos & O'Hagan 2009, "Diagnostics for Gaussian process
emulators", Technometrics 51(4), §3.1 and Fig. 2).

Only the plug-in contract is used (``predict(inputs)`` giving a mean and a variance, or a
closed-form ``loo()``), so any emulator can be drawn and calib imports no plug-in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from scipy import stats

from ._common import BAD, DATA, POSTERIOR, check_level, grid, interval_label, padded

__all__ = ["emulator_validation"]

#: more outputs than this (a functional output) are drawn pooled in one column
MAX_COLUMNS = 4


def _predictions(
    emulator: Any, X_test: Any, Y_test: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """``actual, mean, var`` as ``(n, m)`` and what they are (held out or leave-one-out)."""
    if (X_test is None) != (Y_test is None):
        raise ValueError("X_test and Y_test: give both (held-out runs) or neither (leave-one-out)")
    if X_test is None:
        if not callable(getattr(emulator, "loo", None)):
            raise TypeError(
                f"emulator: {type(emulator).__name__} has no closed-form loo(): give held-out "
                f"runs X_test, Y_test"
            )
        mean, var = emulator.loo()
        return np.asarray(emulator.training_outputs, dtype=float), mean, var, "leave-one-out"
    if not callable(getattr(emulator, "predict", None)):
        raise TypeError(f"emulator: expected predict(inputs), got {type(emulator).__name__}")
    X = np.asarray(X_test, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"X_test: expected shape (n, d), got {X.shape}")
    Y = np.asarray(Y_test, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    pred = emulator.predict(X)
    mean, var = np.asarray(pred.mean, dtype=float), np.asarray(pred.var, dtype=float)
    if Y.shape != mean.shape:
        raise ValueError(f"Y_test: expected shape {mean.shape} (the predictions'), got {Y.shape}")
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ValueError("X_test, Y_test: expected finite values, got NaN or inf")
    return Y, mean, var, f"{X.shape[0]} held-out runs"


def emulator_validation(
    emulator: Any,
    X_test: Any = None,
    Y_test: Any = None,
    output_names: Any = None,
    level: float = 0.9,
) -> Figure:
    """Predicted against actual simulator outputs with ``level`` intervals (top), and the
    standardized errors ``(y − mean) / sd`` against the prediction (bottom).

    For a valid emulator the points lie near the diagonal, about ``level`` of the
    intervals cross it, and the standardized errors look like N(0, 1) draws: about 95 %
    within ±2 and no pattern. Errors far outside say the emulator is overconfident there;
    all of them close to 0, that it is too cautious.

    Parameters
    ----------
    emulator : fitted emulator
        With ``predict(inputs)`` (held-out runs), or ``loo()`` and ``training_outputs``
        (leave-one-out, when no test runs are given).
    X_test : array of shape (n, d), optional
        Inputs of runs the emulator was not fitted on (control inputs, then parameters).
    Y_test : array of shape (n, m) or (n,), optional
        Their simulator outputs.
    output_names : sequence of str, optional
        Column titles; default ``y0``, ``y1``, ...
    level : float
        Central probability of the intervals, in (0, 1).

    Returns
    -------
    Figure
        One column per output (up to 4; more are pooled into one column), with the
        coverage of the intervals in each title.
    """
    level = check_level(level)
    Y, mean, var, what = _predictions(emulator, X_test, Y_test)
    m = Y.shape[1]
    names = [f"y{j}" for j in range(m)] if output_names is None else list(output_names)
    if len(names) != m:
        raise ValueError(f"output_names: expected {m} names, got {len(names)}")
    sd = np.sqrt(np.clip(var, 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (Y - mean) / sd, np.nan)
    cols = [[j] for j in range(m)] if m <= MAX_COLUMNS else [list(range(m))]
    fig, axes = grid(2 * len(cols), max_cols=len(cols), panel=(3.8, 3.2))
    half = stats.norm.ppf((1 + level) / 2)
    pct = interval_label(level)
    for c, js in enumerate(cols):
        top, bottom = axes[c], axes[len(cols) + c]
        a, mu, s, e = (v[:, js].ravel() for v in (Y, mean, sd, z))
        top.errorbar(
            a,
            mu,
            yerr=half * s,
            fmt="o",
            ms=3,
            color=POSTERIOR,
            capsize=2,
            alpha=0.8,
            label=f"prediction, {pct} interval",
        )
        lo, hi = padded(
            float(min(a.min(), (mu - half * s).min())), float(max(a.max(), (mu + half * s).max()))
        )
        top.plot([lo, hi], [lo, hi], color=DATA, lw=0.8, ls="--", label="predicted = actual")
        top.set_xlim(lo, hi)
        top.set_ylim(lo, hi)
        covered = float(np.mean(np.abs(a - mu) <= half * s))
        title = names[js[0]] if len(js) == 1 else f"all {m} outputs"
        top.set_title(f"{title}: {pct} intervals cover {covered:.0%}", fontsize=9)
        top.set_xlabel("actual (simulator)")
        top.set_ylabel("predicted (emulator)")
        top.legend(fontsize=7)
        out = np.abs(e) > 2
        bottom.scatter(mu[~out], e[~out], s=10, color=POSTERIOR, label="standardized error")
        if out.any():
            bottom.scatter(mu[out], e[out], s=14, marker="x", color=BAD, label="beyond ±2")
        for v in (-2.0, 2.0):
            bottom.axhline(v, color=BAD, ls="--", lw=0.9, label="±2" if v > 0 else None)
        bottom.axhline(0.0, color=DATA, lw=0.6)
        finite = e[np.isfinite(e)]
        bound = max(3.0, float(np.abs(finite).max()) * 1.08) if finite.size else 3.0
        bottom.set_ylim(-bound, bound)
        bottom.set_xlabel("predicted")
        bottom.set_ylabel("(actual − predicted) / sd")
        bottom.legend(fontsize=7)
    fig.suptitle(f"emulator validation: {what}", fontsize=10)
    return fig
