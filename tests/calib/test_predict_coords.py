"""Predictions at any output coordinates: ``post.predict(X, campaign, coords=)`` (issue 16,
item 2), calib/_predict_coords.py and ``coords=`` of calib.conditional.predictive.

The drop-time field of tests/reference/drop_field.py: simulator heights 1.5, 3,
…, 24 m, field heights 5, 10, 15, 20 m (15 m is a simulator height). The posteriors are
prior draws (the predictions are a function of the draws, however they were made).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from calib import Calibrator, Campaign, Discrepancy, Parameter, Posterior
from calib._predict_coords import check_coords
from calib.conditional import conditional_mean, predictive
from calib.priors import HalfNormal, LogNormal
from simulators import FunctionSimulator

# the drop-time field shared with the other coordinate tests (tests/reference/drop_field.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
from drop_field import FIELD, R_FIELD, X_NEW, H, fit_basis  # noqa: E402
from drop_field import drop as _drop  # noqa: E402
from drop_field import sim as _sim  # noqa: E402

# new heights between the simulator's (2, 12.5, 23.9), a campaign's own (5, 20), a simulator
# height (15)
AT = np.array([2.0, 5.0, 12.5, 15.0, 20.0, 23.9])
Y_FIELD = np.array(
    [[1.2548, 2.0018, 2.8081, 3.6263], [1.1053, 1.6583, 2.1734, 2.6573], [1.0423, 1.5105, 1.9441, 2.3496]]
)  # fmt: skip
DISC = Discrepancy("shared", scale_prior=HalfNormal(0.05), lengthscale_prior=LogNormal(0.0, 0.5))


@pytest.fixture(scope="module")
def basis():
    return fit_basis()[0]


def _cal(mode: str, basis=None, own: bool = True) -> Calibrator:
    """One campaign at its own heights (``own``) or the same entries at simulator heights
    as a NaN-masked y (the model then has no virtual outputs)."""
    if own:
        camp = Campaign("field", x=R_FIELD, y=Y_FIELD, coords=FIELD, noise_sd=0.01)
    else:
        y = np.full((3, 16), np.nan)
        y[:, [2, 6, 9, 13]] = Y_FIELD  # 4.5, 10.5, 15, 21 m
        camp = Campaign("field", x=R_FIELD, y=y, noise_sd=0.01)
    model = _sim() if mode == "direct" else basis
    extra = {} if mode == "direct" else {"output_coords": H, "input_names": ("R",)}
    return Calibrator(
        model, [Parameter("C", 0, 1)], [camp], discrepancy=DISC, noise="known", **extra
    )


def _U(cal: Calibrator, n: int = 6) -> np.ndarray:
    return cal.model.sample_prior(np.random.default_rng(3), n)


def _post(cal: Calibrator) -> Posterior:
    U = _U(cal)
    return Posterior(cal, U.reshape(2, 3, -1), np.zeros((2, 3)), np.ones(3), burn=0)


def _t(U: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(U, dtype=torch.float64, device="cpu")


# --------------------------------------------------------------------- (1) simulator heights
@pytest.mark.parametrize("own", [True, False])
def test_at_simulator_heights_it_is_the_prediction_of_those_outputs(own):
    post = _post(_cal("direct", own=own))
    cols = [0, 2, 9, 15]
    for method in ("predict", "discrepancy"):
        full = getattr(post, method)(X_NEW, "field", n_draws=None)
        at = getattr(post, method)(X_NEW, "field", n_draws=None, coords=H[cols])
        assert at.mean.shape == (2, 4) and at.draws.shape == (6, 2, 4)
        np.testing.assert_allclose(at.mean, full.mean[:, cols], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(at.sd, full.sd[:, cols], rtol=1e-12, atol=1e-15)
        assert at.output_names == ("t0", "t2", "t9", "t15")
        np.testing.assert_array_equal(at.coords, H[cols, None])
        assert full.output_names == tuple(f"t{k}" for k in range(16))
        np.testing.assert_array_equal(full.coords, H[:, None])


# --------------------------------------------------------------------- (2) between them
def _reference(cal, U, X_new, at, what, basis=None):
    """The conditional of eq. 9 written out in numpy: shared RBF δ on (R, s), known noise,
    every observed entry and every new one at its own height. Direct mode: the simulator
    interpolated linearly between its heights by np.interp. Emulator mode: the basis
    emulator's mean and per-output covariance at every height, by its weights= hook with
    np.interp's weights; its covariance couples entries at the same height only."""
    model = cal.model
    with torch.no_grad():
        parts = model._unpack(_t(U))
    sc, ls = parts["disc_scale"].numpy(), parts["disc_ls"].numpy()
    theta = parts["theta"].numpy()[:, 0, 0]
    ri, ci = np.nonzero(np.isfinite(Y_FIELD))
    s_o = FIELD[ci]
    ii, jj = np.repeat(np.arange(len(X_new)), at.size), np.tile(np.arange(at.size), len(X_new))
    s_n = at[jj]
    z_o, z_n = np.column_stack([R_FIELD[ri], s_o]), np.column_stack([X_new[ii, 0], s_n])
    n, S = len(R_FIELD), U.shape[0]
    heights = np.unique(np.concatenate([FIELD, at]))
    ho, hn = np.searchsorted(heights, s_o), np.searchsorted(heights, s_n)
    if basis is not None:
        A = np.array([np.interp(heights, H, e) for e in np.eye(H.size)]).T  # (K, 16)
        rows = np.concatenate([R_FIELD, X_new[:, 0]])
        inputs = np.stack([np.column_stack([rows, np.full(rows.size, t)]) for t in theta])
        with torch.no_grad():
            mu, ec = basis.predict_torch(_t(inputs), weights=A)
        mu, ec = mu.numpy(), ec.numpy()  # (S, n + n*, K), (S, K, n + n*, n + n*)

    def k(a, b, s, lsc):
        d = (a[:, None, :] - b[None, :, :]) / lsc
        return s**2 * np.exp(-0.5 * (d**2).sum(-1))

    def eta(R, t, h):
        return np.array(
            [np.interp(h, H, row) for row in _drop(R[:, None], np.full((R.size, 1), t))]
        )

    means, covs = [], []
    for s in range(S):
        C = k(z_o, z_o, sc[s], ls[s]) + np.diag(np.full(len(z_o), 0.01**2 + model.jitter))
        Kno, Knn = k(z_n, z_o, sc[s], ls[s]), k(z_n, z_n, sc[s], ls[s])
        if basis is not None:
            eta_o, eta_n = mu[s, ri, ho], mu[s, n + ii, hn]
            C = C + (ho[:, None] == ho) * ec[s, ho[:, None], ri[:, None], ri]
            if what == "reality":
                Kno = Kno + (hn[:, None] == ho) * ec[s, hn[:, None], n + ii[:, None], ri]
                Knn = Knn + (hn[:, None] == hn) * ec[s, hn[:, None], n + ii[:, None], n + ii]
        else:
            eta_o = eta(R_FIELD, theta[s], FIELD)[ri, ci]
            eta_n = eta(X_new[:, 0], theta[s], at)[ii, jj]
        mean = Kno @ np.linalg.solve(C, Y_FIELD[ri, ci] - eta_o)
        if what == "reality":
            mean = mean + eta_n
        means.append(mean.reshape(len(X_new), at.size))
        covs.append(Knn - Kno @ np.linalg.solve(C, Kno.T))
    return np.array(means), np.array(covs)


