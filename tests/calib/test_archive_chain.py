"""Calibrator.sample(archive=, resume=): checkpoints, exact resume and its refusals."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from calib import ArchiveError
from calib.archive import read_chain

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
import chain_driver  # noqa: E402

W, SEED = chain_driver.N_WALKERS, chain_driver.SEED


@pytest.fixture(scope="module")
def cal():
    return chain_driver.make_calibrator()


@pytest.fixture(scope="module")
def reference(cal):
    # the autocorrelation rule on, with checks at 100, 200, ...: resume must keep them
    return cal.sample(W, 400, seed=SEED, check_every=100, min_steps=100)


def test_resume_to_more_steps_equals_the_uninterrupted_run(cal, reference, tmp_path):
    path = tmp_path / "s.h5"
    first = cal.sample(
        W, 200, seed=SEED, archive=path, check_every=100, min_steps=100, checkpoint_every=70
    )
    np.testing.assert_array_equal(first.chain, reference.chain[:200])
    assert read_chain(path).n_steps == 200
    post = cal.sample(
        W, 400, seed=SEED, archive=path, resume=True, check_every=100, min_steps=100,
        checkpoint_every=70,
    )  # fmt: skip
    np.testing.assert_array_equal(post.chain, reference.chain)
    np.testing.assert_array_equal(post.log_prob, reference.log_prob)
    np.testing.assert_array_equal(post.acceptance, reference.acceptance)
    assert post.info["stopped_early"] == reference.info["stopped_early"]
    with h5py.File(path, "r") as f:
        assert f["chain"].attrs["iteration"] == 400
        assert "posterior" in f


def test_resume_with_steps_already_held_does_not_sample(cal, reference, tmp_path):
    path = tmp_path / "s.h5"
    cal.sample(W, 400, seed=SEED, archive=path, check_every=100, min_steps=100)
    before = path.read_bytes()
    post = cal.sample(W, 300, seed=SEED, archive=path, resume=True, check_every=100)
    np.testing.assert_array_equal(post.chain, reference.chain[:300])
    post = cal.sample(W, 400, seed=SEED, archive=path, resume=True, check_every=100)
    np.testing.assert_array_equal(post.chain, reference.chain)
    assert path.read_bytes() == before  # nothing was written: nothing was sampled


def test_resume_without_a_checkpoint_starts_afresh(cal, tmp_path):
    path = tmp_path / "s.h5"
    with h5py.File(path, "w"):
        pass  # killed before the first checkpoint: an archive with no /chain
    # (warmup given: by default a run into an archive warms up for 120 iterations whatever
    # its budget, so that resuming it to a larger budget equals the uninterrupted run)
    kw = dict(seed=SEED, warmup=60, autocorr_stop=False)
    post = cal.sample(W, 120, archive=path, resume=True, **kw)
    ref = cal.sample(W, 120, **kw)
    np.testing.assert_array_equal(post.chain, ref.chain)
    post2 = cal.sample(W, 120, seed=SEED, archive=tmp_path / "new.h5", resume=True)
    assert post2.chain.shape[0] == 120


def test_no_silent_overwrite_and_mismatches_are_refused(cal, tmp_path):
    path = tmp_path / "s.h5"
    cal.sample(W, 60, seed=SEED, archive=path, autocorr_stop=False)
    before = path.read_bytes()
    with pytest.raises(ArchiveError, match="resume=True") as e:
        cal.sample(W, 60, seed=SEED, archive=path)
    assert str(path) in str(e.value) and "another archive path" in str(e.value)
    with pytest.raises(ArchiveError, match="seed=12"):
        cal.sample(W, 90, seed=SEED + 1, archive=path, resume=True)
    with pytest.raises(ArchiveError, match="n_walkers=10"):
        cal.sample(10, 90, seed=SEED, archive=path, resume=True)
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="resume=True needs archive="):
        cal.sample(W, 60, seed=SEED, resume=True)
    with pytest.raises(ValueError, match="checkpoint_every"):
        cal.sample(W, 60, seed=SEED, archive=tmp_path / "x.h5", checkpoint_every=0)
