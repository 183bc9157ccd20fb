"""Emulator benchmark: training time, prediction throughput, predict_torch vs its floor.

Run ``python benchmarks/emulators.py``; prints a table and writes
``benchmarks/results/emulators.json``. Test function: a smooth function of 6 inputs with
``m`` outputs (phase-shifted copies). Large cases use fewer optimizer iterations so the
whole benchmark runs in a few minutes on 2 CPU cores; each row says what it used.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

# run as a script, this file's folder comes first on sys.path and its name would shadow
# the emulators package
_HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from emulators import GPEmulator  # noqa: E402

D = 6
CASES = [  # (n, m, options)
    (200, 1, {}),
    (200, 50, {"n_restarts": 1}),
    (1000, 1, {}),
    (1000, 50, {"n_restarts": 1, "adam_iter": 3, "lbfgs_iter": 3}),
    (3000, 1, {"n_restarts": 1, "adam_iter": 10, "lbfgs_iter": 10}),
]
# (3000, 50) is not run: one marginal-likelihood evaluation alone is 50 Cholesky
# factorizations of 3000 x 3000 (~0.5 TFLOP with the backward pass), minutes per step.


def func(X: np.ndarray, m: int) -> np.ndarray:
    shifts = np.linspace(0, np.pi, m)
    base = X @ np.linspace(1.0, 2.0, D)
    return np.sin(base[:, None] + shifts) + (X[:, :2] ** 2).sum(1, keepdims=True)


def best_of(fn, reps: int = 5) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main() -> None:
    rng = np.random.default_rng(0)
    rows = []
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {platform.processor()}")
    hdr = (
        f"{'n':>5} {'m':>3} {'train s':>8} {'pred pts/s':>11} {'torch ms':>9} "
        f"{'floor ms':>9} {'ratio':>6} {'ratio 1 thread':>14} {'load':>5}  options"
    )
    print(hdr)
    for n, m, opts in CASES:
        X = rng.uniform(size=(n, D))
        Y = func(X, m)
        t = time.perf_counter()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            em = GPEmulator(seed=0, **opts).fit(X, Y)
        train = time.perf_counter() - t
        Xp = rng.uniform(size=(2000 if m == 1 else 200, D))
        tp = best_of(lambda em=em, Xp=Xp: em.predict(Xp), reps=2)
        row = {
            "n": n,
            "m": m,
            "options": opts or "defaults",
            "train_s": train,
            "converged": bool(em.converged_),
            "warnings": [str(x.message)[:120] for x in w],
            "predict_points_per_s": len(Xp) / tp,
        }
        if m * n * 64 * 60 * 8 <= 4e8:  # the (m, n, 64·60) right-hand side must fit in memory
            Xt = torch.as_tensor(rng.uniform(size=(64, 60, D)))
            # the floor: the same triangular system in its cheapest layout, every
            # walker's points as right-hand sides of one solve per output
            B = torch.randn(m, n, 64 * 60, dtype=torch.float64)
            threads = torch.get_num_threads()
            for nt in sorted({1, threads}):
                torch.set_num_threads(nt)
                with torch.no_grad():
                    tt = best_of(lambda em=em, Xt=Xt: em.predict_torch(Xt))
                    tf = best_of(
                        lambda em=em, B=B: torch.linalg.solve_triangular(em._L, B, upper=False)
                    )
                sfx = "" if nt == threads else "_1thread"
                row.update(
                    {
                        f"predict_torch_ms{sfx}": 1e3 * tt,
                        f"floor_ms{sfx}": 1e3 * tf,
                        f"ratio{sfx}": tt / tf,
                    }
                )
            torch.set_num_threads(threads)
        row["load_average_1min"] = os.getloadavg()[0]
        rows.append(row)
        write(rows)  # after every row, so a cut-short run still leaves its results
        pt = row.get("predict_torch_ms", float("nan"))
        fl = row.get("floor_ms", float("nan"))
        ra = row.get("ratio", float("nan"))
        r1 = row.get("ratio_1thread", float("nan"))
        print(
            f"{n:>5} {m:>3} {train:>8.1f} {row['predict_points_per_s']:>11.0f} "
            f"{pt:>9.2f} {fl:>9.2f} {ra:>6.2f} {r1:>14.2f} {row['load_average_1min']:>5.1f}"
            f"  {opts or 'defaults'}"
        )


def write(rows: list[dict]) -> None:
    out = Path(__file__).with_name("results") / "emulators.json"
    out.parent.mkdir(exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "predict_torch": "64 walkers x 60 points; floor = solve_triangular(L (m, n, n), B (m, n, 64*60))",
        "not_run": "(3000, 50): 50 Cholesky of 3000x3000 per likelihood evaluation",
        "note": "timings on a shared machine; load_average_1min per row. Under load, "
        "OpenMP elementwise kernels with 2 threads slow down far more than the BLAS floor, "
        "hence the single-thread ratio as well",
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
