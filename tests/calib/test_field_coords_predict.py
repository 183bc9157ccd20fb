"""Campaigns at their own output coordinates (``Campaign(coords=)``) downstream of the
likelihood: predictions (calib/conditional.py), the identifiability report, the fit figure
and the study file (issue 16, item 2).

The drop-time field of tests/reference/drop_field.py: simulator heights 1.5, 3, …, 24 m,
field heights 5, 10, 15, 20 m (15 m is a simulator height, the others are interpolated).
"""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from calib import Calibrator, Campaign, ConvergenceWarning, Discrepancy, Parameter, plotting
from calib.conditional import conditional_mean, predictive
from calib.priors import HalfNormal, LogNormal
from calib.study import StudyError, read_study
from simulators import FunctionSimulator

# the drop-time field shared with the other coordinate tests (tests/reference/drop_field.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
from drop_field import FIELD, R_FIELD, X_NEW, H, fit_basis  # noqa: E402
from drop_field import drop as _drop  # noqa: E402
from drop_field import sim as _sim  # noqa: E402

C_TRUE = 0.3


Y_FIELD = _drop(R_FIELD[:, None], np.full((3, 1), C_TRUE), FIELD) + 0.01 * np.array(
    [[0.3, -1.1, 0.4, 0.9], [-0.2, 0.5, -1.3, 0.1], [1.2, -0.4, 0.2, -0.8]]
)
DISC = Discrepancy("shared", scale_prior=HalfNormal(0.05), lengthscale_prior=LogNormal(0.0, 0.5))


def _direct(y: np.ndarray = Y_FIELD, coords=FIELD, **kw) -> Calibrator:
    camp = Campaign("field", x=R_FIELD, y=y, coords=coords, noise_sd=0.01)
    return Calibrator(_sim(), [Parameter("C", 0, 1)], [camp], discrepancy=DISC, noise="known", **kw)


def _U(cal: Calibrator, n: int = 5) -> torch.Tensor:
    U = cal.model.sample_prior(np.random.default_rng(3), n)
    return torch.as_tensor(U, dtype=torch.float64, device="cpu")


@pytest.fixture(scope="module")
def basis():
    return fit_basis()[0]


# --------------------------------------------------------------------- predictions
@pytest.mark.parametrize("mode", ["direct", "emulator"])
def test_predictions_at_simulator_heights_equal_the_nan_masked_form(basis, mode):
    at = np.array([3.0, 7.5, 15.0, 24.0])
    y = _drop(R_FIELD[:, None], np.full((3, 1), C_TRUE), at) + 0.01
    full = np.full((3, 16), np.nan)
    full[:, np.searchsorted(H, at)] = y
    model = _sim() if mode == "direct" else basis
    extra = {} if mode == "direct" else {"output_coords": H, "input_names": ("R",)}

    def cal(camp: Campaign) -> Calibrator:
        return Calibrator(model, [Parameter("C", 0, 1)], [camp], discrepancy=DISC, **extra)

    a = cal(Campaign("f", x=R_FIELD, y=full))
    b = cal(Campaign("f", x=R_FIELD, y=y, coords=at))
    U = _U(a)
    for what in ("reality", "discrepancy"):
        want = predictive(a.model, U, X_NEW, 0, what)
        got = predictive(b.model, U, X_NEW, 0, what)
        assert got[0].shape == (5, 2, 16) and got[1].shape == (5, 32, 32)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=0, atol=0)
    # at the campaign's own columns: the model's outputs there
    cols = b.model.field.columns[0]
    np.testing.assert_array_equal(cols, np.searchsorted(H, at))
    own = predictive(b.model, U, X_NEW, 0, "reality", outputs=cols)[0]
    torch.testing.assert_close(own, predictive(a.model, U, X_NEW, 0, "reality")[0][..., cols])


