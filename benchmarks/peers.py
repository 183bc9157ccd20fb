"""calib on the peers' own problems: min ESS/s and the posterior beside their recorded figures.

Problems (benchmarks/problems_ball_drop.py, data in ``shared/data/ball_drop``; its
README.md holds the peers' figures, copied into :data:`PEERS`):

- ``surmise_linear``: surmise's linear ball drop; the same statistical model (priors,
  known noise, no δ), a different emulator (surmise's PCGP, calib's BasisGPEmulator,
  whose linear mean is exact on this simulator);
- ``ball_drop_1``: SEPIA's ball_drop_1, SEPIA's model as close as calib allows (its
  priors mapped to calib's parameters; its kernel-basis δ over height as an rbf held at
  the matching length-scale; the field heights, which are not simulator heights, reached
  by interpolating every run linearly in height, as SEPIA interpolates its basis);
- ``ball_drop_2``: SEPIA's ball_drop_2 the same way (``ball_drop_2(spec="sepia")``);
- ``ball_drop_1_coords`` (only when named): ball_drop_1 with the field data at their own
  heights (``Campaign(..., coords=)``, issue 16 item 2) instead of interpolated runs.

What is measured, per problem and seed (one torch thread, as the other benchmarks):

- ``cal.sample(seed=s)`` with calib's defaults (moves, walkers, budget and the stopping
  rule: it stops once every quantity has R̂ < 1.01 and bulk ESS ≥ 400), timed with
  ``time.perf_counter()`` (the MAP search included; building the problem and fitting the
  emulator are not) and ``time.process_time()``;
- the rank-normalized bulk ESS of every quantity (``post.diagnostics()``, walkers as
  chains); ``min ESS/s`` is over θ, as the peers' figures are (their τ_int is that of θ),
  and also reported over every quantity;
- θ's posterior mean and sd beside the peer's; ``match``: every mean within 0.2 of the
  peer's sd and every sd within 20 % of the peer's (the issue's criterion; meaningful
  where the model is the same, reported everywhere with ``same_model``);
- ``ratio``: calib's min ESS/s over the peer's (both ends of the peer's recorded range);
  the peers were run in another session on a machine of the same kind, not side by side
  (README: compare only ratios measured side by side), so the ratio is indicative;
- item 1 of issue 16: the cost of one log-posterior call (``log_posterior_numpy``, what
  emcee calls; best of several repeats) at 16 and 64 walkers from posterior draws, as
  ms per walker-evaluation, beside SEPIA's ~0.26 ms per evaluation.

Run: ``python benchmarks/peers.py [--problems surmise_linear,ball_drop_1,ball_drop_2]
[--seeds 3] [--quick] [--output peers.json] [--note TEXT]``; prints a table and writes
``benchmarks/results/<output>`` (an absolute ``--output`` path is used as is) after every
row. ``--quick``: one emulator optimizer start, 40 sampler steps, one seed, fewer timing
repeats (a smoke run, < 60 s; its figures mean nothing).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

# run as a script, this file's folder comes first on sys.path and benchmarks/emulators.py
# would shadow the emulators package: import the problems as benchmarks.problems_ball_drop
_HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import emulators  # noqa: E402, F401  (the package, before anything can shadow it)
from benchmarks import problems_ball_drop as pbd  # noqa: E402

SEPIA_MS_PER_EVAL = 0.26  # issue 16: SEPIA's cost of one log-posterior evaluation

#: the peers' recorded figures (shared/data/ball_drop/README.md, 2-core machine, 2026-11-27)
PEERS = {
    "surmise_linear": {
        "peer": "surmise 1.0, PCGP emulator + Metropolis-Hastings, 20,000 steps",
        "mean": {"theta0": 5.309, "theta1": 12.911},
        "sd": {"theta0": 0.570, "theta1": 0.334},
        "tau_int": {"theta0": 26.5, "theta1": 19.5},
        "min_ess_per_s": [39.0, 44.0],
        "date": "2026-11-27",
    },
    "ball_drop_1": {
        "peer": "SEPIA 1.2, Metropolis-within-Gibbs, 11,000 sweeps (1,000 burn-in)",
        "mean": {"C": 0.1211},
        "sd": {"C": 0.0077},
        "tau_int": {"C": 18.0},
        "min_ess_per_s": [7.2, 7.7],
        "date": "2026-11-27 (another 2-core machine on 2026-11-25 gave 14.8)",
    },
    "ball_drop_2": {
        "peer": "SEPIA 1.2, Metropolis-within-Gibbs, 11,000 sweeps (1,000 burn-in)",
        "mean": {"C": 0.623, "g": 10.28},
        "sd": {"C": 0.132, "g": 0.58},
        "tau_int": {"C": "14-19", "g": "14-19"},
        "min_ess_per_s": [2.35, 2.37],
        "date": "2026-11-27",
    },
}

#: what is and is not the peer's model, per problem
SAME_MODEL = {
    "surmise_linear": {
        "same_model": True,
        "differences": [
            "emulator: surmise's PCGP against calib's BasisGPEmulator (linear mean, exact on "
            "this linear simulator); the statistical model (priors, known noise, no δ) is "
            "the same"
        ],
    },
    "ball_drop_1": {"same_model": False, "differences": []},  # cal.notes fill these
    "ball_drop_2": {"same_model": False, "differences": []},
}
# ball_drop_1 with the field data at their own coordinates (Campaign(..., coords=), issue 16
# item 2): not run by default; ``--problems ball_drop_1_coords`` where calib has it
PEERS["ball_drop_1_coords"] = PEERS["ball_drop_1"]
SAME_MODEL["ball_drop_1_coords"] = SAME_MODEL["ball_drop_1"]
DEFAULT_PROBLEMS = ("surmise_linear", "ball_drop_1", "ball_drop_2")


def build(name: str, quick: bool):
    """The Calibrator of one problem (the emulator fitted with seed 0)."""
    nr = 1 if quick else None
    if name == "surmise_linear":
        return pbd.surmise_linear(n_restarts=nr)
    if name == "ball_drop_1":
        return pbd.ball_drop_1(n_restarts=nr)
    if name == "ball_drop_1_coords":
        return pbd.ball_drop_1(n_restarts=nr, field_coords=True)
    if name == "ball_drop_2":
        return pbd.ball_drop_2(spec="sepia", n_restarts=nr)
    raise ValueError(f"unknown problem {name!r}; expected one of {list(PEERS)}")


def _with_gradient(cost: dict) -> str:
    """The table's per-walker cost with the gradient, where the results have it."""
    key = "ms_per_walker_eval_with_gradient"
    if key not in cost["16"]:
        return ""
    return f" (with gradient {cost['16'][key]:.3f} / {cost['64'][key]:.3f})"


