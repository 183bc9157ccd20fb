"""SparseGPEmulator (SGPR, Titsias 2009): the exact GP as its limit, its own algebra against
GPyTorch's, accuracy, robustness on easy simulators, persistence and a calibration round trip.

Issue 16 item 6. Accuracy bars as in test_robust.py: normalized RMSE (RMSE / sd of the
held-out outputs) against a stated measured value, 95 % intervals covering at least 90 %
of held-out points.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from emulators import GPEmulator, SparseGPEmulator, validation


def design(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, d))


def wavy3(X: np.ndarray) -> np.ndarray:
    return np.sin(5 * X[:, 0]) + np.cos(4 * X[:, 1]) * X[:, 2]


def quiet_fit(em, X, Y):
    """Fit, failing on any warning but discarded optimizer starts (replaced by others)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        em.fit(X, Y)
    bad = [w for w in caught if "optimizer start" not in str(w.message)]
    assert not bad, [str(w.message) for w in bad]
    return em


def held_out(em, X, Y):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "mahalanobis", UserWarning)
        return validation.held_out(em, X, Y)


def sparse_copy_of(exact: GPEmulator) -> SparseGPEmulator:
    """A SparseGPEmulator with the exact GP's hyperparameters and every run inducing."""
    state = dict(exact.state_dict())
    rename = {
        "covar_module.base_kernel.raw_lengthscale": "covar_module.base_kernel.base_kernel."
        "raw_lengthscale",
        "covar_module.raw_outputscale": "covar_module.base_kernel.raw_outputscale",
    }
    for old, new in rename.items():
        state[f"param/{new}"] = state.pop(f"param/{old}")
    u = (exact.training_inputs - state["input_lower"]) / (
        state["input_upper"] - state["input_lower"]
    )
    state["param/covar_module.inducing_points"] = np.broadcast_to(
        u, (exact.n_outputs, *u.shape)
    ).copy()
    state.update(
        {
            "class": "SparseGPEmulator",
            "version": "1",
            "n_inducing": float(exact.n_train),
            "learn_inducing": 0.0,
            "predictive_noise": 0.0,
        }
    )
    return SparseGPEmulator.from_state_dict(state)


# ------------------------------------------------------------- the exact GP as the limit
def test_every_run_inducing_is_the_exact_gp(fitted, train_data):
    """With Z = X the SGPR predictive equals the exact GP's (module docstring)."""
    Xn, _, lo, hi = train_data
    sp = sparse_copy_of(fitted)
    Xs = lo + design(25, 3, 7) * (hi - lo)
    a, b = sp.predict(Xs, full_cov=True), fitted.predict(Xs, full_cov=True)
    sd = fitted.training_outputs.std(0)
    # the fixture's nugget ratio ≥ 1e-6 bounds cond(B) by ~n / 1e-6: agreement to 1e-8 of
    # the output sd is rounding of that conditioning, not an approximation
    np.testing.assert_allclose(a.mean / sd, b.mean / sd, rtol=0, atol=1e-8)
    np.testing.assert_allclose(a.var / sd**2, b.var / sd**2, rtol=0, atol=1e-8)
    np.testing.assert_allclose(
        a.cov / (sd**2)[:, None, None], b.cov / (sd**2)[:, None, None], atol=1e-8
    )
    xw = torch.as_tensor(Xs.reshape(5, 5, 3))
    ms, cs = sp.predict_torch(xw)
    me, ce = fitted.predict_torch(xw)
    sdt = torch.as_tensor(sd)
    torch.testing.assert_close(ms / sdt, me / sdt, rtol=0, atol=1e-8)
    torch.testing.assert_close(
        cs / sdt[:, None, None] ** 2, ce / sdt[:, None, None] ** 2, rtol=0, atol=1e-8
    )
    # and the sparse model's leave-one-out is the exact one's (Woodbury on K̃ = K + σ²I
    # against the exact GP's K⁻¹ from its Cholesky: rounding of cond(K) ~ 1e6)
    (sm, sv), (em, ev) = sp.loo(), fitted.loo()
    np.testing.assert_allclose(sm / sd, em / sd, rtol=0, atol=1e-6)
    np.testing.assert_allclose(sv / sd**2, ev / sd**2, rtol=0, atol=1e-6)


