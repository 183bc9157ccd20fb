"""A calibration as plain data and back: the one place a specification becomes objects.

:func:`to_config` describes a :class:`~calib.Calibrator` as JSON-able data (what a study
archive keeps in ``/meta/configuration``, docs/archive.md); :func:`from_config` builds the
same Calibrator a script would from such data, whether it comes from an archive or from a
study file, checking every key once (the message names the key, what was expected and
what was given). :func:`load` restores a study archive's posterior: the archive reads and
checks the file (:func:`calib.archive.loading.read_study`), this module rebuilds.

The configuration
-----------------
``parameters``
    List of ``{"name", "lower", "upper", "prior", "pooling", "centered", "value"}``
    (:meth:`Parameter.to_dict`; only ``name`` is required).
``campaigns``
    Names, in order (the arrays are given separately: ``from_config(..., campaigns=)``),
    or ``{"name", "x", "y", "noise_sd"}`` objects.
``discrepancy``
    ``{"mode", "kernel", "scale_prior", "lengthscale_prior"}`` or a mode string; optionally
    ``"zero_at"``, ``"zero_slope_at"`` (lists of control-input points), ``"process"``
    (``"gp"`` or ``"sgasp"``) and ``"scaling"`` (a number or a prior table).
``correlated``
    Optional: groups of jointly pooled parameters (docs/model.md §2c), each a list of
    names (the default LKJ) or ``{"parameters": [...], "correlation": {"type": "LKJ",
    "eta": 2.0}}`` (what :func:`to_config` writes).
``noise``, ``noise_prior``, ``hyperpriors``
    As the Calibrator's arguments, priors as ``{"type": "Normal", "mean": 0.0, "sd": 1.0}``.
``input_names``, ``output_names``, ``output_coords``
    For an emulator (a simulator has its own).
``mode``
    ``"emulator"`` or ``"direct"``: must match the model given.
``labels``, ``sample``
    Recorded by :func:`to_config` (the sampled coordinates; the sampling settings); not
    used to build the Calibrator.
``study``
    Optional: the study file the calibration came from (``{"file", "content"}``, the
    parsed TOML; calib/study.py). Kept as the Calibrator's ``study`` attribute and
    written back by :func:`to_config`; not used to build the Calibrator.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._config_parse import (
    _check_keys,
    _discrepancy,
    _hyperpriors,
    _one_of,
    _parameter,
    _prior,
)
from ._validation import as_real_array
from .archive import ArchiveError
from .archive.loading import StudyRecord, read_study
from .blocks.correlated import correlated_from_config, correlated_to_config
from .calibrator import Calibrator
from .campaign import Campaign
from .interfaces import MissingSimulator, is_emulator
from .likelihood import NOISE_MODES
from .priors import Prior
from .runset import RunSet

__all__ = ["from_config", "load", "to_config"]

_KEYS = tuple(
    "mode parameters campaigns discrepancy noise hyperpriors noise_prior input_names "
    "output_names output_coords labels sample study correlated".split()
)
_CAMPAIGN_KEYS = ("name", "x", "y", "noise_sd", "coords")


# ---------------------------------------------------------------------- to_config
def _prior_dict(prior: Prior | None) -> dict[str, Any] | None:
    return None if prior is None else prior.to_dict()


def to_config(calibrator: Calibrator, sample: dict[str, Any] | None = None) -> dict[str, Any]:
    """The calibration problem as plain JSON-able data (what ``/meta/configuration`` holds).

    The campaigns' arrays are not in it (an archive keeps them in ``/campaigns``): it
    lists their names only. Priors are resolved: the hyperpriors and the noise prior the
    model derived by default are written out, so :func:`from_config` rebuilds the same
    model without recomputing them.

    Parameters
    ----------
    calibrator : Calibrator
    sample : dict, optional
        The sampling settings, recorded under ``"sample"``.

    Returns
    -------
    dict
        The keys of the module docstring.
    """
    model = calibrator.model
    hyper = {
        name: {k: _prior_dict(v) for k, v in hp.items()}
        for name, hp in getattr(model, "hyperpriors", {}).items()
    }
    coords = getattr(model, "output_coords", None)
    return {
        "mode": "emulator" if is_emulator(calibrator.model_object) else "direct",
        "parameters": [p.to_dict() for p in calibrator.parameters],
        "campaigns": [c.name for c in calibrator.campaigns],
        "discrepancy": calibrator.discrepancy.to_dict(),
        "noise": calibrator.noise,
        "hyperpriors": hyper,
        "noise_prior": _prior_dict(getattr(model, "noise_prior", None))
        if calibrator.noise in ("shared", "per_campaign")
        else None,
        "input_names": list(calibrator.input_names),
        "output_names": list(calibrator.output_names),
        "output_coords": None if coords is None else np.asarray(coords).tolist(),
        "labels": list(model.labels),
        "sample": dict(sample or {}),
        # correlated pooling (docs/model.md §2c), only when there is some (older archives: absent)
        **({"correlated": corr} if (corr := correlated_to_config(calibrator)) else {}),
        # only a calibration built from a study file has one (older archives: absent)
        **({"study": calibrator.study} if getattr(calibrator, "study", None) else {}),
    }


def _names(value: Any, key: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{key}: expected a list of names, got {value!r}")
    return list(value)


def _campaigns(value: Any, given: Sequence[Campaign] | None) -> list[Campaign]:
    if given is not None:
        given = list(given)
        if value is not None:
            names = [c.name for c in given]
            if value != names:
                raise ValueError(
                    f"campaigns: the configuration names {value!r}, the campaigns given are {names}"
                )
        return given
    if not isinstance(value, list) or not value:
        raise ValueError(
            f"campaigns: expected a list of campaign tables {{name, x, y, noise_sd}} (or "
            f"names, with the campaigns given as from_config(..., campaigns=)), got {value!r}"
        )
    out = []
    for i, c in enumerate(value):
        where = f"campaigns[{i}]"
        if isinstance(c, str):
            raise ValueError(
                f"{where}: {c!r} is a name only; give its data as a table {{name, x, y, "
                f"noise_sd}} or the campaigns as from_config(..., campaigns=)"
            )
        _check_keys(c, where, _CAMPAIGN_KEYS)
        try:
            out.append(
                Campaign(
                    c.get("name"),
                    x=c.get("x"),
                    y=c.get("y"),
                    noise_sd=c.get("noise_sd"),
                    coords=c.get("coords"),
                )
            )
        except (ValueError, TypeError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
    return out


# ---------------------------------------------------------------------- from_config
def from_config(
    cfg: dict[str, Any],
    model: Any,
    campaigns: Sequence[Campaign] | None = None,
    timeout: float | None = None,
) -> Calibrator:
    """The Calibrator a configuration describes (the inverse of :func:`to_config`).

    Parameters
    ----------
    cfg : dict
        The keys of the module docstring; ``parameters`` is required, and ``campaigns``
        unless given as ``campaigns=``.
    model : Simulator or Emulator
        The forward model (not described by the configuration: a simulator is code, an
        emulator is restored from its state).
    campaigns : sequence of Campaign, optional
        The campaigns' data; ``cfg["campaigns"]``, if it lists names, must list theirs in
        the same order.
    timeout : float, optional
        Direct mode: ``Calibrator(timeout=)``, the limit of one simulator run (a run-time
        choice, not part of the configuration; a study file's ``[runs] timeout``).

    Returns
    -------
    Calibrator
        Computing on the CPU.

    Raises
    ------
    ValueError, TypeError
        Naming the key, what was expected and what was given: an unknown key, pooling,
        noise model, discrepancy mode, kernel or prior family; a prior without its
        parameters; an unbounded parameter without a prior; a mode that does not match
        ``model``; and the Calibrator's own refusals.

    Examples
    --------
    >>> cal2 = from_config(to_config(cal), cal.model_object, campaigns=cal.campaigns)  # doctest: +SKIP
    """
    _check_keys(cfg, "configuration", _KEYS)
    if "parameters" not in cfg:
        raise ValueError("configuration: missing key 'parameters'")
    params = cfg["parameters"]
    if not isinstance(params, list) or not params:
        raise ValueError(
            f"parameters: expected a non-empty list of parameter tables, got {params!r}"
        )
    emulator = is_emulator(model)
    mode = cfg.get("mode")
    if mode is not None:
        _one_of(mode, "mode", ("emulator", "direct"))
        if (mode == "emulator") != emulator:
            given = "an emulator" if emulator else "a simulator"
            raise ValueError(f"mode: the configuration is for mode={mode!r}, but model is {given}")
    if "campaigns" not in cfg and campaigns is None:
        raise ValueError("configuration: missing key 'campaigns'")
    for key in ("labels", "sample", "study"):  # records, not used here; of the right kind
        want = list if key == "labels" else dict
        if cfg.get(key) is not None and not isinstance(cfg[key], want):
            raise TypeError(f"{key}: expected a {want.__name__}, got {cfg[key]!r}")
    coords = cfg.get("output_coords")
    groups, corr_priors = correlated_from_config(cfg.get("correlated"))
    cal = Calibrator(
        model,
        [_parameter(d, i) for i, d in enumerate(params)],
        _campaigns(cfg.get("campaigns"), campaigns),
        discrepancy=_discrepancy(cfg.get("discrepancy")),
        noise=_one_of(cfg.get("noise", "per_campaign"), "noise", NOISE_MODES),
        hyperpriors={**_hyperpriors(cfg.get("hyperpriors")), **corr_priors},
        correlated=groups,
        noise_prior=_prior(cfg.get("noise_prior"), "noise_prior"),
        # an emulator carries no names; a simulator's own are used (the Calibrator's rule)
        input_names=_names(cfg.get("input_names"), "input_names") if emulator else None,
        output_names=_names(cfg.get("output_names"), "output_names") if emulator else None,
        output_coords=None if coords is None else as_real_array(coords, "output_coords"),
        timeout=timeout,
    )
    if cfg.get("study"):
        cal.study = cfg["study"]  # the study file it came from travels with it
    return cal


# ---------------------------------------------------------------------- load
def load(path: str | os.PathLike, simulator: Any = None) -> Any:
    """Restore the :class:`~calib.posterior.Posterior` of a study archive.

    Nothing stored in the file is executed: the emulator is rebuilt from its stored arrays
    by the class registered under its name in the ``calib.emulators`` entry points; a
    Python simulator (direct mode) cannot be stored and is given again.

    Parameters
    ----------
    path : str or path-like
        The archive written by ``Calibrator.sample(archive=path)``.
    simulator : Simulator, optional
        Required when the chain was sampled with the simulator in the likelihood (direct
        mode); its input, parameter and output names must match the archived ones.

    Returns
    -------
    Posterior
        With ``posterior.calibrator`` (emulator, parameters, campaigns) rebuilt,
        ``posterior.runs`` (a :class:`~calib.RunSet`, or ``None`` if the archive has no
        ``/runs``) and ``posterior.info["archive"]``.

    Raises
    ------
    ArchiveError
        If the file is not a calib archive, is damaged, newer than this calib, has no
        chain, or needs ``simulator=``; the message names the file and what is wrong.
    """
    record = read_study(path, simulator)
    path = record.path
    try:
        post = _posterior(record, simulator)
        post.runs = RunSet.from_archive(path) if record.has_runs else None
    except ArchiveError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises, say so
        raise ArchiveError(
            f"archive '{path}' cannot be loaded: {type(exc).__name__}: {exc}"
        ) from None
    return post


def _posterior(record: StudyRecord, simulator: Any) -> Any:
    # the sampler (and emcee with it) is imported on first use, as Calibrator.sample does
    from .sampling import posterior_from_chain

    path, config = record.path, record.config
    campaigns = []
    for c in record.campaigns:
        try:
            campaigns.append(
                Campaign(
                    c["name"], x=c["x"], y=c["y"], noise_sd=c["noise_sd"], coords=c.get("coords")
                )
            )
        except (ValueError, TypeError) as exc:
            raise ArchiveError(
                f"archive '{path}': /campaigns/{c['group']} is invalid: {exc}"
            ) from None
    if record.emulator_class is not None:
        cls = record.emulator_class
        try:
            model = cls.from_state_dict(record.emulator_state)
        except Exception as exc:  # noqa: BLE001 - a plug-in's own error on a bad state
            raise ArchiveError(
                f"archive '{path}': /emulator cannot be restored by {cls.__name__}."
                f"from_state_dict: {type(exc).__name__}: {exc}"
            ) from None
    elif simulator is None:
        # a stand-in with the archived names, which says what to do when a prediction runs it
        model = MissingSimulator(**record.simulator, path=str(path))
    else:
        model = simulator  # its names were checked against the archive's by read_study
    try:
        cal = from_config(config, model, campaigns=campaigns)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ArchiveError(
            f"archive '{path}': the stored configuration does not rebuild the calibration: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if list(cal.model.labels) != list(config["labels"]):
        raise ArchiveError(
            f"archive '{path}': the rebuilt calibration has coordinates {cal.model.labels}, "
            f"the archive {config['labels']}"
        )
    cp = record.checkpoint
    if cp.chain.shape[2] != cal.model.n_dim:
        raise ArchiveError(
            f"archive '{path}': /chain/chain has {cp.chain.shape[2]} coordinates, the "
            f"calibration {cal.model.n_dim}"
        )
    return posterior_from_chain(
        cal,
        cp.chain,
        cp.log_prob,
        cp.accepted,
        record.burn,
        cp.stopped_early,
        {**cp.info, "archive": str(path)},
    )
