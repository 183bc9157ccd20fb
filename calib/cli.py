"""The ``calib`` command: run a study file, read a study archive without Python.

``calib run STUDY.toml`` (the whole pipeline, docs/study.md), ``calib summary FILE``,
``calib info FILE``, ``calib predict FILE --x CSV``, ``calib plot FILE --out DIR``,
``calib report FILE -o report.html`` and ``calib plugins`` (docs/cli.md).
Exit status: 0 ok, 1 error (one line on stderr; the traceback only with ``--debug``),
2 usage, 3 the posterior has not converged (``run``, ``summary``).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_NOT_CONVERGED = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="calib",
        description="Bayesian calibration of computer simulators: run a study file, read "
        "a study archive.",
        epilog="Exit status: 0 ok, 1 error, 2 usage, 3 not converged (run, summary).",
    )
    ap.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    r = sub.add_parser(
        "run", help="run a study file: design, runs, emulator, calibration, archive (resumes)"
    )
    r.add_argument("study", type=Path, help="the study file (TOML, docs/study.md)")
    r.add_argument("--check", action="store_true", help="check the study file, run nothing")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bars or stage lines")
    s = sub.add_parser("summary", help="the posterior table and the convergence verdict")
    s.add_argument("archive", type=Path)
    s.add_argument("--json", action="store_true", help="the table as JSON on stdout")
    s.add_argument(
        "--level", type=float, default=0.9, help="central probability of the interval (0.9)"
    )
    i = sub.add_parser("info", help="what the archive holds (no simulator needed)")
    i.add_argument("archive", type=Path)
    p = sub.add_parser("predict", help="predictions of reality at control inputs from a CSV")
    p.add_argument("archive", type=Path)
    p.add_argument("--x", required=True, type=Path, help="CSV of control inputs, a header row")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--campaign", help="predict reality in this campaign")
    who.add_argument("--new-campaign", action="store_true", help="in a campaign not yet seen")
    p.add_argument("-o", "--output", type=Path, help="write a CSV here (default: stdout)")
    p.add_argument("--draws", type=int, default=500, help="posterior draws to use (500)")
    f = sub.add_parser("plot", help="the figures of a study archive, as PNG files")
    f.add_argument("archive", type=Path)
    f.add_argument("--out", required=True, type=Path, help="folder for the figures (made)")
    h = sub.add_parser("report", help="one self-contained HTML report of a study archive")
    h.add_argument("archive", type=Path)
    h.add_argument(
        "-o", "--output", type=Path, help="the HTML file (default: beside the archive, .html)"
    )
    h.add_argument("--title", help="the report's heading")
    sub.add_parser("plugins", help="the simulators and emulators installed as plug-ins")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = _parser().parse_args(argv)  # exits with 2 on a usage error
    try:
        with warnings.catch_warnings():
            # the loaded posterior repeats the sampler's warnings; the verdict is printed
            warnings.simplefilter("ignore")
            return _COMMANDS[args.command](args)
    except Exception as exc:  # noqa: BLE001 - one clear line, the traceback on request
        if args.debug:
            raise
        print(f"calib {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _run(args) -> int:
    from .study import read_study, report, run_study, shown

    study = read_study(args.study)  # every key checked before anything runs
    if args.check:
        mode = "emulator" if study.emulator else "direct"
        print(f"{args.study}: ok ({mode} mode; archive '{shown(study.archive)}')")
        return EXIT_OK
    if args.quiet:
        post = run_study(study, progress=False)
    else:
        post = run_study(study, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(report(study, post))
    return EXIT_OK if post.converged else EXIT_NOT_CONVERGED


def _verdict(post) -> str:
    d = post.diagnostics()
    state = "converged" if d["converged"] else "NOT converged"
    return (
        f"{state}: R̂ max {d['rhat_max']:.4f}, bulk ESS min {d['ess_min']:.0f} "
        f"(targets R̂ < {d['target_rhat']}, ESS ≥ {d['target_ess']:.0f}); "
        f"{d['n_steps']} steps × {d['n_walkers']} walkers, {d['burn']} burn-in"
    )


def _summary(args) -> int:
    import calib

    post = calib.load(args.archive)
    if args.json:
        table = post.summary(level=args.level)
        out = {"summary": table.to_dict(), "notes": table.notes, "converged": bool(post.converged)}
        print(json.dumps(out, indent=1, default=_plain))
    else:
        print(post.summary(level=args.level))
        print(_verdict(post))
    return EXIT_OK if post.converged else EXIT_NOT_CONVERGED


def _info(args) -> int:
    from .archive import describe

    d = describe(args.archive)
    meta = d["meta"]
    config = json.loads(meta.get("configuration", "{}") or "{}")
    lines = [
        f"archive    {args.archive}",
        f"format     {meta.get('format')} (schema {meta.get('schema_version')}, written by "
        f"calib {meta.get('calib_version')}, updated {meta.get('updated')})",
    ]
    if config:
        params = ", ".join(
            p["name"] + (f" = {p['value']}" if p.get("value") is not None else f" ({p['pooling']})")
            for p in config.get("parameters", [])
        )
        lines += [
            f"mode       {config.get('mode')}",
            f"parameters {params}",
            f"campaigns  {', '.join(config.get('campaigns', []))}",
            f"δ          {config.get('discrepancy', {}).get('mode', 'none')}; noise "
            f"{config.get('noise')}",
        ]
        if config.get("study"):  # built from a study file (calib run)
            lines.append(f"study      {config['study'].get('file')}")
    if "runs" in d:
        runs = d["runs"]
        counts = ", ".join(f"{n} {s}" for s, n in runs.items())
        lines.append(f"runs       {sum(runs.values())}: {counts}")
    if "emulator" in d:
        lines.append(f"emulator   {d['emulator']}")
    if "chain" in d:
        n, w, k = d["chain"]["shape"]
        moves = d["chain"]["info"].get("moves", "?")
        lines.append(f"chain      {n} steps × {w} walkers × {k} coordinates, moves {moves}")
    if d["posterior"]:
        lines.append("posterior  the summary table (calib summary)")
    print("\n".join(lines))
    return EXIT_OK


def _predict(args) -> int:
    import calib

    post = calib.load(args.archive)
    names = list(post.calibrator.input_names)
    X = _read_csv(args.x, names)
    if args.new_campaign:
        pred = post.predict_new_campaign(X, n_draws=args.draws)
    else:
        pred = post.predict(X, campaign=args.campaign, n_draws=args.draws)
    cols = names[:]
    out = [X]
    for j, o in enumerate(post.calibrator.output_names):
        cols += [f"{o}.mean", f"{o}.sd", f"{o}.lower", f"{o}.upper"]
        out += [pred.mean[:, j : j + 1], pred.sd[:, j : j + 1]]
        out += [pred.lower[:, j : j + 1], pred.upper[:, j : j + 1]]
    table = np.hstack(out)
    text = ",".join(cols) + "\n" + "\n".join(",".join(f"{v:.10g}" for v in row) for row in table)
    if args.output is None:
        print(text)
    else:
        args.output.write_text(text + "\n")
    return EXIT_OK


def _read_csv(path: Path, names: list[str]) -> np.ndarray:
    """Control inputs from a CSV with a header row naming them (any order)."""
    if not path.is_file():
        raise FileNotFoundError(f"--x: file '{path}' not found")
    with path.open() as fh:
        header = [h.strip() for h in fh.readline().strip().split(",")]
    missing = [n for n in names if n not in header]
    if missing:
        raise ValueError(
            f"--x: '{path}' has columns {header}, expected {names} (missing {missing})"
        )
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    if data.shape[1] != len(header):
        raise ValueError(
            f"--x: '{path}' rows have {data.shape[1]} values, the header {len(header)}"
        )
    return data[:, [header.index(n) for n in names]]


def _plot(args) -> int:
    import calib

    from .interfaces import is_emulator
    from .plotting import save_all

    post = calib.load(args.archive)
    model = post.calibrator.model_object
    args.out.mkdir(parents=True, exist_ok=True)
    for path in save_all(post, args.out, emulator=model if is_emulator(model) else None):
        print(path)
    return EXIT_OK


def _report(args) -> int:
    import calib

    from .report import write_report

    post = calib.load(args.archive)
    out = args.output if args.output is not None else args.archive.with_suffix(".html")
    print(write_report(post, out, title=args.title))
    return EXIT_OK


def _plugins(args) -> int:
    from . import plugins

    for group in ("calib.simulators", "calib.emulators"):
        found = plugins.list(group)
        print(f"{group}:")
        for name, value in found.items():
            print(f"  {name:<20} {value}")
        if not found:
            print("  (none)")
    return EXIT_OK


def _plain(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    raise TypeError(type(obj).__name__)


_COMMANDS = {
    "run": _run,
    "summary": _summary,
    "info": _info,
    "predict": _predict,
    "plot": _plot,
    "report": _report,
    "plugins": _plugins,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
