"""Reaction norms: genotypes × temperature, intercepts and slopes pooled jointly.

Each genotype (a campaign) is measured at five temperatures; its trait follows a straight
line in temperature, its reaction norm,

    trait(T) = intercept_g + slope_g · (T − 20 °C),

so the intercept is the trait at 20 °C and the slope the genotype's sensitivity to
temperature. The genotypes' (intercept, slope) pairs are drawn from one population,
partially pooled and correlated (docs/model.md §2c):

    (intercept_g, slope_g) = μ + diag(τ) L_Ω z_g,   z_g ~ N(0, I),   Ω ~ LKJ(2)

and the question of the classic reaction-norm study is ρ = corr(intercept, slope): are
genotypes with a higher baseline more (ρ > 0) or less (ρ < 0) sensitive? The data are
simulated with ρ = 0.7.

It prints ρ's posterior (mean and 90 % interval) and each genotype's estimated intercept and
slope, writes a figure (``--out``: the genotypes' fitted lines over their data and the
population's 90 % band for a new genotype; ρ's posterior) and the numbers as JSON
(``--json``, by default the figure's path with ``.json``).

Usage: ``python examples/reaction_norms/run.py [--small] [--out FIG.png] [--json OUT.json]``
(``--small``: a short chain, for the test suite; the full budget samples until converged).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from calib import LKJ, Calibrator, Campaign, Parameter
from calib.priors import HalfNormal, Normal
from simulators import FunctionSimulator

TEMPERATURES = np.array([10.0, 15.0, 20.0, 25.0, 30.0])  # °C
REFERENCE_T = 20.0  # the intercept is the trait here
N_GENOTYPES = 12
REPLICATES = 1  # one measurement per genotype and temperature
NOISE_SD = 0.8  # known measurement sd
# the population the genotypes are drawn from (the truth the example should recover)
MU = np.array([10.0, 0.4])  # mean intercept, mean slope (per °C)
TAU = np.array([1.5, 0.15])  # their sds across genotypes
RHO = 0.7
DATA_SEED = 3


def data(seed: int = DATA_SEED) -> tuple[np.ndarray, list[Campaign]]:
    """The genotypes' true (intercept, slope) ``(G, 2)`` and their campaigns."""
    rng = np.random.default_rng(seed)
    cov = np.outer(TAU, TAU) * np.array([[1.0, RHO], [RHO, 1.0]])
    truth = rng.multivariate_normal(MU, cov, size=N_GENOTYPES)
    x = np.repeat(TEMPERATURES, REPLICATES)[:, None]
    camps = []
    for g, (a, b) in enumerate(truth):
        y = a + b * (x[:, 0] - REFERENCE_T) + NOISE_SD * rng.standard_normal(x.shape[0])
        camps.append(Campaign(f"G{g + 1:02d}", x=x, y=y[:, None], noise_sd=NOISE_SD))
    return truth, camps


def simulator() -> FunctionSimulator:
    """The reaction norm, trait = intercept + slope · (T − 20)."""
    return FunctionSimulator(
        lambda X, P: P[:, :1] + P[:, 1:2] * (X[:, :1] - REFERENCE_T),
        input_names=("temperature",),
        parameter_names=("intercept", "slope"),
        output_names=("trait",),
        vectorized=True,
    )


def calibrator(camps: list[Campaign]) -> Calibrator:
    """Intercept and slope partially pooled and correlated, with an LKJ(2) prior on Ω."""
    return Calibrator(
        simulator(),
        [Parameter("intercept", pooling="partial"), Parameter("slope", pooling="partial")],
        camps,
        noise="known",
        hyperpriors={
            "intercept": {"mean": Normal(10.0, 5.0), "scale": HalfNormal(3.0)},
            "slope": {"mean": Normal(0.0, 1.0), "scale": HalfNormal(0.5)},
            ("intercept", "slope"): {"correlation": LKJ(2.0)},
        },
        correlated=[("intercept", "slope")],
    )


