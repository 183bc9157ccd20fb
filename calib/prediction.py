"""Predictions from a posterior: reality, δ and a new campaign, with uncertainty.

For each posterior draw the exact Gaussian conditional of δ or of reality at the new points
(:func:`calib.conditional.predictive`, docs/model.md eq. 9) gives a mean and covariance; a
draw from it (plus measurement noise when asked) is one predictive draw. The summary mean is
the average of the conditional means (Rao–Blackwellized), the sd the law of total variance.
Functional outputs are predicted at the model's output coordinates, or with ``coords=`` at
any inside their range (:mod:`calib._predict_coords`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._predict_coords import check_coords, output_labels, prediction_outputs
from ._threads import torch_threads
from .conditional import predictive

__all__ = ["PosteriorPrediction", "Predictions"]

DTYPE = torch.float64
_CPU = torch.device("cpu")


@dataclass
class PosteriorPrediction:
    """Posterior predictive at ``n`` points for ``m`` outputs (``k`` with ``coords=``).

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
    output_names : tuple of str
        A name per output: the model's output name, or ``"s=<coordinate>"`` for one
        predicted between the model's output coordinates (``coords=``).
    coords : (m, r) or None
        The output coordinate of each output (column), or None when the model's outputs
        have none.
    """

    mean: np.ndarray
    sd: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    draws: np.ndarray
    level: float = 0.9
    output_names: tuple[str, ...] = field(default_factory=tuple)
    coords: np.ndarray | None = None

    def __repr__(self) -> str:
        n, m = self.mean.shape
        names = ", ".join(self.output_names[:3]) + (", …" if len(self.output_names) > 3 else "")
        return (
            f"PosteriorPrediction({n} points × {m} outputs{f' ({names})' if names else ''}, "
            f"{len(self.draws)} draws, {self.level:.0%} interval; mean "
            f"{np.nanmin(self.mean):.4g} to {np.nanmax(self.mean):.4g}, sd "
            f"{np.nanmin(self.sd):.3g} to {np.nanmax(self.sd):.3g})"
        )


class Predictions:
    """The prediction methods of :class:`calib.Posterior` (it sets ``model``,
    ``calibrator`` and the chain)."""

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

    def _predict(
        self, X, campaign, what, noise, noise_sd, n_draws, seed, level, new=False, coords=None
    ):
        X = self._x(X)
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1), got {level!r}")
        # checked before any work; None: the model's m outputs
        at = check_coords(self.model, coords, None if new else campaign)
        names, out_coords = self._outputs(at)
        rng = np.random.default_rng(seed)
        Us = self._subsample(n_draws)
        S = Us.shape[0]
        U = torch.as_tensor(Us, dtype=DTYPE, device=_CPU)
        theta_new = self._theta_new(U, rng) if new else None
        scale_new = self._disc_scale_new(U, rng) if new else None
        means, draws, variances = [], [], []
        chunk = 256
        for a in range(0, S, chunk):
            with torch.no_grad(), torch_threads(1):
                mean, cov, failed = predictive(
                    self.model,
                    U[a : a + chunk],
                    X,
                    None if new else campaign,
                    what,
                    None if theta_new is None else theta_new[a : a + chunk],
                    None if scale_new is None else scale_new[a : a + chunk],
                    coords=at,
                )
            mean_np = mean.numpy()
            cov_np = cov.numpy()
            d = _mvn_draws(mean_np.reshape(mean_np.shape[0], -1), cov_np, rng).reshape(
                mean_np.shape
            )
            var = np.clip(np.diagonal(cov_np, axis1=1, axis2=2), 0.0, None).reshape(mean_np.shape)
            if noise:
                sd = self._noise_sd(
                    U[a : a + chunk], campaign, new, noise_sd, rng, (X.shape[0], len(names))
                )
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
            output_names=names,
            coords=out_coords,
        )

    def _outputs(self, at: np.ndarray | None) -> tuple[tuple[str, ...], np.ndarray | None]:
        """The names and the coordinates ``(k, r)`` (None without) of the predicted outputs:
        the model's ``m``, or those at coordinates ``at``."""
        model, names = self.model, tuple(self.calibrator.output_names)
        if at is None:
            oc = model.output_coords
            return names, None if oc is None else np.array(oc, dtype=float)
        field, out = prediction_outputs(model, at)
        coords = model.output_coords if field is None else field.coords
        return output_labels(names, model, field, out), np.array(coords[out], dtype=float)

    def _theta_new(self, U: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """θ of a new, unseen campaign for every draw: from the population for partially
        pooled parameters (jointly for a correlated group), the common value for complete
        pooling, the prior for none."""
        with torch.no_grad():
            parts = self.model.unpack(U)
        S = U.shape[0]
        theta = parts["theta"]
        cols, joint = [], {}
        for j, block in enumerate(self.model.param_blocks):
            group = getattr(block, "group", None)
            if group is None:
                cols.append(block.theta_new(theta[:, :, j], parts, rng, S))
                continue
            # correlated pooling: one z for the whole group, θ_new = g⁻¹(μ + τ ⊙ L_Ω z)
            # (docs/model.md §2c), drawn when its first member comes
            if group.slot not in joint:
                with torch.no_grad():
                    joint[group.slot] = group.standard_new(
                        U.to(self.model.device), self.model.slots, rng
                    )
            cols.append(block.theta_from(joint[group.slot][block.name].to(U.device), parts))
        return torch.stack(cols, dim=1)

    def _disc_scale_new(self, U: torch.Tensor, rng: np.random.Generator) -> torch.Tensor | None:
        """σ_δ of a new campaign per draw, ``exp(m + s z)`` with ``z ~ N(0, 1)``, when δ's
        scales are pooled (docs/model.md §3c); None otherwise (no draw from ``rng``, so the
        other models' predictions are unchanged)."""
        block = self.model.disc_block
        if block is None or not block.pooled:
            return None
        with torch.no_grad():
            parts = self.model.unpack(U)
        draws = block.new_campaign_scale(parts, rng, U.shape[0])
        return torch.as_tensor(draws, dtype=DTYPE, device=U.device)

    def _noise_sd(self, U, campaign, new, noise_sd, rng, shape) -> np.ndarray:
        """Noise sd per draw, broadcastable to (S, n, k); ``shape`` is ``(n, k)``."""
        model = self.model
        S = U.shape[0]
        if noise_sd is not None:
            s = np.asarray(noise_sd, dtype=float)
            if not (np.isfinite(s).all() and (s > 0).all()):
                raise ValueError(f"noise_sd must be finite and > 0, got {noise_sd!r}")
            return np.broadcast_to(s, (S,) + np.broadcast_shapes(s.shape, shape)).copy()
        if model.noise_block.known:
            if new:
                model.noise_block.new_campaign_sd({}, rng, S)  # raises: no σ to draw
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
        return model.noise_block.new_campaign_sd(parts, rng, S)[:, None, None]

    def predict(
        self,
        X: Any,
        campaign: str | None = None,
        noise: bool = False,
        noise_sd: Any = None,
        n_draws: int | None = 1000,
        seed: int | None = 0,
        level: float = 0.9,
        coords: Any = None,
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
        coords : array (k,) or (k, r), or "campaign", optional
            Functional outputs: the output coordinates to predict at instead of the model's,
            any inside their range; ``"campaign"`` for the campaign's own (its
            ``Campaign(coords=)``). At one of the model's coordinates the prediction is that
            output; between two, the forward model interpolated linearly as the likelihood
            interpolates it (a basis emulator its basis), plus δ at that coordinate.

        Returns
        -------
        PosteriorPrediction
            ``(n, m)`` arrays, ``(n, k)`` with ``coords``; ``output_names`` and ``coords``
            say which output each column is.

        Raises
        ------
        ValueError
            ``campaign`` unknown or missing, ``X`` of another shape, or ``coords`` refused:
            the model's outputs have no coordinates, another shape, or outside the range of
            the model's output coordinates (calib does not extrapolate).

        Examples
        --------
        >>> pred = post.predict(X, campaign="A", coords=[5.0, 12.5, 20.0])  # doctest: +SKIP
        >>> pred.output_names, pred.coords[:, 0]  # doctest: +SKIP
        """
        c = self._campaign_index(campaign)
        return self._predict(X, c, "reality", noise, noise_sd, n_draws, seed, level, coords=coords)

    def predict_new_campaign(
        self,
        X: Any,
        noise: bool = False,
        noise_sd: Any = None,
        n_draws: int | None = 1000,
        seed: int | None = 0,
        level: float = 0.9,
        coords: Any = None,
    ) -> PosteriorPrediction:
        """Predict reality in a new, unseen campaign: θ drawn from the population (partial
        pooling), the common θ (complete), or the prior (none); a shared δ is the fitted one,
        an independent δ a fresh draw from its GP prior (with pooled scales, its σ_δ drawn
        from the population, ``log σ_δ,new ~ N(m, s²)``).

        Parameters are those of :meth:`predict` (``coords`` without ``"campaign"``: a new
        campaign has no coordinates of its own)."""
        return self._predict(
            X, None, "reality", noise, noise_sd, n_draws, seed, level, new=True, coords=coords
        )

    def discrepancy(
        self,
        X: Any,
        campaign: str | None = None,
        n_draws: int | None = 1000,
        seed: int | None = 0,
        level: float = 0.9,
        coords: Any = None,
    ) -> PosteriorPrediction:
        """δ_ℓ at ``X (n, p)`` (and every output, or the output coordinates ``coords`` as in
        :meth:`predict`), drawn from its exact Gaussian conditional given the data for every
        posterior draw."""
        c = self._campaign_index(campaign)
        return self._predict(X, c, "discrepancy", False, None, n_draws, seed, level, coords=coords)


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
