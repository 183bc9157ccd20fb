"""Log-posterior cost against the bare linear-algebra floor of the same step.

Problems:

- ``koh`` (issue 3): 3 campaigns × 20 observations, a shared rbf discrepancy (so one joint
  60 × 60 block), per-campaign noise, a vectorized simulator with one partially pooled and
  one completely pooled parameter; 64 walkers (and 256).
- ``ball_drop_2`` (issue 9): SEPIA's ball_drop_2 (benchmarks/problems_ball_drop.py), a
  BasisGPEmulator over 101 heights, 4 balls × 3 observed heights (one 12 × 12 block), a
  shared δ over (R, ρ_ball, height), known noise; 32 walkers.

For each: one log-posterior call without gradient (``log_posterior_numpy``, what emcee
calls), one call with its gradient (``U.requires_grad_(True)``, ``log_posterior(U)``,
``lp.sum().backward()``, what the MAP search does), and the floor: one batched Cholesky and
one triangular solve of the same ``(W, B, N, N)`` covariance shape, what any exact
marginalized likelihood must do. In emulator mode a second floor: one GEMM ``L⁻¹ K`` of the
emulator's shape, what its exact GP prediction must do for every walker's points (column
"emu fl"; "call/floors" is the call over the sum of both floors). All are timed
interleaved in one process, best of several repeats (the machines are noisy: compare the
ratios, not the seconds).

Run: ``python benchmarks/logpost.py`` (or ``make bench``); writes
benchmarks/results/logpost.json. ``--baseline REV`` also measures the calib and emulators
packages of git revision ``REV`` (exported to a temporary folder, run in a subprocess on
the same problems) and prints both, for before/after comparisons.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from pathlib import Path

# run as a script, this file's folder comes first on sys.path and benchmarks/emulators.py
# would shadow the emulators package
_HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402

import emulators  # noqa: E402, F401  (the package, before anything can shadow it)
from calib import Calibrator, Campaign, Parameter  # noqa: E402
from simulators import FunctionSimulator  # noqa: E402


def _load_problems():
    spec = importlib.util.spec_from_file_location(
        "problems_ball_drop", _HERE / "problems_ball_drop.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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


def interleaved_best(fns: dict, repeats: int = 7, number: int = 50) -> dict[str, float]:
    """Best seconds per call of each function, timed in turn within every repeat."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(number):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t) / number)
    return best


def measure(cal: Calibrator, problem_name: str, n_walkers: int, threads: int, number: int) -> dict:
    torch.set_num_threads(threads)
    model = cal.model
    rng = np.random.default_rng(1)
    U = model.sample_prior(rng, n_walkers) * 0.3
    # the floor: the same (W, B, N, N) shape, B blocks of N = the largest block's entries
    B = int(getattr(model, "B", 1))
    N = int(getattr(model, "Nmax", model.N))
    C = torch.randn(n_walkers, B, N, N, dtype=torch.float64)
    C = C @ C.transpose(-1, -2) + N * torch.eye(N, dtype=torch.float64)
    r = torch.randn(n_walkers, B, N, 1, dtype=torch.float64)

    def floor():
        L, _ = torch.linalg.cholesky_ex(C)
        torch.linalg.solve_triangular(L, r, upper=False)

    def call():
        model.log_posterior_numpy(U)

    def call_grad():
        Ut = torch.tensor(U, dtype=torch.float64).requires_grad_(True)
        lp = model.log_posterior(Ut)
        lp.sum().backward()

    fns = {"floor": floor, "call": call, "grad": call_grad}
    emu = _emulator_floor(cal, n_walkers)
    if emu is not None:
        fns["emulator_floor"] = emu
    for _ in range(10):
        for fn in fns.values():
            fn()
    t = interleaved_best(fns, number=number)
    row = {
        "problem": problem_name,
        "n_walkers": n_walkers,
        "torch_threads": threads,
        "block": f"{B}x{N}x{N}",
        "calib_s_per_call": t["call"],
        "calib_grad_s_per_call": t["grad"],
        "floor_s_per_call": t["floor"],
        "calib_walker_evals_per_s": n_walkers / t["call"],
        "ratio_to_floor": t["call"] / t["floor"],
        "grad_ratio_to_call": t["grad"] / t["call"],
    }
    if emu is not None:
        # what an exact GP prediction cannot avoid: V = L⁻¹ k(X, X*) for every point
        row["emulator_floor_s_per_call"] = t["emulator_floor"]
        row["ratio_to_floors"] = t["call"] / (t["floor"] + t["emulator_floor"])
    return row


