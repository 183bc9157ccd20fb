"""The run engine: a design of simulator runs, in parallel, resumable, never losing a result.

:func:`run_design` sends the runs of a :class:`~calib.design.Design` to an executor (local
processes by default, any :class:`concurrent.futures.Executor`, or a Dask cluster;
:mod:`calib.executors`), where :mod:`calib._worker` runs them; it writes each result to the
archive as soon as it arrives (:mod:`calib.archive`), and returns a
:class:`~calib.runset.RunSet`. A run that raises, times out, exits non-zero or returns NaN
or the wrong shape is recorded with its status and error text and the rest of the design
goes on.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import inspect
import math
import os
import sys
import time
from collections import Counter, deque
from typing import Any

import numpy as np

from ._validation import check_int, check_number
from ._worker import ERROR_TAIL as ERROR_TAIL
from ._worker import _dumps, _execute, _tail
from .archive import RunArchive
from .design import Design, as_design
from .executors import SerialExecutor, _Backend, _check_executor
from .runset import ERROR, FAILED, OK, PENDING, STATUSES, RunSet

__all__ = ["run_design", "RunSet", "SerialExecutor"]


def _check_simulator(simulator: Any) -> None:
    missing = [
        a
        for a in ("input_names", "parameter_names", "output_names", "run")
        if not hasattr(simulator, a)
    ]
    if missing or not callable(simulator.run):
        raise TypeError(
            f"simulator: expected an object implementing calib.interfaces.Simulator "
            f"(input_names, parameter_names, output_names, run), got "
            f"{type(simulator).__name__} missing {missing or ['a callable run']}"
        )
    if len(simulator.output_names) < 1:
        raise ValueError("simulator: output_names must name at least one output, got ()")


def _takes_timeout(simulator: Any) -> bool:
    try:
        return "timeout" in inspect.signature(simulator.run).parameters
    except (TypeError, ValueError):
        return False


def _identity(simulator: Any) -> str:
    ident = getattr(simulator, "identity", None)
    return f"{type(simulator).__module__}.{type(simulator).__qualname__}" + (
        f" ({ident})" if isinstance(ident, str) else ""
    )


def run_design(
    simulator: Any,
    design: Design | np.ndarray,
    executor: Any = None,
    archive: str | os.PathLike | RunArchive | None = None,
    timeout: float | None = None,
    retries: int = 0,
    progress: bool | None = None,
    *,
    rerun_failed: bool = False,
    chunksize: int | str = "auto",
) -> RunSet:
    """Run every row of a design through a simulator.

    Parameters
    ----------
    simulator : Simulator
        Any object with ``input_names``, ``parameter_names``, ``output_names`` and ``run``.
        A simulator whose ``run`` accepts ``timeout=`` enforces the timeout itself.
    design : Design or array of shape (n, p + q)
        Rows of control inputs then parameters, in the simulator's name order.
    executor : None, "serial", Executor, distributed.Client or str
        ``None``: a process pool with one worker per core, whose workers die with this
        process even when it is killed outright. ``"serial"``: in this thread.
        Any :class:`concurrent.futures.Executor`. A Dask ``distributed.Client``, or the
        address of a Dask scheduler (``"tcp://host:8786"``; needs ``calib[dask]``).
    archive : path or RunArchive, optional
        HDF5 study file. Each finished run is journaled to it as it arrives; a second call
        with the same design and archive runs only what is not finished.
    timeout : float, optional
        Seconds a run may take; a longer run is recorded with status ``"timeout"``.
    retries : int
        Extra attempts, within this call, for a run that fails.
    progress : bool, optional
        Show a progress bar (tqdm, on stderr); default: when stderr is a terminal.
    rerun_failed : bool
        On resume, also run again the runs the archive records as failed.
    chunksize : int or "auto"
        Rows sent to a worker at once (a simulator with ``run_batch`` and no timeout runs
        them in one call). Larger chunks cut the per-run overhead of very fast simulators.
        ``"auto"`` (default) starts at 1 and sizes chunks to about 50 ms of measured run
        time (at most 64 rows): a slow simulator keeps one run per task, so every finished
        run reaches the archive at once; an instant one stops paying a round trip per run.

    Returns
    -------
    RunSet

    Raises
    ------
    TypeError, ValueError
        For a bad argument, before any run starts.
    ArchiveError
        If the archive holds another design or is being written by another process.

    Examples
    --------
    >>> runs = run_design(sim, design, archive="study.h5", timeout=600)
    >>> runs.counts
    {'ok': 198, 'error': 1, 'timeout': 1, 'invalid': 0, 'pending': 0}
    """
    # -- validate everything before the first run ---------------------------------------
    _check_simulator(simulator)
    design = as_design(simulator, design)
    _check_executor(executor)
    if timeout is not None:
        timeout = check_number(timeout, "timeout", 0, what="seconds > 0 or None")
    check_int(retries, "retries", 0, what="an integer >= 0")
    if chunksize != "auto":
        check_int(chunksize, "chunksize", 1, what="an integer >= 1 or 'auto'")
    if archive is not None and not isinstance(archive, (str, os.PathLike, RunArchive)):
        raise TypeError(
            f"archive: expected a file path or a calib.archive.RunArchive, got "
            f"{type(archive).__name__}"
        )
    m = len(simulator.output_names)
    fresh = RunSet.new(
        tuple(simulator.input_names),
        tuple(simulator.parameter_names),
        tuple(simulator.output_names),
        design.array,
        design.fingerprint(),
        design.method,
        design.seed,
        _identity(simulator),
    )

    writer = None
    if archive is not None:
        writer = archive if isinstance(archive, RunArchive) else RunArchive(archive)
        state = writer.open(fresh)
    else:
        state = fresh
    try:
        redo = (PENDING, *FAILED) if rerun_failed else (PENDING,)
        todo = deque(int(i) for i in np.flatnonzero(np.isin(state.status, redo)))
        if todo:
            _drive(
                simulator,
                design,
                state,
                writer,
                todo,
                executor,
                timeout,
                retries,
                sys.stderr.isatty() if progress is None else progress,
                chunksize,
                m,
            )
    finally:
        if writer is not None:
            writer.close()
    return state.copy()


def _drive(
    simulator: Any,
    design: Design,
    state: RunSet,
    writer: RunArchive | None,
    todo: deque[int],
    executor: Any,
    timeout: float | None,
    retries: int,
    progress: bool,
    chunksize: int | str,
    m: int,
) -> None:
    backend = _Backend(executor)
    own_timeout = _takes_timeout(simulator)
    if backend.in_process:
        token, payload = "local", simulator
    else:
        payload = _dumps(simulator)
        token = hashlib.sha256(payload).hexdigest()
    X, T = design.x, design.theta
    prior_attempts = state.attempts.copy()
    tries: Counter[int] = Counter()
    crashes: Counter[int] = Counter()
    in_flight: dict[Any, list[int]] = {}
    # the writer journals a result, then sets it in ``state`` (its RunSet); same arguments
    record = state._record if writer is None else writer.record
    # kept up to date run by run: a scan of every status per finished run is O(n²)
    failed = int(np.isin(state.status, FAILED).sum())
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="runs", unit="run", leave=True)

    def finish(i: int, status: str, y: Any, err: str, elapsed: float, t: float) -> None:
        nonlocal failed
        tries[i] += 1
        if status != OK and tries[i] <= retries:
            todo.append(i)
            return
        attempts = int(prior_attempts[i]) + tries[i]
        was_failed = state.status[i] in FAILED
        record(i, status, y, err, elapsed, attempts, t)
        failed += (state.status[i] in FAILED) - was_failed
        if bar is not None:
            bar.update(1)
            if failed:
                bar.set_postfix(failed=failed, refresh=False)

    adaptive = chunksize == "auto"
    size = 1 if adaptive else int(chunksize)
    run_time, run_count = 0.0, 0
    try:
        # enough submitted work to keep every worker busy while results come back; Dask
        # needs a deeper queue to hide the scheduler's round trip (about 1 ms per task)
        window = max(64, 8 * backend.workers) if backend.dask else max(4, 2 * backend.workers)
        while todo or in_flight:
            while todo and len(in_flight) < window:
                # a run that was in flight at a worker's death runs alone: sharing a chunk
                # with the culprit, an innocent run would be at its second death too
                chunk = [todo.popleft()]
                if not crashes[chunk[0]]:
                    while todo and len(chunk) < size and not crashes[todo[0]]:
                        chunk.append(todo.popleft())
                rows = [(i, X[i], T[i]) for i in chunk]
                fut = backend.submit(_execute, token, payload, rows, timeout, own_timeout, m)
                in_flight[fut] = chunk
            for fut in backend.wait(list(in_flight)):
                if fut not in in_flight:
                    continue  # already handled with a broken pool below
                chunk = in_flight.pop(fut)
                try:
                    results = fut.result()
                except cf.process.BrokenProcessPool as exc:
                    # a worker process died (segfault, os._exit, out of memory) and took the
                    # pool with it: every unfinished run in flight is hit, so a run present
                    # at two deaths is taken to be the cause and recorded as an error
                    dead = list(chunk)
                    for other, c in list(in_flight.items()):
                        del in_flight[other]
                        if other.done() and other.exception() is None:
                            for r in other.result():
                                finish(*r)
                        else:
                            dead.extend(c)
                    for i in dead:
                        crashes[i] += 1
                        if crashes[i] >= 2:
                            tries[i] = retries
                            finish(
                                i,
                                ERROR,
                                None,
                                f"the worker process died twice while running it ({exc})",
                                math.nan,
                                time.time(),
                            )
                        else:
                            todo.appendleft(i)
                    if not backend.restart():
                        raise RuntimeError(
                            f"executor: the process pool {backend.executor!r} is broken "
                            f"(a worker process died); {len(todo)} runs were not run"
                        ) from exc
                    break
                except Exception as exc:  # noqa: BLE001 - e.g. Dask lost the worker
                    now = time.time()
                    msg = _tail(f"executor failed: {type(exc).__name__}: {exc}")
                    results = [(i, ERROR, None, msg, math.nan, now) for i in chunk]
                for r in results:
                    assert r[1] in STATUSES
                    finish(*r)
                    if adaptive and math.isfinite(r[4]):
                        run_time, run_count = run_time + r[4], run_count + 1
                if adaptive and run_count:
                    # chunks of about 50 ms of simulator time: a kill of the driver loses at
                    # most that much finished work per worker
                    size = int(min(64, max(1, 0.05 / max(run_time / run_count, 1e-6))))
    finally:
        for fut in in_flight:
            with contextlib.suppress(Exception):
                fut.cancel()
        if bar is not None:
            bar.close()
        backend.close()
