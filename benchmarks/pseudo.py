"""What δ's pseudo-observations cost: one log-posterior call (value; value and gradient)
with a plain GP δ, with constraints (δ = 0 and ∇δ = 0 at a point), with the S-GaSP and with
both, as ratios to the plain GP measured in the same run (calib/pseudo.py, docs/model.md
§3b).

    python benchmarks/pseudo.py [--device cuda] [--walkers 64 256] [--out PATH]

The problem is benchmarks/logpost.py's (3 campaigns × 20 observations, a shared δ: one
covariance block of 60 entries; the S-GaSP's grid is the 60 distinct inputs). Writes JSON to
benchmarks/results/pseudo[_<device>].json unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from calib import Calibrator, Discrepancy

_HERE = Path(__file__).resolve().parent

WAYS = {
    "gp": {},
    "constrained": {"zero_at": [[0.0]], "zero_slope_at": [[0.0]]},
    "sgasp": {"process": "sgasp"},
    "both": {"zero_at": [[0.0]], "zero_slope_at": [[0.0]], "process": "sgasp"},
}


def _logpost_module():
    spec = importlib.util.spec_from_file_location("bench_logpost", _HERE / "logpost.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def calibrator(way: str, device: str) -> Calibrator:
    base = _logpost_module().problem()
    return Calibrator(
        base.model_object,
        base.parameters,
        base.campaigns,
        discrepancy=Discrepancy("shared", **WAYS[way]),
        noise="per_campaign",
        device=device,
    )


def measure(device: str, walkers: list[int], number: int) -> list[dict]:
    best_of = _logpost_module().interleaved_best
    cals = {w: calibrator(w, device) for w in WAYS}
    rows = []
    for W in walkers:
        fns = {}
        for way, cal in cals.items():
            U0 = cal.model.sample_prior(np.random.default_rng(1), W) * 0.3
            U = torch.tensor(U0, dtype=torch.float64, device=device)

            def value(cal=cal, U=U):
                with torch.no_grad():
                    cal.model.log_posterior(U)
                if device != "cpu":
                    torch.cuda.synchronize()

            def grad(cal=cal, U=U):
                Ut = U.clone().requires_grad_(True)
                cal.model.log_posterior(Ut).sum().backward()
                if device != "cpu":
                    torch.cuda.synchronize()

            value(), grad()  # warm-up (CUDA kernels, caches)
            fns[f"{way}/value"], fns[f"{way}/grad"] = value, grad
        best = best_of(fns, repeats=5, number=number)
        for way in WAYS:
            for kind in ("value", "grad"):
                t = best[f"{way}/{kind}"]
                rows.append(
                    {
                        "walkers": W,
                        "way": way,
                        "call": kind,
                        "ms": 1e3 * t,
                        "ratio_to_gp": t / best[f"gp/{kind}"],
                    }
                )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--walkers", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--number", type=int, default=20, help="calls per timing")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows = measure(args.device, args.walkers, args.number)
    cpu = platform.processor() or platform.machine()
    name = torch.cuda.get_device_name() if args.device != "cpu" else cpu
    print(f"log-posterior cost on {args.device} ({name}); ratio to the plain GP δ, same run")
    print(f"{'walkers':>7s} {'way':>12s} {'call':>6s} {'ms':>9s} {'ratio':>6s}")
    for r in rows:
        print(
            f"{r['walkers']:7d} {r['way']:>12s} {r['call']:>6s} {r['ms']:9.3f} "
            f"{r['ratio_to_gp']:6.2f}"
        )
    result = {
        "benchmark": "pseudo",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": args.device,
        "device_name": name,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "rows": rows,
    }
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    out = args.out or _HERE / "results" / f"pseudo{suffix}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
