"""Which emcee moves mix best on calib's test problems: integrated autocorrelation times.

For each problem and move set, a chain of 32 walkers is run from the same MAP-based start
(several seeds); τ_int is estimated on the second half of the chain for every sampled
coordinate. A smaller τ_int means more effective samples per step (the cost per step is
the same: one batched log-posterior call per half-ensemble). The default move of
calib.sampling was chosen from this table; docs/model.md quotes it.

Run: ``python benchmarks/moves.py [n_steps]``; writes benchmarks/results/moves.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import emcee
import numpy as np

from calib import Calibrator, Campaign, Discrepancy, Parameter
from calib.diagnostics import integrated_time
from calib.priors import HalfNormal, LogNormal, Normal
from simulators import FunctionSimulator


def identity_sim():
    return FunctionSimulator(lambda X, T: T[:, :1], (), ("theta",), ("y",), vectorized=True)


def hierarchical() -> Calibrator:
    rng = np.random.default_rng(1)
    camps = []
    for l, n in enumerate((2, 3, 5, 8, 4)):
        y = 0.5 + 0.8 * rng.standard_normal() + rng.standard_normal(n)
        camps.append(Campaign(f"c{l}", x=None, y=y, noise_sd=1.0))
    return Calibrator(
        identity_sim(),
        [Parameter("theta", pooling="partial")],
        camps,
        noise="known",
        hyperpriors={"theta": {"mean": Normal(0.0, 3.0), "scale": HalfNormal(1.5)}},
    )


def koh() -> Calibrator:
    rng = np.random.default_rng(2)
    x = np.linspace(0, 1, 10)
    y = 1.3 * x + 0.15 * np.sin(5 * x) + 0.05 * rng.standard_normal(10)
    sim = FunctionSimulator(
        lambda X, T: T[:, :1] * X[:, :1], ("x",), ("theta",), ("y",), vectorized=True
    )
    return Calibrator(
        sim,
        [Parameter("theta", prior=Normal(1.0, 1.0))],
        [Campaign("A", x=x, y=y, noise_sd=0.05)],
        discrepancy=Discrepancy(
            "shared",
            "rbf",
            scale_prior=HalfNormal(0.5),
            lengthscale_prior=LogNormal(np.log(0.3), 0.5),
        ),
        noise="known",
    )


def pooled_koh() -> Calibrator:
    rng = np.random.default_rng(3)
    sim = FunctionSimulator(
        lambda X, T: 1000 * X[:, :1] / (3 * T[:, :1]), ("load",), ("E",), ("d",), vectorized=True
    )
    camps = []
    for name, E in [("A", 195.0), ("B", 204.0), ("C", 212.0)]:
        load = rng.uniform(5, 50, 8)
        y = 1000 * load / (3 * E) + 0.6 * np.sin(load / 8) + 0.2 * rng.standard_normal(8)
        camps.append(Campaign(name, x=load, y=y, noise_sd=0.2))
    return Calibrator(
        sim,
        [Parameter("E", 150, 250, pooling="partial")],
        camps,
        discrepancy=Discrepancy("shared", scale_prior=HalfNormal(2.0)),
        noise="known",
        hyperpriors={"E": {"scale": HalfNormal(0.5)}},
    )


MOVES = {
    "stretch": lambda: emcee.moves.StretchMove(),
    "DE 0.8 + stretch 0.2": lambda: [(emcee.moves.DEMove(), 0.8), (emcee.moves.StretchMove(), 0.2)],
    "DE": lambda: emcee.moves.DEMove(),
}


def main() -> None:
    n_steps = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    seeds = (0, 1, 2)
    rows = []
    for pname, make in [
        ("hierarchical normal (7-d)", hierarchical),
        ("KOH rbf (3-d)", koh),
        ("pooled KOH, quickstart (7-d)", pooled_koh),
    ]:
        cal = make()
        for mname, mv in MOVES.items():
            taus, accs = [], []
            for s in seeds:
                post = cal.sample(
                    n_walkers=32, n_steps=n_steps, seed=s, moves=mv(), autocorr_stop=False
                )
                taus.append(integrated_time(post.chain[n_steps // 2 :]))
                accs.append(post.acceptance.mean())
            taus = np.array(taus)
            rows.append(
                {
                    "problem": pname,
                    "moves": mname,
                    "n_steps": n_steps,
                    "seeds": list(seeds),
                    "tau_max_mean": float(taus.max(axis=1).mean()),
                    "tau_mean": float(taus.mean()),
                    "acceptance": float(np.mean(accs)),
                }
            )
            r = rows[-1]
            print(
                f"{pname:<30} {mname:<22} τ_max {r['tau_max_mean']:7.1f}  τ_mean {r['tau_mean']:7.1f}  acc {r['acceptance']:.2f}",
                flush=True,
            )
    out = Path(__file__).parent / "results" / "moves.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"benchmark": "moves", "n_walkers": 32, "rows": rows}, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()
