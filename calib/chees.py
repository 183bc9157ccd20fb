"""A gradient-based ensemble move for emcee: jittered HMC for all walkers at once, with the
step size and trajectory length adapted across the ensemble in warm-up only (ChEES-HMC).

Each call of :meth:`ChEESMove.propose` runs Hamiltonian Monte Carlo (Duane et al. 1987;
Neal 2011) for every walker simultaneously: one batched call of the log-posterior and its
autograd gradient per leapfrog step. The walkers never interact during a step: walker ``i``'s
proposal depends only on its own position and its own momentum, so once the adaptation is
frozen every walker is an independent Markov chain that leaves the posterior invariant, and
walker-as-chain diagnostics (R̂, ESS) are valid.

Adaptation (warm-up only), following Hoffman, Radul & Sountsov (2021), "An adaptive-MCMC
scheme for setting trajectory lengths in Hamiltonian Monte Carlo", AISTATS, Algorithm 1:

* **Jitter.** Iteration ``k`` integrates for ``n = ⌈u·T/ε⌉`` leapfrog steps with one
  ``u ~ U(0, 1)`` shared by all walkers (the paper's jittered trajectory length; sharing it
  keeps the batch in lock-step). Drawing ``u`` afresh each iteration makes the kept-chain
  kernel a fixed mixture over trajectory lengths, hence time-homogeneous.
* **Step size ε**: dual averaging (Hoffman & Gelman 2014, NUTS paper §3.2.1, eqs. 5–6;
  γ = 0.05, t₀ = 10, κ = 0.75) driving the mean of the walkers' acceptance probabilities to
  0.8 (Stan's default). The ChEES paper drives the *harmonic* mean to 0.651; on calib's
  hierarchical problems a single walker lost in a tail early in warm-up sends the harmonic
  mean to zero and the step size into oscillation (measured on the README quickstart), so
  the arithmetic mean with Stan's higher target is used. The frozen value is the averaged
  iterate ε̄.
* **Lost walkers.** In the first half of the warm-up a walker whose log-posterior lies more
  than ``max(10, 3·d)`` below the ensemble's median is moved onto a walker drawn from the
  upper half (the MAP's Laplace scatter can put walkers deep in a funnel's tail, where the
  integrator is unstable). This touches the warm-up only, which is discarded.
* **Trajectory length T**: stochastic gradient ascent of the ChEES criterion
  ``¼ E[(‖x' − E x‖² − ‖x − E x‖²)²]`` (Hoffman et al. 2021, eq. 3) in ``log T``. Its
  per-walker gradient estimate (eq. 7, times T for the log scale) is
  ``ĝ_i = u·T · (‖x'_i − x̄'‖² − ‖x_i − x̄‖²) · (x'_i − x̄')·p'_i``, averaged over walkers
  with the acceptance probabilities as weights (x̄' the acceptance-weighted mean of the
  proposals, x̄ the mean of the current states). With ``criterion="chees_rate"`` the
  criterion is divided by the trajectory length ``uT`` (TensorFlow Probability's "ChEES
  rate"), so T maximizes it per gradient evaluation (:func:`log_t_gradient`): 1.0–2.1× the
  ESS of θ per second on the peers' problems before T was capped (docs/benchmarks.md),
  but its shorter trajectories can leave a walker in a minor mode that plain ChEES
  crosses. The step is
  Adam with β₁ = 0, β₂ = 0.95 and learning rate 0.05, clipped to ±0.35 in log T, and the
  frozen value is a moving average of log T with weights ``k^(-1/2)`` (as the paper's
  reference implementation). T is not floored at the current ε; the rate's T is floored
  at the ε settled in the last metric window (:meth:`ChEESMove._adapt`). T is capped at
  ``T_MAX`` = 4 posterior sds of the whitened coordinates, in warm-up and frozen: the
  per-gradient optimum of the means' ESS on a Gaussian, where ChEES picks 2.25, but which
  ChEES overshoots (5–14) on curved posteriors (:data:`calib._chees_tuning.T_MAX`; the sd
  is measured on the walkers, :func:`calib._chees_tuning.metric_spread`).
* **Mass matrix**: dense, ``M⁻¹ = Σ = L Lᵀ``, with ``Σ`` the cross-walker covariance of the
  positions pooled over a window of warm-up iterations and shrunk towards ``10⁻³ I`` as Stan
  does for short windows; windows end at 20, 40, 80, ... iterations, the last stretched to 3/4
  of the warm-up, and every new ``Σ`` restarts the step-size dual averaging and the
  trajectory-length average. Calibration posteriors are strongly correlated (θ against δ's
  scale, a population mean against its campaign offsets), which a diagonal metric cannot
  undo; with an ensemble the dense estimate costs nothing extra. All quantities above are
  computed in the preconditioned coordinates ``x̃ = L⁻¹ x``, where ``p̃ ~ N(0, I)``.

After the warm-up the move is frozen (:attr:`ChEESMove.frozen`); its settings and adapted
state are plain floats (:meth:`ChEESMove.state_dict`), stored with every checkpoint so that
a resumed run continues the same chain bit for bit.

The batched log-posterior and its gradient that the move integrates is
:func:`batched_value_and_grad`. The interweaving of a hierarchy's two parameterizations,
which alternates two of these moves, is :mod:`calib.interweave`; :mod:`calib.hmc` exports
both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import emcee
import numpy as np

from ._chees_tuning import (
    CRITERIA,
    T_MAX,
    cross_walker_cov,
    log_t_gradient,
    metric_spread,
    shrunk_chol,
    t_cap,
)
from ._value_grad import batched_value_and_grad

if TYPE_CHECKING:  # only for the hints: the flip is used through its methods
    from .interweave import PoolingFlip

__all__ = ["ChEESMove", "batched_value_and_grad"]

_TARGET_ACCEPT = 0.8
# dual averaging (Hoffman & Gelman 2014, §3.2.1)
_DA_GAMMA, _DA_T0, _DA_KAPPA = 0.05, 10.0, 0.75
# ChEES's Adam on log T (Hoffman et al. 2021, §4), with the update clipped
_LR, _BETA2, _CLIP = 0.05, 0.95, 0.35
_DIVERGENCE = 1000.0  # an energy error larger than this marks a divergent trajectory


class ChEESMove(emcee.moves.Move):
    """Jittered HMC for all walkers at once, adapted across the ensemble in warm-up (ChEES).

    Parameters
    ----------
    value_and_grad : callable
        ``U (W, d) -> (log p (W,), ∇ log p (W, d))``, batched over walkers
        (:func:`batched_value_and_grad`).
    n_dim : int
    n_warmup : int
        Iterations of adaptation; the move is frozen after this many calls of
        :meth:`propose`. These iterations are burn-in: they are not draws of the posterior.
    max_leapfrog : int
        Most leapfrog steps per iteration (the trajectory length is clipped to
        ``max_leapfrog · ε``): bounds the cost of one iteration.
    target_accept : float
        Mean acceptance probability the step size is adapted to (0.8). Raise it (0.9–0.99)
        when divergences are reported: a smaller step follows a funnel further.
    criterion : {"chees", "chees_rate"}
        T maximizes ChEES per draw (default) or per gradient evaluation (shorter
        trajectories: faster on unimodal posteriors, weaker across modes and tails).
    state : dict, optional
        A :meth:`state_dict` to continue from (resume).
    t_max : float or None
        Cap on T in posterior sds of the whitened coordinates, in warm-up and frozen
        (``T_MAX`` = 4, the means' optimum on a Gaussian, :mod:`calib._chees_tuning`);
        None: uncapped.
    on_step : callable, optional
        Called with the number of log-posterior-and-gradient evaluations of every call.
    flip : PoolingFlip, optional
        Run in the other parameterization's coordinates: ``value_and_grad`` must then be the
        density there (:func:`batched_value_and_grad` with the same ``flip``); the walkers'
        states and log-posteriors stay in the model's. Its ``kind`` (``"model"`` without
        one) is kept in the state as ``coordinates``, so that a resumed chain is rebuilt in
        them (:mod:`calib._hmc_coords`).

    Notes
    -----
    Randomness (momenta, the jitter, the accept draws) comes from emcee's generator
    (``model.random``), so emcee's stored state reproduces the chain.
    """

    def __init__(
        self,
        value_and_grad: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
        n_dim: int,
        n_warmup: int = 200,
        max_leapfrog: int = 100,
        target_accept: float = _TARGET_ACCEPT,
        criterion: str = CRITERIA[0],
        state: dict[str, Any] | None = None,
        t_max: float | None = T_MAX,
        on_step: Callable[[int], None] | None = None,
        flip: PoolingFlip | None = None,
    ):
        self.value_and_grad = value_and_grad
        self.coordinates = getattr(flip, "kind", "model")
        self.n_dim = int(n_dim)
        self.on_step = on_step
        self.flip = flip
        if state is not None:
            self.load_state_dict(state)
            return
        self.n_warmup = int(n_warmup)
        self.max_leapfrog = int(max_leapfrog)
        if not 0.0 < target_accept < 1.0:
            raise ValueError(f"target_accept must be in (0, 1), got {target_accept!r}")
        self.target_accept = float(target_accept)
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
        self.criterion = criterion
        if t_max is not None and not t_max > 0:
            raise ValueError(f"t_max must be positive or None, got {t_max!r}")
        self.t_max = None if t_max is None else float(t_max)
        self.iteration = 0  # calls of propose so far
        self.chol: np.ndarray | None = None  # L of the metric Σ = L Lᵀ
        self.step_size = math.nan  # ε (set at the first call)
        self.trajectory = math.nan  # T, in the preconditioned coordinates
        self._reset_adaptation(window_start=0)
        self._window_sum = np.zeros((self.n_dim, self.n_dim))
        self._window_n = 0
        self._t_floor = 0.0  # T ≥ the step size settled in the last metric window
        self._t_scale = None  # the cap's unit (None: not measured yet, uncapped)
        self.n_grad_evals = 0
        self.n_divergent = 0

    # ------------------------------------------------------------------ state
    def _reset_adaptation(self, window_start: int) -> None:
        self._da_mu = math.nan  # set from ε when the next iteration starts
        self._da_hbar = 0.0
        self._da_logbar = 0.0
        self._da_t = 0
        self._adam_v = 0.0
        self._adam_t = 0
        self._logT_avg = 0.0
        self._avg_t = 0
        self._window_start = window_start

    _FIELDS = (
        "n_warmup",
        "max_leapfrog",
        "target_accept",
        "criterion",
        "t_max",
        "coordinates",
        "iteration",
        "chol",
        "step_size",
        "trajectory",
        "_da_mu",
        "_da_hbar",
        "_da_logbar",
        "_da_t",
        "_adam_v",
        "_adam_t",
        "_logT_avg",
        "_avg_t",
        "_window_start",
        "_window_sum",
        "_window_n",
        "_t_floor",
        "_t_scale",
        "n_grad_evals",
        "n_divergent",
    )

    _MATRICES = ("chol", "_window_sum")  # arrays here, nested lists in the state

    def state_dict(self) -> dict[str, Any]:
        """Settings and adapted state as JSON-able plain values (floats round-trip exactly)."""
        out = {}
        for k in self._FIELDS:
            v = getattr(self, k)
            out[k.lstrip("_")] = v.tolist() if isinstance(v, np.ndarray) else v
        out["kind"] = "chees-hmc"
        out["frozen"] = self.frozen
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "chees-hmc":
            raise ValueError(f"not a ChEES-HMC move state: kind={state.get('kind')!r}")
        # a state saved before the criterion was a setting adapted with plain ChEES
        state = {
            "criterion": "chees",
            "t_max": None,
            "t_scale": None,
            "coordinates": "model",
            "t_floor": 0.0,
            **state,
        }
        for k in self._FIELDS:
            v = state[k.lstrip("_")]
            if k in self._MATRICES and v is not None:
                v = np.array(v, dtype=float).reshape(self.n_dim, self.n_dim)
            setattr(self, k, v)
        if self.chol is not None and len(self.chol) != self.n_dim:
            raise ValueError(
                f"move state: the mass matrix has {len(self.chol)} rows, the model "
                f"{self.n_dim} coordinates"
            )

    @property
    def frozen(self) -> bool:
        """True once the warm-up is over: the kernel no longer changes."""
        return self.iteration >= self.n_warmup

    # ------------------------------------------------------------------ the move
    def propose(self, model, state):
        """One jittered HMC iteration for all walkers; returns ``(state, accepted)``."""
        rng = model.random
        flip = self.flip
        xm0 = np.array(state.coords, dtype=float)  # the model's coordinates
        W, d = xm0.shape
        if not self.frozen and self.iteration < self.n_warmup // 2:
            xm0 = self._regroup(xm0, np.asarray(state.log_prob, dtype=float), rng)
        x0 = xm0 if flip is None else flip.to_other(xm0)  # the move's coordinates
        if self.chol is None:
            self._init_from(x0)
        L = self.chol
        lp0, g0 = self.value_and_grad(x0)
        evals = 1
        if np.isnan(self._da_mu):
            # dual averaging shrinks towards 10ε₀ (Hoffman & Gelman 2014, §3.2.1)
            self._da_mu = math.log(10.0 * self.step_size)

        eps = self.step_size
        u = rng.uniform()
        n_leap = int(min(self.max_leapfrog, max(1, math.ceil(u * self.trajectory / eps))))
        p0 = rng.standard_normal((W, d))
        # leapfrog in x̃ = L⁻¹ x with p̃ ~ N(0, I): ∇_x̃ log p = Lᵀ ∇_x log p (rows: g L)
        x, p, g, lp = x0.copy(), p0.copy(), g0, lp0
        bad = ~np.isfinite(lp0)
        # a divergent walker's trajectory may overflow: it is rejected below
        with np.errstate(over="ignore", invalid="ignore"):
            p = p + 0.5 * eps * (g @ L)
            for k in range(n_leap):
                x = x + eps * (p @ L.T)
                lp, g = self.value_and_grad(x)
                evals += 1
                bad |= ~np.isfinite(lp)
                p = p + (eps if k < n_leap - 1 else 0.5 * eps) * (g @ L)
            h0 = -lp0 + 0.5 * np.einsum("ij,ij->i", p0, p0)
            h1 = -lp + 0.5 * np.einsum("ij,ij->i", p, p)
            dh = h0 - h1  # log of the Metropolis ratio
            divergent = bad | ~np.isfinite(dh) | (dh < -_DIVERGENCE)
        dh = np.where(divergent, -np.inf, dh)
        accept_prob = np.exp(np.minimum(dh, 0.0))
        accepted = np.log(rng.uniform(size=W)) < dh

        x_new = np.where(accepted[:, None], x, x0)
        if not self.frozen:
            Linv = np.linalg.inv(L)
            self._adapt(x0 @ Linv.T, x @ Linv.T, p, accept_prob, divergent, u, x_new)
        self.iteration += 1
        self.n_grad_evals += evals
        self.last_divergent = divergent  # where the last iteration diverged (diagnostics)
        if self.frozen:
            self.n_divergent += int(divergent.sum())
        if self.on_step is not None:
            self.on_step(evals)

        if flip is None:
            state.coords = x_new
        else:  # rejected walkers keep their model coordinates exactly
            state.coords = np.where(accepted[:, None], flip.to_model(x), xm0)
            with np.errstate(invalid="ignore"):
                lp, lp0 = lp - flip.log_det(x), lp0 - flip.log_det(x0)
        state.log_prob = np.where(accepted, lp, lp0)
        return state, accepted

    # ------------------------------------------------------------------ adaptation
    def _regroup(self, x0: np.ndarray, lp: np.ndarray, rng) -> np.ndarray:
        """Warm-up only: walkers far below the ensemble's median log-posterior restart on a
        walker of the upper half."""
        fin = np.isfinite(lp)
        if fin.sum() < 2:
            return x0
        med = np.median(lp[fin])
        lost = ~fin | (lp < med - max(10.0, 3.0 * self.n_dim))
        if not lost.any():
            return x0
        good = np.flatnonzero(fin & (lp >= med))
        x0 = x0.copy()
        x0[lost] = x0[good[rng.randint(0, good.size, size=int(lost.sum()))]]
        return x0

    def _init_from(self, x0: np.ndarray) -> None:
        """Initial mass matrix, step size and trajectory from the starting ensemble."""
        # the Laplace scatter is shrunk by 1/2 (calib.sampling): undo that for the metric
        self.chol = shrunk_chol(4.0 * cross_walker_cov(x0), len(x0))
        # a step of 1/√d standard deviations keeps the energy error O(1) at the start
        self.step_size = 1.0 / math.sqrt(self.n_dim) if self.n_dim else 1.0
        self.trajectory = 1.0

    def _adapt(self, xt0, xt1, p1, alpha, divergent, u, x_new) -> None:
        k = self.iteration + 1  # this iteration, 1-based
        # ---- step size: dual averaging on the mean of the acceptance probabilities
        mean_accept = float(np.mean(alpha))
        self._da_t += 1
        t = self._da_t
        w = 1.0 / (t + _DA_T0)
        self._da_hbar = (1.0 - w) * self._da_hbar + w * (self.target_accept - mean_accept)
        log_eps = self._da_mu - math.sqrt(t) / _DA_GAMMA * self._da_hbar
        eta = t**-_DA_KAPPA
        self._da_logbar = eta * log_eps + (1.0 - eta) * self._da_logbar
        # ---- trajectory length: ChEES gradient ascent on log T (Hoffman et al. 2021, eq. 7)
        wts = np.where(divergent, 0.0, alpha)
        if wts.sum() > 0:
            grad = log_t_gradient(xt0, xt1, p1, wts, u * self.trajectory, self.criterion)
        else:
            grad = -1.0  # every walker diverged: shorten
        log_T = math.log(self.trajectory)
        if math.isfinite(grad):
            self._adam_t += 1
            self._adam_v = _BETA2 * self._adam_v + (1.0 - _BETA2) * grad * grad
            vhat = self._adam_v / (1.0 - _BETA2**self._adam_t)
            step = _LR * grad / (math.sqrt(vhat) + 1e-12)
            log_T += max(-_CLIP, min(_CLIP, step))
        self._avg_t += 1
        wa = self._avg_t**-0.5
        self._logT_avg = wa * log_T + (1.0 - wa) * self._logT_avg
        # ---- the mass matrix: cross-walker variance pooled over the window
        self._window_sum = self._window_sum + cross_walker_cov(x_new)
        self._window_n += 1
        # ---- the cap's unit: the posterior's largest sd in the current metric's coordinates
        spread = metric_spread(self._window_sum, self._window_n, self.chol)
        self._t_scale = self._t_scale if spread is None else spread

        new_eps = math.exp(log_eps) if math.isfinite(log_eps) else self.step_size
        window_end = self._window_end(k)
        if k >= self.n_warmup:
            # freeze: the averaged iterates (Hoffman & Gelman 2014; Hoffman et al. 2021)
            self.step_size = math.exp(self._da_logbar)
            self.trajectory = math.exp(self._logT_avg)
        elif window_end:
            n = self._window_n
            self.chol = shrunk_chol(self._window_sum / n, n * xt1.shape[0])
            self._window_sum = np.zeros((self.n_dim, self.n_dim))
            self._window_n = 0
            self._t_floor = self.step_size  # settled here; the restart's next ε is ~10×
            self.step_size = new_eps
            self.trajectory = math.exp(log_T)
            self._reset_adaptation(window_start=k)
        else:
            self.step_size = new_eps
            self.trajectory = math.exp(log_T)
        # the rate's T, blind below one step, went to 0: floored at the last window's ε, not the
        # current one, whose restart begins near 10ε̄ and would drag T up (docs/model.md)
        floor = self._t_floor if self.criterion == "chees_rate" else 0.0
        cap = min(t_cap(self.t_max, self._t_scale), self.max_leapfrog * self.step_size)
        self.trajectory = min(max(self.trajectory, floor), cap)

    def _window_end(self, k: int) -> bool:
        """Mass-matrix windows end at 20, 40, 80, ... iterations; the last one is stretched to
        3/4 of the warm-up, so the frozen ``s`` comes from the longest window."""
        last = int(0.75 * self.n_warmup)
        if k > last or k < 20:
            return False
        if k == last:
            return True
        doubling = k % 20 == 0 and (k // 20) & (k // 20 - 1) == 0
        return doubling and 2 * k <= last
