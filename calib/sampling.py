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
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import emcee
import numpy as np
import torch
from scipy import optimize

from ._threads import torch_threads
from ._validation import check_int, check_number, check_seed
from .hmc import ChEESMove, InterweavedMove, PoolingFlip, batched_value_and_grad
from .likelihood import DTYPE
from .posterior import ConvergenceWarning, Posterior

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
#: warm-up iterations of the HMC move when ``warmup`` is not given (at most half the budget)
HMC_WARMUP = 200
#: walkers (= chains) of the HMC move when ``n_walkers`` is not given
HMC_WALKERS = 32


def de_moves() -> list[tuple[Any, float]]:
    """DEMove 0.8 + StretchMove 0.2: the derivative-free ensemble mix (docs/model.md)."""
    return [(emcee.moves.DEMove(), 0.8), (emcee.moves.StretchMove(), 0.2)]


#: the name the derivative-free mix had when it was the default
default_moves = de_moves


def _is_hmc(moves: Any) -> bool:
    """Whether ``moves`` selects the gradient move: ``"hmc"`` or the default (None)."""
    if moves is None:
        return True
    if isinstance(moves, str):
        if moves not in ("hmc", "de"):
            raise ValueError(f"moves must be 'hmc', 'de' or emcee moves, got {moves!r}")
        return moves == "hmc"
    return False


def pooling_flip(model) -> PoolingFlip | None:
    """The other parameterization of the model's pooled groups (partially pooled parameters
    and hierarchical noise), or None if it has none."""
    groups = []  # (mean, log scale, members, centred)
    for prm in model.parameters:
        if prm.pooling == "partial":
            n = prm.name
            groups.append((f"{n}.mean", f"{n}.logscale", f"{n}.z", prm.centered))
    if model.noise == "hierarchical":
        groups.append(("noise.mean", "noise.logscale", "noise.z", False))
    if not groups:
        return None
    s = model.slots
    return PoolingFlip(
        [s[m].start for m, _, _, _ in groups],
        [s[v].start for _, v, _, _ in groups],
        [list(range(s[z].start, s[z].stop)) for _, _, z, _ in groups],
        [c for _, _, _, c in groups],
    )


def resolve_budget(moves: Any, n_steps: int | None) -> int:
    """``n_steps``, or the default budget of the chosen move."""
    if n_steps is None:
        return HMC_STEPS if _is_hmc(moves) else DE_STEPS
    return n_steps


def _value_and_grad(u: np.ndarray, model) -> tuple[float, np.ndarray]:
    U = torch.as_tensor(u.reshape(1, -1), dtype=DTYPE).requires_grad_(True)
    lp = model.log_posterior(U)[0]
    if not torch.isfinite(lp):
        return math.inf, np.zeros_like(u)
    (g,) = torch.autograd.grad(lp, U)
    g = g.numpy().reshape(-1)
    if not np.isfinite(g).all():
        return math.inf, np.zeros_like(u)
    return -float(lp.detach()), -g


def find_map(
    model, starts: np.ndarray, maxiter: int = 500
) -> tuple[np.ndarray, float, list[float]]:
    """Maximize the log-posterior from each start with L-BFGS (torch autograd gradients).

    Parameters
    ----------
    model : calib.likelihood.Model
    starts : array of shape (n_starts, n_dim)

    Returns
    -------
    u_map : array of shape (n_dim,)
        The best optimum found.
    lp_map : float
        Its log-posterior.
    values : list of float
        The log-posterior reached from every start (``-inf`` where a start failed).
    """
    best_u, best = None, -math.inf
    values = []
    failures = getattr(model.forward, "failures", None)
    if failures is not None:
        failures.clear()  # what failed during this search
    for u0 in starts:
        f0, _ = _value_and_grad(u0, model)
        if not math.isfinite(f0):
            values.append(-math.inf)
            continue
        res = optimize.minimize(
            _value_and_grad,
            u0,
            args=(model,),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": maxiter},
        )
        val = -float(res.fun) if np.isfinite(res.fun) else -math.inf
        values.append(val)
        if val > best:
            best, best_u = val, np.asarray(res.x, dtype=float)
    if best_u is None:
        if failures:
            why, x, theta = failures[0]
            names = list(getattr(model.forward.model, "parameter_names", ()))
            at = ", ".join(f"{n} = {v:.6g}" for n, v in zip(names, theta)) or str(theta)
            raise RuntimeError(
                f"no start gave a finite log-posterior: the simulator failed; first, {why} "
                f"(at x = {x}, {at})"
            )
        raise RuntimeError(
            "no start gave a finite log-posterior: check that the simulator runs at the "
            "parameters' prior values and that the priors admit the data"
        )
    return best_u, best, values


