"""A study's data (calib/study.py): campaigns read from CSV or HDF5 files, and a simulator
with fixed parameters held at their values (what an emulator stands for)."""

from __future__ import annotations

import csv
import inspect
from pathlib import Path
from typing import Any

import numpy as np

from ._study_check import StudyError, check_table, one_line, real, toml_type, typed
from .campaign import Campaign

__all__ = ["FixedParameters", "read_campaign"]


# ---------------------------------------------------------------------- campaigns
def read_campaign(value: Any, where: str, base: Path, sim: Any) -> Campaign:
    """A campaign from ``{name, data, group, noise_sd, coords}``: ``data`` is a CSV file
    with a header row naming the simulator's inputs and outputs, or an HDF5 file with
    datasets ``x`` and ``y`` (in ``group``); ``noise_sd`` a number, or the column (dataset)
    that holds it; ``coords`` the output coordinates of ``y``'s columns
    (``Campaign(coords=)``): a list, or for HDF5 the dataset that holds them. With
    ``coords`` a CSV file's columns other than the inputs and ``noise_sd`` are ``y``'s, in
    the file's order."""
    keys = ("name", "data", "group", "noise_sd", "coords")
    d = check_table(value, where, keys, ("name", "data"))
    name = typed(d["name"], f"{where}.name", str, "a string")
    data = typed(d["data"], f"{where}.data", str, "a string (a file path)")
    path = base / data
    if not path.is_file():
        raise StudyError(f"{where}.data: file '{data}' not found")
    noise = d.get("noise_sd")
    if noise is not None and not isinstance(noise, str):
        if isinstance(noise, bool) or not isinstance(noise, (int, float)):
            raise StudyError(
                f"{where}.noise_sd: expected a number or a column name, got "
                f"{toml_type(noise)} {noise!r}"
            )
    coords = d.get("coords")
    suffix = path.suffix.lower()
    if coords is not None and not (isinstance(coords, str) and suffix in (".h5", ".hdf5")):
        coords = _coords(coords, f"{where}.coords")
    if suffix == ".csv":
        if "group" in d:
            raise StudyError(f"{where}.group: a CSV file has no groups (HDF5 files do)")
        x, y, sd = _read_csv(path, f"{where}.data", data, sim, noise, coords is not None)
    elif suffix in (".h5", ".hdf5"):
        group = typed(d.get("group", "/"), f"{where}.group", str, "a string")
        x, y, sd, coords = _read_h5(path, f"{where}.data", data, group, noise, coords)
    else:
        raise StudyError(f"{where}.data: '{data}': expected a .csv, .h5 or .hdf5 file")
    if noise is not None and not isinstance(noise, str):
        sd = float(noise)
    try:
        return Campaign(name, x=x, y=y, noise_sd=sd, coords=coords)
    except (ValueError, TypeError) as exc:
        raise StudyError(f"{where}: {one_line(exc)}") from None


def _coords(value: Any, where: str) -> np.ndarray:
    """``coords`` of a campaign table: numbers, or lists of numbers (one per coordinate
    dimension); its shape against ``y`` is the Campaign's to check."""
    items = typed(value, where, list, "an array of numbers (or of [s1, s2, ...])")
    flat = [v for row in items for v in (row if isinstance(row, list) else [row])]
    if not items or not all(real(v) for v in flat):
        raise StudyError(
            f"{where}: expected a non-empty array of finite numbers (or of arrays of them), "
            f"got {value!r}"
        )
    try:
        return np.array(items, dtype=float)
    except ValueError:  # ragged rows
        raise StudyError(f"{where}: rows of different lengths in {value!r}") from None


