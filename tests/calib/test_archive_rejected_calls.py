"""A call refused before it writes anything leaves no file behind, and an archive path that
is a directory is named as such (issue 13, finding 10): ``seed=2**70`` with an archive
left ``<archive>.journal``, and ``archive=<a directory>`` made a journal in the parent."""

from __future__ import annotations

import os

import numpy as np
import pytest

from calib import Calibrator, Campaign, Parameter
from calib.archive import ArchiveError, RunArchive
from calib.archive._journal import _lock_writer, _unlock_writer
from calib.runner import run_design
from simulators import FunctionSimulator


def _cal() -> Calibrator:
    sim = FunctionSimulator(lambda x, t: [t[0]], (), ("k",), ("y",))
    return Calibrator(sim, [Parameter("k", 0, 5)], [Campaign("A", x=None, y=[1.0])])


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"seed": 2**70}, r"seed: expected None or an integer in \[0, 2\*\*63\)"),
        ({"seed": -1}, r"seed: expected None or an integer"),
        ({"burn": 20}, r"burn: expected an integer in \[0, n_steps = 10\)"),
        ({"n_starts": 0}, "n_starts: expected a positive integer"),
    ],
)
def test_a_refused_sample_call_leaves_no_file(tmp_path, kw, message):
    path = tmp_path / "study.h5"
    with pytest.raises(ValueError, match=message):
        _cal().sample(n_walkers=8, n_steps=10, archive=path, **kw)
    assert os.listdir(tmp_path) == []


def test_a_refused_call_removes_the_folders_it_made_and_keeps_the_others(tmp_path):
    """The folders made for a new archive's path go with its journal; one that was there
    before, or that holds something else, stays."""
    with pytest.raises(ValueError, match="seed"):
        _cal().sample(n_walkers=8, n_steps=10, archive=tmp_path / "a" / "b" / "s.h5", seed=-1)
    assert os.listdir(tmp_path) == []
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="seed"):
        _cal().sample(n_walkers=8, n_steps=10, archive=tmp_path / "a" / "b" / "s.h5", seed=-1)
    assert sorted(os.listdir(tmp_path / "a")) == ["keep.txt"]
    post = _cal().sample(n_walkers=8, n_steps=4, archive=tmp_path / "c" / "s.h5", seed=1)
    assert (tmp_path / "c" / "s.h5").exists() and post.chain.shape[0] == 4


def test_a_refused_call_keeps_a_journal_it_did_not_make(tmp_path):
    path = tmp_path / "study.h5"
    journal = tmp_path / "study.h5.journal"
    journal.write_bytes(b"")  # another writer's, or left by an earlier design
    with pytest.raises(ValueError, match="seed"):
        _cal().sample(n_walkers=8, n_steps=10, archive=path, seed=-1)
    assert journal.exists()


def test_an_archive_that_is_a_directory_is_named(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    with pytest.raises(ArchiveError, match=r"is a directory: give the path of an HDF5 file"):
        _cal().sample(n_walkers=8, n_steps=10, archive=folder)
    sim = FunctionSimulator(lambda x, t: [t[0]], (), ("k",), ("y",))
    with pytest.raises(ArchiveError, match="is a directory"):
        run_design(sim, np.ones((2, 1)), executor="serial", archive=folder)
    assert sorted(os.listdir(tmp_path)) == ["results"] and os.listdir(folder) == []


def test_a_writer_after_a_removed_journal_holds_a_real_lock(tmp_path):
    # the first writer removes the journal it made and never used; the next one makes a
    # new one and its lock keeps a third writer out
    path = tmp_path / "study.h5"
    fd = _lock_writer(path)
    _unlock_writer(fd, path)
    assert not (tmp_path / "study.h5.journal").exists()
    fd = _lock_writer(path)
    try:
        with pytest.raises(ArchiveError, match="being written by another process"):
            RunArchive(path).open(None)  # refused at the lock, before the runs are needed
    finally:
        _unlock_writer(fd)
    assert (tmp_path / "study.h5.journal").exists()  # no archive argument: kept
