"""What calib refuses at its boundary, and the message it gives (docs/refusals.md).

Each row is an input that an earlier version took silently or answered with a
misleading error (issue 13): the imaginary part of a complex ``y`` was dropped with only
a ``ComplexWarning``, ``None`` became a missing value, strings were parsed as numbers, a
design of zero runs was run.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from calib import Parameter
from calib.campaign import Campaign
from calib.design import Design, grid, latin_hypercube, sobol
from calib.runner import run_design
from simulators import FunctionSimulator

CAMPAIGN = [
    # (case, keyword arguments, exception, message)
    ("complex y", {"y": np.array([1.0 + 2.0j, 3.0])}, ValueError,
     r"y: expected real numbers, got complex values \(dtype complex128\)"),
    ("complex y as list", {"y": [1.0 + 2.0j, 3.0]}, ValueError,
     "y: expected real numbers, got complex values"),
    ("complex x", {"x": np.array([1j, 2.0]), "y": [1.0, 2.0]}, ValueError,
     "x: expected real numbers, got complex values"),
    ("complex noise_sd", {"y": [1.0, 2.0], "noise_sd": np.array(0.1 + 0j)}, ValueError,
     "noise_sd: expected real numbers, got complex values"),
    ("None in y", {"y": [1.0, None]}, TypeError,
     "y: expected an array of numbers, got an object array holding NoneType None; use NaN"),
    ("object y", {"y": np.array([1.0, "2"], dtype=object)}, TypeError,
     "y: expected an array of numbers, got an object array holding str '2'"),
    ("strings y", {"y": ["1.0", "2.0"]}, TypeError,
     r"y: expected an array of numbers, got a list of strings \(dtype <U3\)"),
    ("strings x", {"x": ["0", "1"], "y": [1.0, 2.0]}, TypeError,
     "x: expected an array of numbers, got a list of strings"),
    ("ragged x", {"x": [[1.0, 2.0], [3.0]], "y": [1.0, 2.0]}, ValueError,
     "x: expected a rectangular array of numbers, got a ragged list"),
    ("NaN in x", {"x": [np.nan, 1.0], "y": [1.0, 2.0]}, ValueError,
     r"x contains NaN or inf in 1 row\(s\)"),
    ("inf in x", {"x": [[0.0, 1.0], [np.inf, 1.0]], "y": [1.0, 2.0]}, ValueError,
     r"x contains NaN or inf in 1 row\(s\)"),
    ("-inf in y", {"y": [-np.inf, 1.0]}, ValueError, r"y contains inf \(use NaN for a missing"),
    ("3-D y", {"y": np.zeros((2, 1, 1))}, ValueError, r"y must be 1-D or 2-D, got shape \(2, 1, 1\)"),
    ("3-D x", {"x": np.zeros((2, 1, 1)), "y": [1.0, 2.0]}, ValueError,
     r"x must be 1-D or 2-D, got shape \(2, 1, 1\)"),
    ("scalar x", {"x": 1.0, "y": [1.0]}, ValueError, r"x must be 1-D or 2-D, got shape \(\)"),
    ("y without columns", {"y": np.zeros((2, 0))}, ValueError, r"y has shape \(2, 0\): no columns"),
    ("NaN noise_sd", {"y": [1.0, 2.0], "noise_sd": [0.1, np.nan]}, ValueError,
     r"noise_sd must be finite and > 0, got 1 value\(s\) that are not \(first: nan\)"),
]  # fmt: skip


@pytest.mark.parametrize("case, kw, exc, message", CAMPAIGN, ids=[c[0] for c in CAMPAIGN])
def test_campaign_refuses(case, kw, exc, message):
    with warnings.catch_warnings():
        # a ComplexWarning (or any other) in place of the error is a failure
        warnings.simplefilter("error")
        with pytest.raises(exc, match=f"^Campaign 'A': {message}"):
            Campaign("A", **kw)


def test_campaign_still_takes_what_it_took():
    # integers, booleans, an object array of numbers and NaN as a missing value
    c = Campaign("A", x=np.array([[1, 2], [3, 4]]), y=np.array([1.5, np.nan], dtype=object))
    assert c.x.dtype == float and c.y.dtype == float and np.isnan(c.y[1])
    assert Campaign("B", y=[True, False]).y.tolist() == [1.0, 0.0]


def _sim(calls: list | None = None) -> FunctionSimulator:
    def model(x, t):
        if calls is not None:
            calls.append(1)
        return [x[0] * t[0]]

    return FunctionSimulator(model, ("x",), ("k",), ("y",))


THETA = [Parameter("k", 0.0, 1.0)]
XB = {"x": (0.0, 1.0)}

DESIGN = [
    # (case, design given to run_design, exception, message)
    ("strings", [["1", "2"], ["3", "4"]], TypeError,
     r"design: expected an array of numbers, got a list of strings \(dtype <U1\)"),
    ("words", [["a", "b"]], TypeError, "design: expected an array of numbers, got a list of strings"),
    ("None", np.array([[1.0, None]], dtype=object), TypeError,
     "design: expected an array of numbers, got an object array holding NoneType None"),
    ("complex", np.array([[1.0, 2.0j]]), ValueError, "design: expected real numbers, got complex"),
    ("ragged", [[1.0, 2.0], [3.0]], ValueError, "design: expected a rectangular array"),
    ("zero rows", np.zeros((0, 2)), ValueError,
     r"design: has no rows \(shape \(0, 2\)\); expected at least one run"),
]  # fmt: skip


@pytest.mark.parametrize("case, design, exc, message", DESIGN, ids=[c[0] for c in DESIGN])
def test_run_design_refuses_a_bad_design_before_any_run(case, design, exc, message):
    calls: list = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(exc, match=f"^{message}"):
            run_design(_sim(calls), design, executor="serial", progress=False)
    assert calls == []


DESIGN_OBJECT = [
    ("zero rows", lambda: Design(("x", "k"), np.zeros((0, 2)), 1), ValueError,
     r"Design: array has no rows \(shape \(0, 2\)\); a design needs at least one run"),
    ("strings", lambda: Design(("x", "k"), [["0.5", "1"]], 1), TypeError,
     "Design: array: expected an array of numbers, got a list of strings"),
    ("names as one string", lambda: Design("xk", np.zeros((1, 2)), 1), TypeError,
     "Design: names must be a sequence of column names"),
    ("duplicate names", lambda: Design(("k", "k"), np.zeros((1, 2)), 1), ValueError,
     r"Design: names has duplicates: \('k', 'k'\)"),
    ("NaN row", lambda: Design(("x", "k"), [[0.0, 1.0], [np.nan, 1.0]], 1), ValueError,
     r"Design: array must be finite, got NaN or inf in 1 row\(s\) \(first: row 1\)"),
    ("n = 0", lambda: latin_hypercube(_sim(), THETA, n=0, x_bounds=XB), ValueError,
     "n: expected a positive integer, got 0"),
    ("n < 0", lambda: sobol(_sim(), THETA, n=-8, x_bounds=XB), ValueError,
     "n: expected a positive integer, got -8"),
    ("grid n = 0", lambda: grid(_sim(), THETA, n={"x": 0}, x_bounds=XB), ValueError,
     r"n\['x'\]: expected a positive integer, got 0"),
    ("bounds as strings", lambda: latin_hypercube(_sim(), THETA, n=4, x_bounds={"x": ("0", "1")}),
     TypeError, r"x_bounds\['x'\]: expected \(lower, upper\) as numbers, got \('0', '1'\)"),
]  # fmt: skip


@pytest.mark.parametrize(
    "case, make, exc, message", DESIGN_OBJECT, ids=[c[0] for c in DESIGN_OBJECT]
)
def test_design_refuses(case, make, exc, message):
    with pytest.raises(exc, match=f"^{message}"):
        make()


@pytest.mark.parametrize("what", ["campaigns", "parameters"])
@pytest.mark.parametrize("value", [None, "A", 3.0])
def test_calibrator_refuses_a_list_that_is_not_one(what, value):
    """``campaigns=None`` gave ``'NoneType' object is not iterable``; a string was split
    into its letters (issue 13, finding 13)."""
    from calib import Calibrator

    sim = FunctionSimulator(lambda x, t: t, ["x"], ["k"], ["y"])
    args = {
        "parameters": [Parameter("k", 0.0, 1.0)],
        "campaigns": [Campaign("A", x=[0.0], y=[1.0])],
    }
    args[what] = value
    with pytest.raises(TypeError, match=rf"^{what} must be a sequence of calib\.\w+ objects, got"):
        Calibrator(sim, args["parameters"], args["campaigns"])


def test_a_prior_with_no_mass_inside_the_bounds_is_refused():
    """It was accepted, and every start then failed with "θ = nan" (issue 13, finding 9)."""
    from calib.priors import Normal

    with pytest.raises(ValueError, match=r"^Parameter 'k': prior Normal.* puts no mass"):
        Parameter("k", -5.0, 5.0, prior=Normal(100.0, 1.0))
    assert Parameter("k", -5.0, 5.0, prior=Normal(10.0, 1.0)).prior is not None  # 1e-7 mass
