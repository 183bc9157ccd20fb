"""Designs: column order, bounds, space filling, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import qmc

from calib import Parameter
from calib.design import Design, as_design, design_bounds, grid, latin_hypercube, sobol
from calib.priors import LogNormal, Normal
from simulators import FunctionSimulator


def _sim() -> FunctionSimulator:
    return FunctionSimulator(lambda x, t: [x[0] * t[0]], ("load", "pos"), ("E", "c", "m"), ("d",))


THETA = [  # deliberately not in the simulator's order
    Parameter("m", prior=Normal(0.0, 1.0)),
    Parameter("E", lower=150e9, upper=250e9),
    Parameter("c", lower=0.0, prior=LogNormal(0.0, 0.5)),
]
XB = {"load": (0.0, 1e3), "pos": (0.1, 1.0)}


def test_latin_hypercube_columns_bounds_and_latin_property():
    d = latin_hypercube(_sim(), THETA, n=200, x_bounds=XB, seed=0)
    assert d.names == ("load", "pos", "E", "c", "m")
    assert d.input_names == ("load", "pos") and d.parameter_names == ("E", "c", "m")
    assert d.array.shape == (200, 5) and d.x.shape == (200, 2) and d.theta.shape == (200, 3)
    b = d.bounds
    np.testing.assert_allclose(b[0], [0.0, 1e3])
    np.testing.assert_allclose(b[2], [150e9, 250e9])
    # unbounded sides come from the prior's 0.5 % and 99.5 % quantiles
    np.testing.assert_allclose(b[4], [-2.5758293035489, 2.5758293035489], rtol=1e-10)
    np.testing.assert_allclose(b[3], [0.0, np.exp(0.5 * 2.5758293035489)], rtol=1e-10)
    assert (d.array >= b[:, 0]).all() and (d.array <= b[:, 1]).all()
    # Latin: every column has exactly one point in each of the n strata
    unit = (d.array - b[:, 0]) / (b[:, 1] - b[:, 0])
    for j in range(5):
        assert sorted(np.floor(unit[:, j] * 200).astype(int)) == list(range(200))
    # the optimization lowers the centred discrepancy against a plain LHS of the same seed
    plain = latin_hypercube(_sim(), THETA, n=200, x_bounds=XB, seed=0, optimization=None)
    unit_plain = (plain.array - b[:, 0]) / (b[:, 1] - b[:, 0])
    assert qmc.discrepancy(unit) < qmc.discrepancy(unit_plain)


def test_seed_reproducible_and_fingerprint():
    a = latin_hypercube(_sim(), THETA, n=20, x_bounds=XB, seed=3)
    b = latin_hypercube(_sim(), THETA, n=20, x_bounds=XB, seed=3)
    c = latin_hypercube(_sim(), THETA, n=20, x_bounds=XB, seed=4)
    np.testing.assert_array_equal(a.array, b.array)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    with pytest.raises(ValueError):
        a.array[0, 0] = 1.0  # read-only: a design is a record of what was planned


def test_sobol_and_grid():
    s = sobol(_sim(), THETA, n=64, x_bounds=XB, seed=1)
    assert s.array.shape == (64, 5) and s.method == "sobol"
    assert sobol(_sim(), THETA, n=10, x_bounds=XB).array.shape == (10, 5)
    g = grid(_sim(), THETA, n={"load": 3, "pos": 1, "E": 2, "c": 2, "m": 2}, x_bounds=XB)
    assert g.array.shape == (3 * 1 * 2 * 2 * 2, 5)
    np.testing.assert_allclose(np.unique(g.array[:, 0]), [0.0, 500.0, 1000.0])
    np.testing.assert_allclose(np.unique(g.array[:, 1]), [0.55])
    np.testing.assert_allclose(g.array[1], [0.0, 0.55, 150e9, 0.0, 2.5758293035489])


def test_no_control_inputs():
    sim = FunctionSimulator(lambda x, t: [t[0]], (), ("k",), ("y",))
    d = latin_hypercube(sim, [Parameter("k", 1.0, 2.0)], n=5, seed=0)
    assert d.array.shape == (5, 1) and d.x.shape == (5, 0)


def test_bad_input_messages():
    sim = _sim()
    with pytest.raises(
        ValueError, match=r"x_bounds: bounds missing for control input\(s\) \['pos'\]"
    ):
        latin_hypercube(sim, THETA, n=5, x_bounds={"load": (0, 1)})
    with pytest.raises(ValueError, match=r"x_bounds: unknown control input\(s\) \['lod'\]"):
        latin_hypercube(sim, THETA, n=5, x_bounds={**XB, "lod": (0, 1)})
    with pytest.raises(ValueError, match=r"x_bounds\['load'\]: expected finite lower <= upper"):
        latin_hypercube(sim, THETA, n=5, x_bounds={**XB, "load": (2, 1)})
    with pytest.raises(ValueError, match=r"theta: expected one Parameter per simulator parameter"):
        latin_hypercube(sim, THETA[:2], n=5, x_bounds=XB)
    with pytest.raises(TypeError, match="theta: expected a list of calib.Parameter"):
        latin_hypercube(sim, [*THETA[:2], "m"], n=5, x_bounds=XB)
    with pytest.raises(ValueError, match="n: expected a positive integer, got 0"):
        latin_hypercube(sim, THETA, n=0, x_bounds=XB)
    with pytest.raises(ValueError, match=r"design: expected an array of shape \(n, 5\)"):
        as_design(sim, np.zeros((4, 3)))
    with pytest.raises(ValueError, match="must be finite"):
        Design(("a",), [[np.nan]], 0)
    with pytest.raises(ValueError, match="prior_quantiles"):
        design_bounds(sim, THETA, XB, prior_quantiles=(0.5, 0.4))


def test_a_side_only_the_prior_support_closes_uses_the_prior_quantile():
    """issue 12: LogNormal(0, 0.7) with no bounds was designed on [0, 6.07] (the support's 0
    taken as a bound); docs/simulators.md: an open side uses the prior's 0.5 % quantile."""
    from scipy import stats

    sim = FunctionSimulator(lambda X, T: T[:, :1], (), ("k1",), ("y",), vectorized=True)
    k1 = Parameter("k1", prior=LogNormal(0.0, 0.7))
    assert k1.lower == 0.0 and k1.given_bounds == (None, None)
    d = latin_hypercube(sim, [k1], n=50, seed=0)
    lo, hi = stats.lognorm(s=0.7).ppf([0.005, 0.995])
    col = np.asarray(d.array)[:, 0]
    assert lo <= col.min() < lo + (hi - lo) / 50 and hi - (hi - lo) / 50 < col.max() <= hi
    # a bound the user gives is the design's edge
    k2 = Parameter("k1", lower=0.0, prior=LogNormal(0.0, 0.7))
    col = np.asarray(latin_hypercube(sim, [k2], n=50, seed=0).array)[:, 0]
    assert 0.0 <= col.min() < hi / 50
