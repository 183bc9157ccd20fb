"""The CRC framing both journals share, the runs journal in its format before the framing
was shared, the one atomic replace of an archive file, and the RunSet the archive holds."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from calib.archive import STATUSES, ArchiveError, RunArchive, RunsRecord, read_runs
from calib.archive._h5 import replace_atomically
from calib.archive._journal import _RUNS, _decode_journal, _encode, _frame, _parse_frames
from calib.design import Design
from calib.runner import RunSet, run_design
from simulators import FunctionSimulator


def _sim() -> FunctionSimulator:
    return FunctionSimulator(lambda x, t: [t[0] + 1.0], (), ("k",), ("y",))


def _design(n: int = 5) -> Design:
    return Design(("k",), np.arange(float(n))[:, None], 0)


def _line(obj: dict) -> bytes:
    """A runs journal line as written before the framing was shared: JSON, tab, CRC hex."""
    payload = json.dumps(obj, separators=(",", ":"), allow_nan=True)
    return f"{payload}\t{zlib.crc32(payload.encode()):08x}\n".encode()


def _body(fields, data, start, end):
    return bytes(data[start:end])


def test_frames_torn_tail_ignored_and_damage_before_whole_frames_is_corruption():
    frames = [_frame(_RUNS, (), [b"one"]), _frame(_RUNS, (), [b"two"])]
    data = b"".join(frames)
    assert _parse_frames(_RUNS, data, _body, Path("j"), "journal") == ([b"one", b"two"], len(data))
    third = _frame(_RUNS, (), [b"three"])
    for cut in (1, 10, len(third) - 1):  # inside the head, the body, the CRC
        records, end = _parse_frames(_RUNS, data + third[:cut], _body, Path("j"), "journal")
        assert records == [b"one", b"two"] and end == len(data)
    damaged = bytearray(data)
    damaged[len(frames[0]) - 6] ^= 0xFF  # the body of the first frame
    with pytest.raises(ArchiveError, match="journal 'j' is corrupt at line 1"):
        _parse_frames(_RUNS, bytes(damaged), _body, Path("j"), "journal")
    # a frame whose body the codec rejects counts as damaged too
    with pytest.raises(ArchiveError, match="corrupt at line 2"):
        _parse_frames(
            _RUNS, data + data, lambda *a: None if _body(*a) == b"two" else 1, Path("j"), "journal"
        )


def test_a_runs_journal_in_the_old_line_format_is_read_and_resumed(tmp_path):
    h5 = tmp_path / "s.h5"
    d = _design()
    w = RunArchive(h5, fold_every=None)
    w.open(RunsRecord.new((), ("k",), ("y",), d.array, d.fingerprint()))
    w.close()
    journal = Path(str(h5) + ".journal")
    # a journal left by a killed process of the calib before the shared framing
    old = [
        _line({"kind": "header", "schema": 1, "design": d.fingerprint()}),
        _line({"i": 0, "status": "ok", "y": [7.0], "error": "", "elapsed": 0.1, "t": 1e9}),
        _line({"i": 1, "status": "error", "y": None, "error": "boom", "t": 1e9}),
    ]
    journal.write_bytes(b"".join(old) + b'{"i":2,"status":"ok","y":[3')  # torn by the kill
    r = read_runs(h5)
    assert r.status.tolist() == ["ok", "error", "pending", "pending", "pending"]
    assert r.outputs[0, 0] == 7.0 and r.error[1] == "boom"
    header, records = _decode_journal(journal.read_bytes(), journal)
    assert header["design"] == d.fingerprint() and [rec["i"] for rec in records] == [0, 1]
    # a damaged line that is not the last is corruption in the old format too
    journal.write_bytes(old[0] + old[1].replace(b'"ok"', b'"ko"') + old[2])
    with pytest.raises(ArchiveError, match="corrupt at line 2"):
        read_runs(h5)
    journal.write_bytes(b"".join(old))
    runs = run_design(_sim(), d, executor="serial", archive=h5, progress=False)
    assert runs.status.tolist() == ["ok", "error", "ok", "ok", "ok"]
    assert runs.all_outputs[0, 0] == 7.0  # the journalled value, not a re-run
    # the resume folded the old journal and writes the framed format from then on
    assert journal.read_bytes().startswith(_RUNS.magic)
    assert _decode_journal(journal.read_bytes(), journal)[1] == []


def test_runs_journal_frames_hold_the_records_json():
    rec = {"i": 3, "status": "ok", "y": [1.5, float("nan")], "t": 2.0}
    data = _encode(rec)
    assert data.startswith(b"calibRJ\x00")
    header, records = _decode_journal(data, Path("j"))
    assert header is None and records[0]["i"] == 3 and np.isnan(records[0]["y"][1])


def test_replace_atomically_writes_the_built_file_and_names_it_on_failure(tmp_path):
    path = tmp_path / "a.h5"
    replace_atomically(path, lambda f: f.create_dataset("x", data=np.arange(3.0)))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["x"][()], np.arange(3.0))
    assert not Path(str(path) + ".tmp").exists()
    os.mkdir(tmp_path / "b.h5.tmp")  # the tmp file cannot be created
    with pytest.raises(ArchiveError, match=r"archive '.*b\.h5'.*could not be written"):
        replace_atomically(tmp_path / "b.h5", lambda f: None)
    with pytest.raises(RuntimeError, match="mine"):
        replace_atomically(
            tmp_path / "b.h5", lambda f: None, error=lambda exc: RuntimeError("mine")
        )
    assert not (tmp_path / "b.h5").exists()


def test_one_runset_everywhere(tmp_path):
    h5 = tmp_path / "s.h5"
    runs = run_design(_sim(), _design(), executor="serial", archive=h5, progress=False)
    assert type(runs) is RunSet and type(RunSet.from_archive(h5)) is RunSet
    stored = read_runs(h5)
    assert isinstance(stored, RunSet) and stored.fingerprint == _design().fingerprint()
    # read_runs' record keeps its names: every row in outputs, error for errors
    np.testing.assert_array_equal(stored.outputs, stored.all_outputs)
    assert stored.error is stored.errors and stored.counts == runs.counts
    assert STATUSES == ("pending", "ok", "error", "timeout", "invalid")
    assert repr(runs) == "RunSet(5 runs: 5 ok; outputs ('y',))"
