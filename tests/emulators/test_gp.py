"""GPEmulator: exactness against a hand-written GP, the torch path, persistence, errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from calib.interfaces import Emulator, Prediction
from emulators import ConvergenceWarning, GPEmulator


def numpy_gp(em: GPEmulator, Xn: np.ndarray, Xstar: np.ndarray, Y: np.ndarray):
    """Textbook GP (R&W Algorithm 2.1) in NumPy with the emulator's hyperparameters."""
    h = em.hyperparameters()
    lo, hi = Xn.min(0), Xn.max(0)
    U, Us = (Xn - lo) / (hi - lo), (Xstar - lo) / (hi - lo)
    ym, ys = Y.mean(0), Y.std(0)
    means, vars_, covs = [], [], []
    for k in range(Y.shape[1]):
        ls, s2, nug = h["lengthscale"][k], h["outputscale"][k], h["noise"][k]

        def kern(A, B, ls=ls, s2=s2):
            r = np.sqrt(np.maximum(((A[:, None, :] - B[None, :, :]) / ls) ** 2, 0).sum(-1))
            if em.kernel == "rbf":
                return s2 * np.exp(-0.5 * r**2)
            return s2 * (1 + math.sqrt(5) * r + 5 / 3 * r**2) * np.exp(-math.sqrt(5) * r)

        mu = lambda A, k=k: h["mean_constant"][k] + A @ h["mean_weights"][k]  # noqa: E731
        z = (Y[:, k] - ym[k]) / ys[k]
        K = kern(U, U) + nug * np.eye(len(U))
        Ks = kern(Us, U)
        a = np.linalg.solve(K, z - mu(U))
        m = mu(Us) + Ks @ a
        C = kern(Us, Us) - Ks @ np.linalg.solve(K, Ks.T)
        means.append(m * ys[k] + ym[k])
        covs.append(C * ys[k] ** 2)
        vars_.append(np.diag(covs[-1]))
    return np.array(means).T, np.array(vars_).T, np.array(covs)


@pytest.mark.parametrize("which", ["fitted", "fitted_rbf_linear"])
def test_predict_equals_numpy_gp(which, request, train_data):
    em = request.getfixturevalue(which)
    Xn, Y, lo, hi = train_data
    Xs = lo + np.random.default_rng(5).uniform(size=(15, 3)) * (hi - lo)
    pred = em.predict(Xs, full_cov=True)
    m, v, c = numpy_gp(em, Xn, Xs, Y)
    scale = Y.std(0)
    np.testing.assert_allclose(pred.mean, m, rtol=0, atol=1e-8 * scale.max())
    np.testing.assert_allclose(pred.var / scale**2, v / scale**2, rtol=0, atol=1e-8)
    np.testing.assert_allclose(
        pred.cov / (scale**2)[:, None, None], c / (scale**2)[:, None, None], rtol=0, atol=1e-8
    )
    assert isinstance(pred, Prediction) and pred.mean.dtype == np.float64
    assert isinstance(em, Emulator)


@pytest.mark.parametrize("which", ["fitted", "fitted_rbf_linear"])
def test_predict_torch_equals_predict(which, request, train_data):
    em = request.getfixturevalue(which)
    _, Y, lo, hi = train_data
    rng = np.random.default_rng(7)
    Xs = lo + rng.uniform(size=(3, 8, 3)) * (hi - lo)  # 3 walkers x 8 points
    mean, cov = em.predict_torch(torch.as_tensor(Xs))
    assert mean.shape == (3, 8, 2) and cov.shape == (3, 2, 8, 8)
    assert mean.dtype == torch.float64 and cov.dtype == torch.float64
    s2 = (Y.std(0) ** 2)[:, None, None]
    for w in range(3):
        pred = em.predict(Xs[w], full_cov=True)
        sd = np.sqrt(s2[:, 0, 0])
        np.testing.assert_allclose(mean[w].numpy() / sd, pred.mean / sd, rtol=0, atol=1e-10)
        np.testing.assert_allclose(cov[w].numpy() / s2, pred.cov / s2, rtol=0, atol=1e-10)
    m2, c2 = em.predict_torch(torch.as_tensor(Xs[1]))  # (n, d) form
    assert m2.shape == (8, 2) and c2.shape == (2, 8, 8)
    # same algebra, different GEMM blocking (1 vs 3 walkers side by side): the paths
    # differ by rounding, bounded by eps * cond(K) ~ 1e-10 for these fixtures
    sd = np.sqrt(s2[:, 0, 0])
    np.testing.assert_allclose(m2.numpy() / sd, mean[1].numpy() / sd, rtol=0, atol=1e-10)
    np.testing.assert_allclose(c2.numpy() / s2, cov[1].numpy() / s2, rtol=0, atol=1e-10)


