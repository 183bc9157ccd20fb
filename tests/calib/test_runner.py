"""The run engine: executors agree, failures are recorded, resume, bad input."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from calib import Parameter
from calib.archive import ArchiveError
from calib.design import Design, latin_hypercube
from calib.runner import RunSet, run_design
from simulators import FunctionSimulator


def _model(x, t):
    # cheap but not trivial, so identical results really mean identical computations
    return [t[0] * np.sin(x[0]) + t[1], np.exp(-t[1] * x[0])]


def _sim() -> FunctionSimulator:
    return FunctionSimulator(_model, ("x",), ("a", "b"), ("y1", "y2"))


def _design(n: int = 24) -> Design:
    theta = [Parameter("a", 0.0, 2.0), Parameter("b", 0.0, 1.0)]
    return latin_hypercube(_sim(), theta, n=n, x_bounds={"x": (0.0, 3.0)}, seed=7)


def _same(a: RunSet, b: RunSet) -> None:
    np.testing.assert_array_equal(a.design, b.design)
    np.testing.assert_array_equal(a.all_outputs, b.all_outputs)
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_array_equal(a.inputs, b.inputs)
    np.testing.assert_array_equal(a.outputs, b.outputs)


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",  # a real loopback socket, not the in-process transport
        host="127.0.0.1",
        dashboard_address=None,
    ) as c:
        yield c


def test_serial_processes_threads_and_dask_agree(cluster):
    from distributed import Client

    d = _design()
    serial = run_design(_sim(), d, executor="serial", progress=False)
    assert serial.counts["ok"] == 24 and serial.complete
    expected = np.array([_model(r[:1], r[1:]) for r in d.array])
    np.testing.assert_array_equal(serial.outputs, expected)
    _same(serial, run_design(_sim(), d, executor=None, progress=False))
    with cf.ThreadPoolExecutor(2) as pool:
        _same(serial, run_design(_sim(), d, executor=pool, progress=False))
    with Client(cluster) as client:
        _same(serial, run_design(_sim(), d, executor=client, progress=False))
    # a scheduler address: run_design opens and closes its own client
    _same(serial, run_design(_sim(), d, executor=cluster.scheduler_address, progress=False))
    # chunks of rows through run_batch give the same numbers
    _same(serial, run_design(_sim(), d, executor=None, progress=False, chunksize=5))


class _Flaky:
    """A bare Simulator (no FunctionSimulator reshaping), so wrong shapes reach the engine."""

    input_names = ()
    parameter_names = ("k",)
    output_names = ("a", "b")
    output_coords = None

    def run(self, x, t):
        return _flaky(t)


def _flaky(t):
    k = int(t[0])
    if k % 5 == 1:
        raise RuntimeError(f"diverged at k={k}")
    if k % 5 == 2:
        return [np.nan, 1.0]
    if k % 5 == 3:
        return [1.0, 2.0, 3.0]
    if k % 5 == 4 and k < 10:
        time.sleep(30)  # past the timeout: interrupted, not waited for
    return [float(k), 2.0 * k]


@pytest.mark.parametrize("executor", ["serial", None])
def test_failures_are_recorded_and_the_rest_goes_on(executor):
    sim = _Flaky()
    d = Design(("k",), np.arange(15.0)[:, None], 0)
    t0 = time.perf_counter()
    runs = run_design(sim, d, executor=executor, timeout=0.5, progress=False)
    assert time.perf_counter() - t0 < 10
    st = runs.status.tolist()
    assert [st[k] for k in (1, 6, 11)] == ["error"] * 3
    assert [st[k] for k in (2, 7, 12, 3, 8, 13)] == ["invalid"] * 6
    assert [st[k] for k in (4, 9)] == ["timeout"] * 2
    assert runs.counts == {"ok": 4, "error": 3, "timeout": 2, "invalid": 6, "pending": 0}
    np.testing.assert_array_equal(runs.inputs[:, 0], [0, 5, 10, 14])
    np.testing.assert_array_equal(runs.outputs, [[0, 0], [5, 10], [10, 20], [14, 28]])
    errors = dict((i, e) for i, _, e in runs.failures())
    assert "RuntimeError: diverged at k=6" in errors[6]
    assert "NaN or inf at output index [0]" in errors[7]
    assert "shape (3,), expected (2,)" in errors[8]
    assert "timeout=0.5" in errors[9]
    assert np.isnan(runs.all_outputs[1]).all()


def _once(x, t, counter):
    # fails on its first invocation for each row, works afterwards
    path = Path(counter) / f"{int(t[0])}"
    first = not path.exists()
    path.touch()
    if first:
        raise RuntimeError("first attempt fails")
    return [t[0]]


def test_retries_within_a_call(tmp_path):
    sim = FunctionSimulator(lambda x, t: _once(x, t, tmp_path), (), ("k",), ("y",))
    d = Design(("k",), np.arange(4.0)[:, None], 0)
    runs = run_design(sim, d, executor="serial", retries=1, progress=False)
    assert runs.counts["ok"] == 4
    np.testing.assert_array_equal(runs.attempts, [2, 2, 2, 2])


def _counted(x, t, counter):
    with open(counter, "a") as fh:
        fh.write(f"{int(t[0])}\n")
    if int(t[0]) == 3:
        raise ValueError("bad row")
    return [t[0] ** 2]


def test_resume_skips_finished_and_reruns_failed_only_if_asked(tmp_path):
    counter = tmp_path / "calls.txt"
    sim = FunctionSimulator(lambda x, t: _counted(x, t, counter), (), ("k",), ("y",))
    d = Design(("k",), np.arange(6.0)[:, None], 0)
    h5 = tmp_path / "study.h5"
    first = run_design(sim, d, executor="serial", archive=h5, progress=False)
    assert first.counts == {"ok": 5, "error": 1, "timeout": 0, "invalid": 0, "pending": 0}
    assert counter.read_text().split() == ["0", "1", "2", "3", "4", "5"]
    again = run_design(sim, d, executor="serial", archive=h5, progress=False)
    _same(first, again)
    assert len(counter.read_text().split()) == 6  # nothing re-run
    retried = run_design(sim, d, executor="serial", archive=h5, rerun_failed=True, progress=False)
    assert counter.read_text().split()[6:] == ["3"]
    assert retried.attempts[3] == 2 and retried.status[3] == "error"
    _same(retried, RunSet.from_archive(h5))
    # another design in the same file is refused, naming both
    with pytest.raises(ArchiveError, match="different design"):
        run_design(sim, Design(("k",), np.arange(7.0)[:, None], 0), archive=h5, progress=False)


def _crash(x, t):
    if int(t[0]) == 2:
        os._exit(13)  # the worker process dies without a Python exception
    return [t[0]]


def test_a_dying_worker_process_costs_only_its_run():
    sim = FunctionSimulator(_crash, (), ("k",), ("y",))
    d = Design(("k",), np.arange(8.0)[:, None], 0)
    runs = run_design(sim, d, executor=None, progress=False)
    assert runs.status[2] == "error" and "worker process died" in runs.errors[2]
    assert runs.counts["ok"] == 7


def test_a_dying_worker_convicts_only_its_run_when_its_chunk_is_shared():
    """All eight runs in one chunk: the first death hits them all, so each is a suspect and
    runs alone after the restart; only the culprit dies a second time. (With the suspects
    in one chunk again, all eight would die twice and be recorded as errors: seen with the
    adaptive chunk size, which grows once quick runs have come back.)"""
    sim = FunctionSimulator(_crash, (), ("k",), ("y",))
    d = Design(("k",), np.arange(8.0)[:, None], 0)
    runs = run_design(sim, d, executor=None, progress=False, chunksize=8)
    assert runs.status[2] == "error" and "worker process died" in runs.errors[2]
    assert runs.counts["ok"] == 7


def test_bad_input_is_refused_before_any_run(tmp_path):
    counter = tmp_path / "calls.txt"
    sim = FunctionSimulator(lambda x, t: _counted(x, t, counter), (), ("k",), ("y",))
    good = Design(("k",), np.arange(3.0)[:, None], 0)
    with pytest.raises(ValueError, match=r"design: expected an array of shape \(n, 1\).*\(3, 2\)"):
        run_design(sim, np.zeros((3, 2)), progress=False)
    with pytest.raises(ValueError, match="design: columns"):
        run_design(sim, Design(("j",), np.zeros((3, 1)), 0), progress=False)
    with pytest.raises(TypeError, match="executor: expected None .* got 4 of type int"):
        run_design(sim, good, executor=4, progress=False)
    with pytest.raises(TypeError, match="executor: .*got 'local'"):
        run_design(sim, good, executor="local", progress=False)
    with pytest.raises(ValueError, match="timeout: expected seconds > 0 or None, got -1"):
        run_design(sim, good, timeout=-1, progress=False)
    with pytest.raises(ValueError, match="retries: expected an integer >= 0, got 1.5"):
        run_design(sim, good, retries=1.5, progress=False)
    with pytest.raises(TypeError, match="simulator: expected an object implementing"):
        run_design(object(), good, progress=False)
    with pytest.raises(TypeError, match="archive: expected a file path"):
        run_design(sim, good, archive=3, progress=False)
    assert not counter.exists()


class _CountingPool(cf.ThreadPoolExecutor):
    """A real thread pool that counts the tasks it is given."""

    def __init__(self):
        super().__init__(max_workers=2)
        self.tasks = 0

    def submit(self, fn, /, *args, **kwargs):
        self.tasks += 1
        return super().submit(fn, *args, **kwargs)


def _slow(x, t):
    time.sleep(0.08)
    return [t[0]]


def test_auto_chunks_grow_for_fast_simulators_and_stay_single_for_slow_ones():
    pool = _CountingPool()
    with pool:
        runs = run_design(_sim(), _design(300), executor=pool, progress=False)
    assert runs.counts["ok"] == 300 and pool.tasks < 60, pool.tasks
    slow = FunctionSimulator(_slow, (), ("a",), ("y",))
    pool = _CountingPool()
    with pool:
        runs = run_design(
            slow, Design(("a",), np.arange(6.0)[:, None], 0), executor=pool, progress=False
        )
    assert runs.counts["ok"] == 6 and pool.tasks == 6


def test_watch_parent_ends_a_worker_whose_parent_is_killed():
    # the fallback of the workers' initializer where prctl(PR_SET_PDEATHSIG) is missing
    # (not Linux): a middle process starts a watching child, then is SIGKILLed
    root = Path(__file__).resolve().parents[2]
    child = (
        "import os, time; from calib.executors import _watch_parent; "
        "_watch_parent(os.getppid(), 0.02); print('watching', flush=True); time.sleep(60)"
    )
    middle = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}], stdout=subprocess.PIPE); "
        "print(p.pid, p.stdout.readline().decode().strip(), flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", middle],
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(root)),
        start_new_session=True,
    )
    try:
        pid, word = proc.stdout.readline().split()
        assert word == b"watching"
        pid = int(pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)  # an unreaped zombie still answers: see /proc below
            except ProcessLookupError:
                break
            if sys.platform.startswith("linux"):
                with contextlib.suppress(FileNotFoundError):
                    if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                        break
            time.sleep(0.01)
        else:
            pytest.fail(f"the watching process {pid} outlived its parent")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
