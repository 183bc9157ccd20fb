"""calib.load: the emulator-mode round trip, direct mode, and bad or damaged files."""

from __future__ import annotations

import json
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
from calib.design import Design
from calib.interfaces import SimulatorMissingError
from calib.priors import Normal
from calib.runner import run_design
from emulators import GPEmulator
from simulators import FunctionSimulator

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
import chain_driver  # noqa: E402


def _line(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.array([t[0] + t[1] * x[0]])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Runs, an emulator and a chain in one archive (emulator mode)."""
    path = tmp_path_factory.mktemp("study") / "study.h5"
    sim = FunctionSimulator(_line, ("x",), ("a", "b"), ("y",))
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.uniform(0, 1, 30), rng.uniform(-1, 2, 30), rng.uniform(-1, 2, 30)])
    runs = run_design(sim, Design(("x", "a", "b"), X, 1), archive=path)
    em = GPEmulator(n_restarts=1, seed=0).fit(runs.inputs, runs.outputs)
    xo = np.linspace(0, 1, 6)
    y = 0.5 + 1.0 * xo + 0.05 * rng.standard_normal(6)
    cal = Calibrator(
        em,
        [Parameter("a", -1, 2), Parameter("b", -1, 2, prior=Normal(1, 1))],
        [Campaign("lab", x=xo, y=y, noise_sd=0.05)],
        noise="known",
        input_names=("x",),
    )
    post = cal.sample(16, 300, seed=2, archive=path, autocorr_stop=False, checkpoint_every=100)
    return path, post, runs


def test_emulator_mode_round_trip_predicts_exactly(study):
    path, post, runs = study
    back = calib.load(path)
    np.testing.assert_array_equal(back.chain, post.chain)
    np.testing.assert_array_equal(back.log_prob, post.log_prob)
    np.testing.assert_array_equal(back.acceptance, post.acceptance)
    assert back.burn == post.burn
    Xn = np.linspace(0, 1, 4).reshape(-1, 1)
    a, b = back.predict(Xn, n_draws=50), post.predict(Xn, n_draws=50)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.sd, b.sd)
    e1 = back.calibrator.model_object.predict(runs.inputs[:5])
    e2 = post.calibrator.model_object.predict(runs.inputs[:5])
    np.testing.assert_array_equal(e1.mean, e2.mean)
    assert [c.name for c in back.calibrator.campaigns] == ["lab"]
    assert [p.to_dict() for p in back.calibrator.parameters] == [
        p.to_dict() for p in post.calibrator.parameters
    ]
    np.testing.assert_array_equal(back.runs.outputs, runs.outputs)
    assert str(back.summary()) == str(post.summary())


def test_layout_is_readable_with_plain_h5py(study):
    path, post, runs = study
    with h5py.File(path, "r") as f:
        meta = f["meta"].attrs
        assert meta["schema_version"] == calib.archive.SCHEMA_VERSION
        assert meta["seed"] == 2 and "updated" in meta and "created" in meta
        config = json.loads(meta["configuration"])
        assert config["mode"] == "emulator" and config["sample"]["n_steps"] == 300
        assert json.loads(meta["versions"])["h5py"] == h5py.__version__
        np.testing.assert_array_equal(f["chain/chain"][()], post.chain)
        assert f["chain/rng_key"].shape == (624,)
        assert list(f["chain"].attrs["labels"].astype(str)) == post.model.labels
        assert f["emulator"].attrs["plugin"] == "gp"
        np.testing.assert_array_equal(f["campaigns/lab/y"][()], post.calibrator.campaigns[0].y)
        np.testing.assert_array_equal(f["runs/outputs"][()], runs.outputs)
        q = [s.decode() for s in f["posterior/quantity"][()]]
        assert q == post.names
        np.testing.assert_allclose(f["posterior/mean"][()], [post.draws(n).mean() for n in q])


def test_exports_arviz_and_dataframe(study):
    _, post, _ = study
    idata = post.to_arviz()
    a = idata.posterior["a"].values  # (chain = walker, draw)
    assert a.shape == (post.n_walkers, post.kept.shape[0])
    np.testing.assert_array_equal(a.T.reshape(-1), post.draws("a"))
    np.testing.assert_array_equal(idata.sample_stats["lp"].values.T, post.log_prob[post.burn :])
    df = post.to_dataframe()
    assert len(df) == post.kept.shape[0] * post.n_walkers
    np.testing.assert_array_equal(df["b"].to_numpy(), post.draws("b"))
    assert df["step"].min() == post.burn


def test_to_arviz_without_arviz_names_the_extra(study, monkeypatch):
    _, post, _ = study
    monkeypatch.setitem(sys.modules, "arviz", None)
    with pytest.raises(ImportError, match=r"calib\[arviz\]"):
        post.to_arviz()


def test_direct_mode_reads_without_the_simulator_and_checks_its_names(tmp_path):
    path = tmp_path / "d.h5"
    cal = chain_driver.make_calibrator()
    post = chain_driver.sample(cal, str(path), 60, 30)
    # issue 12: reading needs no simulator; only a prediction runs it, and says so
    bare = calib.load(path)
    np.testing.assert_array_equal(bare.chain, post.chain)
    a, b = bare.summary().to_dict(), post.summary().to_dict()
    assert list(a) == list(b)
    for name in a:
        for col in ("mean", "sd", "q5", "q95", "ess", "rhat"):
            np.testing.assert_array_equal(a[name][col], b[name][col], err_msg=f"{name} {col}")
    with pytest.raises(SimulatorMissingError, match=r"simulator=sim") as e:
        bare.predict(None, campaign="B/2", n_draws=20)
    assert str(path) in str(e.value) and "chain_driver.product" in str(e.value)
    other = FunctionSimulator(chain_driver.product, (), ("a", "c"), ("y",), vectorized=True)
    with pytest.raises(ArchiveError, match=r"parameter_names"):
        calib.load(path, simulator=other)
    back = calib.load(path, simulator=cal.model_object)
    np.testing.assert_array_equal(back.chain, post.chain)
    p1 = back.predict(None, campaign="B/2", n_draws=20)
    p2 = post.predict(None, campaign="B/2", n_draws=20)
    np.testing.assert_array_equal(p1.mean, p2.mean)


# ---------------------------------------------------------------------- bad input
def _copy(study, tmp_path) -> Path:
    dst = tmp_path / "copy.h5"
    shutil.copy(study[0], dst)
    return dst


def test_not_hdf5_other_program_truncated(study, tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not an archive\n")
    with pytest.raises(ArchiveError, match="cannot be opened as HDF5") as e:
        calib.load(text)
    assert str(text) in str(e.value)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(ArchiveError, match="not a calib study archive"):
        calib.load(other)
    cut = _copy(study, tmp_path)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match=str(cut)):
        calib.load(cut)
    with pytest.raises(ArchiveError, match="no such file"):
        calib.load(tmp_path / "missing.h5")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f["meta"].attrs.__setitem__("schema_version", 99), "schema version 99"),
        (lambda f: f.__delitem__("campaigns"), "no /campaigns"),
        (lambda f: f.__delitem__("chain"), "no /chain"),
        (lambda f: f.__delitem__("emulator"), "no /emulator"),
        (lambda f: f["chain"].__delitem__("log_prob"), "no dataset 'log_prob'"),
        (lambda f: _replace(f, "chain/log_prob", np.zeros((3, 16))), r"log_prob has shape"),
        (lambda f: _replace(f, "chain/chain", np.zeros((300, 16))), r"should have 3 dimension"),
        (lambda f: _replace(f, "chain/chain", np.array(["x"] * 3, dtype="S1")), "should hold"),
        (lambda f: _replace(f, "chain/rng_key", np.zeros(5, dtype="u4")), "rng_key has shape"),
        (lambda f: _replace(f, "chain/accepted", np.full(16, 10**6)), "accepted"),
        # issue 13: an all-zero generator state made a resumed DE move loop for ever
        (lambda f: _replace(f, "chain/rng_key", np.zeros(624, dtype="u4")), "all zeros"),
        (lambda f: _nan_log_prob(f), "log_prob contains NaN"),
        # links are refused, never followed (an external one names another file)
        (lambda f: f.__setitem__("x", h5py.ExternalLink("other.h5", "/data")), "external link"),
        (lambda f: f.__setitem__("chain2", h5py.SoftLink("/chain")), "/chain2 is a soft link"),
        (lambda f: f["meta"].attrs.__setitem__("configuration", "{oops"), "not JSON"),
        (lambda f: f["emulator"].attrs.__setitem__("plugin", "nope"), None),
        (lambda f: f["emulator"].attrs.__setitem__("class", "Evil"), "not registered"),
        (lambda f: _replace(f, "campaigns/lab/y", np.zeros(2)), "campaigns"),
        (lambda f: f["chain"].attrs.__setitem__("iteration", 7), "iteration 7"),
    ],
)
def test_damaged_archives_raise_archive_error(study, tmp_path, mutate, message):
    path = _copy(study, tmp_path)
    with h5py.File(path, "r+") as f:
        mutate(f)
    if message is None:  # a stale plug-in name falls back to the registered class name
        calib.load(path)
        return
    with pytest.raises(ArchiveError, match=message) as e:
        calib.load(path)
    assert str(path) in str(e.value)


def _nan_log_prob(f: h5py.File) -> None:
    lp = f["chain/log_prob"][()]
    lp[1, 2] = np.nan
    _replace(f, "chain/log_prob", lp)


def _replace(f: h5py.File, name: str, data: np.ndarray) -> None:
    del f[name]
    f[name] = data


# ---------------------------------------------------------------------- fuzzing
_MUTATIONS = ("delete", "zeros", "string", "reshape", "attr", "bytes")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_fuzzed_archives_load_or_raise_archive_error(study, tmp_path, data):
    path = tmp_path / "fuzz.h5"
    shutil.copy(study[0], path)
    with h5py.File(path, "r") as f:
        names: list[str] = []
        f.visit(names.append)
    kind = data.draw(st.sampled_from(_MUTATIONS))
    if kind == "bytes":
        raw = bytearray(path.read_bytes())
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] = data.draw(st.integers(0, 255))
        path.write_bytes(bytes(raw))
    else:
        name = data.draw(st.sampled_from(names))
        with h5py.File(path, "r+") as f:
            obj = f[name]
            if kind == "delete":
                del f[name]
            elif kind == "attr":
                keys = list(obj.attrs)
                if keys:
                    key = data.draw(st.sampled_from(keys))
                    obj.attrs[key] = data.draw(
                        st.sampled_from([np.float64(np.nan), "garbage", -1, np.zeros(3)])
                    )
            elif isinstance(obj, h5py.Dataset):
                del f[name]
                if kind == "zeros":
                    shape = tuple(data.draw(st.lists(st.integers(0, 4), max_size=3)))
                    f[name] = np.zeros(shape)
                elif kind == "string":
                    f[name] = "text"
                else:
                    f[name] = np.zeros(7)
    try:
        post = calib.load(path)
    except ArchiveError as exc:
        assert str(path) in str(exc)
    else:
        assert isinstance(post, calib.Posterior)
