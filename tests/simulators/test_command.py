"""CommandSimulator with a real executable: formats, fresh directories, failures, bad input."""

from __future__ import annotations

import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from calib.archive import read_runs
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


PLACEHOLDERS = [
    # (where, text, message): each was accepted, and rendered wrongly or failed in a run
    ("template", "E = {E:{load}}\n", r"template has a nested format spec in \{E:\{load\}\}"),
    ("argument", "{E:{case}}", r"command\[3\] '\{E:\{case\}\}' has a nested format spec"),
    ("template", "case = {case:d}\n",
     r"template cannot render \{case:d\}: the spec 'd' does not format a float value .*"
     r"use e\.g\. \{case:\.6g\} \(or \{case:\.0f\} for a whole number\)"),
    ("argument", "--E={E:d}", r"command\[3\] '--E=\{E:d\}' cannot render \{E:d\}.*\{E:\.6g\}"),
    ("argument", "{E:x}", r"cannot render \{E:x\}: the spec 'x' does not format a float"),
    ("argument", "{input_file:.3f}", r"cannot render \{input_file:\.3f\}.*does not format a path"),
    ("argument", "{E!x}", r"unknown conversion !x in \{E!x\}; expected !r, !s or !a"),
    ("argument", "{E.real}", r"names unknown placeholder \{E\.real\}"),
    ("template", "E = {E[0]}", r"template names unknown placeholder \{E\[0\]\}"),
]  # fmt: skip


@pytest.mark.parametrize("where, text, message", PLACEHOLDERS)
def test_placeholders_and_format_specs_are_checked_at_construction(solver, where, text, message):
    kw = {"template": text} if where == "template" else {}
    command = [str(solver), "{input_file}", "stdout"] + ([text] if where == "argument" else [])
    with pytest.raises(ValueError, match=message) as info:
        CommandSimulator(command, ("load", "case"), ("E",), ("tip", "root"), **kw)
    assert str(info.value).startswith("CommandSimulator: ")


def test_accepted_specs_render_as_written(tmp_path):
    # what the check lets through renders without error: a spec of a float, a conversion
    prog = "import sys; print(' '.join(sys.argv[1:]))"
    sim = CommandSimulator(
        [sys.executable, "-c", prog, "{E:.3e}", "{E!r:>12}", "{n:.0f}", "{input_file}"],
        ("n",),
        ("E",),
        ("a", "b", "c"),
        template="",
        parser=lambda text: [float(v) for v in text.split()[:3]],
        workdir=tmp_path,
    )
    np.testing.assert_array_equal(sim.run([2.7], [2.1e11]), [2.1e11, 2.1e11, 3.0])


def test_argv_separator_passes_through_and_negative_values_arrive_intact():
    # '--' ends a program's options: a negative value after it cannot be read as one
    prog = "import sys; print(int(sys.argv[1] == '--'), sys.argv[2], sys.argv[3].split('=')[1])"
    sim = CommandSimulator(
        [sys.executable, "-c", prog, "--", "{E}", "--k={k}"], (), ("E", "k"), ("sep", "E", "k")
    )
    np.testing.assert_array_equal(sim.run([], [-1.5, -2e-300]), [1.0, -1.5, -2e-300])


@pytest.mark.parametrize("x, theta, message", [
    ([np.nan, 0.0], [1.0], r"load=nan is not finite"),
    ([1.0, 0.0], [np.inf], r"E=inf is not finite"),
    ([-np.inf, 0.0], [-np.inf], r"load=-inf, E=-inf is not finite"),
])  # fmt: skip
def test_nan_and_inf_values_are_refused_before_running(solver, tmp_path, x, theta, message):
    sim = _sim(solver, workdir=tmp_path, keep="all")
    with pytest.raises(ValueError, match=f"^CommandSimulator: {message}.*nothing was run"):
        sim.run(x, theta)
    assert list(tmp_path.iterdir()) == []  # no run directory, no process


SECRET = "API_KEY=sk-live-0123456789abcdef"


@pytest.fixture
def secret(tmp_path) -> Path:
    """A file with a secret beside (outside) the run directories under tmp_path/runs."""
    path = tmp_path / "secret.env"
    path.write_text(f"{SECRET}\n")
    (tmp_path / "runs").mkdir()
    return path


@pytest.mark.parametrize("output", ["/etc/passwd", "../secret.env", "sub/../../secret.env", "~/x"])
def test_output_outside_the_run_directory_is_refused(solver, secret, output):
    with pytest.raises(ValueError, match="output must be a path inside the run directory"):
        _sim(solver, "file", output=output, workdir=secret.parent / "runs")


def test_output_symlink_leading_out_is_not_read(secret):
    # the program leaves a symbolic link to the secret where its output should be
    link = "import os, sys; os.symlink(sys.argv[1], 'out.txt')"
    sim = CommandSimulator(
        [sys.executable, "-c", link, str(secret)], (), ("k",), ("y",), output="out.txt",
        workdir=secret.parent / "runs",
    )  # fmt: skip
    with pytest.raises(SimulatorError, match="leads outside the run directory") as info:
        sim.run([], [1.0])
    assert not isinstance(info.value, OutputError)
    assert "sk-live" not in str(info.value)
    # nor does it reach the archive's error text
    h5 = secret.parent / "s.h5"
    runs = run_design(
        sim, Design(("k",), [[1.0]], 0), executor="serial", archive=h5, progress=False
    )
    assert runs.status[0] == "error" and "leads outside" in runs.errors[0]
    assert not any("sk-live" in e for e in read_runs(h5).error)


@pytest.mark.parametrize("fmt, kw, reason", [
    ("numbers", {}, r"output file 'out\.txt' holds \d+ values, expected 1 \(\('y',\)\) \("),
    ("json", {}, r"output file 'out\.txt' could not be parsed as 'json': JSONDecodeError: "
                 r"Expecting value at line 1 column 1 \("),
    ("csv", {}, r"could not be parsed as 'csv': CSV output has no column\(s\) \['y'\] \("),
    ("csv", {"key": "y"}, r"could not be parsed as 'csv': CSV output has no column 'y' \("),
    ("numbers", {"parser": lambda text: float(text)},
     r"could not be parsed as .*ValueError \(its message is not shown: it may quote the file\)"),
])  # fmt: skip
def test_errors_never_quote_an_output_file(secret, fmt, kw, reason):
    # the program writes a secret into its own output file, and one line on stderr
    text = f"{SECRET},z\n1,2\n"
    prog = (
        f"import sys; open('out.txt', 'w').write({text!r}); print('solver: done', file=sys.stderr)"
    )
    sim = CommandSimulator(
        [sys.executable, "-c", prog], (), ("k",), ("y",), output="out.txt", format=fmt,
        workdir=secret.parent / "runs", **kw,
    )  # fmt: skip
    with pytest.raises(OutputError, match=reason) as info:
        sim.run([], [1.0])
    msg = str(info.value)
    assert "sk-live" not in msg and "API_KEY" not in msg
    assert "stderr tail: 'solver: done'" in msg  # the program's own stderr is quoted


def test_stdout_is_quoted_as_a_short_labelled_tail(tmp_path):
    prog = "print('A' * 5000 + ' the end')"
    sim = CommandSimulator([sys.executable, "-c", prog], (), ("k",), ("y",), workdir=tmp_path)
    with pytest.raises(OutputError, match="holds 0 values") as info:
        sim.run([], [1.0])
    msg = str(info.value)
    assert "stdout tail (last 200 characters): '…" in msg and msg.endswith("stderr tail: ''")
    assert "A" * 190 + " the end" in msg and "A" * 200 not in msg
