"""Values calib never writes are refused on load, naming the file, the dataset and the
value (issue 13, items 3 and 11): a chain position of 1e300 or NaN, a log-probability of
+inf, an unknown run status, outputs that contradict their status, a schema version that is
not an integer, a burn-in the sampler would have refused. Edits are made as a user would
with h5py (replacing the dataset, which drops its checksum: the checksum tests are in
test_archive_checksum.py).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import calib
from calib import ArchiveError
from calib.archive import ArchiveWarning, describe, read_chain, read_meta, read_runs
from calib.archive._journal import _chainlog_path, _encode_chain_record
from calib.checkpoint import Checkpoint
from calib.runset import RunSet
from simulators import FunctionSimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
import chain_driver  # noqa: E402

N_STEPS, BURN = 20, 5


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Runs and a direct-mode chain of 20 steps (burn 5) in one archive."""
    path = tmp_path_factory.mktemp("ranges") / "study.h5"
    sim = FunctionSimulator(chain_driver.product, (), ("a", "b"), ("y",), vectorized=True)
    calib.run_design(sim, np.array([[1.0, 2.0], [0.5, 3.0], [2.0, 0.1]]), archive=path)
    chain_driver.sample(
        chain_driver.make_calibrator(), str(path), N_STEPS, 10, moves="de", burn=BURN
    )
    return path


@pytest.fixture
def copy(archive, tmp_path):
    dst = tmp_path / "edited.h5"
    shutil.copy(archive, dst)
    return dst


def _edit(path: Path, name: str, change) -> None:
    """Replace dataset ``name`` by ``change(its value)``, as an edit with h5py would."""
    with h5py.File(path, "r+") as f:
        value = f[name][()]
        dtype = f[name].dtype
        del f[name]
        new = change(value.copy())
        if h5py.check_string_dtype(dtype) is not None and np.asarray(new).dtype.kind == "O":
            f.create_dataset(name, data=np.asarray(new, dtype=object), dtype=dtype)
        else:
            f[name] = new


def _set(index, value):
    def change(a):
        a[index] = value
        return a

    return change


# ---------------------------------------------------------------------- the chain
@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        (
            "chain/chain",
            _set((3, 2, 1), 1e300),
            r"/chain/chain contains a value beyond ±1e\+150: 1e\+300 at step 3, walker 2, "
            r"coordinate 1",
        ),
        ("chain/chain", _set((4, 0, 0), np.nan), "/chain/chain contains NaN or inf: nan at step 4"),
        ("chain/chain", _set((0, 1, 2), -np.inf), "/chain/chain contains NaN or inf: -inf"),
        ("chain/log_prob", _set((5, 3), np.inf), r"/chain/log_prob contains \+inf: inf at step 5"),
        ("chain/log_prob", _set((1, 2), np.nan), "/chain/log_prob contains NaN: nan at step 1"),
    ],
)
def test_impossible_chain_values_are_refused(copy, name, change, message):
    _edit(copy, name, change)
    for load in (calib.load, read_chain):
        with pytest.raises(ArchiveError, match=message) as e:
            load(copy)
        assert str(copy) in str(e.value)


def test_a_rejected_walker_and_a_large_position_still_load(copy):
    # -inf is a walker the log-posterior rejects; 1e100 is far but not impossible
    _edit(copy, "chain/log_prob", _set((2, 1), -np.inf))
    _edit(copy, "chain/chain", _set((2, 1, 0), 1e100))
    assert read_chain(copy).log_prob[2, 1] == -np.inf


def test_impossible_values_in_a_chain_journal_record_are_refused(copy):
    cp = read_chain(copy)
    bad = cp.chain[-1:].copy()
    bad[0, 3, 1] = 1e300
    longer = Checkpoint(
        chain=np.concatenate([cp.chain, bad]),
        log_prob=np.concatenate([cp.log_prob, cp.log_prob[-1:]]),
        accepted=cp.accepted,
        rng_state=cp.rng_state,
        stopped_early=False,
        info=cp.info,
    )
    _chainlog_path(copy).write_bytes(_encode_chain_record(longer, cp.n_steps))
    with pytest.raises(ArchiveError, match=r"the record at step 20: chain contains a value") as e:
        read_chain(copy)
    assert "1e+300 at step 20, walker 3, coordinate 1" in str(e.value)
    assert str(_chainlog_path(copy)) in str(e.value)


