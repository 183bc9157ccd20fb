"""calib.diagnostics: rank-normalized R̂, bulk/tail ESS and MCSE (Vehtari et al. 2021).

* Agreement with ArviZ on the same draws (ArviZ wants ``(chain, draw)``: the chains are
  transposed): ESS and MCSE to 2 % relative; R̂ through ``R̂ − 1``, to 2 % relative or 1e-3
  absolute, whichever is looser. The implementation follows the same formulas, so in practice
  the two agree to rounding (~1e-14).
* A closed form: the ESS of a stationary Gaussian AR(1) with coefficient ρ is
  ``S (1 − ρ)/(1 + ρ)``.
* ``summarize`` of ``k`` quantities equals the results quantity by quantity.
* Degenerate input (constant quantities, stuck chains, NaN, too few steps) gives the documented
  values and no RuntimeWarning.
"""

from __future__ import annotations

import warnings

import emcee
import numpy as np
import pytest
from scipy.signal import lfilter
from scipy.special import ndtr

from calib import diagnostics as D

az = pytest.importorskip("arviz")

STATS = ("rhat", "ess_bulk", "ess_tail", "ess_mean", "mcse_mean", "mcse_q5", "mcse_q95")


def _ar1(rng: np.random.Generator, n: int, m: int, rho: float) -> np.ndarray:
    """Stationary Gaussian AR(1) ``x_t = ρ x_{t−1} + ε_t`` (unit innovations), shape (n, m)."""
    e = rng.standard_normal((n, m))
    e[0] /= np.sqrt(1.0 - rho**2)
    return lfilter([1.0], [1.0, -rho], e, axis=0)


def _cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20210616)
    # heavy tails with dependence: a standardized AR(1) through Φ, then the Cauchy quantile
    u = ndtr(_ar1(rng, 1000, 8, 0.7) * np.sqrt(1 - 0.7**2))
    return {
        "iid_many_chains": rng.standard_normal((500, 64)),
        "ar1_rho0.9": _ar1(rng, 1000, 16, 0.9),
        "ar1_rho0.99": _ar1(rng, 2000, 8, 0.99),
        "cauchy_iid": rng.standard_cauchy((1000, 8)),
        "cauchy_ar1": np.tan(np.pi * (u - 0.5)),
        # chains around different means: R̂ far above 1.01
        "bad_mixing": rng.standard_normal((400, 8)) + 0.5 * np.arange(8),
        # same mean, different scales: only the folded R̂ sees it
        "different_scales": rng.standard_normal((1000, 8)) * np.repeat([1.0, 3.0], 4),
        "few_long_4x2000": _ar1(rng, 2000, 4, 0.7),
        "many_short_128x50": _ar1(rng, 50, 128, 0.5),
        "odd_steps_1001": _ar1(rng, 1001, 8, 0.8),
        "odd_steps_7": _ar1(rng, 7, 5, 0.3),
        # many exact ties (and values equal in their leading bits)
        "ties": 1.0 + 1e-13 * rng.integers(0, 300, (600, 6)),
    }


CASES = _cases()


def _arviz(x: np.ndarray) -> dict[str, float]:
    a = x.T
    return {
        "rhat": float(az.rhat(a, method="rank")),
        "ess_bulk": float(az.ess(a, method="bulk")),
        "ess_tail": float(az.ess(a, method="tail")),
        "ess_mean": float(az.ess(a, method="mean")),
        "mcse_mean": float(az.mcse(a, method="mean")),
        "mcse_q5": float(az.mcse(a, method="quantile", prob=0.05)),
        "mcse_q95": float(az.mcse(a, method="quantile", prob=0.95)),
    }


def _ours(x: np.ndarray) -> dict[str, float]:
    return {
        "rhat": float(D.rhat(x)),
        "ess_bulk": float(D.ess_bulk(x)),
        "ess_tail": float(D.ess_tail(x)),
        "ess_mean": float(D.ess_mean(x)),
        "mcse_mean": float(D.mcse_mean(x)),
        "mcse_q5": float(D.mcse_quantile(x, 0.05)),
        "mcse_q95": float(D.mcse_quantile(x, 0.95)),
    }


