"""The posterior of a calibration: draws, summaries, predictions, discrepancy, diagnostics."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from . import diagnostics
from ._threads import torch_threads
from .likelihood import DTYPE, _truncated_draws

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


@dataclass
class PosteriorPrediction:
    """Posterior predictive at ``n`` points for ``m`` outputs.

    Attributes
    ----------
    mean : (n, m)
        Posterior mean (averaged exact conditional means, Rao–Blackwellized).
    sd : (n, m)
        Posterior sd by the law of total variance.
    lower, upper : (n, m)
        Equal-tailed interval from the draws (default 5 % and 95 %).
    draws : (n_draws, n, m)
        One draw per posterior sample.
    level : float
        Central probability of ``[lower, upper]``.
    """

    mean: np.ndarray
    sd: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    draws: np.ndarray
    level: float = 0.9
    output_names: tuple[str, ...] = field(default_factory=tuple)

    def __repr__(self) -> str:
        n, m = self.mean.shape
        names = ", ".join(self.output_names[:3]) + (", …" if len(self.output_names) > 3 else "")
        return (
            f"PosteriorPrediction({n} points × {m} outputs{f' ({names})' if names else ''}, "
            f"{len(self.draws)} draws, {self.level:.0%} interval; mean "
            f"{np.nanmin(self.mean):.4g} to {np.nanmax(self.mean):.4g}, sd "
            f"{np.nanmin(self.sd):.3g} to {np.nanmax(self.sd):.3g})"
        )


class Summary:
    """A table of posterior summaries: one row per quantity.

    Columns: mean, sd, q5, q50, q95; ``mcse`` (Monte Carlo standard error of the mean),
    ``ess`` (bulk ESS), ``ess_tail``, ``rhat`` (rank-normalized split-R̂; Vehtari et al.
    2021) and ``ok`` (this quantity meets the convergence targets). ``str(summary)`` is the
    formatted table; ``summary.rows`` is a list of dicts; ``summary[name]`` one row.
    """

    columns = ("mean", "sd", "q5", "q50", "q95", "mcse", "ess", "ess_tail", "rhat", "ok")

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows = rows

    def __getitem__(self, name: str) -> dict[str, Any]:
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(
            f"no quantity {name!r} in the summary; have {[r['name'] for r in self.rows]}"
        )

    def __len__(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {r["name"]: {c: r[c] for c in self.columns} for r in self.rows}

    def __str__(self) -> str:
        w = max([len("quantity")] + [len(r["name"]) for r in self.rows])
        head = f"{'quantity':<{w}}  " + "  ".join(f"{c:>10}" for c in self.columns)
        lines = [head, "-" * len(head)]
        for r in self.rows:
            cells = []
            for c in self.columns:
                v = r[c]
                if c == "ok":
                    cells.append(f"{'yes' if v else 'NO':>10}")
                elif c in ("ess", "ess_tail"):
                    cells.append(f"{v:>10.0f}")
                elif c == "rhat":
                    cells.append(f"{v:>10.4f}")
                else:
                    cells.append(f"{v:>10.4g}")
            lines.append(f"{r['name']:<{w}}  " + "  ".join(cells))
        return "\n".join(lines)

    __repr__ = __str__


class Posterior:
    """Posterior draws of a :class:`calib.Calibrator` and everything computed from them.

    Quantity names: a completely pooled parameter ``"E"``; a per-campaign value
    ``"E[batch-A]"`` (or ``draws("E", campaign="batch-A")``); a partially pooled parameter's
    population ``"E.mean"`` and ``"E.scale"`` (on the unconstrained scale ``u = g(θ)``);
    ``"discrepancy.scale"``, ``"discrepancy.lengthscale[<input>]"``; ``"noise.sd"`` or
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
        cn = self.model.campaign_names
        q: dict[str, np.ndarray] = {}

        def put(name: str, t: torch.Tensor) -> None:
            q[name] = t.numpy().reshape(n, W)

        th = parts["theta"]
        for j, prm in enumerate(self.model.parameters):
            if prm.pooling == "complete":
                put(prm.name, th[:, 0, j])
            else:
                for l, c in enumerate(cn):
                    put(f"{prm.name}[{c}]", th[:, l, j])
            if prm.pooling == "partial":
                put(f"{prm.name}.mean", parts[f"{prm.name}.mean"])
                put(f"{prm.name}.scale", parts[f"{prm.name}.scale"])
        if "disc_scale" in parts:
            put("discrepancy.scale", parts["disc_scale"])
            for d_, f in enumerate(self.model.feature_names):
                put(f"discrepancy.lengthscale[{f}]", parts["disc_ls"][:, d_])
        if self.model.noise == "shared":
            put("noise.sd", parts["noise_sd"][:, 0])
        elif self.model.noise in ("per_campaign", "hierarchical"):
            for l, c in enumerate(cn):
                put(f"noise.sd[{c}]", parts["noise_sd"][:, l])
            if self.model.noise == "hierarchical":
                put("noise.mean", parts["noise.mean"])
                put("noise.scale", parts["noise.scale"])
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
    def summary(self) -> Summary:
        """Mean, sd, 5/50/95 % quantiles, MCSE of the mean, bulk and tail ESS, rank-normalized
        split-R̂, and whether each quantity meets the convergence targets.

        A partially pooled parameter ``E`` also has two rows in its own units (``E.mean`` and
        ``E.scale`` act on the unconstrained scale u = g(E)): ``E.typical``, the population's
        median g⁻¹(μ), and ``E.new``, a new campaign's value g⁻¹(μ + τ z), z ~ N(0, 1), whose
        q5–q95 is the 90 % interval of campaign values the population implies. These are
        functions of the quantities above (they are not part of the verdict)."""
        rows = self._rows(self._compute_quantities(), self._diagnose())
        pop = self._population_quantities()
        if pop:
            rows += self._rows(pop, self._diagnose_quantities(pop))
        return Summary(rows)

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
        for prm in self.model.parameters:
            if prm.pooling != "partial":
                continue
            n = prm.name
            mu, tau = q[f"{n}.mean"], q[f"{n}.scale"]
            z = rng.standard_normal(mu.shape)
            with torch.no_grad():
                typical = prm.to_constrained(torch.as_tensor(mu, dtype=DTYPE, device=_CPU))[0]
                new = prm.to_constrained(torch.as_tensor(mu + tau * z, dtype=DTYPE, device=_CPU))[0]
            out[f"{n}.typical"], out[f"{n}.new"] = typical.numpy(), new.numpy()
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
    def _rows(quantities: dict[str, np.ndarray], diag: dict[str, dict[str, Any]]) -> list[dict]:
        rows = []
        for name, x in quantities.items():
            flat = x.reshape(-1)
            q5, q50, q95 = np.quantile(flat, [0.05, 0.5, 0.95])
            d = diag[name]
            rows.append(
                {
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
            )
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
        pooled = {p.name: p for p in self.model.parameters if p.pooling == "partial"}
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
    def _subsample(self, n_draws: int | None) -> np.ndarray:
        flat = self.flat_unconstrained()
        if n_draws is None or n_draws >= flat.shape[0]:
            return flat
        idx = np.linspace(0, flat.shape[0] - 1, int(n_draws)).round().astype(int)
        return flat[idx]

    def _x(self, X: Any) -> np.ndarray:
        p = self.model.p
        if X is None:
            if p:
                raise ValueError(f"X is None but the model has {p} control input(s)")
            return np.zeros((1, 0))
        X = np.asarray(X, dtype=float)
        if X.ndim == 1:
            X = X.reshape(-1, p) if p else X.reshape(-1, 0)
        if X.ndim != 2 or X.shape[1] != p:
            raise ValueError(f"X: expected shape (n, {p}), got {np.shape(X)}")
        if not np.isfinite(X).all():
            raise ValueError("X contains NaN or inf")
        return X

    def _campaign_index(self, campaign: str | None) -> int:
        names = self.model.campaign_names
        if campaign is None:
            if len(names) == 1:
                return 0
            raise ValueError(f"campaign is required: one of {names}")
        if campaign not in names:
            raise ValueError(f"campaign must be one of {names}, got {campaign!r}")
        return names.index(campaign)

    def _predict(self, X, campaign, what, noise, noise_sd, n_draws, seed, level, new=False):
        X = self._x(X)
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        rng = np.random.default_rng(seed)
        Us = self._subsample(n_draws)
        S = Us.shape[0]
        U = torch.as_tensor(Us, dtype=DTYPE, device=_CPU)
        theta_new = self._theta_new(U, rng) if new else None
        means, draws, variances = [], [], []
        chunk = 256
        for a in range(0, S, chunk):
            with torch.no_grad(), torch_threads(1):
                mean, cov, failed = self.model.predictive(
                    U[a : a + chunk],
                    X,
                    None if new else campaign,
                    what,
                    None if theta_new is None else theta_new[a : a + chunk],
                )
            mean_np = mean.numpy()
            cov_np = cov.numpy()
            d = _mvn_draws(mean_np.reshape(mean_np.shape[0], -1), cov_np, rng).reshape(
                mean_np.shape
            )
            var = np.clip(np.diagonal(cov_np, axis1=1, axis2=2), 0.0, None).reshape(mean_np.shape)
            if noise:
                sd = self._noise_sd(U[a : a + chunk], campaign, new, noise_sd, rng, X.shape[0])
                d = d + sd * rng.standard_normal(d.shape)
                var = var + sd**2
            bad = failed.numpy()
            if bad.any():
                mean_np, d, var = mean_np[~bad], d[~bad], var[~bad]
            means.append(mean_np)
            draws.append(d)
            variances.append(var)
        means, draws, variances = (np.concatenate(v) for v in (means, draws, variances))
        if draws.shape[0] == 0:
            raise RuntimeError("the forward model failed for every posterior draw")
        # law of total variance: E[Var] + Var[E]
        sd = np.sqrt(variances.mean(axis=0) + means.var(axis=0))
        lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
        return PosteriorPrediction(
            mean=means.mean(axis=0),
            sd=sd,
            lower=lo,
            upper=hi,
            draws=draws,
            level=level,
            output_names=tuple(self.calibrator.output_names),
        )

    def _theta_new(self, U: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """θ of a new, unseen campaign for every draw: from the population for partially
        pooled parameters, the common value for complete pooling, the prior for none."""
        with torch.no_grad():
            parts = self.model.unpack(U)
        S = U.shape[0]
        cols = []
        for j, prm in enumerate(self.model.parameters):
            if prm.pooling == "complete":
                cols.append(parts["theta"][:, 0, j])
            elif prm.pooling == "partial":
                u = parts[f"{prm.name}.mean"] + parts[f"{prm.name}.scale"] * torch.as_tensor(
                    rng.standard_normal(S), dtype=DTYPE, device=_CPU
                )
                cols.append(prm.to_constrained(u)[0])
            else:
                draws = _truncated_draws(prm, rng, (S, 1))[:, 0]
                cols.append(torch.as_tensor(draws, dtype=DTYPE, device=_CPU))
        return torch.stack(cols, dim=1)

    def _noise_sd(self, U, campaign, new, noise_sd, rng, n_points) -> np.ndarray:
        """Noise sd per draw, broadcastable to (S, n, m)."""
        model = self.model
        S = U.shape[0]
        if noise_sd is not None:
            s = np.asarray(noise_sd, dtype=float)
            if not (np.isfinite(s).all() and (s > 0).all()):
                raise ValueError(f"noise_sd must be finite and > 0, got {noise_sd!r}")
            return np.broadcast_to(
                s, (S,) + np.broadcast_shapes(s.shape, (n_points, model.m))
            ).copy()
        if model.noise == "known":
            if new:
                raise ValueError("noise='known': give noise_sd= for a new campaign's observations")
            sds = model.noises[campaign]
            if not np.allclose(sds, sds.flat[0]):
                raise ValueError(
                    f"campaign {model.campaign_names[campaign]!r} has observation-specific known "
                    f"noise: give noise_sd= for the new points"
                )
            return np.full((S, 1, 1), float(sds.flat[0]))
        with torch.no_grad():
            parts = model.unpack(U)
        sd = parts["noise_sd"].numpy()  # (S, L)
        if not new:
            return sd[:, campaign][:, None, None]
        if model.noise == "shared":
            return sd[:, 0][:, None, None]
        if model.noise == "hierarchical":
            ls = parts["noise.mean"].numpy() + parts["noise.scale"].numpy() * rng.standard_normal(S)
            return np.exp(ls)[:, None, None]
        return model.noise_prior.sample(rng, S)[:, None, None]  # per_campaign: no population

    def predict(
        self,
        X: Any,
        campaign: str | None = None,
        noise: bool = False,
        noise_sd: Any = None,
        n_draws: int | None = 1000,
        seed: int | None = 0,
        level: float = 0.9,
    ) -> PosteriorPrediction:
        """Predict reality ``ζ_ℓ(x) = η(x, θ_ℓ) + δ_ℓ(x)`` of a campaign at ``X (n, p)``.

        Parameters
        ----------
        X : array (n, p), or None for a model with no control inputs
        campaign : str
            Required when there are several campaigns.
        noise : bool
            Add observation noise (a new measurement) rather than predict the true value.
        noise_sd : float or array, optional
            The noise sd of the new measurements when the noise is known and not constant.
        n_draws : int or None
            Posterior draws used (evenly spaced in the chain); None for all.
        seed : int
            For the δ and noise draws.
        level : float
            Central probability of the interval.
        """
        c = self._campaign_index(campaign)
        return self._predict(X, c, "reality", noise, noise_sd, n_draws, seed, level)

    def predict_new_campaign(
        self,
        X: Any,
        noise: bool = False,
        noise_sd: Any = None,
        n_draws: int | None = 1000,
        seed: int | None = 0,
        level: float = 0.9,
    ) -> PosteriorPrediction:
        """Predict reality in a new, unseen campaign: θ drawn from the population (partial
        pooling), the common θ (complete), or the prior (none); a shared δ is the fitted one,
        an independent δ a fresh draw from its GP prior."""
        return self._predict(X, None, "reality", noise, noise_sd, n_draws, seed, level, new=True)

    def discrepancy(
        self,
        X: Any,
        campaign: str | None = None,
        n_draws: int | None = 1000,
        seed: int | None = 0,
        level: float = 0.9,
    ) -> PosteriorPrediction:
        """δ_ℓ at ``X (n, p)`` (and every output), drawn from its exact Gaussian conditional
        given the data for every posterior draw."""
        c = self._campaign_index(campaign)
        return self._predict(X, c, "discrepancy", False, None, n_draws, seed, level)

    def __repr__(self) -> str:
        return (
            f"Posterior(n_steps={self.chain.shape[0]}, n_walkers={self.n_walkers}, burn={self.burn}, "
            f"n_dim={self.chain.shape[2]})"
        )

    # ------------------------------------------------------------------ exports
    def to_arviz(self) -> Any:
        """The post-burn-in draws as ArviZ ``InferenceData`` (needs ``calib[arviz]``).

        Returns
        -------
        arviz.InferenceData
            ``posterior``: one variable per quantity of :attr:`names`, dimensions
            ``(chain, draw)`` with one chain per walker; ``sample_stats``: ``lp`` (the
            log-posterior in the sampled space) and ``acceptance_rate`` per walker.

        Raises
        ------
        ImportError
            If ArviZ is not installed (``pip install 'calib[arviz]'``).
        """
        try:
            import arviz as az
        except ImportError:
            raise ImportError(
                "Posterior.to_arviz needs ArviZ: pip install 'calib[arviz]'"
            ) from None
        q = self._compute_quantities()
        n = self.kept.shape[0]
        return az.from_dict(
            posterior={k: np.ascontiguousarray(v.T) for k, v in q.items()},
            sample_stats={
                "lp": np.ascontiguousarray(self.log_prob[self.burn :].T),
                "acceptance_rate": np.repeat(self.acceptance[:, None], n, axis=1),
            },
            attrs={"inference_library": "emcee", "burn": self.burn},
        )

    def to_dataframe(self) -> Any:
        """The post-burn-in draws as a pandas ``DataFrame``, one row per (walker, step).

        Columns ``walker``, ``step`` (counted from the start of the chain), one per quantity
        of :attr:`names`, and ``log_prob``. pandas is imported here only (it comes with
        ``calib[arviz]``).

        Raises
        ------
        ImportError
            If pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "Posterior.to_dataframe needs pandas: pip install pandas (or 'calib[arviz]')"
            ) from None
        q = self._compute_quantities()
        n, w = self.kept.shape[:2]
        cols: dict[str, np.ndarray] = {
            "walker": np.tile(np.arange(w), n),
            "step": np.repeat(np.arange(self.burn, self.burn + n), w),
        }
        for k, v in q.items():
            cols[k] = v.reshape(-1)
        cols["log_prob"] = self.log_prob[self.burn :].reshape(-1)
        return pd.DataFrame(cols)


def _mvn_draws(mean: np.ndarray, cov: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw of N(mean_s, cov_s) per s; ``mean (S, k)``, ``cov (S, k, k)``. The symmetric
    eigendecomposition with negative eigenvalues (rounding) clipped to zero: conditional
    covariances are often singular to working precision."""
    if cov.shape[-1] == 0:
        return mean.copy()
    w, V = np.linalg.eigh(cov)
    w = np.clip(w, 0.0, None)
    xi = rng.standard_normal(mean.shape)
    return mean + np.einsum("sij,sj->si", V, np.sqrt(w) * xi)
