"""The figures (calib.plotting): each renders, and each shows what it claims to show: the
axes contain the data, the bands are in the legend, one panel per campaign, the
thresholds where the verdict puts them."""

from __future__ import annotations

import io
import warnings

import matplotlib
import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.image import imread

from calib import (
    Calibrator,
    Campaign,
    ConvergenceWarning,
    Discrepancy,
    Parameter,
    Posterior,
    plotting,
)
from calib.priors import HalfNormal, LogNormal, Normal
from simulators import FunctionSimulator

CAMPAIGNS = ("a", "b", "c")


def _linear():
    return FunctionSimulator(
        lambda X, T: T[:, :1] * X[:, :1], ("x",), ("k",), ("y",), vectorized=True
    )


def _campaigns():
    rng = np.random.default_rng(3)
    out = []
    for name, k, n in zip(CAMPAIGNS, (1.6, 2.0, 2.4), (5, 8, 12)):
        x = rng.uniform(0.2, 1.8, n)
        y = k * x + 0.2 * np.sin(2 * x) + 0.1 * rng.standard_normal(n)
        out.append(Campaign(name, x=x, y=y, noise_sd=0.1))
    return out


def _calibrator(pooling: str) -> Calibrator:
    return Calibrator(
        _linear(),
        [Parameter("k", prior=Normal(2.0, 1.0), pooling=pooling)],
        _campaigns(),
        discrepancy=Discrepancy(
            "shared", scale_prior=HalfNormal(0.5), lengthscale_prior=LogNormal(0.0, 0.5)
        ),
        noise="known",
        hyperpriors={"k": {"mean": Normal(2.0, 1.0), "scale": HalfNormal(0.5)}}
        if pooling == "partial"
        else None,
    )


def _sample(pooling: str) -> Posterior:
    # far too short to converge: the figures are the subject here, not the posterior
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _calibrator(pooling).sample(n_walkers=16, n_steps=60, seed=5)


@pytest.fixture(scope="module")
def post():
    return _sample("partial")


@pytest.fixture(scope="module")
def unpooled():
    return _sample("none")