def _reference(cal: Calibrator, U: torch.Tensor, X_new: np.ndarray, out: np.ndarray, what: str):
    """The conditional of eq. 9 written out in numpy for one campaign, shared RBF δ on
    (R, s), known noise: every observed entry and every new one at its own height. Direct
    mode: the simulator interpolated linearly between its heights by np.interp. Emulator
    mode: the emulator's mean and per-output covariance at every output, the virtual ones
    too (``forward_rows``, tests/calib/test_field_coords.py), coupling entries of one
    output only."""
    model = cal.model
    with torch.no_grad():
        parts = model._unpack(U)
    sc, ls = parts["disc_scale"].numpy(), parts["disc_ls"].numpy()
    theta = parts["theta"].numpy()[:, 0, :]  # (S, 1)
    coords = model.field.coords[:, 0]  # every output's height, the virtual ones too
    ri, ci = np.nonzero(np.isfinite(Y_FIELD))
    vo = model.field.columns[0][ci]  # the output of each observed entry
    z_o = np.column_stack([R_FIELD[ri], coords[vo]])
    ii, jj = np.repeat(np.arange(len(X_new)), out.size), np.tile(out, len(X_new))
    z_n = np.column_stack([X_new[ii, 0], coords[jj]])
    emu, n = model.forward.emulator, len(R_FIELD)
    if emu:
        th = torch.as_tensor(theta, dtype=torch.float64)[:, None, :].expand(-1, n + len(X_new), 1)
        with torch.no_grad():
            mu, ec, _ = model.forward_rows(np.concatenate([R_FIELD[:, None], X_new]), th)
        mu, ec = mu.numpy(), ec.numpy()  # (S, n + n*, M), (S, M, n + n*, n + n*)

    def k(a, b, s, l):
        d = (a[:, None, :] - b[None, :, :]) / l
        return s**2 * np.exp(-0.5 * (d**2).sum(-1))

    def eta(R, t, h):  # the simulator at its heights, interpolated to h
        full = _drop(R[:, None], np.full((R.size, 1), t))
        return np.array([np.interp(h, H, row) for row in full])

    means, covs = [], []
    for s in range(U.shape[0]):
        C = k(z_o, z_o, sc[s], ls[s]) + np.diag(np.full(len(z_o), 0.01**2 + model.jitter))
        Kno, Knn = k(z_n, z_o, sc[s], ls[s]), k(z_n, z_n, sc[s], ls[s])
        if emu:
            eta_o, eta_n = mu[s, ri, vo], mu[s, n + ii, jj]
            if what == "reality":
                C = C + (vo[:, None] == vo[None, :]) * ec[s, vo[:, None], ri[:, None], ri]
                Kno = Kno + (jj[:, None] == vo[None, :]) * ec[s, jj[:, None], n + ii[:, None], ri]
                Knn = (
                    Knn + (jj[:, None] == jj[None, :]) * ec[s, jj[:, None], n + ii[:, None], n + ii]
                )
            else:  # δ alone: the emulator's error is still in the data's covariance
                C = C + (vo[:, None] == vo[None, :]) * ec[s, vo[:, None], ri[:, None], ri]
        else:
            eta_o = eta(R_FIELD, theta[s, 0], FIELD)[ri, ci]
            eta_n = eta(X_new[:, 0], theta[s, 0], coords[out])[
                ii, np.tile(np.arange(out.size), len(X_new))
            ]
        mean = Kno @ np.linalg.solve(C, Y_FIELD[ri, ci] - eta_o)
        if what == "reality":
            mean = mean + eta_n
        means.append(mean.reshape(len(X_new), out.size))
        covs.append(Knn - Kno @ np.linalg.solve(C, Kno.T))
    return np.array(means), np.array(covs)


