""":func:`load`: the posterior of a study archive, with its calibration rebuilt from the
stored configuration, campaigns and emulator state (nothing stored is executed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._h5 import (
    FORMAT,
    SCHEMA_VERSION,
    ArchiveError,
    _attr_num,
    _attr_str,
    _dataset,
    _open_h5,
    _strs,
)
from ._journal import _chainlog_bytes
from .chain import _read_chain
from .study import _group_name, _simulator_identity


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
    path = Path(path)
    if not path.exists():
        raise ArchiveError(f"archive: no such file '{path}'")
    if path.is_dir():
        raise ArchiveError(f"archive '{path}' is a directory, not an HDF5 file")
    try:
        log = _chainlog_bytes(path)  # before the file: see _chainlog_bytes
        with _open_h5(path) as f:
            post = _load(f, path, simulator, log)
        post.runs = None
        if "runs" in _group_names(path):
            from ..runner import RunSet

            post.runs = RunSet.from_archive(path)
    except ArchiveError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises, say so
        raise ArchiveError(
            f"archive '{path}' cannot be loaded: {type(exc).__name__}: {exc}"
        ) from None
    return post


def _group_names(path: Path) -> list[str]:
    with _open_h5(path) as f:
        return list(f)


def _read_state(g: h5py.Group, path: Path) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        kind = obj.attrs.get("kind", "array")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        value = obj[()]
        if kind == "str":
            if not isinstance(value, (bytes, str)):
                raise ArchiveError(f"archive '{path}': {obj.name} should be a string")
            state[name] = value.decode() if isinstance(value, bytes) else value
        elif kind in ("float", "int"):
            if np.ndim(value) != 0 or obj.dtype.kind not in "fiu":
                raise ArchiveError(f"archive '{path}': {obj.name} should be a number")
            state[name] = float(value) if kind == "float" else int(value)
        elif kind == "array":
            if obj.dtype.kind not in "fiub":
                raise ArchiveError(
                    f"archive '{path}': {obj.name} should be numeric, got dtype {obj.dtype}"
                )
            state[name] = np.asarray(value)
        else:
            raise ArchiveError(f"archive '{path}': {obj.name} has unknown kind {kind!r}")

    g.visititems(visit)
    return state


def _emulator_class(g: h5py.Group, path: Path) -> Any:
    from .. import plugins

    cls_name = _attr_str(g, "class", path)
    plugin = _attr_str(g, "plugin", path, default="")
    registered = plugins.list("calib.emulators")
    # only a registered entry point is imported, never a module named by the file
    name = plugin if plugin in registered else None
    if name is None:
        for ep_name, value in registered.items():
            if value.rsplit(":", 1)[-1] == cls_name:
                name = ep_name
                break
    if name is None:
        raise ArchiveError(
            f"archive '{path}': the emulator class {cls_name!r} (plug-in {plugin!r}) is not "
            f"registered under the calib.emulators entry points ({sorted(registered)}); "
            f"install the package that provides it"
        )
    cls = plugins.load("calib.emulators", name)
    if getattr(cls, "__name__", None) != cls_name:
        raise ArchiveError(
            f"archive '{path}': the emulator is a {cls_name!r}, but the registered plug-in "
            f"{name!r} provides {getattr(cls, '__name__', cls)!r}: not registered under the "
            f"calib.emulators entry points"
        )
    if not callable(getattr(cls, "from_state_dict", None)):
        raise ArchiveError(
            f"archive '{path}': the emulator plug-in {name!r} has no from_state_dict()"
        )
    return cls


def _check_simulator(sim: Any, f: h5py.File, path: Path) -> None:
    if "simulator" not in f:
        raise ArchiveError(f"archive '{path}' has no /simulator group")
    g = f["simulator"]
    stored = _simulator_identity(sim)
    for key in ("input_names", "parameter_names", "output_names"):
        want = _strs(g.attrs[key]) if key in g.attrs else None
        if want is None:
            raise ArchiveError(f"archive '{path}': /simulator has no attribute '{key}'")
        if list(want) != stored[key]:
            raise ArchiveError(
                f"archive '{path}': simulator= has {key} {stored[key]}, but the archive was "
                f"sampled with a simulator whose {key} are {list(want)}"
            )


def _missing_simulator(f: h5py.File, path: Path) -> Any:
    from ..interfaces import MissingSimulator

    if "simulator" not in f:
        raise ArchiveError(f"archive '{path}' has no /simulator group")
    g = f["simulator"]
    names = {}
    for key in ("input_names", "parameter_names", "output_names"):
        if key not in g.attrs:
            raise ArchiveError(f"archive '{path}': /simulator has no attribute '{key}'")
        names[key] = _strs(g.attrs[key])
    ident = _attr_str(g, "identity", path, default="?")
    return MissingSimulator(**names, identity=ident, path=str(path))


def _load(f: h5py.File, path: Path, simulator: Any, log: bytes = b"") -> Any:
    from ..calibrator import Calibrator
    from ..campaign import Campaign
    from ..discrepancy import Discrepancy
    from ..parameters import Parameter
    from ..priors import Prior
    from ..sampling import posterior_from_chain

    if "meta" not in f or not isinstance(f["meta"], h5py.Group):
        raise ArchiveError(
            f"archive '{path}' is an HDF5 file without a /meta group: not a calib study "
            f"archive (written by another program?)"
        )
    meta = f["meta"]
    fmt = _attr_str(meta, "format", path, default=None)
    if fmt != FORMAT:
        raise ArchiveError(
            f"archive '{path}': /meta format is {fmt!r}, expected {FORMAT!r}: not a calib "
            f"study archive"
        )
    version = _attr_num(meta, "schema_version", path)
    if version > SCHEMA_VERSION:
        raise ArchiveError(
            f"archive '{path}' has schema version {version}; this calib reads up to "
            f"{SCHEMA_VERSION}: upgrade calib"
        )
    if "chain" not in f:
        raise ArchiveError(
            f"archive '{path}' has no /chain group: nothing was sampled into it (a design "
            f"only? read its runs with calib.RunSet.from_archive)"
        )
    try:
        config = json.loads(_attr_str(meta, "configuration", path))
    except ValueError as exc:
        raise ArchiveError(f"archive '{path}': /meta configuration is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ArchiveError(f"archive '{path}': /meta configuration should be a JSON object")
    need = ("mode", "parameters", "discrepancy", "noise", "hyperpriors", "labels", "input_names")
    missing = [k for k in need if k not in config]
    if missing:
        raise ArchiveError(f"archive '{path}': /meta configuration lacks {missing}")
    # ------------------------------------------------------------ campaigns
    if "campaigns" not in f:
        raise ArchiveError(f"archive '{path}' has no /campaigns group")
    cg = f["campaigns"]
    order = _strs(cg.attrs["order"]) if "order" in cg.attrs else None
    if order is None:
        raise ArchiveError(f"archive '{path}': /campaigns has no attribute 'order'")
    campaigns = []
    for name in order:
        key = _group_name(name)
        if key not in cg or not isinstance(cg[key], h5py.Group):
            raise ArchiveError(f"archive '{path}': /campaigns has no group for campaign {name!r}")
        g = cg[key]
        y = _dataset(g, "y", path, None)
        x = _dataset(g, "x", path, 2) if "x" in g else None
        noise_sd = _dataset(g, "noise_sd", path, None) if "noise_sd" in g else None
        try:
            campaigns.append(Campaign(name, x=x, y=y, noise_sd=noise_sd))
        except (ValueError, TypeError) as exc:
            raise ArchiveError(f"archive '{path}': /campaigns/{key} is invalid: {exc}") from None
    # ------------------------------------------------------------ the forward model
    mode = config["mode"]
    if mode == "emulator":
        if "emulator" not in f or not isinstance(f["emulator"], h5py.Group):
            raise ArchiveError(
                f"archive '{path}' was sampled with an emulator but has no /emulator"
            )
        cls = _emulator_class(f["emulator"], path)
        state = _read_state(f["emulator"], path)
        try:
            model = cls.from_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - a plug-in's own error on a bad state
            raise ArchiveError(
                f"archive '{path}': /emulator cannot be restored by {cls.__name__}."
                f"from_state_dict: {type(exc).__name__}: {exc}"
            ) from None
    elif mode == "direct":
        if simulator is None:
            # reading needs no simulator: a stand-in with the archived names, which says
            # what to do when a prediction runs it
            model = _missing_simulator(f, path)
        else:
            _check_simulator(simulator, f, path)
            model = simulator
    else:
        raise ArchiveError(f"archive '{path}': /meta configuration mode {mode!r} is unknown")
    # ------------------------------------------------------------ the calibrator
    try:
        parameters = [Parameter.from_dict(d) for d in config["parameters"]]
        d = config["discrepancy"]
        disc = Discrepancy(
            d["mode"],
            kernel=d["kernel"],
            scale_prior=None if d.get("scale_prior") is None else Prior.from_dict(d["scale_prior"]),
            lengthscale_prior=None
            if d.get("lengthscale_prior") is None
            else Prior.from_dict(d["lengthscale_prior"]),
        )
        hyper = {
            name: {k: Prior.from_dict(v) for k, v in hp.items() if v is not None}
            for name, hp in config["hyperpriors"].items()
        }
        noise_prior = config.get("noise_prior")
        cal = Calibrator(
            model,
            parameters,
            campaigns,
            discrepancy=disc,
            noise=config["noise"],
            hyperpriors=hyper,
            noise_prior=None if noise_prior is None else Prior.from_dict(noise_prior),
            input_names=config["input_names"] if mode == "emulator" else None,
            output_names=config.get("output_names") if mode == "emulator" else None,
            output_coords=config.get("output_coords"),
        )
    except ArchiveError:
        raise
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
    cp = _read_chain(f, path, log)[0]
    if cp.chain.shape[2] != cal.model.n_dim:
        raise ArchiveError(
            f"archive '{path}': /chain/chain has {cp.chain.shape[2]} coordinates, the "
            f"calibration {cal.model.n_dim}"
        )
    burn = config.get("sample", {}).get("burn", cp.info.get("burn"))
    if burn is not None and not (isinstance(burn, int) and 0 <= burn):
        raise ArchiveError(f"archive '{path}': stored burn {burn!r} is not a count of steps")
    return posterior_from_chain(
        cal,
        cp.chain,
        cp.log_prob,
        cp.accepted,
        burn,
        cp.stopped_early,
        {**cp.info, "archive": str(path)},
    )
