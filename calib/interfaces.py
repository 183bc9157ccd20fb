"""The plug-in contracts: what a simulator and an emulator must provide.

A plug-in implements a handful of attributes and methods and nothing else is required of
it (DESIGN.md §3). These are :class:`typing.Protocol` classes: a plug-in does not inherit
from them, it only has to match them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Simulator",
    "Emulator",
    "Prediction",
    "SimulatorError",
    "SimulatorMissingError",
    "MissingSimulator",
]


class SimulatorError(RuntimeError):
    """A simulator failed to produce a usable output (raised, crashed, timed out)."""


class SimulatorMissingError(RuntimeError):
    """A computation needs the simulator of a study loaded without it (direct mode)."""


class MissingSimulator:
    """Stands in for the simulator of a direct-mode study loaded without it: it has the
    archived names, so the posterior's draws, summary and diagnostics work, and raises
    :class:`SimulatorMissingError` (never caught as a failed run) when it is run."""

    def __init__(self, input_names, parameter_names, output_names, identity: str, path: str):
        self.input_names = tuple(input_names)
        self.parameter_names = tuple(parameter_names)
        self.output_names = tuple(output_names)
        self.identity = identity
        self._path = path

    def run(self, x, theta):
        raise SimulatorMissingError(
            f"'{self._path}' was loaded without its simulator ({self.identity}): draws, "
            f"summary and diagnostics need none, but predictions in direct mode run the "
            f"simulator: calib.load('{self._path}', simulator=sim)"
        )

    run_batch = None


@runtime_checkable
class Simulator(Protocol):
    """A computer model ``η(x, θ)``.

    Attributes
    ----------
    input_names : tuple of str
        Control inputs ``x`` (may be empty).
    parameter_names : tuple of str
        Calibration parameters ``θ``.
    output_names : tuple of str
        The ``m ≥ 1`` outputs of one run.
    output_coords : ndarray of shape (m, r) or None
        Coordinates of the outputs (a sensor position, a time), used by the discrepancy
        kernel; ``None`` when the outputs have no natural coordinates.

    Methods
    -------
    run(x, theta) -> ndarray of shape (m,)
        One run at control input ``x`` of shape ``(p,)`` and parameters ``theta`` of shape
        ``(q,)``.
    run_batch(X, Theta) -> ndarray of shape (n, m)
        Optional: many runs at once, for vectorized simulators.
    """

    input_names: tuple[str, ...]
    parameter_names: tuple[str, ...]
    output_names: tuple[str, ...]
    output_coords: np.ndarray | None

    def run(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray: ...


@dataclass
class Prediction:
    """Predictive distribution at ``n`` points for ``m`` outputs.

    Attributes
    ----------
    mean : ndarray of shape (n, m)
    var : ndarray of shape (n, m)
        Marginal predictive variances.
    cov : ndarray of shape (m, n, n) or None
        Covariance across the ``n`` points, per output, when asked for.
    """

    mean: np.ndarray
    var: np.ndarray
    cov: np.ndarray | None = None

    @property
    def sd(self) -> np.ndarray:
        """Marginal predictive standard deviations, shape ``(n, m)``."""
        return np.sqrt(self.var)

    def __repr__(self) -> str:
        n, m = np.shape(self.mean)
        cov = "" if self.cov is None else ", with covariance"
        return (
            f"Prediction({n} points × {m} outputs{cov}; mean {np.nanmin(self.mean):.4g} to "
            f"{np.nanmax(self.mean):.4g}, sd {np.nanmin(self.sd):.3g} to {np.nanmax(self.sd):.3g})"
        )


@runtime_checkable
class Emulator(Protocol):
    """A statistical surrogate of a simulator, fitted on its runs.

    Inputs are ``(n, p + q)``: the control-input columns first, then the parameter columns.
    ``predict_torch`` is the batched, differentiable path the likelihood uses: for inputs
    ``(n_walkers, n_points, p + q)`` it returns the mean ``(n_walkers, n_points, m)`` and the
    predictive covariance ``(n_walkers, m, n_points, n_points)``. It may accept an optional
    ``outputs=`` (indices of the outputs wanted): the likelihood then asks only for the
    observed outputs and gets ``m = len(outputs)``; a plug-in without it is given the full
    prediction and sliced. It may also accept an optional ``weights=`` (an array
    ``(k, m)`` of nonnegative rows summing to one, given instead of ``outputs``): it then
    returns ``k`` outputs, the linear interpolations ``Σ_j a_ij η_j`` of its own, which is
    how the likelihood reaches observations between its output coordinates
    (``Campaign(coords=)``; :class:`emulators.BasisGPEmulator` interpolates its basis). A
    plug-in without it has its outputs' means and covariances interpolated
    (:mod:`calib._field_coords`).
    """

    def fit(self, inputs: np.ndarray, outputs: np.ndarray) -> Emulator: ...

    def predict(self, inputs: np.ndarray, full_cov: bool = False) -> Prediction: ...

    def predict_torch(self, inputs: Any) -> tuple[Any, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Emulator: ...


def is_emulator(obj: object) -> bool:
    """True when ``obj`` offers the emulator path used by the likelihood."""
    return callable(getattr(obj, "predict_torch", None))
