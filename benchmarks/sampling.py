"""Sampling efficiency: minimum bulk ESS per second of calib's default sampler against the
DE-mix reference, on the problems of benchmarks/problems.py.

For every problem and repeat two runs are made with the same seed:

- ``default``: ``cal.sample(seed=s)``, calib's defaults (moves, walkers, budget, stopping
  rule), whatever they are at the time of the run;
- ``reference``: emcee's ``DEMove`` 0.8 + ``StretchMove`` 0.2 at
  ``n_walkers = max(32, 2·d + 2)`` (rounded up to even) for a fixed step budget per problem
  (``autocorr_stop=False``, the first half burn-in).

Each ``sample()`` call is timed with ``time.perf_counter()`` (wall time, the MAP search
included; building the problem, e.g. fitting beam3's emulator, is not) and with
``time.process_time()`` (CPU time of the process: on a shared machine it varies less with
the load than wall time; ``ratio_ess_per_cpu_s`` uses it). On the kept draws
of every reported quantity (``Posterior._compute_quantities()``: θ per campaign, population
mean and scale, δ hyperparameters, noise sds) the rank-normalized bulk ESS and R̂ of
Vehtari et al. (2021) are those of the verdict (``post.diagnostics()``, walkers taken as
chains). Rows report the minimum ESS over quantities,
min ESS per second, the maximum R̂, and for the default the log-posterior gradient
evaluations when ``post.info`` counts them; ``ratio`` is default / reference min ESS per
second of the same seed.

Run: ``python benchmarks/sampling.py [--problems quickstart,beam3] [--repeats 1]
[--seed 0] [--quick] [--reference-steps N] [--variants hmc,de128] [--output F]
[--note TEXT]``; prints a table and writes benchmarks/results/sampling.json after
every row (a killed run keeps its rows). One torch thread, as the other benchmarks.

Reference: Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. & Bürkner, P.-C. (2021).
Rank-normalization, folding, and localization: an improved R̂ for assessing convergence
of MCMC. Bayesian Analysis 16, 667–718.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

# run as a script, this file's folder comes first on sys.path and benchmarks/emulators.py
# would shadow the emulators package: import the problems as benchmarks.problems instead
_HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import emcee  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.problems import PROBLEMS  # noqa: E402

# steps of the reference run (the first half burn-in). quickstart: 10000 steps (at 6000 the
# DE mix had R̂ 1.09; 10000 cost ~35 s on a loaded 2-core machine). hierarchy28 and beam3
# do not converge with the DE mix in any affordable budget (the hyper-scales mix over
# thousands of steps: hierarchy28 R̂ 1.85 after 20000 steps; beam3 R̂ 1.4 after 6000; their
# min ESS, ~70, hardly grows with the budget): 6000 steps, and their reference figures are
# rough (see the rows' max_rhat). Override with --reference-steps.
REFERENCE_STEPS = {"quickstart": 10000, "hierarchy28": 6000, "beam3": 6000}
QUICK_STEPS = 300
OUT = _HERE / "results" / "sampling.json"


def reference_moves() -> list:
    return [(emcee.moves.DEMove(), 0.8), (emcee.moves.StretchMove(), 0.2)]


def reference_walkers(d: int) -> int:
    n = max(32, 2 * d + 2)
    return n + n % 2


def _info_int(info: dict, *keys: str) -> int | None:
    for k in keys:
        v = info.get(k)
        if isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v):
            return int(v)
    return None


#: further samplers to compare with ``--variants``: calib's defaults with these options
VARIANTS = {
    "hmc": {"moves": "hmc"},  # the gradient move (interweaved where there are pooled groups)
    "hmc-plain": {"moves": "hmc", "interweave": False},  # in the model's coordinates only
    "hmc64": {"moves": "hmc", "n_walkers": 64},
    "hmc128": {"moves": "hmc", "n_walkers": 128},
    "de": {"moves": "de"},  # the DE mix with calib's stopping rule and budget
    "de128": {"n_walkers": 128},  # the DE mix with many walkers (a call costs nearly the same)
    "de256": {"n_walkers": 256},
}


def measure(cal, which: str, seed: int, n_steps: int | None) -> dict:
    """Run one sampler on ``cal`` and return its row."""
    d = cal.n_dim
    if which == "default":
        kwargs = {} if n_steps is None else {"n_steps": n_steps}
    elif which in VARIANTS:
        kwargs = dict(VARIANTS[which])
        if n_steps is not None:
            kwargs["n_steps"] = n_steps
    else:
        kwargs = {
            "n_walkers": reference_walkers(d),
            "n_steps": n_steps,
            "moves": reference_moves(),
            "autocorr_stop": False,
        }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0, c0 = time.perf_counter(), time.process_time()
        post = cal.sample(seed=seed, **kwargs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    q = post._compute_quantities()
    names = list(q)
    n_kept, n_walkers = next(iter(q.values())).shape
    # the numbers of the verdict itself (computed once per posterior and cached)
    diag = post.diagnostics()
    ess = np.array([diag["ess_bulk"][n] for n in names])
    rhat = np.array([diag["rhat"][n] for n in names])
    info = dict(getattr(post, "info", {}) or {})
    i_ess, i_rhat = int(np.nanargmin(ess)), int(np.nanargmax(rhat))
    row = {
        "sampler": which,
        "seed": seed,
        "n_dim": d,
        "n_walkers": int(n_walkers),
        "n_steps": int(post.chain.shape[0]),
        "n_kept": int(n_kept),
        "n_steps_budget": info.get("n_steps_budget", n_steps),
        "stopped_early": info.get("stopped_early"),
        "moves": str(info.get("moves", ""))
        if which != "reference"
        else "DEMove 0.8 + StretchMove 0.2 (reference)",
        "wall_s": wall,
        "min_ess_bulk": float(ess[i_ess]),
        "min_ess_quantity": names[i_ess],
        "min_ess_per_s": float(ess[i_ess]) / wall,
        "cpu_s": cpu,
        "min_ess_per_cpu_s": float(ess[i_ess]) / cpu,
        "max_rhat": float(rhat[i_rhat]),
        "max_rhat_quantity": names[i_rhat],
        "acceptance_mean": float(np.mean(post.acceptance)),
        "ess_bulk": dict(zip(names, map(float, ess))),
        "ess_source": "calib.diagnostics via Posterior.diagnostics()",
        "load_average_1min": os.getloadavg()[0],
    }
    n_grad = _info_int(info, "n_grad_evals", "n_gradient_evals", "grad_evals")
    if n_grad is not None:
        row["n_grad_evals"] = n_grad
        row["min_ess_per_grad_eval"] = float(ess[i_ess]) / n_grad if n_grad > 0 else None
    extra = {k: v for k, v in info.items() if k not in ("map",) and _jsonable(v)}
    row["info"] = extra
    row["warnings"] = sorted({f"{w.category.__name__}: {str(w.message)[:200]}" for w in caught})
    truth = getattr(cal, "truth", None)
    if truth:
        row["posterior_mean_vs_truth"] = {
            k: [float(q[k].mean()), float(v)] for k, v in truth.items() if k in q
        }
    return row


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def _git_head() -> str | None:
    """The checkout's commit, with ``+dirty`` when calib/ has uncommitted changes."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=_HERE,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "calib"],
            cwd=_HERE.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------------- output
