"""Sparse (SGPR) against exact GP emulator: accuracy and time at 1000–4000 runs.

Run ``python benchmarks/sparse_emulator.py`` (options: ``--n``, ``--exact-max``,
``--inducing``, ``--adam``, ``--lbfgs``); prints a table and writes
``benchmarks/results/sparse_emulator.json`` after every row, so a cut-short run keeps
what it measured. Two test functions, each on Latin-hypercube training runs and 1000
held-out runs:

* the borehole function (8 inputs; held-out runs: GaSP's 1000 test runs in
  ``../shared/data/borehole/borehole_test.csv``, the formula checked against them);
* a smooth 6-input function (``benchmarks/emulators.py``'s, one output), held-out runs
  uniform on the unit cube.

Per row: RMSE, normalized RMSE (RMSE / sd of the held-out outputs), Q², coverage of the
central 95 % intervals, the fit time, and the time of ``predict_torch`` for 64 walkers ×
60 points (the calibration's call; its cost is ``O(n²)`` per point for the exact GP,
``O(M²)`` for the sparse one). Every fit in a row uses the same optimizer budget
(``--adam``, ``--lbfgs``), stated in the JSON; the exact GP is run up to ``--exact-max``
runs. Timings come from whatever machine runs this: the JSON records its CPU count and
load average.
"""

from __future__ import annotations

import argparse
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

from emulators import GPEmulator, SparseGPEmulator, validation  # noqa: E402

BOREHOLE = _HERE.parent.parent / "shared" / "data" / "borehole"
# rw, r, Tu, Hu, Tl, Hl, L, Kw: the ranges of the data set's README (GaSP's)
BOREHOLE_LO = np.array([0.05, 100.0, 63070.0, 990.0, 63.1, 700.0, 1120.0, 9855.0])
BOREHOLE_HI = np.array([0.15, 50000.0, 115600.0, 1110.0, 116.0, 820.0, 1680.0, 12045.0])


def borehole(X: np.ndarray) -> np.ndarray:
    """Water flow through a borehole (columns rw, r, Tu, Hu, Tl, Hl, L, Kw as in the CSV)."""
    rw, r, Tu, Hu, Tl, Hl, L, Kw = X.T
    lg = np.log(r / rw)
    return 2 * np.pi * Tu * (Hu - Hl) / (lg * (1 + 2 * L * Tu / (lg * rw**2 * Kw) + Tu / Tl))


def smooth6(X: np.ndarray) -> np.ndarray:
    """benchmarks/emulators.py's test function with one output."""
    return np.sin(X @ np.linspace(1.0, 2.0, 6)) + (X[:, :2] ** 2).sum(1)


