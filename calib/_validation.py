"""Checks of user input at calib's boundary, shared by the modules that take arrays."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["as_real_array", "check_int", "check_number", "check_seed"]


def as_real_array(value: Any, what: str) -> np.ndarray:
    """``value`` as a float64 array, refusing what ``np.asarray(value, dtype=float)`` would
    quietly accept: it drops an imaginary part (with only a ``ComplexWarning``), parses
    strings (``"1e3"``) and turns ``None`` into NaN (a missing value). Each is refused here,
    naming ``what``, what was expected and what was given.
    """
    try:
        arr = np.asarray(value)
    except ValueError:  # numpy >= 1.24 refuses ragged nested sequences
        raise ValueError(
            f"{what}: expected a rectangular array of numbers, got a ragged "
            f"{type(value).__name__} (rows of different lengths)"
        ) from None
    kind = arr.dtype.kind
    if kind == "c":
        raise ValueError(
            f"{what}: expected real numbers, got complex values (dtype {arr.dtype}); pass the "
            f"real part (or the modulus) explicitly rather than dropping the imaginary part"
        )
    if kind == "O":
        bad = [v for v in arr.ravel() if not isinstance(v, numbers.Real) or isinstance(v, bool)]
        if bad:
            hint = "; use NaN for a missing value" if any(v is None for v in bad) else ""
            raise TypeError(
                f"{what}: expected an array of numbers, got an object array holding "
                f"{type(bad[0]).__name__} {bad[0]!r}{hint}"
            )
    elif kind not in "biuf":
        held = {"U": "strings", "S": "byte strings", "M": "dates", "m": "time spans"}
        raise TypeError(
            f"{what}: expected an array of numbers, got a {type(value).__name__} of "
            f"{held.get(kind, 'non-numbers')} (dtype {arr.dtype}); convert it with "
            f"np.asarray(..., dtype=float) if the text really holds numbers"
        )
    return arr.astype(float)


def check_int(value: Any, name: str, least: int = 0, what: str | None = None) -> int:
    """``value`` as an int, refusing bools, floats (``2.5``, also ``2.0``) and values below
    ``least``; ``what`` describes the range in the message (default from ``least``)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        if what is None:
            what = "a positive integer" if least == 1 else f"an integer ≥ {least}"
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return int(value)


def check_number(
    value: Any,
    name: str,
    lower: float | None = None,
    upper: float | None = None,
    what: str | None = None,
) -> float:
    """``value`` as a finite float strictly between ``lower`` and ``upper`` (either may be
    None); ``what`` describes the range in the message (default from the bounds)."""
    ok = (
        not isinstance(value, bool)
        and isinstance(value, (int, float, np.integer, np.floating))
        and np.isfinite(value)
        and (lower is None or value > lower)
        and (upper is None or value < upper)
    )
    if not ok:
        if what is None:
            if lower is not None and upper is not None:
                what = f"a number in ({lower:g}, {upper:g})"
            elif lower is not None:
                what = "a positive number" if lower == 0 else f"a number > {lower:g}"
            else:
                what = "a finite number" if upper is None else f"a number < {upper:g}"
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return float(value)


def check_seed(seed: Any, name: str = "seed") -> int | None:
    """None, or an integer in [0, 2⁶³) (it is stored as a 64-bit integer in archives)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (0 <= seed < 2**63):
        raise ValueError(f"{name}: expected None or an integer in [0, 2**63), got {seed!r}")
    return int(seed)
