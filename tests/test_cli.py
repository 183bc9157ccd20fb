"""The ``calib`` command end to end, in subprocesses: each command and each exit status."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).resolve().parent / "data" / "archives" / "study_62ed993.h5"


def _calib(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "calib", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def unconverged(tmp_path):
    path = tmp_path / "study.h5"
    shutil.copyfile(FIXTURE, path)  # 60 iterations: not converged
    return path


@pytest.fixture(scope="module")
def converged(tmp_path_factory):
    """A direct-mode study sampled to its verdict (read back without the simulator)."""
    from calib import Calibrator, Campaign, Parameter
    from calib.priors import Normal
    from simulators import FunctionSimulator

    path = tmp_path_factory.mktemp("cli") / "conv.h5"
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 10)
    sim = FunctionSimulator(
        lambda X, T: T[:, :1] * X[:, :1], ("x",), ("k",), ("y",), vectorized=True
    )
    cal = Calibrator(
        sim,
        [Parameter("k", prior=Normal(1, 1))],
        [Campaign("A", x=x, y=0.8 * x + 0.1 * rng.standard_normal(10), noise_sd=0.1)],
        noise="known",
    )
    post = cal.sample(n_walkers=16, seed=1, archive=path)
    assert post.converged
    return path


def test_help_lists_the_commands():
    r = _calib("--help")
    assert r.returncode == 0
    for cmd in ("summary", "info", "predict", "plugins"):
        assert cmd in r.stdout
    script = Path(sys.executable).parent / "calib"  # the console script of pyproject.toml
    if script.exists():
        assert subprocess.run([script, "--help"], capture_output=True).returncode == 0


def test_summary_exit_status_is_the_verdict(unconverged, converged):
    r = _calib("summary", str(unconverged))
    assert r.returncode == 3 and "NOT converged" in r.stdout and "k.typical" in r.stdout
    r = _calib("summary", str(converged))
    assert r.returncode == 0 and "converged: R̂ max" in r.stdout
    r = _calib("summary", "--json", str(converged))
    out = json.loads(r.stdout)
    assert out["converged"] is True and 0.6 < out["summary"]["k"]["mean"] < 1.0


def test_summary_level_sets_the_interval(unconverged):
    r = _calib("summary", "--json", "--level", "0.5", str(unconverged))
    row = json.loads(r.stdout)["summary"]["k.typical"]
    assert r.returncode == 3 and row["q25"] <= row["q50"] <= row["q75"]
    r = _calib("summary", "--level", "1.5", str(unconverged))
    assert r.returncode == 1 and "level: expected a number in (0, 1), got 1.5" in r.stderr


def test_info_needs_no_simulator(unconverged):
    r = _calib("info", str(unconverged))
    assert r.returncode == 0
    assert "mode       emulator" in r.stdout and "60 steps × 8 walkers" in r.stdout
    assert "emulator   GPEmulator" in r.stdout


def test_predict_writes_a_csv(unconverged, tmp_path):
    xs = tmp_path / "x.csv"
    xs.write_text("x\n0.2\n0.5\n")
    out = tmp_path / "p.csv"
    r = _calib("predict", str(unconverged), "--x", str(xs), "--campaign", "c0", "-o", str(out))
    assert r.returncode == 0, r.stderr
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    assert out.read_text().startswith("x,y0.mean,y0.sd,y0.lower,y0.upper")
    assert table.shape == (2, 5) and (table[:, 3] < table[:, 1]).all()
    r = _calib("predict", str(unconverged), "--x", str(xs), "--new-campaign")
    assert r.returncode == 0 and r.stdout.count("\n") == 3


def test_predict_in_direct_mode_without_the_simulator_says_what_to_do(converged, tmp_path):
    xs = tmp_path / "x.csv"
    xs.write_text("x\n0.5\n")
    r = _calib("predict", str(converged), "--x", str(xs), "--campaign", "A")
    assert r.returncode == 1 and "simulator=sim" in r.stderr and "Traceback" not in r.stderr


def test_plugins_lists_the_reference_plugins():
    r = _calib("plugins")
    assert r.returncode == 0 and "beam" in r.stdout and "gp" in r.stdout


@pytest.mark.parametrize(
    "args, status, message",
    [
        (("summary", "missing.h5"), 1, "calib summary: error: archive: no such file"),
        (("predict", "missing.h5", "--x", "x.csv"), 2, "one of the arguments"),
        (("frobnicate",), 2, "invalid choice"),
        ((), 2, "required"),
    ],
)
def test_errors_are_one_line_with_their_status(args, status, message, tmp_path):
    r = _calib(*args, cwd=tmp_path)
    assert r.returncode == status and message in r.stderr and "Traceback" not in r.stderr


def test_debug_shows_the_traceback(tmp_path):
    r = _calib("--debug", "summary", "missing.h5", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_info_counts_the_runs_by_status(tmp_path):
    from calib import Parameter
    from calib.design import latin_hypercube
    from calib.runner import run_design
    from simulators import FunctionSimulator

    sim = FunctionSimulator(
        lambda X, T: T[:, :1] * X[:, :1], ("x",), ("k",), ("y",), vectorized=True
    )
    d = latin_hypercube(sim, [Parameter("k", 0, 1)], n=6, x_bounds={"x": (0, 1)})
    run_design(sim, d, archive=tmp_path / "r.h5", progress=False)
    r = _calib("info", str(tmp_path / "r.h5"))
    assert r.returncode == 0 and "runs       6: 6 ok" in r.stdout and "chain" not in r.stdout


# ---------------------------------------------------------------------- calib run
STUDIES = Path(__file__).resolve().parent / "data" / "studies"


@pytest.fixture
def studies(tmp_path):
    """A copy of the tiny studies (an archive is written beside its study)."""
    folder = tmp_path / "studies"
    shutil.copytree(STUDIES, folder, ignore=shutil.ignore_patterns("__pycache__", "*.h5*"))
    return folder


def test_help_lists_run():
    r = _calib("--help")
    assert r.returncode == 0 and "run" in r.stdout and "study file" in r.stdout


def test_run_a_study_then_resume_it(studies):
    r = _calib("run", "line.toml", cwd=studies)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^k +0\.8\d* .* 0\.85 +yes$", r.stdout, re.M), r.stdout
    assert "converged: R̂ max" in r.stdout and r.stdout.rstrip().endswith("archive: line.h5")
    assert "sampling: 1 coordinates, 2 campaigns (direct mode)" in r.stderr
    first = r.stdout
    r = _calib("run", "--quiet", "line.toml", cwd=studies)  # the archive holds it all
    assert r.returncode == 0 and r.stdout == first and r.stderr == ""
    r = _calib("summary", "line.h5", cwd=studies)
    assert r.returncode == 0 and "k " in r.stdout


def test_run_check_runs_nothing(studies):
    r = _calib("run", "--check", "line_emulated.toml", cwd=studies)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "line_emulated.toml: ok (emulator mode; archive 'line_emulated.h5')\n"
    assert not list(studies.glob("*.h5"))


def test_run_a_broken_study_is_one_line(studies):
    path = studies / "line.toml"
    path.write_text(path.read_text().replace('data = "b.csv"', 'data = "b2.csv"'))
    r = _calib("run", "line.toml", cwd=studies)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr == "calib run: error: campaigns[1].data: file 'b2.csv' not found\n"
    r = _calib("--debug", "run", "line.toml", cwd=studies)
    assert r.returncode == 1 and "Traceback" in r.stderr and "StudyError" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("run",), "the following arguments are required: study"),
        (("run", "--budget", "3", "line.toml"), "unrecognized arguments: --budget"),
    ],
)
def test_run_usage_errors_exit_2(args, message, studies):
    r = _calib(*args, cwd=studies)
    assert r.returncode == 2 and message in r.stderr and "usage: calib" in r.stderr


def test_run_out_of_budget_exits_3(studies):
    path = studies / "line.toml"
    path.write_text(path.read_text().replace("seed = 1", "seed = 1\nn_steps = 12\nwarmup = 6"))
    r = _calib("run", "line.toml", cwd=studies)
    assert r.returncode == 3, r.stderr
    assert "NOT converged" in r.stdout and "raise sampler.n_steps" in r.stdout


@pytest.mark.parametrize("doc", ["cli.md", "study.md"])
def test_the_commands_in_the_docs_parse(doc):
    """Every `$ calib ...` line of the documentation is a valid command line."""
    from calib.cli import _COMMANDS, _parser

    text = (Path(__file__).resolve().parents[1] / "docs" / doc).read_text()
    lines = re.findall(r"^\$ calib (.*?)(?:\s+#.*)?$", text, re.M)
    assert lines
    for line in lines:
        args = _parser().parse_args(line.split())
        assert args.command in _COMMANDS