def lhs(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """A Latin hypercube on the unit cube."""
    u = (rng.permuted(np.tile(np.arange(n), (d, 1)), axis=1).T + rng.uniform(size=(n, d))) / n
    return u


def problems() -> dict:
    """``{name: (design(n), f, X_test, y_test)}``; a design depends on the problem and
    ``n`` only, so rows of separate runs (``--append``) share their training runs."""
    out = {}
    if BOREHOLE.exists():
        test = np.loadtxt(BOREHOLE / "borehole_test.csv", delimiter=",", skiprows=1)
        Xt, yt = test[:, :8], test[:, 8]
        err = np.abs(borehole(Xt) - yt).max() / np.abs(yt).max()
        assert err < 1e-6, f"the borehole formula does not reproduce the test runs ({err:.1e})"
        out["borehole"] = (
            lambda n: (
                BOREHOLE_LO + lhs(n, 8, np.random.default_rng([0, n])) * (BOREHOLE_HI - BOREHOLE_LO)
            ),
            borehole,
            Xt,
            yt,
        )
    Xt = np.random.default_rng(2).uniform(size=(1000, 6))
    out["smooth6"] = (lambda n: lhs(n, 6, np.random.default_rng([1, n])), smooth6, Xt, smooth6(Xt))
    return out


def best_of(fn, reps: int = 3) -> float:
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def run_one(em, X, y, Xt, yt, walkers: torch.Tensor) -> dict:
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        em.fit(X, y)
    fit_s = time.perf_counter() - t
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "mahalanobis", UserWarning)
        res = validation.held_out(em, Xt, yt)
    threads = torch.get_num_threads()
    with torch.no_grad():
        pt = best_of(lambda: em.predict_torch(walkers))
        # on a loaded machine, OpenMP threads spin-wait: single-threaded is the steadier figure
        torch.set_num_threads(1)
        pt1 = best_of(lambda: em.predict_torch(walkers))
        torch.set_num_threads(threads)
    return {
        "fit_s": fit_s,
        "rmse": float(res.rmse[0]),
        "nrmse": float(res.nrmse[0]),
        "q2": float(res.q2[0]),
        "coverage95": float(res.coverage95[0]),
        "predict_torch_64x60_ms": 1e3 * pt,
        "predict_torch_64x60_ms_1thread": 1e3 * pt1,
        "nugget_ratio": float(em.hyperparameters()["nugget_ratio"][0]),
        "converged": bool(em.converged_),
        "warnings": sorted({str(x.message)[:100] for x in w}),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[1000, 2000, 4000])
    ap.add_argument("--exact-max", type=int, default=2000)
    ap.add_argument("--inducing", type=int, default=300)
    ap.add_argument("--adam", type=int, default=20)
    ap.add_argument("--lbfgs", type=int, default=50)
    ap.add_argument("--problems", nargs="+", default=["borehole", "smooth6"])
    ap.add_argument("--no-sparse", action="store_true", help="exact GP rows only")
    ap.add_argument(
        "--append", action="store_true", help="add the rows to the JSON's instead of replacing"
    )
    args = ap.parse_args(argv)
    probs = problems()
    budget = {"adam_iter": args.adam, "lbfgs_iter": args.lbfgs, "n_restarts": 1, "seed": 0}
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "budget": budget,
        "n_inducing": "per sparse row (runs may be appended with --append)",
        "predict_torch": "64 walkers x 60 points, one output, best of 3, with the default "
        "threads and with one",
        "note": "timings on a shared machine: load_average_1min per row",
    }
    rows: list[dict] = []
    out = _HERE / "results" / "sparse_emulator.json"
    if args.append and out.exists():
        rows = json.loads(out.read_text())["rows"]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, budget {budget}")
    print(
        f"{'problem':>9} {'n':>5} {'emulator':>8} {'fit s':>7} {'nrmse':>8} {'Q2':>7} "
        f"{'cov95':>6} {'pred ms':>8} {'1 thread':>8} {'load':>5}"
    )
    for name in args.problems:
        design, f, Xt, yt = probs[name]
        lo, hi = Xt.min(0), Xt.max(0)
        u = np.random.default_rng(3).uniform(size=(64, 60, Xt.shape[1]))
        walkers = torch.as_tensor(lo + u * (hi - lo))
        for n in args.n:
            X = design(n)
            y = f(X)
            kinds = []
            if not args.no_sparse:
                kinds.append(("sparse", SparseGPEmulator(n_inducing=args.inducing, **budget)))
            if n <= args.exact_max:
                kinds.append(("exact", GPEmulator(**budget)))
            for kind, em in kinds:
                row = {"problem": name, "n": n, "emulator": kind, "budget": budget}
                if kind == "sparse":
                    row["n_inducing"] = min(args.inducing, n)
                row.update(run_one(em, X, y, Xt, yt, walkers))
                row["load_average_1min"] = os.getloadavg()[0]
                rows.append(row)
                write(meta, rows)
                print(
                    f"{name:>9} {n:>5} {kind:>8} {row['fit_s']:>7.1f} {row['nrmse']:>8.2e} "
                    f"{row['q2']:>7.4f} {row['coverage95']:>6.3f} "
                    f"{row['predict_torch_64x60_ms']:>8.1f} "
                    f"{row['predict_torch_64x60_ms_1thread']:>8.1f} {row['load_average_1min']:>5.1f}",
                    flush=True,
                )


def write(meta: dict, rows: list[dict]) -> None:
    out = _HERE / "results" / "sparse_emulator.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