def _emulator_floor(cal: Calibrator, n_walkers: int):
    """One GEMM ``L⁻¹ K`` of the emulator's shape (GPs × runs × runs by runs × W·n points),
    or None in direct mode or for an emulator other than calib's GP-based ones."""
    em = cal.model_object
    gp = getattr(em, "gp_", em)
    L = getattr(gp, "_L", None)
    if not cal.model.forward.emulator or L is None:
        return None
    outputs = getattr(cal.model, "_emu_outputs", None)
    k = L.shape[0] if gp is not em or outputs is None else len(outputs)
    N = L.shape[-1]
    pts = n_walkers * len(cal.model.X_rows)
    A = torch.randn(k, N, N, dtype=torch.float64)
    K = torch.randn(k, N, pts, dtype=torch.float64)
    return lambda: A @ K


def run_all() -> list[dict]:
    default_threads = torch.get_num_threads()
    koh = problem()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bd2 = _load_problems().ball_drop_2("basis")
    rows = [
        measure(koh, "koh", 64, 1, 20),
        measure(koh, "koh", 64, default_threads, 20),
        measure(koh, "koh", 256, 1, 5),
        measure(bd2, "ball_drop_2", 32, 1, 100),
    ]
    return rows


def print_table(rows: list[dict], title: str) -> None:
    print(title)
    print(
        f"{'problem':>12} {'walkers':>8} {'threads':>8} {'call ms':>9} {'grad ms':>9} "
        f"{'floor ms':>9} {'emu fl ms':>9} {'evals/s':>9} {'call/floor':>11} "
        f"{'grad/call':>10} {'call/floors':>12}"
    )
    for r in rows:
        ef = r.get("emulator_floor_s_per_call")
        print(
            f"{r['problem']:>12} {r['n_walkers']:>8} {r['torch_threads']:>8} "
            f"{1e3 * r['calib_s_per_call']:>9.3f} {1e3 * r['calib_grad_s_per_call']:>9.3f} "
            f"{1e3 * r['floor_s_per_call']:>9.3f} "
            f"{'-' if ef is None else f'{1e3 * ef:.3f}':>9} "
            f"{r['calib_walker_evals_per_s']:>9.0f} {r['ratio_to_floor']:>11.2f} "
            f"{r['grad_ratio_to_call']:>10.2f} {r.get('ratio_to_floors', float('nan')):>12.2f}"
        )


def baseline(rev: str) -> list[dict]:
    """The same measurements with calib and emulators of git revision ``rev``."""
    repo = _HERE.parent
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "src.tar"
        with open(tar, "wb") as fh:
            subprocess.run(
                ["git", "-C", str(repo), "archive", rev, "calib", "emulators", "simulators"],
                stdout=fh,
                check=True,
            )
        src = Path(tmp) / "src"
        with tarfile.open(tar) as tf:
            tf.extractall(src, filter="data")
        out = Path(tmp) / "rows.json"
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])
        )
        subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--worker", str(out)],
            env=env,
            check=True,
        )
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", metavar="REV", help="also measure git revision REV")
    ap.add_argument("--worker", metavar="JSON", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        Path(args.worker).write_text(json.dumps(run_all()))
        return
    before = baseline(args.baseline) if args.baseline else None
    rows = run_all()
    if before is not None:
        print_table(before, f"before ({args.baseline})")
    print_table(rows, "now" if before is None else "after (working tree)")
    result = {
        "benchmark": "logpost",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "rows": rows,
    }
    if before is not None:
        result["baseline_rev"] = args.baseline
        result["baseline_rows"] = before
    out = _HERE / "results" / "logpost.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
