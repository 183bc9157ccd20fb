"""Space-filling designs over a simulator's control inputs and calibration parameters.

A design is an ``(n, p + q)`` array whose columns are the simulator's control inputs
``x`` (in ``sim.input_names`` order) followed by its parameters ``θ`` (in
``sim.parameter_names`` order), the same column order as ``RunSet.inputs`` and the
emulators' inputs.

The box the design fills is:

- for each control input, ``x_bounds[name] = (lower, upper)`` (required: a control input
  has no prior to fall back on);
- for each parameter, its bounds; a side left unbounded is replaced by a quantile of the
  parameter's prior (``prior_quantiles``, default 0.5 % and 99.5 %), so a design over a
  ``Normal(0, 1)`` parameter covers about ``[-2.58, 2.58]``.

Three generators are offered: :func:`latin_hypercube` (optimized for space filling with
scipy's ``random-cd`` centred-discrepancy optimization), :func:`sobol` (scrambled Sobol'
points, best with ``n`` a power of two) and :func:`grid` (a full factorial grid).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import qmc

from ._design_bounds import design_bounds, design_columns, scale_to_box
from ._validation import as_real_array, check_int
from .parameters import Parameter

__all__ = ["Design", "latin_hypercube", "sobol", "grid", "design_bounds"]


@dataclass(frozen=True, eq=False)
class Design:
    """A set of simulator runs to make.

    Attributes
    ----------
    names : tuple of str
        Column names: the control inputs then the parameters.
    array : ndarray of shape (n, p + q)
        One row per run.
    n_inputs : int
        ``p``, the number of control-input columns at the front.
    method : str
        How the design was made (``"latin_hypercube"``, ``"sobol"``, ``"grid"``, ``"array"``).
    seed : int or None
        The seed it was made with.
    bounds : ndarray of shape (p + q, 2)
        The box the design fills (NaN for a design given as a plain array).

    Raises
    ------
    ValueError
        An array of the wrong shape, with no rows, with NaN, inf or complex values, or
        duplicated names.
    TypeError
        An array of strings or other non-numbers, or names that are not strings.
    """

    names: tuple[str, ...]
    array: np.ndarray
    n_inputs: int
    method: str = "array"
    seed: int | None = None
    bounds: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.names, str) or not all(isinstance(n, str) for n in self.names):
            raise TypeError(
                f"Design: names must be a sequence of column names (str), got {self.names!r}"
            )
        if len(set(self.names)) != len(tuple(self.names)):
            raise ValueError(f"Design: names has duplicates: {tuple(self.names)}")
        arr = as_real_array(self.array, "Design: array")  # a copy: the design owns it
        if arr.ndim != 2 or arr.shape[1] != len(self.names):
            raise ValueError(
                f"Design: array must have shape (n, {len(self.names)}) for columns "
                f"{self.names}, got shape {np.shape(self.array)}"
            )
        if arr.shape[0] == 0:
            raise ValueError(
                f"Design: array has no rows (shape {arr.shape}); a design needs at least one run"
            )
        if not np.isfinite(arr).all():
            rows = np.flatnonzero(~np.isfinite(arr).all(axis=1))
            raise ValueError(
                f"Design: array must be finite, got NaN or inf in {rows.size} row(s) "
                f"(first: row {rows[0]})"
            )
        if not 0 <= self.n_inputs <= len(self.names):
            raise ValueError(
                f"Design: n_inputs must be in [0, {len(self.names)}], got {self.n_inputs}"
            )
        arr.flags.writeable = False
        object.__setattr__(self, "array", arr)
        object.__setattr__(self, "names", tuple(self.names))

    def __len__(self) -> int:
        return self.array.shape[0]

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the control-input columns."""
        return self.names[: self.n_inputs]

    @property
    def parameter_names(self) -> tuple[str, ...]:
        """Names of the parameter columns."""
        return self.names[self.n_inputs :]

    @property
    def x(self) -> np.ndarray:
        """Control-input columns, shape ``(n, p)``."""
        return self.array[:, : self.n_inputs]

    @property
    def theta(self) -> np.ndarray:
        """Parameter columns, shape ``(n, q)``."""
        return self.array[:, self.n_inputs :]

    def fingerprint(self) -> str:
        """SHA-256 of the column names and the exact float64 values.

        The archive stores it to recognise the same design when a run is resumed.
        """
        h = hashlib.sha256()
        h.update("\x1f".join(self.names).encode())
        h.update(str(self.n_inputs).encode())
        h.update(np.ascontiguousarray(self.array, dtype="<f8").tobytes())
        return h.hexdigest()

    @classmethod
    def from_array(cls, simulator: Any, array: Any) -> Design:
        """A design from a plain ``(n, p + q)`` array for ``simulator``.

        Raises
        ------
        ValueError
            If the array does not have ``p + q`` columns, has no rows, holds NaN, inf or
            complex values.
        TypeError
            If it holds strings or other non-numbers.
        """
        names = design_columns(simulator)
        arr = as_real_array(array, "design")
        if arr.ndim == 1 and len(names) == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != len(names):
            raise ValueError(
                f"design: expected an array of shape (n, {len(names)}) with columns {names}, "
                f"got shape {arr.shape}"
            )
        if arr.shape[0] == 0:
            raise ValueError(f"design: has no rows (shape {arr.shape}); expected at least one run")
        return cls(names, arr, len(simulator.input_names), "array")

    def __repr__(self) -> str:
        return (
            f"Design({self.method}, n={len(self)}, columns={self.names}"
            + (f", seed={self.seed}" if self.seed is not None else "")
            + ")"
        )


