"""Writes the example study's data (fixed seed): two cups of one make, cooling in air at
18, 21 and 24 °C, read at 1, 5 and 10 minutes with a thermometer of sd 0.3 °C; the true
cooling rate is k = 0.1 per minute."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the plug-in's package, installed or not

from calib_cooling import CoolingSimulator  # noqa: E402


def main() -> None:
    sim = CoolingSimulator(times=[1.0, 5.0, 10.0], initial=90.0)
    rng = np.random.default_rng(0)
    air = np.array([[18.0], [21.0], [24.0]])
    for name in ("cup-A", "cup-B"):
        T = sim.run_batch(air, np.full((3, 1), 0.1)) + 0.3 * rng.standard_normal((3, 3))
        rows = ["air," + ",".join(sim.output_names)]
        rows += [",".join(f"{v:.3f}" for v in (a[0], *t)) for a, t in zip(air, T)]
        (HERE / f"{name}.csv").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
