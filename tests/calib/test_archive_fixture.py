"""An archive written by an earlier calib still loads and gives the same numbers.

tests/data/archives/study_62ed993.h5 was written at commit 62ed993 (2026-11-27) by
tests/data/archives/make_fixture.py: emulator mode (GPEmulator state version 1), a
partially pooled parameter, a shared δ, per-campaign noise, the gradient move. The JSON
beside it holds what that commit's ``calib.load`` gave: the chain's sum, the summary's
means and sds, and a prediction. Any later change of the archive code must keep these.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import calib

DATA = Path(__file__).resolve().parents[1] / "data" / "archives"


@pytest.fixture
def old(tmp_path):
    path = tmp_path / "study.h5"
    shutil.copyfile(DATA / "study_62ed993.h5", path)  # a copy: the fixture stays as written
    return path, json.loads((DATA / "study_62ed993.json").read_text())


def test_archive_of_62ed993_loads_with_the_same_numbers(old):
    path, want = old
    post = calib.load(path)
    assert list(post.chain.shape) == want["chain_shape"]
    assert float(post.chain.sum()) == want["chain_sum"]  # the chain bit for bit
    assert list(post.model.labels) == want["labels"]
    s = post.summary().to_dict()
    # (the summary has since gained k.typical and k.new, in k's own units)
    assert set(want["means"]) <= set(s) and {"k.typical", "k.new"} <= set(s)
    for name, m in want["means"].items():
        assert s[name]["mean"] == pytest.approx(m, rel=1e-12, abs=1e-14), name
        assert s[name]["sd"] == pytest.approx(want["sds"][name], rel=1e-12, abs=1e-14), name
    # the emulator (a version-1 state) predicts as it did
    pred = post.predict(np.array([[0.5]]), campaign="c0")
    assert pred.mean[0, 0] == pytest.approx(want["predict_c0_x05"], rel=1e-10)