# ----------------------------------------------------------------- a fitted sparse GP
@pytest.fixture(scope="module")
def sparse_fit():
    X = design(200, 3, 0)
    Y = np.column_stack([wavy3(X), 100 * X[:, 0] * X[:, 1] + 5])
    em = quiet_fit(SparseGPEmulator(n_inducing=60, n_restarts=1, seed=0), X, Y)
    return em, X, Y


def test_predict_matches_a_dense_titsias_reference(sparse_fit):
    """predict's own algebra against Titsias's (2009) predictive written another way:
    mean ``μ + Q_*x (Q_xx + σ²I)⁻¹ r`` by a dense solve; variance
    ``k_** − K_*z K_zz⁻¹ K_z* + K_*z Σ K_z*`` with ``Σ⁻¹ = K_zz + σ⁻² K_zx K_xz = GᵀG``,
    ``G = [K_xz / σ; L_zᵀ]`` factored by QR (an explicit ``Σ`` loses the small variances
    to rounding when ``cond(K_zz)`` is 1e10, as for the smooth second output)."""
    from emulators.gp import kernel_matrix

    em, X, _ = sparse_fit
    Xs = design(50, 3, 3)
    em.predictive_noise = False
    em._selections.clear()
    try:
        p = em.predict(Xs)
    finally:
        em.predictive_noise = True
        em._selections.clear()
    with torch.no_grad():
        tx, ty = em._scaled_train()
        us = torch.as_tensor((Xs - X.min(0)) / (X.max(0) - X.min(0)))
        zt, zs = tx[0] / em._ls[:, None, :], us / em._ls[:, None, :]
        Kzz = kernel_matrix(em._zz, em._zz, em.kernel, em._os).numpy()
        Kzx = kernel_matrix(em._zz, zt, em.kernel, em._os).numpy()
        Kzs = kernel_matrix(em._zz, zs, em.kernel, em._os).numpy()
        r = (ty - em._mean_fn(tx[0])).numpy()
        mu = em._mean_fn(us).numpy()
    s2 = em._noise.numpy()
    for j in range(2):
        Qxx = Kzx[j].T @ np.linalg.solve(Kzz[j], Kzx[j])
        Qsx = Kzs[j].T @ np.linalg.solve(Kzz[j], Kzx[j])
        mean = mu[j] + Qsx @ np.linalg.solve(Qxx + s2[j] * np.eye(len(r[j])), r[j])
        Lz = np.linalg.cholesky(Kzz[j])
        Rg = np.linalg.qr(np.vstack([Kzx[j].T / np.sqrt(s2[j]), Lz.T]), mode="r")
        V1, V3 = np.linalg.solve(Lz, Kzs[j]), np.linalg.solve(Rg.T, Kzs[j])
        var = em._os[j].item() - (V1**2).sum(0) + (V3**2).sum(0)
        sd = em._y_scale[j]
        # the dense reference forms K_zz⁻¹ K_zx with cond(K_zz) up to 1e10: its mean is good
        # to ~1e-8 of the sd; the QR variances agree with ours to rounding relative to σ²_f
        np.testing.assert_allclose(p.mean[:, j], mean * sd + em._y_mean[j], rtol=0, atol=1e-7 * sd)
        np.testing.assert_allclose(
            p.var[:, j], var * sd**2, rtol=0, atol=1e-10 * sd**2 * em._os[j].item()
        )


def test_accuracy_on_a_smooth_function(sparse_fit):
    em, _, _ = sparse_fit
    Xt = design(400, 3, 1)
    Yt = np.column_stack([wavy3(Xt), 100 * Xt[:, 0] * Xt[:, 1] + 5])
    res = held_out(em, Xt, Yt)
    assert res.nrmse.max() < 2e-2, res.nrmse  # measured
    assert np.all(res.coverage95 >= 0.9), res.coverage95
    assert em._R.shape[-1] == 60