def test_predict_torch_at_training_points_and_variance_floor(fitted, train_data):
    Xn, Y, _, _ = train_data
    mean, cov = fitted.predict_torch(torch.as_tensor(Xn[:5]))
    # interpolates (up to the nugget) and returns latent (nugget-free) variances
    np.testing.assert_allclose(mean.numpy(), Y[:5], rtol=0, atol=1e-3 * Y.std(0).max())
    assert torch.all(torch.diagonal(cov, dim1=-2, dim2=-1) >= -1e-10 * Y.var(0).max())


@pytest.mark.parametrize("which", ["fitted", "fitted_rbf_linear"])
def test_predict_torch_gradient_matches_finite_differences(which, request, train_data):
    em = request.getfixturevalue(which)
    _, _, lo, hi = train_data
    Xs = lo + np.random.default_rng(3).uniform(size=(2, 3, 3)) * (hi - lo)
    x = torch.as_tensor(Xs, dtype=torch.float64).requires_grad_(True)
    scale = torch.as_tensor(hi - lo)

    # on unit-cube coordinates so one finite-difference step suits every column
    def f(u):
        mean, cov = em.predict_torch(torch.as_tensor(lo) + u * scale)
        return mean / 1e3, cov / 1e6

    u = ((x - torch.as_tensor(lo)) / scale).detach().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (u,), eps=1e-6, atol=1e-6, rtol=1e-4)
    mean, cov = em.predict_torch(x)
    (mean.sum() + cov.sum()).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0


def test_state_dict_roundtrip(fitted, fitted_rbf_linear, train_data):
    _, _, lo, hi = train_data
    Xs = lo + np.random.default_rng(9).uniform(size=(20, 3)) * (hi - lo)
    for em in (fitted, fitted_rbf_linear):
        state = em.state_dict()
        for k, v in state.items():
            assert isinstance(v, (np.ndarray, str, float)), (k, type(v))
        em2 = GPEmulator.from_state_dict(state)
        a, b = em.predict(Xs, full_cov=True), em2.predict(Xs, full_cov=True)
        np.testing.assert_allclose(b.mean, a.mean, rtol=1e-12, atol=0)
        np.testing.assert_allclose(b.cov, a.cov, rtol=1e-12, atol=1e-12 * np.abs(a.cov).max())
        t = torch.as_tensor(Xs.reshape(2, 10, 3))
        (m1, c1), (m2, c2) = em.predict_torch(t), em2.predict_torch(t)
        assert torch.allclose(m1, m2, rtol=1e-12, atol=0)
        assert torch.allclose(c1, c2, rtol=1e-12, atol=1e-12 * float(c1.abs().max()))
        assert em2.n_inputs == 3 and em2.n_outputs == 2
    with pytest.raises(ValueError, match="state: expected class 'GPEmulator'"):
        GPEmulator.from_state_dict({"class": "Other"})


def _raw(state: dict, part: str) -> str:
    (key,) = [k for k in state if k.startswith("param/") and k.endswith(part)]
    return key


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda s: s.__setitem__(
                _raw(s, "raw_lengthscale"), np.full_like(s[_raw(s, "raw_lengthscale")], 1e308)
            ),
            "lengthscale 1e\\+308 is outside",
        ),
        (
            lambda s: s.__setitem__("output_scale", -np.ones_like(s["output_scale"])),
            "output_scale must be ≥ 0",
        ),
        (lambda s: s["train_inputs"].__setitem__((0, 0), np.nan), "train_inputs holds NaN"),
        (
            lambda s: s.__setitem__(
                _raw(s, "raw_outputscale"), np.full_like(s[_raw(s, "raw_outputscale")], -800.0)
            ),
            "outputscale .* is outside",
        ),
    ],
    ids=["lengthscale 1e308", "negative output scale", "NaN input", "outputscale 0"],
)
def test_a_damaged_state_is_refused(fitted, edit, message):
    # issue 13, item 3: an edited archive loaded these silently
    state = {
        k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in fitted.state_dict().items()
    }
    edit(state)
    with pytest.raises(ValueError, match=message):
        GPEmulator.from_state_dict(state)


