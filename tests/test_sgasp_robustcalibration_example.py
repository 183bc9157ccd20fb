"""The S-GaSP on RobustCalibration's first example (Gu's R package, `rcalibration` help page:
"an example with multiple local maximum of minimum in L2 loss"), against quadrature.

Reality ζ(x) = x·cos(3x/2) + x, 15 equally spaced inputs on [0, 5], noise sd 0.1; the model
η(x, θ) = sin(θx) + x with θ in [0, 3]. RobustCalibration samples the noise and uses its own
priors; here the noise is known and δ's priors are written out, so that θ's posterior is a
three-dimensional integral (θ, log σ_δ, log ℓ) computed on a grid, with λ_z fixed and the
Matérn 5/2 kernel (the package's default). The S-GaSP's covariance is the reference
module's (tests/reference/quadrature.py: Gu & Wang's closed form by eigendecomposition),
independent of calib/pseudo.py.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from calib import Calibrator, Campaign, Discrepancy, Parameter
from calib.diagnostics import ess
from calib.priors import HalfNormal, LogNormal, Uniform
from simulators import FunctionSimulator

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "sgasp_quadrature", ROOT / "tests" / "reference" / "quadrature.py"
)
quad = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quad)

NOISE_SD = 0.1
LAM = 20.0  # λ_z fixed
SCALE_SD = 1.0  # σ_δ ~ HalfNormal(1)
LS_MEDIAN, LS_LOGSD = 2.5, 1.0  # ℓ ~ LogNormal(log 2.5, 1)


def data() -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(0.0, 5.0, 15)
    rng = np.random.default_rng(1)
    return x, x * np.cos(1.5 * x) + x + NOISE_SD * rng.standard_normal(15)


def reference(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """θ's posterior mean and sd by quadrature on (θ, log σ_δ, log ℓ)."""
    theta = np.linspace(0.0, 3.0, 3002)[1:-1]
    log_sd = np.linspace(math.log(1e-3), math.log(5.0), 45)
    log_ls = np.linspace(math.log(0.05), math.log(50.0), 45)
    resid = y[None, :] - (np.sin(theta[:, None] * x[None, :]) + x[None, :])  # (nθ, n)
    base = (NOISE_SD**2 + 1e-10 * np.var(y)) * np.eye(x.size)  # calib's jitter, eq. 6
    out = np.empty((log_sd.size, log_ls.size, theta.size))
    for c, lv in enumerate(log_ls):
        R = quad.sgasp_corr(x, math.exp(lv), LAM, kernel="matern52")
        lp_ls = stats.lognorm(s=LS_LOGSD, scale=LS_MEDIAN).logpdf(math.exp(lv)) + lv
        for b, sv in enumerate(log_sd):
            L = np.linalg.cholesky(math.exp(2 * sv) * R + base)
            v = np.linalg.solve(L, resid.T)
            lp = stats.halfnorm(scale=SCALE_SD).logpdf(math.exp(sv)) + sv + lp_ls
            out[b, c] = -0.5 * (v * v).sum(0) - np.log(np.diag(L)).sum() + lp
    logw = logsumexp(out, axis=(0, 1))
    w = np.exp(logw - logsumexp(logw))
    m = float((w * theta).sum())
    sd = float(np.sqrt((w * (theta - m) ** 2).sum()))
    kurt = float((w * (theta - m) ** 4).sum()) / sd**4
    return {"mean": m, "sd": sd, "kurtosis": kurt}


def calibrator(x: np.ndarray, y: np.ndarray) -> Calibrator:
    sim = FunctionSimulator(
        lambda X, T: np.sin(T[:, :1] * X[:, :1]) + X[:, :1], ("x",), ("theta",), ("y",), True
    )
    disc = Discrepancy(
        "shared",
        kernel="matern52",
        scale_prior=HalfNormal(SCALE_SD),
        lengthscale_prior=LogNormal(math.log(LS_MEDIAN), LS_LOGSD),
        process="sgasp",
        scaling=LAM,
    )
    return Calibrator(
        sim,
        [Parameter("theta", 0.0, 3.0, prior=Uniform(0.0, 3.0))],
        [Campaign("field", x=x, y=y, noise_sd=NOISE_SD)],
        discrepancy=disc,
        noise="known",
    )


@pytest.mark.slow
def test_sgasp_posterior_of_theta_matches_quadrature():
    x, y = data()
    ref = reference(x, y)
    post = calibrator(x, y).sample(
        n_walkers=32, n_steps=1200, warmup=200, seed=5, autocorr_stop=False
    )
    d = post.draws("theta").reshape(-1, post.n_walkers)
    n_eff, n_eff_sq = float(ess(d)), float(ess((d - d.mean()) ** 2))
    # measured: ESS ≈ 740 and 770 (32 walkers × 1000 kept steps), mean 1.851 against 1.848
    assert min(n_eff, n_eff_sq) >= 500, (n_eff, n_eff_sq)
    # Monte Carlo errors of a mean and of an sd from the chain's ESS, four of each
    assert abs(d.mean() - ref["mean"]) < 4 * ref["sd"] / math.sqrt(n_eff), (d.mean(), ref)
    tol_sd = 4 * ref["sd"] * math.sqrt(ref["kurtosis"] - 1) / (2 * math.sqrt(n_eff_sq))
    assert abs(d.std() - ref["sd"]) < tol_sd, (d.std(), ref, tol_sd)
