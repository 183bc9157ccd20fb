"""Checks of a study file's sections (calib/study.py): each names the offending key's
path in a one-line :class:`StudyError`, and builds what its section describes."""

from __future__ import annotations

import importlib
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import plugins
from .config import _parameter, _prior
from .design import design_bounds
from .likelihood import NOISE_MODES
from .parameters import Parameter

__all__ = ["StudyError", "check_table", "typed"]

_DESIGN_KINDS = ("latin_hypercube", "sobol", "grid")
SAMPLER_KEYS: dict[str, type] = {
    "n_walkers": int,
    "n_steps": int,
    "seed": int,
    "moves": str,
    "burn": int,
    "warmup": int,
    "n_starts": int,
    "check_every": int,
    "min_steps": int,
    "max_leapfrog": int,
    "checkpoint_every": int,
    "threads": int,
    "target_accept": float,
    "trajectory_criterion": str,
    "target_ess": float,
    "target_rhat": float,
    "time_budget": float,
    "autocorr_stop": bool,
    "interweave": bool,
}
_TYPE_NAMES = {dict: "table", list: "array", str: "string", int: "integer", float: "float"}


class StudyError(ValueError):
    """A study file that cannot run; the message is one line that starts with the path of
    the offending key (``campaigns[1].data: file 'b.csv' not found``)."""


def toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def typed(value: Any, where: str, kind: type, what: str) -> Any:
    """``value`` if it is a ``kind`` (a TOML boolean is not an integer), else a StudyError."""
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise StudyError(f"{where}: expected {what}, got {toml_type(value)} {value!r}")


def check_table(
    value: Any, where: str, allowed: Sequence[str], required: Sequence[str] = ()
) -> dict[str, Any]:
    """``value`` as a table whose keys are all ``allowed`` and hold ``required``."""
    typed(value, where or "study", dict, "a table")
    for key in value:
        if key not in allowed:
            path = f"{where}.{key}" if where else key
            raise StudyError(f"{path}: unknown key; expected one of {list(allowed)}")
    for key in required:
        if key not in value:
            path = f"{where}.{key}" if where else key
            raise StudyError(f"{path}: missing (required)")
    return value


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def real(v: Any) -> bool:
    """A finite TOML number (not a boolean)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def runs_settings(value: Any) -> dict[str, Any]:
    """The ``[runs]`` table: the run engine's executor, timeout and retries."""
    d = check_table(value, "runs", ("executor", "timeout", "retries"))
    out: dict[str, Any] = {"executor": None, "timeout": None, "retries": 0}
    if "executor" in d:
        ex = typed(d["executor"], "runs.executor", str, "a string")
        if ex not in ("processes", "serial") and not ex.startswith("tcp://"):
            raise StudyError(
                f"runs.executor: expected 'processes', 'serial' or a Dask scheduler address "
                f"'tcp://host:port', got {ex!r}"
            )
        out["executor"] = None if ex == "processes" else ex
    if "timeout" in d:
        t = d["timeout"]
        if not (real(t) and t > 0):
            raise StudyError(f"runs.timeout: expected seconds > 0, got {t!r}")
        out["timeout"] = float(t)
    if "retries" in d:
        r = typed(d["retries"], "runs.retries", int, "an integer")
        if r < 0:
            raise StudyError(f"runs.retries: expected an integer >= 0, got {r}")
        out["retries"] = r
    return out


def sampler_settings(value: Any) -> dict[str, Any]:
    """The ``[sampler]`` table: ``Calibrator.sample``'s settings (seed 0 by default, so
    that a study resumes)."""
    d = check_table(value, "sampler", tuple(SAMPLER_KEYS))
    out: dict[str, Any] = {"seed": 0}
    for key, v in d.items():
        kind = SAMPLER_KEYS[key]
        where = f"sampler.{key}"
        if kind is int:
            v = typed(v, where, int, "an integer")
            if v < (0 if key in ("burn", "warmup", "seed") else 1):
                raise StudyError(f"{where}: expected a non-negative integer, got {v}")
        elif kind is float:
            if not real(v) or v <= 0:
                raise StudyError(f"{where}: expected a number > 0, got {v!r}")
            v = float(v)
        elif kind is bool:
            v = typed(v, where, bool, "true or false")
        else:
            v = typed(v, where, str, "a string")
            if v not in ("hmc", "de"):
                raise StudyError(f"{where}: expected 'hmc' or 'de', got {v!r}")
        out[key] = v
    return out


