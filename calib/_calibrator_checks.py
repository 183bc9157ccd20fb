"""The argument checks of :class:`calib.Calibrator`: a calibration problem validated once.

:func:`check_problem` runs every check of ``Calibrator.__init__`` in a fixed order (device,
model, parameters, campaigns, discrepancy, noise, hyperpriors) and returns the validated
pieces the :class:`calib.likelihood.Model` is built from; each message names the argument,
what was expected and what was given (STYLE.md, "Errors").
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from ._device import resolve_device
from .blocks import NOISE_MODES
from .blocks.correlated import check_correlated
from .campaign import Campaign
from .discrepancy import Discrepancy
from .interfaces import is_emulator
from .parameters import Parameter
from .priors import Prior, check_prior

__all__ = ["Problem", "check_problem"]


@dataclass
class Problem:
    """A calibration problem after its checks (:func:`check_problem`).

    Attributes
    ----------
    device : torch.device
    parameters : list of Parameter
        As given (unique names).
    ordered : list of Parameter
        In the forward model's θ-column order.
    campaigns : list of Campaign
    shaped : list of (x (n, p), y (n, m), noise_sd (n, m) or None)
        Per campaign, its data in the model's shapes (:meth:`calib.Campaign.shaped`).
    coords : ndarray (m, r) or None
        The model's output coordinates.
    input_names, output_names : tuple of str
    discrepancy : Discrepancy
    noise_prior : Prior or None
    hyperpriors : dict
    correlated : list
        Checked correlated groups (:func:`calib.blocks.correlated.check_correlated`).
    """

    device: torch.device
    parameters: list[Parameter]
    ordered: list[Parameter]
    campaigns: list[Campaign]
    shaped: list[tuple]
    coords: np.ndarray | None
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    discrepancy: Discrepancy
    noise_prior: Prior | None
    hyperpriors: dict
    correlated: list


def check_problem(
    model: Any,
    parameters: Sequence[Parameter],
    campaigns: Sequence[Campaign],
    discrepancy: Discrepancy | str | None,
    noise: str,
    hyperpriors: dict[str, dict[str, Prior]] | None,
    noise_prior: Prior | None,
    input_names: Sequence[str] | None,
    output_coords: np.ndarray | None,
    output_names: Sequence[str] | None,
    device: str | torch.device | None,
    correlated: Sequence[Sequence[str]] | None,
) -> Problem:
    """Every argument check of :class:`calib.Calibrator` (its arguments, same meanings).

    Returns
    -------
    Problem

    Raises
    ------
    ValueError, TypeError
        With the argument, what was expected and what was given.
    RuntimeError
        If ``device`` asks for CUDA and CUDA is not available (or not that device).
    """
    device = resolve_device(device)
    emulator = is_emulator(model)
    if not emulator and not callable(getattr(model, "run", None)):
        raise TypeError(
            f"model must be a simulator (with run(x, theta)) or an emulator (with "
            f"predict_torch), got {type(model).__name__}"
        )
    # ---------------------------------------------------------------- parameters
    parameters = _unique_list(parameters, Parameter, "parameters")
    if emulator:
        ordered, in_names, out_names, coords = _emulator_names(
            model, parameters, input_names, output_names, output_coords
        )
    else:
        ordered, in_names, out_names, coords = _simulator_names(model, parameters)
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
        for c, (xc, yc, sc) in zip(campaigns, shaped):
            _check_replicates(c.name, xc, yc, sc)
    noise_prior = check_prior(noise_prior, "noise_prior")
    if noise_prior is not None and noise not in ("shared", "per_campaign"):
        raise ValueError(
            f"noise_prior applies to noise='shared' or 'per_campaign', got noise={noise!r}"
        )
    correlated, hyperpriors = check_correlated(correlated, hyperpriors or {}, parameters)
    hyperpriors = _check_hyperpriors(hyperpriors, parameters, noise)
    for prm in parameters:
        if prm.pooling in ("partial", "spike_slab") and prm.prior is None:
            hp = hyperpriors.get(prm.name, {})
            if "mean" not in hp or "scale" not in hp:
                raise ValueError(
                    f"Parameter '{prm.name}' is partially pooled, unbounded and has no prior: "
                    f"give hyperpriors={{'{prm.name}': {{'mean': ..., 'scale': ...}}}} or a prior"
                )
    return Problem(
        device,
        parameters,
        ordered,
        campaigns,
        shaped,
        coords,
        in_names,
        out_names,
        disc,
        noise_prior,
        hyperpriors,
        correlated,
    )


def _emulator_names(model, parameters, input_names, output_names, output_coords):
    """An emulator's parameters (as given), input and output names, output coordinates:
    it carries no names, so they are the Calibrator's arguments or ``x0, …``, ``y0, …``."""
    n_in = getattr(model, "n_inputs", None)
    m = getattr(model, "n_outputs", None)
    if n_in is None or m is None:
        raise ValueError("the emulator is not fitted: call fit(inputs, outputs) first")
    p = int(n_in) - len(parameters)
    if p < 0:
        raise ValueError(
            f"the emulator has {n_in} inputs but {len(parameters)} parameters were given"
        )
    in_names = tuple(input_names) if input_names is not None else tuple(f"x{k}" for k in range(p))
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
    return parameters, in_names, out_names, output_coords


def _simulator_names(model, parameters):
    """A simulator's parameters in its θ-column order, its input and output names and
    output coordinates; every parameter of the simulator needs one Parameter."""
    pnames = [p.name for p in parameters]
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
    return [by_name[n] for n in sim_params], in_names, out_names, coords


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


def _check_hyperpriors(hyperpriors: dict, parameters: list[Parameter], noise: str) -> dict:
    """``hyperpriors`` checked against the pooled parameters and the noise model."""
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
            # stacklevel 5: past this function, check_problem and Calibrator.__init__ to
            # the frame the warning named before the checks left calibrator.py
            warnings.warn(
                f"Campaign '{name}': its replicates (rows with identical x) scatter by an sd "
                f"of {spread:.3g} where noise_sd says {float(np.median(sj)):.3g} (χ² = "
                f"{chi2:.3g} on {k} degrees of freedom): the data contradict the stated noise. "
                f"Check noise_sd, or let calib estimate it: noise='per_campaign'.",
                UserWarning,
                stacklevel=5,
            )
            return
