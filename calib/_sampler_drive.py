"""The emcee drive: the sampler on the model's log-posterior with its move, a fresh chain
from the MAP or a resumed one from a checkpoint, advanced in chunks that end on the
convergence checks (the stopping rule) and on the checkpoints of its backend.

:func:`calib.sampling.run_sampler` validates the settings and calls :func:`_run` or
:func:`_continue`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import emcee
import numpy as np

from ._failures import warn_failures
from ._hmc_coords import BetaRhoScores, hmc_coordinates
from ._sampler_modes import other_modes, warn_other_modes
from ._sampler_moves import _moves_name, de_moves, pooling_flip
from ._sampler_posterior import posterior_from_chain
from ._sampler_starts import _laplace_scatter, find_map, laplace_cov
from .archive.chain import ChainBackend
from .checkpoint import Checkpoint
from .hmc import ChEESMove, InterweavedMove, batched_value_and_grad


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
    backend: ChainBackend
    warmup: int
    max_leapfrog: int
    target_accept: float
    trajectory_criterion: str
    target_ess: float
    target_rhat: float
    time_budget: float | None
    interweave: bool


def _run(model, calibrator, run: _Settings, init: np.ndarray | None, rng: np.random.Generator):
    d = model.n_dim
    n_walkers = run.n_walkers
    if init is None:
        starts = model.sample_prior(rng, run.n_starts)
        u_map, lp_map, optima = find_map(model, starts)
        cov_map = laplace_cov(model, u_map)
        warn_other_modes(model, other_modes(model, optima, u_map, lp_map, cov_map), u_map, lp_map)
        p0 = _laplace_scatter(u_map, cov_map, n_walkers, rng)
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


def _sampler(
    model, run: _Settings, move_state: dict[str, Any] | None
) -> tuple[emcee.EnsembleSampler, dict[str, int], ChEESMove | InterweavedMove | None]:
    """emcee's vectorized sampler on the model, writing through ``run.backend``, a counter
    of forward-model failures and failed factorizations, and the gradient move (None for
    ensemble moves)."""
    counter = {"fail": 0, "factor": 0, "calls": 0}

    def count(n: int) -> None:
        counter["fail"] += model.failures - model.factor_failures
        counter["factor"] += model.factor_failures
        counter["calls"] += n

    def logp(U: np.ndarray) -> np.ndarray:
        out = model.log_posterior_numpy(U)
        count(U.shape[0])
        return out

    move = None
    if run.hmc:

        def counted(vg):
            def fn(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
                out = vg(U)
                count(U.shape[0])
                return out

            return fn

        interweave = run.interweave
        if move_state is not None:  # a resumed chain continues with its own move
            interweave = move_state.get("kind") == "interweaved-hmc"
        flip = pooling_flip(model) if interweave else None
        options = {
            "max_leapfrog": run.max_leapfrog,
            "target_accept": run.target_accept,
            "criterion": run.trajectory_criterion,
        }
        scores = _scores(model, move_state)
        if flip is None:
            move = ChEESMove(
                counted(batched_value_and_grad(model, scores)),
                model.n_dim,
                run.warmup,
                flip=scores,
                **options,
            )
        else:
            move = InterweavedMove.build(model, flip, counted, run.warmup, scores, **options)
        if move_state is not None:
            move.load_state_dict(move_state)
        moves = move
    elif run.moves is None or isinstance(run.moves, str):
        moves = de_moves()
    else:
        moves = run.moves
    sampler = emcee.EnsembleSampler(
        run.n_walkers, model.n_dim, logp, vectorize=True, moves=moves, backend=run.backend
    )
    return sampler, counter, move


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
    # the backend holds the whole chain (the stopping rule reads it) and the generator's
    # state, from which emcee's sampler built on it continues (emcee's "re-used backend")
    run.backend.restore(resume)
    sampler, counter, move = _sampler(model, run, move_state)
    state = emcee.State(
        resume.chain[-1].copy(), log_prob=resume.log_prob[-1].copy(), random_state=resume.rng_state
    )
    info["n_steps_budget"] = run.n_steps
    return _loop(
        model, calibrator, sampler, state, n_done, run, info, counter, move, check_now=True
    )


def _scores(model, move_state: dict[str, Any] | None) -> BetaRhoScores | None:
    """The normal scores of the model's ``BetaRho(1, b)`` length-scales for the gradient
    move (:mod:`calib._hmc_coords`), unless a resumed chain was adapted without them."""
    if move_state is not None and move_state.get("coordinates", "model") != BetaRhoScores.kind:
        return None
    return hmc_coordinates(model)


#: a run whose remaining budget is expected to take longer than this says so (seconds)
EXPECTED_TIME_NOTICE_S = 300.0


def _say_expected_time(elapsed: float, steps: int, remaining: int) -> None:
    """One line on stderr when the rest of the budget will take long, measured on the
    first chunk of steps (issue 13: 1.5 s per step meant 1.7 h in silence)."""
    if steps <= 0 or remaining <= 0:
        return
    per_step = elapsed / steps
    expected = per_step * remaining
    if expected < EXPECTED_TIME_NOTICE_S:
        return
    when = f"{expected / 3600:.1f} h" if expected >= 5400 else f"{expected / 60:.0f} min"
    print(
        f"calib: sampling takes {per_step:.3g} s per step: about {when} for the remaining "
        f"{remaining} steps of the budget (the stopping rule may end it sooner; "
        f"time_budget= caps it, and an archive= run can be stopped and resumed)",
        file=sys.stderr,
        flush=True,
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
    checkpoint of ``run.backend``; splitting ``sample`` calls does not change the chain (the
    state carries emcee's generator and the move its adapted state), so checkpointing
    leaves the chain bit-for-bit the same."""
    stopped_early = False
    started = time.perf_counter()
    start = done
    out_of_time = False
    backend = run.backend

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
            if backend.records:
                nxt = min(nxt, (done // backend.every + 1) * backend.every)
            k = nxt - done
            # the generator is built from the old state before the loop rebinds the name
            for state in sampler.sample(state, iterations=k, skip_initial_state_check=True):  # noqa: B007, B020
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                acc = float(np.mean(sampler.backend.accepted)) / max(sampler.iteration, 1)
                bar.set_description(f"sampling (acceptance {acc:.2f})")
            first = done == start
            done += k
            if first and not stopped_early:
                _say_expected_time(time.perf_counter() - started, k, run.n_steps - done)
            stopped_early = check(done)
            if stopped_early and bar is not None:
                bar.set_postfix_str("converged")
            if run.time_budget is not None and time.perf_counter() - started > run.time_budget:
                out_of_time = not stopped_early
            completes = stopped_early or done >= run.n_steps
            if backend.due(completes or out_of_time):
                # emcee's state is in the backend; the move's adapted state is added here
                backend.checkpoint(_with_move_state(info, move), stopped_early, completes)
    warn_failures(counter["fail"], counter["calls"], counter["factor"])
    info = _with_move_state(info, move)
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


def _with_move_state(
    info: dict[str, Any], move: ChEESMove | InterweavedMove | None
) -> dict[str, Any]:
    """``info`` with the gradient move's settings and adapted state (``"move_state"``):
    what a checkpoint holds beside emcee's state, so that a resumed chain continues exactly."""
    if move is None:
        return info
    return {**info, "move_state": move.state_dict()}