def per_walker_cost(cal, post, walkers=(16, 64), repeats: int = 5, number: int = 20) -> dict:
    """ms per walker-evaluation of one log-posterior call, at each walker count: the value
    alone (``log_posterior_numpy``, what emcee's ensemble moves call) and with its gradient
    (``batched_value_and_grad`` in the move's coordinates, what the default HMC move calls
    at every leapfrog step).

    The walkers are posterior draws (``post.flat_unconstrained()``), so the call sees the
    region the sampler visits; every count is timed in turn within each repeat, best kept.
    """
    from calib._hmc_coords import hmc_coordinates
    from calib.chees import batched_value_and_grad

    model = cal.model
    flat = post.flat_unconstrained()
    rng = np.random.default_rng(1)
    Us = {w: flat[rng.integers(0, flat.shape[0], w)] for w in walkers}
    scores = hmc_coordinates(model)
    vg = batched_value_and_grad(model, scores)
    Ys = {w: U if scores is None else scores.to_other(U) for w, U in Us.items()}
    calls = {"value": lambda w: model.log_posterior_numpy(Us[w]), "grad": lambda w: vg(Ys[w])}
    best = {(k, w): float("inf") for k in calls for w in walkers}
    for fn in calls.values():
        for w in walkers:
            fn(w)  # warm the caches before timing
    for _ in range(repeats):
        for k, w in best:
            t = time.perf_counter()
            for _ in range(number):
                calls[k](w)
            best[k, w] = min(best[k, w], (time.perf_counter() - t) / number)
    out = {}
    for w in walkers:
        ms_call, ms_grad = 1e3 * best["value", w], 1e3 * best["grad", w]
        out[str(w)] = {
            "ms_per_call": ms_call,
            "ms_per_walker_eval": ms_call / w,
            "ms_per_call_with_gradient": ms_grad,
            "ms_per_walker_eval_with_gradient": ms_grad / w,
            "sepia_ms_per_eval": SEPIA_MS_PER_EVAL,
            "ratio_sepia_over_calib": SEPIA_MS_PER_EVAL / (ms_call / w),
        }
    return out


