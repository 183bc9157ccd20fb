"""The runs of a design: the run statuses and :class:`RunSet`, every run with its outcome.

One class for the runs wherever they are held: :func:`calib.run_design` fills and returns
it, the archive (:mod:`calib.archive.runs`) stores it as ``/runs`` and reads it back. This
module sits below both (numpy only), so that the archive never imports the run engine.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

__all__ = ["STATUSES", "RunSet"]

#: The status of a run: not run yet, finished, raised / exited non-zero, ran past the
#: timeout, returned NaN or the wrong shape or unparsable output.
STATUSES = ("pending", "ok", "error", "timeout", "invalid")
PENDING, OK, ERROR, TIMEOUT, INVALID = STATUSES
#: The statuses of a run that has finished (successfully or not).
FINISHED = STATUSES[1:]
#: The statuses of a run that finished without a result.
FAILED = STATUSES[2:]


@dataclass(eq=False)
class RunSet:
    """The outcome of a design: every run with its status, the successful ones as arrays.

    Attributes
    ----------
    input_names, parameter_names, output_names : tuple of str
    design : ndarray of shape (n, p + q)
        Every run of the design, finished or not.
    all_outputs : ndarray of shape (n, m)
        NaN where a run is not ``"ok"``.
    status : ndarray of str, shape (n,)
        One of :data:`STATUSES`: ``"pending"``, ``"ok"``, ``"error"``, ``"timeout"``,
        ``"invalid"``.
    errors : ndarray of str, shape (n,)
        Error text of each failed run (``""`` for the others).
    attempts : ndarray of int, shape (n,)
    elapsed : ndarray of float, shape (n,)
        Seconds the last attempt of each run took (NaN if none).
    finished_at : ndarray of float, shape (n,)
        Unix time the last attempt of each run ended (NaN if none).
    fingerprint, method, seed, simulator
        The design's fingerprint, how it was made and its seed, and the simulator's
        identity (what the archive checks a resumed design against).
    """

    input_names: tuple[str, ...]
    parameter_names: tuple[str, ...]
    output_names: tuple[str, ...]
    design: np.ndarray
    all_outputs: np.ndarray
    status: np.ndarray
    errors: np.ndarray
    attempts: np.ndarray
    elapsed: np.ndarray
    finished_at: np.ndarray | None = None
    fingerprint: str = ""
    method: str = "array"
    seed: int | None = None
    simulator: str = ""

    def __post_init__(self) -> None:
        if self.finished_at is None:
            self.finished_at = np.full(self.design.shape[0], np.nan)

    @classmethod
    def new(
        cls,
        input_names: tuple[str, ...],
        parameter_names: tuple[str, ...],
        output_names: tuple[str, ...],
        design: np.ndarray,
        fingerprint: str,
        method: str = "array",
        seed: int | None = None,
        simulator: str = "",
    ) -> RunSet:
        """Every run of ``design`` pending."""
        n, m = design.shape[0], len(output_names)
        return cls(
            tuple(input_names),
            tuple(parameter_names),
            tuple(output_names),
            np.array(design, dtype=float),
            np.full((n, m), np.nan),
            np.array([PENDING] * n, dtype=object),
            np.array([""] * n, dtype=object),
            np.zeros(n, dtype=np.int32),
            np.full(n, np.nan),
            np.full(n, np.nan),
            fingerprint,
            method,
            seed,
            simulator,
        )

    @classmethod
    def from_archive(cls, path: str | os.PathLike) -> RunSet:
        """The runs stored in an archive (journal included)."""
        # the archive sits above this module (it stores RunSets): imported when used
        from .archive.runs import read_runs

        return read_runs(path).copy()

    def copy(self) -> RunSet:
        """A plain :class:`RunSet` (whatever subclass this is) with copies of the arrays."""
        return RunSet(
            **{
                f.name: (v.copy() if isinstance(v := getattr(self, f.name), np.ndarray) else v)
                for f in fields(RunSet)
            }
        )

    def _record(
        self,
        index: int,
        status: str,
        output: Any,
        error: str,
        elapsed: float,
        attempts: int,
        finished_at: float,
    ) -> None:
        """Set the outcome of run ``index`` (its last attempt); the arguments of
        :meth:`calib.archive.RunArchive.record`, which journals them and then calls this."""
        self.all_outputs[index] = np.asarray(output, dtype=float) if status == OK else np.nan
        self.status[index] = str(status)
        self.errors[index] = str(error)
        self.attempts[index] = int(attempts)
        self.elapsed[index] = float(elapsed)
        self.finished_at[index] = float(finished_at)

    @property
    def names(self) -> tuple[str, ...]:
        """Column names of :attr:`inputs`: control inputs then parameters."""
        return self.input_names + self.parameter_names

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask ``(n,)`` of the successful runs."""
        return self.status == OK

    @property
    def inputs(self) -> np.ndarray:
        """Inputs of the successful runs, shape ``(n_ok, p + q)``: x columns then θ."""
        return self.design[self.ok]

    @property
    def outputs(self) -> np.ndarray:
        """Outputs of the successful runs, shape ``(n_ok, m)``."""
        return self.all_outputs[self.ok]

    @property
    def x(self) -> np.ndarray:
        """Control inputs of the successful runs, shape ``(n_ok, p)``."""
        return self.inputs[:, : len(self.input_names)]

    @property
    def theta(self) -> np.ndarray:
        """Parameters of the successful runs, shape ``(n_ok, q)``."""
        return self.inputs[:, len(self.input_names) :]

    @property
    def counts(self) -> dict[str, int]:
        """Number of runs per status (every status listed, zeros included)."""
        c = Counter(self.status.tolist())
        # finished statuses first, as they have always been listed
        return {s: c.get(s, 0) for s in (*FINISHED, PENDING)}

    @property
    def n_ok(self) -> int:
        return int(self.ok.sum())

    @property
    def n_failed(self) -> int:
        return int(np.isin(self.status, FAILED).sum())

    @property
    def complete(self) -> bool:
        """True when no run is pending (failed runs count as done)."""
        return not (self.status == PENDING).any()

    def failures(self) -> list[tuple[int, str, str]]:
        """``(index, status, error text)`` of each failed run."""
        bad = np.flatnonzero(np.isin(self.status, FAILED))
        return [(int(i), str(self.status[i]), str(self.errors[i])) for i in bad]

    def __len__(self) -> int:
        return self.design.shape[0]

    def __repr__(self) -> str:
        parts = ", ".join(f"{v} {k}" for k, v in self.counts.items() if v)
        return f"RunSet({len(self)} runs: {parts or 'none'}; outputs {self.output_names})"
