"""The MAP search: L-BFGS from every start in lockstep (``calib._sampler_starts.find_map``,
``calib/_lbfgs.py``) against scipy's L-BFGS-B run start after start (what it replaced).

For every problem and seed, the same ``--starts`` prior draws (the sampler's default 8),
one after the other in this process, best of ``--repeats``:

- ``lockstep``: ``find_map(model, starts)``, one batched log-posterior call per iteration
  for every start still running;
- ``scipy``: ``scipy.optimize.minimize(method="L-BFGS-B")`` from each start in turn, one
  single-row call per evaluation (scipy's defaults and ``maxiter=500``, as before).

Each row: wall time, the number of log-posterior calls (batched calls for ``lockstep``,
evaluations for ``scipy``), the best log-posterior reached and the worst start's, and how
many starts reported convergence. ``speedup``: scipy's time over lockstep's, same seed.

Run: ``python benchmarks/map_search.py [--problems surmise_linear,ball_drop_1] [--seeds 2]
[--output map_search.json] [--note TEXT]``; prints a table and writes
``benchmarks/results/<output>``. One torch thread.
"""

from __future__ import annotations

import argparse
import datetime
import json
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
from scipy import optimize  # noqa: E402

import emulators  # noqa: E402, F401  (the package, before anything can shadow it)
from benchmarks import peers, trajectory_cap  # noqa: E402
from calib._sampler_starts import _value_and_grad, find_map  # noqa: E402

DEFAULT_PROBLEMS = (
    "surmise_linear",
    "ball_drop_1",
    "ball_drop_2",
    "quickstart",
    "hierarchy28",
    "reaction_norms",
)


class _Counted:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, U):
        self.calls += 1
        return self.fn(U)


def scipy_search(model, starts: np.ndarray) -> tuple[float, list[float], list[bool], int]:
    """scipy's L-BFGS-B from each start in turn (calib's search before the lockstep one)."""
    fn = _Counted(_value_and_grad(model))

    def one(u):
        f, g = fn(u[None])
        return float(f[0]), g[0]

    values, ok = [], []
    for u0 in starts:
        if not np.isfinite(one(u0)[0]):
            continue
        res = optimize.minimize(one, u0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
        values.append(-float(res.fun))
        ok.append(bool(res.success))
    return max(values), values, ok, fn.calls


def lockstep_search(model, starts: np.ndarray) -> tuple[float, list[float], list[bool], int]:
    """``find_map`` as shipped, counting its batched calls."""
    import calib._sampler_starts as ss

    counted = {}
    original = ss._value_and_grad

    def wrapped(m):
        counted["fn"] = _Counted(original(m))
        return counted["fn"]

    ss._value_and_grad = wrapped
    try:
        _, lp, optima = find_map(model, starts)
    finally:
        ss._value_and_grad = original
    values = [v for v, u, _ in optima if u is not None]
    return lp, values, [c for _, u, c in optima if u is not None], counted["fn"].calls


def measure(name: str, model, seed: int, n_starts: int, repeats: int) -> list[dict]:
    starts = model.sample_prior(np.random.default_rng(seed), n_starts)
    rows = []
    for variant, search in (("lockstep", lockstep_search), ("scipy", scipy_search)):
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            lp, values, ok, calls = search(model, starts)
            best = min(best, time.perf_counter() - t0)
        rows.append(
            {
                "problem": name,
                "seed": seed,
                "variant": variant,
                "n_dim": int(model.n_dim),
                "wall_s": best,
                "calls": calls,
                "lp_best": lp,
                "lp_worst_start": min(values),
                "n_converged": int(sum(ok)),
                "n_starts": len(values),
            }
        )
    rows[0]["speedup"] = rows[1]["wall_s"] / rows[0]["wall_s"]
    return rows


def _fmt(r: dict) -> str:
    sp = r.get("speedup")
    return (
        f"{r['problem']:<15} {r['seed']:>4} {r['variant']:<9} {r['n_dim']:>4} "
        f"{r['wall_s']:>7.3f} {r['calls']:>6} {r['lp_best']:>11.4f} {r['lp_worst_start']:>11.4f} "
        f"{r['n_converged']:>3}/{r['n_starts']:<3} {'' if sp is None else f'{sp:.2f}x'}"
    )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default=",".join(DEFAULT_PROBLEMS))
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--starts", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--output", default="map_search.json")
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out_path = Path(args.output)
    if not out_path.is_absolute():
        out_path = _HERE / "results" / out_path
    result = {
        "benchmark": "map_search",
        "date": datetime.date.today().isoformat(),
        "git": peers._git_head(),
        "machine": peers.machine(args.note),
        "note": args.note,
        "rows": [],
    }
    print(
        f"{'problem':<15} {'seed':>4} {'variant':<9} {'dim':>4} {'wall s':>7} {'calls':>6} "
        f"{'best lp':>11} {'worst lp':>11} conv"
    )
    for name in args.problems.split(","):
        cal = trajectory_cap.build(name)
        for seed in range(args.seeds):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rows = measure(name, cal.model, seed, args.starts, args.repeats)
            for r in rows:
                print(_fmt(r), flush=True)
            result["rows"].extend(rows)
    result["median_speedup"] = {
        name: statistics.median(
            r["speedup"] for r in result["rows"] if r["problem"] == name and "speedup" in r
        )
        for name in dict.fromkeys(r["problem"] for r in result["rows"])
    }
    print("median speedup (scipy time / lockstep time):", result["median_speedup"])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
