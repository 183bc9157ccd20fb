"""The HMC trajectory-length cap (``calib._chees_tuning.T_MAX``) against the uncapped ChEES
adaptation it replaced, on calib's benchmark problems and the peers' ball drops.

For every problem and seed two default runs, ``cal.sample(seed=s)`` (calib's moves,
walkers, warm-up, budget and stopping rule), one after the other in this process:

- ``capped``: the move as shipped, T ≤ T_MAX whitened units in warm-up and frozen;
- ``uncapped``: the same move built with ``t_max=None`` (the adaptation before the cap).

Each row: the adapted T and ε of every HMC part (two for an interweaved hierarchy), the
gradient evaluations, wall time (the MAP search included, the problem's build not), the
rank-normalized bulk ESS of every quantity (walkers as chains, ``post.diagnostics()``),
min ESS per second over every quantity and over θ where the peers report θ, R̂ max, and the
steps the stopping rule ran. ``ratio``: capped over uncapped min ESS/s of the same seed.

Run: ``python benchmarks/trajectory_cap.py [--problems quickstart,ball_drop_1] [--seeds 3]
[--output trajectory_cap.json] [--note TEXT]``; prints a table and writes
``benchmarks/results/<output>`` after every row. One torch thread.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.util
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import emulators  # noqa: E402, F401  (the package, before anything can shadow it)
from benchmarks import peers  # noqa: E402
from benchmarks.problems import PROBLEMS  # noqa: E402
from calib import _sampler_drive, chees, interweave  # noqa: E402

DEFAULT_PROBLEMS = ("surmise_linear", "ball_drop_1", "ball_drop_2", "quickstart", "hierarchy28")


EXTRA = ("reaction_norms",)  # examples/reaction_norms/run.py: correlated (LKJ) pooling


def build(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the emulator fits' ConvergenceWarnings
        if name == "reaction_norms":
            spec = importlib.util.spec_from_file_location(
                "reaction_norms_example", _HERE.parent / "examples" / "reaction_norms" / "run.py"
            )
            example = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(example)
            return example.calibrator(example.data()[1])
        return PROBLEMS[name]() if name in PROBLEMS else peers.build(name, False)


def _uncapped(on: bool) -> None:
    """Build the sampler's HMC moves with ``t_max=None`` (on) or as shipped (off)."""
    move = functools.partial(chees.ChEESMove, t_max=None) if on else chees.ChEESMove
    _sampler_drive.ChEESMove = move
    interweave.ChEESMove = move


def measure(name: str, cal, seed: int, variant: str) -> dict:
    _uncapped(variant == "uncapped")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            post = cal.sample(seed=seed, progress=False)
            wall = time.perf_counter() - t0
    finally:
        _uncapped(False)
    diag = post.diagnostics()
    ess = {k: float(v) for k, v in diag["ess_bulk"].items()}
    thetas = [k for k in peers.PEERS.get(name, {}).get("mean", {}) if k in ess]
    state = post.info.get("move_state") or {}
    parts = state.get("parts") or [state]
    worst = min(ess, key=ess.get)
    return {
        "problem": name,
        "seed": seed,
        "variant": variant,
        "n_steps": int(diag["n_steps"]),
        "trajectory": [p["trajectory"] for p in parts],
        "step_size": [p["step_size"] for p in parts],
        "t_max": [p.get("t_max") for p in parts],
        "n_grad_evals": int(sum(p.get("n_grad_evals", 0) for p in parts)),
        "wall_s": wall,
        "rhat_max": float(diag["rhat_max"]),
        "converged": bool(diag["converged"]),
        "min_ess_all": ess[worst],
        "min_ess_all_quantity": worst,
        "min_ess_all_per_s": ess[worst] / wall,
        "min_ess_theta_per_s": min(ess[k] for k in thetas) / wall if thetas else None,
        "ess_bulk": ess,
    }


def _fmt(r: dict) -> str:
    th = r["min_ess_theta_per_s"]
    return (
        f"{r['problem']:<15} {r['seed']:>4} {r['variant']:<9} "
        f"{'/'.join(f'{t:.2f}' for t in r['trajectory']):>11} "
        f"{'/'.join(f'{e:.3f}' for e in r['step_size']):>11} {r['n_steps']:>5} "
        f"{r['n_grad_evals']:>6} {r['wall_s']:>6.1f} {r['min_ess_all_per_s']:>7.0f} "
        f"{'-' if th is None else f'{th:.0f}':>7} {r['rhat_max']:>6.3f}"
    )


def summarize(rows: list[dict]) -> dict:
    out = {}
    for name in dict.fromkeys(r["problem"] for r in rows):
        by = {
            v: [r for r in rows if r["problem"] == name and r["variant"] == v]
            for v in ("capped", "uncapped")
        }
        pairs = list(zip(by["capped"], by["uncapped"], strict=False))
        out[name] = {
            "ratio_all_per_seed": [
                c["min_ess_all_per_s"] / u["min_ess_all_per_s"] for c, u in pairs
            ],
            "median_min_ess_all_per_s": {
                v: statistics.median(r["min_ess_all_per_s"] for r in rs)
                for v, rs in by.items()
                if rs
            },
        }
        if pairs and pairs[0][0]["min_ess_theta_per_s"] is not None:
            out[name]["ratio_theta_per_seed"] = [
                c["min_ess_theta_per_s"] / u["min_ess_theta_per_s"] for c, u in pairs
            ]
            out[name]["median_min_ess_theta_per_s"] = {
                v: statistics.median(r["min_ess_theta_per_s"] for r in rs)
                for v, rs in by.items()
                if rs
            }
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default=",".join(DEFAULT_PROBLEMS))
    ap.add_argument("--seeds", type=int, default=3, help="sampler seeds 0, 1, ...")
    ap.add_argument("--output", default="trajectory_cap.json")
    ap.add_argument("--note", default="2-core machine, nothing else running")
    args = ap.parse_args(argv)
    names = [p.strip() for p in args.problems.split(",") if p.strip()]
    unknown = [p for p in names if p not in (*PROBLEMS, *peers.PEERS, *EXTRA)]
    if unknown:
        ap.error(
            f"unknown problems {unknown}; expected some of {[*PROBLEMS, *peers.PEERS, *EXTRA]}"
        )
    out = _HERE / "results" / args.output
    torch.set_num_threads(1)
    doc = {
        "benchmark": "trajectory_cap",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git": peers._git_head(),
        "t_max": chees.T_MAX,
        "call": "cal.sample(seed=s), calib's defaults; uncapped: ChEESMove(..., t_max=None)",
        "machine": peers.machine(args.note),
        "rows": [],
    }
    print(
        f"{'problem':<15} {'seed':>4} {'variant':<9} {'T':>11} {'eps':>11} {'steps':>5} "
        f"{'grads':>6} {'wall':>6} {'ESS/s':>7} {'θ ESS/s':>7} {'R̂':>6}",
        flush=True,
    )
    for name in names:
        cal = build(name)
        for seed in range(args.seeds):
            for variant in ("capped", "uncapped"):
                row = measure(name, cal, seed, variant)
                doc["rows"].append(row)
                print(_fmt(row), flush=True)
                doc["summary"] = summarize(doc["rows"])
                peers.write(out, doc)
    doc["machine"]["load_average_at_end"] = list(os.getloadavg())
    doc["summary"] = summarize(doc["rows"])
    peers.write(out, doc)
    for name, s in doc["summary"].items():
        print(name, json.dumps(s, default=lambda v: round(float(np.round(v, 3)), 3)))
    print(f"written {out}")
    return doc


if __name__ == "__main__":
    main()