@pytest.mark.parametrize("what", ["reality", "discrepancy"])
@pytest.mark.parametrize("mode", ["direct", "emulator"])
def test_between_heights_it_is_the_exact_conditional(basis, mode, what):
    cal = _cal(mode, basis)
    U = _U(cal)
    mean, cov, failed = predictive(cal.model, _t(U), X_NEW, 0, what, coords=AT)
    want_m, want_c = _reference(cal, U, X_NEW, AT, what, basis if mode == "emulator" else None)
    assert not failed.any() and mean.shape == (6, 2, 6) and cov.shape == (6, 12, 12)
    np.testing.assert_allclose(mean.numpy(), want_m, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cov.numpy(), want_c, rtol=1e-7, atol=1e-12)
    # the posterior's summary is the average of these conditionals
    post = _post(cal)
    pred = getattr(post, "predict" if what == "reality" else "discrepancy")(
        X_NEW, "field", n_draws=None, coords=AT
    )
    np.testing.assert_allclose(pred.mean, want_m.mean(axis=0), rtol=1e-9, atol=1e-12)
    t9 = "t9" if mode == "direct" else "y9"  # an emulator's outputs are y0, y1, … by default
    assert pred.output_names == ("s=2", "s=5", "s=12.5", t9, "s=20", "s=23.9")
    np.testing.assert_array_equal(pred.coords[:, 0], AT)


