"""Crash safety of the chain checkpoints: SIGKILL at random moments, a full disk, and
readers that open the archive while it is written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from calib.archive import ArchiveError, read_chain

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
sys.path.insert(0, str(DATA))
import chain_driver  # noqa: E402

N_STEPS, EVERY = 600, 50


@pytest.fixture(scope="module")
def reference():
    """The uninterrupted chain with the driver's seed."""
    cal = chain_driver.make_calibrator()
    post = cal.sample(chain_driver.N_WALKERS, N_STEPS, seed=chain_driver.SEED, autocorr_stop=False)
    return post


def _start(h5: Path, *extra: str, every: int = EVERY) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(DATA / "chain_driver.py"), str(h5), str(N_STEPS), str(every), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    line = proc.stdout.readline().strip()
    assert line == b"sampling", proc.stderr.read().decode()
    return proc


def _check_prefix(h5: Path, reference, every: int = EVERY) -> int:
    """The archived chain (file and chain journal) is a whole checkpoint and a prefix of
    the reference chain."""
    cp = read_chain(h5)
    n = cp.n_steps
    assert n % every == 0 or n == N_STEPS
    np.testing.assert_array_equal(cp.chain, reference.chain[:n])
    np.testing.assert_array_equal(cp.log_prob, reference.log_prob[:n])
    return n


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # none yet, or deleted by a fold
        return -1


def _kill_and_resume(
    tmp_path: Path, reference, n_kills: int, seed: int, every: int = EVERY, in_appends=False
) -> int:
    """Kill and restart the driver; returns how many kills left records in the journal.

    ``in_appends``: each kill comes at most 0.3 s after the driver first changes the chain
    journal, so that kills land while records are appended."""
    h5 = tmp_path / "study.h5"
    log = tmp_path / "study.h5.chainlog"
    rng = np.random.default_rng(seed)
    kept, kills, in_journal = 0, 0, 0
    while kills < n_kills:
        size = _size(log)
        proc = _start(h5, every=every)
        if in_appends:
            # until this process has changed the journal (appended, or cut a torn tail)
            while proc.poll() is None and _size(log) == size:
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.3))
        else:
            time.sleep(rng.uniform(0.0, 2.5))
        finished = proc.poll() is not None
        if not finished:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        if h5.exists() and "chain" in h5py.File(h5, "r"):
            in_journal += _size(log) > 0
            n = _check_prefix(h5, reference, every)
            assert n >= kept, f"a checkpoint was lost: had {kept} steps, now {n}"
            kept = n
        if finished:
            assert proc.returncode == 0
            break
    # resume completes and equals the uninterrupted run, bit for bit
    post = chain_driver.sample(chain_driver.make_calibrator(), str(h5), N_STEPS, every)
    np.testing.assert_array_equal(post.chain, reference.chain)
    np.testing.assert_array_equal(post.acceptance, reference.acceptance)
    assert _check_prefix(h5, reference, every) == N_STEPS
    assert kills >= 1 or kept == N_STEPS
    # a completed run has everything in the HDF5 file and no journal left
    assert not log.exists()
    with h5py.File(h5, "r") as f:
        np.testing.assert_array_equal(f["chain/chain"][()], reference.chain)
    return in_journal


def test_sigkill_at_random_moments_keeps_every_checkpoint(tmp_path, reference):
    _kill_and_resume(tmp_path, reference, n_kills=4, seed=5)


def test_sigkill_during_journal_appends_keeps_every_checkpoint(tmp_path, reference):
    # a checkpoint every 7 steps: most are journal appends, and so most kills land in them
    in_journal = _kill_and_resume(tmp_path, reference, n_kills=4, seed=6, every=7, in_appends=True)
    assert in_journal >= 2, f"only {in_journal} kills came while the journal held records"


@pytest.mark.slow
def test_sigkill_20_times(tmp_path, reference):
    _kill_and_resume(tmp_path, reference, n_kills=20, seed=20)
    _kill_and_resume(tmp_path / "often", reference, n_kills=20, seed=21, every=3, in_appends=True)


def test_readers_see_whole_checkpoints_while_a_run_writes(tmp_path, reference):
    h5 = tmp_path / "study.h5"
    proc = _start(h5)
    seen, seen_journal = set(), set()
    try:
        while proc.poll() is None:
            if h5.exists():
                # read_chain: the last fold plus the journal's whole records
                try:
                    seen_journal.add(_check_prefix(h5, reference))
                except ArchiveError as exc:
                    assert "no /chain" in str(exc)  # nothing checkpointed yet
                # plain h5py, as a user watching the run would: one consistent snapshot
                with h5py.File(h5, "r") as f:
                    if "chain" in f:
                        n = f["chain"].attrs["iteration"]
                        assert f["chain/chain"].shape == (n, *reference.chain.shape[1:])
                        assert f["chain/log_prob"].shape == (n, chain_driver.N_WALKERS)
                        np.testing.assert_array_equal(f["chain/chain"][()], reference.chain[:n])
                        seen.add(int(n))
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == 0
    assert len(seen) >= 2, f"the reader saw checkpoints {sorted(seen)} only"
    # with the journal, a reader sees checkpoints between the folds too
    assert seen_journal - seen, f"read_chain saw {sorted(seen_journal)}, h5py {sorted(seen)}"


def test_full_disk_gives_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, reference):
    h5 = tmp_path / "study.h5"
    # every checkpoint rewrites the file: the limit lets the first ones through only
    limit = 60_000
    proc = _start(h5, str(limit))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err.decode()
    msg = err.decode()
    assert str(h5) in msg and "could not be written" in msg and "intact" in msg
    n = _check_prefix(h5, reference)
    assert 0 < n < N_STEPS
    assert not (tmp_path / "study.h5.tmp").exists()
    # with room again, the run resumes from that checkpoint and completes exactly
    post = chain_driver.sample(chain_driver.make_calibrator(), str(h5), N_STEPS, EVERY)
    np.testing.assert_array_equal(post.chain, reference.chain)


def test_read_chain_errors_name_the_file(tmp_path):
    with pytest.raises(ArchiveError, match="no such file"):
        read_chain(tmp_path / "missing.h5")
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(ArchiveError, match="no /chain"):
        read_chain(tmp_path / "empty.h5")