def test_predict_torch_agrees_and_is_differentiable(sparse_fit):
    em, _, _ = sparse_fit
    Xs = design(12, 3, 4)
    p = em.predict(Xs, full_cov=True)
    mean, cov = em.predict_torch(torch.as_tensor(Xs.reshape(3, 4, 3)))
    np.testing.assert_allclose(mean.reshape(12, 2).numpy(), p.mean, rtol=1e-12, atol=1e-12)
    diag = torch.diagonal(cov, dim1=-2, dim2=-1).permute(0, 2, 1).reshape(12, 2)
    # a variance is k** − VᵀV, a difference of numbers of order σ²_f: rounding relative to it
    prior_var = em._os.numpy() * em._y_scale**2
    np.testing.assert_allclose(diag.numpy(), p.var, rtol=0, atol=1e-13 * prior_var.max())
    m1, c1 = em.predict_torch(torch.as_tensor(Xs.reshape(3, 4, 3)), outputs=[1])
    torch.testing.assert_close(m1, mean[..., 1:], rtol=0, atol=0)
    torch.testing.assert_close(c1, cov[:, 1:], rtol=0, atol=0)
    x = torch.as_tensor(Xs[:4]).requires_grad_(True)
    m, c = em.predict_torch(x)
    (m.sum() + c.sum()).backward()
    assert torch.isfinite(x.grad).all()
    # central difference of the mean in one input; with h = 1e-6 the rounding of predict
    # (amplified by the large weights w of a cond(K_zz) ~ 1e10 fit) gave 2e-3 relative,
    # with h = 1e-4 truncation and rounding together 2e-5: the bar is 1e-4
    h = 1e-4
    xp, xm = Xs[:1].copy(), Xs[:1].copy()
    xp[0, 0] += h
    xm[0, 0] -= h
    fd = (em.predict(xp).mean - em.predict(xm).mean) / (2 * h)
    x1 = torch.as_tensor(Xs[:1]).requires_grad_(True)
    em.predict_torch(x1)[0][0, 0].backward()
    np.testing.assert_allclose(float(x1.grad[0, 0]), fd[0, 0], rtol=1e-4)


def test_state_dict_round_trip_is_exact(sparse_fit):
    em, _, _ = sparse_fit
    state = em.state_dict()
    assert state["class"] == "SparseGPEmulator"
    assert all(isinstance(v, (np.ndarray, str, float)) for v in state.values())
    em2 = SparseGPEmulator.from_state_dict(state)
    Xs = design(30, 3, 5)
    a, b = em.predict(Xs, full_cov=True), em2.predict(Xs, full_cov=True)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.cov, b.cov)
    with pytest.raises(ValueError, match="expected class 'SparseGPEmulator'"):
        SparseGPEmulator.from_state_dict({**state, "class": "GPEmulator"})
    for key in ("train_outputs", "param/covar_module.inducing_points"):
        bad = dict(state)
        bad[key] = np.full_like(state[key], np.nan)
        with pytest.raises(ValueError, match="damaged"):
            SparseGPEmulator.from_state_dict(bad)


def test_loo_is_close_to_refitting_free_conditioning(sparse_fit):
    """Closed-form LOO equals conditioning the sparse model's covariance on n − 1 runs."""
    em, X, Y = sparse_fit
    mean, var = em.loo()
    # brute force for a few runs: K̃ = Q + σ²I of the standardized outputs
    with torch.no_grad():
        tx, ty = em._scaled_train()
        u = tx[0]
        from emulators.gp import kernel_matrix

        zt = u.unsqueeze(0) / em._ls[:, None, :]
        Kzz = kernel_matrix(em._zz, em._zz, em.kernel, em._os)
        Kzx = kernel_matrix(em._zz, zt, em.kernel, em._os)
        Q = Kzx.transpose(-1, -2) @ torch.linalg.solve(Kzz, Kzx)
        Kt = Q + em._noise[:, None, None] * torch.eye(len(u), dtype=torch.float64)
        r = ty - em._mean_fn(u)
    for i in (0, 17, 199):
        keep = np.arange(len(u)) != i
        for j in range(2):
            K = Kt[j].numpy()
            w = np.linalg.solve(K[np.ix_(keep, keep)], K[keep, i])
            mu = w @ r[j, keep].numpy() + (ty[j, i] - r[j, i]).item()
            v = K[i, i] - K[keep, i] @ w
            s = em._y_scale[j]
            np.testing.assert_allclose(mean[i, j], mu * s + em._y_mean[j], rtol=1e-6)
            np.testing.assert_allclose(var[i, j], v * s**2, rtol=1e-5)