def test_a_model_without_own_coordinates_predicts_between_its_heights():
    cal = _cal("direct", own=False)
    U = _U(cal)
    model = cal.model
    assert model.field is None
    at = np.array([2.0, 12.5])
    mean, cov, _ = predictive(model, _t(U), X_NEW, 0, "reality", coords=at)
    # direct mode, known noise, δ on (R, s): the same conditional with the data at their
    # simulator heights, and δ's features there
    with torch.no_grad():
        parts = model._unpack(_t(U))
    sc, ls = parts["disc_scale"].numpy(), parts["disc_ls"].numpy()
    theta = parts["theta"].numpy()[:, 0, 0]
    ri, ci = np.nonzero(np.isfinite(Y_FIELD))
    s_o = H[[2, 6, 9, 13]][ci]
    ii, jj = np.repeat([0, 1], 2), np.tile([0, 1], 2)
    z_o, z_n = np.column_stack([R_FIELD[ri], s_o]), np.column_stack([X_NEW[ii, 0], at[jj]])

    def k(a, b, s):
        return sc[s] ** 2 * np.exp(-0.5 * (((a[:, None] - b[None]) / ls[s]) ** 2).sum(-1))

    for s in range(U.shape[0]):
        C = k(z_o, z_o, s) + np.eye(len(z_o)) * (0.01**2 + model.jitter)
        full_o = _drop(R_FIELD[:, None], np.full((3, 1), theta[s]))
        full_n = _drop(X_NEW, np.full((2, 1), theta[s]))
        eta_o = np.array([np.interp(s_o[e], H, full_o[ri[e]]) for e in range(len(ri))])
        eta_n = np.array([np.interp(at[jj[e]], H, full_n[ii[e]]) for e in range(4)])
        want = eta_n + k(z_n, z_o, s) @ np.linalg.solve(C, Y_FIELD[ri, ci] - eta_o)
        np.testing.assert_allclose(mean[s].numpy().reshape(-1), want, rtol=1e-9, atol=1e-12)
        want_c = k(z_n, z_n, s) - k(z_n, z_o, s) @ np.linalg.solve(C, k(z_o, z_n, s))
        np.testing.assert_allclose(cov[s].numpy(), want_c, rtol=1e-7, atol=1e-12)


# --------------------------------------------------------------------- (3) "campaign"
@pytest.mark.parametrize("mode", ["direct", "emulator"])
def test_campaign_is_the_campaigns_own_columns(basis, mode):
    cal = _cal(mode, basis)
    model, U = cal.model, _U(cal)
    cols = model.field.columns[0]
    for what in ("reality", "discrepancy"):
        want = predictive(model, _t(U), X_NEW, 0, what, outputs=cols)
        for coords in ("campaign", FIELD):
            got = predictive(model, _t(U), X_NEW, 0, what, coords=coords)
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w, rtol=0, atol=0)
    post = _post(cal)
    pred = post.predict(X_NEW, "field", n_draws=None, coords="campaign")
    want = conditional_mean(model, post.flat_unconstrained(), X_NEW, 0, "reality", cols)
    np.testing.assert_allclose(pred.mean, want, rtol=1e-12, atol=1e-15)
    t9 = "t9" if mode == "direct" else "y9"  # an emulator's outputs are y0, y1, … by default
    assert pred.output_names == ("s=5", "s=10", t9, "s=20")
    np.testing.assert_array_equal(pred.coords[:, 0], FIELD)
    # with noise, a new campaign: the shapes follow the coordinates
    noisy = post.predict(X_NEW, "field", noise=True, n_draws=None, coords=[12.5])
    assert noisy.mean.shape == (2, 1) and noisy.output_names == ("s=12.5",)
    assert np.all(noisy.sd > post.predict(X_NEW, "field", n_draws=None, coords=[12.5]).sd)
    new = post.predict_new_campaign(X_NEW, n_draws=None, coords=[2.0, 15.0])
    assert new.mean.shape == (2, 2) and new.output_names == ("s=2", t9)


