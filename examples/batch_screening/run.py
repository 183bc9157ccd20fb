"""Which of 30 batches of an alloy truly differ? A spike-and-slab screen at FDR 10 %.

Thirty batches of one alloy are each tested three times on a 2 m cantilever (a point load
at some position, the deflection read at two sensors with a gauge of sd 0.1 mm). Most
batches share one Young's modulus, 200 GPa, up to a scatter of 0.2 % that no test can
resolve; four do not (−6 %, +5 %, −4 % and a borderline +2 %). The simulator is the
finite-element beam of ``simulators/beam.py`` with a clamped support.

E is pooled by ``pooling="spike_slab"`` (docs/model.md §2b): each batch's E is either at the
population value (the spike) or drawn from a wide slab, with the proportion π₀ of
unremarkable batches learned from all thirty at once. ``post.discoveries("E", fdr=0.1)``
then names the largest set of batches whose expected proportion of false discoveries is
at most 10 % (Newton et al. 2004) — one answer for all thirty batches, instead of thirty
separate tests.

It prints the discoveries and writes a figure (``--out``): each batch's E with its 90 %
interval, coloured by the probability that it differs, and that probability against the
FDR threshold.

Usage: ``python examples/batch_screening/run.py [--small] [--out FIG.png]``
(``--small``: a short fixed chain, for the test suite; the full run samples until
converged).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from calib import Calibrator, Campaign, ConvergenceWarning, Parameter

E_POP = 200e9  # Pa, the alloy's modulus
#: the batches that truly differ, by their relative change of E
DIFFERENT = {"B05": -0.06, "B12": 0.05, "B19": -0.04, "B27": 0.02}
SCATTER = 0.002  # relative batch-to-batch scatter of the others: below the tests' resolution
N_BATCHES = 30
TESTS = 3  # load cases per batch
NOISE_SD = 1e-4  # m, the gauge's sd
E_BOUNDS = (1.7e11, 2.3e11)
FDR = 0.1
SEED = 7


def beam():
    """The cantilever: 2 m, I = 8e-6 m⁴, sensors at 1 m and at the tip."""
    from simulators.beam import BeamSimulator

    return BeamSimulator(length=2.0, second_moment=8e-6, sensors=[1.0, 2.0], n_elements=4)


def true_moduli() -> dict[str, float]:
    """E of every batch (Pa)."""
    rng = np.random.default_rng(SEED)
    names = [f"B{l + 1:02d}" for l in range(N_BATCHES)]
    scatter = SCATTER * rng.standard_normal(N_BATCHES)
    return {n: E_POP * (1.0 + DIFFERENT.get(n, s)) for n, s in zip(names, scatter)}


def campaigns(sim) -> list[Campaign]:
    """Three load cases per batch, deflections with gauge noise (clamped support)."""
    rng = np.random.default_rng(SEED + 1)
    out = []
    for name, E in true_moduli().items():
        x = np.column_stack([rng.uniform(2e3, 1e4, TESTS), rng.uniform(1.0, 2.0, TESTS)])
        theta = np.tile([E, np.inf], (TESTS, 1))
        y = sim.run_batch(x, theta) + NOISE_SD * rng.standard_normal((TESTS, 2))
        out.append(Campaign(name, x=x, y=y, noise_sd=NOISE_SD))
    return out


def simulator(sim):
    """The beam as calib sees it: deflections at the two sensors for (load, position) and E.

    The beam is linear-elastic, so its deflection is exactly proportional to 1/E: every
    call runs the finite-element beam at the reference modulus (one factorization shared
    by all rows, :meth:`BeamSimulator.run_batch`) and scales by E_ref/E. Calling the FEM at
    each walker's E instead gives the same numbers to round-off, at one factorization per
    distinct E (tests/test_batch_screening.py checks the two agree). The FEM's sensor
    deflections are exact for any mesh (simulators/beam.py), so 4 elements suffice.
    """
    from simulators import FunctionSimulator

    def run(X: np.ndarray, T: np.ndarray) -> np.ndarray:
        # every walker asks for the same load cases: run each distinct one once
        Xu, back = np.unique(X, axis=0, return_inverse=True)
        ref = np.tile([E_POP, np.inf], (len(Xu), 1))
        return sim.run_batch(Xu, ref)[np.ravel(back)] * (E_POP / T[:, :1])

    return FunctionSimulator(run, sim.input_names, ("E",), sim.output_names, vectorized=True)


def calibrator() -> Calibrator:
    """E of each batch, spike-and-slab pooled, with known gauge noise and no δ (the clamped
    beam is how the data were made)."""
    sim = beam()
    return Calibrator(
        simulator(sim),
        [Parameter("E", *E_BOUNDS, pooling="spike_slab")],
        campaigns(sim),
        noise="known",
    )


def sample(cal: Calibrator, small: bool, seed: int = 1):
    """The posterior: a short fixed chain for ``small`` (8 walkers, 40 warm-up and 40 kept
    iterations, 2 MAP starts: ~15 s), else until converged."""
    if small:
        with warnings.catch_warnings():  # a short chain: the verdict is not the point here
            warnings.simplefilter("ignore", ConvergenceWarning)
            return cal.sample(
                n_walkers=8,
                n_steps=80,
                warmup=40,
                n_starts=2,
                seed=seed,
                autocorr_stop=False,
                progress=False,
            )
    return cal.sample(seed=seed, progress=False)


def figure(post, found, path: Path) -> None:
    """Each batch's E (median, 90 % interval) coloured by P(differs), and P(differs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(post.model.campaign_names)
    truth = true_moduli()
    p = np.array([1.0 - found.null_probability[n] for n in names])
    q = np.array([np.quantile(post.draws("E", campaign=n), [0.05, 0.5, 0.95]) for n in names])
    q = q / 1e9
    k = np.arange(len(names))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    colors = plt.cm.viridis(p)
    for i in k:
        ax1.plot([i, i], q[i, [0, 2]], color=colors[i], lw=2)
    ax1.scatter(k, q[:, 1], c=p, cmap="viridis", vmin=0, vmax=1, zorder=3, label="posterior")
    ax1.scatter(k, [truth[n] / 1e9 for n in names], marker="x", color="k", s=18, label="true")
    ax1.axhline(np.median(post.draws("E.typical")) / 1e9, color="grey", ls=":", lw=1)
    ax1.set_ylabel("E (GPa): median, 90 %")
    ax1.set_title("each batch's E, coloured by its probability of differing", fontsize=9)
    ax1.legend(loc="upper left", fontsize=8)
    bars = ax2.bar(k, p, color=["tab:red" if n in found else "tab:grey" for n in names])
    for i in [names.index(n) for n in found][:1]:  # one legend entry for the red bars
        bars[i].set_label(f"discovery at FDR {found.fdr:g}")
    ax2.scatter(
        [names.index(n) for n in DIFFERENT],
        np.full(len(DIFFERENT), 1.06),
        marker="v",
        color="k",
        s=18,
        label="truly differs",
    )
    ax2.set_ylim(0, 1.12)
    ax2.set_ylabel("P(batch differs | data)")
    ax2.legend(loc="center right", fontsize=8)
    ax2.set_xticks(k, names, rotation=90, fontsize=7)
    ax2.set_title(
        f"{len(found)} discoveries at a Bayesian FDR of {found.fdr:g} "
        f"(estimated FDR of the set {found.estimated_fdr:.3f})",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None):
    """Fit, sample, screen at FDR 10 %; print the discoveries and write the figure."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", action="store_true", help="a short chain (tests)")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("batch_screening.png"), help="figure"
    )
    ap.add_argument("--seed", type=int, default=1, help="the sampler's seed")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    cal = calibrator()
    post = sample(cal, args.small, args.seed)
    found = post.discoveries("E", fdr=FDR)
    print(found)
    print(
        f"truly different: {sorted(DIFFERENT)}; π₀ (share of unremarkable batches): "
        f"{post.draws('E.null').mean():.2f}; converged: {post.converged}; "
        f"{time.perf_counter() - t0:.0f} s"
    )
    figure(post, found, args.out)
    print(f"figure: {args.out}")
    return post, found


if __name__ == "__main__":
    main(sys.argv[1:])
