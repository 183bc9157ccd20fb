"""An external executable as a simulator: input-file template in, parsed numbers out.

Each run gets a fresh working directory. The input file is rendered there from a template
with named placeholders for the control inputs and parameters, the command is started as
an argument list (never through a shell), and the outputs are parsed from stdout or from
a file the program writes. A run that exits non-zero, outlives its timeout or writes output
that cannot be parsed raises, with the tail of the program's stderr in the message.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import signal
import string
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from calib.interfaces import SimulatorError

__all__ = ["CommandSimulator", "CommandTimeout", "OutputError"]

FORMATS = ("numbers", "csv", "json")
KEEP = ("failed", "all", "none")
#: Placeholders available besides the input and parameter names.
RESERVED = ("input_file", "workdir")

#: Characters of the program's stdout quoted in the message of an unparsable output.
EXCERPT = 200

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eEdD][-+]?\d+)?|[-+]?(?:nan|inf)", re.I)


class CommandTimeout(SimulatorError, TimeoutError):
    """The command ran past its timeout and was killed (with its process group)."""


class OutputError(SimulatorError):
    """The command's output could not be parsed into the simulator's outputs."""

    #: how calib's run engine records a run that raises this
    calib_status = "invalid"


def _names(value: Sequence[str] | str | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    names = tuple(value)
    for n in names:
        if not isinstance(n, str) or not n.isidentifier():
            raise ValueError(
                f"CommandSimulator: {what} must be identifiers (usable as placeholders), got {n!r}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"CommandSimulator: {what} has duplicates: {names}")
    return names


def _placeholders(text: str, allowed: tuple[str, ...], where: str) -> None:
    """Check every placeholder of ``text`` now, so that rendering cannot fail in a run.

    A placeholder must name one of ``allowed`` (no attribute or index access), its format
    spec must be literal (``{k:{x}}`` would take its spec from another value: 2.7 rendered
    with the spec ``"1.0"`` is ``"3"``) and must format the value it will be given: a
    float for inputs and parameters, a path for :data:`RESERVED` names (``{k:d}`` fails on
    a float).
    """
    try:
        fields = [
            (f, spec, conv) for _, f, spec, conv in string.Formatter().parse(text) if f is not None
        ]
    except ValueError as exc:
        raise ValueError(
            f"CommandSimulator: {where} is not a valid template ({exc}); write literal "
            f"braces as '{{{{' and '}}}}'"
        ) from None
    for f, spec, conv in fields:
        if f not in allowed:
            raise ValueError(
                f"CommandSimulator: {where} names unknown placeholder {{{f}}}; expected one "
                f"of {allowed}"
            )
        shown = "{" + f + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
        if "{" in spec or "}" in spec:
            raise ValueError(
                f"CommandSimulator: {where} has a nested format spec in {shown}; a spec must "
                f"be literal, such as {{{f}:.6g}}"
            )
        if conv not in (None, "r", "s", "a"):
            raise ValueError(
                f"CommandSimulator: {where} has an unknown conversion !{conv} in {shown}; "
                f"expected !r, !s or !a"
            )
        sample: Any = "run-dir" if f in RESERVED else 2.5
        if conv is not None:
            sample = {"r": repr, "s": str, "a": ascii}[conv](sample)
        try:
            format(sample, spec)
        except (ValueError, TypeError) as exc:
            kind = "a path" if f in RESERVED else "a float value"
            hint = (
                f"{{{f}}}" if f in RESERVED else f"{{{f}:.6g}} (or {{{f}:.0f}} for a whole number)"
            )
            raise ValueError(
                f"CommandSimulator: {where} cannot render {shown}: the spec {spec!r} does not "
                f"format {kind} ({exc}); use e.g. {hint}"
            ) from None


def _inside(name: str, what: str) -> str:
    """``name`` as a path relative to the run directory that cannot leave it."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"CommandSimulator: {what} must be a non-empty path, got {name!r}")
    path = Path(name)
    if path.is_absolute() or name.startswith("~") or ".." in path.parts:
        raise ValueError(
            f"CommandSimulator: {what} must be a path inside the run directory (relative, "
            f"without '..'), got {name!r}"
        )
    return name


