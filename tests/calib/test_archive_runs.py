"""The /meta and /runs groups: crash safety under SIGKILL, journal, layout, errors."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from calib.archive import (
    SCHEMA_VERSION,
    ArchiveError,
    RunArchive,
    RunsRecord,
    read_meta,
    read_runs,
)
from calib.design import Design
from calib.runner import run_design
from simulators import FunctionSimulator

DRIVER = Path(__file__).resolve().parents[1] / "data" / "kill_driver.py"
ROOT = Path(__file__).resolve().parents[2]


def _ok_rows(h5: Path) -> set[int]:
    if not h5.exists():
        return set()
    r = read_runs(h5)
    ok = np.flatnonzero(r.status == "ok")
    k = r.design[ok, 0]
    # a kept run is kept with its right outputs
    np.testing.assert_array_equal(r.outputs[ok], np.stack([2 * k, k**2], axis=1))
    assert np.isnan(r.outputs[r.status != "ok"]).all()
    return set(ok.tolist())


def _calls(counter: Path) -> list[int]:
    if not counter.exists():
        return []
    # a line torn by the kill is not a finished invocation record; ignore it
    return [int(s) for s in counter.read_text().splitlines() if s.strip().isdigit()]


def _start(h5: Path, counter: Path, n: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), str(h5), str(counter), str(n)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # its own process group: the kill takes its workers too
    )
    assert proc.stdout.readline().strip() == b"ready", proc.stderr.read().decode()
    return proc


def test_sigkill_at_random_moments_never_loses_a_finished_run(tmp_path):
    n = 60
    h5, counter = tmp_path / "study.h5", tmp_path / "calls.txt"
    rng = np.random.default_rng(2024)
    finished: set[int] = set()
    partial = 0
    for _ in range(10):
        before = len(_calls(counter))
        proc = _start(h5, counter, n)
        # the design takes about n * 20 ms / 2 workers once started
        try:
            proc.wait(timeout=rng.uniform(0.0, 0.5))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        now = _ok_rows(h5)  # opens, every time
        assert finished <= now, f"runs {sorted(finished - now)} were lost by the kill"
        rerun = set(_calls(counter)[before:]) & finished
        assert not rerun, f"finished runs {sorted(rerun)} were run again"
        partial += 0 < len(now) < n and len(now) > len(finished)
        finished = now
    proc = _start(h5, counter, n)
    assert proc.wait(timeout=60) == 0, proc.stderr.read().decode()
    assert _ok_rows(h5) == set(range(n))
    assert not set(_calls(counter)[before:]) & finished
    # the test is only meaningful if kills landed while runs were being finished
    assert partial >= 3
    assert read_runs(h5).attempts.max() == 1


def _state(pid: int) -> tuple[str, int] | None:
    """``(state, parent pid)`` of a process from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    # a zombie (dead, not yet reaped by whoever adopted it) holds nothing: not alive
    st = _state(pid)
    return st is not None and st[0] != "Z"


