"""A Python callable as a simulator."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["FunctionSimulator"]


def _names(value: Sequence[str] | str | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    names = tuple(value)
    for n in names:
        if not isinstance(n, str) or not n:
            raise TypeError(f"FunctionSimulator: {what} must be non-empty strings, got {n!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"FunctionSimulator: {what} has duplicates: {names}")
    return names


class FunctionSimulator:
    """Wrap ``func`` as a :class:`calib.interfaces.Simulator`.

    Parameters
    ----------
    func : callable
        ``func(x (p,), theta (q,)) -> (m,)``, or with ``vectorized=True``
        ``func(X (n, p), Theta (n, q)) -> (n, m)``.
    input_names, parameter_names, output_names : sequence of str
        Names of the control inputs (may be empty), parameters and outputs.
    vectorized : bool
        Whether ``func`` takes whole batches.
    output_coords : array of shape (m,) or (m, r), optional
        Coordinates of the outputs for the discrepancy kernel.

    Examples
    --------
    >>> sim = FunctionSimulator(lambda x, t: [t[0] * x[0]], ("load",), ("k",), ("d",))
    >>> sim.run(np.array([2.0]), np.array([3.0]))
    array([6.])
    """

    def __init__(
        self,
        func: Callable,
        input_names: Sequence[str] = (),
        parameter_names: Sequence[str] = (),
        output_names: Sequence[str] = ("y",),
        vectorized: bool = False,
        output_coords: np.ndarray | None = None,
    ):
        if not callable(func):
            raise TypeError(f"FunctionSimulator: func must be callable, got {func!r}")
        self.func = func
        self.input_names = _names(input_names, "input_names")
        self.parameter_names = _names(parameter_names, "parameter_names")
        self.output_names = _names(output_names, "output_names")
        if not self.parameter_names:
            raise ValueError("FunctionSimulator: parameter_names must name at least one parameter")
        if not self.output_names:
            raise ValueError("FunctionSimulator: output_names must name at least one output")
        self.vectorized = bool(vectorized)
        if output_coords is not None:
            c = np.asarray(output_coords, dtype=float)
            if c.ndim == 1:
                c = c.reshape(-1, 1)
            if c.ndim != 2 or c.shape[0] != len(self.output_names) or not np.isfinite(c).all():
                raise ValueError(
                    f"FunctionSimulator: output_coords must be finite with shape "
                    f"({len(self.output_names)}, r), got shape {np.shape(output_coords)}"
                )
            output_coords = c
        self.output_coords = output_coords

    @property
    def identity(self) -> str:
        """A readable identity of the wrapped callable (for archives and reports)."""
        f = self.func
        return f"{getattr(f, '__module__', '?')}.{getattr(f, '__qualname__', repr(f))}"

    def run(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """One run: ``x (p,)``, ``theta (q,)`` -> ``(m,)``."""
        x = np.asarray(x, dtype=float).reshape(len(self.input_names))
        theta = np.asarray(theta, dtype=float).reshape(len(self.parameter_names))
        if self.vectorized:
            out = np.asarray(self.func(x[None, :], theta[None, :]), dtype=float)
        else:
            out = np.asarray(self.func(x, theta), dtype=float)
        m = len(self.output_names)
        if out.size != m:
            raise ValueError(
                f"FunctionSimulator: the function returned {out.size} values (shape "
                f"{out.shape}) where {m} outputs {list(self.output_names)} were expected"
            )
        return out.reshape(m)

    def run_batch(self, X: np.ndarray, Theta: np.ndarray) -> np.ndarray:
        """Many runs: ``X (n, p)``, ``Theta (n, q)`` -> ``(n, m)``."""
        X = np.asarray(X, dtype=float)
        Theta = np.asarray(Theta, dtype=float)
        n, m = Theta.shape[0], len(self.output_names)
        if self.vectorized:
            return np.asarray(self.func(X, Theta), dtype=float).reshape(n, m)
        out = np.empty((n, m))
        for i in range(n):
            out[i] = self.run(X[i], Theta[i])
        return out

    def __repr__(self) -> str:
        return (
            f"FunctionSimulator({self.identity}, inputs={self.input_names}, "
            f"parameters={self.parameter_names}, outputs={self.output_names})"
        )
