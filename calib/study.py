"""The study file: one TOML file that describes a calibration from the simulator to the
archive, and the pipeline that runs it (``calib run study.toml``; docs/study.md).

:func:`read_study` parses the file and checks all of it before anything runs: an unknown
key, a value of the wrong type, a missing data file or a setting the objects refuse is a
:class:`StudyError` whose message is one line that starts with the key's path
(``campaigns[1].data: file 'b.csv' not found``). The calibration is built by
:func:`calib.config.from_config`, so a study file and a script make the same objects.
:func:`run_study` then runs design → runs → emulator → calibration → archive, resuming
whatever the archive already holds: finished runs are not run again
(:func:`calib.run_design` with ``archive=``), an emulator the archive stores is restored
rather than fitted again, and a chain is continued (``Calibrator.sample(resume=True)``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _study_check as sections
from ._study_check import StudyError, check_table, one_line, typed
from ._study_data import FixedParameters, read_campaign
from .config import from_config
from .parameters import Parameter

__all__ = ["Study", "StudyError", "read_study", "run_study", "report"]

_SECTIONS = (
    "simulator",
    "parameters",
    "hyperpriors",
    "correlated",
    "design",
    "runs",
    "emulator",
    "campaigns",
    "discrepancy",
    "noise",
    "sampler",
    "outputs",
)


@dataclass
class Study:
    """A checked study file and the objects it describes.

    Attributes
    ----------
    path : Path
        The study file; relative paths in it are relative to its folder.
    content : dict
        The parsed TOML (recorded in the archive's configuration under ``study``).
    simulator : Simulator
        The simulator as the file builds it.
    model : Simulator
        What the design runs and the emulator stands for: ``simulator``, with the fixed
        parameters held at their values in emulator mode.
    calibrator : Calibrator
        Built in direct mode (the simulator in the likelihood): this one is sampled;
        in emulator mode it is the check that the specification holds, and the
        calibrator sampled is rebuilt around the fitted emulator.
    config : dict
        The configuration given to :func:`calib.config.from_config`.
    design, runs, sampler : dict
        The settings of those sections (``design`` is None in direct mode).
    emulator : tuple (class, dict) or None
        The emulator plug-in and its options; None in direct mode.
    archive : Path
    truth : dict
        Known values printed beside the posterior (``outputs.truth``).
    """

    path: Path
    content: dict[str, Any]
    simulator: Any
    model: Any
    calibrator: Any
    config: dict[str, Any]
    design: dict[str, Any] | None
    runs: dict[str, Any]
    emulator: tuple[type, dict[str, Any]] | None
    sampler: dict[str, Any]
    archive: Path
    truth: dict[str, float]


# ---------------------------------------------------------------------- reading
def read_study(path: str | Path) -> Study:
    """Parse and check a study file; build the objects it describes.

    Nothing is run: no simulator run, no emulator fit, no file written.

    Parameters
    ----------
    path : str or Path
        The TOML file (schema: docs/study.md).

    Returns
    -------
    Study

    Raises
    ------
    StudyError
        One line starting with the path of the offending key: the file cannot be read or
        is not TOML, an unknown key, a wrong type, a missing file, or a value that the
        simulator, emulator, parameter, campaign or calibrator refuses.
    """
    try:
        import tomllib  # Python >= 3.11
    except ImportError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise StudyError(
                "study: reading TOML needs Python >= 3.11 (tomllib) or the package tomli"
            ) from None
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study: file '{path}' not found")
    try:
        content = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise StudyError(f"study: '{path}' is not valid TOML: {exc}") from None
    check_table(content, "", _SECTIONS, required=("simulator", "parameters", "campaigns"))
    base = path.resolve().parent
    sim = sections.simulator_from(content["simulator"], base)
    params = sections.parameters_from(content["parameters"], sim)
    emulated = "emulator" in content
    fixed = {p.name: p.value for p in params if p.value is not None}
    # an emulator is fitted over the inputs and the parameters that vary: a fixed one (a
    # clamp's stiffness at inf) is held at its value in every run, not emulated
    model = FixedParameters(sim, fixed) if emulated and fixed else sim
    used = [p for p in params if not (emulated and p.value is not None)]
    hyperpriors = sections.hyperpriors_from(content.get("hyperpriors", {}))
    noise, noise_prior = sections.noise_from(content.get("noise", "per_campaign"))
    items = typed(content["campaigns"], "campaigns", list, "an array of tables ([[campaigns]])")
    campaigns = [read_campaign(c, f"campaigns[{i}]", base, sim) for i, c in enumerate(items)]
    config = {
        "parameters": [p.to_dict() for p in used],
        "discrepancy": content.get("discrepancy", "none"),
        "noise": noise,
        "hyperpriors": hyperpriors,
        "noise_prior": noise_prior,
        "study": {"file": str(path), "content": content},
        # correlated pooling: checked by from_config (it reads the archive's records too)
        **({"correlated": content["correlated"]} if "correlated" in content else {}),
    }
    runs = sections.runs_settings(content.get("runs", {}))
    # direct mode: [runs] timeout limits each simulator run inside the likelihood too
    timeout = None if emulated else runs["timeout"]
    try:  # the Calibrator's own checks: campaigns against the simulator, pooling, δ, noise
        cal = from_config(config, model, campaigns=campaigns, timeout=timeout)
    except (ValueError, TypeError) as exc:
        raise StudyError(one_line(exc)) from None
    design = emulator = None
    if emulated:
        emulator = sections.emulator_from(content["emulator"])
        if "design" not in content:
            raise StudyError("design: missing (an emulator is fitted on the runs of a design)")
        design = sections.design_from(content["design"], model, used)
        config.update(
            mode="emulator",
            input_names=list(model.input_names),
            output_names=list(model.output_names),
            output_coords=sections.coords(model),
        )
    elif "design" in content:
        raise StudyError(
            "design: a design is run to fit an emulator, and the study has no [emulator] "
            "(direct mode); add [emulator] or remove [design]"
        )
    sampler = sections.sampler_settings(content.get("sampler", {}))
    outputs = content.get("outputs", {})
    archive, truth = sections.outputs_from(outputs, base, path, used, cal)
    return Study(
        path, content, sim, model, cal, config, design, runs, emulator, sampler, archive, truth
    )


# ---------------------------------------------------------------------- running
def run_study(
    study: Study, progress: bool | None = None, log: Callable[[str], None] | None = None
) -> Any:
    """Run a study: design → runs → emulator → calibration → archive, resuming.

    Parameters
    ----------
    study : Study
        From :func:`read_study`.
    progress : bool, optional
        Progress bars (runs, sampling); default when stderr is a terminal.
    log : callable, optional
        Called with one line per stage (what was run, what was taken from the archive).

    Returns
    -------
    Posterior
        Its ``info["archive"]`` is the archive's path.
    """
    say = log or (lambda line: None)
    cal = study.calibrator
    archive = study.archive
    if study.emulator is not None:
        emulator = _stored_emulator(archive)
        runs = _run_design(study, progress, say)
        if emulator is None:
            cls, options = study.emulator
            t = time.perf_counter()
            fit = cls(**options).fit
            # a plug-in's fit need not take progress= (the Emulator contract is fit(X, Y))
            kw = {"progress": progress} if "progress" in inspect.signature(fit).parameters else {}
            emulator = fit(runs.inputs, runs.outputs, **kw)
            took = time.perf_counter() - t
            say(f"emulator: {cls.__name__} fitted on {runs.n_ok} runs in {took:.1f} s")
        else:
            say(f"emulator: {type(emulator).__name__} restored from the archive")
        cal = from_config(study.config, emulator, campaigns=cal.campaigns)
    options = dict(study.sampler)
    if "n_walkers" not in options and archive.is_file():
        # a chain is continued with its own walkers (the default might differ)
        from .archive import describe

        chain = describe(archive).get("chain")
        if chain is not None:
            options["n_walkers"] = chain["shape"][1]
    say(
        f"sampling: {cal.n_dim} coordinates, {len(cal.campaigns)} campaigns "
        f"({'emulator' if study.emulator else 'direct'} mode) into '{shown(archive)}'"
    )
    t = time.perf_counter()
    post = cal.sample(archive=archive, resume=True, progress=progress, **options)
    took = time.perf_counter() - t
    say(f"sampling: {post.chain.shape[0]} steps × {post.n_walkers} walkers in {took:.1f} s")
    return post


def _stored_emulator(archive: Path) -> Any:
    """The emulator of the archive's chain (a resumed chain goes on with the emulator it
    was sampled with), or None where the archive holds no chain yet."""
    from .archive import describe

    if not archive.is_file() or "chain" not in describe(archive):
        return None
    from .config import load

    return load(archive).calibrator.model_object


def _run_design(study: Study, progress: bool | None, say: Callable[[str], None]) -> Any:
    from . import design as designs
    from .runner import run_design
    from .runset import RunSet

    d = study.design
    make = getattr(designs, d["kind"])
    params = [Parameter.from_dict(p) for p in study.config["parameters"]]
    kw = {"x_bounds": d["x_bounds"], "seed": d["seed"], "prior_quantiles": d["prior_quantiles"]}
    design = make(study.model, params, n=d["n"], **kw)
    before = 0
    if study.archive.is_file():
        from .archive import describe

        before = describe(study.archive).get("runs", {}).get("ok", 0)
    t = time.perf_counter()
    runs: RunSet = run_design(
        study.model,
        design,
        executor=study.runs["executor"],
        archive=study.archive,
        timeout=study.runs["timeout"],
        retries=study.runs["retries"],
        progress=progress,
    )
    counts = ", ".join(f"{n} {s}" for s, n in runs.counts.items() if n)
    say(
        f"design: {len(design)} runs ({d['kind']}, seed {d['seed']}); {before} found in the "
        f"archive; now {counts} ({time.perf_counter() - t:.1f} s)"
    )
    return runs


# ---------------------------------------------------------------------- report
def shown(path: Path) -> str:
    """``path`` relative to the working folder where it lies inside it (shorter to read)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def report(study: Study, post: Any) -> str:
    """The posterior table (with the known values of ``outputs.truth`` beside it), the
    convergence verdict and where the archive is."""
    rows = post.summary().rows
    w = max(len("quantity"), *(len(r["name"]) for r in rows))
    cols = ["mean", "sd", "q5", "q95", "rhat", "ess"]
    truth = study.truth
    head = f"{'quantity':<{w}}  " + "  ".join(f"{c:>10}" for c in cols)
    if truth:
        head += f"  {'true':>10}  in 90%"
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = [f"{r[c]:>10.4g}" for c in cols[:4]]
        cells += [f"{r['rhat']:>10.4f}", f"{r['ess']:>10.0f}"]
        line = f"{r['name']:<{w}}  " + "  ".join(cells)
        if r["name"] in truth:
            v = truth[r["name"]]
            line += f"  {v:>10.4g}  {'yes' if r['q5'] <= v <= r['q95'] else 'NO':>6}"
        lines.append(line)
    d = post.diagnostics()
    state = "converged" if d["converged"] else "NOT converged"
    lines.append(
        f"{state}: R̂ max {d['rhat_max']:.4f}, bulk ESS min {d['ess_min']:.0f} (targets R̂ < "
        f"{d['target_rhat']}, ESS ≥ {d['target_ess']:.0f}); {d['n_steps']} steps × "
        f"{d['n_walkers']} walkers"
    )
    if not d["converged"]:
        lines.append(
            "the sampler's budget ended first: raise sampler.n_steps and run again (the "
            "chain is continued from the archive)"
        )
    lines.append(f"archive: {shown(Path(post.info.get('archive', study.archive)))}")
    return "\n".join(lines)