@pytest.fixture(scope="module")
def emulator():
    from emulators import ConvergenceWarning as FitWarning
    from emulators import GPEmulator

    rng = np.random.default_rng(0)
    X = rng.uniform(size=(40, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        em = GPEmulator(n_restarts=2, min_nugget=1e-6).fit(X[:25], _truth(X[:25]))
    return em, X[25:], _truth(X[25:])


def _truth(X):
    return np.column_stack([np.sin(3 * X[:, 0]) + X[:, 1], np.cos(2 * X[:, 1]) * X[:, 0]])


def _render(fig) -> np.ndarray:
    """The figure as a PNG, read back: it renders, and is not blank."""
    assert isinstance(fig, Figure)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    img = imread(io.BytesIO(buf.getvalue()))
    assert img[..., :3].std() > 0.01, "a blank picture"
    return img


def _legend(ax) -> list[str]:
    leg = ax.get_legend()
    return [] if leg is None else [t.get_text() for t in leg.get_texts()]


def _inside(ax, x=None, y=None):
    if x is not None:
        lo, hi = sorted(ax.get_xlim())
        assert lo <= np.nanmin(x) and np.nanmax(x) <= hi, (
            ax.get_xlim(),
            np.nanmin(x),
            np.nanmax(x),
        )
    if y is not None:
        lo, hi = sorted(ax.get_ylim())
        assert lo <= np.nanmin(y) and np.nanmax(y) <= hi, (
            ax.get_ylim(),
            np.nanmin(y),
            np.nanmax(y),
        )


# ----------------------------------------------------------------------------- corner
def test_corner_draws_every_pair_within_its_axes(post):
    before = dict(matplotlib.rcParams)
    fig = plotting.corner(post, truths={"k.mean": 2.0})
    _render(fig)
    names = [n for n in post.names if not n.endswith((".typical", ".new"))]
    k = len(names)
    axes = np.array(fig.axes).reshape(k, k)
    for i in range(k):
        assert names[i] in axes[i, i].get_title()
        for j in range(i):
            ax = axes[i, j]
            pts = ax.collections[0].get_offsets()
            # an even thinning of the draws, drawn where they are
            assert set(pts[:, 0]) <= set(post.draws(names[j]))
            _inside(ax, post.draws(names[j]), post.draws(names[i]))
    j = names.index("k.mean")
    assert any(np.allclose(ln.get_xdata(), 2.0) for ln in axes[j, j].get_lines())
    assert dict(matplotlib.rcParams) == before  # no global state touched


def test_corner_keeps_the_first_max_params_and_says_so(post):
    fig = plotting.corner(post, max_params=2)
    assert len(fig.axes) == 4
    assert "first 2 of 7 quantities" in fig.get_suptitle()
    with pytest.raises(ValueError, match=r"names: \['E'\] are not quantities"):
        plotting.corner(post, names=["E"])


# ----------------------------------------------------------------------------- traces
def test_traces_show_every_walker_and_shade_the_burn_in(post):
    fig = plotting.traces(post, names=["k[a]", "k.scale"])
    _render(fig)
    n_steps, n_walkers = post.chain.shape[:2]
    lp, *panels = fig.axes
    assert [ax.get_ylabel() for ax in panels] == ["k[a]", "k.scale"]
    for ax, name in zip(panels, ["k[a]", "k.scale"]):
        lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == n_steps]
        assert len(lines) == n_walkers
        # after the shading, the lines are the kept draws themselves (step-major)
        kept = np.stack([ln.get_ydata()[post.burn :] for ln in lines], axis=1)
        np.testing.assert_array_equal(kept.reshape(-1), post.draws(name))
        (span,) = ax.patches
        x0, x1 = span.get_x(), span.get_x() + span.get_width()
        assert (x0, x1) == (0, post.burn)
    assert f"burn-in: {post.burn} steps, discarded" in _legend(lp)


# ----------------------------------------------------------------------------- predictive
def test_predictive_has_one_panel_per_campaign_with_its_data_and_bands(post):
    fig = plotting.predictive(post, n_draws=150)
    _render(fig)
    assert [ax.get_title() for ax in fig.axes] == [f"campaign {c}" for c in CAMPAIGNS]
    for ax, camp in zip(fig.axes, post.calibrator.campaigns):
        _inside(ax, camp.x, camp.y)
        assert {"reality ζ, 90 %", "new measurement, 90 %", "data"} <= set(_legend(ax))
        # the measurement band is the wider: it holds reality's band and the noise
        meas, real = (c for c in ax.collections if isinstance(c, PolyCollection))
        assert np.ptp(meas.get_paths()[0].vertices[:, 1]) > np.ptp(
            real.get_paths()[0].vertices[:, 1]
        )
    one = plotting.predictive(post, campaign="b", n_draws=50)
    assert [ax.get_title() for ax in one.axes] == ["campaign b"]
    with pytest.raises(ValueError, match=r"output must be one of \['y'\], got 'z'"):
        plotting.predictive(post, output="z")


def _fixed_posterior(cal: Calibrator, u: np.ndarray) -> Posterior:
    """Every draw the same point: a posterior without sampling, for the figure's layout."""
    return Posterior(
        cal,
        chain=np.tile(u, (20, 4, 1)),
        log_prob=np.zeros((20, 4)),
        acceptance=np.ones(4),
        burn=0,
    )


def test_functional_outputs_are_drawn_against_their_coordinates():
    s = np.linspace(0.0, 1.0, 6)
    sim = FunctionSimulator(
        lambda X, T: T[:, :1] * np.exp(-s[None, :] * X[:, :1]),
        ("x",),
        ("a",),
        tuple(f"y{i}" for i in range(6)),
        vectorized=True,
        output_coords=s,
    )
    x = np.array([0.5, 1.0, 2.0])
    y = 1.5 * np.exp(-np.outer(x, s)) + 0.02 * np.random.default_rng(1).standard_normal((3, 6))
    cal = Calibrator(
        sim, [Parameter("a", prior=Normal(1.0, 1.0))], [Campaign("c0", x=x, y=y)], noise="shared"
    )
    post = _fixed_posterior(cal, np.array([1.5, np.log(0.02)]))
    fig = plotting.predictive(post, n_draws=20)
    _render(fig)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "output coordinate"
    labels = _legend(ax)
    assert [t for t in labels if t.startswith("reality")] == [
        f"reality ζ, 90 %: x = {v:g}" for v in x
    ]
    means = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and len(ln.get_xdata())]
    assert len(means) == 3 and all(np.array_equal(ln.get_xdata(), s) for ln in means)
    _inside(ax, s, y)
    # one output alone is drawn against the control input
    single = plotting.predictive(post, output="y3", n_draws=20)
    assert single.axes[0].get_xlabel() == "x"
    with pytest.raises(ValueError, match="has no discrepancy"):
        plotting.discrepancy(post)


