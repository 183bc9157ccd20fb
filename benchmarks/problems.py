"""Calibration problems for the sampling benchmark (benchmarks/sampling.py).

Each function builds a :class:`calib.Calibrator` from synthetic data, deterministically
for a given ``seed``, and attaches the values the data were generated with as
``cal.truth`` (a dict; population values on the scale calib reports them: ``"<p>.mean"``
and ``"<p>.scale"`` of ``u = g(θ)``).

- :func:`quickstart`: README / examples/quickstart.py exactly (7-d): E partially pooled
  over 3 batches of 8 loads, a shared rbf δ over the load, known noise 0.2 mm.
- :func:`hierarchy28`: 8 campaigns of 10 points of ``y = a·x + b·x²`` with ``a`` and ``b``
  partially pooled and a noise sd per campaign, no δ (28-d, direct mode).
- :func:`beam3`: a clamped FE cantilever (``simulators.beam``) replaced by a GP emulator
  fitted on 80 Latin-hypercube runs; E partially pooled over 3 batches, a shared δ over
  (load, load position, sensor position), known noise; the field beam has a compliant
  support the simulator lacks (9-d, emulator mode).

``PROBLEMS`` maps their names to the functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from calib import Calibrator, Campaign, Discrepancy, Parameter, run_design
from calib.design import latin_hypercube
from calib.priors import HalfNormal, Normal
from simulators import FunctionSimulator
from simulators.beam import BeamSimulator

__all__ = ["quickstart", "hierarchy28", "beam3", "PROBLEMS"]


def quickstart(seed: int = 0, centered: bool = True) -> Calibrator:
    """The README's quickstart problem (``seed=0`` gives it exactly): n_dim 7.

    Tip deflection ``1000·load / (3E)`` (mm; load 5–50 kN, E in GPa) of three batches with
    E = 195, 204, 212 GPa, 8 loads each, plus the model error ``0.6·sin(load / 8)`` and
    noise N(0, 0.2²).
    """
    sim = FunctionSimulator(
        lambda X, T: 1000 * X[:, :1] / (3 * T[:, :1]),
        input_names=("load",),
        parameter_names=("E",),
        output_names=("deflection",),
        vectorized=True,
    )
    rng = np.random.default_rng(seed)
    campaigns = []
    truth = {}
    for name, E in [("batch-A", 195.0), ("batch-B", 204.0), ("batch-C", 212.0)]:
        load = rng.uniform(5, 50, 8)
        y = 1000 * load / (3 * E) + 0.6 * np.sin(load / 8) + 0.2 * rng.standard_normal(8)
        campaigns.append(Campaign(name, x=load, y=y, noise_sd=0.2))
        truth[f"E[{name}]"] = E
    E = Parameter("E", lower=150, upper=250, pooling="partial", centered=centered)
    cal = Calibrator(
        sim,
        [E],
        campaigns,
        discrepancy=Discrepancy("shared", scale_prior=HalfNormal(2.0)),
        noise="known",
        hyperpriors={"E": {"scale": HalfNormal(0.5)}},
    )
    cal.truth = truth
    return cal


# population of hierarchy28 (a and b are unbounded, so u = θ and these are on θ's scale)
_H28 = {"a.mean": 1.5, "a.scale": 0.4, "b.mean": -0.8, "b.scale": 0.3}


def hierarchy28(
    seed: int = 0,
    n_campaigns: int = 8,
    n_points: int = 10,
    noise_range: tuple[float, float] = (0.03, 0.3),
    centered: bool = False,
) -> Calibrator:
    """Two partially pooled coefficients and per-campaign noise: n_dim 28 (default sizes).

    ``y = a_ℓ·x + b_ℓ·x²`` on ``x ~ U(0, 1)``, ``n_points`` per campaign; ``a_ℓ ~ N(1.5,
    0.4²)``, ``b_ℓ ~ N(−0.8, 0.3²)`` drawn per campaign; noise sds log-spaced from 0.03 to
    0.3 over the campaigns (in a seeded random order). Hyperpriors: means ``Normal(0, 2)``,
    scales ``HalfNormal(1)``; noise sds ``HalfNormal(0.5)``. Layout: a (mean, log scale,
    8 z), b (10), 8 log noise sds.
    """
    rng = np.random.default_rng(seed)
    sim = FunctionSimulator(
        lambda X, T: T[:, 0:1] * X[:, 0:1] + T[:, 1:2] * X[:, 0:1] ** 2,
        input_names=("x",),
        parameter_names=("a", "b"),
        output_names=("y",),
        vectorized=True,
    )
    a = _H28["a.mean"] + _H28["a.scale"] * rng.standard_normal(n_campaigns)
    b = _H28["b.mean"] + _H28["b.scale"] * rng.standard_normal(n_campaigns)
    sd = rng.permutation(np.geomspace(*noise_range, n_campaigns))
    campaigns = []
    truth = dict(_H28)
    for l in range(n_campaigns):
        x = np.sort(rng.uniform(0.0, 1.0, n_points))
        y = a[l] * x + b[l] * x**2 + sd[l] * rng.standard_normal(n_points)
        name = f"c{l}"
        campaigns.append(Campaign(name, x=x, y=y))
        truth.update({f"a[{name}]": a[l], f"b[{name}]": b[l], f"noise.sd[{name}]": sd[l]})
    cal = Calibrator(
        sim,
        [
            Parameter("a", pooling="partial", centered=centered),
            Parameter("b", pooling="partial", centered=centered),
        ],
        campaigns,
        discrepancy="none",
        noise="per_campaign",
        noise_prior=HalfNormal(0.5),
        hyperpriors={
            "a": {"mean": Normal(0.0, 2.0), "scale": HalfNormal(1.0)},
            "b": {"mean": Normal(0.0, 2.0), "scale": HalfNormal(1.0)},
        },
    )
    cal.truth = {k: float(v) for k, v in truth.items()}
    return cal


# beam3: a 2 m cantilever, I = 8e-6 m^4, deflections (mm) at four sensors
_LENGTH, _I = 2.0, 8e-6
_SENSORS = np.array([0.5, 1.0, 1.5, 2.0])
_SUPPORT_K = 1e8  # N·m/rad: the field beam's compliant clamp (a rigid rotation P·a/k)
_BEAM3_E = [("batch-A", 196.0), ("batch-B", 203.0), ("batch-C", 209.0)]
_BEAM3_NOISE = 0.15  # mm


def _beam_mm(beam: BeamSimulator, X: np.ndarray, E_gpa: np.ndarray, k: float) -> np.ndarray:
    """Deflections (mm) for rows ``X = (load kN, load position m)`` and E (GPa)."""
    X = np.asarray(X, dtype=float).reshape(-1, 2)
    E = np.asarray(E_gpa, dtype=float).reshape(-1)
    Theta = np.column_stack([E * 1e9, np.full(E.size, k)])
    return 1e3 * beam.run_batch(np.column_stack([X[:, 0] * 1e3, X[:, 1]]), Theta)


def beam3(seed: int = 0, n_runs: int = 80, n_loads: int = 6, centered: bool = False) -> Calibrator:
    """A three-batch cantilever study through a GP emulator: n_dim 9.

    Simulator: ``BeamSimulator(2 m, I = 8e-6 m⁴)`` clamped (``k = ∞``), inputs load (kN,
    5–50) and load position (m, 0.5–2), parameter E (GPa, 150–250), outputs the
    deflections (mm) at sensors 0.5, 1, 1.5, 2 m (``output_coords``). Emulator:
    ``GPEmulator(seed=0)`` on an ``n_runs`` Latin hypercube over (load, position, E).
    Field data: per batch (E = 196, 203, 209 GPa) ``n_loads`` load cases at random loads
    and positions, all four sensors (72 values in all), from the same beam on a compliant
    support (``k = 1e8`` N·m/rad: adds ``P·a·s/k``, at most 2 mm, 0.4 mm on average, about
    2 % of the deflection) plus noise N(0, 0.15²) mm (known). E partially pooled
    (Uniform(150, 250) bounds, scale hyperprior HalfNormal(0.5)); shared rbf δ over (load,
    load_position, sensor position) with scale prior HalfNormal(2.0) mm. The support
    compliance is largely confounded with E (it softens the beam), so E's posterior sits
    below ``cal.truth`` (the values the data were made with): the KOH identifiability
    problem, not a sampler error. The emulator's held-out RMSE is 0.004–0.085 mm over the
    sensors (Q² > 0.9999), below the noise.
    """
    from emulators import GPEmulator  # lazily: torch/GPyTorch fit only for this problem

    beam = BeamSimulator(_LENGTH, _I, sensors=_SENSORS)
    sim = FunctionSimulator(
        lambda X, T: _beam_mm(beam, X, T[:, 0], np.inf),
        input_names=("load", "load_position"),
        parameter_names=("E",),
        output_names=beam.output_names,
        vectorized=True,
        output_coords=beam.output_coords,
    )
    E = Parameter("E", lower=150, upper=250, pooling="partial", centered=centered)
    design = latin_hypercube(
        sim, [E], n=n_runs, x_bounds={"load": (5.0, 50.0), "load_position": (0.5, 2.0)}, seed=seed
    )
    runs = run_design(sim, design, executor="serial", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of an over-smooth output is benign
        em = GPEmulator(seed=0).fit(runs.inputs, runs.outputs)
    rng = np.random.default_rng(seed + 1000)
    campaigns = []
    truth = {}
    for name, e in _BEAM3_E:
        X = np.column_stack([rng.uniform(5.0, 50.0, n_loads), rng.uniform(0.5, 2.0, n_loads)])
        y = _beam_mm(beam, X, np.full(n_loads, e), _SUPPORT_K)
        y = y + _BEAM3_NOISE * rng.standard_normal(y.shape)
        campaigns.append(Campaign(name, x=X, y=y, noise_sd=_BEAM3_NOISE))
        truth[f"E[{name}]"] = e
    cal = Calibrator(
        em,
        [E],
        campaigns,
        discrepancy=Discrepancy("shared", scale_prior=HalfNormal(2.0)),
        noise="known",
        hyperpriors={"E": {"scale": HalfNormal(0.5)}},
        input_names=sim.input_names,
        output_coords=beam.output_coords,
    )
    cal.truth = truth
    cal.emulator_runs = n_runs
    return cal


PROBLEMS: dict[str, Callable[..., Calibrator]] = {
    "quickstart": quickstart,
    "hierarchy28": hierarchy28,
    "beam3": beam3,
}