def _laplace_scatter(model, u_map: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Walkers around the MAP: N(u_map, H⁻¹) from a finite-difference Hessian of the
    autograd gradient, shrunk by 1/2 so no walker starts in the tails; a small isotropic ball
    when the Hessian is not negative definite (a flat or funnel-shaped mode)."""
    d = u_map.size
    h = 1e-4
    grads = []
    for k in range(d):
        e = np.zeros(d)
        e[k] = h
        fp, gp = _value_and_grad(u_map + e, model)
        fm, gm = _value_and_grad(u_map - e, model)
        if not (math.isfinite(fp) and math.isfinite(fm)):
            grads = None
            break
        grads.append((gp - gm) / (2 * h))
    cov = None
    if grads is not None:
        H = np.array(grads)  # Hessian of −log p
        H = 0.5 * (H + H.T)
        try:
            w, V = np.linalg.eigh(H)
            if np.all(w > 1e-10):
                cov = (V / w) @ V.T
        except np.linalg.LinAlgError:
            cov = None
    if cov is None:
        return u_map + 1e-2 * rng.standard_normal((n, d))
    Lc = np.linalg.cholesky(cov + 1e-12 * np.eye(d))
    return u_map + 0.5 * rng.standard_normal((n, d)) @ Lc.T


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
    target_ess: float = 400.0,
    target_rhat: float = 1.01,
    time_budget: float | None = None,
    interweave: bool = True,
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
        Called with a :class:`Checkpoint` every ``checkpoint_every`` steps and when sampling
        ends (``Calibrator.sample(archive=...)`` passes the archive writer).
    checkpoint_every : int
        Steps between checkpoints.
    resume : Checkpoint, optional
        Continue this chain instead of starting one: emcee's chain, acceptance counts,
        generator state and the move's adapted state are restored, so the continued chain
        equals an uninterrupted run.
    warmup : int, optional
        Adaptation iterations of the gradient move (discarded). Default 200 (at most
        ``n_steps // 2`` when not sampling into an archive).
    max_leapfrog : int
        Most leapfrog steps per iteration of the gradient move.
    target_accept : float
        Mean acceptance probability the gradient move's step size is adapted to; raise it
        (0.9–0.99) when divergences are reported.
    target_ess, target_rhat : float
        The convergence targets of the stopping rule and the verdict.
    time_budget : float, optional
        Seconds: sampling stops at the first check after this much wall time (the result is
        then not reproducible from the seed alone).
    interweave : bool
        With the gradient move and pooled quantities: alternate HMC iterations in the
        centred and the non-centred coordinates of every pooled group
        (:class:`calib.hmc.InterweavedMove`); False keeps to the model's own coordinates.

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
    check_int(checkpoint_every, "checkpoint_every", 1)
    if warmup is None:
        # into an archive the warm-up does not depend on the budget, so that a run resumed
        # to a larger budget equals the uninterrupted one
        warmup = (HMC_WARMUP if checkpoint else min(HMC_WARMUP, n_steps // 2)) if hmc else 0
    check_int(warmup, "warmup", 0)
    if hmc and warmup >= n_steps and checkpoint is None:
        # (into an archive a short first run may stop inside the warm-up and be resumed)
        raise ValueError(f"warmup must be smaller than n_steps = {n_steps}, got {warmup}")
    check_int(max_leapfrog, "max_leapfrog", 1)
    check_number(target_accept, "target_accept", 0, 1)
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
        checkpoint=checkpoint,
        checkpoint_every=int(checkpoint_every),
        warmup=int(warmup),
        max_leapfrog=int(max_leapfrog),
        target_accept=float(target_accept),
        target_ess=float(target_ess),
        target_rhat=float(target_rhat),
        time_budget=time_budget,
        interweave=bool(interweave),
    )
    with torch_threads(threads):
        if resume is not None:
            return _continue(model, calibrator, run, resume)
        return _run(model, calibrator, run, init, rng)


@dataclass
class _Settings:
    """The sampler's settings, validated by :func:`run_sampler`."""

    n_walkers: int
    n_steps: int
    seed: int | None
    progress: bool
    moves: Any
    hmc: bool
    burn: int | None
    n_starts: int
    autocorr_stop: bool
    check_every: int
    min_steps: int
    checkpoint: Callable[[Checkpoint], None] | None
    checkpoint_every: int
    warmup: int
    max_leapfrog: int
    target_accept: float
    target_ess: float
    target_rhat: float
    time_budget: float | None
    interweave: bool


def _run(model, calibrator, run: _Settings, init: np.ndarray | None, rng: np.random.Generator):
    d = model.n_dim
    n_walkers = run.n_walkers
    if init is None:
        starts = model.sample_prior(rng, run.n_starts)
        u_map, lp_map, _ = find_map(model, starts)
        p0 = _laplace_scatter(model, u_map, n_walkers, rng)
    else:
        p0 = np.asarray(init, dtype=float)
        if p0.shape != (n_walkers, d):
            raise ValueError(f"init: expected shape ({n_walkers}, {d}), got {p0.shape}")
        u_map, lp_map = None, None
    # walkers that start where the posterior is -inf are moved to the MAP (or a valid walker)
    lp0 = model.log_posterior_numpy(p0)
    good = np.isfinite(lp0)
    if not good.any():
        raise RuntimeError("no initial walker has a finite log-posterior")
    if not good.all():
        src = p0[good]
        p0[~good] = src[rng.integers(0, len(src), (~good).sum())] + 1e-6 * rng.standard_normal(
            ((~good).sum(), d)
        )

    sampler, counter, move = _sampler(model, run, None)
    sampler.random_state = np.random.RandomState(int(rng.integers(0, 2**31 - 1))).get_state()
    state = emcee.State(p0, random_state=sampler.random_state)
    info = {
        "seed": run.seed,
        "n_steps_budget": run.n_steps,
        "map_log_posterior": lp_map,
        "map": None if u_map is None else u_map.tolist(),
        "moves": _moves_name(run.moves),
        "check_every": run.check_every,
        "min_steps": int(run.min_steps),
        "autocorr_stop": bool(run.autocorr_stop),
        "target_ess": run.target_ess,
        "target_rhat": run.target_rhat,
    }
    if run.hmc:
        info["warmup"] = run.warmup
    return _loop(model, calibrator, sampler, state, 0, run, info, counter, move)


def _moves_name(moves: Any) -> str:
    if moves is None:
        return "hmc"
    if isinstance(moves, str):
        return moves
    return repr(moves)


def _sampler(
    model, run: _Settings, move_state: dict[str, Any] | None
) -> tuple[emcee.EnsembleSampler, dict[str, int], ChEESMove | InterweavedMove | None]:
    """emcee's vectorized sampler on the model, a counter of forward-model failures, and the
    gradient move (None for ensemble moves)."""
    counter = {"fail": 0, "calls": 0}

    def logp(U: np.ndarray) -> np.ndarray:
        out = model.log_posterior_numpy(U)
        counter["fail"] += model.failures
        counter["calls"] += U.shape[0]
        return out

    move = None
    if run.hmc:

        def counted(vg):
            def fn(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                out = vg(U)
                counter["fail"] += model.failures
                counter["calls"] += U.shape[0]
                return out

            return fn

        interweave = run.interweave
        if move_state is not None:  # a resumed chain continues with its own move
            interweave = move_state.get("kind") == "interweaved-hmc"
        flip = pooling_flip(model) if interweave else None
        options = {"max_leapfrog": run.max_leapfrog, "target_accept": run.target_accept}
        if flip is None:
            move = ChEESMove(
                counted(batched_value_and_grad(model)), model.n_dim, run.warmup, **options
            )
        else:
            move = InterweavedMove.build(model, flip, counted, run.warmup, **options)
        if move_state is not None:
            move.load_state_dict(move_state)
        moves = move
    elif run.moves is None or isinstance(run.moves, str):
        moves = de_moves()
    else:
        moves = run.moves
    sampler = emcee.EnsembleSampler(run.n_walkers, model.n_dim, logp, vectorize=True, moves=moves)
    return sampler, counter, move


@dataclass
class Checkpoint:
    """Everything needed to continue an emcee chain exactly, as plain arrays.

    Attributes
    ----------
    chain : ndarray of shape (n_steps, n_walkers, n_dim)
    log_prob : ndarray of shape (n_steps, n_walkers)
    accepted : ndarray of int, shape (n_walkers,)
        Accepted proposals per walker (emcee's backend counts).
    rng_state : tuple
        ``numpy.random.RandomState.get_state()`` of emcee's generator after the last step:
        ``("MT19937", keys (624,) uint32, pos, has_gauss, cached_gaussian)``.
    stopped_early : bool
        The convergence rule stopped the chain (it will not be continued).
    info : dict
        Seed, budget, MAP, sampler settings (JSON-able); ``"move_state"`` holds the gradient
        move's settings and adapted state (:meth:`calib.hmc.ChEESMove.state_dict`).
    """

    chain: np.ndarray
    log_prob: np.ndarray
    accepted: np.ndarray
    rng_state: tuple
    stopped_early: bool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return int(self.chain.shape[0])


def _make_checkpoint(
    sampler, stopped_early: bool, info: dict[str, Any], move: ChEESMove | InterweavedMove | None
) -> Checkpoint:
    b = sampler.backend
    n = b.iteration
    if move is not None:
        info = {**info, "move_state": move.state_dict()}
    return Checkpoint(
        chain=b.chain[:n],
        log_prob=b.log_prob[:n],
        accepted=np.asarray(b.accepted, dtype=np.int64).copy(),
        rng_state=sampler.random_state,
        stopped_early=stopped_early,
        info=info,
    )


def _continue(model, calibrator, run: _Settings, resume: Checkpoint):
    n_done, n_walkers, d = resume.chain.shape
    if d != model.n_dim:
        raise ValueError(f"resume: the chain has {d} coordinates but the model has {model.n_dim}")
    info = dict(resume.info)
    stored_hmc = "move_state" in info or info.get("moves") == "hmc"
    if stored_hmc != run.hmc:
        raise ValueError(
            f"resume: the archived chain was sampled with moves={info.get('moves')!r}, "
            f"resume asked for moves={_moves_name(run.moves)!r}; resume with the same moves"
        )
    move_state = info.pop("move_state", None)
    if run.hmc:
        if move_state is None:
            raise ValueError("resume: the archived chain has no state of its gradient move")
        run.warmup = int(move_state["n_warmup"])
        info["warmup"] = run.warmup
    run.n_walkers = n_walkers
    sampler, counter, move = _sampler(model, run, move_state)
    # refill emcee's in-memory backend: the stopping rule reads the whole chain
    b = sampler.backend
    b.grow(n_done, None)
    b.chain[:n_done] = resume.chain
    b.log_prob[:n_done] = resume.log_prob
    b.accepted[:] = resume.accepted
    b.iteration = n_done
    b.random_state = resume.rng_state
    sampler.random_state = resume.rng_state
    state = emcee.State(
        resume.chain[-1].copy(), log_prob=resume.log_prob[-1].copy(), random_state=resume.rng_state
    )
    info["n_steps_budget"] = run.n_steps
    return _loop(
        model, calibrator, sampler, state, n_done, run, info, counter, move, check_now=True
    )


def _loop(
    model,
    calibrator,
    sampler,
    state,
    done: int,
    run: _Settings,
    info: dict[str, Any],
    counter: dict[str, int],
    move: ChEESMove | InterweavedMove | None,
    check_now: bool = False,
):
    """Advance to ``run.n_steps`` in chunks that end on every convergence check and every
    checkpoint; splitting ``sample`` calls does not change the chain (the state carries
    emcee's generator and the move its adapted state), so checkpointing leaves the chain
    bit-for-bit the same."""
    stopped_early = False
    started = time.perf_counter()
    out_of_time = False

    def check(done: int) -> bool:
        if not (
            run.autocorr_stop
            and done >= run.min_steps
            and done < run.n_steps
            and done % run.check_every == 0
        ):
            return False
        ok, rhat_max, ess_min = _verdict(
            calibrator, sampler.get_chain(), sampler.get_log_prob(), run, info
        )
        if bar is not None:
            bar.set_postfix_str(f"R̂ max {rhat_max:.3f}, ESS min {ess_min:.0f}")
        return ok

    bar = None
    if run.progress:
        from tqdm.auto import tqdm

        # one bar for the whole run (emcee's own would restart at every chunk)
        bar = tqdm(total=run.n_steps, initial=done, desc="sampling", unit="step", leave=True)
    with warnings.catch_warnings(), contextlib.ExitStack() as stack:
        if bar is not None:
            stack.callback(bar.close)
        warnings.simplefilter("ignore", RuntimeWarning)  # emcee's own warnings on -inf proposals
        # a resumed chain meets the check an uninterrupted one made at this step
        if check_now and done > 0 and check(done):
            stopped_early = True
        while done < run.n_steps and not stopped_early and not out_of_time:
            nxt = run.n_steps
            if run.autocorr_stop or run.time_budget is not None:
                nxt = min(nxt, (done // run.check_every + 1) * run.check_every)
            if run.checkpoint is not None:
                nxt = min(nxt, (done // run.checkpoint_every + 1) * run.checkpoint_every)
            k = nxt - done
            # the generator is built from the old state before the loop rebinds the name
            for state in sampler.sample(state, iterations=k, skip_initial_state_check=True):  # noqa: B007, B020
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                acc = float(np.mean(sampler.backend.accepted)) / max(sampler.iteration, 1)
                bar.set_description(f"sampling (acceptance {acc:.2f})")
            done += k
            stopped_early = check(done)
            if stopped_early and bar is not None:
                bar.set_postfix_str("converged")
            if run.time_budget is not None and time.perf_counter() - started > run.time_budget:
                out_of_time = not stopped_early
            if run.checkpoint is not None and (
                done % run.checkpoint_every == 0
                or done >= run.n_steps
                or stopped_early
                or out_of_time
            ):
                run.checkpoint(_make_checkpoint(sampler, stopped_early, info, move))
    model.warn_failures(counter["fail"], counter["calls"])
    if move is not None:
        info = {**info, "move_state": move.state_dict()}
    post = posterior_from_chain(
        calibrator,
        sampler.get_chain(),
        sampler.get_log_prob(),
        np.asarray(sampler.backend.accepted, dtype=float),
        run.burn,
        stopped_early,
        info,
    )
    if out_of_time:
        post.info["stopped_by_time_budget"] = True
    post.warn_if_unconverged(stacklevel=4)
    return post


def _verdict(
    calibrator, chain, log_prob, run: _Settings, info: dict[str, Any]
) -> tuple[bool, float, float]:
    """The stopping rule: the verdict of the posterior the chain gives now (burn-in as
    :func:`posterior_from_chain` sets it), with its worst R̂ and smallest bulk ESS."""
    post = posterior_from_chain(
        calibrator, chain, log_prob, np.zeros(chain.shape[1]), run.burn, False, info
    )
    if post.kept.shape[0] < 4:
        return False, math.nan, 0.0
    d = post.diagnostics()
    return post.converged, d["rhat_max"], d["ess_min"]


def posterior_from_chain(
    calibrator,
    chain: np.ndarray,
    log_prob: np.ndarray,
    accepted: np.ndarray,
    burn: int | None,
    stopped_early: bool,
    info: dict[str, Any],
):
    """The :class:`~calib.posterior.Posterior` of a chain (fresh, resumed or loaded).

    Burn-in: ``burn``, else the gradient move's warm-up (``info["warmup"]``), else half the
    chain.
    """

    n = int(chain.shape[0])
    info = dict(info)
    info.update(n_steps=n, stopped_early=bool(stopped_early))
    ms = info.get("move_state")
    if isinstance(ms, dict):
        info.setdefault("warmup", int(ms.get("n_warmup", 0)))
        info["n_grad_evals"] = int(ms.get("n_grad_evals", 0))
        info["n_divergent"] = int(ms.get("n_divergent", 0))
        if "parts" in ms:  # the interweaved move: model's, then the other coordinates
            info["n_divergent_parts"] = [int(p["n_divergent"]) for p in ms["parts"]]
        info["step_size"] = float(ms.get("step_size", math.nan))
        info["trajectory_length"] = float(ms.get("trajectory", math.nan))
    if burn is None:
        burn = int(info["warmup"]) if "warmup" in info else n // 2
    return Posterior(
        calibrator,
        chain=chain,
        log_prob=log_prob,
        acceptance=np.asarray(accepted, dtype=float) / max(n, 1),
        burn=min(burn, n - 1),
        info=info,
    )