# ---------------------------------------------------------------------- generators
def latin_hypercube(
    simulator: Any,
    theta: Sequence[Parameter],
    n: int = 200,
    x_bounds: Mapping[str, tuple[float, float]] | None = None,
    seed: int | None = 0,
    optimization: str | None = "random-cd",
    prior_quantiles: tuple[float, float] = (0.005, 0.995),
) -> Design:
    """A Latin hypercube design of ``n`` runs.

    Parameters
    ----------
    simulator : Simulator
        Supplies the column names and order.
    theta : sequence of Parameter
        The calibration parameters, one per ``simulator.parameter_names``.
    n : int
        Number of runs.
    x_bounds : mapping of str to (float, float)
        Bounds of each control input.
    seed : int or None
        Seed of the generator.
    optimization : {"random-cd", "lloyd", None}
        scipy's space-filling optimization; ``"random-cd"`` permutes coordinates to lower
        the centred discrepancy while keeping the Latin property.
    prior_quantiles : (float, float)
        Quantiles of a parameter's prior used where it has no bound.

    Returns
    -------
    Design

    Examples
    --------
    >>> d = latin_hypercube(sim, theta, n=200, x_bounds={"load": (0, 1e3)}, seed=0)
    >>> d.array.shape
    (200, 3)
    """
    n = check_int(n, "n", 1)
    bounds = design_bounds(simulator, theta, x_bounds, prior_quantiles)
    if optimization not in (None, "random-cd", "lloyd"):
        raise ValueError(
            f"optimization: expected 'random-cd', 'lloyd' or None, got {optimization!r}"
        )
    d = bounds.shape[0]
    if d == 0:
        raise ValueError("simulator: has no inputs or parameters to design over")
    # random-cd needs at least two dimensions; in one a plain LHS is already optimal
    opt = optimization if d > 1 else None
    unit = qmc.LatinHypercube(d, optimization=opt, rng=np.random.default_rng(seed)).random(n)
    return Design(
        design_columns(simulator),
        scale_to_box(unit, bounds),
        len(simulator.input_names),
        "latin_hypercube",
        seed,
        bounds,
    )


def sobol(
    simulator: Any,
    theta: Sequence[Parameter],
    n: int = 256,
    x_bounds: Mapping[str, tuple[float, float]] | None = None,
    seed: int | None = 0,
    scramble: bool = True,
    prior_quantiles: tuple[float, float] = (0.005, 0.995),
) -> Design:
    """A scrambled Sobol' design of ``n`` runs.

    The balance properties of Sobol' points hold for ``n`` a power of two; other ``n``
    are allowed (the first ``n`` points) and scipy warns about them.

    Parameters
    ----------
    simulator, theta, x_bounds, seed, prior_quantiles
        As for :func:`latin_hypercube`.
    n : int
        Number of runs.
    scramble : bool
        Owen scrambling (randomized QMC); without it the first point is the corner.

    Returns
    -------
    Design
    """
    n = check_int(n, "n", 1)
    bounds = design_bounds(simulator, theta, x_bounds, prior_quantiles)
    d = bounds.shape[0]
    if d == 0:
        raise ValueError("simulator: has no inputs or parameters to design over")
    gen = qmc.Sobol(d, scramble=scramble, rng=np.random.default_rng(seed))
    m = int(math.log2(n))
    if 2**m == n:
        unit = gen.random_base2(m)
    else:
        with warnings.catch_warnings():
            # scipy's balance warning is restated in this docstring; keep test output quiet
            warnings.simplefilter("ignore", UserWarning)
            unit = gen.random(n)
    return Design(
        design_columns(simulator),
        scale_to_box(unit, bounds),
        len(simulator.input_names),
        "sobol",
        seed,
        bounds,
    )


def grid(
    simulator: Any,
    theta: Sequence[Parameter],
    n: int | Mapping[str, int] = 5,
    x_bounds: Mapping[str, tuple[float, float]] | None = None,
    prior_quantiles: tuple[float, float] = (0.005, 0.995),
) -> Design:
    """A full factorial grid, bounds included.

    Parameters
    ----------
    simulator, theta, x_bounds, prior_quantiles
        As for :func:`latin_hypercube`.
    n : int or mapping of str to int
        Points per column (the same for all, or per name; a name left out gets 5). A
        column with one point sits at the middle of its range.

    Returns
    -------
    Design
        ``prod(n)`` rows, the last column varying fastest.
    """
    bounds = design_bounds(simulator, theta, x_bounds, prior_quantiles)
    names = design_columns(simulator)
    if isinstance(n, Mapping):
        unknown = sorted(set(n) - set(names))
        if unknown:
            raise ValueError(f"n: unknown column(s) {unknown}; the columns are {names}")
        counts = [check_int(n.get(c, 5), f"n['{c}']", 1) for c in names]
    else:
        counts = [check_int(n, "n", 1)] * len(names)
    axes = []
    for (lo, hi), k in zip(bounds, counts, strict=True):
        axes.append(np.array([(lo + hi) / 2]) if k == 1 else np.linspace(lo, hi, k))
    mesh = np.meshgrid(*axes, indexing="ij")
    arr = np.stack([g.ravel() for g in mesh], axis=1) if mesh else np.empty((1, 0))
    return Design(names, arr, len(simulator.input_names), "grid", None, bounds)


def as_design(simulator: Any, design: Any) -> Design:
    """Check ``design`` against ``simulator`` and return it as a :class:`Design`.

    Raises
    ------
    ValueError
        When the columns or width do not match the simulator.
    """
    names = design_columns(simulator)
    if isinstance(design, Design):
        if design.names != names or design.n_inputs != len(simulator.input_names):
            raise ValueError(
                f"design: columns {design.names} (first {design.n_inputs} control inputs) "
                f"do not match the simulator's {names} (first "
                f"{len(simulator.input_names)} control inputs)"
            )
        return design
    return Design.from_array(simulator, design)
