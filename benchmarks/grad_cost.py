"""The cost of one gradient call of the HMC move, this checkout against another.

What the gradient move calls at every leapfrog step: ``batched_value_and_grad(model,
scores)`` (``calib.chees``), the log-posterior and its autograd gradient for all walkers,
in the normal scores of BetaRho length-scales where the model has them. Per problem: the
best of ``--repeats`` means over ``--calls`` calls at ``--walkers`` walkers, prior draws,
one torch thread.

``--against ROOT`` times the same in another source tree (e.g. ``git archive HEAD~1``
unpacked), in alternating subprocesses, ``--rounds`` times each, and reports this
checkout's time over the other's per round: ratios measured in one run (these machines
vary by 10-20 % from run to run).

Run: ``python benchmarks/grad_cost.py [--problems ball_drop_1,ball_drop_2]
[--against /tmp/old] [--output grad_cost.json] [--note TEXT]``; prints a table and writes
``benchmarks/results/<output>``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

_HERE = Path(__file__).resolve().parent
PROBLEMS = ("surmise_linear", "ball_drop_1", "ball_drop_2", "quickstart", "hierarchy28")


def time_calls(problems: list[str], walkers: int, calls: int, repeats: int) -> dict:
    """ms per call in the current interpreter's calib (the caller sets sys.path)."""
    import numpy as np
    import torch

    from benchmarks import trajectory_cap
    from calib._hmc_coords import hmc_coordinates
    from calib.chees import batched_value_and_grad

    torch.set_num_threads(1)
    out = {}
    for name in problems:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = trajectory_cap.build(name).model
        scores = hmc_coordinates(model)
        U = model.sample_prior(np.random.default_rng(0), walkers)
        Y = U if scores is None else scores.to_other(U)
        vg = batched_value_and_grad(model, scores)
        for _ in range(calls // 5):
            vg(Y)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(calls):
                vg(Y)
            best = min(best, (time.perf_counter() - t0) / calls * 1e3)
        out[name] = best
    return out


def _child(root: str, args) -> dict:
    # the other tree's calib first on the path; this file's time_calls loaded by its path
    # (the benchmarks folder itself must not be on the path: benchmarks/emulators.py would
    # shadow the emulators package)
    code = (
        "import sys, json, importlib.util; sys.path.insert(0, {root!r}); import emulators; "
        "spec = importlib.util.spec_from_file_location('grad_cost_here', {me!r}); "
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
        "print(json.dumps(m.time_calls({p!r}, {w}, {c}, {r})))"
    ).format(
        root=root,
        me=str(Path(__file__).resolve()),
        p=args.problems.split(","),
        w=args.walkers,
        c=args.calls,
        r=args.repeats,
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, env=env
    )
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--walkers", type=int, default=32)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--against", default=None)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--output", default="grad_cost.json")
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    here_root = str(_HERE.parent)
    rounds = []
    for _ in range(args.rounds if args.against else 1):
        row = {"this": _child(here_root, args)}
        if args.against:
            row["against"] = _child(args.against, args)
        rounds.append(row)
    problems = args.problems.split(",")
    summary = {}
    print(f"{'problem':<15} {'this ms':>8} {'other ms':>9} {'this/other':>10}")
    for name in problems:
        this = statistics.median(r["this"][name] for r in rounds)
        s = {"this_ms": this}
        if args.against:
            s["against_ms"] = statistics.median(r["against"][name] for r in rounds)
            s["ratio_per_round"] = [r["this"][name] / r["against"][name] for r in rounds]
        summary[name] = s
        other = s.get("against_ms")
        ratio = s.get("ratio_per_round")
        print(
            f"{name:<15} {this:>8.3f} {'' if other is None else f'{other:9.3f}':>9} "
            f"{'' if ratio is None else '/'.join(f'{x:.3f}' for x in ratio):>10}"
        )
    # this checkout's metadata as the other benchmarks record it (imported here: the
    # timings run in subprocesses, each with its own source tree first on the path)
    sys.path = [q for q in sys.path if Path(q or ".").resolve() != _HERE]
    sys.path.insert(0, here_root)
    from benchmarks import peers

    result = {
        "benchmark": "grad_cost",
        "date": datetime.date.today().isoformat(),
        "git": peers._git_head(),
        "machine": peers.machine(args.note),
        "walkers": args.walkers,
        "calls": args.calls,
        "repeats": args.repeats,
        "against": args.against,
        "note": args.note,
        "rounds": rounds,
        "summary": summary,
    }
    out = Path(args.output)
    if not out.is_absolute():
        out = _HERE / "results" / out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
