"""Field data of the beam demo: three batches of an alloy tested on a cantilever.

Reality is a 2 m cantilever whose support is slightly flexible (a rotational spring of
stiffness ``SUPPORT_STIFFNESS``), made of three batches whose Young's modulus differs.
Each batch is tested ``TESTS`` times: a point load at some position, the deflection read
at two sensors with a gauge of sd ``NOISE_SD``. The study (study.toml) calibrates a
simulator that assumes a perfect clamp, so it needs a discrepancy δ.

Run as ``python examples/beam/make_data.py``: writes ``data/batch-*.csv`` beside this
file (a fixed seed: the same files every time).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simulators.beam import BeamSimulator

#: The true values (study.toml repeats them under [outputs.truth]; a test checks both agree).
TRUE_E = {"batch-A": 195e9, "batch-B": 204e9, "batch-C": 212e9}  # Pa
SUPPORT_STIFFNESS = 4e8  # N·m/rad: the support rotates by P·a/k (a clamp: k = ∞)
NOISE_SD = 1e-4  # m, the gauge's sd
TESTS = 6  # load cases per batch
SEED = 2024


def beam() -> BeamSimulator:
    """The beam of the study (study.toml's [simulator.options])."""
    return BeamSimulator(length=2.0, second_moment=8e-6, sensors=[1.0, 2.0], n_elements=20)


def write(folder: Path) -> list[Path]:
    """Write one CSV per batch into ``folder``; returns their paths."""
    sim = beam()
    rng = np.random.default_rng(SEED)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, E in TRUE_E.items():
        x = np.column_stack([rng.uniform(2e3, 1e4, TESTS), rng.uniform(1.0, 2.0, TESTS)])
        theta = np.tile([E, SUPPORT_STIFFNESS], (TESTS, 1))
        y = sim.run_batch(x, theta) + NOISE_SD * rng.standard_normal((TESTS, 2))
        path = folder / f"{name}.csv"
        rows = [",".join(("load", "load_position", *sim.output_names))]
        rows += [",".join(f"{v:.10g}" for v in row) for row in np.hstack([x, y])]
        path.write_text("\n".join(rows) + "\n")
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in write(Path(__file__).resolve().parent / "data"):
        print(f"wrote {p}")
