"""Observations at their own output coordinates (``Campaign(coords=)``, issue 16 item 2).

A drop-time field like SEPIA's ball_drop_1: simulator heights 1.5, 3, …, 24 m, field
heights 5, 10, 15, 20 m (15 is a simulator height, the others are not).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import calib
from calib import Calibrator, Campaign, Parameter
from calib._field_coords import FieldOutputs
from calib.archive import read_study
from emulators import GPEmulator
from simulators import FunctionSimulator

# the drop-time field shared with the other coordinate tests (tests/reference/drop_field.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
from drop_field import FIELD, R_FIELD, G, H, fit_basis  # noqa: E402
from drop_field import drop as _drop  # noqa: E402
from drop_field import sim as _sim  # noqa: E402


def _curvature_bound(R: np.ndarray, C: float, lo: float, hi: float) -> float:
    """max |f''| on [lo, hi] for f(h) = a √h + b h^{3/2}: |f''| ≤ a/4 h^{-3/2} + 3b/4 h^{-1/2}."""
    a = np.sqrt(2 / G)
    b = a * C / (40 * R.min())
    return float(a / 4 * lo**-1.5 + 3 * b / 4 * lo**-0.5)


C_TRUE = 0.3
Y_FIELD = _drop(R_FIELD[:, None], np.full((3, 1), C_TRUE), FIELD) + 0.01 * np.array(
    [[0.3, -1.1, 0.4, 0.9], [-0.2, 0.5, -1.3, 0.1], [1.2, -0.4, 0.2, -0.8]]
)


@pytest.fixture(scope="module")
def basis():
    return fit_basis()


def _U(cal: Calibrator, n: int = 6) -> np.ndarray:
    return cal.model.sample_prior(np.random.default_rng(3), n)


# --------------------------------------------------------------------- interpolation
def test_direct_mode_interpolates_the_simulator_within_the_linear_bound():
    cal = Calibrator(
        _sim(),
        [Parameter("C", 0, 1)],
        [Campaign("field", x=R_FIELD, y=Y_FIELD, coords=FIELD, noise_sd=0.01)],
        noise="known",
    )
    model = cal.model
    assert model.M == 16 + 3  # 5, 10, 20 m are virtual; 15 m is output 9
    assert model.field.columns[0].tolist() == [16, 17, 9, 18]
    theta = torch.full((1, 3, 1), C_TRUE, dtype=torch.float64)
    mean, cov, _ = model.forward_rows(model.X_rows, theta)
    assert cov is None and mean.shape == (1, 3, 19)
    exact = _drop(R_FIELD[:, None], np.full((3, 1), C_TRUE), FIELD)  # (3, 4)
    got = mean[0].numpy()[:, [16, 17, 9, 18]]
    # linear interpolation on a grid of spacing h: |error| ≤ h²/8 max|f''| (f'' largest
    # at the lowest height of the bracketing interval)
    bound = 1.5**2 / 8 * _curvature_bound(R_FIELD, C_TRUE, 4.5, 24)
    err = np.abs(got - exact)
    assert err[:, 2].max() < 1e-14  # 15 m is a simulator height: no interpolation
    assert 0 < err.max() <= bound
    # the midpoint rule: 5 m lies 1/3 of the way from 4.5 to 6 m
    w = model.field.weights[0]
    assert w[2] == pytest.approx(2 / 3) and w[3] == pytest.approx(1 / 3) and w.sum() == 1


def test_basis_emulator_interpolates_its_basis(basis):
    em, _, _ = basis
    field = FieldOutputs(H.reshape(-1, 1), [FIELD.reshape(-1, 1)], ["f"])
    a = field.weights  # (3, 16)
    x = torch.as_tensor(
        np.column_stack([np.repeat(R_FIELD, 2), np.tile([0.2, 0.7], 3)])[None], dtype=torch.float64
    )
    mean, cov = em.predict_torch(x)  # (1, 6, 16), (1, 16, 6, 6)
    mv, cv = em.predict_torch(x, weights=a)  # (1, 6, 3), (1, 3, 6, 6)
    # the mean is linear in the basis: interpolating Φ interpolates the predicted field
    np.testing.assert_allclose(mv.numpy(), (mean @ torch.as_tensor(a).T).numpy(), rtol=1e-12)
    # its variance at a point between two heights lies between theirs (convex weights)
    var, vv = torch.diagonal(cov, dim1=-2, dim2=-1), torch.diagonal(cv, dim1=-2, dim2=-1)
    lo = torch.minimum(var[0, 2], var[0, 3])
    hi = torch.maximum(var[0, 2], var[0, 3])
    assert (vv[0, 0] >= 0.25 * lo).all() and (vv[0, 0] <= hi * (1 + 1e-9)).all()
    # identity rows give the outputs themselves
    e = np.eye(16)[[2, 9]]
    m2, c2 = em.predict_torch(x, weights=e)
    m1, c1 = em.predict_torch(x, outputs=[2, 9])
    torch.testing.assert_close(m2, m1, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(c2, c1, rtol=1e-14, atol=1e-14)
    # against the simulator evaluated exactly at the field heights
    exact = _drop(x[0, :, :1].numpy(), x[0, :, 1:].numpy(), FIELD[[0, 1, 3]])
    sd = np.sqrt(vv[0].numpy().T)  # (6, 3)
    bound = 1.5**2 / 8 * _curvature_bound(R_FIELD, 0.7, 4.5, 24)
    assert (np.abs(mv[0].numpy() - exact) <= bound + 4 * sd).all()
    with pytest.raises(ValueError, match="nonnegative rows summing to one"):
        em.predict_torch(x, weights=2 * a)
    with pytest.raises(ValueError, match="not both"):
        em.predict_torch(x, outputs=[0], weights=a)


@pytest.fixture(scope="module")
def gp4():
    """A plain GP emulator of the first four heights (1.5 … 6 m): no basis to interpolate."""
    rng = np.random.default_rng(1)
    inputs = np.column_stack([rng.uniform(0.05, 0.5, 12), rng.uniform(0.0, 1.0, 12)])
    em = GPEmulator(n_restarts=None, adam_iter=30, lbfgs_iter=60, seed=0)
    return em.fit(inputs, _drop(inputs[:, :1], inputs[:, 1:], H[:4]))


def _gp4_calibrator(gp4, **kw) -> Calibrator:
    at = np.array([2.0, 3.0, 5.0])
    y = _drop(R_FIELD[:, None], np.full((3, 1), C_TRUE), at) + 0.01
    camp = Campaign("field", x=R_FIELD, y=y, coords=at, noise_sd=0.01)
    return Calibrator(gp4, [Parameter("C", 0, 1)], [camp], output_coords=H[:4], **kw)


def test_other_emulators_interpolate_mean_and_covariance(gp4):
    cal = _gp4_calibrator(gp4, noise="known")
    model = cal.model
    theta = torch.full((1, 3, 1), C_TRUE, dtype=torch.float64)
    mean, cov, _ = model.forward_rows(model.X_rows, theta)  # (1, 3, 6), (1, 6, 3, 3)
    a = model.field.weights  # 2 m and 5 m
    want_m = mean[..., :4] @ torch.as_tensor(a).T
    want_c = torch.einsum("vj,wjab->wvab", torch.as_tensor(a), cov[:, :4])
    torch.testing.assert_close(mean[..., 4:], want_m, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(cov[:, 4:], want_c, rtol=1e-12, atol=1e-16)
    assert np.isfinite(cal.log_posterior(_U(cal))).all()


# --------------------------------------------------------------------- same as NaN-masked
@pytest.mark.parametrize("mode", ["direct", "emulator"])
def test_coords_at_simulator_heights_equal_the_nan_masked_form(basis, mode):
    at = np.array([3.0, 7.5, 15.0, 24.0])
    cols = np.searchsorted(H, at)
    y = _drop(R_FIELD[:, None], np.full((3, 1), C_TRUE), at) + 0.01
    full = np.full((3, 16), np.nan)
    full[:, cols] = y
    model = _sim() if mode == "direct" else basis[0]
    extra = {} if mode == "direct" else {"output_coords": H, "input_names": ("R",)}

    def cal(camp: Campaign) -> Calibrator:
        return Calibrator(
            model, [Parameter("C", 0, 1)], [camp], discrepancy="shared", noise="shared", **extra
        )

    a = cal(Campaign("f", x=R_FIELD, y=full))
    b = cal(Campaign("f", x=R_FIELD, y=y, coords=at))
    assert b.model.M == 16 and b.labels == a.labels
    U = _U(a)
    np.testing.assert_array_equal(b.log_posterior(U), a.log_posterior(U))
    # and the columns in another order: the same entries, permuted
    c = cal(Campaign("f", x=R_FIELD, y=y[:, ::-1], coords=at[::-1]))
    np.testing.assert_allclose(c.log_posterior(U), a.log_posterior(U), rtol=1e-10)


def test_delta_sees_the_observation_coordinates():
    cal = Calibrator(
        _sim(),
        [Parameter("C", 0, 1)],
        [Campaign("field", x=R_FIELD, y=Y_FIELD, coords=FIELD)],
        discrepancy="shared",
    )
    m = cal.model
    assert m.feature_names == ["R", "s"]
    np.testing.assert_array_equal(m.z_obs[:, 1], np.tile(FIELD, 3))
    assert np.isfinite(cal.log_posterior(_U(cal))).all()


@pytest.mark.parametrize("which", ["direct", "basis", "gp"])
def test_no_tensor_is_made_off_the_model_device(basis, gp4, which):
    # under a "meta" default device a tensor made without device= holds no data (as in
    # tests/calib/test_device.py): the interpolated outputs must be made on the model's
    def make() -> Calibrator:
        kw = {"discrepancy": "shared", "noise": "shared"}
        if which == "gp":
            return _gp4_calibrator(gp4, **kw)
        camp = [Campaign("field", x=R_FIELD, y=Y_FIELD, coords=FIELD)]
        if which == "direct":
            return Calibrator(_sim(), [Parameter("C", 0, 1)], camp, **kw)
        extra = {"output_coords": H, "input_names": ("R",)}
        return Calibrator(basis[0], [Parameter("C", 0, 1)], camp, **kw, **extra)

    def value_and_grad(cal: Calibrator, U: np.ndarray):
        u = torch.tensor(U, dtype=torch.float64, device="cpu", requires_grad=True)
        lp = cal.log_posterior(u)
        lp.sum().backward()
        return lp.detach().numpy(), u.grad.numpy()

    ref = make()
    U = _U(ref)
    want = value_and_grad(ref, U)
    with torch.device("meta"):
        lp, g = value_and_grad(make(), U)
    assert ref.model.M > ref.model.m and np.isfinite(want[0]).all()
    np.testing.assert_array_equal(lp, want[0])
    np.testing.assert_array_equal(g, want[1])


# --------------------------------------------------------------------- refusals
def test_refusals():
    sim = _sim()
    prm = [Parameter("C", 0, 1)]
    with pytest.raises(ValueError, match=r"y has 4 columns but coords give 3"):
        Campaign("f", x=R_FIELD, y=Y_FIELD, coords=[5, 10, 15])
    with pytest.raises(ValueError, match=r"y has 3 rows but x has 2"):
        Campaign("f", x=R_FIELD[:2], y=Y_FIELD, coords=FIELD)
    with pytest.raises(ValueError, match="coords contain NaN"):
        Campaign("f", x=R_FIELD, y=Y_FIELD, coords=[5, np.nan, 15, 20])
    with pytest.raises(ValueError, match=r"outside the range .* \[1.5, 24\].* not extrapolate"):
        Calibrator(sim, prm, [Campaign("f", x=R_FIELD, y=Y_FIELD, coords=[0.5, 10, 15, 20])])
    with pytest.raises(ValueError, match="outside the range"):
        Calibrator(sim, prm, [Campaign("f", x=R_FIELD, y=Y_FIELD, coords=[5, 10, 15, 25])])
    flat = FunctionSimulator(lambda x, t: [t[0], t[0]], ("R",), ("C",), ("a", "b"))
    with pytest.raises(ValueError, match="outputs have no coordinates"):
        Calibrator(flat, prm, [Campaign("f", x=R_FIELD, y=Y_FIELD[:, :2], coords=[1, 2])])
    with pytest.raises(ValueError, match="2 dimension"):
        Calibrator(sim, prm, [Campaign("f", x=R_FIELD, y=Y_FIELD[:, :2], coords=[[1, 2], [3, 4]])])
    grid = np.array([[t, k] for k in range(2) for t in (0.0, 1.0, 2.0)])
    sim2 = FunctionSimulator(
        lambda x, t: np.full(6, t[0]), ("R",), ("C",), tuple("abcdef"), output_coords=grid
    )
    ok = Calibrator(sim2, prm, [Campaign("f", x=R_FIELD, y=Y_FIELD[:, :2], coords=grid[[1, 4]])])
    assert ok.model.M == 6  # exact matches need no interpolation, whatever r
    with pytest.raises(ValueError, match="interpolates along one coordinate only"):
        Calibrator(sim2, prm, [Campaign("f", x=R_FIELD, y=Y_FIELD[:, :1], coords=[[0.5, 0]])])


# --------------------------------------------------------------------- archive
@pytest.mark.filterwarnings("ignore::calib.ConvergenceWarning")
def test_archive_round_trip(basis, tmp_path):
    em, inputs, _ = basis
    path = tmp_path / "field.h5"
    cal = Calibrator(
        em,
        [Parameter("C", 0, 1)],
        [Campaign("field", x=R_FIELD, y=Y_FIELD, coords=FIELD, noise_sd=0.01)],
        noise="known",
        output_coords=H,
        input_names=("R",),
    )
    cal.sample(8, 40, seed=1, archive=path, moves="de", autocorr_stop=False, progress=False)
    rec = read_study(path)
    np.testing.assert_array_equal(rec.campaigns[0]["coords"], FIELD.reshape(-1, 1))
    post = calib.load(path)
    got = post.calibrator.campaigns[0]
    np.testing.assert_array_equal(got.coords, FIELD.reshape(-1, 1))
    np.testing.assert_array_equal(got.y, Y_FIELD)
    U = _U(cal)
    np.testing.assert_array_equal(post.calibrator.log_posterior(U), cal.log_posterior(U))
    # a resume with other coordinates is another calibration
    other = Calibrator(
        em,
        [Parameter("C", 0, 1)],
        [Campaign("field", x=R_FIELD, y=Y_FIELD, coords=[5, 10, 15, 21], noise_sd=0.01)],
        noise="known",
        output_coords=H,
        input_names=("R",),
    )
    with pytest.raises(calib.ArchiveError, match="coords differs"):
        other.sample(8, 60, seed=1, archive=path, resume=True, moves="de", progress=False)
