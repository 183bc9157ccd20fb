"""Validation metrics and the Bastos & O'Hagan (2009) reference distribution."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from emulators import validation


def test_metrics_on_known_numbers():
    y = np.array([[0.0], [1.0], [2.0], [3.0]])
    mean = np.array([[0.0], [1.5], [2.0], [0.0]])
    var = np.ones((4, 1))
    r = validation.metrics(y, mean, var)
    np.testing.assert_allclose(r.rmse, [np.sqrt((0.25 + 9) / 4)])
    np.testing.assert_allclose(r.q2, [1 - 9.25 / 5])
    np.testing.assert_allclose(r.nrmse, r.rmse / np.std(y))
    np.testing.assert_allclose(r.coverage95, [0.75])  # the error 3 > 1.96
    np.testing.assert_allclose(r.standardized_errors[:, 0], [0, -0.5, 0, 3])


def test_mahalanobis_reference_matches_scaled_f():
    k, n, q = 7, 30, 2
    rng = np.random.default_rng(0)
    A = rng.normal(size=(1, k, k))
    cov = A @ A.transpose(0, 2, 1) + k * np.eye(k)
    y = rng.normal(size=(k, 1))
    d2, ref_mean, ref_sd, p = validation.mahalanobis(y, np.zeros((k, 1)), cov, n, q)
    np.testing.assert_allclose(d2, [y[:, 0] @ np.linalg.solve(cov[0], y[:, 0])], rtol=1e-12)
    c = k * (n - q - 2) / (n - q)  # D² = c F(k, n − q)
    F = stats.f(k, n - q)
    np.testing.assert_allclose(ref_mean, c * F.mean(), rtol=1e-12)
    np.testing.assert_allclose(ref_sd, c * F.std(), rtol=1e-12)
    assert 0 <= p[0] <= 1


def test_mahalanobis_of_exact_gaussian_draws_has_mean_k():
    # draws from the predictive distribution itself: E[D²] = k exactly (chi-square)
    k, reps = 5, 4000
    rng = np.random.default_rng(1)
    cov = np.diag(np.arange(1.0, k + 1))[None]
    y = rng.normal(size=(k, reps)) * np.sqrt(np.arange(1.0, k + 1))[:, None]
    d2, *_ = validation.mahalanobis(y, np.zeros((k, reps)), np.repeat(cov, reps, 0), 100, 1)
    # sd of the mean of chi2_k over 4000 draws: sqrt(2k / 4000) = 0.05
    assert abs(d2.mean() - k) < 4 * np.sqrt(2 * k / reps)


def test_held_out_and_loo_on_a_gp(fitted, train_data):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("c", Path(__file__).with_name("conftest.py"))
    c = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(c)
    _, _, lo, hi = train_data
    U = np.random.default_rng(11).uniform(size=(40, 3))
    res = validation.held_out(fitted, lo + U * (hi - lo), c.smooth(U))
    assert res.mahalanobis.shape == (2,) and res.mahalanobis_ref_mean == 40
    assert np.isfinite(res.mahalanobis_ref_sd) and np.all(res.q2 > 0.5)
    loo = validation.leave_one_out(fitted)
    assert loo.mean.shape == (30, 2) and loo.mahalanobis is None
    with pytest.raises(ValueError, match=r"outputs: expected shape \(40, 2\)"):
        validation.held_out(fitted, lo + U * (hi - lo), np.ones((40, 3)))
    with pytest.raises(TypeError, match="closed-form loo"):
        validation.leave_one_out(object())
