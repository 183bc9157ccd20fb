"""The chain journal (``<archive>.chainlog``): appends between doubling rewrites, torn and
corrupt records, folded records left by a kill, and a full disk during an append."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import calib
from calib.archive import ArchiveError, StudyWriter, read_chain
from calib.sampling import Checkpoint

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "data"))
import chain_driver  # noqa: E402

W = chain_driver.N_WALKERS
SAMPLE = {"n_walkers": W, "n_steps": 10_000, "seed": chain_driver.SEED}


@pytest.fixture(scope="module")
def cal():
    return chain_driver.make_calibrator()


@pytest.fixture(scope="module")
def full(cal):
    """A synthetic chain of 1000 steps and the generator states along it."""
    rng = np.random.default_rng(3)
    d = cal.model.n_dim
    return rng.standard_normal((1000, W, d)), rng.standard_normal((1000, W))


def _cp(cal, full, n: int, stopped: bool = False) -> Checkpoint:
    chain, log_prob = full
    return Checkpoint(
        chain=chain[:n],
        log_prob=log_prob[:n],
        accepted=np.full(W, n // 3, dtype=np.int64),
        # a different generator state at every step count: the journal must carry it
        rng_state=np.random.RandomState(n).get_state(),
        stopped_early=stopped,
        info={"seed": chain_driver.SEED, "n_walkers": W, "labels": list(cal.model.labels)},
    )


def _same(a: Checkpoint, b: Checkpoint) -> None:
    np.testing.assert_array_equal(a.chain, b.chain)
    np.testing.assert_array_equal(a.log_prob, b.log_prob)
    np.testing.assert_array_equal(a.accepted, b.accepted)
    assert a.rng_state[0] == b.rng_state[0]
    np.testing.assert_array_equal(a.rng_state[1], b.rng_state[1])
    assert tuple(a.rng_state[2:]) == tuple(b.rng_state[2:])
    assert a.stopped_early == b.stopped_early
    assert a.info == b.info


def _write(cal, full, path: Path, steps: list[int], **kw) -> StudyWriter:
    w = StudyWriter(path, cal, SAMPLE, **kw)
    w.open(resume=True)
    try:
        for n in steps:
            w.checkpoint(_cp(cal, full, n))
    finally:
        w.close()
    return w


def test_rewrites_follow_a_doubling_schedule(cal, full, tmp_path):
    path = tmp_path / "s.h5"
    log = Path(str(path) + ".chainlog")
    w = StudyWriter(path, cal, SAMPLE, fsync=False)
    w.open(resume=True)
    rewrites_at = []
    for k in range(1, 65):
        n = 15 * k
        before = w.full_writes
        w.checkpoint(_cp(cal, full, n))
        if w.full_writes > before:
            rewrites_at.append(k)
            assert not log.exists()  # a rewrite folds the journal and deletes it
        _same(read_chain(path), _cp(cal, full, n))  # every checkpoint reads back whole
        with h5py.File(path, "r") as f:  # a plain h5py reader: up to the last fold
            assert f["chain/chain"].shape[0] == 15 * rewrites_at[-1]
    # 64 checkpoints, 7 rewrites (at 1, 2, 4, ..., 64 checkpoints): O(log n), not O(n)
    assert rewrites_at == [1, 2, 4, 8, 16, 32, 64]
    w.checkpoint(_cp(cal, full, 975), posterior=None)  # journal again past the last fold
    assert log.exists()
    w.close()
    # the final checkpoint (with the summaries) always folds
    post = calib.load(path, simulator=cal.model_object)
    np.testing.assert_array_equal(post.chain, full[0][:975])


def test_resume_appends_after_the_journal(cal, full, tmp_path):
    path = tmp_path / "s.h5"
    _write(cal, full, path, [100, 200, 250, 300])  # rewrites at 100, 200; 250, 300 journal
    w = StudyWriter(path, cal, SAMPLE)
    stored = w.open(resume=True)
    _same(stored, _cp(cal, full, 300))
    w.checkpoint(_cp(cal, full, 350))  # 150 journal steps < 200 in the file: an append
    assert w.full_writes == 0
    w.close()
    _same(read_chain(path), _cp(cal, full, 350))


def test_torn_last_record_is_ignored(cal, full, tmp_path):
    path = tmp_path / "s.h5"
    log = Path(str(path) + ".chainlog")
    _write(cal, full, path, [100, 200, 250])
    one = log.stat().st_size
    _write(cal, full, path, [300])
    data = log.read_bytes()
    assert len(data) > one
    for cut in (one + 3, one + 60, len(data) - 1):  # inside the header, payload, CRC
        log.write_bytes(data[:cut])
        _same(read_chain(path), _cp(cal, full, 250))
    log.write_bytes(data[:one] + b"\x00" * 7)  # zeros after a power cut
    _same(read_chain(path), _cp(cal, full, 250))
    # resuming truncates the torn tail and appends after the whole records
    w = StudyWriter(path, cal, SAMPLE, fsync=False)
    _same(w.open(resume=True), _cp(cal, full, 250))
    assert log.stat().st_size == one
    w.checkpoint(_cp(cal, full, 300))
    w.close()
    _same(read_chain(path), _cp(cal, full, 300))


def test_corrupt_record_followed_by_whole_ones_is_an_error(cal, full, tmp_path):
    path = tmp_path / "s.h5"
    log = Path(str(path) + ".chainlog")
    _write(cal, full, path, [100, 200, 250, 300])
    data = bytearray(log.read_bytes())
    data[200] ^= 0xFF  # a chain value of the first of two records
    log.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="corrupt") as e:
        read_chain(path)
    assert str(log) in str(e.value)
    with pytest.raises(ArchiveError, match="corrupt"):
        calib.load(path, simulator=cal.model_object)
    with pytest.raises(ArchiveError, match="corrupt"):
        StudyWriter(path, cal, SAMPLE).open(resume=True)


def test_records_already_folded_are_skipped_and_a_gap_is_an_error(cal, full, tmp_path):
    path = tmp_path / "s.h5"
    log = Path(str(path) + ".chainlog")
    _write(cal, full, path, [100, 200, 250, 300, 350])
    stale = log.read_bytes()
    # a kill between the rewrite at 400 and the journal's deletion leaves its records
    _write(cal, full, path, [400])
    assert not log.exists()
    log.write_bytes(stale)
    _same(read_chain(path), _cp(cal, full, 400))
    # the resumed writer drops them and its appends follow the file's chain
    _write(cal, full, path, [450])
    _same(read_chain(path), _cp(cal, full, 450))
    # a record missing in the middle (here: the first of two) is a gap in the chain
    _write(cal, full, path, [800, 850])  # the record of 850
    first = log.read_bytes()
    _write(cal, full, path, [900])
    log.write_bytes(log.read_bytes()[len(first) :])
    with pytest.raises(ArchiveError, match="starts at step 850"):
        read_chain(path)


def test_stopped_early_and_state_come_from_the_last_record(cal, full, tmp_path):
    path = tmp_path / "s.h5"
    w = StudyWriter(path, cal, SAMPLE, fsync=False)
    w.open(resume=True)
    w.checkpoint(_cp(cal, full, 100))
    w.checkpoint(_cp(cal, full, 130, stopped=True))
    assert w.full_writes == 1
    w.close()
    cp = read_chain(path)
    assert cp.stopped_early
    _same(cp, _cp(cal, full, 130, stopped=True))


_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
sys.path.insert(0, {data!r})
sys.path.insert(0, {tests!r})
import numpy as np
import calib
from calib.archive import StudyWriter
from test_archive_journal import SAMPLE, _cp
import chain_driver
cal = chain_driver.make_calibrator()
rng = np.random.default_rng(3)
full = rng.standard_normal((1000, 8, cal.model.n_dim)), rng.standard_normal((1000, 8))
path = Path({path!r})
log = Path(str(path) + ".chainlog")
w = StudyWriter(path, cal, SAMPLE)
w.open(resume=True)
w.checkpoint(_cp(cal, full, 400))
w.checkpoint(_cp(cal, full, 500))  # an append
size = log.stat().st_size
# room for half of the next record only: the append fails part-way
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (size + size // 2, size + size // 2))
try:
    w.checkpoint(_cp(cal, full, 600))
except calib.ArchiveError as exc:
    print(exc, file=sys.stderr)
    print(log.stat().st_size - size)
    sys.exit(3)
"""


def test_full_disk_during_an_append_keeps_the_previous_checkpoint(cal, full, tmp_path):
    path = tmp_path / "s.h5"
    code = _FULL_DISK.format(
        data=str(ROOT / "tests" / "data"), tests=str(Path(__file__).parent), path=str(path)
    )
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr.decode()
    msg = proc.stderr.decode()
    log = Path(str(path) + ".chainlog")
    assert str(log) in msg and "could not be written" in msg and "intact" in msg
    assert proc.stdout.decode().strip() == "0"  # the partial record was truncated away
    _same(read_chain(path), _cp(cal, full, 500))
    # with room again, the run continues from that checkpoint
    _write(cal, full, path, [600])
    _same(read_chain(path), _cp(cal, full, 600))
