"""Field data of the reaction-network example: four experiments of A → B → C.

A substrate A is converted to an intermediate B (rate k1) that decays to C (rate k2). Each
experiment (a fresh enzyme preparation) has its own k1 — preparations differ in activity —
while k2, a property of the intermediate, is the same in all. Every experiment starts from
three initial concentrations ``A0`` and measures B at four times with a noisy assay (sd
``NOISE_SD``). The study (study.toml) pools k1 partially across the experiments and
predicts the time course of a fifth, unseen preparation.

Run as ``python examples/reaction_network/make_data.py``: writes ``data/exp-*.csv`` and
``new_experiment.csv`` (the inputs to predict at) beside this file, with a fixed seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simulators.reaction_network import ReactionNetworkSimulator

#: The true values (study.toml repeats them under [outputs.truth]; a test checks both agree).
TRUE_K1 = {"exp-1": 0.8, "exp-2": 1.1, "exp-3": 0.65, "exp-4": 0.95}  # 1/h
TRUE_K2 = 0.4  # 1/h
NOISE_SD = 0.02  # the assay's sd (concentration units)
A0 = (0.5, 1.0, 2.0)  # initial concentrations of each experiment
SEED = 7


def network() -> ReactionNetworkSimulator:
    """The network of the study (study.toml's [simulator.options])."""
    return ReactionNetworkSimulator(
        [("A -> B", "k1"), ("B -> C", "k2")],
        initial={"A": "A0"},
        times=[0.5, 1.0, 2.0, 4.0],
        observed=["B"],
    )


def write(folder: Path) -> list[Path]:
    """Write one CSV per experiment into ``folder/data`` and the prediction inputs."""
    sim = network()
    rng = np.random.default_rng(SEED)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    paths = []
    x = np.array(A0).reshape(-1, 1)
    for name, k1 in TRUE_K1.items():
        theta = np.tile([k1, TRUE_K2], (len(A0), 1))
        y = sim.run_batch(x, theta) + NOISE_SD * rng.standard_normal((len(A0), 4))
        path = folder / "data" / f"{name}.csv"
        rows = [",".join(("A0", *sim.output_names))]
        rows += [",".join(f"{v:.10g}" for v in row) for row in np.hstack([x, y])]
        path.write_text("\n".join(rows) + "\n")
        paths.append(path)
    new = folder / "new_experiment.csv"
    new.write_text("A0\n0.75\n1.5\n")
    paths.append(new)
    return paths


if __name__ == "__main__":
    for p in write(Path(__file__).resolve().parent):
        print(f"wrote {p}")
