"""A resume continues only the calibration that wrote the archive (issue 13, item 1)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from calib import ArchiveError, Calibrator, Campaign, Parameter
from calib.archive._same import differences, state_digest
from calib.priors import Normal
from simulators import FunctionSimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
import chain_driver  # noqa: E402

W, SEED = chain_driver.N_WALKERS, chain_driver.SEED


def _calibrator(a=None, b_prior=None, scale_y=1.0, noise="per_campaign"):
    y = scale_y * (0.3 + 0.5 * np.random.default_rng(0).standard_normal(9))
    sim = FunctionSimulator(chain_driver.product, (), ("a", "b"), ("y",), vectorized=True)
    return Calibrator(
        sim,
        [a or Parameter("a", prior=Normal(1, 2)), Parameter("b", prior=b_prior or Normal(1, 2))],
        [Campaign("A", x=None, y=y[:5], noise_sd=0.5), Campaign("B/2", x=None, y=y[5:])],
        noise=noise,
    )


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    path = tmp_path_factory.mktemp("guard") / "s.h5"
    chain_driver.sample(chain_driver.make_calibrator(), str(path), 20, 10)
    return path


def _copy(archive, tmp_path):
    path = tmp_path / "s.h5"
    path.write_bytes(archive.read_bytes())
    return path


def test_the_same_calibration_resumes(archive, tmp_path):
    path = _copy(archive, tmp_path)
    post = chain_driver.sample(_calibrator(), str(path), 30, 10)
    assert post.chain.shape[0] == 30


@pytest.mark.parametrize(
    "changed, listed",
    [
        (
            dict(a=Parameter("a", lower=-50.0, upper=50.0, prior=Normal(1, 2))),
            [r"parameters\[0\] \('a'\)\.lower: null → -50\.0", r"\('a'\)\.upper: null → 50\.0"],
        ),
        (dict(b_prior=Normal(1, 3)), [r"parameters\[1\] \('b'\)\.prior\.sd: 2(\.0)? → 3(\.0)?"]),
        (
            dict(scale_y=10.0),
            [r"campaign 'A': its y differs", r"campaign 'B/2': its y differs"],
        ),
        (dict(noise="shared"), [r"noise: \"per_campaign\" → \"shared\""]),
    ],
    ids=["bounds", "prior", "data", "noise model"],
)
def test_a_changed_calibration_is_refused_listing_what_changed(archive, tmp_path, changed, listed):
    path = _copy(archive, tmp_path)
    before = path.read_bytes()
    with pytest.raises(ArchiveError, match="its chain belongs to another calibration") as e:
        chain_driver.sample(_calibrator(**changed), str(path), 30, 10)
    for pattern in listed:
        assert re.search(pattern, str(e.value)), (pattern, str(e.value))
    assert path.read_bytes() == before  # nothing was written


def test_differences_name_the_paths():
    old = {"noise": "known", "parameters": [{"name": "E", "upper": 5.0}], "x": float("nan")}
    new = {"noise": "known", "parameters": [{"name": "E", "upper": 50.0}], "x": float("nan")}
    assert differences(old, new) == ["parameters[0] ('E').upper: 5.0 → 50.0"]
    assert differences({"a": [1, 2]}, {"a": [1, 2, 3]}) == ["a: [1, 2] → [1, 2, 3]"]
    assert differences({"a": 1}, {}) == ["a: 1 → (absent)"]


def test_the_emulator_digest_sees_every_value():
    state = {"class": "GP", "n": 3, "ls": np.array([0.5, 2.0]), "noise": 1e-6}
    d = state_digest(state)
    assert d == state_digest(
        {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
    )
    for key, value in [
        ("ls", np.array([0.5, 2.0000000001])),
        ("n", 4),
        ("noise", 2e-6),
        ("class", "G"),
    ]:
        assert state_digest({**state, key: value}) != d, key
    assert state_digest({**state, "ls": np.array([0.5, 2.0], dtype=np.float32)}) != d


def test_a_read_only_archive_is_not_replaced(archive, tmp_path):
    # every rewrite moves a new file over the old one, which a read-only file does not
    # prevent: it was silently replaced, and came back writable (issue 13, item 4)
    path = _copy(archive, tmp_path)
    path.chmod(0o444)
    before = path.read_bytes()
    with pytest.raises(ArchiveError, match=r"is read-only \(mode -r--r--r--\)"):
        chain_driver.sample(_calibrator(), str(path), 30, 10)
    assert path.read_bytes() == before and (path.stat().st_mode & 0o777) == 0o444
    import calib

    assert calib.load(path).chain.shape[0] == 20  # reading it is fine


def test_a_read_only_runs_archive_is_not_replaced(tmp_path):
    import calib

    sim = FunctionSimulator(chain_driver.product, (), ("a", "b"), ("y",), vectorized=True)
    design = np.array([[1.0, 2.0], [0.5, 3.0]])
    path = tmp_path / "runs.h5"
    calib.run_design(sim, design, archive=path)
    path.chmod(0o444)
    with pytest.raises(ArchiveError, match="is read-only"):
        calib.run_design(sim, design, archive=path)
    assert (path.stat().st_mode & 0o777) == 0o444


def _hold_open(path, seconds):
    import subprocess

    code = (
        "import h5py, sys, time\n"
        f"f = h5py.File({str(path)!r}, 'a'); print('open', flush=True); time.sleep({seconds})\n"
        "f.close(); time.sleep(30)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "open"
    return p


def test_another_programs_write_handle_is_waited_for_then_named(archive, tmp_path):
    # HDF5's file lock refuses our open while another process holds the file in mode 'a'
    # (issue 13, item 12): a handle closed within a few seconds is waited for...
    path = _copy(archive, tmp_path)
    p = _hold_open(path, 1.0)
    try:
        assert chain_driver.sample(_calibrator(), str(path), 30, 10).chain.shape[0] == 30
    finally:
        p.kill()
    # ... one that stays open is named, with what to do
    p = _hold_open(path, 30)
    try:
        with pytest.raises(ArchiveError, match="is open for writing in another program"):
            chain_driver.sample(_calibrator(), str(path), 40, 10)
    finally:
        p.kill()