def write(meta: dict, rows: list[dict], comparisons: list[dict]) -> None:
    OUT.parent.mkdir(exist_ok=True)
    doc = dict(meta, rows=rows, comparisons=comparisons)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=float))
    os.replace(tmp, OUT)


def _fmt(row: dict, problem: str) -> str:
    grad = row.get("n_grad_evals")
    return (
        f"{problem:<12} {row['sampler']:<9} {row['seed']:>4} {row['n_dim']:>4} "
        f"{row['n_walkers']:>7} {row['n_steps']:>6} {row['wall_s']:>8.1f} {row['cpu_s']:>7.1f} "
        f"{row['min_ess_bulk']:>9.0f} {row['min_ess_per_s']:>9.2f} {row['max_rhat']:>7.3f} "
        f"{row['acceptance_mean']:>5.2f} {'' if grad is None else grad:>9}  "
        f"{row['min_ess_quantity']}"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", default=",".join(PROBLEMS), help="comma-separated names")
    ap.add_argument("--repeats", type=int, default=1, help="seeds seed, seed+1, ...")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--reference-steps",
        type=int,
        default=None,
        help=f"step budget of the reference on every problem (default {REFERENCE_STEPS})",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_STEPS} steps for both samplers (the default too)",
    )
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. the commit)")
    ap.add_argument(
        "--variants",
        default="",
        help=f"comma-separated extra samplers, each compared with the reference: {list(VARIANTS)}",
    )
    ap.add_argument("--output", default="sampling.json", help="file name under benchmarks/results/")
    ap.add_argument(
        "--parameterization",
        choices=("problem", "centred", "noncentred"),
        default="problem",
        help="partial pooling as each problem sets it (the README quickstart centred, the "
        "others non-centred, the default), or all centred / all non-centred",
    )
    args = ap.parse_args(argv)
    problems = [p.strip() for p in args.problems.split(",") if p.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        ap.error(f"unknown variants {bad}; expected some of {list(VARIANTS)}")
    global OUT
    OUT = _HERE / "results" / args.output
    ref_steps = {
        p: QUICK_STEPS if args.quick else args.reference_steps or REFERENCE_STEPS[p]
        for p in PROBLEMS
    }
    unknown = [p for p in problems if p not in PROBLEMS]
    if unknown:
        ap.error(f"unknown problems {unknown}; expected some of {list(PROBLEMS)}")

    torch.set_num_threads(1)
    meta = {
        "benchmark": "sampling",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "emcee": emcee.__version__,
        "numpy": np.__version__,
        "torch_threads": 1,
        "quick": bool(args.quick),
        "git": _git_head(),
        "user_note": args.note,
        "parameterization": args.parameterization,
        "reference": "DEMove 0.8 + StretchMove 0.2, n_walkers max(32, 2d+2) even, "
        "autocorr_stop=False, half burn-in",
        "reference_steps": {p: ref_steps[p] for p in problems},
        "default_call": f"cal.sample(seed=s, n_steps={QUICK_STEPS})"
        if args.quick
        else "cal.sample(seed=s)",
        "note": "wall (and process CPU) time of sample() incl. the MAP search; min over quantities of the "
        "rank-normalized bulk ESS (walkers as chains); shared machine: load_average_1min "
        "per row; compare ratio (same run), not seconds across machines",
    }
    rows: list[dict] = []
    comparisons: list[dict] = []
    write(meta, rows, comparisons)
    print(
        f"torch {torch.__version__}, emcee {emcee.__version__}, 1 torch thread, "
        f"{platform.machine()}, load {os.getloadavg()[0]:.1f}"
    )
    hdr = (
        f"{'problem':<12} {'sampler':<9} {'seed':>4} {'dim':>4} {'walkers':>7} {'steps':>6} "
        f"{'wall s':>8} {'CPU s':>7} {'min ESS':>9} {'ESS/s':>9} {'R̂ max':>7} {'acc':>5} {'grad ev':>9}  "
        f"min-ESS quantity"
    )
    print(hdr, flush=True)
    for pname in problems:
        for r in range(args.repeats):
            seed = args.seed + r
            t = time.perf_counter()
            kw = {}
            if args.parameterization != "problem":
                kw["centered"] = args.parameterization == "centred"
            cal = PROBLEMS[pname](seed=seed, **kw)
            build = time.perf_counter() - t
            pair = {}
            for which in ("default", "reference", *variants):
                if which == "reference":
                    steps = ref_steps[pname]
                else:
                    steps = QUICK_STEPS if args.quick else None
                row = measure(cal, which, seed, steps)
                row = {"problem": pname, "build_s": build, **row}
                rows.append(row)
                pair[which] = row
                write(meta, rows, comparisons)
                print(_fmt(row, pname), flush=True)
            ref = pair["reference"]
            for which in ("default", *variants):
                d = pair[which]
                comp = {
                    "problem": pname,
                    "seed": seed,
                    "sampler": which,
                    "default_min_ess_per_s": d["min_ess_per_s"],
                    "reference_min_ess_per_s": ref["min_ess_per_s"],
                    "ratio_ess_per_s": d["min_ess_per_s"] / ref["min_ess_per_s"]
                    if ref["min_ess_per_s"] > 0
                    else None,
                    "ratio_ess_per_cpu_s": d["min_ess_per_cpu_s"] / ref["min_ess_per_cpu_s"]
                    if ref["min_ess_per_cpu_s"] > 0
                    else None,
                    "ratio_min_ess": d["min_ess_bulk"] / ref["min_ess_bulk"]
                    if ref["min_ess_bulk"] > 0
                    else None,
                }
                comparisons.append(comp)
            write(meta, rows, comparisons)
    print()
    print(
        f"{'problem':<12} {'seed':>4} {'default ESS/s':>14} {'reference ESS/s':>16} "
        f"{'ratio':>7} {'ratio (CPU s)':>14}"
    )
    for c in comparisons:
        ratio, rcpu = c["ratio_ess_per_s"], c["ratio_ess_per_cpu_s"]
        print(
            f"{c['problem']:<12} {c['seed']:>4} {c['default_min_ess_per_s']:>14.2f} "
            f"{c['reference_min_ess_per_s']:>16.2f} "
            f"{'n/a' if ratio is None else f'{ratio:.2f}':>7} "
            f"{'n/a' if rcpu is None else f'{rcpu:.2f}':>14}"
        )
    print(f"written {OUT}")


if __name__ == "__main__":
    main()
