"""The summary table's interval at a chosen level, against the draws themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import calib

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "archives" / "study_62ed993.h5"


@pytest.fixture(scope="module")
def post():
    return calib.load(FIXTURE)


def test_the_default_table_is_the_90_percent_one(post):
    s = post.summary()
    assert s.columns[:5] == ("mean", "sd", "q5", "q50", "q95")
    for row in s.rows:
        if row["name"].endswith((".typical", ".new")):
            continue  # functions of the draws, checked in the pooling tests
        lo, mid, hi = np.quantile(post.draws(row["name"]), [0.05, 0.5, 0.95])
        assert (row["q5"], row["q50"], row["q95"]) == (lo, mid, hi)


@pytest.mark.parametrize("level, names", [(0.8, ("q10", "q90")), (0.95, ("q2.5", "q97.5"))])
def test_the_interval_follows_the_level(post, level, names):
    s = post.summary(level=level)
    assert s.columns[2] == names[0] and s.columns[4] == names[1]
    assert f"{names[0]:>10}" in str(s).splitlines()[0]
    for row in s.rows:
        if row["name"].endswith((".typical", ".new")):
            continue
        lo, hi = np.quantile(post.draws(row["name"]), [(1 - level) / 2, (1 + level) / 2])
        assert (row[names[0]], row[names[1]]) == (lo, hi)
        assert row[names[0]] <= row["q50"] <= row[names[1]]


@pytest.mark.parametrize("level", [0, 1, 1.5, "0.9", float("nan")])
def test_a_level_outside_zero_one_is_refused(post, level):
    with pytest.raises(ValueError, match=r"level: expected a number in \(0, 1\), got"):
        post.summary(level=level)