# ---------------------------------------------------------------------- /runs
@pytest.mark.parametrize(
    ("name", "change", "message"),
    [
        ("runs/status", _set(0, "done"), r"/runs/status of run 0 is 'done', not one of"),
        ("runs/status", _set(1, ""), r"/runs/status of run 1 is '', not one of"),
        ("runs/outputs", _set((1, 0), np.nan), r"/runs/outputs of run 1 is \[nan\] \(NaN or inf"),
        ("runs/outputs", _set((2, 0), np.inf), r"/runs/outputs of run 2 is \[inf\]"),
        ("runs/status", _set(0, "error"), r"/runs/outputs of run 0 is \[2.0\] with status 'error'"),
        ("runs/design", _set((1, 1), np.inf), r"/runs/design of run 1 is \[0.5, inf\]"),
        ("runs/attempts", _set(2, -1), r"/runs/attempts of run 2 is -1"),
        ("runs/attempts", _set(0, 0), r"/runs/attempts of run 0 is 0 with status 'ok'"),
        ("runs/finished_at", _set(1, np.nan), r"/runs/finished_at of run 1 is nan"),
        ("runs/elapsed", _set(1, -2.0), r"/runs/elapsed of run 1 is -2.0"),
        ("runs/outputs", lambda a: a[:2], r"/runs/outputs has shape \(2, 1\), expected \(3, 1\)"),
        ("runs/status", lambda a: np.zeros(3), r"/runs/status should be a list of strings"),
    ],
)
def test_impossible_runs_are_refused(copy, name, change, message):
    _edit(copy, name, change)
    for load in (read_runs, RunSet.from_archive, calib.load):
        with pytest.raises(ArchiveError, match=message) as e:
            load(copy)
        assert str(copy) in str(e.value)


def test_a_pending_run_with_an_outcome_is_refused_and_a_large_output_kept(copy):
    _edit(copy, "runs/outputs", _set((0, 0), 1e300))  # a simulator may return it
    assert read_runs(copy).outputs[0, 0] == 1e300
    _edit(copy, "runs/status", _set(2, "pending"))
    with pytest.raises(ArchiveError, match=r"/runs/outputs of run 2 is \[0.2\] with status 'p"):
        read_runs(copy)
    _edit(copy, "runs/outputs", _set((2, 0), np.nan))
    with pytest.raises(ArchiveError, match=r"/runs/attempts of run 2 is 1 with status 'pending'"):
        read_runs(copy)


def test_an_edit_in_place_fails_the_checksum(copy):
    with h5py.File(copy, "r+") as f:
        f["runs/outputs"][0, 0] = 7.0  # the stored checksum is now stale
    with pytest.raises(ArchiveError, match="/runs/outputs fails its checksum"):
        read_runs(copy)


# ---------------------------------------------------------------------- /meta, burn
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "attribute 'schema_version' should be a number, got 'abc'"),
        (1.5, "attribute 'schema_version' should be an integer"),
        (0, "'schema_version' is 0, not a schema version"),
    ],
)
def test_a_schema_version_that_is_not_an_integer_is_refused(copy, value, message):
    with h5py.File(copy, "r+") as f:
        f["meta"].attrs["schema_version"] = value
    for load in (calib.load, read_chain, read_runs, read_meta, describe):
        with pytest.raises(ArchiveError, match=message) as e:
            load(copy)
        assert str(copy) in str(e.value) and "/meta" in str(e.value)


def _set_sample(path: Path, **values) -> None:
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f["meta"].attrs["configuration"])
        cfg["sample"].update(values)
        f["meta"].attrs["configuration"] = json.dumps(cfg)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"burn": 10**6}, r"sample.burn 1000000 is not below the budget n_steps 20"),
        ({"burn": -1}, "sample.burn -1 is not a count of steps"),
        ({"burn": "abc"}, "sample.burn 'abc' is not a count of steps"),
        ({"burn": 2.5}, "sample.burn 2.5 is not a count of steps"),
    ],
)
def test_a_burn_the_sampler_refuses_is_refused(copy, values, message):
    _set_sample(copy, **values)
    with pytest.raises(ArchiveError, match=message) as e:
        calib.load(copy)
    assert str(copy) in str(e.value) and "/meta configuration" in str(e.value)


def test_a_burn_beyond_an_interrupted_chain_is_a_stated_clamp(copy):
    # sampled with a budget of 40 and a burn of 30, interrupted at 20 steps: possible
    _set_sample(copy, n_steps=40, burn=30)
    with pytest.warns(ArchiveWarning, match=r"sample.burn is 30, but the chain holds 20 steps"):
        post = calib.load(copy)
    assert post.burn == N_STEPS - 1
    assert post.summary().rows  # no ZeroDivisionError with one step kept
    _set_sample(copy, n_steps=N_STEPS, burn=BURN)
    assert calib.load(copy).burn == BURN
