"""The posterior of a calibration: draws, summaries, predictions, discrepancy, diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._threads import torch_threads
from .diagnostics import ess, integrated_time, split_rhat
from .likelihood import DTYPE, _truncated_draws

__all__ = ["Posterior", "PosteriorPrediction", "Summary"]


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


class Summary:
    """A table of posterior summaries: one row per quantity.

    Columns: mean, sd, q5, q50, q95, ess, rhat. ``str(summary)`` is the formatted table;
    ``summary.rows`` is a list of dicts; ``summary[name]`` one row.
    """

    columns = ("mean", "sd", "q5", "q50", "q95", "ess", "rhat")

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
        head = f"{'quantity':<{w}}  " + "  ".join(f"{c:>11}" for c in self.columns)
        lines = [head, "-" * len(head)]
        for r in self.rows:
            cells = []
            for c in self.columns:
                v = r[c]
                cells.append(f"{v:>11.0f}" if c == "ess" else f"{v:>11.4g}")
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
        flat = torch.as_tensor(k.reshape(-1, d), dtype=DTYPE)
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
        """Every quantity that :meth:`draws` accepts."""
        return list(self._compute_quantities())

    def _key(self, name: str, campaign: str | None) -> str:
        q = self._compute_quantities()
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
            ``"E"``, ``"E.mean"``, ``"E.scale"``, ``"noise.sd"``, ``"discrepancy.scale"``, ...
        campaign : str, optional
            Required for per-campaign values (pooling ``"none"``/``"partial"``, per-campaign noise).

        Returns
        -------
        ndarray of shape (n_kept · n_walkers,), ordered step-major.
        """
        return self._compute_quantities()[self._key(name, campaign)].reshape(-1)

    # ------------------------------------------------------------------ summaries
    def summary(self) -> Summary:
        """Mean, sd, 5/50/95 % quantiles, ESS and split R̂ of every quantity."""
        rows = []
        for name, x in self._compute_quantities().items():
            flat = x.reshape(-1)
            q5, q50, q95 = np.quantile(flat, [0.05, 0.5, 0.95])
            rows.append(
                {
                    "name": name,
                    "mean": float(flat.mean()),
                    "sd": float(flat.std(ddof=1)),
                    "q5": float(q5),
                    "q50": float(q50),
                    "q95": float(q95),
                    "ess": float(ess(x)),
                    "rhat": float(split_rhat(x)),
                }
            )
        return Summary(rows)

    def diagnostics(self) -> dict[str, Any]:
        """Convergence diagnostics.

        Returns
        -------
        dict with ``tau`` (integrated autocorrelation time per sampled coordinate, labelled),
        ``tau_max``, ``ess_min``, ``rhat_max`` (over coordinates), ``acceptance_mean``,
        ``acceptance_min``, ``n_steps``, ``burn``, ``n_walkers``, ``chain_over_tau``
        (kept steps / τ_max) and ``converged`` (kept chain > 50 τ_max and R̂ < 1.01).
        """
        k = self.kept
        tau = integrated_time(k)
        rhat = split_rhat(k)
        e = k.shape[0] * k.shape[1] / tau
        tau_max = float(np.max(tau))
        return {
            "tau": dict(zip(self.model.labels, map(float, tau))),
            "tau_max": tau_max,
            "ess_min": float(np.min(e)),
            "rhat_max": float(np.max(rhat)),
            "acceptance_mean": float(self.acceptance.mean()),
            "acceptance_min": float(self.acceptance.min()),
            "n_steps": int(self.chain.shape[0]),
            "burn": self.burn,
            "n_walkers": self.n_walkers,
            "chain_over_tau": float(k.shape[0] / tau_max),
            "converged": bool(k.shape[0] > 50 * tau_max and np.max(rhat) < 1.01),
            **{k_: v for k_, v in self.info.items() if k_ in ("stopped_early", "n_steps_budget")},
        }

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
        U = torch.as_tensor(Us, dtype=DTYPE)
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
                    rng.standard_normal(S), dtype=DTYPE
                )
                cols.append(prm.to_constrained(u)[0])
            else:
                cols.append(torch.as_tensor(_truncated_draws(prm, rng, (S, 1))[:, 0], dtype=DTYPE))
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