def _check(cal: Calibrator, what: str) -> None:
    model = cal.model
    U = _U(cal)
    # at the model's outputs (what Posterior.predict gives), and at the campaign's own
    # heights (5, 10, 20 m interpolated, 15 m the model's)
    for out in (None, model.field.columns[0]):
        mean, cov, failed = predictive(model, U, X_NEW, 0, what, outputs=out)
        want_m, want_c = _reference(cal, U, X_NEW, np.arange(16) if out is None else out, what)
        assert not failed.any() and mean.shape == (5, 2, 16 if out is None else 4)
        np.testing.assert_allclose(mean.numpy(), want_m, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(cov.numpy(), want_c, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("what", ["reality", "discrepancy"])
def test_predictions_between_simulator_heights_are_the_exact_conditional(what):
    cal = _direct()
    _check(cal, what)
    with pytest.raises(ValueError, match=r"outputs: expected indices in \[0, 19\)"):
        predictive(cal.model, _U(cal), X_NEW, 0, what, outputs=[19])


@pytest.mark.parametrize("what", ["reality", "discrepancy"])
def test_emulator_predictions_between_heights_are_the_exact_conditional(basis, what):
    camp = Campaign("field", x=R_FIELD, y=Y_FIELD, coords=FIELD, noise_sd=0.01)
    cal = Calibrator(
        basis,
        [Parameter("C", 0, 1)],
        [camp],
        discrepancy=DISC,
        noise="known",
        output_coords=H,
        input_names=("R",),
    )
    _check(cal, what)


# --------------------------------------------------------------------- a posterior
@pytest.fixture(scope="module")
def posts():
    """Posteriors of the same data: at the field heights, and at simulator heights given
    with coords= and as a NaN-masked y (the same log-posterior, so the same chain)."""
    at = np.array([3.0, 7.5, 15.0, 24.0])
    y = _drop(R_FIELD[:, None], np.full((3, 1), C_TRUE), at) + 0.01 * Y_FIELD / Y_FIELD.max()
    full = np.full((3, 16), np.nan)
    full[:, np.searchsorted(H, at)] = y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return tuple(_sample(c) for c in (_direct(), _direct(y, at), _direct(full, None)))


def _sample(cal: Calibrator):
    return cal.sample(8, 40, moves="de", n_starts=2, autocorr_stop=False, progress=False, seed=1)


@pytest.mark.filterwarnings("ignore::calib.IdentifiabilityWarning")
def test_identifiability_of_a_campaign_at_its_own_coordinates(posts):
    field, own, masked = posts
    report = field.identifiability(n_draws=20)
    (share,) = report.shares
    assert share["campaign"] is None and 0 <= share["share"] <= 1
    assert np.isfinite(report["C"]["contraction"])
    # δ̂ at the field heights is the conditional mean there, not an interpolation of it
    U = field._subsample(20)
    d = conditional_mean(field.model, U, R_FIELD[:, None], 0, "discrepancy", [16, 17, 9, 18])
    assert share["sum_delta2"] == pytest.approx(float((d**2).sum()), rel=1e-12)
    # at simulator heights, coords= and the NaN-masked y give the same report
    np.testing.assert_array_equal(own.flat_unconstrained(), masked.flat_unconstrained())
    a, b = own.identifiability(n_draws=20), masked.identifiability(n_draws=20)
    assert a.shares[0]["share"] == pytest.approx(b.shares[0]["share"], rel=1e-12, abs=1e-15)
    assert a.shares[0]["sum_eta2"] == pytest.approx(b.shares[0]["sum_eta2"], rel=1e-12)


def test_the_fit_figure_draws_the_data_at_their_own_coordinates():
    # four simulator heights: a figure of one output predicts every output on a grid of
    # 60 points, which with 16 heights is a 960 × 960 conditional per draw
    h4 = np.array([1.5, 6.0, 15.0, 24.0])
    sim = FunctionSimulator(
        lambda X, T: _drop(X, T, h4), ("R",), ("C",), ("t0", "t1", "t2", "t3"),
        vectorized=True, output_coords=h4,
    )  # fmt: skip
    camp = Campaign("field", x=R_FIELD, y=Y_FIELD, coords=FIELD, noise_sd=0.01)
    cal = Calibrator(sim, [Parameter("C", 0, 1)], [camp], discrepancy=DISC, noise="known")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        field = _sample(cal)
    fig = plotting.predictive(field, n_draws=20)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    dots = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and len(ln.get_xdata())]
    assert len(dots) == 3  # one per observed row
    for ln, row in zip(dots, Y_FIELD):
        np.testing.assert_array_equal(ln.get_xdata(), FIELD)
        np.testing.assert_array_equal(ln.get_ydata(), row)
    # one output by name: its column's data if the campaign observes it (15 m is t2)
    ax9 = plotting.predictive(field, output="t2", n_draws=20).axes[0]
    (bars,) = [c for c in ax9.containers if type(c).__name__ == "ErrorbarContainer"]
    np.testing.assert_array_equal(bars.lines[0].get_ydata(), Y_FIELD[:, 2])
    ax0 = plotting.predictive(field, output="t0", n_draws=20).axes[0]
    assert not [c for c in ax0.containers if type(c).__name__ == "ErrorbarContainer"]
    assert isinstance(plotting.discrepancy(field, n_draws=20), Figure)
    fig.savefig(io.BytesIO(), format="png")  # renders


# --------------------------------------------------------------------- study file
MODULE = """
import numpy as np
H = np.arange(1, 17) * 1.5
def drop(X, T):
    X, T = np.asarray(X, dtype=float), np.asarray(T, dtype=float)
    return np.sqrt(2 * H / 9.81) * (1 + T[:, :1] * H / (40 * X[:, :1]))
"""
STUDY = """
[simulator]
function = "drop_model:drop"
options = {{ input_names = ["R"], parameter_names = ["C"], output_names = {names}, vectorized = true, output_coords = {heights} }}

[[parameters]]
name = "C"
lower = 0.0
upper = 1.0

[[campaigns]]
name = "field"
data = "field.csv"
noise_sd = 0.01
coords = [5.0, 10.0, 15.0, 20.0]

[noise]
model = "known"
"""


def _study(tmp_path, **edit) -> object:
    (tmp_path / "drop_model.py").write_text(MODULE)
    rows = ["R,t5,t10,t15,t20"] + [
        ",".join(f"{v:.17g}" for v in (r, *y)) for r, y in zip(R_FIELD, Y_FIELD)
    ]
    (tmp_path / "field.csv").write_text("\n".join(rows) + "\n")
    names = [f"t{k}" for k in range(16)]
    text = STUDY.format(names=str(names).replace("'", '"'), heights=H.tolist())
    for old, new in edit.items():
        assert old in text
        text = text.replace(old, new)
    (tmp_path / "study.toml").write_text(text)
    return read_study(tmp_path / "study.toml")


def test_a_study_campaign_takes_coords(tmp_path):
    study = _study(tmp_path)
    camp = study.calibrator.campaigns[0]
    np.testing.assert_array_equal(camp.coords, FIELD.reshape(-1, 1))
    np.testing.assert_array_equal(camp.y, Y_FIELD)
    script = Calibrator(
        _sim(),
        [Parameter("C", 0, 1)],
        [Campaign("field", x=R_FIELD, y=Y_FIELD, coords=FIELD, noise_sd=0.01)],
        noise="known",
    )
    U = script.model.sample_prior(np.random.default_rng(0), 4)
    np.testing.assert_array_equal(study.calibrator.log_posterior(U), script.log_posterior(U))


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("[5.0, 10.0, 15.0, 20.0]", "[5.0, 10.0, 15.0]", r"^campaigns\[0\]: .*y has 4 columns but coords give 3"),
        ("[5.0, 10.0, 15.0, 20.0]", "[5.0, 10.0, 15.0, 30.0]", r"Campaign 'field': coords\[3\] = 30 is outside the range"),
        ("[5.0, 10.0, 15.0, 20.0]", '"heights"', r"^campaigns\[0\]\.coords: expected an array"),
        ("[5.0, 10.0, 15.0, 20.0]", "[5.0, true, 15.0, 20.0]", r"^campaigns\[0\]\.coords: expected a non-empty"),
        ("[5.0, 10.0, 15.0, 20.0]", "[[5.0], [10.0, 1.0]]", r"^campaigns\[0\]\.coords: rows of different"),
    ],
)  # fmt: skip
def test_a_study_campaign_refuses_bad_coords(tmp_path, old, new, message):
    with pytest.raises(StudyError, match=message):
        _study(tmp_path, **{old: new})


def test_a_study_campaign_reads_coords_from_hdf5(tmp_path):
    import h5py

    with h5py.File(tmp_path / "field.h5", "w") as f:
        f["x"], f["y"], f["heights"] = R_FIELD[:, None], Y_FIELD, FIELD
    study = _study(
        tmp_path,
        **{'data = "field.csv"': 'data = "field.h5"', "[5.0, 10.0, 15.0, 20.0]": '"heights"'},
    )
    np.testing.assert_array_equal(study.calibrator.campaigns[0].coords, FIELD.reshape(-1, 1))
    with pytest.raises(StudyError, match=r"has no dataset 'depths' \(coords\)"):
        _study(
            tmp_path,
            **{'data = "field.csv"': 'data = "field.h5"', "[5.0, 10.0, 15.0, 20.0]": '"depths"'},
        )