def test_closed_form_loo_equals_brute_force(fitted_rbf_linear, fitted):
    for em in (fitted, fitted_rbf_linear):
        mean, var = em.loo()
        state = em.state_dict()
        nug = em.hyperparameters()["noise"] * em.state_dict()["output_scale"] ** 2
        for i in (0, 7, 29):
            sub = dict(state)
            keep = np.arange(em.n_train) != i
            sub["train_inputs"] = state["train_inputs"][keep]
            # standardization and scaling are hyperparameters here: keep them fixed
            sub["train_outputs"] = state["train_outputs"][keep]
            em_i = GPEmulator.from_state_dict(sub)
            em_i._lower, em_i._upper = state["input_lower"], state["input_upper"]
            em_i._y_mean, em_i._y_scale = state["output_mean"], state["output_scale"]
            em_i._finalize()
            p = em_i.predict(state["train_inputs"][i : i + 1])
            sd = state["output_scale"]
            np.testing.assert_allclose(mean[i] / sd, p.mean[0] / sd, rtol=0, atol=1e-8)
            np.testing.assert_allclose((var[i] - nug) / sd**2, p.var[0] / sd**2, rtol=0, atol=1e-8)
        # not vacuous: the held-out prediction differs from the training value
        assert np.max(np.abs(mean - em.training_outputs) / em.training_outputs.std(0)) > 1e-4


def test_one_dimensional_outputs_and_attributes(train_data):
    Xn, Y, _, _ = train_data
    em = GPEmulator(n_restarts=1, seed=0).fit(Xn, Y[:, 0])
    p = em.predict(Xn[:4])
    assert p.mean.shape == (4, 1) and p.var.shape == (4, 1) and p.cov is None
    assert em.n_inputs == 3 and em.n_outputs == 1 and em.n_mean_params == 1


def test_a_progress_bar_counts_the_optimizer_starts(train_data, capsys):
    Xn, Y, _, _ = train_data
    quiet = GPEmulator(n_restarts=2, seed=0).fit(Xn, Y[:, 0])  # not a terminal: no bar
    assert "emulator" not in capsys.readouterr().err
    shown = GPEmulator(n_restarts=2, seed=0).fit(Xn, Y[:, 0], progress=True)
    err = capsys.readouterr().err
    assert "emulator: 100%" in err and "2/2" in err, err
    # the bar changes nothing in the fit
    np.testing.assert_array_equal(quiet.predict(Xn[:3]).mean, shown.predict(Xn[:3]).mean)


def test_batched_outputs_match_separate_fits(train_data):
    """One batched model = independent GPs: same as fitting each output alone."""
    Xn, Y, _, _ = train_data
    both = GPEmulator(n_restarts=1, seed=0).fit(Xn, Y)
    one = GPEmulator(n_restarts=1, seed=0).fit(Xn, Y[:, 1])
    np.testing.assert_allclose(
        both.hyperparameters()["lengthscale"][1],
        one.hyperparameters()["lengthscale"][0],
        rtol=1e-4,
    )


def _nan_start(self, rng, start, orig=GPEmulator._draw_start):
    orig(self, rng, start)
    if start == 0:
        with torch.no_grad():
            self.model_.covar_module.base_kernel.raw_lengthscale.fill_(float("nan"))


def test_nan_start_is_discarded(monkeypatch, train_data):
    Xn, Y, _, _ = train_data
    monkeypatch.setattr(GPEmulator, "_draw_start", _nan_start)
    with pytest.warns(ConvergenceWarning, match="1 optimizer start"):
        em = GPEmulator(n_restarts=2, seed=0).fit(Xn, Y)
    assert em.n_failed_starts_ == 1
    assert all(np.isfinite(v).all() for v in em.hyperparameters().values())
    assert np.isfinite(em.predict(Xn[:3], full_cov=True).cov).all()


def test_nan_midway_through_optimization_is_detected(monkeypatch, train_data):
    Xn, Y, _, _ = train_data
    orig = GPEmulator._per_output_loss
    calls = {"n": 0}

    def flaky(self):
        calls["n"] += 1
        loss = orig(self)
        return loss * float("nan") if calls["n"] == 10 else loss  # an Adam step in start 0

    monkeypatch.setattr(GPEmulator, "_per_output_loss", flaky)
    with pytest.warns(ConvergenceWarning, match="non-finite"):
        em = GPEmulator(n_restarts=2, seed=0).fit(Xn, Y)
    assert em.n_failed_starts_ == 1
    assert np.isfinite(em.predict(Xn[:3]).mean).all()


def test_every_start_failing_gives_a_finite_model(monkeypatch, train_data):
    Xn, Y, _, _ = train_data
    monkeypatch.setattr(GPEmulator, "_run_start", lambda self: (False, False))
    with pytest.warns(ConvergenceWarning, match="every optimizer start failed"):
        em = GPEmulator(n_restarts=2, seed=0).fit(Xn, Y)
    assert np.isfinite(em.predict(Xn[:3]).var).all()