def _read_csv(
    path: Path, where: str, shown: str, sim: Any, noise: Any, own_coords: bool = False
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if len(rows) < 2:
        raise StudyError(f"{where}: '{shown}' needs a header row and at least one data row")
    header = [h.strip() for h in rows[0]]
    inputs, outputs = list(sim.input_names), list(sim.output_names)
    sd_col = noise if isinstance(noise, str) else None
    if own_coords:  # y's columns are the others, in the file's order (at coords)
        outputs = [h for h in header if h not in inputs and h != sd_col]
        if not outputs:
            raise StudyError(
                f"{where}: '{shown}' has no column for y besides the inputs {inputs}"
                + (f" and noise_sd {sd_col!r}" if sd_col else "")
            )
    known = set(inputs) | set(outputs) | ({sd_col} if sd_col else set())
    unknown = [h for h in header if h not in known]
    if unknown:
        raise StudyError(
            f"{where}: '{shown}' has column(s) {unknown} that are neither the simulator's "
            f"inputs {inputs} nor its outputs {outputs}"
            + (f" nor noise_sd {sd_col!r}" if sd_col else "")
        )
    missing = [n for n in inputs + ([sd_col] if sd_col else []) if n not in header]
    if missing or not any(o in header for o in outputs):
        missing = missing or outputs
        raise StudyError(f"{where}: '{shown}' lacks the column(s) {missing}")
    values = np.full((len(rows) - 1, len(header)), np.nan)
    for i, row in enumerate(rows[1:]):
        if len(row) != len(header):
            raise StudyError(
                f"{where}: '{shown}' line {i + 2} has {len(row)} values, the header {len(header)}"
            )
        for j, cell in enumerate(row):
            cell = cell.strip()
            if cell:  # an empty cell is a missing value
                try:
                    values[i, j] = float(cell)
                except ValueError:
                    raise StudyError(
                        f"{where}: '{shown}' line {i + 2}, column {header[j]!r}: {cell!r} is "
                        f"not a number"
                    ) from None

    def cols(names: list[str]) -> np.ndarray:
        return np.stack(
            [
                values[:, header.index(n)] if n in header else np.full(len(values), np.nan)
                for n in names
            ],
            axis=1,
        )

    x = cols(inputs) if inputs else None
    sd = cols([sd_col])[:, 0] if sd_col else None
    return x, cols(outputs), sd


def _read_h5(
    path: Path, where: str, shown: str, group: str, noise: Any, coords: Any = None
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None, Any]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if group not in f:
                raise StudyError(f"{where}: '{shown}' has no group {group!r}")
            g = f[group]
            if "y" not in g:
                raise StudyError(f"{where}: '{shown}' has no dataset 'y' in {group!r}")
            x = g["x"][()] if "x" in g else None
            sd = None
            if isinstance(noise, str):
                if noise not in g:
                    raise StudyError(f"{where}: '{shown}' has no dataset {noise!r} (noise_sd)")
                sd = g[noise][()]
            if isinstance(coords, str):
                if coords not in g:
                    raise StudyError(f"{where}: '{shown}' has no dataset {coords!r} (coords)")
                coords = g[coords][()]
            return x, g["y"][()], sd, coords
    except OSError as exc:
        raise StudyError(f"{where}: '{shown}' is not a readable HDF5 file ({exc})") from None


# ---------------------------------------------------------------------- fixed values
class FixedParameters:
    """A simulator with some parameters held at fixed values (``Parameter(value=)`` in
    emulator mode): its ``parameter_names`` are the others, and each run passes the fixed
    values on. Runs in batches, and enforces a timeout, exactly when the simulator does.

    Parameters
    ----------
    simulator : Simulator
    fixed : dict of str to float
        Parameter names of ``simulator`` and their values (``inf`` is a value).
    """

    def __init__(self, simulator: Any, fixed: dict[str, float]):
        names = list(simulator.parameter_names)
        self.simulator = simulator
        self.fixed = {n: float(v) for n, v in fixed.items()}
        self.input_names = tuple(simulator.input_names)
        self.parameter_names = tuple(n for n in names if n not in self.fixed)
        self.output_names = tuple(simulator.output_names)
        self.output_coords = getattr(simulator, "output_coords", None)
        self._free = [names.index(n) for n in self.parameter_names]
        self._at = [names.index(n) for n in self.fixed]
        self._q = len(names)
        # the run engine looks at run's signature (timeout=) and for run_batch
        takes_timeout = "timeout" in inspect.signature(simulator.run).parameters
        self.run = self._run_timeout if takes_timeout else self._run
        if callable(getattr(simulator, "run_batch", None)):
            self.run_batch = self._run_batch

    @property
    def identity(self) -> str:
        inner = getattr(self.simulator, "identity", None)
        name = type(self.simulator).__name__ + (f" ({inner})" if isinstance(inner, str) else "")
        return f"{name} with {self.fixed}"

    def _full(self, theta: np.ndarray) -> np.ndarray:
        theta = np.asarray(theta, dtype=float)
        out = np.empty(theta.shape[:-1] + (self._q,))
        out[..., self._free] = theta
        out[..., self._at] = list(self.fixed.values())
        return out

    def _run(self, x: np.ndarray, theta: np.ndarray) -> np.ndarray:
        return self.simulator.run(x, self._full(theta))

    def _run_timeout(self, x: np.ndarray, theta: np.ndarray, timeout: float | None = None):
        return self.simulator.run(x, self._full(theta), timeout=timeout)

    def _run_batch(self, X: np.ndarray, Theta: np.ndarray) -> np.ndarray:
        return self.simulator.run_batch(X, self._full(Theta))

    def __repr__(self) -> str:
        return f"FixedParameters({self.simulator!r}, {self.fixed})"
