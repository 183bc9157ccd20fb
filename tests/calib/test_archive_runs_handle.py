"""run_design while another program holds the archive (issue 13, finding 12): an h5py
handle in mode 'a' opened mid-design, and a fold that fails at the end. Every finished run
is kept, and an error says where."""

from __future__ import annotations

import errno
import subprocess
import sys

import h5py
import numpy as np
import pytest

import calib.archive._h5 as h5mod
from calib.archive import ArchiveError, RunArchive, read_runs
from calib.runner import run_design
from simulators import FunctionSimulator

N = 6


def _design() -> np.ndarray:
    return np.arange(1.0, N + 1.0).reshape(N, 1)


def _sim(hook=None) -> FunctionSimulator:
    def f(x, t):
        if hook is not None:
            hook(t[0])
        return [2 * t[0]]

    return FunctionSimulator(f, (), ("k",), ("y",))


def _holder(path) -> subprocess.Popen:
    """Another program with the archive open for writing (an h5py handle in mode 'a')
    until its stdin closes. (In this process HDF5 would share one handle among opens,
    and its file lock would never refuse anything.)"""
    code = (
        "import sys, h5py\n"
        "f = h5py.File(sys.argv[1], 'a')\n"
        "print('open', flush=True)\n"
        "sys.stdin.readline()\n"
        "f.close()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "open"
    return proc


def _release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=30)


def _stored_status(path) -> list[str]:
    with h5py.File(path, "r") as f:
        return [s.decode() if isinstance(s, bytes) else s for s in f["runs/status"][()]]


def test_a_write_handle_opened_mid_design_loses_nothing(tmp_path):
    path = tmp_path / "study.h5"
    held: list[subprocess.Popen] = []

    def grab(k):
        if k == 3.0:  # a user opens the archive for writing while the design runs
            held.append(_holder(path))

    try:
        # a fold after every run: each one would have to reopen the file the handle locks
        writer = RunArchive(path, fsync=False, fold_every=1e-9)
        runs = run_design(_sim(grab), _design(), executor="serial", archive=writer, progress=False)
        assert held, "the handle was never opened"
        assert runs.counts["ok"] == N
    finally:
        for proc in held:
            _release(proc)
    # the file itself holds every run (the folds went through), the journal nothing more
    assert _stored_status(path) == ["ok"] * N
    np.testing.assert_array_equal(read_runs(path).outputs[:, 0], 2 * _design()[:, 0])


def test_a_write_handle_held_at_the_start_is_named_before_any_run(tmp_path):
    path = tmp_path / "study.h5"
    writer = RunArchive(path, fsync=False)
    run_design(_sim(), _design()[:3], executor="serial", archive=writer, progress=False)
    calls = []
    proc = _holder(path)
    try:
        with pytest.raises(ArchiveError, match="open for writing in another program"):
            run_design(_sim(calls.append), _design()[:3], executor="serial", archive=path)
    finally:
        _release(proc)
    assert calls == []


def test_a_failed_last_fold_keeps_every_run_and_says_where(tmp_path, monkeypatch):
    path = tmp_path / "study.h5"
    state = {"fail": False}
    real_replace = h5mod.os.replace

    def replace(src, dst):
        if state["fail"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(h5mod.os, "replace", replace)

    def fill_disk(k):
        state["fail"] = True  # from the first run on, no rewrite of the file succeeds

    with pytest.raises(ArchiveError) as err:
        run_design(_sim(fill_disk), _design(), executor="serial", archive=path, progress=False)
    msg = str(err.value)
    assert "No run is lost" in msg and f"the {N} finished runs" in msg
    assert f"'{path}.journal'" in msg and "read_runs" in msg
    # the file has its runs pending, the journal has them all: read_runs merges the two
    assert _stored_status(path) == ["pending"] * N
    assert list(read_runs(path).status) == ["ok"] * N
    # once the disk has room again, the same call runs nothing and folds them in
    state["fail"] = False
    calls = []
    runs = run_design(_sim(calls.append), _design(), executor="serial", archive=path)
    assert calls == [] and runs.counts["ok"] == N
    assert _stored_status(path) == ["ok"] * N


def test_a_failed_periodic_fold_does_not_stop_the_design(tmp_path, monkeypatch):
    path = tmp_path / "study.h5"
    calls = []
    real_replace = h5mod.os.replace

    def replace(src, dst):
        calls.append(dst)
        if len(calls) in (2, 3):  # the first two folds after the opening one fail
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(h5mod.os, "replace", replace)
    writer = RunArchive(path, fsync=False, fold_every=1e-9)
    runs = run_design(_sim(), _design(), executor="serial", archive=writer, progress=False)
    assert len(calls) > 3  # the failed folds were followed by more
    assert runs.counts["ok"] == N
    assert _stored_status(path) == ["ok"] * N