# ---------------------------------------------------------------------- simulator
def simulator_from(value: Any, base: Path) -> Any:
    """The simulator of the ``[simulator]`` table: ``plugin = "beam"`` (an entry point of
    ``calib.simulators``), ``function = "module:callable"`` (a FunctionSimulator; the
    study's folder is on the import path) or ``command = [...]`` (a CommandSimulator),
    each built with ``options``."""
    d = check_table(value, "simulator", ("plugin", "function", "command", "options"))
    given = [k for k in ("plugin", "function", "command") if k in d]
    if len(given) != 1:
        raise StudyError(
            "simulator: expected exactly one of plugin = 'name', function = "
            f"'module:callable' or command = ['program', ...], got {given or 'none'}"
        )
    options = dict(typed(d.get("options", {}), "simulator.options", dict, "a table"))
    kind = given[0]
    if kind == "plugin":
        name = typed(d["plugin"], "simulator.plugin", str, "a string")
        installed = plugins.list("calib.simulators")
        if name not in installed:
            raise StudyError(
                f"simulator.plugin: no plug-in {name!r} in calib.simulators; installed: "
                f"{sorted(installed)}"
            )
        cls, args = plugins.load("calib.simulators", name), ()
    elif kind == "function":
        spec = typed(d["function"], "simulator.function", str, "a string 'module:callable'")
        cls, args = plugins.load("calib.simulators", "function"), (_import(spec, base),)
    else:
        cmd = typed(d["command"], "simulator.command", list, "an array of strings")
        if not cmd or not all(isinstance(a, str) for a in cmd):
            raise StudyError(f"simulator.command: expected an array of strings, got {cmd!r}")
        # a program given as a path, and the files named in options, are relative to the
        # study file's folder, as its data files are
        if "/" in cmd[0] and not Path(cmd[0]).is_absolute():
            cmd = [str(base / cmd[0]), *cmd[1:]]
        for key in ("template_file", "workdir"):
            if key in options:
                v = typed(options[key], f"simulator.options.{key}", str, "a string")
                options[key] = str(base / v)
                if key == "template_file" and not Path(options[key]).is_file():
                    raise StudyError(f"simulator.options.template_file: file '{v}' not found")
        cls, args = plugins.load("calib.simulators", "command"), (cmd,)
    try:
        return cls(*args, **options)
    except (ValueError, TypeError, OSError) as exc:
        raise StudyError(
            f"simulator.options: {cls.__name__} refuses them: {one_line(exc)}"
        ) from None


