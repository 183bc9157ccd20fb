"""Writes the archive fixture of tests/calib/test_archive_fixture.py with the calib of the
commit it is run from (``PYTHONPATH=<checkout> python make_fixture.py OUT.h5``): a small
emulator-mode study (GPEmulator on 40 runs, two campaigns, a partially pooled parameter, a
shared δ, per-campaign noise, 60 iterations). The fixture in this folder was written at
commit 62ed993 (2026-11-27), before the emulator state became version 2."""

import sys

import numpy as np

from calib import Calibrator, Campaign, Discrepancy, Parameter
from emulators import GPEmulator


def main(out: str) -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (40, 2))  # x, then θ
    Y = X[:, 1:2] * 2.0 + np.sin(3 * X[:, :1])
    em = GPEmulator(seed=0).fit(X, Y)
    camps = []
    for l, k in enumerate((0.4, 0.6)):
        x = np.linspace(0.1, 0.9, 6)
        y = 2.0 * k + np.sin(3 * x) + 0.1 * x + 0.05 * rng.standard_normal(6)
        camps.append(Campaign(f"c{l}", x=x, y=y))
    cal = Calibrator(
        em,
        [Parameter("k", 0.0, 1.0, pooling="partial")],
        camps,
        discrepancy=Discrepancy("shared"),
        noise="per_campaign",
        input_names=("x",),
    )
    cal.sample(n_walkers=8, n_steps=60, seed=3, moves="hmc", warmup=30, archive=out)


if __name__ == "__main__":
    main(sys.argv[1])
