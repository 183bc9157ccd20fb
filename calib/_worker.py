"""The worker side of the run engine: one run of a simulator, timed out and classified.

:func:`_execute` runs on a worker (a process of the local pool, a Dask worker, or this
thread) and never raises for a simulator failure: every run comes back as ``(index,
status, outputs, error text, seconds, finish time)``, its status one of
:data:`~calib.runset.STATUSES`.
"""

from __future__ import annotations

import contextlib
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import numpy as np

from .interfaces import SimulatorError
from .runset import ERROR, FAILED, INVALID, OK, TIMEOUT

#: Longest error text kept per run (the tail: the end of a traceback or of stderr).
ERROR_TAIL = 4000


class _RunTimeout(BaseException):
    """Raised into a run by :func:`_alarm`; a BaseException so that a simulator's own
    ``except Exception`` cannot swallow it and run on past its timeout."""


_SIM_CACHE: dict[str, Any] = {}


def _dumps(obj: Any) -> bytes:
    # cloudpickle (a Dask dependency) also carries lambdas and local functions; plain pickle
    # is enough for simulators defined at module level
    try:
        import cloudpickle

        return cloudpickle.dumps(obj)
    except ImportError:
        return pickle.dumps(obj)


def _simulator(token: str, payload: Any) -> Any:
    if not isinstance(payload, bytes):
        return payload
    sim = _SIM_CACHE.get(token)
    if sim is None:
        # a worker keeps the simulator of the design at hand, unpickled once
        _SIM_CACHE.clear()
        sim = _SIM_CACHE[token] = pickle.loads(payload)
    return sim


@contextlib.contextmanager
def _alarm(seconds: float | None) -> Iterator[None]:
    """Interrupt the block after ``seconds`` with SIGALRM, where that is possible.

    Signals reach only a process's main thread: a local worker process or the serial
    executor. Elsewhere (Dask threads) a run is timed out when it returns late.
    """
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _RunTimeout

    previous = signal.signal(signal.SIGALRM, handler)
    outer, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    t0 = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer > 0:
            # a timer armed by the caller (e.g. a test's own time limit) runs on with what
            # was left of it, rather than being silently cancelled
            left = max(outer - (time.monotonic() - t0), 1e-6)
            signal.setitimer(signal.ITIMER_REAL, left, interval)


def _tail(text: str) -> str:
    return text if len(text) <= ERROR_TAIL else "…" + text[-ERROR_TAIL:]


def _run_one(
    sim: Any, x: np.ndarray, theta: np.ndarray, timeout: float | None, own_timeout: bool, m: int
) -> tuple[str, np.ndarray | None, str, float]:
    t0 = time.perf_counter()
    try:
        if own_timeout:
            # the simulator enforces it (CommandSimulator kills its process tree)
            y = sim.run(x, theta, timeout=timeout)
        else:
            with _alarm(timeout):
                y = sim.run(x, theta)
    except (_RunTimeout, TimeoutError) as exc:
        elapsed = time.perf_counter() - t0
        msg = str(exc) or f"run did not finish within timeout={timeout} s"
        return TIMEOUT, None, _tail(msg), elapsed
    except Exception as exc:  # noqa: BLE001 - any simulator failure is recorded, not raised
        elapsed = time.perf_counter() - t0
        # a simulator may classify its own failure (CommandSimulator's unparsable output is
        # "invalid"); anything else is an "error" with its traceback's tail
        status = getattr(exc, "calib_status", ERROR)
        if status not in FAILED:
            status = ERROR
        if isinstance(exc, SimulatorError):
            return status, None, _tail(f"{type(exc).__name__}: {exc}"), elapsed
        tb = traceback.format_exc()
        return status, None, _tail(f"{type(exc).__name__}: {exc}\n{tb}"), elapsed
    elapsed = time.perf_counter() - t0
    if timeout is not None and elapsed > timeout:
        return TIMEOUT, None, f"run took {elapsed:.3g} s, more than timeout={timeout} s", elapsed
    try:
        arr = np.asarray(y, dtype=float)
    except (TypeError, ValueError) as exc:
        return INVALID, None, _tail(f"output is not numeric: {exc}"), elapsed
    if arr.size != m or arr.ndim > 2:
        return (
            INVALID,
            None,
            f"output has shape {arr.shape}, expected ({m},) for the simulator's {m} outputs",
            elapsed,
        )
    arr = arr.reshape(m)
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr)).tolist()
        return INVALID, None, f"output has NaN or inf at output index {bad}", elapsed
    return OK, arr, "", elapsed


def _execute(
    token: str,
    payload: Any,
    rows: list[tuple[int, np.ndarray, np.ndarray]],
    timeout: float | None,
    own_timeout: bool,
    m: int,
) -> list[tuple[int, str, np.ndarray | None, str, float, float]]:
    """Run a chunk of rows on a worker; never raises for a simulator failure."""
    sim = _simulator(token, payload)
    results = []
    if len(rows) > 1 and timeout is None and callable(getattr(sim, "run_batch", None)):
        # vectorized simulators run a chunk at once; any trouble falls back to single runs
        # so that one bad row cannot take the chunk's other results with it
        t0 = time.perf_counter()
        try:
            X = np.array([r[1] for r in rows], dtype=float).reshape(len(rows), -1)
            T = np.array([r[2] for r in rows], dtype=float).reshape(len(rows), -1)
            Y = np.asarray(sim.run_batch(X, T), dtype=float)
            if Y.shape == (len(rows), m) and np.isfinite(Y).all():
                each = (time.perf_counter() - t0) / len(rows)
                now = time.time()
                return [(i, OK, Y[k], "", each, now) for k, (i, _, _) in enumerate(rows)]
        except Exception:  # noqa: BLE001, S110 - retried row by row below
            pass
    for i, x, theta in rows:
        status, y, err, elapsed = _run_one(sim, x, theta, timeout, own_timeout, m)
        results.append((i, status, y, err, elapsed, time.time()))
    return results