# ----------------------------------------------------------------------------- discrepancy
def test_a_shared_discrepancy_is_one_panel_with_its_band_around_zero(post):
    fig = plotting.discrepancy(post, n_draws=150)
    _render(fig)
    (ax,) = fig.axes
    assert ax.get_title() == "δ, shared by every campaign"
    assert {"δ, 90 %", "posterior mean", "δ = 0"} <= set(_legend(ax))
    (poly,) = (c for c in ax.collections if isinstance(c, PolyCollection))
    _inside(ax, y=poly.get_paths()[0].vertices[:, 1])
    x_all = np.concatenate([c.x[:, 0] for c in post.calibrator.campaigns])
    _inside(ax, x=x_all)
    ticks = [ln for ln in ax.get_lines() if ln.get_marker() == "|"]
    assert sorted(ticks[0].get_xdata()) == sorted(x_all)
    assert [a.get_title() for a in plotting.discrepancy(post, "a", n_draws=50).axes] == [
        "δ, campaign a"
    ]


# ----------------------------------------------------------------------------- emulator
def test_emulator_validation_puts_each_run_at_its_actual_value(emulator):
    em, X, Y = emulator
    fig = plotting.emulator_validation(em, X, Y, output_names=["p", "q"])
    _render(fig)
    tops, bottoms = fig.axes[:2], fig.axes[2:]
    pred = em.predict(X)
    z = (Y - pred.mean) / np.sqrt(pred.var)
    for j, (top, bottom) in enumerate(zip(tops, bottoms)):
        assert top.get_title().startswith(["p", "q"][j])
        points = next(ln for ln in top.get_lines() if ln.get_marker() == "o")
        np.testing.assert_allclose(points.get_xdata(), Y[:, j])
        np.testing.assert_allclose(points.get_ydata(), pred.mean[:, j])
        _inside(top, Y[:, j], pred.mean[:, j])
        shown = np.concatenate(
            [c.get_offsets()[:, 1] for c in bottom.collections if isinstance(c, PathCollection)]
        )
        np.testing.assert_allclose(np.sort(shown), np.sort(z[:, j]))
        _inside(bottom, y=z[:, j])
        levels = {ln.get_ydata()[0] for ln in bottom.get_lines() if ln.get_linestyle() == "--"}
        assert levels == {-2.0, 2.0}
        assert "prediction, 90 % interval" in _legend(top)
    loo = plotting.emulator_validation(em)
    assert loo.get_suptitle() == "emulator validation: leave-one-out"
    with pytest.raises(ValueError, match="give both"):
        plotting.emulator_validation(em, X)
    with pytest.raises(ValueError, match=r"Y_test: expected shape \(15, 2\)"):
        plotting.emulator_validation(em, X, Y[:, :1])


