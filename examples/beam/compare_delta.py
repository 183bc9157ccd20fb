"""The beam with a flexible support, calibrated with four discrepancies (docs/theta_vs_delta.md).

The field data of the demo (make_data.py: three batches, a support that rotates by P·a/k)
are calibrated against the clamped simulator with δ as the demo's study file has it (a
scale prior of 1 mm, chosen by someone who knows the support is stiff), and with the
default δ a new user gets (scale prior from the data's spread) — alone, with δ = 0 at zero
load (the model is exact without load), and as an S-GaSP. For each: every batch's Young's
modulus (mean and 90 % interval) against the truth, and the identifiability report.

Run as ``python examples/beam/compare_delta.py [--steps N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
import warnings
from pathlib import Path

from calib.study import read_study, run_study

HERE = Path(__file__).resolve().parent
TRUE_E = {"batch-A": 195e9, "batch-B": 204e9, "batch-C": 212e9}  # make_data.TRUE_E
# no load, no deflection, wherever the load would sit: the clamp model is exact there
AT_ZERO_LOAD = [[0.0, a] for a in (1.0, 1.5, 2.0)]

WAYS = {
    "GP δ, study's scale prior (1 mm)": None,  # the study file's [discrepancy] as it is
    "GP δ, default priors": {"mode": "shared"},
    "GP δ, δ = 0 at zero load": {"mode": "shared", "zero_at": AT_ZERO_LOAD},
    "S-GaSP δ, default priors": {"mode": "shared", "process": "sgasp"},
}


def calibrate(discrepancy: dict | None, steps: int, folder: Path) -> dict:
    study = read_study(HERE / "study.toml")
    config = dict(study.config)
    if discrepancy is not None:
        config["discrepancy"] = discrepancy
    study = dataclasses.replace(
        study,
        config=config,
        archive=folder / "beam.h5",
        sampler={**study.sampler, "n_steps": steps},
    )
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # verdicts are in the table
        post = run_study(study, progress=False)
        rep = post.identifiability(n_draws=100)
    out = {"seconds": round(time.perf_counter() - t, 1), "converged": bool(post.converged)}
    table = post.summary()
    for name, true in TRUE_E.items():
        row = table[f"E[{name}]"]
        out[name] = {
            "mean": row["mean"],
            "q5": row["q5"],
            "q95": row["q95"],
            "covers": bool(row["q5"] <= true <= row["q95"]),
        }
    out["warnings"] = list(rep.warnings)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="sampling budget per way")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    import make_data  # noqa: PLC0415 (beside this file)

    make_data.write(HERE / "data")
    results = {}
    for way, disc in WAYS.items():
        with tempfile.TemporaryDirectory() as tmp:
            results[way] = calibrate(disc, args.steps, Path(tmp))
    print(f"{'δ':36s} " + " ".join(f"{n:>22s}" for n in TRUE_E) + "  converged")
    print(f"{'truth (GPa)':36s} " + " ".join(f"{v / 1e9:22.0f}" for v in TRUE_E.values()))
    for way, r in results.items():
        cells = [
            f"{r[n]['mean'] / 1e9:5.1f} [{r[n]['q5'] / 1e9:5.1f}, {r[n]['q95'] / 1e9:5.1f}]"
            + (" " if r[n]["covers"] else "✗")
            for n in TRUE_E
        ]
        print(f"{way:36s} " + " ".join(f"{c:>22s}" for c in cells) + f"  {r['converged']}")
    for way, r in results.items():
        for w in r["warnings"]:
            print(f"{way}: {w}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(HERE))
    main()
