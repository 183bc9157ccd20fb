"""BasisGPEmulator on a functional output: the A → B → C reaction time course."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emulators import BasisGPEmulator, validation

T = np.linspace(0.0, 5.0, 50)
LO, HI = np.array([0.2, 1.5, 0.5]), np.array([1.0, 4.0, 1.5])


def abc(P: np.ndarray) -> np.ndarray:
    """Closed-form A → B → C (rates k1 < k2, initial A0): concentrations at 50 times."""
    k1, k2, a0 = P[:, :1], P[:, 1:2], P[:, 2:3]
    A = a0 * np.exp(-k1 * T)
    B = a0 * k1 / (k2 - k1) * (np.exp(-k1 * T) - np.exp(-k2 * T))
    C = a0 - A - B
    return np.hstack([A, B, C])  # (n, 150); at t = 0, B and C are 0 in every run


def lhs(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    u = (rng.permuted(np.tile(np.arange(n), (3, 1)), axis=1).T + rng.uniform(size=(n, 3))) / n
    return LO + u * (HI - LO)


@pytest.fixture(scope="module")
def basis_fit():
    P = lhs(60, 0)
    return BasisGPEmulator(n_restarts=2, seed=0).fit(P, abc(P)), P


def test_reconstructs_held_out_runs(basis_fit):
    em, _ = basis_fit
    Pt = lhs(200, 1)
    res = validation.held_out(em, Pt, abc(Pt))
    assert res.nrmse_total < 0.01, res.nrmse_total
    assert 1 <= em.n_components < 20
    assert em.explained[-1] >= 0.99999


def test_shapes_and_truncation_variance(basis_fit):
    em, P = basis_fit
    p = em.predict(P[:4], full_cov=True)
    assert p.mean.shape == (4, 150) and p.var.shape == (4, 150) and p.cov.shape == (150, 4, 4)
    np.testing.assert_allclose(np.diagonal(p.cov, axis1=1, axis2=2).T, p.var, rtol=1e-12)
    # the truncation error is part of the variance, even at training inputs
    assert np.all(p.var >= em._scale**2 * em.truncation_var - 1e-15)
    assert em.truncation_var.max() > 0


def test_predict_torch_equals_predict(basis_fit):
    em, _ = basis_fit
    X = lhs(12, 5).reshape(3, 4, 3)
    mean, cov = em.predict_torch(torch.as_tensor(X))
    assert mean.shape == (3, 4, 150) and cov.shape == (3, 150, 4, 4)
    # Smooth weights give large signal variances, so K is ill-conditioned here; the two
    # paths (GPyTorch vs cached Cholesky) then agree to ~eps * cond(K), not to 1e-10.
    # The tolerance is that rounding bound (the GP tests check 1e-10 when cond(K) ~ 1e6).
    Lc = em.gp_._L
    cond = float(torch.linalg.cond(Lc @ Lc.transpose(-1, -2)).max())
    tol = 10 * np.finfo(float).eps * cond * em._scale
    for w in range(3):
        p = em.predict(X[w], full_cov=True)
        np.testing.assert_allclose(mean[w].numpy(), p.mean, rtol=0, atol=tol)
        np.testing.assert_allclose(cov[w].numpy(), p.cov, rtol=0, atol=tol * em._scale)
    x = torch.as_tensor(X, dtype=torch.float64).requires_grad_(True)
    m, c = em.predict_torch(x)
    (m.sum() + c.sum()).backward()
    assert torch.isfinite(x.grad).all()


def test_state_dict_roundtrip(basis_fit):
    em, _ = basis_fit
    state = em.state_dict()
    assert all(isinstance(v, (np.ndarray, str, float)) for v in state.values())
    em2 = BasisGPEmulator.from_state_dict(state)
    X = lhs(10, 7)
    a, b = em.predict(X, full_cov=True), em2.predict(X, full_cov=True)
    np.testing.assert_allclose(b.mean, a.mean, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b.cov, a.cov, rtol=1e-12, atol=1e-14)
    assert em2.n_components == em.n_components and em2.n_outputs == 150


def test_loo_runs_and_is_accurate(basis_fit):
    em, _ = basis_fit
    res = validation.leave_one_out(em)
    assert res.mean.shape == (60, 150)
    assert res.nrmse_total < 0.05


def test_bad_arguments():
    with pytest.raises(ValueError, match="explained_variance: expected a fraction"):
        BasisGPEmulator(explained_variance=1.5)
    with pytest.raises(ValueError, match="kernel: expected one of"):
        BasisGPEmulator(kernel="cubic")
    # outputs that never vary are fitted (predicted exactly): tests/emulators/test_robust.py