def _resolve(program: str) -> str:
    if os.sep in program or (os.altsep and os.altsep in program):
        path = Path(program).expanduser().resolve()
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise FileNotFoundError(
            f"CommandSimulator: command[0] {program!r} is not an executable file "
            f"(resolved to {str(path)!r})"
        )
    found = shutil.which(program)
    if found is None:
        raise FileNotFoundError(f"CommandSimulator: command[0] {program!r} was not found on PATH")
    return found


def _tail(data: bytes | str, n: int) -> str:
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    text = text.strip()
    return text if len(text) <= n else "…" + text[-n:]


class CommandSimulator:
    """Wrap an executable as a :class:`calib.interfaces.Simulator`.

    Parameters
    ----------
    command : sequence of str
        The program and its arguments, e.g. ``["./solver", "{input_file}"]``. Arguments
        may hold placeholders: ``{input_file}``, ``{workdir}`` and the input and parameter
        names. A relative program path is resolved against the current directory now,
        a bare name on ``PATH``.
    input_names, parameter_names, output_names : sequence of str
        Names of the control inputs, parameters and outputs.
    template : str, optional
        Text of the input file, with ``{name}`` or ``{name:.6e}`` placeholders (Python
        format syntax; literal braces are written ``{{`` and ``}}``). Every placeholder is
        checked now: a known name, a literal spec (no ``{k:{x}}``) that formats a float
        (``{k:d}`` does not: write ``{k:.0f}``).
    template_file : path, optional
        Read the template from this file instead.
    input_file : str
        Name of the rendered input file in the run's directory.
    output : str
        ``"stdout"``, or the path of the file the program writes, relative to its run
        directory: absolute paths, ``..`` and symbolic links that lead out of the run
        directory are refused. An error message quotes the tail of the program's stdout
        and stderr, never the text of an output file.
    format : {"numbers", "csv", "json"}
        ``"numbers"``: every number in the text, in order (there must be ``m``).
        ``"csv"``: a header row; the values of the last row in the ``output_names``
        columns, or, with ``key``, the ``m`` values of column ``key``.
        ``"json"``: an object; the values of the ``output_names`` keys, or, with ``key``
        (dotted path such as ``"results.deflection"``), a list of ``m`` values.
    key : str, optional
        See ``format``.
    parser : callable, optional
        ``parser(text) -> array of m numbers``; replaces ``format``.
    timeout : float, optional
        Seconds before the program (and its process group) is killed; ``run_design``'s
        ``timeout`` overrides it.
    workdir : path, optional
        Where run directories are made (default: the system's temporary directory).
    keep : {"failed", "all", "none"}
        Which run directories to keep; a kept failure's path is in the error message.
    env : mapping, optional
        Environment variables added to the current environment for the program.
    output_coords : array of shape (m,) or (m, r), optional
        Coordinates of the outputs.
    stderr_tail : int
        Characters of stderr kept in the error message of a failed run.

    Raises
    ------
    ValueError, TypeError, FileNotFoundError
        At construction, for an unknown placeholder or a format spec it cannot render, a
        program that does not exist, an output path outside the run directory or a bad
        option: nothing is run before the configuration is known to be complete.

    Examples
    --------
    >>> sim = CommandSimulator(["./beam_fem", "{input_file}"], ("load",), ("E",),
    ...                        ("tip",), template="P = {load}\\nE = {E:.8e}\\n",
    ...                        output="result.json", format="json", timeout=600)
    """

    def __init__(
        self,
        command: Sequence[str],
        input_names: Sequence[str] = (),
        parameter_names: Sequence[str] = (),
        output_names: Sequence[str] = ("y",),
        *,
        template: str | None = None,
        template_file: str | os.PathLike | None = None,
        input_file: str = "input.txt",
        output: str = "stdout",
        format: str = "numbers",
        key: str | None = None,
        parser: Callable[[str], Any] | None = None,
        timeout: float | None = None,
        workdir: str | os.PathLike | None = None,
        keep: str = "failed",
        env: Mapping[str, str] | None = None,
        output_coords: np.ndarray | None = None,
        stderr_tail: int = 2000,
    ):
        if isinstance(command, (str, bytes)) or not isinstance(command, Sequence):
            raise TypeError(
                f"CommandSimulator: command must be a list of arguments such as "
                f"['./solver', '{{input_file}}'] (it is never run through a shell), "
                f"got {command!r}"
            )
        if not command or not all(isinstance(a, str) for a in command):
            raise TypeError(
                f"CommandSimulator: command must be a non-empty list of strings, got {command!r}"
            )
        self.input_names = _names(input_names, "input_names")
        self.parameter_names = _names(parameter_names, "parameter_names")
        self.output_names = tuple(output_names)
        if not self.output_names or not all(isinstance(n, str) and n for n in output_names):
            raise ValueError(
                f"CommandSimulator: output_names must be non-empty strings, got {output_names!r}"
            )
        clash = set(self.input_names + self.parameter_names) & set(RESERVED)
        if clash:
            raise ValueError(
                f"CommandSimulator: {sorted(clash)} are reserved placeholders; rename the "
                f"input or parameter"
            )
        allowed = self.input_names + self.parameter_names + RESERVED
        for k, arg in enumerate(command[1:], start=1):
            _placeholders(arg, allowed, f"command[{k}] {arg!r}")
        if template is not None and template_file is not None:
            raise ValueError("CommandSimulator: give template or template_file, not both")
        if template_file is not None:
            template = Path(template_file).read_text()
        if template is not None:
            if not isinstance(template, str):
                raise TypeError(
                    f"CommandSimulator: template must be a str, got {type(template).__name__}"
                )
            _placeholders(template, allowed, "template")
        self.template = template
        if (
            not isinstance(input_file, str)
            or not input_file
            or Path(input_file).name != input_file
            or input_file == ".."
        ):
            raise ValueError(
                f"CommandSimulator: input_file must be a plain file name, got {input_file!r}"
            )
        self.input_file = input_file
        if not isinstance(output, str) or not output:
            raise ValueError(
                f"CommandSimulator: output must be 'stdout' or a file name, got {output!r}"
            )
        # read only inside the run directory: an output path elsewhere would read (and
        # quote into error messages) whatever file it names
        self.output = output if output == "stdout" else _inside(output, "output")
        if parser is None and format not in FORMATS:
            raise ValueError(f"CommandSimulator: format must be one of {FORMATS}, got {format!r}")
        if parser is not None and not callable(parser):
            raise TypeError(f"CommandSimulator: parser must be callable, got {parser!r}")
        self.format, self.key, self.parser = format, key, parser
        if timeout is not None and not (
            isinstance(timeout, (int, float)) and timeout > 0 and math.isfinite(timeout)
        ):
            raise ValueError(f"CommandSimulator: timeout must be seconds > 0, got {timeout!r}")
        self.timeout = None if timeout is None else float(timeout)
        if keep not in KEEP:
            raise ValueError(f"CommandSimulator: keep must be one of {KEEP}, got {keep!r}")
        self.keep = keep
        self.workdir = None if workdir is None else str(Path(workdir).resolve())
        self.env = dict(env) if env is not None else None
        self.stderr_tail = int(stderr_tail)
        self.command = list(command)
        self.executable = _resolve(command[0])
        if output_coords is not None:
            c = np.asarray(output_coords, dtype=float)
            c = c.reshape(-1, 1) if c.ndim == 1 else c
            if c.ndim != 2 or c.shape[0] != len(self.output_names):
                raise ValueError(
                    f"CommandSimulator: output_coords must have shape "
                    f"({len(self.output_names)}, r), got {np.shape(output_coords)}"
                )
            output_coords = c
        self.output_coords = output_coords

    @property
    def identity(self) -> str:
        """The command line as configured (for archives and reports)."""
        return " ".join([self.executable, *self.command[1:]])

    # ------------------------------------------------------------------ parsing
    def parse(self, text: str) -> np.ndarray:
        """Outputs ``(m,)`` from the program's output text.

        Raises
        ------
        OutputError
            When the text does not hold the ``m`` outputs in the configured format; the
            message may quote the parser's complaint about ``text``.
        """
        return self._parse(text, "output", quote=True)

    def _parse(self, text: str, what: str, quote: bool) -> np.ndarray:
        """:meth:`parse`, where ``quote=False`` keeps every part of ``text`` out of the
        error message (an output file: only the program's stdout and stderr are quoted)."""
        m = len(self.output_names)
        try:
            if self.parser is not None:
                values = self.parser(text)
            elif self.format == "numbers":
                values = [
                    float(t.replace("d", "e").replace("D", "e")) for t in _NUMBER.findall(text)
                ]
            elif self.format == "csv":
                values = self._parse_csv(text, quote)
            else:
                values = self._parse_json(text)
            y = np.asarray(values, dtype=float).ravel()
        except Exception as exc:  # noqa: BLE001 - any parser failure is an output error
            raise OutputError(
                f"{what} could not be parsed as {self.parser or self.format!r}: "
                f"{self._reason(exc, quote)}"
            ) from None
        if y.size != m:
            raise OutputError(f"{what} holds {y.size} values, expected {m} ({self.output_names})")
        return y

    def _reason(self, exc: Exception, quote: bool) -> str:
        """Why parsing failed, without quoting the text unless ``quote``."""
        if isinstance(exc, json.JSONDecodeError):
            return f"JSONDecodeError: {exc.msg} at line {exc.lineno} column {exc.colno}"
        if self.parser is None and isinstance(exc, OutputError):
            return str(exc)  # the built-in formats' own messages quote only when asked
        if self.parser is None and isinstance(exc, KeyError):
            return f"no key {exc.args[0]!r}"  # one of ours: an output name or a part of key
        if quote:
            return f"{type(exc).__name__}: {_tail(str(exc), EXCERPT)}"
        return f"{type(exc).__name__} (its message is not shown: it may quote the file)"

    def _parse_csv(self, text: str, quote: bool = True) -> list[float]:
        rows = [r for r in csv.reader(io.StringIO(text)) if r]
        if len(rows) < 2:
            raise OutputError(f"CSV output needs a header and a data row, got {len(rows)} rows")
        header = [h.strip() for h in rows[0]]
        columns = f"; columns: {_tail(str(header), EXCERPT)}" if quote else ""
        if self.key is not None:
            if self.key not in header:
                raise OutputError(f"CSV output has no column {self.key!r}{columns}")
            j = header.index(self.key)
            return [float(r[j]) for r in rows[1:]]
        missing = [n for n in self.output_names if n not in header]
        if missing:
            raise OutputError(f"CSV output has no column(s) {missing}{columns}")
        last = rows[-1]
        return [float(last[header.index(n)]) for n in self.output_names]

    def _parse_json(self, text: str) -> list[float]:
        obj = json.loads(text)
        if self.key is not None:
            for part in self.key.split("."):
                obj = obj[part]
            return list(obj)
        return [obj[n] for n in self.output_names]

    # ------------------------------------------------------------------ running
    def _values(self, x: np.ndarray, theta: np.ndarray) -> dict[str, float]:
        names = self.input_names + self.parameter_names
        x, theta = np.asarray(x, dtype=float), np.asarray(theta, dtype=float)
        if x.size != len(self.input_names) or theta.size != len(self.parameter_names):
            raise ValueError(
                f"CommandSimulator: expected x of {len(self.input_names)} value(s) "
                f"{self.input_names} and theta of {len(self.parameter_names)} "
                f"{self.parameter_names}, got shapes {x.shape} and {theta.shape}"
            )
        # Python floats: '{E}' renders the shortest repr that round-trips exactly
        values = dict(zip(names, [float(v) for v in np.concatenate([x.ravel(), theta.ravel()])]))
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            # rendered, they would read 'nan', 'inf' or '-inf': text a program may take
            # for a number, a word or (with the minus) an option
            raise ValueError(
                f"CommandSimulator: {', '.join(f'{k}={v}' for k, v in bad.items())} is not "
                f"finite; a command is run with finite values only (nothing was run)"
            )
        return values

    def run(self, x: np.ndarray, theta: np.ndarray, timeout: float | None = None) -> np.ndarray:
        """One run in a fresh directory: ``x (p,)``, ``theta (q,)`` -> ``(m,)``.

        Parameters
        ----------
        timeout : float, optional
            Overrides the configured timeout for this run.

        Raises
        ------
        ValueError
            A value of ``x`` or ``theta`` is NaN or inf, or their sizes are wrong (nothing
            is run).
        CommandTimeout
            The program ran past the timeout (it was killed).
        SimulatorError
            The program exited non-zero or could not be started, or its output file is a
            symbolic link leading out of the run directory.
        OutputError
            Its output could not be parsed.
        """
        values = self._values(x, theta)
        limit = timeout if timeout is not None else self.timeout
        rundir = Path(tempfile.mkdtemp(prefix="calib-run-", dir=self.workdir))
        fields = {**values, "input_file": self.input_file, "workdir": str(rundir)}
        ok = False
        try:
            if self.template is not None:
                (rundir / self.input_file).write_text(self.template.format_map(fields))
            argv = [self.executable] + [a.format_map(fields) for a in self.command[1:]]
            env = None if self.env is None else {**os.environ, **self.env}
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=rundir,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    # its own process group, so a timeout kills whatever it spawned as well
                    start_new_session=True,
                )
            except OSError as exc:
                raise SimulatorError(f"command {argv[0]!r} could not be started: {exc}") from None
            try:
                out, err = proc.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                out, err = proc.communicate()
                raise CommandTimeout(
                    f"command {Path(argv[0]).name} ran past timeout={limit} s and was killed"
                    f"{self._where(rundir)}; stderr tail: {_tail(err, self.stderr_tail)!r}"
                ) from None
            finally:
                if proc.poll() is None:  # interrupted (e.g. by the run engine): no orphans
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()
            if proc.returncode != 0:
                how = (
                    f"was killed by signal {-proc.returncode}"
                    if proc.returncode < 0
                    else f"exited with status {proc.returncode}"
                )
                raise SimulatorError(
                    f"command {Path(argv[0]).name} {how}{self._where(rundir)}; stderr tail: "
                    f"{_tail(err, self.stderr_tail)!r}"
                )
            stderr = f"stderr tail: {_tail(err, self.stderr_tail)!r}"
            if self.output == "stdout":
                text = out.decode(errors="replace")
                try:
                    y = self._parse(text, "output", quote=True)
                except OutputError as exc:
                    raise OutputError(
                        f"{exc}{self._where(rundir)}; stdout tail (last {EXCERPT} "
                        f"characters): {_tail(text, EXCERPT)!r}; {stderr}"
                    ) from None
            else:
                path = rundir / self.output
                name = Path(argv[0]).name
                # the output must be the program's own file: a symbolic link leading out of
                # the run directory is not followed (nor is any of its text quoted)
                if not path.resolve().is_relative_to(rundir.resolve()):
                    raise SimulatorError(
                        f"command {name}: output {self.output!r} leads outside the run "
                        f"directory (a symbolic link); it was not read{self._where(rundir)}"
                    )
                if not path.is_file():
                    raise OutputError(
                        f"command {name} wrote no output file {self.output!r}"
                        f"{self._where(rundir)}; {stderr}"
                    )
                text = path.read_text(errors="replace")
                try:
                    y = self._parse(text, f"output file {self.output!r}", quote=False)
                except OutputError as exc:
                    raise OutputError(f"{exc}{self._where(rundir)}; {stderr}") from None
            ok = True
            return y
        finally:
            if self.keep == "none" or (ok and self.keep == "failed"):
                shutil.rmtree(rundir, ignore_errors=True)

    def _where(self, rundir: Path) -> str:
        return f" (run directory kept: {rundir})" if self.keep != "none" else ""

    def __repr__(self) -> str:
        return (
            f"CommandSimulator({self.command!r}, inputs={self.input_names}, "
            f"parameters={self.parameter_names}, outputs={self.output_names})"
        )
