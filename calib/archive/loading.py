""":func:`read_study`: everything :func:`calib.load` needs from a study archive, read and
checked, as plain data (:class:`StudyRecord`).

The archive only reads: it never builds a calibration. ``calib.load``
(:mod:`calib.config`) turns a :class:`StudyRecord` into a ``Calibrator`` and a
``Posterior``, so nothing here imports the calibrator, the sampler or the run engine
(issue 10: data flows one way, the archive does not reach up the pipeline).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._checksum import _dataset, check_tree, read_checked
from ._h5 import (
    FORMAT,
    SCHEMA_VERSION,
    ArchiveError,
    ArchiveWarning,
    _attr_num,
    _attr_str,
    _open_h5,
    _strs,
)
from ._journal import _chainlog_bytes
from .chain import _read_chain
from .study import _group_name, _simulator_identity

__all__ = ["StudyRecord", "read_study"]

#: The keys ``/meta/configuration`` must hold for the study to be rebuilt.
_NEEDED = ("mode", "parameters", "discrepancy", "noise", "hyperpriors", "labels", "input_names")


@dataclass(frozen=True)
class StudyRecord:
    """A study archive read and checked, as plain data (nothing rebuilt, nothing executed).

    Attributes
    ----------
    path : Path
    config : dict
        ``/meta/configuration`` (JSON-decoded; it holds at least the keys of
        :data:`_NEEDED`), the input of :func:`calib.config.from_config`.
    campaigns : list of dict
        One per campaign, in the stored order: ``name``, ``group`` (its group under
        ``/campaigns``), ``x`` (``(n, p)`` or None), ``y`` and ``noise_sd`` (or None),
        ``coords`` (``(k, r)``, the columns' own output coordinates, or None).
    emulator_class : type or None
        Emulator mode: the registered ``calib.emulators`` plug-in class to restore
        :attr:`emulator_state` with (its ``from_state_dict``).
    emulator_state : dict or None
        Emulator mode: the stored ``state_dict`` (arrays, str, int, float).
    simulator : dict or None
        Direct mode read without ``simulator=``: the archived ``input_names``,
        ``parameter_names``, ``output_names`` and ``identity``.
    checkpoint : Checkpoint
        The chain: ``/chain`` followed by the chain journal's whole records.
    burn : int or None
        The stored burn-in (the sampling settings', else the chain's), or None.
    has_runs : bool
        The archive holds ``/runs``.
    """

    path: Path
    config: dict[str, Any]
    campaigns: list[dict[str, Any]]
    emulator_class: Any
    emulator_state: dict[str, Any] | None
    simulator: dict[str, Any] | None
    checkpoint: Any
    burn: int | None
    has_runs: bool


def read_study(path: str | os.PathLike, simulator: Any = None) -> StudyRecord:
    """Read and check what :func:`calib.load` needs from a study archive.

    Parameters
    ----------
    path : str or path-like
        The archive written by ``Calibrator.sample(archive=path)``.
    simulator : Simulator, optional
        Direct mode: checked against the archived input, parameter and output names.

    Returns
    -------
    StudyRecord

    Raises
    ------
    ArchiveError
        If the file is missing, not a calib archive, damaged, newer than this calib, has
        no chain, or ``simulator`` does not match; the message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise ArchiveError(f"archive: no such file '{path}'")
    if path.is_dir():
        raise ArchiveError(f"archive '{path}' is a directory, not an HDF5 file")
    try:
        log = _chainlog_bytes(path)  # before the file: see _chainlog_bytes
        with _open_h5(path) as f:
            return _read_study(f, path, simulator, log)
    except ArchiveError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises, say so
        raise ArchiveError(
            f"archive '{path}' cannot be loaded: {type(exc).__name__}: {exc}"
        ) from None


def _read_state(g: h5py.Group, path: Path) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        kind = obj.attrs.get("kind", "array")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        value = read_checked(obj, path)
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


def _simulator_group(f: h5py.File, path: Path) -> h5py.Group:
    if "simulator" not in f:
        raise ArchiveError(f"archive '{path}' has no /simulator group")
    return f["simulator"]


def _check_simulator(sim: Any, f: h5py.File, path: Path) -> None:
    g = _simulator_group(f, path)
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


def _simulator_names(f: h5py.File, path: Path) -> dict[str, Any]:
    """The archived simulator's names and identity (for a stand-in that has them)."""
    g = _simulator_group(f, path)
    names: dict[str, Any] = {}
    for key in ("input_names", "parameter_names", "output_names"):
        if key not in g.attrs:
            raise ArchiveError(f"archive '{path}': /simulator has no attribute '{key}'")
        names[key] = _strs(g.attrs[key])
    names["identity"] = _attr_str(g, "identity", path, default="?")
    return names


def _read_config(f: h5py.File, path: Path) -> dict[str, Any]:
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
    missing = [k for k in _NEEDED if k not in config]
    if missing:
        raise ArchiveError(f"archive '{path}': /meta configuration lacks {missing}")
    return config


def _read_campaigns(f: h5py.File, path: Path) -> list[dict[str, Any]]:
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
        campaigns.append(
            {
                "name": name,
                "group": key,
                "y": _dataset(g, "y", path, None),
                "x": _dataset(g, "x", path, 2) if "x" in g else None,
                "noise_sd": _dataset(g, "noise_sd", path, None) if "noise_sd" in g else None,
                "coords": _dataset(g, "coords", path, 2) if "coords" in g else None,
            }
        )
    return campaigns


def _stored_burn(config: dict[str, Any], cp: Any, path: Path) -> int | None:
    """The stored burn-in (the sampling settings', else the chain's), checked.

    ``sample()`` refuses a burn that is not below its budget ``n_steps``, so a stored one
    that is not is an edit or damage: an :class:`ArchiveError`. A burn beyond the chain
    *is* possible (a run killed, or stopped by its time budget, before its burn-in ended):
    the posterior then keeps the chain's last step only (``burn = n − 1``), said with an
    :class:`ArchiveWarning` (issue 13, item 11).
    """
    sample = config.get("sample", {})
    if not isinstance(sample, dict):
        raise ArchiveError(f"archive '{path}': /meta configuration 'sample' should be an object")
    where = "/meta configuration sample.burn" if "burn" in sample else "/chain info burn"
    burn = sample.get("burn", cp.info.get("burn"))
    if burn is None:
        return None
    if isinstance(burn, bool) or not isinstance(burn, int) or burn < 0:
        raise ArchiveError(f"archive '{path}': {where} {burn!r} is not a count of steps")
    budget = sample.get("n_steps")
    if isinstance(budget, int) and not isinstance(budget, bool) and burn >= budget:
        raise ArchiveError(
            f"archive '{path}': {where} {burn} is not below the budget n_steps {budget} the "
            f"chain was sampled with (sample() refuses that): the file is damaged or was edited"
        )
    if burn >= cp.n_steps:
        warnings.warn(
            f"archive '{path}': {where} is {burn}, but the chain holds {cp.n_steps} steps "
            f"(the run was interrupted before its burn-in ended): the posterior keeps the "
            f"last step only (burn {cp.n_steps - 1}); resume it (resume=True) to go on",
            ArchiveWarning,
            stacklevel=4,
        )
    return burn


def _read_study(f: h5py.File, path: Path, simulator: Any, log: bytes) -> StudyRecord:
    config = _read_config(f, path)
    campaigns = _read_campaigns(f, path)
    # ------------------------------------------------------------ the forward model
    cls = state = names = None
    mode = config["mode"]
    if mode == "emulator":
        if "emulator" not in f or not isinstance(f["emulator"], h5py.Group):
            raise ArchiveError(
                f"archive '{path}' was sampled with an emulator but has no /emulator"
            )
        cls = _emulator_class(f["emulator"], path)
        state = _read_state(f["emulator"], path)
    elif mode == "direct":
        if simulator is None:
            # reading needs no simulator: calib.load gives a stand-in these names
            names = _simulator_names(f, path)
        else:
            _check_simulator(simulator, f, path)
    else:
        raise ArchiveError(f"archive '{path}': /meta configuration mode {mode!r} is unknown")
    # ------------------------------------------------------------ the chain
    cp = _read_chain(f, path, log)[0]
    burn = _stored_burn(config, cp, path)
    if "posterior" in f:
        # not needed to rebuild the posterior (it is recomputed), but damage is said
        check_tree(f["posterior"], path)
    return StudyRecord(
        path=path,
        config=config,
        campaigns=campaigns,
        emulator_class=cls,
        emulator_state=state,
        simulator=names,
        checkpoint=cp,
        burn=burn,
        has_runs="runs" in f,
    )
