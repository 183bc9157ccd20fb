"""The run engine: a design of simulator runs, in parallel, resumable, never losing a result.

:func:`run_design` sends the runs of a :class:`~calib.design.Design` to an executor (local
processes by default, any :class:`concurrent.futures.Executor`, or a Dask cluster), writes
each result to the archive as soon as it arrives (:mod:`calib.archive`), and returns a
:class:`RunSet`. A run that raises, times out, exits non-zero or returns NaN or the wrong
shape is recorded with its status and error text and the rest of the design goes on.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import hashlib
import inspect
import math
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .archive import STATUSES, RunArchive, RunsRecord, read_runs
from .design import Design, as_design
from .interfaces import SimulatorError

__all__ = ["run_design", "RunSet", "SerialExecutor"]

#: Longest error text kept per run (the tail: the end of a traceback or of stderr).
ERROR_TAIL = 4000


# ---------------------------------------------------------------------- RunSet
@dataclass(eq=False)
class RunSet:
    """The outcome of a design: every run with its status, the successful ones as arrays.

    Attributes
    ----------
    input_names, parameter_names, output_names : tuple of str
    design : ndarray of shape (n, p + q)
        Every run of the design, finished or not.
    all_outputs : ndarray of shape (n, m)
        NaN where a run is not ``"ok"``.
    status : ndarray of str, shape (n,)
        One of ``"ok"``, ``"error"``, ``"timeout"``, ``"invalid"``, ``"pending"``.
    errors : ndarray of str, shape (n,)
        Error text of each failed run (``""`` for the others).
    attempts : ndarray of int, shape (n,)
    elapsed : ndarray of float, shape (n,)
        Seconds the last attempt of each run took.
    """

    input_names: tuple[str, ...]
    parameter_names: tuple[str, ...]
    output_names: tuple[str, ...]
    design: np.ndarray
    all_outputs: np.ndarray
    status: np.ndarray
    errors: np.ndarray
    attempts: np.ndarray
    elapsed: np.ndarray

    @classmethod
    def _from_record(cls, r: RunsRecord) -> RunSet:
        return cls(
            r.input_names,
            r.parameter_names,
            r.output_names,
            r.design.copy(),
            r.outputs.copy(),
            np.array(r.status, dtype=object),
            np.array(r.error, dtype=object),
            r.attempts.copy(),
            r.elapsed.copy(),
        )

    @classmethod
    def from_archive(cls, path: str | os.PathLike) -> RunSet:
        """The runs stored in an archive (journal included)."""
        return cls._from_record(read_runs(path))

    @property
    def names(self) -> tuple[str, ...]:
        """Column names of :attr:`inputs`: control inputs then parameters."""
        return self.input_names + self.parameter_names

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask ``(n,)`` of the successful runs."""
        return self.status == "ok"

    @property
    def inputs(self) -> np.ndarray:
        """Inputs of the successful runs, shape ``(n_ok, p + q)``: x columns then θ."""
        return self.design[self.ok]

    @property
    def outputs(self) -> np.ndarray:
        """Outputs of the successful runs, shape ``(n_ok, m)``."""
        return self.all_outputs[self.ok]

    @property
    def x(self) -> np.ndarray:
        """Control inputs of the successful runs, shape ``(n_ok, p)``."""
        return self.inputs[:, : len(self.input_names)]

    @property
    def theta(self) -> np.ndarray:
        """Parameters of the successful runs, shape ``(n_ok, q)``."""
        return self.inputs[:, len(self.input_names) :]

    @property
    def counts(self) -> dict[str, int]:
        """Number of runs per status (every status listed, zeros included)."""
        c = Counter(self.status.tolist())
        return {s: c.get(s, 0) for s in ("ok", "error", "timeout", "invalid", "pending")}

    @property
    def n_ok(self) -> int:
        return int(self.ok.sum())

    @property
    def n_failed(self) -> int:
        return int(np.isin(self.status, ("error", "timeout", "invalid")).sum())

    @property
    def complete(self) -> bool:
        """True when no run is pending (failed runs count as done)."""
        return not (self.status == "pending").any()

    def failures(self) -> list[tuple[int, str, str]]:
        """``(index, status, error text)`` of each failed run."""
        bad = np.flatnonzero(np.isin(self.status, ("error", "timeout", "invalid")))
        return [(int(i), str(self.status[i]), str(self.errors[i])) for i in bad]

    def __len__(self) -> int:
        return self.design.shape[0]

    def __repr__(self) -> str:
        parts = ", ".join(f"{v} {k}" for k, v in self.counts.items() if v)
        return f"RunSet({len(self)} runs: {parts or 'none'}; outputs {self.output_names})"


