"""Log-posterior throughput against the bare linear-algebra floor of the same step.

Problem (issue 3): 3 campaigns × 20 observations, a shared rbf discrepancy (so one joint
60 × 60 block), per-campaign noise, a vectorized simulator with one partially pooled and
one completely pooled parameter, 64 walkers. The floor is one batched Cholesky and one
triangular solve of the same (64, 1, 60, 60) covariance: what any exact marginalized
likelihood must do. Both are timed in the same process, interleaved, best of several
repeats (the machines are noisy: compare the ratio, not the seconds).

Run: ``python benchmarks/logpost.py`` (or ``make bench``); writes
benchmarks/results/logpost.json.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from calib import Calibrator, Campaign, Parameter
from simulators import FunctionSimulator


def problem(n_campaigns: int = 3, n_obs: int = 20, seed: int = 0) -> Calibrator:
    rng = np.random.default_rng(seed)

    def f(X, T):
        return T[:, 0:1] * np.sin(3.0 * X[:, 0:1]) + T[:, 1:2] * X[:, 0:1]

    sim = FunctionSimulator(f, ("x",), ("a", "b"), ("y",), vectorized=True)
    camps = []
    for l in range(n_campaigns):
        x = rng.uniform(0, 1, (n_obs, 1))
        y = (
            (1.0 + 0.1 * l) * np.sin(3 * x[:, 0])
            + 0.5 * x[:, 0]
            + 0.05 * rng.standard_normal(n_obs)
        )
        camps.append(Campaign(f"c{l}", x=x, y=y))
    params = [Parameter("a", 0.0, 3.0, pooling="partial"), Parameter("b", -2.0, 2.0)]
    return Calibrator(sim, params, camps, discrepancy="shared", noise="per_campaign")


def best_time(fn, repeats: int = 7, number: int = 50) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t) / number)
    return best


def measure(n_walkers: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    cal = problem()
    rng = np.random.default_rng(1)
    U = cal.model.sample_prior(rng, n_walkers) * 0.3
    N = cal.model.N
    C = torch.randn(n_walkers, 1, N, N, dtype=torch.float64)
    C = C @ C.transpose(-1, -2) + N * torch.eye(N, dtype=torch.float64)
    r = torch.randn(n_walkers, 1, N, 1, dtype=torch.float64)

    def floor():
        L, _ = torch.linalg.cholesky_ex(C)
        torch.linalg.solve_triangular(L, r, upper=False)

    def calib_step():
        cal.model.log_posterior_numpy(U)

    for _ in range(20):
        floor()
        calib_step()
    t_floor = best_time(floor)
    t_calib = best_time(calib_step)
    return {
        "n_walkers": n_walkers,
        "torch_threads": threads,
        "block": f"{N}x{N}",
        "calib_s_per_call": t_calib,
        "floor_s_per_call": t_floor,
        "calib_walker_evals_per_s": n_walkers / t_calib,
        "ratio_to_floor": t_calib / t_floor,
    }


def main() -> None:
    default_threads = torch.get_num_threads()
    rows = [measure(64, 1), measure(64, default_threads)]
    rows.append(measure(256, 1))
    print(
        f"{'walkers':>8} {'threads':>8} {'calib ms':>10} {'floor ms':>10} {'evals/s':>10} {'ratio':>7}"
    )
    for r in rows:
        print(
            f"{r['n_walkers']:>8} {r['torch_threads']:>8} {1e3 * r['calib_s_per_call']:>10.3f} "
            f"{1e3 * r['floor_s_per_call']:>10.3f} {r['calib_walker_evals_per_s']:>10.0f} "
            f"{r['ratio_to_floor']:>7.2f}"
        )
    out = Path(__file__).parent / "results" / "logpost.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "logpost",
                "machine": f"{platform.machine()} {platform.processor()}".strip(),
                "torch": torch.__version__,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()
