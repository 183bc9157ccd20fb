"""One run of a peer package (surmise or SEPIA) on its own ball-drop problem.

Run with the PEERS' interpreter (benchmarks/peers_env.sh makes it), not the project's:

    /tmp/peers-venv/bin/python benchmarks/peer_runs.py --problem ball_drop_2 --seed 0 \
        --out /tmp/bd2.npz [--steps N] [--data ../shared/data/ball_drop]

It imports only numpy, scipy and the peer package (neither calib nor torch), builds the
peer's problem from ``shared/data/ball_drop`` as the peer's own example builds it, through
the peer's public API, and writes one ``.npz``:

- ``chain``: θ's draws after burn-in, ``(n_draws, d)``, native units; ``names``: θ's names;
- ``wall_s``, ``cpu_s``: ``time.perf_counter`` / ``time.process_time`` around the MCMC
  call only (burn-in included), as benchmarks/peers.py times calib's ``sample()``;
- ``setup_wall_s``, ``setup_cpu_s``: reading the data and building the model (surmise:
  the PCGP emulator fit; SEPIA: ``SepiaData``, bases and ``SepiaModel``), and for SEPIA
  ``tune_wall_s``, ``tune_cpu_s``: its ``tune_step_sizes`` (the notebooks' step-size
  tuning before ``do_mcmc``);
- ``peer``, ``version``, ``settings`` (a JSON string), ``problem``, ``seed``,
  ``acceptance`` (surmise's MH rate; NaN for SEPIA).

Problems (names as in benchmarks/peers.py; settings from shared/data/ball_drop/README.md):

- ``surmise_linear``: surmise's ``tests/shared_scenario.py`` linear ball drop; PCGP
  emulator, ``directbayes`` calibrator with ``metropolis_hastings`` (the scenario's
  ``DEFAULT_MH_SPECS``: normal steps, 1,000 burn-in; step sd 0.4 per θ, see
  :data:`SURMISE_STEP`, ``--step-param`` to change it) for 20,000 draws; priors
  θ0 ~ N(0, 5²), θ1 ~ Gamma(2, scale 10); known variances.
- ``ball_drop_1``, ``ball_drop_2``: SEPIA's ``examples/Ball_Drop/ball_drop_{1,2}.ipynb``:
  ``transform_xt``, ``standardize_y``, a PCA basis of 2 (3) components, the notebooks'
  normal-kernel δ basis over height, ``tune_step_sizes(50, 20)``, then ``do_mcmc`` of
  11,000 sweeps of which the first 1,000 are discarded.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

PROBLEMS = ("surmise_linear", "ball_drop_1", "ball_drop_2")
_DEFAULT_DATA = Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "ball_drop"

#: the README's lengths: (draws kept, burn-in)
SURMISE_STEPS, SURMISE_BURN = 20_000, 1_000
SEPIA_SWEEPS, SEPIA_BURN = 11_000, 1_000
SEPIA_TUNE = (50, 20)  # tune_step_sizes(n_burn, n_levels), as in both notebooks
# surmise's MH step sd per θ: 0.4, the step of surmise's own directbayes test
# (tests/test_cal_directbayes.py, ``stepParam: [0.4]``). The scenario's default (None: the
# sd of prior draws, about (5, 14) here) accepts 0.5 % of proposals, τ_int in the
# hundreds; 0.4 gives τ_int 24.5 / 19.4 sweeps, the README's recorded 26.5 / 19.5.
SURMISE_STEP = (0.4, 0.4)


def _timed(fn):
    """``fn()`` and its (wall, CPU) seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _csv(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """A comma-separated table and its header (None when the first line is numeric)."""
    first = path.read_text().splitlines()[0]
    try:
        [float(v) for v in first.split(",")]
        header = None
    except ValueError:
        header = [h.strip() for h in first.split(",")]
    return np.loadtxt(path, delimiter=",", skiprows=0 if header is None else 1, ndmin=1), header


# ------------------------------------------------------------------------------ surmise
class _SurmisePrior:
    """surmise's prior interface (``lpdf``, ``rnd``) for the scenario's priors.

    ``priorphys_lin`` of surmise's shared_scenario.py: θ0 ~ N(0, 5), θ1 ~ Gamma(shape 2,
    scale 10); ``rnd`` draws from surmise's own RNG, as surmise's samplers do.
    """

    @staticmethod
    def lpdf(theta):
        lp = stats.norm.logpdf(theta[:, 0], 0, 5) + stats.gamma.logpdf(theta[:, 1], 2, 0, 10)
        return lp.reshape((len(theta), 1))

    @staticmethod
    def rnd(n):
        from surmise._RandomNumberGenerator import RandomNumberGenerator

        rng = RandomNumberGenerator().scipy_stats_RNG
        return np.vstack(
            (
                stats.norm.rvs(0, 5, size=n, random_state=rng),
                stats.gamma.rvs(2, 0, 10, size=n, random_state=rng),
            )
        ).T


def run_surmise_linear(
    data: Path, seed: int, steps: int | None, step_param: list[float] | None = None
) -> dict:
    """surmise's linear ball drop: PCGP emulator, directbayes with Metropolis-Hastings."""
    from surmise import calibrator, emulator, set_RNG

    step_param = list(SURMISE_STEP) if step_param is None else list(step_param)
    n_samples = SURMISE_STEPS if steps is None else int(steps)
    n_burn = SURMISE_BURN if steps is None else min(SURMISE_BURN, max(n_samples // 10, 1))
    settings = {
        "emulator": "PCGP",
        "calibrator": "directbayes",
        "sampler": "metropolis_hastings",
        "nSamples": n_samples,
        "nBurnSamples": n_burn,
        "theta0": None,
        "stepType": "Normal",
        "stepParam": step_param,
        "prior": "theta0 ~ N(0, 5), theta1 ~ Gamma(shape 2, scale 10)",
        "rng": f"surmise.set_RNG(numpy.random.default_rng({seed}))",
    }
    set_RNG(np.random.default_rng(seed))

    def setup():
        d = data / "surmise_linear"
        x, _ = _csv(d / "x.csv")
        theta, names = _csv(d / "theta.csv")
        f, _ = _csv(d / "f.csv")
        y, _ = _csv(d / "y.csv")
        obsvar, _ = _csv(d / "obsvar.csv")
        # the scenario passes x as an object array (its columns: time, starting height)
        x = x.astype("object")
        emu = emulator(x=x, theta=theta, f=f, method="PCGP")
        return emu, x, y, obsvar, names or ["theta0", "theta1"]

    (emu, x, y, obsvar, names), setup_wall, setup_cpu = _timed(setup)
    args = {k: settings[k] for k in ("sampler", "nSamples", "nBurnSamples", "theta0")}
    args.update(
        stepType=settings["stepType"],
        stepParam=np.asarray(step_param, dtype=float),
        verbose=False,
    )

    def sample():
        return calibrator(
            emu=emu,
            y=y,
            x=x,
            thetaprior=_SurmisePrior,
            method="directbayes",
            yvar=obsvar,
            args=args,
        )

    cal, wall, cpu = _timed(sample)
    chain = np.asarray(cal.info["thetarnd"], dtype=float)
    # the MH sampler's rate over the kept draws (a moved state differs from its predecessor)
    acc = float(np.mean(np.any(np.diff(chain, axis=0) != 0, axis=1)))
    return {
        "chain": chain,
        "names": names,
        "wall_s": wall,
        "cpu_s": cpu,
        "setup_wall_s": setup_wall,
        "setup_cpu_s": setup_cpu,
        "tune_wall_s": 0.0,
        "tune_cpu_s": 0.0,
        "acceptance": acc,
        "peer": "surmise",
        "version": importlib.metadata.version("surmise"),
        "settings": settings,
    }


# -------------------------------------------------------------------------------- SEPIA
def _normal_kernels(at: np.ndarray, grid: np.ndarray, width: float) -> np.ndarray:
    """SEPIA's δ basis of the notebooks: ``(len(grid), len(at))`` normal densities."""
    return np.stack([stats.norm.pdf(at, g, width) for g in grid])


def _sepia_data(problem: str, data: Path):
    """The SepiaData of a notebook, standardized, with its K and D bases; θ's names."""
    from sepia.SepiaData import SepiaData

    if problem == "ball_drop_1":
        d = data / "sepia_bd1"
        design = np.loadtxt(d / "sim.design")  # 25 runs x (R, C), native units
        y_sim = np.loadtxt(d / "sim.dat").T  # (runs, 16 heights)
        h_sim = np.loadtxt(d / "sim.height")
        y_obs = np.loadtxt(d / "field.dat")  # (3 balls, 4 heights)
        h_obs = np.loadtxt(d / "field.height")
        radii = np.loadtxt(d / "field.radii")
        sd = SepiaData(
            x_sim=design[:, :1],
            t_sim=design[:, 1:2],
            y_sim=y_sim,
            y_ind_sim=h_sim,
            x_obs=radii.reshape(-1, 1),
            y_obs=y_obs,
            y_ind_obs=h_obs,
        )
        n_pc, grid, width, names = 2, h_sim, 1.5, ["C"]
    elif problem == "ball_drop_2":
        d = data / "sepia_bd2"
        field = np.loadtxt(d / "fieldDat12x6gparam.txt")
        x_obs = np.loadtxt(d / "desNative4x2Rrho.txt")  # 4 balls x (R, rho_ball)
        y_obs = field[:, 4].reshape(4, 3)  # drop times, one ball a row
        h_obs = field[0:3, 3]
        sim = np.loadtxt(d / "desNative80x4Cg.txt")
        h_sim = np.loadtxt(d / "simHeights101x1")
        y_sim = np.loadtxt(d / "sims101x80Cg.txt").T
        sd = SepiaData(
            x_sim=sim[:, 0:2],
            t_sim=sim[:, 2:4],
            y_sim=y_sim,
            y_ind_sim=h_sim,
            x_obs=x_obs,
            y_obs=y_obs,
            y_ind_obs=h_obs,
        )
        grid = np.linspace(min(h_sim), max(h_sim), 20, dtype=int)
        n_pc, width, names = 3, max(grid) / 20, ["C", "g"]
    else:
        raise ValueError(f"unknown SEPIA problem {problem!r}")
    sd.transform_xt()
    sd.standardize_y()
    sd.create_K_basis(n_pc)
    sd.create_D_basis(
        D_obs=_normal_kernels(h_obs, grid, width), D_sim=_normal_kernels(h_sim, grid, width)
    )
    settings = {
        "K_basis_components": n_pc,
        "D_basis": f"{len(grid)} normal kernels of sd {width:g} at heights {list(map(float, grid))}",
        "transform_xt": True,
        "standardize_y": True,
        "tune_step_sizes": list(SEPIA_TUNE),
        "priors": "SEPIA's defaults (theta uniform on the design range)",
    }
    return sd, names, settings


def run_sepia(problem: str, data: Path, seed: int, steps: int | None) -> dict:
    """A SEPIA notebook's model: tuned Metropolis-within-Gibbs, burn-in discarded."""
    from sepia.SepiaModel import SepiaModel

    sweeps = SEPIA_SWEEPS if steps is None else int(steps)
    burn = SEPIA_BURN if steps is None else min(SEPIA_BURN, sweeps // 10)
    # SEPIA draws from numpy's global generator
    np.random.seed(seed)

    def setup():
        sd, names, settings = _sepia_data(problem, data)
        return SepiaModel(sd), names, settings

    (model, names, settings), setup_wall, setup_cpu = _timed(setup)
    _, tune_wall, tune_cpu = _timed(
        lambda: model.tune_step_sizes(*SEPIA_TUNE, prog=False, verbose=False)
    )
    n_before = model.get_num_samples()
    _, wall, cpu = _timed(lambda: model.do_mcmc(sweeps, prog=False))
    samples = model.get_samples(nburn=n_before + burn)
    chain = np.asarray(samples["theta_native"], dtype=float).reshape(-1, len(names))
    settings.update(sweeps=sweeps, burn_in=burn, rng=f"numpy.random.seed({seed})")
    return {
        "chain": chain,
        "names": names,
        "wall_s": wall,
        "cpu_s": cpu,
        "setup_wall_s": setup_wall,
        "setup_cpu_s": setup_cpu,
        "tune_wall_s": tune_wall,
        "tune_cpu_s": tune_cpu,
        "acceptance": float("nan"),
        "peer": "SEPIA",
        "version": importlib.metadata.version("sepia"),
        "settings": settings,
    }


def run(
    problem: str,
    data: Path,
    seed: int,
    steps: int | None = None,
    step_param: list[float] | None = None,
) -> dict:
    """One peer run of ``problem``; its chain, times and settings (see the module doc)."""
    if problem == "surmise_linear":
        out = run_surmise_linear(data, seed, steps, step_param)
    elif problem in ("ball_drop_1", "ball_drop_2"):
        out = run_sepia(problem, data, seed, steps)
    else:
        raise ValueError(f"unknown problem {problem!r}; expected one of {list(PROBLEMS)}")
    out.update(problem=problem, seed=seed, load_average=list(os.getloadavg()))
    return out


def save(out: dict, path: Path) -> None:
    """Write a run as plain arrays (no pickle: strings as unicode arrays, settings JSON)."""
    arrays = {
        "chain": out["chain"],
        "names": np.array(out["names"], dtype=str),
        "settings": np.array(json.dumps(out["settings"])),
        "load_average": np.array(out["load_average"], dtype=float),
    }
    for k in ("peer", "version", "problem"):
        arrays[k] = np.array(str(out[k]))
    for k in ("wall_s", "cpu_s", "setup_wall_s", "setup_cpu_s", "tune_wall_s", "tune_cpu_s"):
        arrays[k] = np.array(float(out[k]))
    arrays["acceptance"] = np.array(float(out["acceptance"]))
    arrays["seed"] = np.array(int(out["seed"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problem", required=True, choices=PROBLEMS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="the .npz to write")
    ap.add_argument(
        "--steps",
        type=int,
        default=None,
        help="MCMC length (surmise: draws kept, SEPIA: sweeps); default the README's",
    )
    ap.add_argument(
        "--step-param",
        default=None,
        help="surmise only: MH step sds, comma-separated (default 0.4,0.4)",
    )
    ap.add_argument("--data", default=str(_DEFAULT_DATA), help="shared/data/ball_drop")
    args = ap.parse_args(argv)
    if args.step_param is not None and args.problem != "surmise_linear":
        ap.error("--step-param: only for surmise_linear (SEPIA tunes its own steps)")
    data = Path(args.data).resolve()
    if not data.is_dir():
        ap.error(f"--data: no folder {data}")
    # the peers print progress and notes: keep stdout for this script's one line
    with contextlib.redirect_stdout(sys.stderr):
        step = None if args.step_param is None else [float(v) for v in args.step_param.split(",")]
        out = run(args.problem, data, args.seed, args.steps, step)
    save(out, Path(args.out))
    print(
        json.dumps(
            {
                "problem": args.problem,
                "out": args.out,
                "n_draws": int(out["chain"].shape[0]),
                "wall_s": round(out["wall_s"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
