"""The posterior of a calibration: draws, summaries, predictions, discrepancy, diagnostics."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from . import diagnostics
from ._threads import torch_threads
from ._validation import check_number
from .blocks import PartialPooling
from .export import Exports
from .identifiability import Identifiability
from .likelihood import DTYPE
from .prediction import PosteriorPrediction, Predictions
from .summary import Summary as Summary
from .summary import _interval_names

__all__ = ["ConvergenceWarning", "Posterior", "PosteriorPrediction", "Summary"]

#: the posterior's tensors: NumPy's values on the CPU, whatever the model's device (its
#: methods compute there and return to the device they were given)
_CPU = torch.device("cpu")

#: convergence targets when the run does not state its own (Vehtari et al. 2021, §4.2, §4.3)
TARGET_RHAT, TARGET_ESS = 1.01, 400.0


class ConvergenceWarning(UserWarning):
    """The posterior did not reach the convergence targets (rank-normalized split-R̂ and
    bulk ESS), or the gradient move diverged after warm-up: its draws may be wrong. The
    message names the worst quantities, their R̂ and ESS, and what to try."""


class Posterior(Predictions, Exports, Identifiability):
    """Posterior draws of a :class:`calib.Calibrator` and everything computed from them.

    Quantity names: a completely pooled parameter ``"E"``; a per-campaign value
    ``"E[batch-A]"`` (or ``draws("E", campaign="batch-A")``); a partially pooled parameter's
    population ``"E.mean"`` and ``"E.scale"`` (on the unconstrained scale ``u = g(θ)``);
    ``"discrepancy.scale"``, ``"discrepancy.lengthscale[<input>]"`` (with pooled δ scales
    ``"discrepancy.scale[<campaign>]"``, ``"discrepancy.scale.mean"`` and
    ``"discrepancy.scale.sd"``, of ``log σ_δ``; an S-GaSP's sampled ``"discrepancy.scaling"``);
    ``"noise.sd"`` or
    ``"noise.sd[<campaign>]"``; ``"noise.mean"``, ``"noise.scale"`` (hierarchical noise, of
    ``log σ``).
    """

    def __init__(
        self,
        calibrator,
        chain: np.ndarray,
        log_prob: np.ndarray,
        acceptance: np.ndarray,
        burn: int,
        info: dict[str, Any] | None = None,
    ):
        self.calibrator = calibrator
        self.model = calibrator.model
        self.chain = np.asarray(chain, dtype=float)  # (n_steps, n_walkers, n_dim)
        self.log_prob = np.asarray(log_prob, dtype=float)
        self.acceptance = np.asarray(acceptance, dtype=float)
        self.burn = int(burn)
        self.info = dict(info or {})
        self._quantities: dict[str, np.ndarray] | None = None

    # ------------------------------------------------------------------ draws
    @property
    def n_walkers(self) -> int:
        return self.chain.shape[1]

    @property
    def kept(self) -> np.ndarray:
        """Post-burn-in chain ``(n_kept, n_walkers, n_dim)`` in the unconstrained space."""
        return self.chain[self.burn :]

    def flat_unconstrained(self) -> np.ndarray:
        """Post-burn-in draws of all walkers as ``(n_kept·n_walkers, n_dim)``."""
        return self.kept.reshape(-1, self.chain.shape[2])

    def _compute_quantities(self) -> dict[str, np.ndarray]:
        if self._quantities is not None:
            return self._quantities
        k = self.kept
        n, W, d = k.shape
        flat = torch.as_tensor(k.reshape(-1, d), dtype=DTYPE, device=_CPU)
        with torch.no_grad(), torch_threads(1):
            parts = self.model.unpack(flat)
        q: dict[str, np.ndarray] = {}

        def put(name: str, t: torch.Tensor) -> None:
            q[name] = t.numpy().reshape(n, W)

        th = parts["theta"]
        model = self.model
        for j, block in enumerate(model.param_blocks):
            for name, t in block.named(th[:, :, j], parts).items():
                put(name, t)
        for block in (model.disc_block, model.noise_block):
            if block is not None:
                for name, t in block.named(parts).items():
                    put(name, t)
        self._quantities = q
        return q

    @property
    def names(self) -> list[str]:
        """Every quantity that :meth:`draws` accepts (and :meth:`summary` lists)."""
        return list(self._all_quantities())

    def _all_quantities(self) -> dict[str, np.ndarray]:
        """The sampled quantities, then ``E.typical`` and ``E.new`` (:meth:`summary`)."""
        return {**self._compute_quantities(), **self._population_quantities()}

    def _key(self, name: str, campaign: str | None) -> str:
        q = self._all_quantities()
        if campaign is not None:
            if campaign not in self.model.campaign_names:
                raise ValueError(
                    f"campaign must be one of {self.model.campaign_names}, got {campaign!r}"
                )
            key = f"{name}[{campaign}]"
            if key in q:
                return key
            if name in q:
                return name  # a completely pooled or global quantity: the same in every campaign
            raise KeyError(f"no quantity {name!r}; have {sorted(q)}")
        if name in q:
            return name
        if f"{name}[{self.model.campaign_names[0]}]" in q:
            raise ValueError(
                f"{name!r} differs between campaigns: give campaign= one of {self.model.campaign_names}"
            )
        raise KeyError(f"no quantity {name!r}; have {sorted(q)}")

    def draws(self, name: str, campaign: str | None = None) -> np.ndarray:
        """Post-burn-in draws of one quantity, all walkers, as one flat array.

        Parameters
        ----------
        name : str
            ``"E"``, ``"E.mean"``, ``"E.scale"``, ``"E.typical"``, ``"E.new"``,
            ``"noise.sd"``, ``"discrepancy.scale"``, ...
        campaign : str, optional
            Required for per-campaign values (pooling ``"none"``/``"partial"``, per-campaign noise).

        Returns
        -------
        ndarray of shape (n_kept · n_walkers,), ordered step-major.
        """
        return self._all_quantities()[self._key(name, campaign)].reshape(-1)

    # ------------------------------------------------------------------ summaries
    def summary(self, level: float = 0.9) -> Summary:
        """Mean, sd, the median and the equal-tailed ``level`` interval (5 % and 95 % by
        default), MCSE of the mean, bulk and tail ESS, rank-normalized split-R̂, and whether
        each quantity meets the convergence targets.

        A partially pooled parameter ``E`` also has two rows in its own units (``E.mean`` and
        ``E.scale`` act on the unconstrained scale u = g(E)): ``E.typical``, the population's
        median g⁻¹(μ), and ``E.new``, a new campaign's value g⁻¹(μ + τ z), z ~ N(0, 1), whose
        q5–q95 is the 90 % interval of campaign values the population implies. These are
        functions of the quantities above (they are not part of the verdict). When a
        calibration parameter is barely informed or traded against δ, ``summary.notes``
        says so (:meth:`identifiability`, without its δ predictions).

        Parameters
        ----------
        level : float
            Central probability of the interval columns, in (0, 1).
        """
        level = check_number(level, "level", 0, 1)
        rows = self._rows(self._compute_quantities(), self._diagnose(), level)
        pop = self._population_quantities()
        if pop:
            rows += self._rows(pop, self._diagnose_quantities(pop), level)
        # only when a flag fires, and without δ predictions, so the table stays fast
        return Summary(rows, level, notes=self._identifiability(cheap=True).warnings)

    def _population_quantities(self) -> dict[str, np.ndarray]:
        """``E.typical`` and ``E.new`` (in E's units) of every partially pooled parameter."""
        cached = getattr(self, "_population_cache", None)
        if cached is not None:
            return cached
        q = self._compute_quantities()
        out: dict[str, np.ndarray] = {}
        # one fixed stream (the summary of a posterior is reproducible), a fresh z for each
        # parameter: the pooled parameters of a new campaign are independent given (μ, τ)
        rng = np.random.default_rng(0)
        for block in self.model.param_blocks:
            out.update(block.population(q, rng))
        self._population_cache = out
        return out

    def _diagnose_quantities(self, q: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
        names = list(q)
        res = diagnostics.summarize(np.stack([q[n] for n in names], axis=-1))
        t_rhat, t_ess = self.targets
        out: dict[str, dict[str, Any]] = {}
        for i, n in enumerate(names):
            row = {key: float(np.asarray(v)[i]) for key, v in res.items()}
            constant = bool(np.ptp(q[n]) == 0)
            row["ok"] = constant or bool(row["rhat"] < t_rhat and row["ess_bulk"] >= t_ess)
            out[n] = row
        return out

    @staticmethod
    def _rows(
        quantities: dict[str, np.ndarray], diag: dict[str, dict[str, Any]], level: float = 0.9
    ) -> list[dict]:
        rows = []
        lo_name, hi_name = _interval_names(level)
        for name, x in quantities.items():
            flat = x.reshape(-1)
            q5, q50, q95, lo, hi = np.quantile(
                flat, [0.05, 0.5, 0.95, (1 - level) / 2, (1 + level) / 2]
            )
            d = diag[name]
            row = {
                "name": name,
                "mean": float(flat.mean()),
                "sd": float(flat.std(ddof=1)),
                "q5": float(q5),
                "q50": float(q50),
                "q95": float(q95),
                "mcse": d["mcse_mean"],
                "ess": d["ess_bulk"],
                "ess_tail": d["ess_tail"],
                "rhat": d["rhat"],
                "ok": d["ok"],
                "mcse_q5": d["mcse_q5"],
                "mcse_q95": d["mcse_q95"],
            }
            # the level's ends (q5 and q95 themselves at the default 0.9)
            row.setdefault(lo_name, float(lo))
            row.setdefault(hi_name, float(hi))
            rows.append(row)
        return rows

    @property
    def targets(self) -> tuple[float, float]:
        """``(target_rhat, target_ess)`` of the verdict: the run's own, else 1.01 and 400."""
        return (
            float(self.info.get("target_rhat", TARGET_RHAT)),
            float(self.info.get("target_ess", TARGET_ESS)),
        )

    def _diagnose(self) -> dict[str, dict[str, Any]]:
        """Rank-normalized R̂, bulk/tail ESS and MCSEs of every quantity, walkers as chains
        (one vectorized pass over all quantities; cached)."""
        cached = getattr(self, "_diag_cache", None)
        if cached is not None:
            return cached
        out = self._diagnose_quantities(self._compute_quantities())
        self._diag_cache = out
        return out

    @property
    def converged(self) -> bool:
        """The verdict: every quantity has rank-normalized split-R̂ below the target (1.01)
        and bulk ESS at least the target (400), walkers as chains (Vehtari et al. 2021)."""
        return all(r["ok"] for r in self._diagnose().values())

    def diagnostics(self) -> dict[str, Any]:
        """Convergence diagnostics (the same numbers as :meth:`summary` and the stopping rule).

        Returns
        -------
        dict with ``rhat``, ``ess_bulk``, ``ess_tail`` (per quantity), ``rhat_max``,
        ``ess_min`` (smallest bulk ESS), ``ess_tail_min``, ``worst`` (the quantities that
        miss the targets, worst first), ``converged``, ``target_rhat``, ``target_ess``,
        ``acceptance_mean``, ``acceptance_min``, ``n_steps``, ``burn``, ``n_walkers``,
        ``n_kept``; for the gradient move ``step_size``, ``trajectory_length``,
        ``n_grad_evals`` and ``n_divergent`` (after warm-up; for the interweaved move also
        ``n_divergent_parts``, in the model's and in the other coordinates); ``stopped_early`` and
        ``n_steps_budget`` when known.
        """
        diag = self._diagnose()
        t_rhat, t_ess = self.targets
        rh = {n: r["rhat"] for n, r in diag.items()}
        eb = {n: r["ess_bulk"] for n, r in diag.items()}
        et = {n: r["ess_tail"] for n, r in diag.items()}
        out = {
            "rhat": rh,
            "ess_bulk": eb,
            "ess_tail": et,
            "rhat_max": float(np.nanmax(list(rh.values()))),
            "ess_min": float(np.min(list(eb.values()))),
            "ess_tail_min": float(np.min(list(et.values()))),
            "worst": self._worst(),
            "converged": self.converged,
            "target_rhat": t_rhat,
            "target_ess": t_ess,
            "acceptance_mean": float(self.acceptance.mean()),
            "acceptance_min": float(self.acceptance.min()),
            "n_steps": int(self.chain.shape[0]),
            "burn": self.burn,
            "n_walkers": self.n_walkers,
            "n_kept": int(self.kept.shape[0]),
        }
        keys = (
            "stopped_early",
            "n_steps_budget",
            "moves",
            "warmup",
            "step_size",
            "trajectory_length",
            "n_grad_evals",
            "n_divergent",
            "n_divergent_parts",
        )
        out.update({k: v for k, v in self.info.items() if k in keys})
        return out

    def _worst(self, k: int | None = None) -> list[dict[str, Any]]:
        """Quantities that miss the targets, the worst (largest R̂ excess or ESS shortfall)
        first."""
        t_rhat, t_ess = self.targets
        bad = [
            {"name": n, "rhat": r["rhat"], "ess_bulk": r["ess_bulk"]}
            for n, r in self._diagnose().items()
            if not r["ok"]
        ]
        bad.sort(
            key=lambda r: -max((r["rhat"] - 1.0) / (t_rhat - 1.0), t_ess / max(r["ess_bulk"], 1e-9))
        )
        return bad if k is None else bad[:k]

    def warn_if_unconverged(self, stacklevel: int = 2) -> None:
        """Emit :class:`ConvergenceWarning` if the verdict is negative or the gradient move
        diverged after warm-up, naming the worst quantities and what to try."""
        t_rhat, t_ess = self.targets
        div = int(self.info.get("n_divergent", 0) or 0)
        parts = self.info.get("n_divergent_parts")
        if parts and min(parts) == 0:
            # the interweaved move diverged in one parameterization of the pooled groups only:
            # the other one reaches that region (docs/model.md, "Interweaving")
            div = 0
        if div:
            n_it = (self.chain.shape[0] - int(self.info.get("warmup", 0))) * self.n_walkers
            where = (
                f" ({parts[0]} in the model's coordinates, {parts[1]} in the other "
                f"parameterization of the pooled groups: each reaches regions the other "
                f"cannot, so this counts only because both diverged)"
                if parts
                else ""
            )
            warnings.warn(
                f"{div} of {n_it} HMC transitions after warm-up diverged{where}: the sampler cannot "
                f"follow the posterior's curvature somewhere (often a funnel between a "
                f"population scale and its campaign values, or a δ length-scale near zero), so "
                f"the draws may be biased there. Try: a longer warmup=, a tighter prior on the "
                f"scale parameters, or moves='de' to compare.",
                ConvergenceWarning,
                stacklevel=stacklevel,
            )
        if self.converged:
            return
        bad = self._worst()
        names = ", ".join(
            f"{r['name']} (R̂ {r['rhat']:.3f}, ESS {r['ess_bulk']:.0f})" for r in bad[:3]
        )
        more_s = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        n, budget = self.chain.shape[0], self.info.get("n_steps_budget", self.chain.shape[0])
        pooled = {  # the groups whose parameterization can be flipped (not correlated ones)
            b.name: b.parameter
            for b in self.model.param_blocks
            if isinstance(b, PartialPooling)
            and b.pooled_group(self.model.slots).population == "normal"
        }
        slow = [r["name"].split(".")[0] for r in bad if r["name"].split(".")[0] in pooled]
        hint = ""
        interweaved = (self.info.get("move_state") or {}).get("kind") == "interweaved-hmc"
        if slow and not interweaved:  # the interweaved move runs in both already
            name = slow[0]
            flip = not pooled[name].centered
            why = (
                f"centred suits campaigns that each pin {name} well"
                if flip
                else "non-centred suits campaigns with few or noisy observations"
            )
            hint = (
                f"the population of '{name}' mixes slowly: try Parameter('{name}', ..., "
                f"centered={flip}) ({why}); "
            )
        state = self.info.get("move_state") or {}
        state = (state.get("parts") or [state])[0]
        ell = [r["name"] for r in bad if "lengthscale" in r["name"]]
        if ell and state.get("criterion") == "chees_rate":
            hint += (
                f"'{ell[0]}' mixes slowly: a heavy-tailed length-scale wants longer HMC "
                f"trajectories, try sample(..., trajectory_criterion='chees'); "
            )
        warnings.warn(
            f"the posterior has not converged after {n} of {budget} steps: {names}{more_s} "
            f"miss R̂ < {t_rhat} or bulk ESS ≥ {t_ess:.0f} (walkers as chains). Do not use "
            f"these draws as they are. Try: {hint}continuing the run (archive=..., resume=True with "
            f"a larger n_steps), more walkers (n_walkers=), a longer warmup=; a δ that absorbs "
            f"what θ should explain shows as a slow θ and δ scale: tighten the discrepancy's "
            f"scale or length-scale priors; see post.diagnostics().",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )

    # ------------------------------------------------------------------ predictions
    def __repr__(self) -> str:
        return (
            f"Posterior(n_steps={self.chain.shape[0]}, n_walkers={self.n_walkers}, burn={self.burn}, "
            f"n_dim={self.chain.shape[2]})"
        )

    # ------------------------------------------------------------------ spike-and-slab
    def inclusion_probability(self, name: str) -> dict[str, float]:
        """``{campaign: P(slab | data)}`` of a ``pooling="spike_slab"`` parameter: how
        probably each campaign differs from the population (Rao-Blackwellized over the
        draws; :func:`calib._spike_slab.inclusion_probability`, docs/model.md §2b)."""
        from ._spike_slab import inclusion_probability

        return inclusion_probability(self, name)

    def discoveries(self, name: str, fdr: float = 0.1):
        """The campaigns whose ``name`` (``pooling="spike_slab"``) differs, at a Bayesian
        false discovery rate ``fdr``: a :class:`calib._spike_slab.Discoveries` (the largest
        set whose mean posterior null probability is at most ``fdr``; docs/model.md §2b)."""
        from ._spike_slab import discoveries

        return discoveries(self, name, fdr)

    # ------------------------------------------------------------------ correlated pooling
    def correlation(self, a: str, b: str) -> np.ndarray:
        """Posterior draws of the correlation of the population effects of ``a`` and ``b``
        (``Calibrator(correlated=[(a, b)])``; the quantity ``"corr(a,b)"``, either order;
        :func:`calib.blocks.correlated.correlation_draws`, docs/model.md §2c)."""
        from .blocks.correlated import correlation_draws

        return correlation_draws(self, a, b)

    # ------------------------------------------------------------------ exports
