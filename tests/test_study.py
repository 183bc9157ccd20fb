"""The study file (calib/study.py): every refusal names the key's path in one line, a
study builds the same calibration as a script, runs resume from the archive, the beam
demo's pipeline runs, and docs/study.md's example is the demo's study."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from calib import Calibrator, Campaign, Parameter
from calib.config import to_config
from calib.study import StudyError, read_study, report, run_study

ROOT = Path(__file__).resolve().parents[1]
STUDIES = Path(__file__).resolve().parent / "data" / "studies"
BEAM = ROOT / "examples" / "beam"


@pytest.fixture
def studies(tmp_path):
    """A copy of tests/data/studies (the studies write their archives beside them)."""
    folder = tmp_path / "studies"
    shutil.copytree(STUDIES, folder, ignore=shutil.ignore_patterns("__pycache__", "*.h5*"))
    return folder


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path.name}"
    path.write_text(text.replace(old, new, 1))
    return path


# ---------------------------------------------------------------------- refusals
# (study file, text replaced, replacement, the message's start): one broken file each
DIRECT, EMULATED = "line.toml", "line_emulated.toml"
# fmt: off
BROKEN = [
    # the file and its sections
    (DIRECT, "[simulator]", "colour = 'red'\n[simulator]", "colour: unknown key; expected one of"),
    (DIRECT, "name = \"k\"", "name = \"k\n", "study: '"),  # not TOML
    (DIRECT, "[[campaigns]]\nname = \"A\"", "[[other]]\nname = \"A\"", "other: unknown key"),
    (DIRECT, "n_walkers = 8", "n_walker = 8", "sampler.n_walker: unknown key"),
    (DIRECT, "n_walkers = 8", "n_walkers = 8.5", "sampler.n_walkers: expected an integer, got float"),
    (DIRECT, "seed = 1", "seed = true", "sampler.seed: expected an integer, got boolean"),
    (DIRECT, "n_walkers = 8", "moves = 'gibbs'", "sampler.moves: expected 'hmc' or 'de'"),
    (DIRECT, "n_walkers = 8", "n_steps = 0", "sampler.n_steps: expected a non-negative"),
    # the simulator
    (DIRECT, 'function = "line_model:line"', 'plugin = "beem"', "simulator.plugin: no plug-in 'beem'"),
    (DIRECT, 'function = "line_model:line"', 'function = "nowhere:line"', "simulator.function: cannot import module 'nowhere'"),
    (DIRECT, 'function = "line_model:line"', 'function = "line_model:curve"', "simulator.function: module 'line_model' has no attribute 'curve'"),
    (DIRECT, 'function = "line_model:line"', 'function = "line_model"', "simulator.function: expected 'module:callable'"),
    (DIRECT, 'function = "line_model:line"', 'function = "line_model:line"\nplugin = "beam"', "simulator: expected exactly one of"),
    (DIRECT, "vectorized = true", "vectorised = true", "simulator.options: FunctionSimulator refuses them"),
    (DIRECT, "options = {", "options = 3 #", "simulator.options: expected a table, got integer 3"),
    # parameters: bounds, priors, pooling, fixed values, names
    (DIRECT, 'upper = 2.0', 'upper = 2.0\npooling = "partly"', "parameters[0] ('k').pooling: expected one of ['complete', 'none', 'partial', 'spike_slab'], got 'partly'"),
    (DIRECT, 'upper = 2.0', 'upper = 2.0\nprior = { type = "Cauchy" }', "parameters[0] ('k').prior.type: expected a prior family"),
    (DIRECT, 'upper = 2.0', 'upper = 2.0\nprior = { type = "Normal", mean = 1.0 }', "parameters[0] ('k').prior: a Normal prior needs"),
    (DIRECT, 'upper = 2.0', 'upper = 2.0\nprior = "Normal"', "parameters[0] ('k').prior: expected a prior table"),
    (DIRECT, "lower = 0.0\nupper = 2.0", "", "parameters[0] ('k'): "),  # no bounds, no prior
    (DIRECT, "lower = 0.0", 'lower = "zero"', "parameters[0] ('k').lower: expected a number or nothing, got str 'zero'"),
    (DIRECT, "lower = 0.0", "lowr = 0.0", "parameters[0]: unknown key(s) ['lowr']"),
    (DIRECT, 'name = "c"', 'name = "q"', "parameters[1].name: 'q' is not a parameter of the simulator"),
    (DIRECT, 'name = "c"\nvalue = 0.0', 'name = "k"\nvalue = 0.0', "parameters[1].name: 'k' is given twice"),
    (DIRECT, '[[parameters]]\nname = "c"\nvalue = 0.0', "", "parameters: the simulator's parameter(s) ['c'] have no [[parameters]] table"),
    (DIRECT, "value = 0.0", "value = 0.0\npooling = 'partial'", "parameters[1] ('c'): "),
    # hyperpriors, discrepancy, noise
    (DIRECT, "[noise]", "[hyperpriors.k]\nwidth = 1.0\n[noise]", "hyperpriors.k.width: unknown key"),
    (DIRECT, "[noise]", "[hyperpriors.k]\nscale = { type = 'HalfNormal' }\n[noise]", "hyperpriors.k.scale: a HalfNormal prior needs"),
    (DIRECT, "[noise]", "[hyperpriors.k]\nscale = { type = 'HalfNormal', scale = 1.0 }\n[noise]", "hyperpriors: 'k' is not a partially pooled parameter"),
    (DIRECT, "[noise]", "[discrepancy]\nmode = 'global'\n[noise]", "discrepancy.mode: expected one of ['none', 'shared', 'independent'], got 'global'"),
    (DIRECT, "[noise]", "[discrepancy]\nmode = 'shared'\nkernel = 'rbf2'\n[noise]", "discrepancy.kernel: expected one of"),
    (DIRECT, 'model = "known"', 'model = "gaussian"', "noise.model: expected one of ['known', "),
    (DIRECT, 'model = "known"', 'modle = "known"', "noise.modle: unknown key"),
    (DIRECT, 'model = "known"', 'model = "shared"\nprior = { type = "Normal" }', "noise.prior: a Normal prior needs"),
    # campaigns and their data files
    (DIRECT, 'data = "b.csv"', 'data = "b2.csv"', "campaigns[1].data: file 'b2.csv' not found"),
    (DIRECT, 'data = "b.csv"', "data = 3", "campaigns[1].data: expected a string (a file path), got integer 3"),
    (DIRECT, 'data = "b.csv"', 'data = "line_model.py"', "campaigns[1].data: 'line_model.py': expected a .csv, .h5 or .hdf5 file"),
    (DIRECT, 'data = "b.csv"', 'data = "b.csv"\nsheet = 2', "campaigns[1].sheet: unknown key"),
    (DIRECT, 'name = "B"\n', "", "campaigns[1].name: missing (required)"),
    (DIRECT, 'name = "B"', 'name = "A"', "campaigns: duplicate names ['A']"),
    (DIRECT, "noise_sd = 0.05\n\n[noise]", "noise_sd = -0.05\n\n[noise]", "campaigns[1]: Campaign 'B': noise_sd must be finite and > 0"),
    (DIRECT, "noise_sd = 0.05\n\n[noise]", "noise_sd = 'sd'\n\n[noise]", "campaigns[1].data: 'b.csv' lacks the column(s) ['sd']"),
    (DIRECT, "noise_sd = 0.05\n\n[noise]", "noise_sd = true\n\n[noise]", "campaigns[1].noise_sd: expected a number or a column name"),
    (DIRECT, "noise_sd = 0.05\n\n[noise]", "\n[noise]", "noise='known' but campaign(s) ['B'] have no noise_sd"),
    # design, runs, emulator
    (DIRECT, "[outputs]", "[design]\nn = 10\n[outputs]", "design: a design is run to fit an emulator"),
    (EMULATED, "[design]\nn = 14", "[other_design]\nn = 14", "other_design: unknown key"),
    (EMULATED, "n = 14", "n = '14'", "design.n: expected an integer, got string '14'"),
    (EMULATED, "n = 14", "n = 0", "design.n: expected an integer >= 1, got 0"),
    (EMULATED, "seed = 0\nx_bounds", "kind = 'random'\nx_bounds", "design.kind: expected one of ['latin_hypercube', 'sobol', 'grid'], got 'random'"),
    (EMULATED, "x_bounds = { x = [0.0, 1.0] }", "x_bounds = { x = [0.0] }", "design.x_bounds.x: expected [lower, upper] as two numbers"),
    (EMULATED, "x_bounds = { x = [0.0, 1.0] }", "x_bounds = { z = [0.0, 1.0] }", "design.x_bounds.z: unknown key; expected one of ['x']"),
    (EMULATED, "x_bounds = { x = [0.0, 1.0] }", "", "design.x_bounds: bounds missing for control input(s) ['x']"),
    (EMULATED, "x_bounds = { x = [0.0, 1.0] }", "x_bounds = { x = [1.0, 0.0] }", "design: x_bounds['x']: expected finite lower <= upper"),
    (EMULATED, 'executor = "serial"', 'executor = "threads"', "runs.executor: expected 'processes', 'serial' or a Dask"),
    (EMULATED, 'executor = "serial"', "timeout = -1", "runs.timeout: expected seconds > 0"),
    (EMULATED, 'executor = "serial"', "retries = 1.5", "runs.retries: expected an integer, got float"),
    (EMULATED, 'plugin = "gp"', 'plugin = "gq"', "emulator.plugin: no plug-in 'gq' in calib.emulators"),
    (EMULATED, "n_restarts = 1", "n_restarts = 0", "emulator.options: GPEmulator refuses them"),
    (EMULATED, "n_restarts = 1", "kernal = 'rbf'", "emulator.options: GPEmulator refuses them"),
    (EMULATED, "[design]\nn = 14\nseed = 0\nx_bounds = { x = [0.0, 1.0] }", "", "design: missing"),
    # outputs
    (DIRECT, 'archive = "line.h5"', 'archive = "nowhere/line.h5"', "outputs.archive: folder '"),
    (DIRECT, "truth = { k = 0.85 }", "truth = { kk = 0.85 }", "outputs.truth.kk: not a quantity of this study"),
    (EMULATED, '"k[A]" = 0.8', '"k[C]" = 0.8', "outputs.truth.\"k[C]\": not a quantity of this study"),
    (DIRECT, "truth = { k = 0.85 }", "truth = { k = 'high' }", "outputs.truth.k: expected a number"),
]
# fmt: on


@pytest.mark.parametrize(
    "study, old, new, message",
    BROKEN,
    ids=[f"{i}-{b[3].split(':')[0]}" for i, b in enumerate(BROKEN)],
)
def test_a_broken_study_is_one_line_naming_the_key(studies, study, old, new, message):
    path = _edit(studies / study, old, new)
    with pytest.raises(StudyError) as err:
        read_study(path)
    text = str(err.value)
    assert text.startswith(message), text
    assert "\n" not in text
    assert not list(studies.glob("*.h5")), "nothing may be written before the study is checked"


def test_a_broken_data_file_names_its_line_and_column(studies):
    (studies / "b.csv").write_text("x,y\n0.1,0.2\n0.3,abc\n")
    with pytest.raises(
        StudyError,
        match=r"^campaigns\[1\]\.data: 'b.csv' line 3, column 'y': 'abc' is not a number",
    ):
        read_study(studies / DIRECT)
    (studies / "b.csv").write_text("x,y,z\n0.1,0.2,1\n")
    with pytest.raises(StudyError, match=r"^campaigns\[1\]\.data: 'b.csv' has column\(s\) \['z'\]"):
        read_study(studies / DIRECT)
    (studies / "b.csv").write_text("x,y\n0.1,0.2,0.3\n")
    with pytest.raises(StudyError, match=r"^campaigns\[1\]\.data: 'b.csv' line 2 has 3 values"):
        read_study(studies / DIRECT)
    with pytest.raises(StudyError, match=r"^study: file '.*missing.toml' not found"):
        read_study(studies / "missing.toml")


# ---------------------------------------------------------------------- building
def test_a_study_builds_what_a_script_builds(studies):
    """The study's Calibrator equals the one a script makes (same configuration, same
    log-posterior), and the study travels in the configuration."""
    study = read_study(studies / DIRECT)
    sim = study.simulator
    data = [np.loadtxt(studies / f, delimiter=",", skiprows=1) for f in ("a.csv", "b.csv")]
    script = Calibrator(
        sim,
        [Parameter("k", 0.0, 2.0), Parameter("c", value=0.0)],
        [Campaign(n, x=d[:, 0], y=d[:, 1], noise_sd=0.05) for n, d in zip("AB", data)],
        noise="known",
    )
    got, want = to_config(study.calibrator), to_config(script)
    assert got.pop("study")["content"] == tomllib.loads((studies / DIRECT).read_text())
    assert got == want
    U = script.model.sample_prior(np.random.default_rng(0), 5)
    np.testing.assert_array_equal(study.calibrator.log_posterior(U), script.log_posterior(U))
    assert study.archive == (studies / "line.h5").resolve()
    assert study.sampler == {"n_walkers": 8, "seed": 1}


def test_a_study_pools_parameters_jointly(studies):
    """``correlated`` (before the first table) builds the script's correlated pooling, LKJ
    hyperprior included; a group naming a parameter that is not partially pooled is one
    line naming it."""
    from calib import LKJ

    text = (studies / DIRECT).read_text()
    text = text.replace('name = "c"\nvalue = 0.0', 'name = "c"\nlower = -1.0\nupper = 1.0')
    text = text.replace("upper = 2.0\n", 'upper = 2.0\npooling = "partial"\n', 1)
    text = text.replace("upper = 1.0\n", 'upper = 1.0\npooling = "partial"\n', 1)
    group = '[{ parameters = ["k", "c"], correlation = { type = "LKJ", eta = 3.0 } }]'
    (studies / DIRECT).write_text(f"correlated = {group}\n" + text)
    study = read_study(studies / DIRECT)
    sim = study.simulator
    data = [np.loadtxt(studies / f, delimiter=",", skiprows=1) for f in ("a.csv", "b.csv")]
    script = Calibrator(
        sim,
        [Parameter("k", 0.0, 2.0, pooling="partial"), Parameter("c", -1.0, 1.0, pooling="partial")],
        [Campaign(n, x=d[:, 0], y=d[:, 1], noise_sd=0.05) for n, d in zip("AB", data)],
        noise="known",
        correlated=[("k", "c")],
        hyperpriors={("k", "c"): {"correlation": LKJ(3.0)}},
    )
    assert "corr(k,c) (unconstrained)" in study.calibrator.model.labels
    U = script.model.sample_prior(np.random.default_rng(0), 5)
    np.testing.assert_array_equal(study.calibrator.log_posterior(U), script.log_posterior(U))
    (studies / DIRECT).write_text('correlated = [["k", "x"]]\n' + text)
    with pytest.raises(StudyError, match="'x'"):
        read_study(studies / DIRECT)


def test_a_direct_study_limits_each_simulator_run_by_its_runs_timeout(studies):
    """``[runs] timeout`` reaches the likelihood's simulator runs in direct mode (it was
    read and then used only by a design)."""
    _edit(studies / DIRECT, "[sampler]", "[runs]\ntimeout = 2.5\n\n[sampler]")
    assert read_study(studies / DIRECT).calibrator.model.forward.timeout == 2.5
    # with an emulator it limits the design's runs, not the calibration's (which runs none)
    _edit(studies / EMULATED, 'executor = "serial"', 'executor = "serial"\ntimeout = 2.5')
    emulated = read_study(studies / EMULATED)
    assert emulated.runs["timeout"] == 2.5 and emulated.calibrator.model.forward.timeout is None


def test_the_study_travels_with_the_configuration(studies):
    """from_config keeps the study record, to_config writes it back (JSON-able, inf as
    JSON's Infinity); a record that is not a table is refused."""
    import json

    from calib.config import from_config

    study = read_study(studies / EMULATED)
    cfg = json.loads(json.dumps(to_config(study.calibrator)))
    assert cfg["study"]["file"] == str(studies / EMULATED)
    back = from_config(cfg, study.model, campaigns=study.calibrator.campaigns)
    assert to_config(back) == cfg and back.study == cfg["study"]
    with pytest.raises(TypeError, match=r"^study: expected a dict"):
        from_config({**cfg, "study": "line.toml"}, study.model, campaigns=back.campaigns)


def test_the_archive_records_the_study(studies):
    import calib

    study = read_study(studies / DIRECT)
    _edit(studies / DIRECT, "seed = 1", "seed = 1\nn_steps = 12\nwarmup = 6")
    run_study(read_study(studies / DIRECT), progress=False)
    post = calib.load(study.archive)
    assert post.calibrator.study["content"] == tomllib.loads((studies / DIRECT).read_text())


def test_emulator_mode_holds_a_fixed_parameter_in_the_runs(studies):
    study = read_study(studies / EMULATED)
    assert study.model.parameter_names == ("k",)  # c is fixed: not emulated
    np.testing.assert_array_equal(
        study.model.run_batch(np.array([[0.5]]), np.array([[2.0]])), [[1.0]]
    )
    assert [p.name for p in study.calibrator.parameters] == ["k"]
    assert study.design["n"] == 14 and study.emulator[0].__name__ == "GPEmulator"


def test_campaigns_read_from_hdf5_with_a_noise_column(studies):
    import h5py

    with h5py.File(studies / "b.h5", "w") as f:
        g = f.create_group("batch")
        g["x"] = np.linspace(0, 1, 4).reshape(-1, 1)
        g["y"] = np.linspace(0, 1, 4).reshape(-1, 1)
        g["sd"] = np.full(4, 0.1)
    _edit(
        studies / DIRECT,
        'data = "b.csv"\nnoise_sd = 0.05',
        'data = "b.h5"\ngroup = "batch"\nnoise_sd = "sd"',
    )
    study = read_study(studies / DIRECT)
    b = study.calibrator.campaigns[1]
    assert b.y.shape == (4, 1) and np.all(b.noise_sd == 0.1)
    _edit(studies / DIRECT, 'group = "batch"', 'group = "other"')
    with pytest.raises(StudyError, match=r"^campaigns\[1\]\.data: 'b.h5' has no group 'other'"):
        read_study(studies / DIRECT)


# ---------------------------------------------------------------------- running
def test_a_second_run_resumes_what_the_archive_holds(studies, tmp_path):
    """Runs, emulator and chain come back from the archive: nothing is run again. A larger
    budget continues the chain, bit for bit the chain of a study run to it at once."""
    budget = "seed = 1\nwarmup = 10\ncheck_every = 10\nn_steps = {}"
    fresh = tmp_path / "fresh"
    shutil.copytree(studies, fresh)
    _edit(studies / EMULATED, "seed = 1", budget.format(30))
    lines: list[str] = []
    study = read_study(studies / EMULATED)
    first = run_study(study, progress=False, log=lines.append)
    assert any(line.startswith("emulator: GPEmulator fitted on 14 runs") for line in lines)
    assert first.chain.shape[0] == 30
    again: list[str] = []
    second = run_study(read_study(studies / EMULATED), progress=False, log=again.append)
    assert any("14 found in the archive; now 14 ok" in line for line in again)
    assert any("restored from the archive" in line for line in again)
    np.testing.assert_array_equal(second.chain, first.chain)
    text = report(study, second)
    assert re.search(r"^k\[A\] .* 0\.8 +(yes|NO)$", text, re.M), text
    assert "archive: " in text and "NOT converged" in text

    _edit(studies / EMULATED, "n_steps = 30", "n_steps = 50")
    resumed = run_study(read_study(studies / EMULATED), progress=False)
    _edit(fresh / EMULATED, "seed = 1", budget.format(50))
    whole = run_study(read_study(fresh / EMULATED), progress=False)
    assert resumed.chain.shape[0] == whole.chain.shape[0] == 50
    np.testing.assert_array_equal(resumed.chain, whole.chain)


# ---------------------------------------------------------------------- the beam demo
def test_the_demo_truth_is_make_datas():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_data", BEAM / "make_data.py")
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    content = tomllib.loads((BEAM / "study.toml").read_text())
    truth = {f"E[{k}]": v for k, v in make_data.TRUE_E.items()}
    assert content["outputs"]["truth"] == truth
    assert content["simulator"]["options"] == {
        "length": 2.0,
        "second_moment": 8e-6,
        "sensors": [1.0, 2.0],
        "n_elements": 20,
    }
    assert repr(make_data.beam()) == repr(read_study(BEAM / "study.toml").simulator)
    for c in content["campaigns"]:
        assert c["noise_sd"] == make_data.NOISE_SD


def _docs_study() -> str:
    text = (ROOT / "docs" / "study.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert blocks, "docs/study.md has no ```toml block"
    return blocks[0]


def test_docs_example_is_the_demo_study():
    assert tomllib.loads(_docs_study()) == tomllib.loads((BEAM / "study.toml").read_text())


def _demo_in(folder: Path, text: str) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_data", BEAM / "make_data.py")
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    make_data.write(folder / "data")
    path = folder / "study.toml"
    path.write_text(text)
    return path


def _small_budget(text: str, design: str, smaller: str) -> str:
    """A study's text with a smaller design and a 12-step, 8-walker sampler budget."""
    for old, new in [
        (design, smaller),
        ("n_steps = 1000", "n_steps = 12\nwarmup = 6\nn_walkers = 8\nn_starts = 2"),
    ]:
        assert old in text
        text = text.replace(old, new)
    return text


def test_docs_example_runs_on_a_small_budget(tmp_path):
    """docs/study.md's study (the beam demo) end to end: design, runs, emulator,
    calibration, archive, on a budget that does not converge."""
    study = read_study(_demo_in(tmp_path, _small_budget(_docs_study(), "n = 40", "n = 16")))
    post = run_study(study, progress=False)
    assert post.chain.shape[:2] == (12, 8) and not post.converged
    out = report(study, post)
    assert re.search(r"^E\[batch-B\] .* 2\.04e\+11 +(yes|NO)$", out, re.M), out
    assert "NOT converged" in out and "raise sampler.n_steps" in out
    assert (tmp_path / "beam.h5").is_file()


@pytest.mark.slow
def test_the_demo_converges_and_covers_the_truth(tmp_path):
    """The demo as `make demo` runs it: converged within its budget, every true E inside
    its 90 % interval."""
    study = read_study(_demo_in(tmp_path, (BEAM / "study.toml").read_text()))
    post = run_study(study, progress=False)
    assert post.converged
    out = report(study, post)
    assert out.count(" yes\n") == 3, out


# ---------------------------------------------------------------------- the network example
NETWORK = ROOT / "examples" / "reaction_network"


def _network_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("network_data", NETWORK / "make_data.py")
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    return make_data


def test_the_network_truth_is_make_datas():
    make_data = _network_module()
    content = tomllib.loads((NETWORK / "study.toml").read_text())
    truth = {f"k1[{k}]": v for k, v in make_data.TRUE_K1.items()}
    truth["k2"] = make_data.TRUE_K2
    assert content["outputs"]["truth"] == truth
    assert repr(make_data.network()) == repr(read_study(NETWORK / "study.toml").simulator)
    for c in content["campaigns"]:
        assert c["noise_sd"] == make_data.NOISE_SD


def _network_in(folder: Path, text: str) -> Path:
    _network_module().write(folder)
    path = folder / "study.toml"
    path.write_text(text)
    return path


def test_the_network_example_predicts_an_unseen_experiment(tmp_path):
    """examples/reaction_network end to end on a small budget, then the prediction of a
    new preparation's time course at new_experiment.csv's initial concentrations."""
    text = _small_budget((NETWORK / "study.toml").read_text(), "n = 80", "n = 20")
    study = read_study(_network_in(tmp_path, text))
    post = run_study(study, progress=False)
    assert post.chain.shape[:2] == (12, 8) and not post.converged
    x = np.loadtxt(tmp_path / "new_experiment.csv", delimiter=",", skiprows=1).reshape(-1, 1)
    pred = post.predict_new_campaign(x, n_draws=50)
    assert pred.mean.shape == (2, 4) and pred.output_names == ("B@0.5", "B@1", "B@2", "B@4")
    # B(t) ≤ A0: the intermediate never exceeds the substrate it came from
    assert (pred.mean > 0).all() and (pred.mean < x).all()


@pytest.mark.slow
def test_the_network_example_converges(tmp_path):
    """The example as documented: converged within its budget; k2 (shared) inside its 90 %
    interval, and at least four of the five true rates inside theirs."""
    study = read_study(_network_in(tmp_path, (NETWORK / "study.toml").read_text()))
    post = run_study(study, progress=False)
    assert post.converged
    out = report(study, post)
    assert re.search(r"^k2 .* 0\.4 +yes$", out, re.M), out
    assert out.count(" yes\n") >= 4, out