# ---------------------------------------------------------------------- executors
class SerialExecutor(cf.Executor):
    """An executor that runs each task in the calling thread when it is submitted.

    For debugging, for simulators that are not picklable, and as the reference the
    parallel executors are checked against.
    """

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> cf.Future:
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller via the future
            fut.set_exception(exc)
        return fut


def _is_dask_client(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "distributed" and hasattr(obj, "submit")


#: prctl(2) option: the signal a process gets when the thread that made it exits.
_PR_SET_PDEATHSIG = 1


def _watch_parent(parent: int, interval: float = 1.0) -> None:
    """Exit this process (``os._exit``) once ``parent`` is no longer its parent.

    The portable fallback of :func:`_worker_init` where ``prctl`` is not available: a
    daemon thread polls :func:`os.getppid` (an orphan is adopted by init or a subreaper).
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="calib-parent-watch", daemon=True).start()


def _worker_init(driver: int, forked: bool) -> None:
    """Initializer of the local worker processes: a worker dies with its driver.

    A driver killed outright (SIGKILL, as the OOM killer does) runs no cleanup, and its
    workers, blocked reading their task queue (whose write end each of them also holds),
    would live on. On Linux the kernel sends a worker SIGKILL when the thread that forked
    it exits (``prctl(PR_SET_PDEATHSIG)``; :func:`run_design` starts and closes its pool
    in the calling thread); elsewhere a thread watches the parent's pid. A driver that
    died before this ran is caught by the parent check that follows.

    (The archive's writer lock is not held here: :mod:`calib.archive` closes a forked
    child's copy at the fork.)
    """
    parent = os.getppid()
    armed = False
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    if forked and os.getppid() != driver:
        os._exit(1)  # the driver died between the fork and the prctl
    if not armed:
        _watch_parent(parent)


def _local_pool(workers: int) -> cf.ProcessPoolExecutor:
    """A process pool whose workers die with this process."""
    ctx = mp.get_context()
    forked = ctx.get_start_method() == "fork"
    return cf.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_worker_init,
        initargs=(os.getpid(), forked),
    )


class _Backend:
    """Uniform submit / wait over concurrent.futures and Dask."""

    def __init__(self, executor: Any):
        self.owned = False
        self.dask = False
        self._completed: Any = None
        self.in_process = False
        if executor is None:
            self.executor = _local_pool(os.cpu_count() or 1)
            self.owned = True
        elif isinstance(executor, str):
            if executor == "serial":
                self.executor = SerialExecutor()
            else:
                try:
                    from distributed import Client
                except ImportError:
                    raise ImportError(
                        f"executor={executor!r} is a Dask scheduler address, but Dask is not "
                        f"installed: pip install 'calib[dask]'"
                    ) from None
                self.executor = Client(executor)
                self.owned = True
        else:
            self.executor = executor
        self.dask = _is_dask_client(self.executor)
        self.in_process = isinstance(self.executor, (SerialExecutor, cf.ThreadPoolExecutor))

    @property
    def workers(self) -> int:
        if self.dask:
            return max(1, sum(self.executor.nthreads().values()))
        if isinstance(self.executor, SerialExecutor):
            return 1
        return int(getattr(self.executor, "_max_workers", None) or os.cpu_count() or 1)

    def submit(self, fn: Callable, *args: Any) -> Any:
        if self.dask:
            fut = self.executor.submit(fn, *args, pure=False)
            if self._completed is None:
                from distributed import as_completed

                # one long-lived iterator: a fresh wait() per result costs a round trip
                self._completed = as_completed()
            self._completed.add(fut)
            return fut
        return self.executor.submit(fn, *args)

    def wait(self, futures: list[Any]) -> set[Any]:
        if self.dask:
            return set(self._completed.next_batch(block=True))
        return set(cf.wait(futures, return_when=cf.FIRST_COMPLETED).done)

    def restart(self) -> bool:
        """Replace a broken pool of our own; False when the executor is not ours."""
        if not (self.owned and isinstance(self.executor, cf.ProcessPoolExecutor)):
            return False
        workers = self.workers
        with contextlib.suppress(Exception):
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.executor = _local_pool(workers)
        return True

    def close(self) -> None:
        if not self.owned:
            return
        if self.dask:
            self.executor.close()
        else:
            self.executor.shutdown(wait=True, cancel_futures=True)


def _check_executor(executor: Any) -> None:
    if executor is None or isinstance(executor, cf.Executor) or _is_dask_client(executor):
        return
    if isinstance(executor, str) and (executor == "serial" or "://" in executor):
        return
    raise TypeError(
        f"executor: expected None (local processes), 'serial', a concurrent.futures.Executor, "
        f"a dask distributed.Client or a scheduler address such as 'tcp://host:8786', "
        f"got {executor!r} of type {type(executor).__name__}"
    )


# ---------------------------------------------------------------------- the worker side
class _RunTimeout(Exception):
    pass


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
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


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
        return "timeout", None, _tail(msg), elapsed
    except Exception as exc:  # noqa: BLE001 - any simulator failure is recorded, not raised
        elapsed = time.perf_counter() - t0
        # a simulator may classify its own failure (CommandSimulator's unparsable output is
        # "invalid"); anything else is an "error" with its traceback's tail
        status = getattr(exc, "calib_status", "error")
        if status not in ("error", "invalid", "timeout"):
            status = "error"
        if isinstance(exc, SimulatorError):
            return status, None, _tail(f"{type(exc).__name__}: {exc}"), elapsed
        tb = traceback.format_exc()
        return status, None, _tail(f"{type(exc).__name__}: {exc}\n{tb}"), elapsed
    elapsed = time.perf_counter() - t0
    if timeout is not None and elapsed > timeout:
        return "timeout", None, f"run took {elapsed:.3g} s, more than timeout={timeout} s", elapsed
    try:
        arr = np.asarray(y, dtype=float)
    except (TypeError, ValueError) as exc:
        return "invalid", None, _tail(f"output is not numeric: {exc}"), elapsed
    if arr.size != m or arr.ndim > 2:
        return (
            "invalid",
            None,
            f"output has shape {arr.shape}, expected ({m},) for the simulator's {m} outputs",
            elapsed,
        )
    arr = arr.reshape(m)
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr)).tolist()
        return "invalid", None, f"output has NaN or inf at output index {bad}", elapsed
    return "ok", arr, "", elapsed


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
                return [(i, "ok", Y[k], "", each, now) for k, (i, _, _) in enumerate(rows)]
        except Exception:  # noqa: BLE001, S110 - retried row by row below
            pass
    for i, x, theta in rows:
        status, y, err, elapsed = _run_one(sim, x, theta, timeout, own_timeout, m)
        results.append((i, status, y, err, elapsed, time.time()))
    return results


# ---------------------------------------------------------------------- run_design
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
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not (timeout > 0 and math.isfinite(timeout))
        ):
            raise ValueError(f"timeout: expected seconds > 0 or None, got {timeout!r}")
        timeout = float(timeout)
    if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
        raise ValueError(f"retries: expected an integer >= 0, got {retries!r}")
    if chunksize != "auto" and (
        isinstance(chunksize, bool) or not isinstance(chunksize, (int, np.integer)) or chunksize < 1
    ):
        raise ValueError(f"chunksize: expected an integer >= 1 or 'auto', got {chunksize!r}")
    if archive is not None and not isinstance(archive, (str, os.PathLike, RunArchive)):
        raise TypeError(
            f"archive: expected a file path or a calib.archive.RunArchive, got "
            f"{type(archive).__name__}"
        )
    m = len(simulator.output_names)
    fresh = RunsRecord.new(
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
        redo = ("pending", "error", "timeout", "invalid") if rerun_failed else ("pending",)
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
    return RunSet._from_record(state)


def _drive(
    simulator: Any,
    design: Design,
    state: RunsRecord,
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
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="runs", unit="run", leave=True)

    def finish(i: int, status: str, y: Any, err: str, elapsed: float, t: float) -> None:
        tries[i] += 1
        if status != "ok" and tries[i] <= retries:
            todo.append(i)
            return
        attempts = int(prior_attempts[i]) + tries[i]
        if writer is not None:
            writer.record(i, status, y, err, elapsed, attempts, t)  # also updates state
        else:
            state.apply(
                {
                    "i": i,
                    "status": status,
                    "y": None if y is None else list(y),
                    "error": err,
                    "elapsed": elapsed,
                    "attempts": attempts,
                    "t": t,
                }
            )
        if bar is not None:
            bar.update(1)
            failed = sum(1 for s in state.status if s in ("error", "timeout", "invalid"))
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
                chunk = [todo.popleft() for _ in range(min(size, len(todo)))]
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
                                "error",
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
                    results = [(i, "error", None, msg, math.nan, now) for i in chunk]
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
