"""Direct mode's timeout (issue 13, finding 7): a simulator that sleeps inside the
likelihood is stopped after ``Calibrator(timeout=)`` seconds and its run is a failed run,
as ``run_design(timeout=)`` records it; it no longer hangs ``sample()``."""

from __future__ import annotations

import signal
import sys
import threading
import time

import numpy as np
import pytest

from calib import Calibrator, Campaign, Parameter, SimulatorWarning
from simulators.command import CommandSimulator
from simulators.function import FunctionSimulator

# the likelihood's count of failed walkers comes with every rejected walker; the tests
# assert on the timeout's own warning
pytestmark = pytest.mark.filterwarnings("ignore:the forward model failed:calib.SimulatorWarning")

X = np.array([[1.0], [2.0], [3.0]])
Y = np.array([[1.1], [1.9], [3.2]])
SLEEP = 30.0  # a run that is waited for makes the test take 30 s, far past its bounds
# u = -2 gives k = 5/(1+e²) ≈ 0.60 (runs at once), u = 0.5 gives k ≈ 3.11 (> 2: sleeps)
U = np.array([[-2.0], [0.5]])


def _sleepy(x, t):
    if t[0] > 2:
        time.sleep(SLEEP)
    return [t[0] * x[0]]


def _cal(sim, **kw):
    return Calibrator(
        sim,
        [Parameter("k", 0, 5)],
        [Campaign("A", x=X, y=Y, noise_sd=0.1)],
        noise="known",
        **kw,
    )


def _sim(fn=_sleepy, **kw):
    return FunctionSimulator(fn, ("x",), ("k",), ("y",), **kw)


def test_a_python_simulator_past_the_timeout_is_a_failed_run_naming_its_values():
    cal = _cal(_sim(), timeout=0.5)
    t0 = time.perf_counter()
    with pytest.warns(SimulatorWarning) as rec:
        lp = cal.log_posterior(U)
    took = time.perf_counter() - t0
    # one timeout per walker: the rest of a timed-out walker's rows are not run
    assert 0.5 <= took < 5.0
    assert lp[1] == -np.inf
    # the other walker is untouched: the same value as without a timeout
    assert lp[0] == _cal(_sim()).log_posterior(U[:1])[0]
    text = [str(w.message) for w in rec]
    assert any("ran past timeout=0.5 s" in t and "k = 3.1123" in t for t in text), text
    assert any("status 'timeout'" in t for t in text)


def test_a_vectorized_simulator_runs_row_by_row_under_a_timeout():
    # run_batch has no per-run limit: with a timeout each row runs alone, as in run_design
    def vec(X, T):
        if (T[:, 0] > 2).any():
            time.sleep(SLEEP)
        return T[:, :1] * X[:, :1]

    cal = _cal(_sim(vec, vectorized=True), timeout=0.5)
    t0 = time.perf_counter()
    with pytest.warns(SimulatorWarning, match="ran past timeout"):
        lp = cal.log_posterior(U)
    assert time.perf_counter() - t0 < 5.0
    assert np.isfinite(lp[0]) and lp[1] == -np.inf


def test_every_start_timing_out_is_a_clear_error_quickly():
    def always(x, t):
        time.sleep(SLEEP)
        return [0.0]

    cal = _cal(_sim(always), timeout=0.3)
    t0 = time.perf_counter()
    with (
        pytest.warns(SimulatorWarning),
        pytest.raises(
            RuntimeError,
            match=r"the simulator failed; first, a simulator run ran "
            r"past timeout=0.3 s.*k = ",
        ),
    ):
        cal.sample(n_walkers=4, n_steps=10, seed=1, n_starts=2, progress=False)
    assert time.perf_counter() - t0 < 10.0


def test_a_command_past_the_timeout_is_killed():
    script = (
        "import sys, time\n"
        "k, x = float(sys.argv[1]), float(sys.argv[2])\n"
        f"time.sleep({SLEEP}) if k > 2 else None\n"
        "print(k * x)\n"
    )
    sim = CommandSimulator([sys.executable, "-c", script, "{k}", "{x}"], ("x",), ("k",), ("y",))
    cal = _cal(sim, timeout=0.5)
    t0 = time.perf_counter()
    with pytest.warns(SimulatorWarning, match=r"ran past timeout=0.5 s.*k = 3.1123"):
        lp = cal.log_posterior(U)
    assert time.perf_counter() - t0 < 10.0
    assert lp[1] == -np.inf
    assert lp[0] == pytest.approx(_cal(_sim()).log_posterior(U[:1])[0], rel=1e-6)


def test_a_commands_own_timeout_holds_in_direct_mode():
    # CommandSimulator(timeout=) is enforced by the simulator itself, Calibrator(timeout=)
    # left out: the run is killed and rejected as before
    sim = CommandSimulator(
        [sys.executable, "-c", f"import time; time.sleep({SLEEP})", "{k}", "{x}"],
        ("x",),
        ("k",),
        ("y",),
        timeout=0.5,
    )
    t0 = time.perf_counter()
    with pytest.warns(SimulatorWarning, match="failed"):
        lp = _cal(sim).log_posterior(U[:1])
    assert lp[0] == -np.inf
    assert time.perf_counter() - t0 < 10.0


def test_a_simulator_that_swallows_exceptions_is_still_timed_out():
    # the alarm's exception is not an Exception: `except Exception` cannot swallow it
    def stubborn(x, t):
        try:
            time.sleep(SLEEP)
        except Exception:  # noqa: BLE001 - the point of the test
            time.sleep(SLEEP)
        return [0.0]

    t0 = time.perf_counter()
    with pytest.warns(SimulatorWarning, match="ran past timeout"):
        lp = _cal(_sim(stubborn), timeout=0.3).log_posterior(U[:1])
    assert lp[0] == -np.inf and time.perf_counter() - t0 < 5.0


def test_an_outer_timer_survives_the_runs():
    # a caller's own SIGALRM timer (e.g. a test's time limit) is restored afterwards
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        _cal(_sim(), timeout=0.5).log_posterior(U[:1])
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 20.0 < left <= 30.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert not fired


def test_outside_the_main_thread_a_late_run_is_timed_out_when_it_returns():
    def slow(x, t):
        if t[0] > 2:
            time.sleep(0.8)
        return [t[0] * x[0]]

    cal = _cal(_sim(slow), timeout=0.3)
    out = {}
    with pytest.warns(SimulatorWarning) as rec:
        th = threading.Thread(target=lambda: out.setdefault("lp", cal.log_posterior(U)))
        th.start()
        th.join(20)
    assert out["lp"][1] == -np.inf and np.isfinite(out["lp"][0])
    text = " ".join(str(w.message) for w in rec)
    assert "outside the main thread" in text and "took" in text


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "1", True])
def test_a_bad_timeout_is_refused(bad):
    with pytest.raises(ValueError, match="timeout: expected seconds > 0 or None"):
        _cal(_sim(), timeout=bad)


def test_a_timeout_for_an_emulator_is_refused():
    import torch

    class Emu:  # the smallest emulator: predicts θ·x with no variance
        n_inputs, n_outputs = 2, 1

        def predict_torch(self, z):
            mean = z[..., :1] * z[..., 1:2]
            n = z.shape[-2]
            return mean, torch.zeros(*z.shape[:-2], 1, n, n, dtype=z.dtype, device=z.device)

    with pytest.raises(ValueError, match="emulator .* runs no simulator"):
        _cal(Emu(), timeout=1.0)