def _children(pid: int) -> list[int]:
    return [
        int(e) for e in os.listdir("/proc") if e.isdigit() and (_state(int(e)) or ("", 0))[1] == pid
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigkill_of_the_driver_alone_takes_its_workers_and_frees_the_lock(tmp_path):
    # the OOM killer kills the driver and nothing else: its pool workers used to live on,
    # holding the archive's lock (inherited through fork), so that a resume failed until
    # they were found and killed by hand
    n = 400
    h5, counter = tmp_path / "study.h5", tmp_path / "calls.txt"
    proc = _start(h5, counter, n)
    try:
        deadline = time.monotonic() + 60
        while len(_calls(counter)) < 10 and time.monotonic() < deadline:
            time.sleep(0.005)
        workers = _children(proc.pid)
        assert workers, "the driver has no worker processes"
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone, not its process group
        proc.wait()
        deadline = time.monotonic() + 5
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not [w for w in workers if _alive(w)], f"workers {workers} outlived the driver"
        finished = _ok_rows(h5)
        assert len(finished) < n
        before = len(_calls(counter))

        def model(x, t):
            with open(counter, "a") as fh:
                fh.write(f"{int(t[0])}\n")
            return [2.0 * t[0], t[0] ** 2]

        sim = FunctionSimulator(model, (), ("k",), ("double", "square"))
        design = Design(("k",), np.arange(float(n))[:, None], 0)
        runs = run_design(sim, design, executor="serial", archive=h5, progress=False)
        assert runs.counts["ok"] == n and _ok_rows(h5) == set(range(n))
        assert not set(_calls(counter)[before:]) & finished, "finished runs were run again"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # survivors, if the test failed
        proc.stdout.close()
        proc.stderr.close()


def _sleep_when_started(started) -> None:
    started.set()
    time.sleep(60)


def test_a_forked_child_does_not_hold_the_writer_lock(tmp_path):
    # the lock belongs to the process that took it: a child forked while it was held (a
    # process-pool worker) must not keep the archive locked once that process lets go
    h5 = tmp_path / "s.h5"
    writer = RunArchive(h5)
    writer.open(RunsRecord.new((), ("k",), ("y",), _design().array, _design().fingerprint()))
    ctx = multiprocessing.get_context("fork")
    started = ctx.Event()
    child = ctx.Process(target=_sleep_when_started, args=(started,))
    child.start()
    try:
        assert started.wait(30)  # the child is past the fork and its at-fork handlers
        writer.close()
        runs = run_design(_sim(), _design(), executor="serial", archive=h5, progress=False)
        assert runs.counts["ok"] == 5
        assert child.is_alive()  # the lock was free while the child lived
    finally:
        child.kill()
        child.join()


def _sim() -> FunctionSimulator:
    return FunctionSimulator(lambda x, t: [t[0] + 1.0], (), ("k",), ("y",))


def _design(n: int = 5) -> Design:
    return Design(("k",), np.arange(float(n))[:, None], 0)


def test_layout_meta_and_no_pickle(tmp_path):
    h5 = tmp_path / "s.h5"
    with h5py.File(h5, "w") as f:  # a group written by someone else survives the folds
        f.create_dataset("campaigns/a/y", data=np.arange(3.0))
        f.attrs["note"] = "kept"
    run_design(_sim(), _design(), executor="serial", archive=h5, progress=False)
    meta = read_meta(h5)
    assert meta["schema_version"] == SCHEMA_VERSION and meta["format"] == "calib study archive"
    assert set(meta["versions"]) >= {"python", "numpy", "h5py"}
    with h5py.File(h5, "r") as f:
        np.testing.assert_array_equal(f["campaigns/a/y"][()], np.arange(3.0))
        assert f.attrs["note"] == "kept"
        g = f["runs"]
        assert list(g.attrs["input_names"]) == [] and list(g.attrs["parameter_names"]) == ["k"]
        np.testing.assert_array_equal(g["outputs"][()][:, 0], np.arange(5.0) + 1)
        assert [s.decode() for s in g["status"][()]] == ["ok"] * 5

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                assert obj.dtype.kind in "fiuS" or h5py.check_string_dtype(obj.dtype), name

        f.visititems(visit)


def test_torn_and_corrupt_journal(tmp_path):
    h5 = tmp_path / "s.h5"
    w = RunArchive(h5, fold_every=None)
    from calib.archive import RunsRecord

    rec = RunsRecord.new((), ("k",), ("y",), _design().array, _design().fingerprint())
    w.open(rec)
    w.record(0, "ok", np.array([1.0]), "", 0.1, 1, 1e9)
    w.record(1, "error", None, "boom", 0.1, 1, 1e9)
    os.close(w._fd)  # as if killed: no fold, the lock goes with the process
    w._fd = None
    journal = Path(str(h5) + ".journal")
    with open(journal, "ab") as fh:
        fh.write(b'{"i":2,"status":"ok","y":[3.0')  # torn by the kill
    r = read_runs(h5)
    assert r.status.tolist() == ["ok", "error", "pending", "pending", "pending"]
    assert r.error[1] == "boom"
    # resume folds the journal, then runs the rest
    runs = run_design(_sim(), _design(), executor="serial", archive=h5, progress=False)
    assert runs.status.tolist() == ["ok", "error", "ok", "ok", "ok"]
    assert runs.all_outputs[0, 0] == 1.0  # the journaled value, not a re-run
    # a damaged line that is not the last one is corruption, not a kill
    data = journal.read_bytes()
    journal.write_bytes(data.replace(b'"kind"', b'"kinx"') + data)
    with pytest.raises(ArchiveError, match="journal .* is corrupt at line 1"):
        read_runs(h5)


def test_archive_errors(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    with pytest.raises(ArchiveError, match="cannot be opened as HDF5"):
        run_design(_sim(), _design(), executor="serial", archive=bad, progress=False)
    with pytest.raises(ArchiveError, match="no such file"):
        read_runs(tmp_path / "missing.h5")
    h5 = tmp_path / "s.h5"
    from calib.archive import RunsRecord

    w = RunArchive(h5)
    w.open(RunsRecord.new((), ("k",), ("y",), _design().array, _design().fingerprint()))
    with pytest.raises(ArchiveError, match="being written by another process"):
        run_design(_sim(), _design(), executor="serial", archive=h5, progress=False)
    w.close()
    other = FunctionSimulator(lambda x, t: [1.0, 2.0], (), ("k",), ("y", "z"))
    with pytest.raises(ArchiveError, match=r"outputs \('y',\), but the simulator has"):
        run_design(other, _design(), executor="serial", archive=h5, progress=False)
    with h5py.File(h5, "r+") as f:
        f["meta"].attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(ArchiveError, match="schema version 2; this calib reads up to 1"):
        read_runs(h5)
