"""benchmarks/peers_side.py: the peers' chains measured with calib's own ESS estimator.

Two kinds of test:

- without the peers (run everywhere, CI included): the ESS of a synthetic AR(1) chain,
  taken as the peers' one chain, against the closed form; argument checks;
- with the peers' interpreter (benchmarks/peers_env.sh, default /tmp/peers-venv, or the
  one named by ``CALIB_PEERS_PYTHON``): a 300-step surmise run through ``run_peer``.
  It skips where that interpreter is absent, in CI in particular.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import lfilter

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("peers_side", REPO / "benchmarks" / "peers_side.py")
peers_side = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peers_side)

PEERS_PYTHON = os.environ.get("CALIB_PEERS_PYTHON", peers_side.DEFAULT_PYTHON)


def _ar1(rng: np.random.Generator, phi: float, reps: int, n: int) -> np.ndarray:
    """``reps`` stationary AR(1) chains ``x_t = φ x_{t−1} + e_t``, shape (reps, n)."""
    e = rng.standard_normal((reps, n))
    x_prev = rng.standard_normal(reps) / math.sqrt(1.0 - phi**2)  # the stationary law
    return lfilter([1.0], [1.0, -phi], e, axis=1, zi=(phi * x_prev)[:, None])[0]


@pytest.mark.parametrize("phi", [0.5, 0.9])
def test_ess_of_one_ar1_chain_matches_closed_form(phi):
    # an AR(1) chain's integrated time is (1+φ)/(1−φ), so ESS = n(1−φ)/(1+φ). The check is
    # on the mean over 40 independent chains, within 4 of its standard errors (measured
    # from the chains themselves: the estimator's relative sd is ~4 % at φ = 0.5 and ~8 %
    # at φ = 0.9 for n = 20,000); a wrong chain layout (n chains of one draw, or halves
    # not split) is off by far more.
    n, reps = 20_000, 40
    chains = _ar1(np.random.default_rng(16), phi, reps, n)
    ess = np.array(
        [peers_side.chain_figures(c[:, None], ["x"], 2.0, 1.0)["ess_bulk"]["x"] for c in chains]
    )
    exact = n * (1.0 - phi) / (1.0 + phi)
    se = ess.std(ddof=1) / math.sqrt(reps)
    assert abs(ess.mean() - exact) <= 4.0 * se, (ess.mean(), exact, se)
    # the figures derived from it
    f = peers_side.chain_figures(chains[0][:, None], ["x"], 2.0, 1.0)
    assert f["n_draws"] == n
    assert f["tau_int"]["x"] == pytest.approx(n / f["ess_bulk"]["x"])
    assert f["min_ess_per_s"] == pytest.approx(f["min_ess"] / 2.0)
    assert f["min_ess_per_cpu_s"] == pytest.approx(f["min_ess"] / 1.0)


def test_chain_figures_by_name_and_checks():
    rng = np.random.default_rng(3)
    chain = np.column_stack([rng.normal(1.0, 2.0, 4000), rng.normal(-3.0, 0.5, 4000)])
    f = peers_side.chain_figures(chain, ["a", "b"], 1.0, 1.0)
    assert list(f["theta_mean"]) == ["a", "b"]
    # independent draws: mean within 4 standard errors, ESS near n (relative sd ~3 %)
    assert abs(f["theta_mean"]["a"] - 1.0) <= 4 * 2.0 / math.sqrt(4000)
    assert abs(f["theta_mean"]["b"] + 3.0) <= 4 * 0.5 / math.sqrt(4000)
    assert 0.85 * 4000 <= f["min_ess"] <= 1.15 * 4000
    assert f["rhat"]["a"] < 1.01 and f["rhat"]["b"] < 1.01
    with pytest.raises(ValueError, match="expected shape"):
        peers_side.chain_figures(chain, ["a"], 1.0, 1.0)
    chain[5, 1] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        peers_side.chain_figures(chain, ["a", "b"], 1.0, 1.0)


def test_peer_unavailable_and_unknown_problem(tmp_path):
    assert peers_side.peer_available(str(tmp_path / "no-python")) is False
    with pytest.raises(ValueError, match="expected one of"):
        peers_side.run_peer("ball_drop_3", 0, python=str(tmp_path / "no-python"))


# ~3 s on an idle 2-core machine (two starts of the peers' interpreter; 300 MH steps)
@pytest.mark.skipif(peers_side._data_root() is None, reason="no shared/data/ball_drop")
def test_run_peer_short_surmise_run():
    # checked here, not at collection: the check starts the peers' interpreter
    why = peers_side._status(PEERS_PYTHON)
    if why is not None:
        pytest.skip(f"{why}; not installed in CI")
    r = peers_side.run_peer("surmise_linear", 0, python=PEERS_PYTHON, steps=300)
    assert r["peer"] == "surmise" and r["version"] == "1.0.0"
    assert r["names"] == ["theta0", "theta1"] and r["n_draws"] == 300
    assert r["settings"]["nSamples"] == 300 and r["settings"]["stepParam"] == [0.4, 0.4]
    for k in ("wall_s", "cpu_s", "min_ess", "min_ess_per_s", "min_ess_per_cpu_s"):
        assert math.isfinite(r[k]) and r[k] > 0, (k, r[k])
    for name in r["names"]:
        for k in ("theta_mean", "theta_sd", "ess_bulk", "tau_int", "rhat"):
            assert math.isfinite(r[k][name]), (k, name)
    assert 0.0 < r["acceptance"] < 1.0
    assert "chain" not in r
