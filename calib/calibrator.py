"""The Calibrator: validates a calibration problem once and samples its posterior."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._calibrator_checks import check_problem
from ._failures import warn_failures
from .campaign import Campaign
from .discrepancy import Discrepancy
from .forward import FixedValues, make_forward
from .likelihood import DTYPE, Model
from .parameters import Parameter
from .priors import Prior

__all__ = ["Calibrator"]


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
        # every argument check, in one place (calib/_calibrator_checks.py)
        pb = check_problem(
            model,
            parameters,
            campaigns,
            discrepancy,
            noise,
            hyperpriors,
            noise_prior,
            input_names,
            output_coords,
            output_names,
            device,
            correlated,
        )
        ordered, shaped = pb.ordered, pb.shaped
        self.model_object = model
        self.parameters = ordered
        self.campaigns = pb.campaigns
        self.discrepancy = pb.discrepancy
        self.noise = noise
        self.input_names = pb.input_names
        self.output_names = pb.output_names
        self.device = pb.device
        # fixed parameters reach the forward model, not the sampled vector
        fixed = {k: prm.value for k, prm in enumerate(ordered) if prm.value is not None}
        sampled = [prm for prm in ordered if prm.value is None]
        self.model = Model(
            make_forward(
                model, pb.device, FixedValues(len(ordered), fixed) if fixed else None, timeout
            ),
            sampled,
            [c.name for c in pb.campaigns],
            [s[0] for s in shaped],
            [s[1] for s in shaped],
            [s[2] for s in shaped],
            pb.coords,
            pb.input_names,
            pb.discrepancy,
            noise,
            pb.hyperpriors,
            pb.noise_prior,
            device=pb.device,
            correlated=pb.correlated,
            field_coords=[c.coords for c in pb.campaigns],
        )

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
        warn_failures(self.model.failures, int(U.shape[0]))
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