def test_hopeless_likelihood_is_a_clear_error(monkeypatch, train_data):
    Xn, Y, _, _ = train_data
    orig = GPEmulator._per_output_loss
    monkeypatch.setattr(GPEmulator, "_per_output_loss", lambda self: orig(self) * float("nan"))
    with pytest.warns(ConvergenceWarning), pytest.raises(RuntimeError, match="non-finite marginal"):
        GPEmulator(n_restarts=1, seed=0).fit(Xn, Y)


def test_unconverged_fit_warns(train_data):
    Xn, Y, _, _ = train_data
    with pytest.warns(ConvergenceWarning, match="iteration limit"):
        GPEmulator(n_restarts=1, adam_iter=0, lbfgs_iter=2).fit(Xn, Y)


def test_duplicates_warn_and_are_merged(train_data):
    Xn, Y, lo, hi = train_data
    X2, Y2 = np.vstack([Xn, Xn[:3]]), np.vstack([Y, Y[:3]])
    with pytest.warns(UserWarning, match="3 duplicated row"):
        em = GPEmulator(n_restarts=1).fit(X2, Y2)
    assert em.n_train == 30
    assert np.isfinite(em.predict(Xn[:3]).mean).all()


@pytest.mark.parametrize(
    "inputs, outputs, match",
    [
        (np.ones(30), None, r"inputs: expected a 2-D array \(n, d\), got shape \(30,\)"),
        (None, np.ones((29, 2)), "outputs: expected 30 rows .* got 29"),
        (None, np.ones((30, 2, 1)), r"outputs: expected shape \(n, m\) or \(n,\)"),
        ("nan_x", None, "inputs: expected finite values, got nan at row 4, column 1"),
        (None, "inf_y", "outputs: expected finite values, got inf at row 2, column 0"),
        ("few", "few", "inputs: expected at least 5 distinct runs for 3 input dimensions, got 4"),
    ],
)
def test_bad_training_data(inputs, outputs, match, train_data):
    Xn, Y, _, _ = train_data
    X, Yc = Xn.copy(), Y.copy()
    if isinstance(inputs, np.ndarray):
        X = inputs
    elif inputs == "nan_x":
        X[4, 1] = np.nan
    elif inputs == "few":
        X = X[:4]
    if isinstance(outputs, np.ndarray):
        Yc = outputs
    elif outputs == "inf_y":
        Yc[2, 0] = np.inf
    elif outputs == "few":
        Yc = Yc[:4]
    with pytest.raises(ValueError, match=match):
        GPEmulator(n_restarts=1).fit(X, Yc)


def test_bad_arguments_and_predict_inputs(fitted):
    with pytest.raises(ValueError, match="kernel: expected one of"):
        GPEmulator(kernel="matern32")
    with pytest.raises(ValueError, match="mean: expected one of"):
        GPEmulator(mean="quadratic")
    with pytest.raises(ValueError, match="device: expected 'cpu' or 'cuda'"):
        GPEmulator(device="tpu")
    with pytest.raises(ValueError, match="inputs: expected 3 columns .* got 2"):
        fitted.predict(np.ones((4, 2)))
    with pytest.raises(ValueError, match=r"inputs: expected shape \(W, n, 3\)"):
        fitted.predict_torch(torch.ones(2, 4, 2, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="call fit"):
        GPEmulator().predict(np.ones((2, 3)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_cuda_absent_is_a_clear_error():
    with pytest.raises(RuntimeError, match="device='cuda' was asked for but CUDA is not"):
        GPEmulator(device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(fitted, train_data):
    em = GPEmulator.from_state_dict(fitted.state_dict(), device="cuda")
    Xs = train_data[0][:5] * 1.01
    np.testing.assert_allclose(em.predict(Xs).mean, fitted.predict(Xs).mean, rtol=1e-9)
    m, c = em.predict_torch(torch.as_tensor(Xs))
    assert m.device.type == "cpu"


def test_training_is_deterministic(train_data):
    Xn, Y, _, _ = train_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = GPEmulator(n_restarts=2, seed=3).fit(Xn, Y).hyperparameters()
        b = GPEmulator(n_restarts=2, seed=3).fit(Xn, Y).hyperparameters()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_validation_result_prints_short(fitted, train_data):
    from emulators import validation

    X, Y, _, _ = train_data
    r = validation.held_out(fitted, X[:20], Y[:20])
    assert len(repr(r)) < 300 and "NRMSE" in repr(r) and "coverage" in repr(r)
    assert "\n" not in repr(r)
