"""Is the calibration being resumed the one that wrote the archive? (issue 13, item 1)

A chain continues only the posterior it was drawn from. Before a resume the writer
compares everything that defines that posterior with what the archive holds: the
configuration (parameters with their bounds, priors, pooling and fixed values; the
resolved hyperpriors; δ's settings; the noise model and its prior; inputs, outputs and
their coordinates; mode), the campaigns' data (x, y, noise_sd, bit for bit), the class of
the simulator or emulator, and in emulator mode a digest of the emulator's state. The
sampling settings (``n_steps`` may grow on a resume) and the study file's text are not
compared; neither is a simulator's readable identity (a function's module name differs
between a script and an import of it). Every difference is listed.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._checksum import read_checked
from ._h5 import _json_default

#: configuration keys that may change between a run and its resume
_FREE = ("sample", "study")
_ABSENT = object()


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 of an emulator's ``state_dict``: keys, kinds, dtypes, shapes and bytes."""
    h = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        h.update(key.encode() + b"\0")
        if isinstance(value, str):
            h.update(b"s" + value.encode() + b"\0")
        elif isinstance(value, (bool, int, np.integer)) and not isinstance(value, np.ndarray):
            h.update(b"i" + str(int(value)).encode() + b"\0")
        elif isinstance(value, (float, np.floating)):
            h.update(b"f" + float(value).hex().encode() + b"\0")
        else:
            a = np.ascontiguousarray(value)
            h.update(f"a{a.dtype.str}{a.shape}".encode() + a.tobytes())
    return h.hexdigest()


def _short(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value, allow_nan=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _same_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """The paths where two JSON values differ, as ``path: old → new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            path = f"{where}.{key}" if where else str(key)
            out += differences(old.get(key, _ABSENT), new.get(key, _ABSENT), path)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        out = []
        for i, (a, b) in enumerate(zip(old, new)):
            name = a.get("name") if isinstance(a, dict) else None
            out += differences(a, b, f"{where}[{i}]" + (f" ({name!r})" if name else ""))
        return out
    if isinstance(old, list) or isinstance(new, list) or isinstance(old, dict):
        return [] if old == new else [f"{where}: {_short(old)} → {_short(new)}"]
    return [] if _same_scalar(old, new) else [f"{where}: {_short(old)} → {_short(new)}"]


def _arrays_differ(stored: h5py.Group, key: str, given: Any) -> bool:
    if (key in stored) != (given is not None):
        return True
    if given is None:
        return False
    # checked: a damaged campaign is an ArchiveError, not "its data differ"
    a = np.asarray(read_checked(stored[key], Path(stored.file.filename)), dtype=float)
    b = np.asarray(given, dtype=float)
    return a.shape != b.shape or not np.array_equal(a, b, equal_nan=True)


def resume_differences(
    f: h5py.File,
    config: dict[str, Any],
    campaigns: list[Any],
    group_name: Any,
    simulator: dict[str, Any],
    emulator_state: dict[str, Any] | None,
) -> list[str]:
    """What differs between the archive ``f`` and the calibration about to resume it.

    ``config`` is the new configuration, ``campaigns`` the new campaigns (``name``, ``x``,
    ``y``, ``noise_sd``), ``group_name`` the campaign-group naming, ``simulator`` the new
    model's identity (its ``class`` is compared) and ``emulator_state`` its state (or
    None in direct mode).
    """
    out: list[str] = []
    meta = f.get("meta")
    if meta is not None and "configuration" in meta.attrs:
        raw = meta.attrs["configuration"]
        stored = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        new = json.loads(json.dumps(config, default=_json_default, allow_nan=True))
        for key in _FREE:
            stored.pop(key, None)
            new.pop(key, None)
        out += differences(stored, new)
    g = f.get("campaigns")
    if g is not None:
        for c in campaigns:
            name = group_name(c.name)
            if name not in g:
                continue  # the campaign list itself differs: reported from the configuration
            for key in ("x", "y", "noise_sd", "coords"):
                if _arrays_differ(g[name], key, getattr(c, key, None)):
                    out.append(f"campaign {c.name!r}: its {key} differs from the archived data")
    s = f.get("simulator")
    if s is not None and "class" in s.attrs:
        cls = s.attrs["class"]
        cls = cls.decode() if isinstance(cls, bytes) else str(cls)
        if cls != simulator["class"]:
            out.append(f"model class: {cls} → {simulator['class']}")
    e = f.get("emulator")
    if e is not None and emulator_state is not None and "fingerprint" in e.attrs:
        fp = e.attrs["fingerprint"]
        fp = fp.decode() if isinstance(fp, bytes) else str(fp)
        if fp != state_digest(emulator_state):
            out.append("emulator: its fitted state differs from the archived one")
    return out
