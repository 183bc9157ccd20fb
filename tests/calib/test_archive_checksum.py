"""Every dataset of an archive carries a CRC-32 checked on load (issue 13, item 2).

Bytes flipped inside a dataset's storage (found with h5py's ``get_offset`` and
``get_storage_size``) must make ``calib.load`` raise ``ArchiveError`` naming the file, or
give back exactly the stored values: never silently different ones. A rewrite reads
through the same check, so it never copies corruption forward.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import calib
from calib import ArchiveError, Calibrator, Campaign, Parameter
from calib.archive._checksum import CRC_ATTR
from calib.design import Design
from calib.priors import Normal
from calib.runner import run_design
from emulators import GPEmulator
from simulators import FunctionSimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
import chain_driver  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data" / "archives"


def _line(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    if x[0] > 1.5:  # one run of the design fails, so /runs/error holds a text
        raise RuntimeError("solver diverged")
    return np.array([t[0] + t[1] * x[0]])


def _calibrator(em: GPEmulator, xo: np.ndarray, y: np.ndarray) -> Calibrator:
    return Calibrator(
        em,
        [Parameter("a", -1, 2), Parameter("b", -1, 2, prior=Normal(1, 1))],
        [Campaign("lab", x=xo, y=y, noise_sd=0.05)],
        noise="known",
        input_names=("x",),
    )


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A small archive with every group: runs (one failed), emulator, campaigns, chain,
    posterior; and what calib.load gives back from it."""
    path = tmp_path_factory.mktemp("checksum") / "study.h5"
    sim = FunctionSimulator(_line, ("x",), ("a", "b"), ("y",))
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.uniform(0, 1, 14), rng.uniform(-1, 2, 14), rng.uniform(-1, 2, 14)])
    X[-1, 0] = 2.0  # fails
    runs = run_design(sim, Design(("x", "a", "b"), X, 1), archive=path)
    em = GPEmulator(n_restarts=1, seed=0).fit(runs.inputs, runs.outputs)
    xo = np.linspace(0, 1, 5)
    y = 0.5 + 1.0 * xo + 0.05 * rng.standard_normal(5)
    _calibrator(em, xo, y).sample(
        8, 30, seed=2, archive=path, autocorr_stop=False, checkpoint_every=10, moves="de"
    )
    return path, calib.load(path)


def _datasets(path: Path) -> dict[str, tuple[int, int]]:
    """``name -> (offset, size)`` of the raw storage of every dataset that has one."""
    out: dict[str, tuple[int, int]] = {}

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            offset, size = obj.id.get_offset(), obj.id.get_storage_size()
            if offset is not None and size > 0:
                out[name] = (int(offset), int(size))

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def _flip(path: Path, flips: list[tuple[int, int]]) -> None:
    raw = bytearray(path.read_bytes())
    for at, mask in flips:
        raw[at] ^= mask
    path.write_bytes(bytes(raw))