def test_campaign_without_coordinates_of_its_own_is_the_models_outputs():
    post = _post(_cal("direct", own=False))
    a = post.predict(X_NEW, "field", n_draws=None, coords="campaign")
    b = post.predict(X_NEW, "field", n_draws=None)
    np.testing.assert_array_equal(a.mean, b.mean)
    assert a.output_names == b.output_names


# --------------------------------------------------------------------- (4) refusals
@pytest.mark.parametrize(
    "coords, message",
    [
        ([5.0, 30.0], r"^coords\[1\] = 30 is outside the range of the model's output coordinates \[1\.5, 24\]"),
        ([1.0], r"^coords\[0\] = 1 is outside the range .* \[1\.5, 24\]; calib interpolates"),
        ([5.0, np.nan], r"^coords contains NaN or inf"),
        ([[5.0, 1.0]], r"^coords: expected shape \(k,\) or \(k, 1\), k ≥ 1 .* got \(1, 2\)"),
        ([], r"^coords: expected shape .* got \(0,\)"),
        ("own", r"^coords: expected 'campaign' or an array, got 'own'"),
        (["a"], r"^coords: expected an array of numbers"),
    ],
)  # fmt: skip
def test_bad_coords_are_refused_before_any_work(monkeypatch, coords, message):
    post = _post(_cal("direct"))

    def work(*a, **k):
        raise AssertionError("the conditional was computed")

    monkeypatch.setattr("calib.prediction.predictive", work)
    for call in (post.predict, post.discrepancy):
        with pytest.raises(ValueError, match=message):
            call(X_NEW, "field", coords=coords)
    with pytest.raises(ValueError, match=message):
        post.predict_new_campaign(X_NEW, coords=coords)


def test_other_refusals():
    cal = _cal("direct")
    post = _post(cal)
    with pytest.raises(ValueError, match=r"^coords='campaign': a new campaign has no coord"):
        post.predict_new_campaign(X_NEW, coords="campaign")
    with pytest.raises(ValueError, match=r"^give outputs= or coords=, not both"):
        predictive(cal.model, _t(_U(cal)), X_NEW, 0, "reality", outputs=[0], coords=[5.0])
    with pytest.raises(ValueError, match=r"^coords\[0\] = 25 is outside"):
        predictive(cal.model, _t(_U(cal)), X_NEW, 0, "reality", coords=[25.0])
    # outputs without coordinates
    sim = FunctionSimulator(lambda X, T: np.hstack([X + T, X - T]), ("x",), ("c",), ("a", "b"))
    flat = Calibrator(
        sim, [Parameter("c", 0, 1)], [Campaign("f", x=[0.1, 0.5], y=[[0.3, 0.0], [0.7, 0.1]])]
    )
    flat_post = _post(flat)
    with pytest.raises(ValueError, match=r"^coords: given, but the model's outputs have no coord"):
        flat_post.predict([[0.2]], coords=[0.5])
    pred = flat_post.predict([[0.2]], n_draws=None)
    assert pred.coords is None and pred.output_names == ("a", "b")
    # two coordinates per output: the model's own only
    stub = SimpleNamespace(output_coords=np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
    np.testing.assert_array_equal(check_coords(stub, [[1.0, 0.0]]), [[1.0, 0.0]])
    with pytest.raises(ValueError, match=r"^coords\[1\] = \(0\.5, 0\) is not one of the model's"):
        check_coords(stub, [[1.0, 0.0], [0.5, 0.0]])
    with pytest.raises(ValueError, match=r"^coords: expected shape \(k, 2\)"):
        check_coords(stub, [1.0, 0.0])
