"""The log-posterior on a GPU against the CPU: ``Calibrator(..., device="cuda")`` (issue 16).

The case of the issue: emulator mode, a GPEmulator fitted on ``n`` = 2000 runs (a Latin
hypercube) of a smooth function of 6 inputs (2 control inputs x, 4 parameters θ; one θ
partially pooled), 3 campaigns × 20 observations, a shared rbf discrepancy (one joint
60 × 60 block), per-campaign noise, 1024 walkers. Each walker's call asks the emulator for
its 60 points: a ``(2000 × 2000)`` triangular solve against ``2000 × 61 440`` cross
covariances, which is what a GPU does well; the rest is many small operations, which it
does not.

Measured, on the CPU (torch's default threads) and on CUDA in the same run, with the same
walkers (prior draws):

- ``value``: one log-posterior call, NumPy in and out (``model.log_posterior_numpy``, what
  emcee calls), and ``value+grad``: the value and its gradient (``calib.hmc.
  batched_value_and_grad``, what the gradient move calls); the median of ``--repeats``
  calls after two warm-up calls, with ``torch.cuda.synchronize()`` around each;
- ``emcee step``: seconds per step of emcee's sampler with the DE mix
  (``calib.sampling.de_moves``; two vectorized calls of half the ensemble per step), the
  mean of ``--steps`` steps after one;
- ``HMC step``: seconds per iteration of the default gradient move (``ChEESMove``) with
  ε and T fixed and the same leapfrog counts on both devices, and per gradient
  evaluation inside it (the move's NumPy bookkeeping included), the mean of ``--steps``
  iterations after one;
- ``agreement``: the largest relative difference CPU vs CUDA of the values (per walker)
  and of the gradients (relative to the largest component);
- ``fit``: ``GPEmulator.fit`` on ``--fit-n`` runs (default 500) on both devices, and on the
  ``n`` runs on CUDA (on the CPU too with ``--cpu-fit``: slow, minutes).

Run: ``python benchmarks/gpu.py`` (needs CUDA for the CUDA columns; they read "absent"
without it); ``--quick`` for small sizes (200 runs, 64 walkers: under a minute on a CPU);
writes benchmarks/results/gpu.json or ``--output PATH``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

# run as a script, this file's folder comes first on sys.path and benchmarks/emulators.py
# would shadow the emulators package
_HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import emcee  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import qmc  # noqa: E402

from calib import Calibrator, Campaign, Parameter  # noqa: E402
from calib.hmc import ChEESMove, batched_value_and_grad  # noqa: E402
from calib.sampling import de_moves  # noqa: E402
from emulators import GPEmulator  # noqa: E402

CUDA = torch.cuda.is_available()
ABSENT = "absent"

#: the 6 inputs' ranges: x1, x2 (control), then θ1..θ4
LOWER = np.array([0.0, 0.0, 0.5, -1.0, 0.1, 0.0])
UPPER = np.array([1.0, 1.0, 2.0, 1.0, 1.0, 2.0])
THETA_TRUE = [(1.2, 0.3, 0.5, 1.0), (1.4, 0.3, 0.5, 1.0), (1.0, 0.3, 0.5, 1.0)]


def smooth(X: np.ndarray) -> np.ndarray:
    """A smooth function of 6 inputs ``(n, 6) -> (n, 1)``: x = X[:, :2], θ = X[:, 2:]."""
    x1, x2, a, b, c, d = X.T
    y = a * np.sin(2.0 * x1 + b) + c * np.exp(-((x2 - 0.5) ** 2) / 0.2) + 0.3 * d * x1 * x2
    return y[:, None]


def fit(n: int, device: str, seed: int = 0) -> tuple[GPEmulator, float]:
    """A GPEmulator on ``n`` Latin-hypercube runs of :func:`smooth`, and its fit seconds."""
    u = qmc.LatinHypercube(d=6, seed=seed).random(n)
    X = LOWER + u * (UPPER - LOWER)
    _sync()
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fit short of its criterion times the same
        em = GPEmulator(seed=seed, device=device).fit(X, smooth(X))
    _sync()
    return em, time.perf_counter() - t


def problem(emulator: GPEmulator, device: str, n_obs: int = 20, seed: int = 1) -> Calibrator:
    rng = np.random.default_rng(seed)
    camps = []
    for l, th in enumerate(THETA_TRUE):
        x = rng.uniform(0, 1, (n_obs, 2))
        y = smooth(np.column_stack([x, np.tile(th, (n_obs, 1))]))[:, 0]
        y = y + 0.1 * np.sin(3 * x[:, 0]) + 0.02 * rng.standard_normal(n_obs)  # δ and noise
        camps.append(Campaign(f"c{l}", x=x, y=y))
    params = [
        Parameter("a", 0.5, 2.0, pooling="partial"),
        Parameter("b", -1.0, 1.0),
        Parameter("c", 0.1, 1.0),
        Parameter("d", 0.0, 2.0),
    ]
    return Calibrator(
        emulator,
        params,
        camps,
        discrepancy="shared",
        noise="per_campaign",
        input_names=("x1", "x2"),
        device=device,
    )


def _sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def _timed(fn):
    _sync()
    t = time.perf_counter()
    out = fn()
    _sync()
    return time.perf_counter() - t, out


def median_seconds(fn, repeats: int, budget_s: float):
    """Median seconds of ``fn()`` after warm-up (CUDA's kernels and allocator, caches), the
    number of timed calls and the last result. Two warm-up calls, one for a call over a
    second; at least 3 timed calls, at most ``repeats``, fewer where they would take more
    than ``budget_s``."""
    t, _ = _timed(fn)
    if t < 1.0:
        t, _ = _timed(fn)
    n = max(3, min(repeats, int(budget_s / t)))
    times = []
    for _ in range(n):
        dt, out = _timed(fn)
        times.append(dt)
    return statistics.median(times), n, out


def emcee_step_seconds(cal: Calibrator, U: np.ndarray, steps: int) -> float:
    """Seconds per step of emcee's DE mix on the calibrator, after one step."""
    sampler = emcee.EnsembleSampler(
        U.shape[0], U.shape[1], cal.model.log_posterior_numpy, vectorize=True, moves=de_moves()
    )
    state = sampler.run_mcmc(U, 1, skip_initial_state_check=True)
    _sync()
    t = time.perf_counter()
    sampler.run_mcmc(state, steps, skip_initial_state_check=True)
    _sync()
    return (time.perf_counter() - t) / steps


#: the HMC step's fixed kernel for the timing: ε and T in the metric's units (the metric
#: is the walkers' start covariance), at most T/ε = 8 leapfrog steps per iteration
HMC_STEP_SIZE, HMC_TRAJECTORY = 0.05, 0.4


def hmc_step_seconds(cal: Calibrator, U: np.ndarray, steps: int) -> tuple[float, float]:
    """Seconds per iteration of calib's gradient move (``ChEESMove``, what ``sample()``
    runs by default) and per gradient evaluation inside it, after one iteration that sets
    the metric. ε and T are fixed (:data:`HMC_STEP_SIZE`, :data:`HMC_TRAJECTORY`) and the
    sampler's generator seeded, so that every device runs the same leapfrog counts."""
    move = ChEESMove(batched_value_and_grad(cal.model), U.shape[1], n_warmup=1)
    sampler = emcee.EnsembleSampler(
        U.shape[0], U.shape[1], cal.model.log_posterior_numpy, vectorize=True, moves=[move]
    )
    sampler.random_state = np.random.RandomState(0).get_state()
    state = sampler.run_mcmc(U, 1, skip_initial_state_check=True)
    move.step_size, move.trajectory = HMC_STEP_SIZE, HMC_TRAJECTORY
    evals = move.n_grad_evals
    _sync()
    t = time.perf_counter()
    sampler.run_mcmc(state, steps, skip_initial_state_check=True)
    _sync()
    dt = time.perf_counter() - t
    return dt / steps, dt / (move.n_grad_evals - evals)


def measure(
    cals: dict[str, Calibrator], n_walkers: int, repeats: int, steps: int, budget_s: float
) -> dict:
    model = next(iter(cals.values())).model
    U = model.sample_prior(np.random.default_rng(2), n_walkers)
    keys = ("value_s", "value_grad_s", "emcee_step_s", "hmc_step_s", "hmc_grad_s", "calls")
    out: dict = {k: {} for k in (*keys, "results")}
    for dev, cal in cals.items():
        value, vg = cal.model.log_posterior_numpy, batched_value_and_grad(cal.model)
        t, n, _ = median_seconds(lambda f=value: f(U), repeats, budget_s)
        out["value_s"][dev] = t
        t, n2, out["results"][dev] = median_seconds(lambda f=vg: f(U), repeats, budget_s)
        out["value_grad_s"][dev] = t
        out["calls"][dev] = [n, n2]
        print(f"  {dev}: value {out['value_s'][dev]:.4g} s, value+grad {t:.4g} s", flush=True)
        out["emcee_step_s"][dev] = emcee_step_seconds(cal, U, steps) if steps else None
        hmc = hmc_step_seconds(cal, U, steps) if steps else (None, None)
        out["hmc_step_s"][dev], out["hmc_grad_s"][dev] = hmc
        if dev != "cpu":
            out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def agreement(results: dict) -> dict:
    if "cuda" not in results:
        keys = ("value_max_rel", "grad_max_rel", "n_finite", "n_finite_on_one_device_only")
        return dict.fromkeys(keys, ABSENT)
    (lp0, g0), (lp1, g1) = results["cpu"], results["cuda"]
    ok = np.isfinite(lp0) & np.isfinite(lp1)
    rel = float(np.max(np.abs(lp1[ok] - lp0[ok]) / np.abs(lp0[ok])))
    grel = float(np.max(np.abs(g1[ok] - g0[ok])) / np.max(np.abs(g0[ok])))
    return {
        "value_max_rel": rel,
        "grad_max_rel": grel,
        "n_finite": int(ok.sum()),
        # walkers -inf on one device only (a factorization at the edge of failing)
        "n_finite_on_one_device_only": int((np.isfinite(lp0) != np.isfinite(lp1)).sum()),
    }


def _fmt(v, scale: float = 1.0, spec: str = ".4g") -> str:
    return ABSENT if v is None or v == ABSENT else format(v * scale, spec)


def _ratio(a, b) -> float | str:
    ok = all(isinstance(v, float) for v in (a, b))
    return a / b if ok else ABSENT


def run(args) -> dict:
    n_runs, n_walkers = (200, 64) if args.quick else (args.n, args.walkers)
    fit_n = 100 if args.quick else args.fit_n
    repeats = 3 if args.quick else args.repeats
    steps = 2 if args.quick else args.steps
    devices = ["cpu"] + (["cuda"] if CUDA else [])

    # the emulator: on CUDA if there is one (the Calibrators copy it where they need it)
    fits: dict[str, dict] = {f"fit n={n_runs}": {}, f"fit n={fit_n}": {}}
    main_dev = "cuda" if CUDA else "cpu"
    emulator, t_main = fit(n_runs, main_dev)
    fits[f"fit n={n_runs}"][main_dev] = t_main
    print(f"fitted {n_runs} runs on {main_dev} in {t_main:.3g} s", flush=True)
    cals = {dev: problem(emulator, dev) for dev in devices}
    m = measure(cals, n_walkers, repeats, steps, args.budget_s)
    agree = agreement(m.pop("results"))
    for dev in devices:  # the fit on both devices, at a size the CPU does in seconds
        fits[f"fit n={fit_n}"][dev] = fit(fit_n, dev)[1]
        print(f"fitted {fit_n} runs on {dev} in {fits[f'fit n={fit_n}'][dev]:.3g} s", flush=True)
    if CUDA and args.cpu_fit:
        fits[f"fit n={n_runs}"]["cpu"] = fit(n_runs, "cpu")[1]

    rows = []
    for name, key in (
        ("log-posterior call", "value_s"),
        ("value and gradient", "value_grad_s"),
        ("emcee DE step", "emcee_step_s"),
        ("HMC step (fixed ε, T)", "hmc_step_s"),
        ("HMC per gradient", "hmc_grad_s"),
    ):
        cpu, cuda = m[key].get("cpu"), m[key].get("cuda", ABSENT)
        rows.append(
            {"what": name, "cpu_s": cpu, "cuda_s": cuda, "cpu_over_cuda": _ratio(cpu, cuda)}
        )
    for name, t in fits.items():
        cpu, cuda = t.get("cpu", "skipped (--cpu-fit)" if CUDA else ABSENT), t.get("cuda", ABSENT)
        rows.append(
            {"what": name, "cpu_s": cpu, "cuda_s": cuda, "cpu_over_cuda": _ratio(cpu, cuda)}
        )
    return {
        "benchmark": "gpu",
        "quick": bool(args.quick),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1min": os.getloadavg()[0],
        "cuda_device": torch.cuda.get_device_name() if CUDA else ABSENT,
        "cuda_peak_memory_gib": m.get("peak_memory_gib", ABSENT),
        "problem": {
            "n_runs": n_runs,
            "inputs": 6,
            "campaigns": 3,
            "observations_per_campaign": 20,
            "n_walkers": n_walkers,
            "n_dim": cals["cpu"].n_dim,
            "max_repeats": repeats,
            "timed_calls": m["calls"],
            "emcee_steps": steps,
        },
        "rows": rows,
        "agreement": agree,
    }


def print_table(res: dict) -> None:
    p = res["problem"]
    print(
        f"emulator mode, GPEmulator on {p['n_runs']} runs, 3 campaigns × 20 points, "
        f"{p['n_walkers']} walkers; CPU: {res['torch_threads']} torch threads of "
        f"{res['cpu_count']} cores; CUDA: {res['cuda_device']}"
    )
    print(f"{'':>22} {'CPU s':>18} {'CUDA s':>12} {'CPU/CUDA':>10}")
    for r in res["rows"]:
        cpu = r["cpu_s"] if isinstance(r["cpu_s"], str) else _fmt(r["cpu_s"])
        print(
            f"{r['what']:>22} {cpu:>18} {_fmt(r['cuda_s']):>12} "
            f"{_fmt(r['cpu_over_cuda'], spec='.1f'):>10}"
        )
    a = res["agreement"]
    print(
        f"agreement CPU vs CUDA: values {_fmt(a['value_max_rel'], spec='.2e')} (max relative, "
        f"{a['n_finite']} finite walkers), gradients {_fmt(a['grad_max_rel'], spec='.2e')} "
        f"(max difference / max |gradient|); CUDA peak memory "
        f"{_fmt(res['cuda_peak_memory_gib'], spec='.2f')} GiB"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (< 1 min on a CPU)")
    ap.add_argument("--n", type=int, default=2000, help="emulator runs (default 2000)")
    ap.add_argument("--walkers", type=int, default=1024, help="walkers (default 1024)")
    ap.add_argument("--repeats", type=int, default=7, help="timed calls per median, at most")
    ap.add_argument(
        "--budget-s", type=float, default=15.0, help="seconds per median (at least 3 calls)"
    )
    ap.add_argument("--steps", type=int, default=2, help="timed emcee steps (0: none)")
    ap.add_argument("--fit-n", type=int, default=500, help="runs of the fit on both devices")
    ap.add_argument("--cpu-fit", action="store_true", help="also fit the n runs on the CPU")
    ap.add_argument("--output", type=Path, default=_HERE / "results" / "gpu.json")
    args = ap.parse_args()
    res = run(args)
    print_table(res)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(res, indent=2))
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
