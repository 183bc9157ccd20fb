"""Plug-in discovery through entry points.

Simulators and emulators register under the entry-point groups ``calib.simulators`` and
``calib.emulators`` (``[project.entry-points."calib.simulators"]`` in a package's
``pyproject.toml``); calib's own plug-ins are registered the same way. Nothing is
imported until a plug-in is :func:`load`-ed, so calib never imports ``simulators`` or
``emulators`` at module level and a broken third-party plug-in cannot break ``import
calib``.

Examples
--------
>>> calib.plugins.list()["calib.simulators"]["beam"]
'simulators.beam:BeamSimulator'
>>> Beam = calib.plugins.load("calib.simulators", "beam")
"""

from __future__ import annotations

import builtins
from importlib.metadata import entry_points
from typing import Any

__all__ = ["GROUPS", "list", "load"]

#: The entry-point groups calib reads.
GROUPS = ("calib.simulators", "calib.emulators")


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise ValueError(f"group: expected one of {GROUPS}, got {group!r}")


def list(group: str | None = None) -> dict[str, Any]:  # noqa: A001 - the contract name
    """The installed plug-ins, without importing them.

    Parameters
    ----------
    group : {"calib.simulators", "calib.emulators"}, optional
        One group only.

    Returns
    -------
    dict
        ``{group: {name: "module:attribute"}}``, or ``{name: "module:attribute"}`` for
        one group; names sorted.
    """
    if group is not None:
        _check_group(group)
        return {ep.name: ep.value for ep in sorted(entry_points(group=group), key=lambda e: e.name)}
    return {g: list(g) for g in GROUPS}


def load(group: str, name: str) -> Any:
    """Import and return the plug-in ``name`` of ``group`` (a class, usually).

    Raises
    ------
    ValueError
        If no installed plug-in has that name; the message lists those that exist.
    """
    _check_group(group)
    found = [ep for ep in entry_points(group=group) if ep.name == name]
    if not found:
        raise ValueError(
            f"name: no plug-in {name!r} in {group}; installed: {builtins.list(list(group))}"
        )
    return found[0].load()
