"""The last checkpoint of a run keeps its result (issue 13, item 12).

Another program holding the archive open for writing (an ``h5py.File`` in mode ``'a'``)
mid-run made the final rewrite fail, since it reopened the file to copy ``/runs``, and
``sample()`` threw the result away. The writer now holds the groups it does not own from
``open()`` on; and a final rewrite that fails for another reason writes the whole result
beside the archive (``<archive>.recovered.h5``) and says where.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import calib
from calib import ArchiveError
from calib.archive import StudyWriter, read_chain, read_runs
from calib.checkpoint import Checkpoint
from simulators import FunctionSimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
import chain_driver  # noqa: E402

DESIGN = np.array([[1.0, 2.0], [0.5, 3.0], [2.0, 0.1]])
SAMPLE = {"n_walkers": chain_driver.N_WALKERS, "n_steps": 20, "seed": chain_driver.SEED}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A design and a chain of 20 steps (checkpoints every 10) sampled into one archive."""
    path = tmp_path_factory.mktemp("recovery") / "ref.h5"
    calib.run_design(_sim(), DESIGN, archive=path)
    cal = chain_driver.make_calibrator()
    post = chain_driver.sample(cal, str(path), 20, 10, moves="de")
    return path, cal, post


def _sim() -> FunctionSimulator:
    return FunctionSimulator(chain_driver.product, (), ("a", "b"), ("y",), vectorized=True)


def _first_checkpoint(reference, path: Path) -> tuple[StudyWriter, Checkpoint]:
    """A writer on a fresh archive holding the design, after its first checkpoint (10
    steps); returns it and the whole chain's checkpoint."""
    _, cal, _ = reference
    calib.run_design(_sim(), DESIGN, archive=path)
    cp = read_chain(reference[0])
    writer = StudyWriter(path, cal, {**SAMPLE, "checkpoint_every": 10})
    assert writer.open(resume=False) is None
    writer.checkpoint(
        Checkpoint(cp.chain[:10], cp.log_prob[:10], cp.accepted, cp.rng_state, False, cp.info)
    )
    return writer, cp


def _hold_open(path: Path) -> subprocess.Popen:
    code = (
        "import h5py, time\n"
        f"f = h5py.File({str(path)!r}, 'a'); print('open', flush=True); time.sleep(60)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "open"
    return p


def test_a_write_handle_opened_mid_run_does_not_lose_the_result(reference, tmp_path):
    path = tmp_path / "study.h5"
    writer, cp = _first_checkpoint(reference, path)
    p = _hold_open(path)  # HDF5's lock now refuses any open of the file
    try:
        writer.checkpoint(cp, posterior=reference[2])  # the last one, with /posterior
    finally:
        writer.close()
        p.kill()
        p.wait()
    np.testing.assert_array_equal(read_chain(path).chain, cp.chain)
    runs, want = read_runs(path), read_runs(reference[0])
    np.testing.assert_array_equal(runs.outputs, want.outputs)
    assert not Path(str(path) + ".recovered.h5").exists()


def test_a_failed_last_rewrite_writes_the_result_beside_and_says_where(reference, tmp_path):
    path = tmp_path / "study.h5"
    writer, cp = _first_checkpoint(reference, path)
    os.mkdir(str(path) + ".tmp")  # the new file cannot be written: the rewrite fails
    beside = Path(str(path) + ".recovered.h5")
    try:
        with pytest.raises(ArchiveError) as e:
            writer.checkpoint(cp, posterior=reference[2])
    finally:
        writer.close()
    message = str(e.value)
    assert "the checkpoint at step 20 could not be written" in message
    assert f"was written beside it instead, to '{beside}'" in message
    # the archive keeps its last checkpoint; the result is whole beside it
    assert read_chain(path).n_steps == 10
    back = calib.load(beside)
    np.testing.assert_array_equal(back.chain, cp.chain)
    np.testing.assert_array_equal(back.runs.outputs, read_runs(reference[0]).outputs)
    # an earlier checkpoint that fails stops the run as before (nothing to recover yet)
    shutil.rmtree(str(path) + ".tmp")
    beside.unlink()
    path.unlink()
    writer, cp = _first_checkpoint(reference, path)
    os.mkdir(str(path) + ".tmp")
    try:
        with pytest.raises(ArchiveError, match="could not be written") as e:
            writer.checkpoint(cp)  # 20 steps, 10 in the file: a rewrite
    finally:
        writer.close()
    assert "recovered" not in str(e.value) and not beside.exists()
