"""Sampling the joint posterior: MAP starts with L-BFGS, then emcee, vectorized over walkers.

The chain lives in the unconstrained space of :class:`calib.likelihood.Model`. Two kinds of
move: jittered HMC for all walkers at once with its step size, trajectory length and dense
mass matrix adapted across the ensemble in warm-up, the default (``moves="hmc"``,
:class:`calib.hmc.ChEESMove`; with pooled quantities :class:`calib.hmc.InterweavedMove`,
which alternates their centred and non-centred coordinates), and the derivative-free mixture
of differential evolution (80 %) and the stretch move (20 %) (``moves="de"``). Sampling
continues until every quantity has rank-normalized
split-R̂ below ``target_rhat`` and bulk ESS at least ``target_ess`` (Vehtari et al. 2021), or
the budget ends; then :class:`ConvergenceWarning` says which quantities fell short and what to
try (docs/model.md, "Sampling").

This module validates the settings (:func:`run_sampler`); the work is done by

- :mod:`calib._sampler_starts`: the MAP (:func:`find_map`) and the Laplace scatter of the
  walkers around it;
- :mod:`calib._sampler_moves`: the moves (:func:`de_moves`, :func:`pooling_flip`);
- :mod:`calib._sampler_drive`: emcee on the model, advanced in chunks between the
  convergence checks (the stopping rule) and the checkpoints of its backend
  (:class:`calib.archive.chain.ChainBackend`);
- :mod:`calib._sampler_posterior`: :func:`posterior_from_chain`;
- :mod:`calib._sampler_archive`: the sampler driven into a study archive
  (``Calibrator.sample(archive=...)``), resumed from its stored :class:`Checkpoint`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from ._sampler_drive import _continue, _run, _Settings
from ._sampler_moves import _is_hmc
from ._sampler_moves import de_moves as de_moves
from ._sampler_moves import default_moves as default_moves
from ._sampler_moves import pooling_flip as pooling_flip
from ._sampler_posterior import posterior_from_chain as posterior_from_chain
from ._sampler_starts import find_map as find_map
from ._threads import torch_threads
from ._validation import check_int, check_number, check_seed
from .archive.chain import ChainBackend
from .checkpoint import Checkpoint as Checkpoint
from .chees import CRITERIA
from .posterior import ConvergenceWarning as ConvergenceWarning

__all__ = [
    "run_sampler",
    "find_map",
    "de_moves",
    "default_moves",
    "Checkpoint",
    "ConvergenceWarning",
    "posterior_from_chain",
    "resolve_budget",
    "pooling_flip",
]

#: step budgets when ``n_steps`` is not given: HMC iterations, or ensemble-move steps
HMC_STEPS, DE_STEPS = 2000, 4000
#: warm-up iterations of the HMC move when ``warmup`` is not given (at most half the budget);
#: 200 until the trajectory cap, whose shorter trajectories settle in fewer (docs/model.md)
HMC_WARMUP = 120
#: walkers (= chains) of the HMC move when ``n_walkers`` is not given
HMC_WALKERS = 32


def resolve_budget(moves: Any, n_steps: int | None) -> int:
    """``n_steps``, or the default budget of the chosen move."""
    if n_steps is None:
        return HMC_STEPS if _is_hmc(moves) else DE_STEPS
    return n_steps


def run_sampler(
    calibrator,
    n_walkers: int | None = None,
    n_steps: int | None = None,
    seed: int | None = None,
    progress: bool | None = None,
    moves: Any = None,
    burn: int | None = None,
    n_starts: int = 8,
    autocorr_stop: bool = True,
    check_every: int | None = None,
    min_steps: int | None = None,
    init: np.ndarray | None = None,
    threads: int | None = None,
    checkpoint: Callable[[Checkpoint], None] | None = None,
    checkpoint_every: int = 500,
    resume: Checkpoint | None = None,
    warmup: int | None = None,
    max_leapfrog: int = 100,
    target_accept: float = 0.8,
    trajectory_criterion: str = "chees",
    target_ess: float = 400.0,
    target_rhat: float = 1.01,
    time_budget: float | None = None,
    interweave: bool = True,
    backend: ChainBackend | None = None,
):
    """Run emcee on the calibrator's log-posterior until the posterior has converged.

    Parameters
    ----------
    calibrator : Calibrator
    n_walkers : int, optional
        Walkers. Default ``max(32, 2·n_dim + 2)`` rounded up to even for ensemble moves
        (which need at least ``2·n_dim``); 32 for the gradient move, under which every walker
        is an independent chain (it needs an even number ≥ 4).
    n_steps : int, optional
        Step budget (iterations, warm-up included). Default 4000 for ensemble moves, 2000
        for the gradient move.
    seed : int, optional
        Fixes the MAP starts, the walkers' initial scatter and emcee's generator: the same
        seed gives the same chain.
    progress : bool, optional
        A progress bar (tqdm, on stderr) with the acceptance and, at every check, the worst
        R̂ and the smallest ESS. Default: on when stderr is a terminal.
    moves : {"hmc", "de"} or emcee move(s), optional
        ``"hmc"`` (default): :class:`calib.hmc.ChEESMove`, HMC on the autograd gradient (in
        direct mode the simulator's ∂η/∂θ by central differences: 2·q extra runs per
        gradient). ``"de"``: :func:`de_moves`, derivative-free. Or any emcee move / list of
        (move, weight). Resuming without ``moves`` continues with the archived chain's.
    burn : int, optional
        Steps discarded; default the warm-up for the gradient move, half the chain otherwise.
    n_starts : int
        MAP starts drawn from the prior (the best optimum seeds the walkers).
    autocorr_stop : bool
        Stop before the budget once every quantity has rank-normalized split-R̂ <
        ``target_rhat`` and bulk ESS ≥ ``target_ess`` (checked every ``check_every`` steps
        from ``min_steps`` on). The name is historical.
    check_every, min_steps : int, optional
        Default 50 and warm-up + 50 for the gradient move; 500 and 1000 for ensemble moves.
    init : array of shape (n_walkers, n_dim), optional
        Initial walker positions (unconstrained); skips the MAP search.
    threads : int, optional
        torch's intra-op threads while sampling. Default: 1 when the covariance blocks are
        small (≤ 256 entries), where threads cost more in synchronization than they save.
    checkpoint : callable, optional
        Without ``backend``: called with a :class:`Checkpoint` every ``checkpoint_every``
        steps and when sampling ends.
    checkpoint_every : int
        Steps between the calls of ``checkpoint`` (a ``backend`` has its own ``every``).
    resume : Checkpoint, optional
        Continue this chain instead of starting one: emcee's chain, acceptance counts,
        generator state and the move's adapted state are restored, so the continued chain
        equals an uninterrupted run.
    warmup : int, optional
        Adaptation iterations of the gradient move (discarded). Default 120 (at most
        ``n_steps // 2`` when not sampling into an archive).
    max_leapfrog : int
        Most leapfrog steps per iteration of the gradient move.
    target_accept : float
        Mean acceptance probability the gradient move's step size is adapted to; raise it
        (0.9–0.99) when divergences are reported.
    trajectory_criterion : {"chees", "chees_rate"}
        What the gradient move's trajectory length is adapted to maximize: the ChEES
        criterion per draw (default) or per gradient evaluation (``"chees_rate"``: shorter
        trajectories, 1.0–2.1× θ's ESS per second on the peers' problems before the cap
        below, but a walker can stay in a minor mode; docs/benchmarks.md). Either way T is
        capped at 4 posterior sds of the adapted metric's coordinates, where a Gaussian's
        means mix fastest per gradient (docs/model.md).
    target_ess, target_rhat : float
        The convergence targets of the stopping rule and the verdict.
    time_budget : float, optional
        Seconds: sampling stops at the first check after this much wall time (the result is
        then not reproducible from the seed alone).
    interweave : bool
        With the gradient move and pooled quantities: alternate HMC iterations in the
        centred and the non-centred coordinates of every pooled group
        (:class:`calib.hmc.InterweavedMove`); False keeps to the model's own coordinates.
    backend : calib.archive.chain.ChainBackend, optional
        The emcee backend the chain is written through. ``Calibrator.sample(archive=...)``
        passes one on the study archive, which checkpoints every ``backend.every`` steps
        and when sampling ends. Default: a backend in memory only (or one that calls
        ``checkpoint``).

    Returns
    -------
    Posterior
        With ``converged`` set; a :class:`ConvergenceWarning` was emitted if it is False.
    """

    model = calibrator.model
    d = model.n_dim
    if moves is None and resume is not None and resume.info.get("moves") in ("hmc", "de"):
        moves = resume.info["moves"]  # continue with the archived chain's moves
    hmc = _is_hmc(moves)
    n_steps = check_int(resolve_budget(moves, n_steps), "n_steps", 2)
    seed = check_seed(seed)
    if n_walkers is None:
        n_walkers = HMC_WALKERS if hmc else max(32, 2 * d + 2)
        n_walkers += n_walkers % 2
    least = 4 if hmc else 2 * d
    if (
        isinstance(n_walkers, bool)
        or not isinstance(n_walkers, (int, np.integer))
        or n_walkers < least
        or n_walkers % 2
    ):
        why = "the gradient move adapts across walkers" if hmc else "emcee's ensemble moves"
        raise ValueError(
            f"n_walkers must be an even integer ≥ {least} ({why} need it), got {n_walkers!r}"
        )
    backend = _backend(backend, checkpoint, checkpoint_every)
    if warmup is None:
        # into an archive the warm-up does not depend on the budget, so that a run resumed
        # to a larger budget equals the uninterrupted one
        warmup = (HMC_WARMUP if backend.records else min(HMC_WARMUP, n_steps // 2)) if hmc else 0
    check_int(warmup, "warmup", 0)
    if hmc and warmup >= n_steps and not backend.records:
        # (into an archive a short first run may stop inside the warm-up and be resumed)
        raise ValueError(f"warmup must be smaller than n_steps = {n_steps}, got {warmup}")
    check_int(max_leapfrog, "max_leapfrog", 1)
    check_number(target_accept, "target_accept", 0, 1)
    if trajectory_criterion not in CRITERIA:
        raise ValueError(
            f"trajectory_criterion must be one of {CRITERIA}, got {trajectory_criterion!r}"
        )
    if check_every is None:
        check_every = 50 if hmc else 500
    check_int(check_every, "check_every", 1)
    if min_steps is None:
        min_steps = warmup + 50 if hmc else 1000
    check_int(min_steps, "min_steps", 0)
    check_int(n_starts, "n_starts", 1)
    if burn is not None and check_int(burn, "burn", 0) >= n_steps:
        raise ValueError(f"burn: expected an integer in [0, n_steps = {n_steps}), got {burn!r}")
    check_number(target_ess, "target_ess", 0)
    check_number(target_rhat, "target_rhat", 1)
    if time_budget is not None:
        check_number(time_budget, "time_budget", 0, what="a positive number of seconds")
    if threads is not None:
        check_int(threads, "threads", 1)
    if progress is None:
        progress = sys.stderr.isatty()
    rng = np.random.default_rng(seed)
    if threads is None and model.Nmax <= 256:
        threads = 1
    run = _Settings(
        n_walkers=int(n_walkers),
        n_steps=int(n_steps),
        seed=seed,
        progress=progress,
        moves=moves,
        hmc=hmc,
        burn=burn,
        n_starts=n_starts,
        autocorr_stop=autocorr_stop,
        check_every=int(check_every),
        min_steps=int(min_steps),
        backend=backend,
        warmup=int(warmup),
        max_leapfrog=int(max_leapfrog),
        target_accept=float(target_accept),
        trajectory_criterion=trajectory_criterion,
        target_ess=float(target_ess),
        target_rhat=float(target_rhat),
        time_budget=time_budget,
        interweave=bool(interweave),
    )
    with torch_threads(threads):
        if resume is not None:
            return _continue(model, calibrator, run, resume)
        return _run(model, calibrator, run, init, rng)


def _backend(
    backend: ChainBackend | None,
    checkpoint: Callable[[Checkpoint], None] | None,
    checkpoint_every: int,
) -> ChainBackend:
    """The backend the chain is written through: ``backend``, or one in memory that calls
    ``checkpoint`` (if given) every ``checkpoint_every`` steps and when sampling ends."""
    if backend is None:
        check_int(checkpoint_every, "checkpoint_every", 1)
        calls = None if checkpoint is None else _Calls(checkpoint)
        return ChainBackend(calls, every=int(checkpoint_every), hold_last=False)
    if not isinstance(backend, ChainBackend):
        raise TypeError(f"backend must be a calib.archive.chain.ChainBackend, got {backend!r}")
    if checkpoint is not None:
        raise ValueError("give backend= or checkpoint=, not both: a backend writes checkpoints")
    backend.every = check_int(backend.every, "checkpoint_every", 1)
    return backend


class _Calls:
    """A ``checkpoint`` callable as the writer of a :class:`ChainBackend`."""

    def __init__(self, fn: Callable[[Checkpoint], None]):
        self.fn = fn

    def checkpoint(self, cp: Checkpoint, posterior: Any = None) -> None:
        self.fn(cp)
