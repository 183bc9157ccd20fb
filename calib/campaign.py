"""Experimental campaigns: the observed data of one batch, site or year."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._validation import as_real_array

__all__ = ["Campaign"]


class Campaign:
    """The observations of one experimental campaign.

    Parameters
    ----------
    name : str
        Unique among the campaigns of a calibration.
    x : array of shape (n, p), (n,) or None
        Control inputs of the ``n`` observations (a 1-D array is one input). ``None`` for a
        simulator with no control inputs.
    y : array of shape (n,) or (n, m)
        Observed outputs; ``NaN`` marks a missing value. For a simulator with ``m > 1``
        outputs and ``x=None``, a 1-D ``y`` of length ``m`` is one observation of every output.
    noise_sd : float, array of shape (n,) or (n, m), or None
        Known observation-error sd; ``None`` when the noise is to be inferred.
    coords : array of shape (k,) or (k, r), or None
        The output coordinates of ``y``'s ``k`` columns (the same for every row), for a
        model with functional outputs (``output_coords``): then ``y`` is ``(n, k)`` (or
        ``(k,)`` for one row) and ``noise_sd`` a scalar, ``(n,)`` or ``(n, k)``. A column
        at one of the model's output coordinates observes that output; any other must lie
        within their range and is compared with the model linearly interpolated along
        the coordinate (docs/emulators.md, "Observations at their own coordinates").
        ``None`` (default): ``y``'s columns are the model's ``m`` outputs.

    Raises
    ------
    ValueError
        No rows, rows of ``x`` and ``y`` that disagree, NaN or inf in ``x``, inf in ``y``,
        no observed value at all, a ``noise_sd`` that is not finite and positive, complex
        values (the imaginary part is never dropped silently), arrays of more than two
        dimensions, ragged rows, or ``coords`` that are not finite or whose number
        disagrees with ``y``'s columns.
    TypeError
        Strings, ``None`` or other non-numbers in ``x``, ``y`` or ``noise_sd`` (``NaN``,
        not ``None``, marks a missing value of ``y``).
    """

    def __init__(
        self, name: str, x: Any = None, y: Any = None, noise_sd: Any = None, coords: Any = None
    ):
        if not isinstance(name, str) or not name:
            raise TypeError(f"Campaign: name must be a non-empty string, got {name!r}")
        self.name = name
        if y is None:
            raise ValueError(f"Campaign '{name}': y is required, got None")
        y = as_real_array(y, f"Campaign '{name}': y")
        if y.ndim == 0:
            y = y.reshape(1)
        if y.ndim > 2:
            raise ValueError(f"Campaign '{name}': y must be 1-D or 2-D, got shape {y.shape}")
        if y.shape[0] == 0:
            raise ValueError(f"Campaign '{name}': y has no rows")
        if y.size == 0:
            raise ValueError(f"Campaign '{name}': y has shape {y.shape}: no columns")
        if np.isinf(y).any():
            raise ValueError(f"Campaign '{name}': y contains inf (use NaN for a missing value)")
        if np.isnan(y).all():
            raise ValueError(f"Campaign '{name}': y has no observed value (all NaN)")
        if x is not None:
            x = as_real_array(x, f"Campaign '{name}': x")
            if x.ndim == 1:
                x = x.reshape(-1, 1)
            if x.ndim != 2:
                raise ValueError(f"Campaign '{name}': x must be 1-D or 2-D, got shape {x.shape}")
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"Campaign '{name}': y has {y.shape[0]} rows but x has {x.shape[0]}"
                )
            if not np.isfinite(x).all():
                bad = int((~np.isfinite(x)).any(axis=1).sum())
                raise ValueError(f"Campaign '{name}': x contains NaN or inf in {bad} row(s)")
        self.x = x
        self.y = y
        if noise_sd is not None:
            noise_sd = as_real_array(noise_sd, f"Campaign '{name}': noise_sd")
            bad = ~(np.isfinite(noise_sd) & (noise_sd > 0))
            if bad.any():
                raise ValueError(
                    f"Campaign '{name}': noise_sd must be finite and > 0, got "
                    f"{int(bad.sum())} value(s) that are not (first: {float(noise_sd[bad][0])})"
                )
            if noise_sd.ndim > 2:
                raise ValueError(
                    f"Campaign '{name}': noise_sd must be a scalar, (n,) or (n, m), "
                    f"got shape {noise_sd.shape}"
                )
        self.noise_sd = noise_sd
        self.coords = None if coords is None else self._check_coords(coords)

    def _check_coords(self, coords: Any) -> np.ndarray:
        """``coords`` as ``(k, r)``, with ``y`` made ``(n, k)``; refused where they disagree."""
        name = self.name
        c = as_real_array(coords, f"Campaign '{name}': coords")
        if c.ndim == 0:
            c = c.reshape(1)
        if c.ndim == 1:
            c = c.reshape(-1, 1)
        if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] == 0:
            raise ValueError(
                f"Campaign '{name}': coords must have shape (k,) or (k, r) with k >= 1, got "
                f"shape {np.shape(coords)}"
            )
        if not np.isfinite(c).all():
            raise ValueError(f"Campaign '{name}': coords contain NaN or inf")
        k, y = c.shape[0], self.y
        if y.ndim == 1:
            # one row of k values, or (k = 1) one value per row
            y = y.reshape(-1, 1) if k == 1 else y.reshape(1, -1)
        if self.x is not None and y.shape[0] != self.x.shape[0]:
            raise ValueError(
                f"Campaign '{name}': y has {y.shape[0]} rows but x has {self.x.shape[0]}"
            )
        if y.shape[1] != k:
            raise ValueError(
                f"Campaign '{name}': y has {y.shape[1]} columns but coords give {k} "
                f"coordinates (one per column of y)"
            )
        self.y = y
        return c

    def shaped(self, p: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``x (n, p)``, ``y (n, m)`` and ``noise_sd (n, m)`` or ``None`` for a simulator with
        ``p`` control inputs and ``m`` outputs; a clear ``ValueError`` where they disagree.
        With ``coords``, ``y`` keeps its ``k`` columns (``m`` is then not checked: the
        Calibrator maps them onto the outputs) and ``noise_sd`` is ``(n, k)``."""
        y = self.y
        if self.coords is not None:
            m = y.shape[1]
        elif y.ndim == 1:
            if m == 1:
                y = y.reshape(-1, 1)
            elif self.x is None and y.shape[0] == m:
                y = y.reshape(1, m)
            else:
                raise ValueError(
                    f"Campaign '{self.name}': y has shape {y.shape} but the simulator has "
                    f"{m} outputs: give y of shape (n, {m})"
                )
        if y.shape[1] != m:
            raise ValueError(
                f"Campaign '{self.name}': y has {y.shape[1]} columns but the simulator has "
                f"{m} outputs"
            )
        n = y.shape[0]
        if self.x is None:
            if p != 0:
                raise ValueError(
                    f"Campaign '{self.name}': x is None but the simulator has {p} control input(s)"
                )
            x = np.zeros((n, 0))
        else:
            x = self.x
            if x.shape[1] != p:
                raise ValueError(
                    f"Campaign '{self.name}': x has {x.shape[1]} columns but the simulator has "
                    f"{p} control input(s)"
                )
        noise = None
        if self.noise_sd is not None:
            s = self.noise_sd
            if s.ndim == 0:
                noise = np.full((n, m), float(s))
            elif s.ndim == 1 and s.shape[0] == n:
                noise = np.repeat(s.reshape(n, 1), m, axis=1)
            elif s.shape == (n, m):
                noise = s.copy()
            elif s.ndim == 1 and n == 1 and s.shape[0] == m:
                noise = s.reshape(1, m).copy()
            else:
                raise ValueError(
                    f"Campaign '{self.name}': noise_sd has shape {s.shape}, expected a scalar, "
                    f"({n},) or ({n}, {m})"
                )
        return x, y, noise

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "x": self.x, "y": self.y, "noise_sd": self.noise_sd}
        if self.coords is not None:  # only when given: older dictionaries stay as they were
            out["coords"] = self.coords
        return out

    def __repr__(self) -> str:
        nobs = int(np.isfinite(self.y).sum())
        at = "" if self.coords is None else f", coords={self.coords.shape[0]}"
        return f"Campaign({self.name!r}, rows={self.y.shape[0]}, observed={nobs}{at})"