# ----------------------------------------------------------------------------- pooling
def test_pooling_shows_each_campaign_beside_its_unpooled_self(post, unpooled):
    fig = plotting.pooling(post, "k", unpooled=unpooled)
    _render(fig)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == list(CAMPAIGNS)
    labels = _legend(ax)
    assert "population: a new campaign's 90 % interval (k.new)" in labels
    assert {"partial pooling: median, 90 %", "no pooling: median, 90 %"} <= set(labels)
    (span,) = ax.patches
    lo, hi = np.quantile(post.draws("k.new"), [0.05, 0.95])
    np.testing.assert_allclose([span.get_x(), span.get_x() + span.get_width()], [lo, hi])
    for p, marker in ((post, "o"), (unpooled, "s")):
        line = next(ln for ln in ax.get_lines() if ln.get_marker() == marker)
        medians = [np.median(p.draws("k", campaign=c)) for c in CAMPAIGNS]
        np.testing.assert_allclose(line.get_xdata(), medians)
        ends = np.quantile(np.stack([p.draws("k", campaign=c) for c in CAMPAIGNS]), [0.05, 0.95], 1)
        _inside(ax, ends)
    assert len(ax.texts) == len(CAMPAIGNS)  # one shrinkage arrow per campaign
    with pytest.raises(ValueError, match="'discrepancy' is not partially pooled"):
        plotting.pooling(post, "discrepancy")


# ----------------------------------------------------------------------------- convergence
def test_convergence_puts_every_quantity_against_the_targets(post):
    fig = plotting.convergence(post)
    _render(fig)
    ax_r, ax_e = fig.axes
    d = post.diagnostics()
    names = list(d["rhat"])
    assert [t.get_text() for t in ax_r.get_yticklabels()] == names
    for ax, key, target in ((ax_r, "rhat", 1.01), (ax_e, "ess_bulk", 400.0)):
        values = np.array([d[key][n] for n in names])
        shown = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections])
        np.testing.assert_allclose(np.sort(shown), np.sort(values))
        _inside(ax, values)
        assert [ln.get_xdata()[0] for ln in ax.get_lines()] == [target]
    n_bad = len(d["worst"])
    assert ("not converged" in fig.get_suptitle()) == (n_bad > 0)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"target: R̂ < 1.01", "target: bulk ESS ≥ 400"} <= set(labels)


# ----------------------------------------------------------------------------- save_all
def test_save_all_writes_every_figure_that_applies(post, unpooled, emulator, tmp_path):
    em, X, Y = emulator
    paths = plotting.save_all(
        post,
        tmp_path / "figs",
        emulator=em,
        test=(X, Y),
        unpooled=unpooled,
        truths={"k.mean": 2.0, "k": 2.0},  # a study's truth may name no quantity: left out
        n_draws=60,
    )
    assert [p.name for p in paths] == [
        "corner.png",
        "traces.png",
        "convergence.png",
        "predictive.png",
        "discrepancy.png",
        "pooling-k.png",
        "emulator.png",
    ]
    for p in paths:
        img = imread(p)
        assert img[..., :3].std() > 0.01, p
    # 110 dpi: the convergence figure is 9 inches wide
    assert imread(paths[2]).shape[1] == 990
    assert set(plotting.CAPTIONS) >= {p.stem.split("-")[0] for p in paths}


def test_save_all_skips_the_predictions_of_a_study_loaded_without_its_simulator(tmp_path):
    from calib.interfaces import MissingSimulator

    sim = MissingSimulator(("x",), ("k",), ("y",), identity="linear", path="study.h5")
    cal = Calibrator(sim, [Parameter("k", prior=Normal(2.0, 1.0))], _campaigns()[:1], noise="known")
    chain = 2.0 + 0.1 * np.random.default_rng(2).standard_normal((20, 4, 1))
    post = Posterior(cal, chain, np.zeros((20, 4)), np.ones(4), burn=5)
    with pytest.warns(UserWarning, match="predictive.png not written: the study was loaded"):
        paths = plotting.save_all(post, tmp_path)
    assert [p.name for p in paths] == ["corner.png", "traces.png", "convergence.png"]
