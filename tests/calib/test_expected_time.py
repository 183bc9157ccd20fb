"""A long run says how long it will take (issue 13, item 14)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import calib._sampler_drive as drive

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
import chain_driver  # noqa: E402


@pytest.mark.filterwarnings("ignore::calib.ConvergenceWarning")
def test_the_expected_time_is_said_only_for_a_long_run(capfd, monkeypatch):
    cal = chain_driver.make_calibrator()
    cal.sample(8, 40, seed=1, check_every=10)
    assert "s per step" not in capfd.readouterr().err  # milliseconds per step: silent
    monkeypatch.setattr(drive, "EXPECTED_TIME_NOTICE_S", 0.0)
    cal.sample(8, 40, seed=1, check_every=10)
    err = capfd.readouterr().err
    # measured on the first chunk of 10 steps, said once, for the 30 steps left
    assert err.count("s per step") == 1 and "for the remaining 30 steps" in err, err


def test_the_notice_reads_in_minutes_or_hours(capsys):
    drive._say_expected_time(15.0, 10, 4000)  # 1.5 s per step, 6000 s
    assert "about 1.7 h for the remaining 4000 steps" in capsys.readouterr().err
    drive._say_expected_time(1.0, 10, 4000)  # 400 s
    assert "about 7 min" in capsys.readouterr().err
    drive._say_expected_time(0.1, 10, 4000)  # 40 s: nothing
    assert capsys.readouterr().err == ""
