"""Checks of user input at calib's boundary, shared by the modules that take arrays."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["as_real_array"]


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