# -------------------------------------------------------------- easy simulators, no crash
@pytest.mark.parametrize(
    "case",
    ["smooth", "linear", "constant_in_one_input"],
)
def test_easy_simulators_fit_without_a_crash(case):
    X, Xt = design(80, 3, 0), design(200, 3, 1)
    f = {
        "smooth": lambda X: (X**2).sum(1) + X[:, 0] * X[:, 1],
        "linear": lambda X: 3.0 + X @ [1.0, 2.0, -0.5],
        "constant_in_one_input": lambda X: np.sin(4 * X[:, 0]) + X[:, 1] ** 2,
    }[case]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        em = SparseGPEmulator(n_inducing=30, n_restarts=1, seed=0).fit(X, f(X))
    res = held_out(em, Xt, f(Xt))
    # measured: smooth 1e-3, linear 1e-15 (linear mean), inert 4e-3
    assert res.nrmse_total < (1e-8 if case == "linear" else 2e-2), res.nrmse_total
    assert np.all(res.coverage95 >= 0.9), res.coverage95
    if case == "linear":
        assert em.mean_ == "linear"


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_inducing"):
        SparseGPEmulator(n_inducing=0)
    with pytest.raises(ValueError, match="n_inducing"):
        SparseGPEmulator(n_inducing=2.5)
    with pytest.raises(RuntimeError, match="call fit"):
        SparseGPEmulator().predict(np.zeros((1, 2)))


# ------------------------------------------------------- a calibration and its archive
def _line(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.array([t[0] + t[1] * x[0] + 0.3 * np.sin(3 * t[0])])


# a short fit and a short chain: their convergence warnings are expected here
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_calibrator_archive_round_trip(tmp_path):
    """Emulator mode with the sparse emulator: sampled into an archive, loaded back by its
    registered plug-in name (``sparse_gp``), the same chain and the same predictions."""
    import calib
    from calib import Calibrator, Campaign, Parameter
    from calib.design import Design
    from calib.priors import Normal
    from calib.runner import run_design
    from simulators import FunctionSimulator

    assert calib.plugins.list("calib.emulators")["sparse_gp"] == "emulators:SparseGPEmulator"
    path = tmp_path / "study.h5"
    sim = FunctionSimulator(_line, ("x",), ("a", "b"), ("y",))
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.uniform(0, 1, 40), rng.uniform(-1, 2, 40), rng.uniform(-1, 2, 40)])
    runs = run_design(sim, Design(("x", "a", "b"), X, 1), archive=path)
    # a short optimization: this test is about persistence, not accuracy
    em = SparseGPEmulator(n_inducing=25, n_restarts=1, adam_iter=20, lbfgs_iter=40, seed=0)
    em.fit(runs.inputs, runs.outputs)
    xo = np.linspace(0, 1, 6)
    y = 0.5 + 1.0 * xo + 0.3 * np.sin(1.5) + 0.05 * rng.standard_normal(6)
    cal = Calibrator(
        em,
        [Parameter("a", -1, 2), Parameter("b", -1, 2, prior=Normal(1, 1))],
        [Campaign("lab", x=xo, y=y, noise_sd=0.05)],
        noise="known",
        input_names=("x",),
    )
    post = cal.sample(8, 40, seed=2, archive=path, autocorr_stop=False, checkpoint_every=20)
    back = calib.load(path)
    assert type(back.calibrator.model_object) is SparseGPEmulator
    np.testing.assert_array_equal(back.chain, post.chain)
    np.testing.assert_array_equal(back.log_prob, post.log_prob)
    e1 = back.calibrator.model_object.predict(runs.inputs[:5], full_cov=True)
    e2 = post.calibrator.model_object.predict(runs.inputs[:5], full_cov=True)
    np.testing.assert_array_equal(e1.mean, e2.mean)
    np.testing.assert_array_equal(e1.cov, e2.cov)
    Xn = np.linspace(0, 1, 4).reshape(-1, 1)
    a, b = back.predict(Xn, n_draws=30), post.predict(Xn, n_draws=30)
    np.testing.assert_array_equal(a.mean, b.mean)