def _import(spec: str, base: Path) -> Any:
    where = "simulator.function"
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise StudyError(f"{where}: expected 'module:callable', got {spec!r}")
    # a module beside the study file imports (also in the design's worker processes,
    # which inherit the path)
    if str(base) not in sys.path:
        sys.path.insert(0, str(base))
    try:
        obj = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - whatever the import raises, one line
        raise StudyError(
            f"{where}: cannot import module {module!r}: {type(exc).__name__}: {one_line(exc)}"
        ) from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise StudyError(f"{where}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise StudyError(f"{where}: {spec!r} is not callable")
    return obj


# ---------------------------------------------------------------------- sections
def parameters_from(value: Any, sim: Any) -> list[Parameter]:
    items = typed(value, "parameters", list, "an array of tables ([[parameters]])")
    if not items:
        raise StudyError("parameters: expected at least one [[parameters]] table, got none")
    params = []
    for i, d in enumerate(items):
        try:
            params.append(_parameter(d, i))
        except (ValueError, TypeError) as exc:
            raise StudyError(one_line(exc)) from None
    names = [p.name for p in params]
    wanted = list(sim.parameter_names)
    for i, n in enumerate(names):
        if n not in wanted:
            raise StudyError(
                f"parameters[{i}].name: {n!r} is not a parameter of the simulator, whose "
                f"parameters are {wanted}"
            )
        if names.index(n) != i:
            raise StudyError(f"parameters[{i}].name: {n!r} is given twice")
    missing = [n for n in wanted if n not in names]
    if missing:
        raise StudyError(
            f"parameters: the simulator's parameter(s) {missing} have no [[parameters]] "
            f"table (give bounds, a prior, or a fixed value)"
        )
    return params


def noise_from(value: Any) -> tuple[str, Any]:
    """``noise = "known"`` or the table ``{model, prior}`` (the prior of σ for the
    ``shared`` and ``per_campaign`` models)."""
    if isinstance(value, str):
        d, where = {"model": value}, "noise"
    else:
        d, where = check_table(value, "noise", ("model", "prior"), ("model",)), "noise.model"
    if d["model"] not in NOISE_MODES:
        raise StudyError(f"{where}: expected one of {list(NOISE_MODES)}, got {d['model']!r}")
    return d["model"], _checked(_prior, d.get("prior"), "noise.prior")


def hyperpriors_from(value: Any) -> dict[str, dict[str, Any]]:
    """``[hyperpriors.E]`` tables ``{mean, scale}`` (``null`` too for spike-and-slab pooling;
    and ``[hyperpriors.noise]``)."""
    out = {}
    for name, hp in typed(value, "hyperpriors", dict, "a table").items():
        hp = check_table(hp, f"hyperpriors.{name}", ("mean", "scale", "null"))
        out[name] = {k: _checked(_prior, v, f"hyperpriors.{name}.{k}") for k, v in hp.items()}
    return out


def _checked(check: Any, value: Any, where: str) -> Any:
    try:
        return check(value, where)
    except (ValueError, TypeError) as exc:
        raise StudyError(one_line(exc)) from None


def emulator_from(value: Any) -> tuple[type, dict[str, Any]]:
    d = check_table(value, "emulator", ("plugin", "options"), required=("plugin",))
    name = typed(d["plugin"], "emulator.plugin", str, "a string")
    installed = plugins.list("calib.emulators")
    if name not in installed:
        raise StudyError(
            f"emulator.plugin: no plug-in {name!r} in calib.emulators; installed: "
            f"{sorted(installed)}"
        )
    options = typed(d.get("options", {}), "emulator.options", dict, "a table")
    cls = plugins.load("calib.emulators", name)
    try:
        cls(**options)  # the options are checked now, not after the runs
    except (ValueError, TypeError) as exc:
        raise StudyError(
            f"emulator.options: {cls.__name__} refuses them: {one_line(exc)}"
        ) from None
    return cls, options


def design_from(value: Any, model: Any, params: list[Parameter]) -> dict[str, Any]:
    keys = ("kind", "n", "seed", "x_bounds", "prior_quantiles")
    d = check_table(value, "design", keys, required=("n",))
    kind = typed(d.get("kind", "latin_hypercube"), "design.kind", str, "a string")
    if kind not in _DESIGN_KINDS:
        raise StudyError(f"design.kind: expected one of {list(_DESIGN_KINDS)}, got {kind!r}")
    n = typed(d["n"], "design.n", int, "an integer")
    if n < 1:
        raise StudyError(f"design.n: expected an integer >= 1, got {n}")
    seed = typed(d.get("seed", 0), "design.seed", int, "an integer")
    xb = check_table(d.get("x_bounds", {}), "design.x_bounds", tuple(model.input_names))
    bounds = {}
    for name, b in xb.items():
        where = f"design.x_bounds.{name}"
        pair = typed(b, where, list, "[lower, upper]")
        if len(pair) != 2 or not all(real(v) for v in pair):
            raise StudyError(f"{where}: expected [lower, upper] as two numbers, got {b!r}")
        bounds[name] = (float(pair[0]), float(pair[1]))
    missing = [n for n in model.input_names if n not in bounds]
    if missing:
        raise StudyError(
            f"design.x_bounds: bounds missing for control input(s) {missing} "
            f"(x_bounds = {{ {missing[0]} = [lower, upper], ... }})"
        )
    q = d.get("prior_quantiles", [0.005, 0.995])
    if not (isinstance(q, list) and len(q) == 2 and all(real(v) for v in q)):
        raise StudyError(f"design.prior_quantiles: expected [lower, upper], got {q!r}")
    try:
        design_bounds(model, params, bounds, tuple(q))
    except (ValueError, TypeError) as exc:
        raise StudyError(f"design: {one_line(exc)}") from None
    return {"kind": kind, "n": n, "seed": seed, "x_bounds": bounds, "prior_quantiles": tuple(q)}


def coords(model: Any) -> list | None:
    c = getattr(model, "output_coords", None)
    return None if c is None else [list(map(float, row)) for row in c]


def outputs_from(
    value: Any, base: Path, path: Path, params: list[Parameter], cal: Any
) -> tuple[Path, dict[str, float]]:
    d = check_table(value, "outputs", ("archive", "truth"))
    archive = typed(d.get("archive", path.stem + ".h5"), "outputs.archive", str, "a string")
    target = (base / archive).resolve()
    if not target.parent.is_dir():
        raise StudyError(f"outputs.archive: folder '{target.parent}' not found")
    truth = typed(d.get("truth", {}), "outputs.truth", dict, "a table")
    names = {p.name for p in params} | {"discrepancy", "noise"}
    campaigns = [c.name for c in cal.campaigns]
    for key, v in truth.items():
        where = f"outputs.truth.{key}" if key.isidentifier() else f'outputs.truth."{key}"'
        stem = re.split(r"[.\[]", key, maxsplit=1)[0]
        inside = re.search(r"\[(.*)\]$", key)
        if stem not in names or (
            inside is not None and stem != "discrepancy" and inside.group(1) not in campaigns
        ):
            raise StudyError(
                f"{where}: not a quantity of this study (a parameter of {sorted(names)}, "
                f"with [campaign] for one of {campaigns}, or .mean, .scale, .typical)"
            )
        if not real(v):
            raise StudyError(f"{where}: expected a number, got {v!r}")
    return target, {k: float(v) for k, v in truth.items()}
