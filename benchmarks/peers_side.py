"""Run a peer (surmise, SEPIA) beside calib and measure it with calib's own ESS estimator.

benchmarks/peers.py compares calib's min ESS/s with the peers' on their own ball-drop
problems; issue 16 asks for that ratio *measured in one run*. This module runs the peer in
its own interpreter (a separate virtual environment, benchmarks/peers_env.sh), through
benchmarks/peer_runs.py, so that peer and calib runs can alternate on the same machine
under the same load, and summarizes the peer's chain as calib's figures are summarized:

- the rank-normalized bulk ESS of ``calib.diagnostics.ess_bulk`` (the estimator
  ``post.diagnostics()`` uses), the peer's one chain taken as one chain (split in halves,
  as every chain is); ``tau_int`` is ``n_draws / ess_bulk``;
- min ESS/s over θ per wall second and per CPU second of the peer's MCMC call alone
  (burn-in included; the model build and SEPIA's step-size tuning are reported apart, as
  calib's figure times ``sample()`` and not the emulator fit).

The peer runs with one BLAS/OpenMP thread by default (``threads=1``), as calib's benchmark
runs torch with one thread.

Example
-------
>>> from benchmarks.peers_side import peer_available, run_peer    # doctest: +SKIP
>>> if peer_available():                                          # doctest: +SKIP
...     r = run_peer("ball_drop_2", seed=0)
...     r["min_ess_per_s"], r["theta_mean"]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":
    # run as a script, this file's folder comes first on sys.path and benchmarks/emulators.py
    # would shadow the emulators package that calib may import
    _HERE = Path(__file__).resolve().parent
    sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402

from calib.diagnostics import ess_bulk, rhat  # noqa: E402

__all__ = ["DEFAULT_PYTHON", "PEER_PROBLEMS", "chain_figures", "peer_available", "run_peer"]

DEFAULT_PYTHON = "/tmp/peers-venv/bin/python"
PEER_PROBLEMS = ("surmise_linear", "ball_drop_1", "ball_drop_2")
_SCRIPT = Path(__file__).resolve().parent / "peer_runs.py"
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _data_root() -> Path | None:
    """``shared/data/ball_drop`` beside or inside the repository, nearest first."""
    here = Path(__file__).resolve().parent
    for folder in (here, *here.parents):
        for cand in (folder / "shared", folder.parent / "shared"):
            if (cand / "data" / "ball_drop" / "sepia_bd1" / "sim.dat").is_file():
                return cand / "data" / "ball_drop"
    return None


def _status(python: str) -> str | None:
    """None when ``python`` runs and imports both peers, otherwise why not."""
    if not Path(python).is_file():
        return f"no peers' interpreter at {python} (make it with benchmarks/peers_env.sh)"
    try:
        proc = subprocess.run(
            [python, "-c", "import sepia.SepiaModel, surmise.calibration, surmise.emulation"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{python} does not run: {exc}"
    if proc.returncode != 0:
        return f"{python} cannot import surmise and SEPIA: {proc.stderr.strip()[-300:]}"
    return None


def peer_available(python: str = DEFAULT_PYTHON) -> bool:
    """Whether ``python`` exists and imports both peers (surmise and SEPIA).

    Parameters
    ----------
    python : str
        The peers' interpreter (benchmarks/peers_env.sh makes it).

    Returns
    -------
    bool
    """
    return _status(python) is None


def chain_figures(
    chain: np.ndarray, names: list[str], wall_s: float, cpu_s: float
) -> dict[str, object]:
    """Posterior mean, sd and calib's bulk ESS of one chain, and min ESS per second.

    Parameters
    ----------
    chain : array of shape (n_draws, d)
        One chain of θ, burn-in removed.
    names : list of str
        θ's names, ``d`` of them.
    wall_s, cpu_s : float
        Wall and CPU seconds of the sampling that produced ``chain``.

    Returns
    -------
    dict
        ``theta_mean``, ``theta_sd`` (ddof 1), ``ess_bulk``, ``tau_int``
        (``n_draws / ess_bulk``), ``rhat`` (split halves of the one chain), each a dict by
        name; ``min_ess``, ``min_ess_per_s`` (wall), ``min_ess_per_cpu_s``, ``n_draws``.

    Raises
    ------
    ValueError
        If ``chain`` is not 2-D with one column per name, or not finite.
    """
    chain = np.asarray(chain, dtype=float)
    if chain.ndim != 2 or chain.shape[1] != len(names):
        raise ValueError(
            f"chain: expected shape (n_draws, {len(names)}) for names {list(names)}, "
            f"got {chain.shape}"
        )
    if not np.all(np.isfinite(chain)):
        raise ValueError("chain: has non-finite draws")
    # calib's estimators take (n_steps, n_chains, k): the peer's chain is one chain
    ess = np.atleast_1d(ess_bulk(chain[:, None, :]))
    rh = np.atleast_1d(rhat(chain[:, None, :]))
    n = chain.shape[0]
    by = lambda v: {k: float(x) for k, x in zip(names, v)}  # noqa: E731
    min_ess = float(ess.min())
    return {
        "n_draws": int(n),
        "theta_mean": by(chain.mean(axis=0)),
        "theta_sd": by(chain.std(axis=0, ddof=1)),
        "ess_bulk": by(ess),
        "tau_int": by(n / ess),
        "rhat": by(rh),
        "min_ess": min_ess,
        "min_ess_per_s": min_ess / wall_s,
        "min_ess_per_cpu_s": min_ess / cpu_s,
    }


def run_peer(
    problem: str,
    seed: int,
    python: str = DEFAULT_PYTHON,
    steps: int | None = None,
    *,
    data: str | Path | None = None,
    threads: int | None = 1,
    step_param: list[float] | None = None,
    keep_chain: bool = False,
    timeout: float = 3600.0,
) -> dict[str, object]:
    """Run one peer on its own problem in the peers' interpreter and summarize its chain.

    Parameters
    ----------
    problem : {"surmise_linear", "ball_drop_1", "ball_drop_2"}
        The names of benchmarks/peers.py; surmise runs the first, SEPIA the others.
    seed : int
        The peer's seed (surmise: its RNG; SEPIA: numpy's global generator).
    python : str
        The peers' interpreter (benchmarks/peers_env.sh).
    steps : int, optional
        MCMC length (surmise: draws kept; SEPIA: sweeps, a tenth discarded up to 1,000);
        default the README's 20,000 draws and 11,000 sweeps (1,000 burn-in).
    data : path, optional
        ``shared/data/ball_drop``; default the one beside or inside the repository.
    threads : int or None
        BLAS/OpenMP threads of the peer (``None``: the environment's setting).
    step_param : list of float, optional
        surmise's MH step sds (default peer_runs.SURMISE_STEP, 0.4 per θ).
    keep_chain : bool
        Also return the chain (``chain``, shape ``(n_draws, d)``).
    timeout : float
        Seconds before the peer's process is stopped.

    Returns
    -------
    dict
        :func:`chain_figures`' keys, and ``problem``, ``seed``, ``peer``, ``version``,
        ``settings`` (dict), ``names``, ``wall_s``, ``cpu_s`` (the MCMC call),
        ``setup_wall_s``, ``setup_cpu_s`` (data and model build), ``tune_wall_s``,
        ``tune_cpu_s`` (SEPIA's step-size tuning, 0 for surmise), ``acceptance``
        (surmise; NaN for SEPIA), ``process_wall_s`` (the whole subprocess, interpreter
        start included), ``load_average``, ``python``, ``threads``.

    Raises
    ------
    ValueError
        For an unknown problem.
    RuntimeError
        If the peer's process fails (its stderr's end in the message) or times out.
    """
    if problem not in PEER_PROBLEMS:
        raise ValueError(f"problem: expected one of {list(PEER_PROBLEMS)}, got {problem!r}")
    if data is None:
        data = _data_root()
        if data is None:
            raise RuntimeError("no shared/data/ball_drop beside or inside the repository")
    env = dict(os.environ)
    if threads is not None:
        env.update(dict.fromkeys(_THREAD_VARS, str(int(threads))))
    with tempfile.TemporaryDirectory(prefix="peer_run_") as tmp:
        out = Path(tmp) / f"{problem}_{seed}.npz"
        cmd = [python, str(_SCRIPT), "--problem", problem, "--seed", str(int(seed))]
        cmd += ["--out", str(out), "--data", str(data)]
        if steps is not None:
            cmd += ["--steps", str(int(steps))]
        if step_param is not None:
            cmd += ["--step-param", ",".join(str(float(v)) for v in step_param)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"{problem}: the peer ran past {timeout:g} s") from exc
        process_wall = time.perf_counter() - t0
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(
                f"{problem}: {python} {_SCRIPT.name} exited with {proc.returncode}: "
                f"{proc.stderr.strip()[-2000:]}"
            )
        # plain arrays only: strings are unicode arrays, the settings a JSON string
        with np.load(out, allow_pickle=False) as z:
            raw = {k: z[k] for k in z.files}
    names = [str(n) for n in raw["names"]]
    times = ("wall_s", "cpu_s", "setup_wall_s", "setup_cpu_s", "tune_wall_s", "tune_cpu_s")
    res: dict[str, object] = {
        "problem": problem,
        "seed": int(raw["seed"]),
        "peer": str(raw["peer"]),
        "version": str(raw["version"]),
        "settings": json.loads(str(raw["settings"])),
        "names": names,
        **{k: float(raw[k]) for k in times},
        "acceptance": float(raw["acceptance"]),
        "process_wall_s": process_wall,
        "load_average": [float(v) for v in raw["load_average"]],
        "python": python,
        "threads": threads,
    }
    res.update(chain_figures(raw["chain"], names, res["wall_s"], res["cpu_s"]))
    if keep_chain:
        res["chain"] = raw["chain"]
    return res


def main(argv: list[str] | None = None) -> None:
    """``python benchmarks/peers_side.py PROBLEM [SEED] [STEPS]``: one run, as JSON."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit(main.__doc__)
    seed = int(args[1]) if len(args) > 1 else 0
    steps = int(args[2]) if len(args) > 2 else None
    print(json.dumps(run_peer(args[0], seed, steps=steps), indent=2))


if __name__ == "__main__":
    main()