def sample(cal: Calibrator, small: bool, seed: int):
    """The posterior: a short fixed chain for ``small`` (12 walkers, 60 warm-up and 80
    kept iterations of the gradient move), else until converged."""
    if small:
        return cal.sample(
            n_walkers=12, n_steps=140, warmup=60, seed=seed, autocorr_stop=False, progress=False
        )
    return cal.sample(seed=seed, progress=False)


def figure(post, camps: list[Campaign], path: Path) -> None:
    """Left: each genotype's data and fitted line, and the 90 % band of a new genotype's
    line; right: ρ's posterior with the true value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(TEMPERATURES[0], TEMPERATURES[-1], 25)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(9.0, 3.6), width_ratios=(3, 2))
    new = post.predict_new_campaign(grid[:, None], n_draws=400, seed=0)
    ax.fill_between(grid, new.lower[:, 0], new.upper[:, 0], color="0.85", lw=0)
    colours = plt.cm.viridis(np.linspace(0, 1, len(camps)))
    for c, col in zip(camps, colours):
        a = post.draws("intercept", campaign=c.name).mean()
        b = post.draws("slope", campaign=c.name).mean()
        ax.plot(grid, a + b * (grid - REFERENCE_T), color=col, lw=1)
        ax.plot(c.x[:, 0], c.y[:, 0], "o", color=col, ms=2.5)
    ax.set_xlabel("temperature (°C)")
    ax.set_ylabel("trait")
    ax.set_title("genotypes' reaction norms (band: a new genotype, 90 %)", fontsize=9)
    rho = post.correlation("intercept", "slope")
    bx.hist(rho, bins=np.linspace(-1, 1, 61), density=True, color="tab:blue", alpha=0.8)
    bx.axvline(RHO, color="k", ls="--", lw=1, label=f"true ρ = {RHO}")
    bx.axvline(0.0, color="0.5", lw=0.8)
    bx.set_xlabel("ρ = corr(intercept, slope)")
    bx.set_yticks([])
    bx.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    """Calibrate, print ρ and the genotypes, write the figure and the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="a short chain (tests)")
    ap.add_argument("--out", type=Path, default=Path("reaction_norms.png"), help="figure path")
    ap.add_argument("--json", type=Path, default=None, help="default: the figure's, .json")
    ap.add_argument("--seed", type=int, default=1, help="the sampler's seed")
    args = ap.parse_args(argv)
    truth, camps = data()
    post = sample(calibrator(camps), args.small, args.seed)
    rho = post.correlation("intercept", "slope")
    q05, q95 = np.quantile(rho, [0.05, 0.95])
    diag = post.diagnostics()
    print(f"ρ = corr(intercept, slope): mean {rho.mean():.2f}, 90 % [{q05:.2f}, {q95:.2f}]")
    print(
        f"(true {RHO}; bulk ESS {diag['ess_bulk']['corr(intercept,slope)']:.0f}; "
        f"R̂ max {diag['rhat_max']:.3f}; converged: {post.converged})"
    )
    genotypes = {}
    for c, (a, b) in zip(camps, truth):
        ia = post.draws("intercept", campaign=c.name)
        sb = post.draws("slope", campaign=c.name)
        genotypes[c.name] = {
            "intercept": [float(ia.mean()), float(ia.std()), float(a)],
            "slope": [float(sb.mean()), float(sb.std()), float(b)],
        }
        print(
            f"{c.name}: intercept {ia.mean():6.2f} (true {a:6.2f}), slope {sb.mean():.3f} (true {b:.3f})"
        )
    figure(post, camps, args.out)
    out = {
        "rho_true": RHO,
        "rho": {"mean": float(rho.mean()), "q05": float(q05), "q95": float(q95)},
        "rho_ess_bulk": float(diag["ess_bulk"]["corr(intercept,slope)"]),
        "rhat_max": float(diag["rhat_max"]),
        "genotypes": genotypes,  # name: {intercept: [mean, sd, true], slope: [...]}
        "budget": "small" if args.small else "full",
        "seed": args.seed,
    }
    path = args.json or args.out.with_suffix(".json")
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False))
    print(f"figure: {args.out}\nnumbers: {path}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
