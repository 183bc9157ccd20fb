"""The Calibrator: validates a calibration problem once and samples its posterior."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import stats

from ._device import resolve_device
from .blocks.correlated import check_correlated
from .campaign import Campaign
from .discrepancy import Discrepancy
from .forward import FixedValues, make_forward
from .interfaces import is_emulator
from .likelihood import DTYPE, NOISE_MODES, Model
from .parameters import Parameter
from .priors import Prior, check_prior

__all__ = ["Calibrator"]


def _names_of(model: Any, attr: str) -> tuple[str, ...] | None:
    v = getattr(model, attr, None)
    return None if v is None else tuple(v)


def _unique_list(value: Any, cls: type, what: str) -> list:
    """``value`` as a non-empty list of ``cls`` objects with unique names."""
    if not isinstance(value, cls) and (
        value is None or isinstance(value, (str, bytes)) or not hasattr(value, "__iter__")
    ):
        raise TypeError(f"{what} must be a sequence of calib.{cls.__name__} objects, got {value!r}")
    items = [value] if isinstance(value, cls) else list(value)
    if not items:
        raise ValueError(f"{what} must list at least one {cls.__name__}, got none")
    for item in items:
        if not isinstance(item, cls):
            raise TypeError(f"{what} must be calib.{cls.__name__} objects, got {item!r}")
    names = [item.name for item in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{what}: duplicate names {dup}")
    return items


class Calibrator:
    """Bayesian calibration of a simulator against several campaigns (KOH, DESIGN.md §4).

    Parameters
    ----------
    model : Simulator or Emulator
        A simulator evaluated inside the likelihood (direct mode), or a fitted emulator whose
        predictive mean and covariance enter it (emulator mode).
    parameters : sequence of Parameter
        One per calibration parameter of the model, each with its pooling.
    campaigns : sequence of Campaign
        Unique names; at least one.
    discrepancy : Discrepancy or {"none", "shared", "independent"}
        The mode string alone uses the default priors.
    noise : {"known", "shared", "per_campaign", "hierarchical"}
        ``"known"`` needs ``noise_sd`` in every campaign.
    hyperpriors : dict, optional
        ``{name: {"mean": Prior, "scale": Prior}}`` for partially pooled parameters (on the
        unconstrained scale ``u = g(θ)``), and ``"noise"`` for the hierarchical noise model
        (mean and sd of ``log σ_ℓ``). Missing entries use the documented defaults.
    noise_prior : Prior, optional
        Prior of σ for ``noise="shared"`` or ``"per_campaign"``; default ``HalfNormal(sd_y)``.
    input_names, output_names, output_coords : optional
        For an emulator, which carries no names: the control inputs' names (default
        ``x0, x1, ...``), the outputs' names (default ``y0, y1, ...``) and the outputs'
        coordinates; pass the simulator's, e.g. ``output_names=sim.output_names``. Ignored
        for a simulator, which has its own.
    device : {"cpu", "cuda", "cuda:<index>"} or torch.device
        Where the log-posterior, its gradient, the δ draws and the predictions are computed
        (float64 either way; docs/gpu.md says when a GPU pays). An emulator computes there
        too: if it lives elsewhere, a copy is rebuilt on this device from its state (the
        emulator given is unchanged and is what an archive records). A simulator (direct
        mode) still runs on the CPU. The sampler's arrays stay NumPy on the CPU. A run-time
        choice: archives do not record it, and a loaded study computes on the CPU.
    timeout : float, optional
        Direct mode: seconds one simulator run may take, as in ``run_design(timeout=)``;
        a run past it is a failed run (its walker gets ``-inf``, with a
        :class:`~calib.SimulatorWarning` naming its values). Default None: **no limit**, a
        run that never returns hangs ``sample()``. docs/simulators.md says how it is
        enforced. Refused for an emulator. A run-time choice, not archived.
    correlated : sequence of sequences of str, optional
        Groups of partially pooled, non-centred parameters pooled jointly, e.g.
        ``[("a", "b")]``, with ``hyperpriors={("a", "b"): {"correlation": LKJ(eta)}}``
        (default ``LKJ(2.0)``); docs/model.md §2c. Correlations are named ``"corr(a,b)"``.

    Raises
    ------
    ValueError, TypeError
        With the argument, what was expected and what was given, before any computation.
    RuntimeError
        If ``device`` asks for CUDA and CUDA is not available (or not that device).

    Examples
    --------
    >>> cal = Calibrator(sim, [Parameter("k", 0, 10)], [Campaign("A", x=X, y=Y)],
    ...                  discrepancy="shared", noise="per_campaign")   # doctest: +SKIP
    >>> post = cal.sample(n_walkers=32, n_steps=2000, seed=1)          # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        parameters: Sequence[Parameter],
        campaigns: Sequence[Campaign],
        discrepancy: Discrepancy | str | None = "none",
        noise: str = "per_campaign",
        hyperpriors: dict[str, dict[str, Prior]] | None = None,
        noise_prior: Prior | None = None,
        input_names: Sequence[str] | None = None,
        output_coords: np.ndarray | None = None,
        output_names: Sequence[str] | None = None,
        device: str | torch.device | None = "cpu",
        timeout: float | None = None,
        correlated: Sequence[Sequence[str]] | None = None,
    ):
        device = resolve_device(device)
        emulator = is_emulator(model)
        if not emulator and not callable(getattr(model, "run", None)):
            raise TypeError(
                f"model must be a simulator (with run(x, theta)) or an emulator (with "
                f"predict_torch), got {type(model).__name__}"
            )
        # ---------------------------------------------------------------- parameters
        parameters = _unique_list(parameters, Parameter, "parameters")
        pnames = [p.name for p in parameters]
        if emulator:
            n_in = getattr(model, "n_inputs", None)
            m = getattr(model, "n_outputs", None)
            if n_in is None or m is None:
                raise ValueError("the emulator is not fitted: call fit(inputs, outputs) first")
            p = int(n_in) - len(parameters)
            if p < 0:
                raise ValueError(
                    f"the emulator has {n_in} inputs but {len(parameters)} parameters were given"
                )
            in_names = (
                tuple(input_names) if input_names is not None else tuple(f"x{k}" for k in range(p))
            )
            if len(in_names) != p:
                raise ValueError(f"input_names: expected {p} names, got {len(in_names)}")
            out_names = (
                tuple(f"y{k}" for k in range(int(m)))
                if output_names is None
                else tuple(str(n) for n in output_names)
            )
            if len(out_names) != int(m) or len(set(out_names)) != len(out_names):
                raise ValueError(
                    f"output_names: expected {int(m)} distinct names (one per emulator output), "
                    f"got {list(output_names)!r}"
                )
            coords = output_coords
            ordered = parameters
        else:
            sim_params = _names_of(model, "parameter_names") or ()
            in_names = _names_of(model, "input_names") or ()
            out_names = _names_of(model, "output_names")
            if not out_names:
                raise ValueError("the simulator has no output_names")
            coords = getattr(model, "output_coords", None)
            unknown = [n for n in pnames if n not in sim_params]
            if unknown:
                raise ValueError(
                    f"parameters: {unknown} are not parameters of the simulator, whose "
                    f"parameter_names are {list(sim_params)}"
                )
            missing = [n for n in sim_params if n not in pnames]
            if missing:
                raise ValueError(
                    f"parameters: the simulator's parameters {missing} have no Parameter "
                    f"(every one of {list(sim_params)} needs one)"
                )
            by_name = {p.name: p for p in parameters}
            ordered = [by_name[n] for n in sim_params]
            p, m = len(in_names), len(out_names)
        if coords is not None:
            coords = np.asarray(coords, dtype=float)
            if coords.ndim == 1:
                coords = coords.reshape(-1, 1)
            if coords.shape[0] != m or not np.isfinite(coords).all():
                raise ValueError(
                    f"output_coords: expected finite values of shape ({m}, r), got {coords.shape}"
                )
        # ---------------------------------------------------------------- campaigns
        campaigns = _unique_list(campaigns, Campaign, "campaigns")
        cnames = [c.name for c in campaigns]
        shaped = [c.shaped(p, m) for c in campaigns]
        # ---------------------------------------------------------------- model options
        disc = Discrepancy.coerce(discrepancy)
        if noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {noise!r}")
        if noise == "known":
            lacking = [c.name for c, s in zip(campaigns, shaped) if s[2] is None]
            if lacking:
                raise ValueError(
                    f"noise='known' but campaign(s) {lacking} have no noise_sd: give noise_sd "
                    f"or choose noise='shared', 'per_campaign' or 'hierarchical'"
                )
        if noise == "known":
            for c, (xc, yc, sc) in zip(campaigns, shaped):
                _check_replicates(c.name, xc, yc, sc)
        noise_prior = check_prior(noise_prior, "noise_prior")
        if noise_prior is not None and noise not in ("shared", "per_campaign"):
            raise ValueError(
                f"noise_prior applies to noise='shared' or 'per_campaign', got noise={noise!r}"
            )
        correlated, hyperpriors = check_correlated(correlated, hyperpriors or {}, parameters)
        hyperpriors = self._check_hyperpriors(hyperpriors, parameters, noise)
        for prm in parameters:
            if prm.pooling in ("partial", "spike_slab") and prm.prior is None:
                hp = hyperpriors.get(prm.name, {})
                if "mean" not in hp or "scale" not in hp:
                    raise ValueError(
                        f"Parameter '{prm.name}' is partially pooled, unbounded and has no prior: "
                        f"give hyperpriors={{'{prm.name}': {{'mean': ..., 'scale': ...}}}} or a prior"
                    )
        self.model_object = model
        self.parameters = ordered
        self.campaigns = campaigns
        self.discrepancy = disc
        self.noise = noise
        self.input_names = in_names
        self.output_names = out_names
        self.device = device
        # fixed parameters reach the forward model, not the sampled vector
        fixed = {k: prm.value for k, prm in enumerate(ordered) if prm.value is not None}
        sampled = [prm for prm in ordered if prm.value is None]
        self.model = Model(
            make_forward(
                model, device, FixedValues(len(ordered), fixed) if fixed else None, timeout
            ),
            sampled,
            cnames,
            [s[0] for s in shaped],
            [s[1] for s in shaped],
            [s[2] for s in shaped],
            coords,
            in_names,
            disc,
            noise,
            hyperpriors,
            noise_prior,
            device=device,
            correlated=correlated,
            field_coords=[c.coords for c in campaigns],
        )

    @staticmethod
    def _check_hyperpriors(hyperpriors: dict, parameters: list[Parameter], noise: str) -> dict:
        if not isinstance(hyperpriors, dict):
            raise TypeError(f"hyperpriors must be a dict, got {type(hyperpriors).__name__}")
        partial = {p.name for p in parameters if p.pooling in ("partial", "spike_slab")}
        slab = {p.name for p in parameters if p.pooling == "spike_slab"}
        allowed = partial | ({"noise"} if noise == "hierarchical" else set())
        out = {}
        for name, hp in hyperpriors.items():
            if name not in allowed:
                raise ValueError(
                    f"hyperpriors: {name!r} is not a partially pooled parameter"
                    f"{' or the hierarchical noise' if noise == 'hierarchical' else ''}; "
                    f"expected one of {sorted(allowed)}"
                )
            if not isinstance(hp, dict):
                raise TypeError(f"hyperpriors[{name!r}] must be a dict with 'mean' and/or 'scale'")
            keys = ("mean", "scale", "null") if name in slab else ("mean", "scale")
            bad = set(hp) - set(keys)
            if bad:
                raise ValueError(
                    f"hyperpriors[{name!r}]: keys must be some of {list(keys)} ('null': the "
                    f"prior of π₀, for pooling='spike_slab'), got {sorted(bad)}"
                )
            for k, v in hp.items():
                check_prior(v, f"hyperpriors[{name!r}][{k!r}]")
                if k == "null" and (v.support[0] < 0 or v.support[1] > 1):
                    raise ValueError(
                        f"hyperpriors[{name!r}]['null'] must be a prior on [0, 1] (π₀, a "
                        f"probability), e.g. Beta(1, 1), got {v!r}"
                    )
                if k == "scale" and v.support[0] < 0:
                    raise ValueError(
                        f"hyperpriors[{name!r}]['scale'] must be a prior on positive values, got {v!r}"
                    )
            out[name] = dict(hp)
        return out

    # ------------------------------------------------------------------ evaluation
    @property
    def n_dim(self) -> int:
        """Dimension of the unconstrained vector that is sampled."""
        return self.model.n_dim

    @property
    def labels(self) -> list[str]:
        """Name of every coordinate of the unconstrained vector."""
        return list(self.model.labels)

    def log_posterior(self, U: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """The batched log-posterior: ``(n_walkers, n_dim) -> (n_walkers,)``.

        A NumPy array gives NumPy (no gradient); a torch tensor, on any device, gives a
        torch tensor on that device that autograd can differentiate (computed on
        :attr:`device`). Walkers whose forward model fails get ``-inf`` and a
        :class:`~calib.likelihood.SimulatorWarning` with the count.
        """
        if isinstance(U, torch.Tensor):
            out = self.model.log_posterior(U.to(DTYPE))
        else:
            U = np.atleast_2d(np.asarray(U, dtype=float))
            if U.shape[1] != self.n_dim:
                raise ValueError(f"U: expected shape (n_walkers, {self.n_dim}), got {U.shape}")
            out = self.model.log_posterior_numpy(U)
        self.model.warn_failures(self.model.failures, int(U.shape[0]))
        return out

    def to_config(self, sample: dict[str, Any] | None = None) -> dict[str, Any]:
        """This calibration as plain JSON-able data (:func:`calib.config.to_config`): what
        an archive stores, and what :func:`calib.config.from_config` builds back."""
        from .config import to_config  # config builds Calibrators: imported when used

        return to_config(self, sample)

    def sample(
        self,
        n_walkers: int | None = None,
        n_steps: int | None = None,
        seed: int | None = None,
        progress: bool | None = None,
        archive: str | None = None,
        resume: bool = False,
        checkpoint_every: int = 500,
        **options: Any,
    ):
        """Sample the joint posterior until it has converged; see
        :func:`calib.sampling.run_sampler` for every option.

        Sampling stops once every quantity has rank-normalized split-R̂ < 1.01 and bulk
        ESS ≥ 400, or when the budget ends, and then warns with
        :class:`calib.ConvergenceWarning`; ``post.converged`` holds the verdict. Moves:
        ``moves="hmc"`` (default: HMC vectorized over walkers, :class:`calib.hmc.ChEESMove`,
        interweaving the centred and non-centred coordinates of pooled quantities) or
        ``moves="de"`` (derivative-free).

        Parameters
        ----------
        n_walkers : int, optional
            Walkers; default ``max(32, 2·n_dim + 2)`` (32 for ``moves="hmc"``).
        n_steps : int, optional
            Step budget (also accepted as ``max_steps``); default 4000 (2000 iterations for
            ``moves="hmc"``). Sampling stops earlier once converged.
        seed : int, optional
            The same seed gives the same chain.
        progress : bool, optional
            A progress bar with the acceptance and the convergence estimate; default on
            when stderr is a terminal.
        archive : str or path-like, optional
            Study archive (HDF5, docs/archive.md): the chain is written into it every
            ``checkpoint_every`` steps with emcee's state, then the summaries.
        resume : bool
            With ``archive``: continue the archived chain up to ``n_steps`` (the result
            equals an uninterrupted run with the same seed, bit for bit); with no chain in
            the archive yet, start afresh; when the archive already holds ``n_steps``
            steps (or its run stopped early), return that posterior without sampling.
        checkpoint_every : int
            Steps between checkpoints.
        **options
            Passed to :func:`calib.sampling.run_sampler`; ``fsync=False`` skips the
            ``fsync`` of every checkpoint (faster; a power cut may lose checkpoints).

        Returns
        -------
        Posterior

        Raises
        ------
        calib.ArchiveError
            If ``archive`` already holds a chain and ``resume`` is false, if its chain was
            sampled by another problem, or if a checkpoint cannot be written.
        """
        from .sampling import resolve_budget, run_sampler

        if "max_steps" in options:  # the budget's other name
            max_steps = options.pop("max_steps")
            if n_steps is not None and n_steps != max_steps:
                raise ValueError(
                    f"give n_steps or max_steps (the same budget), got n_steps={n_steps!r} "
                    f"and max_steps={max_steps!r}"
                )
            n_steps = max_steps
        n_steps = resolve_budget(options.get("moves"), n_steps)
        if archive is not None:
            # the sampler writes through a ChainBackend on the study archive
            from ._sampler_archive import sample_into

            return sample_into(
                self,
                archive,
                n_walkers=n_walkers,
                n_steps=n_steps,
                seed=seed,
                progress=progress,
                resume=resume,
                checkpoint_every=checkpoint_every,
                **options,
            )
        if resume:
            raise ValueError("resume=True needs archive=: the chain to continue lives there")
        return run_sampler(
            self, n_walkers=n_walkers, n_steps=n_steps, seed=seed, progress=progress, **options
        )

    def __repr__(self) -> str:
        return (
            f"Calibrator({type(self.model_object).__name__}, parameters={[p.name for p in self.parameters]}, "
            f"campaigns={[c.name for c in self.campaigns]}, discrepancy={self.discrepancy.mode!r}, "
            f"noise={self.noise!r}, n_dim={self.n_dim}"
            + ("" if self.device.type == "cpu" else f", device={str(self.device)!r}")
            + ")"
        )


def _check_replicates(name: str, x: np.ndarray, y: np.ndarray, sd: np.ndarray) -> None:
    """Warn when replicates (rows with identical x) scatter far more than the stated
    ``noise_sd`` allows: with known noise the sum over replicate groups of
    Σ (y − ȳ_group)² / σ² is χ² with (n − groups) degrees of freedom; p < 1e-6 means the data
    contradict the stated noise (the sampler would then crawl: acceptance of a few %)."""
    if x.shape[0] < 2:
        return
    _, group = np.unique(x, axis=0, return_inverse=True)
    group = group.reshape(-1)
    counts = np.bincount(group)
    dof = int(x.shape[0] - counts.size)
    if dof < 2:
        return
    ok = np.isfinite(y) & np.isfinite(sd) & (sd > 0)
    for j in range(y.shape[1]):
        w = ok[:, j]
        if w.sum() - np.unique(group[w]).size < 2:
            continue
        g, yj, sj = group[w], y[w, j], sd[w, j]
        mean = np.bincount(g, yj, minlength=counts.size) / np.maximum(
            np.bincount(g, minlength=counts.size), 1
        )
        resid = yj - mean[g]
        chi2 = float(np.sum((resid / sj) ** 2))
        k = int(w.sum() - np.unique(g).size)
        if stats.chi2.sf(chi2, k) < 1e-6:
            spread = float(np.sqrt(np.sum(resid**2) / k))
            warnings.warn(
                f"Campaign '{name}': its replicates (rows with identical x) scatter by an sd "
                f"of {spread:.3g} where noise_sd says {float(np.median(sj)):.3g} (χ² = "
                f"{chi2:.3g} on {k} degrees of freedom): the data contradict the stated noise. "
                f"Check noise_sd, or let calib estimate it: noise='per_campaign'.",
                UserWarning,
                stacklevel=4,
            )
            return
