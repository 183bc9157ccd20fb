"""Sampling the joint posterior: MAP starts with L-BFGS, then emcee, vectorized over walkers.

The chain lives in the unconstrained space of :class:`calib.likelihood.Model`. The default
ensemble move is a mixture of differential evolution (80 %) and the stretch move (20 %):
measured on the test problems (benchmarks/moves.py, docs/model.md "Sampling") it has a
shorter integrated autocorrelation time than the stretch move alone.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import emcee
import numpy as np
import torch
from scipy import optimize

from ._threads import torch_threads
from .likelihood import DTYPE

__all__ = ["run_sampler", "find_map", "default_moves", "Checkpoint", "posterior_from_chain"]


def default_moves() -> list[tuple[Any, float]]:
    """DEMove 0.8 + StretchMove 0.2 (see docs/model.md for the measurements)."""
    return [(emcee.moves.DEMove(), 0.8), (emcee.moves.StretchMove(), 0.2)]


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
    n_steps: int = 4000,
    seed: int | None = None,
    progress: bool = False,
    moves: Any = None,
    burn: int | None = None,
    n_starts: int = 8,
    autocorr_stop: bool = True,
    check_every: int = 500,
    min_steps: int = 1000,
    init: np.ndarray | None = None,
    threads: int | None = None,
    checkpoint: Callable[[Checkpoint], None] | None = None,
    checkpoint_every: int = 500,
    resume: Checkpoint | None = None,
):
    """Run emcee on the calibrator's log-posterior.

    Parameters
    ----------
    calibrator : Calibrator
    n_walkers : int, optional
        Even and at least ``2·n_dim``; default ``max(32, 2·n_dim + 2)`` rounded up to even.
    n_steps : int
        Step budget.
    seed : int, optional
        Fixes the MAP starts, the walkers' initial scatter and emcee's generator: the same
        seed gives the same chain.
    progress : bool
        emcee's progress bar (tqdm).
    moves : emcee move or list of (move, weight), optional
        Default :func:`default_moves`.
    burn : int, optional
        Steps discarded as burn-in; default half the steps taken.
    n_starts : int
        MAP starts drawn from the prior (the best optimum seeds the walkers).
    autocorr_stop : bool
        Stop before the budget once the chain is longer than 50 integrated autocorrelation
        times (largest over coordinates, estimated on the second half of the chain) and
        ``min_steps`` steps; checked every ``check_every`` steps.
    init : array of shape (n_walkers, n_dim), optional
        Initial walker positions (unconstrained); skips the MAP search.
    threads : int, optional
        torch's intra-op threads while sampling. Default: 1 when the covariance blocks are
        small (≤ 256 entries), where threads cost more in synchronization than they save
        (measured in benchmarks/logpost.py); torch's own setting otherwise.
    checkpoint : callable, optional
        Called with a :class:`Checkpoint` every ``checkpoint_every`` steps and when sampling
        ends (``Calibrator.sample(archive=...)`` passes the archive writer).
    checkpoint_every : int
        Steps between checkpoints.
    resume : Checkpoint, optional
        Continue this chain instead of starting one: emcee's chain, acceptance counts and
        generator state are restored, so the continued chain equals an uninterrupted run.

    Returns
    -------
    Posterior
    """

    model = calibrator.model
    d = model.n_dim
    if not isinstance(n_steps, (int, np.integer)) or n_steps < 2:
        raise ValueError(f"n_steps must be an integer ≥ 2, got {n_steps!r}")
    if n_walkers is None:
        n_walkers = max(32, 2 * d + 2)
        n_walkers += n_walkers % 2
    if not isinstance(n_walkers, (int, np.integer)) or n_walkers < 2 * d or n_walkers % 2:
        raise ValueError(
            f"n_walkers must be an even integer ≥ 2·n_dim = {2 * d} (emcee's ensemble moves "
            f"need it), got {n_walkers!r}"
        )
    if not isinstance(checkpoint_every, (int, np.integer)) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an integer ≥ 1, got {checkpoint_every!r}")
    if not isinstance(check_every, (int, np.integer)) or check_every < 1:
        raise ValueError(f"check_every must be an integer ≥ 1, got {check_every!r}")
    if burn is not None and not (0 <= burn < n_steps):
        raise ValueError(f"burn must be in [0, n_steps), got {burn!r}")
    rng = np.random.default_rng(seed)
    if threads is None and model.Nmax <= 256:
        threads = 1
    run = _Settings(
        n_walkers=int(n_walkers),
        n_steps=int(n_steps),
        seed=seed,
        progress=progress,
        moves=moves,
        burn=burn,
        n_starts=n_starts,
        autocorr_stop=autocorr_stop,
        check_every=int(check_every),
        min_steps=min_steps,
        checkpoint=checkpoint,
        checkpoint_every=int(checkpoint_every),
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
    burn: int | None
    n_starts: int
    autocorr_stop: bool
    check_every: int
    min_steps: int
    checkpoint: Callable[[Checkpoint], None] | None
    checkpoint_every: int


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

    sampler, counter = _sampler(model, n_walkers, run.moves)
    sampler.random_state = np.random.RandomState(int(rng.integers(0, 2**31 - 1))).get_state()
    state = emcee.State(p0, random_state=sampler.random_state)
    info = {
        "seed": run.seed,
        "n_steps_budget": run.n_steps,
        "map_log_posterior": lp_map,
        "map": None if u_map is None else u_map.tolist(),
        "moves": repr(run.moves) if run.moves is not None else "DEMove 0.8 + StretchMove 0.2",
        "check_every": run.check_every,
        "min_steps": int(run.min_steps),
        "autocorr_stop": bool(run.autocorr_stop),
    }
    return _loop(model, calibrator, sampler, state, 0, run, info, counter)


def _sampler(model, n_walkers: int, moves: Any) -> tuple[emcee.EnsembleSampler, dict[str, int]]:
    """emcee's vectorized sampler on the model, and a counter of forward-model failures."""
    counter = {"fail": 0, "calls": 0}

    def logp(U: np.ndarray) -> np.ndarray:
        out = model.log_posterior_numpy(U)
        counter["fail"] += model.failures
        counter["calls"] += U.shape[0]
        return out

    sampler = emcee.EnsembleSampler(
        n_walkers,
        model.n_dim,
        logp,
        vectorize=True,
        moves=moves if moves is not None else default_moves(),
    )
    return sampler, counter


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
        The autocorrelation rule stopped the chain (it will not be continued).
    info : dict
        Seed, budget, MAP, sampler settings (JSON-able).
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