def measure(
    name: str, cal, seed: int, n_steps: int | None, stop: bool = True, options: dict | None = None
) -> dict:
    """One sampling run of ``cal`` and its row: ESS/s, θ's posterior, the comparison.

    ``stop=False`` runs the whole budget ``n_steps`` with the stopping rule off (a
    fixed-length run, as the peers' runs are); ``options`` go to ``cal.sample``."""
    kwargs = dict(options or {})
    if n_steps is not None:
        kwargs["n_steps"] = n_steps
    if not stop:
        kwargs["autocorr_stop"] = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0, c0 = time.perf_counter(), time.process_time()
        post = cal.sample(seed=seed, progress=False, **kwargs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    diag = post.diagnostics()
    ess = {k: float(v) for k, v in diag["ess_bulk"].items()}
    peer = PEERS[name]
    thetas = list(peer["mean"])
    ess_theta = {k: ess[k] for k in thetas}
    min_theta = min(ess_theta.values())
    mean = {k: float(np.mean(post.draws(k))) for k in thetas}
    sd = {k: float(np.std(post.draws(k), ddof=1)) for k in thetas}
    z = {k: (mean[k] - peer["mean"][k]) / peer["sd"][k] for k in thetas}
    sd_ratio = {k: sd[k] / peer["sd"][k] for k in thetas}
    match = all(abs(z[k]) <= 0.2 for k in thetas) and all(0.8 <= sd_ratio[k] <= 1.2 for k in thetas)
    lo, hi = peer["min_ess_per_s"]
    ess_s = min_theta / wall
    return {
        "problem": name,
        "seed": seed,
        "mode": ("default" if stop else f"fixed {n_steps} steps")
        + "".join(f", {k}={v}" for k, v in (options or {}).items()),
        "n_dim": cal.n_dim,
        "n_walkers": int(diag["n_walkers"]),
        "n_steps": int(diag["n_steps"]),
        "moves": str(diag.get("moves", "")),
        "stopped_early": diag.get("stopped_early"),
        "converged": bool(diag["converged"]),
        "rhat_max": float(diag["rhat_max"]),
        "wall_s": wall,
        "cpu_s": cpu,
        "min_ess_theta": min_theta,
        "min_ess_theta_per_s": ess_s,
        "min_ess_theta_per_cpu_s": min_theta / cpu,
        "min_ess_all": float(min(ess.values())),
        "min_ess_all_quantity": min(ess, key=ess.get),
        "min_ess_all_per_s": float(min(ess.values())) / wall,
        "ess_bulk": ess,
        "theta_mean": mean,
        "theta_sd": sd,
        "peer_theta_mean": peer["mean"],
        "peer_theta_sd": peer["sd"],
        "mean_diff_in_peer_sd": z,
        "sd_ratio": sd_ratio,
        "posterior_matches": match,
        "peer_min_ess_per_s": [lo, hi],
        "ratio_ess_per_s": [ess_s / hi, ess_s / lo],
        "load_average_1min": os.getloadavg()[0],
        "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:200]}" for w in caught}),
        "_post": post,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_head() -> str | None:
    """The commit, with the number of uncommitted files under calib/ and emulators/."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=_HERE,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "calib", "emulators"],
            cwd=_HERE.parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    if not head:
        return None
    return head + (f" + {len(dirty)} uncommitted files in calib/, emulators/" if dirty else "")


def machine(note: str) -> dict:
    """What the figures were measured on, and under which load."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": 1,
        "numpy": np.__version__,
        "load_average_at_start": list(os.getloadavg()),
        "shared": note,
    }


def write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=float))
    os.replace(tmp, path)


