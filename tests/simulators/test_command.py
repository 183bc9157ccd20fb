"""CommandSimulator with a real executable: formats, fresh directories, failures, bad input."""

from __future__ import annotations

import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from calib.design import Design
from calib.interfaces import SimulatorError
from calib.runner import run_design
from simulators import CommandSimulator
from simulators.command import CommandTimeout, OutputError

HERE = Path(__file__).resolve().parent
TEMPLATE = "# generated\nload = {load:.17g}\nE = {E}\ncase = {case}\n"


@pytest.fixture(scope="module")
def solver(tmp_path_factory) -> Path:
    """The fake solver, copied and made executable, run by this very Python."""
    path = tmp_path_factory.mktemp("bin") / "fake_solver"
    text = (HERE / "fake_solver.py").read_text().split("\n", 1)[1]
    path.write_text(f"#!{sys.executable}\n{text}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _sim(solver, mode="stdout", **kw) -> CommandSimulator:
    kw.setdefault("template", TEMPLATE)
    return CommandSimulator(
        [str(solver), "{input_file}", mode], ("load", "case"), ("E",), ("tip", "root"), **kw
    )


def _expected(load, E):
    return np.array([load * 8.0 / (3.0 * E), load * 2.0])


@pytest.mark.parametrize(
    "mode, kw",
    [
        ("stdout", {}),
        ("file", {"output": "out.txt"}),
        ("csv", {"format": "csv"}),
        ("json", {"format": "json"}),
        ("json", {"format": "json", "key": "nested.both"}),
        ("stdout", {"parser": lambda text: text.split()[-2:]}),
    ],
)
def test_output_formats(solver, mode, kw):
    sim = _sim(solver, mode, **kw)
    y = sim.run(np.array([123.25, 0.0]), np.array([2.1e11]))
    np.testing.assert_allclose(y, _expected(123.25, 2.1e11), rtol=1e-15)


def test_csv_column_and_fresh_directory(solver, tmp_path):
    sim = CommandSimulator(
        [str(solver), "{input_file}", "csv"],
        ("load", "case"),
        ("E",),
        ("a", "b"),
        template=TEMPLATE,
        format="csv",
        key="step",
        workdir=tmp_path,
        keep="all",
    )
    np.testing.assert_array_equal(sim.run([1.0, 0.0], [1.0]), [0.0, 1.0])
    # a second run must not see the first one's files (the solver refuses a stale out.txt)
    file_sim = _sim(solver, "file", output="out.txt", workdir=tmp_path, keep="all")
    file_sim.run([1.0, 0.0], [2.0])
    file_sim.run([1.0, 0.0], [2.0])
    dirs = sorted(tmp_path.iterdir())
    assert len(dirs) == 3
    assert (dirs[0] / "input.txt").read_text().startswith("# generated\nload = 1\n")


def test_failures_raise_with_stderr_tail(solver, tmp_path):
    sim = _sim(solver, workdir=tmp_path)
    with pytest.raises(SimulatorError, match="exited with status 2.*matrix is singular at step 7"):
        sim.run([1.0, 3.0], [1.0])
    with pytest.raises(OutputError, match="holds 0 values, expected 2"):
        sim.run([1.0, 9.0], [1.0])
    t0 = time.perf_counter()
    with pytest.raises(CommandTimeout, match="timeout=0.5 s.*starting a long iteration"):
        sim.run([1.0, 6.0], [1.0], timeout=0.5)
    assert time.perf_counter() - t0 < 5
    # failed runs keep their directories for inspection, successful ones are removed
    sim.run([1.0, 0.0], [1.0])
    assert len(list(tmp_path.iterdir())) == 3


def test_design_with_injected_failures_completes(solver, tmp_path):
    sim = _sim(solver, keep="none")
    n = 40
    rng = np.random.default_rng(5)
    # 10 % of the runs fail: the solver's "case" input picks how
    failing = {5: 3, 14: 6, 23: 9, 32: 13}  # row -> case: exit 2, hang, garbage, exit 2
    cases = np.array([failing.get(i, 0) for i in range(n)], dtype=float)
    d = Design(
        ("load", "case", "E"),
        np.column_stack([rng.uniform(1, 10, n), cases, rng.uniform(1, 2, n)]),
        2,
    )
    t0 = time.perf_counter()
    runs = run_design(sim, d, executor=None, timeout=1.0, archive=tmp_path / "s.h5", progress=False)
    assert time.perf_counter() - t0 < 30
    kind = {5: "error", 14: "timeout", 23: "invalid", 32: "error"}
    for i in range(n):
        assert runs.status[i] == kind.get(i, "ok"), (i, runs.errors[i])
    assert runs.counts == {"ok": 36, "error": 2, "timeout": 1, "invalid": 1, "pending": 0}
    np.testing.assert_allclose(
        runs.outputs, np.array([_expected(r[0], r[2]) for r in runs.inputs]), rtol=1e-15
    )
    errors = {i: e for i, _, e in runs.failures()}
    assert "matrix is singular" in errors[5] and "matrix is singular" in errors[32]
    assert "ran past timeout=1.0 s" in errors[14] and "long iteration" in errors[14]
    assert "holds 0 values" in errors[23]
    # nothing else is lost: the archive holds exactly the same
    from calib.runner import RunSet

    stored = RunSet.from_archive(tmp_path / "s.h5")
    np.testing.assert_array_equal(stored.outputs, runs.outputs)
    np.testing.assert_array_equal(stored.errors, runs.errors)


def test_bad_configuration_is_refused_before_running(solver):
    with pytest.raises(ValueError, match=r"template names unknown placeholder \{Ee\}"):
        _sim(solver, template="E = {Ee}")
    with pytest.raises(ValueError, match=r"command\[2\] '\{mdoe\}' names unknown placeholder"):
        CommandSimulator([str(solver), "{input_file}", "{mdoe}"], ("load",), ("E",))
    with pytest.raises(FileNotFoundError, match="'no-such-solver-xyz' was not found on PATH"):
        CommandSimulator(["no-such-solver-xyz"], (), ("E",))
    with pytest.raises(FileNotFoundError, match="is not an executable file"):
        CommandSimulator([str(HERE / "missing_solver")], (), ("E",))
    with pytest.raises(TypeError, match="never run through a shell"):
        CommandSimulator(f"{solver} input.txt", (), ("E",))
    with pytest.raises(ValueError, match="format must be one of"):
        _sim(solver, format="xml")
    with pytest.raises(ValueError, match="literal braces"):
        _sim(solver, template="a = {")
