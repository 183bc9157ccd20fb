"""The box a design fills: its columns, their bounds, and unit points scaled into it.

The columns are the simulator's control inputs then its parameters (:mod:`calib.design`).
A control input's bounds are given (``x_bounds``); a parameter's are its own, a side left
open being closed by a quantile of its prior, truncated to the side that is known.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .parameters import Parameter

__all__ = ["design_bounds", "design_columns", "scale_to_box"]


def design_columns(simulator: Any) -> tuple[str, ...]:
    """A design's column names: ``simulator.input_names`` then its ``parameter_names``."""
    try:
        return tuple(simulator.input_names) + tuple(simulator.parameter_names)
    except AttributeError:
        raise TypeError(
            f"simulator: expected an object with input_names and parameter_names "
            f"(calib.interfaces.Simulator), got {type(simulator).__name__}"
        ) from None


def _parameter_bounds(p: Parameter, prior_quantiles: tuple[float, float]) -> tuple[float, float]:
    """A parameter's side of the box: its bounds, an open side closed by a prior quantile."""
    lo, hi = p.given_bounds  # a side only the prior's support closes is open here
    if lo is None or hi is None:
        if p.prior is None:
            raise ValueError(
                f"theta: parameter '{p.name}' is unbounded and has no prior, so a design "
                f"cannot cover it; give it bounds or a prior"
            )
        # quantiles of the prior truncated to the known side, so a one-sided bound and a
        # prior that straddles it still give a box inside the admissible region
        qlo, qhi = prior_quantiles
        known_lo, known_hi = lo, hi
        if lo is None:
            lo = float(p.prior.truncated_ppf(qlo, known_lo, known_hi))
        if hi is None:
            hi = float(p.prior.truncated_ppf(qhi, known_lo, known_hi))
    return float(lo), float(hi)


def design_bounds(
    simulator: Any,
    theta: Sequence[Parameter],
    x_bounds: Mapping[str, tuple[float, float]] | None = None,
    prior_quantiles: tuple[float, float] = (0.005, 0.995),
) -> np.ndarray:
    """The box ``(p + q, 2)`` a design fills, columns in design order.

    Parameters
    ----------
    simulator : Simulator
    theta : sequence of Parameter
        One per name in ``simulator.parameter_names`` (any order).
    x_bounds : mapping of str to (float, float), optional
        Bounds of every control input; required when the simulator has any.
    prior_quantiles : (float, float)
        Quantiles of the prior used for an unbounded side of a parameter.

    Raises
    ------
    ValueError
        When an input's bounds are missing or malformed, an unknown name is given, or
        ``theta`` does not match the simulator's parameters.
    """
    input_names = tuple(simulator.input_names)
    parameter_names = tuple(simulator.parameter_names)
    x_bounds = dict(x_bounds or {})
    unknown = sorted(set(x_bounds) - set(input_names))
    if unknown:
        raise ValueError(
            f"x_bounds: unknown control input(s) {unknown}; the simulator's inputs are "
            f"{input_names}"
        )
    missing = [n for n in input_names if n not in x_bounds]
    if missing:
        raise ValueError(
            f"x_bounds: bounds missing for control input(s) {missing}; expected "
            f"x_bounds={{name: (lower, upper)}} for every name in {input_names}, "
            f"got keys {sorted(x_bounds)}"
        )
    qlo, qhi = prior_quantiles
    if not 0.0 < qlo < qhi < 1.0:
        raise ValueError(
            f"prior_quantiles: expected 0 < lower < upper < 1, got {prior_quantiles!r}"
        )

    if isinstance(theta, Parameter):
        theta = [theta]
    theta = list(theta)
    for t in theta:
        if not isinstance(t, Parameter):
            raise TypeError(
                f"theta: expected a list of calib.Parameter, got an element of type "
                f"{type(t).__name__}"
            )
    by_name = {t.name: t for t in theta}
    if len(by_name) != len(theta) or set(by_name) != set(parameter_names):
        raise ValueError(
            f"theta: expected one Parameter per simulator parameter {parameter_names}, "
            f"got {tuple(t.name for t in theta)}"
        )

    rows = []
    for name in input_names:
        b = x_bounds[name]
        try:
            lo, hi = b
        except (TypeError, ValueError):
            raise ValueError(f"x_bounds['{name}']: expected (lower, upper), got {b!r}") from None
        if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (lo, hi)):
            raise TypeError(f"x_bounds['{name}']: expected (lower, upper) as numbers, got {b!r}")
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(
                f"x_bounds['{name}']: expected finite lower <= upper, got ({lo}, {hi})"
            )
        rows.append((lo, hi))
    for name in parameter_names:
        rows.append(_parameter_bounds(by_name[name], (qlo, qhi)))
    return np.array(rows, dtype=float).reshape(len(rows), 2)


def scale_to_box(unit: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Points of the unit cube ``(n, d)`` mapped onto the box ``bounds (d, 2)``."""
    lo, hi = bounds[:, 0], bounds[:, 1]
    return lo + unit * (hi - lo)