def summarize(name: str, rows: list[dict], cost: dict, notes: list[str]) -> dict:
    """The problem's entry: the peer's figures, calib's median over seeds, the verdict.

    ``calib_min_ess_theta_per_s`` is per wall second (what the peers report);
    ``..._per_cpu_s`` per second of this process's CPU time, which a loaded machine
    depresses less (the peers' runs were not loaded by others).
    """
    lo, hi = PEERS[name]["min_ess_per_s"]
    same = dict(SAME_MODEL[name])
    same["differences"] = list(same["differences"]) + [
        n for n in notes if n not in same["differences"]
    ]
    out = {"peer": PEERS[name], "model": same}
    for key, field in (("", "min_ess_theta_per_s"), ("_cpu", "min_ess_theta_per_cpu_s")):
        v = np.array([r[field] for r in rows], dtype=float)
        med = float(np.median(v))
        out[f"calib_min_ess_theta_per{key}_s"] = {
            "median": med,
            "min": float(v.min()),
            "max": float(v.max()),
        }
        out[f"ratio_calib{key}_over_peer"] = {
            "median": [med / hi, med / lo],
            "min": float(v.min()) / hi,
            "max": float(v.max()) / lo,
        }
    out["posterior_matches_all_seeds"] = all(r["posterior_matches"] for r in rows)
    out["per_walker_cost"] = cost
    out["rows"] = [{k: v for k, v in r.items() if k != "_post"} for r in rows]
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--problems",
        default=",".join(DEFAULT_PROBLEMS),
        help=f"comma-separated names, of {list(PEERS)}",
    )
    ap.add_argument("--seeds", type=int, default=3, help="sampler seeds 0, 1, ...")
    ap.add_argument("--n-steps", type=int, default=None, help="budget (default calib's)")
    ap.add_argument("--quick", action="store_true", help="smoke run, < 60 s")
    ap.add_argument("--output", default="peers.json", help="name under benchmarks/results/")
    ap.add_argument(
        "--note",
        default="2-core machine shared with other engineers' test runs while measured: "
        "wall-time ESS/s depressed and noisy (see load_average per row)",
        help="how loaded the machine was (stored in the JSON)",
    )
    ap.add_argument(
        "--table", metavar="JSON", help="print the table of a results file, run nothing"
    )
    ap.add_argument(
        "--side-by-side",
        action="store_true",
        help="run the peer before calib for every seed (benchmarks/peers_side.py; needs "
        "the peers' environment, benchmarks/peers_env.sh)",
    )
    ap.add_argument("--peer-python", default=None, help="the peers' interpreter")
    ap.add_argument(
        "--fixed-steps",
        type=int,
        default=None,
        help="also run calib for this many steps with the stopping rule off, per seed",
    )
    ap.add_argument(
        "--sample-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to cal.sample (a JSON value, else a string), e.g. "
        "trajectory_criterion=chees; repeatable",
    )
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the other problems of an existing --output file",
    )
    args = ap.parse_args(argv)
    if args.table:
        doc = json.loads(Path(args.table).read_text())
        for name, p in doc["problems"].items():
            diffs = p["model"]["differences"]
            keep = {k: p[k] for k in ("side_by_side", "fixed_rows") if k in p}
            doc["problems"][name] = summarize(name, p["rows"], p["per_walker_cost"], diffs) | keep
        print(table(doc))
        return doc
    problems = [p.strip() for p in args.problems.split(",") if p.strip()]
    unknown = [p for p in problems if p not in PEERS]
    if unknown:
        ap.error(f"unknown problems {unknown}; expected some of {list(PEERS)}")
    out = Path(args.output)
    out = out if out.is_absolute() else _HERE / "results" / out
    seeds = 1 if args.quick else args.seeds
    n_steps = 40 if args.quick else args.n_steps
    timing = {"repeats": 1, "number": 3} if args.quick else {"repeats": 5, "number": 20}

    options = {}
    for item in args.sample_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--sample-option: expected KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    peer_python = None
    if args.side_by_side:
        from benchmarks import peers_side

        peer_python = args.peer_python or peers_side.DEFAULT_PYTHON
        if not peers_side.peer_available(peer_python):
            ap.error(
                f"--side-by-side: no peers' environment at {peer_python} "
                "(build it with benchmarks/peers_env.sh)"
            )
    torch.set_num_threads(1)
    doc = {
        "benchmark": "peers",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": _git_head(),
        "quick": bool(args.quick),
        "machine": machine(args.note),
        "call": "cal.sample(seed=s)"
        if n_steps is None
        else f"cal.sample(seed=s, n_steps={n_steps})",
        "ess": "rank-normalized bulk ESS (post.diagnostics(), walkers as chains); min ESS/s "
        "over θ, wall time of sample() incl. the MAP search, emulator fit excluded",
        "match_rule": "every θ mean within 0.2 peer sd and every sd within 20 % of the peer's",
        "peer_note": "peer figures from shared/data/ball_drop/README.md, measured in another "
        "session on a 2-core machine of this kind, not side by side: ratios are indicative",
        "sample_options": options,
        "side_by_side": bool(peer_python),
        "fixed_steps": args.fixed_steps,
        "problems": {},
    }
    if args.merge and out.is_file():
        doc["problems"] = json.loads(out.read_text()).get("problems", {})
    write(out, doc)
    print(
        f"torch {torch.__version__}, 1 thread, {os.cpu_count()} CPUs ({_cpu_model()}), "
        f"load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    for name in problems:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the emulator fit's ConvergenceWarnings
            cal = build(name, args.quick)
        build_s = time.perf_counter() - t
        rows, fixed, peers = [], [], []
        for seed in range(seeds):
            if peer_python:
                peer = peers_side.run_peer(
                    name.removesuffix("_coords"), seed, python=peer_python, steps=n_steps
                )
                peers.append({k: v for k, v in peer.items() if k != "chain"})
                print(_fmt_peer(name, seed, peer), flush=True)
            row = measure(name, cal, seed, n_steps, options=options)
            row["build_s"] = build_s
            rows.append(row)
            print(_fmt(row), flush=True)
            if args.fixed_steps:
                row = measure(name, cal, seed, args.fixed_steps, stop=False, options=options)
                fixed.append(row)
                print(_fmt(row), flush=True)
        cost = per_walker_cost(cal, rows[-1]["_post"], **timing)
        doc["problems"][name] = summarize(name, rows, cost, getattr(cal, "notes", []))
        if peers:
            doc["problems"][name]["side_by_side"] = side_by_side(rows, fixed, peers)
        if fixed:
            doc["problems"][name]["fixed_rows"] = [
                {k: v for k, v in r.items() if k != "_post"} for r in fixed
            ]
        write(out, doc)
    doc["machine"]["load_average_at_end"] = list(os.getloadavg())
    write(out, doc)
    print()
    print(table(doc))
    print(f"written {out}")
    return doc


def side_by_side(rows: list[dict], fixed: list[dict], peers: list[dict]) -> dict:
    """Ratios of calib's min ESS/s over θ to the peer's, seed by seed, the peer run just
    before calib on the same machine (wall and CPU seconds), with their medians."""
    out: dict = {"peer_rows": peers}
    for label, runs in (("default", rows), ("fixed", fixed)):
        if not runs:
            continue
        for key, field, pfield in (
            ("wall", "min_ess_theta_per_s", "min_ess_per_s"),
            ("cpu", "min_ess_theta_per_cpu_s", "min_ess_per_cpu_s"),
        ):
            r = [c[field] / p[pfield] for c, p in zip(runs, peers)]
            out[f"ratio_{label}_{key}"] = {"per_seed": r, "median": float(np.median(r))}
    return out


def _fmt_peer(name: str, seed: int, p: dict) -> str:
    th = ", ".join(
        f"{k} {p['theta_mean'][k]:.4g} ± {p['theta_sd'][k]:.3g}" for k in p["theta_mean"]
    )
    return (
        f"{name:<15} seed {seed} PEER {p.get('peer', '')[:20]:<20} wall {p['wall_s']:6.1f} s "
        f"minESS(θ) {p['min_ess']:7.0f} ESS/s {p['min_ess_per_s']:7.2f} "
        f"/cpu {p['min_ess_per_cpu_s']:7.2f} | {th}"
    )


def _fmt(r: dict) -> str:
    th = ", ".join(
        f"{k} {r['theta_mean'][k]:.4g} ± {r['theta_sd'][k]:.3g}" for k in r["theta_mean"]
    )
    return (
        f"{r['problem']:<15} seed {r['seed']} steps {r['n_steps']:>5} wall {r['wall_s']:6.1f} s "
        f"minESS(θ) {r['min_ess_theta']:7.0f} ESS/s {r['min_ess_theta_per_s']:7.2f} "
        f"/cpu {r['min_ess_theta_per_cpu_s']:7.2f} R̂ {r['rhat_max']:.3f} [{r['mode']}] | {th} "
        f"| load {r['load_average_1min']:.1f}"
    )


def _pair(rows: list[dict], a: str, b: str) -> str:
    """``median a (median b)`` over rows, or a dash."""
    if not rows:
        return "–"
    return f"{np.median([r[a] for r in rows]):.1f} ({np.median([r[b] for r in rows]):.1f})"


def _ratio(s: dict, label: str) -> str:
    """The median side-by-side ratio, wall (CPU), of the default or fixed-length runs."""
    if f"ratio_{label}_wall" not in s:
        return "–"
    return f"{s[f'ratio_{label}_wall']['median']:.1f}× ({s[f'ratio_{label}_cpu']['median']:.1f}×)"


def table(doc: dict) -> str:
    """The comparison table (markdown), one row per problem and θ."""
    lines = [
        "| problem | θ | calib mean ± sd | peer mean ± sd | Δmean/sd_peer | sd ratio | "
        "calib min ESS/s wall (median, range) | per CPU s | peer min ESS/s | ratio wall | "
        "ratio CPU | same model | matches | ms/walker-eval at 16 / 64 (SEPIA 0.26) |",
        "|" + " --- |" * 14,
    ]
    for name, p in doc["problems"].items():
        rows = p["rows"]
        e = p["calib_min_ess_theta_per_s"]
        lo, hi = p["peer"]["min_ess_per_s"]
        ratio = p["ratio_calib_over_peer"]
        ec = p["calib_min_ess_theta_per_cpu_s"]
        rc = p["ratio_calib_cpu_over_peer"]
        cost = p["per_walker_cost"]
        for k in p["peer"]["mean"]:
            m = float(np.mean([r["theta_mean"][k] for r in rows]))
            s = float(np.mean([r["theta_sd"][k] for r in rows]))
            pm, ps = p["peer"]["mean"][k], p["peer"]["sd"][k]
            lines.append(
                f"| {name} | {k} | {m:.4g} ± {s:.3g} | {pm:.4g} ± {ps:.3g} | "
                f"{(m - pm) / ps:+.2f} | {s / ps:.2f} | "
                f"{e['median']:.1f} ({e['min']:.1f}–{e['max']:.1f}) | {ec['median']:.1f} | "
                f"{lo:g}–{hi:g} | {ratio['median'][0]:.1f}–{ratio['median'][1]:.1f}× | "
                f"{rc['median'][0]:.1f}–{rc['median'][1]:.1f}× | "
                f"{'yes' if p['model']['same_model'] else 'approx.'} | "
                f"{'yes' if p['posterior_matches_all_seeds'] else 'no'} | "
                f"{cost['16']['ms_per_walker_eval']:.3f} / {cost['64']['ms_per_walker_eval']:.3f}"
                f"{_with_gradient(cost)} |"
            )
    sbs = {n: p for n, p in doc["problems"].items() if "side_by_side" in p}
    if sbs:
        lines += [
            "",
            "Side by side (the peer run just before calib, same machine; median over seeds):",
            "",
            "| problem | seeds | peer min ESS/s, wall (CPU) | calib default, wall (CPU) | "
            "ratio default, wall (CPU) | calib fixed-length, wall (CPU) | "
            "ratio fixed, wall (CPU) |",
            "|" + " --- |" * 7,
        ]
        for name, p in sbs.items():
            s, peers = p["side_by_side"], p["side_by_side"]["peer_rows"]

            fixed = p.get("fixed_rows", [])
            lines.append(
                f"| {name} | {len(peers)} | {_pair(peers, 'min_ess_per_s', 'min_ess_per_cpu_s')} | "
                f"{_pair(p['rows'], 'min_ess_theta_per_s', 'min_ess_theta_per_cpu_s')} | "
                f"{_ratio(s, 'default')} | "
                f"{_pair(fixed, 'min_ess_theta_per_s', 'min_ess_theta_per_cpu_s')} | "
                f"{_ratio(s, 'fixed')} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