def _assert_same(post, want) -> None:
    """Everything calib.load gives back equals the original, bit for bit."""
    for name in ("chain", "log_prob", "acceptance"):
        np.testing.assert_array_equal(getattr(post, name), getattr(want, name), err_msg=name)
    for a, b in zip(post.calibrator.campaigns, want.calibrator.campaigns, strict=True):
        for key in ("x", "y", "noise_sd"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    sa = post.calibrator.model_object.state_dict()
    sb = want.calibrator.model_object.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_array_equal(np.asarray(sa[key]), np.asarray(sb[key]), err_msg=key)
    for key in ("design", "all_outputs", "status", "errors", "attempts", "finished_at"):
        np.testing.assert_array_equal(getattr(post.runs, key), getattr(want.runs, key))


def test_every_dataset_has_a_checksum(study):
    path, _ = study
    names: list[str] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        missing = [n for n in names if CRC_ATTR not in f[n].attrs]
    assert {"runs/status", "runs/design", "chain/chain", "emulator/kernel"} <= set(names)
    assert {"campaigns/lab/y", "posterior/mean", "posterior/quantity"} <= set(names)
    assert missing == []


def _table() -> list[str]:
    # every dataset written into the module's archive (checked by the test above); the
    # emulator's are represented by one of each kind (array, str, float)
    return [
        "runs/design",
        "runs/outputs",
        "runs/status",
        "runs/error",
        "runs/attempts",
        "runs/elapsed",
        "runs/finished_at",
        "campaigns/lab/x",
        "campaigns/lab/y",
        "campaigns/lab/noise_sd",
        "chain/chain",
        "chain/log_prob",
        "chain/accepted",
        "chain/rng_key",
        "emulator/train_inputs",
        "emulator/kernel",
        "emulator/min_nugget",
        "posterior/quantity",
        "posterior/mean",
        "posterior/acceptance",
    ]


@pytest.mark.parametrize("name", _table())
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_flipped_byte_in_each_dataset_is_named(study, tmp_path, name, where):
    path = tmp_path / "flip.h5"
    shutil.copy(study[0], path)
    offset, size = _datasets(path)[name]
    at = {"first": offset, "middle": offset + size // 2, "last": offset + size - 1}[where]
    _flip(path, [(at, 0x10)])
    with pytest.raises(ArchiveError) as e:
        calib.load(path)
    assert str(path) in str(e.value) and f"/{name}" in str(e.value)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_flips_in_dataset_storage_never_load_silently(study, tmp_path, data):
    path, want = study
    fuzzed = tmp_path / "fuzz.h5"
    shutil.copy(path, fuzzed)
    spans = _datasets(fuzzed)
    flips = []
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        name = data.draw(st.sampled_from(sorted(spans)), label="dataset")
        offset, size = spans[name]
        at = offset + data.draw(st.integers(0, size - 1), label="byte")
        flips.append((at, data.draw(st.integers(1, 255), label="xor")))
    _flip(fuzzed, flips)
    try:
        post = calib.load(fuzzed)
    except ArchiveError as exc:
        assert str(fuzzed) in str(exc)
    else:
        _assert_same(post, want)


def test_a_rewrite_does_not_copy_corruption_forward(study, tmp_path):
    # /runs is copied by the chain's rewrite, /chain by the fold of the runs: both are
    # read through the check first, and the damaged file is left as it was
    path = tmp_path / "damaged.h5"
    shutil.copy(study[0], path)
    offset, size = _datasets(path)["runs/outputs"]
    _flip(path, [(offset + 3, 0x01)])
    before = path.read_bytes()
    cal = study[1].calibrator
    with pytest.raises(ArchiveError, match="/runs/outputs fails its checksum"):
        cal.sample(8, 40, seed=2, archive=path, resume=True, autocorr_stop=False, moves="de")
    assert path.read_bytes() == before
    shutil.copy(study[0], path)
    offset, size = _datasets(path)["chain/log_prob"]
    _flip(path, [(offset + size - 2, 0x80)])
    before = path.read_bytes()
    sim = FunctionSimulator(_line, ("x",), ("a", "b"), ("y",))
    runs = study[1].runs
    with pytest.raises(ArchiveError, match="/chain/log_prob fails its checksum"):
        run_design(sim, Design(("x", "a", "b"), runs.design, 1), archive=path)
    assert path.read_bytes() == before


def test_an_archive_without_checksums_loads_and_gets_them_at_its_next_rewrite(tmp_path):
    # written before checksums: loads as it did (test_archive_fixture.py checks the
    # numbers); a rewrite by calib gives every copied dataset the checksum of what it read
    path = tmp_path / "old.h5"
    shutil.copy(DATA / "study_62ed993.h5", path)
    with h5py.File(path, "r") as f:
        assert CRC_ATTR not in f["chain/chain"].attrs
    chain = calib.load(path).chain
    sim = FunctionSimulator(chain_driver.product, (), ("a", "b"), ("y",), vectorized=True)
    run_design(sim, np.array([[1.0, 2.0], [0.5, 3.0]]), archive=path)
    with h5py.File(path, "r") as f:
        assert CRC_ATTR in f["chain/chain"].attrs and CRC_ATTR in f["runs/design"].attrs
        assert CRC_ATTR in f["emulator/hyper/lengthscale"].attrs
    np.testing.assert_array_equal(calib.load(path).chain, chain)
    offset, _ = _datasets(path)["chain/chain"]
    _flip(path, [(offset + 100, 0x04)])
    with pytest.raises(ArchiveError, match="/chain/chain fails its checksum"):
        calib.load(path)


def test_a_dataset_replaced_by_hand_is_read_unchecked_and_a_bad_checksum_attribute_refused(
    study, tmp_path
):
    path = tmp_path / "edit.h5"
    shutil.copy(study[0], path)
    with h5py.File(path, "r+") as f:
        y = f["campaigns/lab/y"][()]
        del f["campaigns/lab/y"]
        f["campaigns/lab/y"] = y  # an edit with h5py: no checksum, read as it is
    np.testing.assert_array_equal(calib.load(path).chain, study[1].chain)
    with h5py.File(path, "r+") as f:
        f["chain/chain"].attrs[CRC_ATTR] = "abc"
    with pytest.raises(ArchiveError, match="/chain/chain attribute 'crc32' should be"):
        calib.load(path)