def _make_checkpoint(sampler, stopped_early: bool, info: dict[str, Any]) -> Checkpoint:
    b = sampler.backend
    n = b.iteration
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
    sampler, counter = _sampler(model, n_walkers, run.moves)
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
    info = dict(resume.info)
    info["n_steps_budget"] = run.n_steps
    return _loop(model, calibrator, sampler, state, n_done, run, info, counter, check_now=True)


def _stop_rule(sampler, done: int) -> bool:
    chain = sampler.get_chain()[done // 2 :]
    tau = emcee.autocorr.integrated_time(chain, tol=0)
    return bool(np.all(np.isfinite(tau)) and done > 50 * float(np.max(tau)))


def _loop(
    model,
    calibrator,
    sampler,
    state,
    done: int,
    run: _Settings,
    info: dict[str, Any],
    counter: dict[str, int],
    check_now: bool = False,
):
    """Advance to ``run.n_steps`` in chunks that end on every autocorrelation check and every
    checkpoint; splitting ``run_mcmc`` calls does not change the chain (the state carries
    emcee's generator), so checkpointing leaves the chain bit-for-bit the same."""
    stopped_early = False

    def check(done: int) -> bool:
        return (
            run.autocorr_stop
            and done >= run.min_steps
            and done < run.n_steps
            and done % run.check_every == 0
            and _stop_rule(sampler, done)
        )

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
        while done < run.n_steps and not stopped_early:
            nxt = run.n_steps
            if run.autocorr_stop:
                nxt = min(nxt, (done // run.check_every + 1) * run.check_every)
            if run.checkpoint is not None:
                nxt = min(nxt, (done // run.checkpoint_every + 1) * run.checkpoint_every)
            k = nxt - done
            # the generator is built from the old state before the loop rebinds the name
            for state in sampler.sample(state, iterations=k, skip_initial_state_check=True):  # noqa: B007, B020
                if bar is not None:
                    bar.update(1)
            done += k
            stopped_early = check(done)
            if stopped_early and bar is not None:
                bar.set_postfix_str("stopped: chain longer than 50 τ_int")
            if run.checkpoint is not None and (
                done % run.checkpoint_every == 0 or done >= run.n_steps or stopped_early
            ):
                run.checkpoint(_make_checkpoint(sampler, stopped_early, info))
    model.warn_failures(counter["fail"], counter["calls"])
    return posterior_from_chain(
        calibrator,
        sampler.get_chain(),
        sampler.get_log_prob(),
        np.asarray(sampler.backend.accepted, dtype=float),
        run.burn,
        stopped_early,
        info,
    )


def posterior_from_chain(
    calibrator,
    chain: np.ndarray,
    log_prob: np.ndarray,
    accepted: np.ndarray,
    burn: int | None,
    stopped_early: bool,
    info: dict[str, Any],
):
    """The :class:`~calib.posterior.Posterior` of a chain (fresh, resumed or loaded)."""
    from .posterior import Posterior

    n = int(chain.shape[0])
    info = dict(info)
    info.update(n_steps=n, stopped_early=bool(stopped_early))
    return Posterior(
        calibrator,
        chain=chain,
        log_prob=log_prob,
        acceptance=np.asarray(accepted, dtype=float) / max(n, 1),
        burn=n // 2 if burn is None else min(burn, n - 1),
        info=info,
    )
