"""Where the runs of a design execute: in this thread, a local process pool whose workers
die with their driver, any :class:`concurrent.futures.Executor`, or a Dask cluster, all
behind one submit / wait interface (:class:`_Backend`) for :mod:`calib.runner`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["SerialExecutor"]


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