def _disagreement(stat: str, ours: float, ref: float) -> float:
    """Relative disagreement (of R̂ − 1 for R̂), 0 when within an absolute floor."""
    if stat == "rhat":
        diff = abs(ours - ref)
        return 0.0 if diff <= 1e-3 else diff / abs(ref - 1.0)
    return abs(ours - ref) / abs(ref)


@pytest.mark.parametrize("name", list(CASES))
def test_agrees_with_arviz(name):
    x = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ArviZ's own warnings (not ours: checked below)
        ref = _arviz(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = _ours(x)
        summary = D.summarize(x)
    for stat in STATS:
        assert _disagreement(stat, ours[stat], ref[stat]) <= 0.02, (name, stat, ours, ref)
    for key, value in summary.items():
        np.testing.assert_allclose(value, ours[key], rtol=1e-12, err_msg=key)


def test_the_cases_cover_what_they_claim():
    assert D.rhat(CASES["bad_mixing"]) > 1.1
    assert D.rhat(CASES["different_scales"]) > 1.05
    # the scale difference is invisible to the bulk (location) part alone
    x = CASES["different_scales"]
    assert az.rhat(x.T, method="z_scale") < 1.01
    assert D.ess_bulk(CASES["ar1_rho0.99"]) < 0.01 * CASES["ar1_rho0.99"].size
    x = CASES["ties"]
    assert np.unique(x).size < 0.1 * x.size


def test_odd_step_count_drops_the_middle_draw():
    x = CASES["odd_steps_1001"]
    middle_dropped = np.delete(x, x.shape[0] // 2, axis=0)
    # rank-normalized statistics: the split chains are the same
    assert D.rhat(x) == D.rhat(middle_dropped)
    assert D.ess_bulk(x) == D.ess_bulk(middle_dropped)
    assert D.ess_mean(x) == D.ess_mean(middle_dropped)
    # the MCSE of the mean uses the sd of all draws, middle ones included (as ArviZ)
    assert D.mcse_mean(x) != D.mcse_mean(middle_dropped)


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_ar1_ess_closed_form(rho):
    """ESS/S of a stationary AR(1) is (1 − ρ)/(1 + ρ).

    Tolerance: the estimate of τ = S/ESS truncated at lag M has relative standard deviation
    about ``sqrt(2 (2M + 1) / S)`` (Madras & Sokal 1988; Sokal 1997, eq. 3.19). Geyer's sequence
    stops where the autocorrelation ρ^M reaches the noise level 1/√S, M = ln(1/√S)/ln ρ (M = 1
    for ρ = 0); the check allows 4 such standard deviations (2 % at ρ = 0, 4.9 % at ρ = 0.5,
    12 % at ρ = 0.9; the estimator's bias, of order τ/N, is below 0.2 % here). The
    rank-normal transform of a Gaussian chain is the identity up to O(1/S), so the bulk-ESS
    has the same limit as the ESS of the draws.
    """
    n, m = 4000, 64
    x = _ar1(np.random.default_rng(17), n, m, rho)
    s = (n // 2) * 2 * m
    lag = 1 if rho == 0 else int(np.ceil(np.log(1 / np.sqrt(s)) / np.log(rho)))
    tol = 4 * np.sqrt(2 * (2 * lag + 1) / s)
    expected = (1 - rho) / (1 + rho)
    for ess in (D.ess_bulk(x), D.ess_mean(x)):
        assert abs(ess / s / expected - 1) < tol, (rho, ess / s, expected, tol)


def test_summarize_is_vectorized_over_quantities():
    rng = np.random.default_rng(5)
    n, w = 301, 12
    cols = [
        _ar1(rng, n, w, 0.6),
        rng.standard_cauchy((n, w)),
        rng.standard_normal((n, w)) + np.arange(w) * 0.2,
        np.round(rng.standard_normal((n, w)), 1),
    ]
    x = np.stack(cols, axis=-1)
    together = D.summarize(x)
    assert set(together) == {"rhat", "ess_bulk", "ess_tail", "mcse_mean", "mcse_q5", "mcse_q95"}
    for key, value in together.items():
        assert value.shape == (len(cols),)
        alone = [D.summarize(c)[key] for c in cols]
        assert all(np.shape(a) == () for a in alone)
        np.testing.assert_allclose(value, alone, rtol=1e-12, err_msg=key)
    np.testing.assert_allclose(D.ess_mean(x), [D.ess_mean(c) for c in cols], rtol=1e-12)
    np.testing.assert_allclose(D.integrated_time(x), [D.integrated_time(c) for c in cols])


def _no_warnings(f, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return f(*args)


def test_constant_chain():
    n, w = 101, 8
    x = np.full((n, w), 0.1)
    s = (n // 2) * 2 * w  # the split draws (the middle one of each chain dropped)
    out = _no_warnings(D.summarize, x)
    assert out["rhat"] == 1.0
    assert out["ess_bulk"] == s and out["ess_tail"] == s
    assert out["mcse_mean"] == 0.0 and out["mcse_q5"] == 0.0 and out["mcse_q95"] == 0.0
    assert _no_warnings(D.ess_mean, x) == s
    assert _no_warnings(D.integrated_time, x) == 1.0
    # ArviZ: NaN R̂ (documented difference), the same ESS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(az.rhat(x.T, method="rank"))
        assert az.ess(x.T, method="bulk") == s


def test_one_constant_quantity_leaves_the_others_alone():
    rng = np.random.default_rng(11)
    n, w = 400, 16
    x = np.stack([_ar1(rng, n, w, 0.5), np.full((n, w), -3.0), rng.standard_normal((n, w))], -1)
    out = _no_warnings(D.summarize, x)
    for key, value in out.items():
        for j in (0, 2):
            np.testing.assert_allclose(value[j], D.summarize(x[..., j])[key], rtol=1e-12)
    assert out["rhat"][1] == 1.0
    assert out["ess_bulk"][1] == out["ess_tail"][1] == n * w
    assert out["mcse_mean"][1] == out["mcse_q5"][1] == out["mcse_q95"][1] == 0.0
    tau = _no_warnings(D.integrated_time, x)
    assert tau[1] == 1.0 and np.all(np.isfinite(tau))


def test_stuck_chains_nan_and_short_chains():
    rng = np.random.default_rng(2)
    stuck = np.broadcast_to(np.arange(6.0), (50, 6)).copy()  # every chain at its own value
    assert _no_warnings(D.rhat, stuck) == np.inf
    assert 0 < _no_warnings(D.ess_bulk, stuck) < 10
    x = rng.standard_normal((60, 4, 3))
    x[7, 2, 1] = np.nan
    x[3, 0, 2] = np.inf
    out = _no_warnings(D.summarize, x)
    for value in out.values():
        assert np.isfinite(value[0]) and np.isnan(value[1]) and np.isnan(value[2])
    tau = _no_warnings(D.integrated_time, x)
    assert np.isfinite(tau[0]) and np.isnan(tau[1:]).all()
    short = _no_warnings(D.summarize, rng.standard_normal((3, 4)))
    assert all(np.isnan(v) for v in short.values())


def test_legacy_names_and_integrated_time():
    assert D.ess is D.ess_bulk
    assert D.split_rhat is D.rhat
    for name in D.__all__:
        assert callable(getattr(D, name))
    rng = np.random.default_rng(8)
    x = np.stack([_ar1(rng, 3000, 10, r) for r in (0.0, 0.8, 0.95)], axis=-1)
    expected = emcee.autocorr.integrated_time(x, tol=0, quiet=True)
    np.testing.assert_allclose(D.integrated_time(x), expected, rtol=1e-10)
    np.testing.assert_allclose(D.integrated_time(x[..., 1]), expected[1], rtol=1e-10)
    assert np.shape(D.integrated_time(x[..., 1])) == ()


def test_bad_arguments():
    x = np.random.default_rng(0).standard_normal((100, 4))
    with pytest.raises(ValueError):
        D.mcse_quantile(x, 1.0)
    with pytest.raises(ValueError):
        D.rhat(x[:, 0])
