"""The simple machine of Brynjarsdóttir & O'Hagan (2014), calibrated four ways.

A machine delivers work ζ(x) for an effort x. The model says η(x, θ) = θ·x, with θ the
machine's efficiency; reality loses a little more at large efforts,

    ζ(x) = 0.65·x / (1 + x/20),

so the physical efficiency is θ = 0.65 (the slope at zero effort, where the model is exact)
and the model discrepancy is δ(x) = ζ(x) − θ·x. Eleven observations at equally spaced
efforts in [0.2, 4], with a known measurement sd of 0.01, are calibrated with

1. no δ: θ absorbs the discrepancy, a narrow posterior away from 0.65;
2. a GP δ (Kennedy & O'Hagan 2001): θ and δ are confounded, a wide posterior;
3. a GP δ that knows δ(0) = 0 and δ'(0) = 0 (Brynjarsdóttir & O'Hagan 2014): the model
   is exact at, and near, zero effort;
4. the scaled GP, S-GaSP (Gu & Wang 2018), with calib's default scaling λ_z.

It prints θ's posterior mean and 90 % interval per way and ``post.identifiability()``
of each (docs/identifiability.md), writes a figure of the four
posteriors side by side (``--out``) and the numbers behind it as JSON (``--json``, by
default the figure's path with ``.json``). docs/theta_vs_delta.md discusses the result.

Usage: ``python examples/simple_machine/run.py [--small] [--out FIG.png] [--json OUT.json]``
(``--small``: a short chain per way, for the test suite; the full budget samples until
converged, about a minute and a half on two cores for all four).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from calib import Calibrator, Campaign, Discrepancy, Parameter
from calib.priors import HalfNormal, LogNormal
from simulators import FunctionSimulator

THETA_TRUE = 0.65
X = np.linspace(0.2, 4.0, 11)  # eleven equally spaced efforts
NOISE_SD = 0.01  # known measurement sd
DATA_SEED = 0
# δ's priors, written out (close to calib's defaults for these data, HalfNormal(sd of y =
# 0.64) and LogNormal(log(range/2) = log 1.9, 1)) so that the chapter's numbers stay put
# if the defaults change: δ is at most a few tenths of a unit of work here, and smooth on
# the scale of the input range.
SCALE_SD = 0.5
LENGTHSCALE_MEDIAN = 2.0
LENGTHSCALE_LOGSD = 1.0
# θ is an efficiency: the work delivered cannot exceed the effort, nor be negative
THETA_BOUNDS = (0.0, 1.0)

WAYS = {
    "none": "no δ",
    "gp": "GP δ",
    "constrained": "δ(0)=0, δ'(0)=0",
    "sgasp": "S-GaSP δ",
}


def reality(x: np.ndarray) -> np.ndarray:
    """ζ(x) = 0.65·x / (1 + x/20) (Brynjarsdóttir & O'Hagan 2014)."""
    return THETA_TRUE * x / (1.0 + x / 20.0)


def data(seed: int = DATA_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The efforts and the observed work, ζ(x) plus N(0, 0.01²) noise."""
    rng = np.random.default_rng(seed)
    return X.copy(), reality(X) + NOISE_SD * rng.standard_normal(X.size)


def discrepancy(way: str, scaling: float | None = None) -> Discrepancy | str:
    """δ's specification for one of :data:`WAYS` (``scaling``: the S-GaSP's λ_z, None for
    calib's default rule)."""
    if way == "none":
        return "none"
    priors = {
        "scale_prior": HalfNormal(SCALE_SD),
        "lengthscale_prior": LogNormal(math.log(LENGTHSCALE_MEDIAN), LENGTHSCALE_LOGSD),
    }
    if way == "gp":
        return Discrepancy("shared", "rbf", **priors)
    if way == "constrained":
        # the model is exact at zero effort, and so is its slope there: θ is the efficiency
        return Discrepancy("shared", "rbf", **priors, zero_at=[[0.0]], zero_slope_at=[[0.0]])
    if way == "sgasp":
        return Discrepancy("shared", "rbf", **priors, process="sgasp", scaling=scaling)
    raise ValueError(f"way must be one of {tuple(WAYS)}, got {way!r}")


def calibrator(way: str, x: np.ndarray, y: np.ndarray, scaling: float | None = None) -> Calibrator:
    """The calibration of θ by one of :data:`WAYS`."""
    sim = FunctionSimulator(
        lambda X_, T: T[:, :1] * X_[:, :1],
        input_names=("effort",),
        parameter_names=("theta",),
        output_names=("work",),
        vectorized=True,
    )
    return Calibrator(
        sim,
        [Parameter("theta", *THETA_BOUNDS)],
        [Campaign("machine", x=x, y=y, noise_sd=NOISE_SD)],
        discrepancy=discrepancy(way, scaling),
        noise="known",
    )


def sample(cal: Calibrator, small: bool, seed: int):
    """θ's posterior: a short fixed chain for ``small`` (16 walkers, 100 warm-up and 200
    kept iterations of the gradient move), else until converged within 2000 iterations."""
    if small:
        return cal.sample(
            n_walkers=16, n_steps=300, warmup=100, seed=seed, autocorr_stop=False, progress=False
        )
    return cal.sample(seed=seed, progress=False)


def summarize(post) -> dict[str, float]:
    """θ's posterior mean, sd, 5 % and 95 % quantiles, bulk ESS and R̂."""
    d = post.draws("theta")
    diag = post.diagnostics()
    return {
        "mean": float(d.mean()),
        "sd": float(d.std()),
        "q05": float(np.quantile(d, 0.05)),
        "q95": float(np.quantile(d, 0.95)),
        "ess_bulk": float(diag["ess_bulk"]["theta"]),
        "rhat": float(diag["rhat"]["theta"]),
        "n_draws": int(d.size),
        "n_steps": int(diag["n_steps"]),
    }


def figure(draws: dict[str, np.ndarray], path: Path) -> None:
    """θ's four posteriors side by side, on one θ axis, with the physical value marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo = min(float(np.quantile(d, 0.001)) for d in draws.values())
    hi = max(float(np.quantile(d, 0.999)) for d in draws.values())
    lo, hi = min(lo, THETA_TRUE) - 0.02, max(hi, THETA_TRUE) + 0.02
    fig, axes = plt.subplots(1, len(draws), figsize=(3.0 * len(draws), 2.8), sharex=True)
    for ax, (way, d) in zip(axes, draws.items()):
        ax.hist(d, bins=np.linspace(lo, hi, 80), density=True, color="tab:blue", alpha=0.8)
        q05, q95 = np.quantile(d, [0.05, 0.95])
        ax.axvspan(q05, q95, color="tab:blue", alpha=0.12, lw=0)
        ax.axvline(THETA_TRUE, color="k", ls="--", lw=1)
        ax.set_title(WAYS[way], fontsize=10)
        ax.set_xlabel("θ")
        ax.set_yticks([])
    axes[0].set_ylabel("posterior density")
    axes[-1].text(
        THETA_TRUE,
        0.98,
        " θ = 0.65",
        transform=axes[-1].get_xaxis_transform(),
        va="top",
        fontsize=8,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(results: dict[str, dict[str, float]]) -> str:
    """θ's posterior per way as a fixed-width text table."""
    lines = [f"{'way':<18}{'mean':>8}{'5 %':>9}{'95 %':>9}{'ESS':>8}{'R̂':>7}  covers 0.65"]
    for way, r in results.items():
        covers = "yes" if r["q05"] <= THETA_TRUE <= r["q95"] else "no"
        lines.append(
            f"{WAYS[way]:<18}{r['mean']:8.3f}{r['q05']:9.3f}{r['q95']:9.3f}"
            f"{r['ess_bulk']:8.0f}{r['rhat']:7.3f}  {covers}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the four calibrations; print the table, write the figure and the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="a short chain per way (tests)")
    ap.add_argument("--out", type=Path, default=Path("simple_machine.png"), help="figure path")
    ap.add_argument("--json", type=Path, default=None, help="default: the figure's, .json")
    ap.add_argument("--seed", type=int, default=1, help="the sampler's seed")
    ap.add_argument(
        "--ways", default=",".join(WAYS), help=f"comma-separated, of {','.join(WAYS)} (default all)"
    )
    args = ap.parse_args(argv)
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    unknown = sorted(set(ways) - set(WAYS))
    if unknown or not ways:
        ap.error(f"--ways: expected some of {','.join(WAYS)}, got {args.ways!r}")
    x, y = data()
    results, draws, reports = {}, {}, {}
    for way in ways:
        t0 = time.perf_counter()
        post = sample(calibrator(way, x, y), args.small, args.seed)
        results[way] = summarize(post) | {"seconds": round(time.perf_counter() - t0, 1)}
        draws[way] = post.draws("theta")
        # what calib itself says about θ and δ (docs/identifiability.md)
        report = post.identifiability()
        row = report["theta"]
        results[way]["identifiability"] = {
            k: row[k] for k in ("contraction", "max_abs_corr", "corr_with", "delta_share", "flags")
        }
        reports[way] = str(report)
    print(table(results))
    for way, text in reports.items():
        print(f"\nidentifiability, {WAYS[way]}:\n{text}")
    figure(draws, args.out)
    out = {
        "theta_true": THETA_TRUE,
        "x": x.tolist(),
        "y": y.tolist(),
        "noise_sd": NOISE_SD,
        "priors": {
            "theta": f"Uniform{THETA_BOUNDS}",
            "discrepancy.scale": f"HalfNormal({SCALE_SD})",
            "discrepancy.lengthscale": f"LogNormal(log {LENGTHSCALE_MEDIAN}, {LENGTHSCALE_LOGSD})",
        },
        "budget": "small" if args.small else "full",
        "seed": args.seed,
        "labels": {w: WAYS[w] for w in ways},
        "ways": results,
    }
    path = args.json or args.out.with_suffix(".json")
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False))
    print(f"figure: {args.out}\nnumbers: {path}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
