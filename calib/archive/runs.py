"""The ``/runs`` group: the runs (:class:`~calib.runset.RunSet`) in the file, their HDF5
reader and writer, :func:`read_runs` (the file merged with its journal) and the crash-safe
writer :class:`RunArchive` used by :func:`calib.run_design`.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..runset import FINISHED, OK, PENDING, STATUSES, RunSet
from ._checksum import _dataset, carry_checked, create_checked, read_checked
from ._h5 import (
    _STR,
    SCHEMA_VERSION,
    ArchiveError,
    _check_meta,
    _check_writable,
    _open_h5,
    _strs,
    _write_meta,
    replace_atomically,
)
from ._journal import (
    _append,
    _decode_journal,
    _encode,
    _journal_path,
    _lock_writer,
    _unlock_writer,
)


class RunsRecord(RunSet):
    """A :class:`~calib.runset.RunSet` as :func:`read_runs` returns it.

    The same runs and arrays; two names keep the meaning they have always had in the
    archive's record: ``outputs`` is every run's row (the ``/runs/outputs`` dataset, NaN
    where a run is not ``"ok"``; :attr:`RunSet.outputs` has the successful rows only), and
    ``error`` is :attr:`RunSet.errors` (the ``/runs/error`` dataset).
    """

    @property
    def outputs(self) -> np.ndarray:
        """Outputs of every run, shape ``(n, m)`` (:attr:`all_outputs`)."""
        return self.all_outputs

    @property
    def error(self) -> np.ndarray:
        """Error text of each run (:attr:`errors`)."""
        return self.errors


def _apply(runs: RunSet, rec: dict[str, Any]) -> None:
    """Apply one journal record to ``runs``, unless the result it holds is newer."""
    i = int(rec["i"])
    n, m = runs.all_outputs.shape
    if not 0 <= i < n:
        raise ArchiveError(f"journal record for run {i} but the design has {n}")
    t = float(rec["t"])
    if math.isfinite(runs.finished_at[i]) and runs.finished_at[i] > t:
        return
    y = rec.get("y")
    if rec["status"] not in FINISHED:
        raise ArchiveError(
            f"journal record for run {i} has status {rec['status']!r}, not one of {FINISHED}"
        )
    if rec["status"] == OK and (y is None or len(y) != m):
        raise ArchiveError(f"journal record for run {i} has {y!r} outputs, expected {m}")
    if rec["status"] == OK and not np.isfinite(np.asarray(y, dtype=float)).all():
        raise ArchiveError(f"journal record for run {i} is 'ok' with outputs {y!r} (NaN or inf)")
    runs._record(
        i,
        str(rec["status"]),
        y,
        str(rec.get("error", "")),
        float(rec.get("elapsed", math.nan)),
        int(rec.get("attempts", 1)),
        t,
    )


def _write_runs(f: h5py.File, r: RunSet) -> None:
    if "runs" in f:
        del f["runs"]
    g = f.create_group("runs")
    g.attrs["design_fingerprint"] = r.fingerprint
    g.attrs["method"] = r.method
    if r.seed is not None:
        g.attrs["seed"] = int(r.seed)
    g.attrs["simulator"] = r.simulator
    g.attrs["input_names"] = np.array(r.input_names, dtype=_STR)
    g.attrs["parameter_names"] = np.array(r.parameter_names, dtype=_STR)
    g.attrs["output_names"] = np.array(r.output_names, dtype=_STR)
    create_checked(g, "design", r.design.astype("<f8"))
    create_checked(g, "outputs", r.all_outputs.astype("<f8"))
    create_checked(g, "status", np.array(_strs(r.status), dtype=_STR))
    create_checked(g, "error", np.array(_strs(r.errors), dtype=_STR))
    create_checked(g, "attempts", r.attempts.astype("<i4"))
    create_checked(g, "elapsed", r.elapsed.astype("<f8"))
    create_checked(g, "finished_at", r.finished_at.astype("<f8"))


def _read_runs_group(f: h5py.File, path: Path, cls: type[RunSet] = RunSet) -> RunSet | None:
    if "runs" not in f:
        return None
    g = f["runs"]
    if not isinstance(g, h5py.Group):
        raise ArchiveError(f"archive '{path}': /runs should be a group")

    def text(key: str) -> np.ndarray:
        if key not in g or not isinstance(g[key], h5py.Dataset):
            raise KeyError(key)
        value = read_checked(g[key], path)
        if g[key].dtype.kind not in "OSU" or np.ndim(value) != 1:
            raise ArchiveError(f"archive '{path}': /runs/{key} should be a list of strings")
        return np.array(_strs(value), dtype=object)

    try:
        a = g.attrs
        runs = cls(
            tuple(_strs(a["input_names"])),
            tuple(_strs(a["parameter_names"])),
            tuple(_strs(a["output_names"])),
            _dataset(g, "design", path, 2),
            _dataset(g, "outputs", path, 2),
            text("status"),
            text("error"),
            _dataset(g, "attempts", path, 1, "i").astype(np.int32),
            _dataset(g, "elapsed", path, 1),
            _dataset(g, "finished_at", path, 1),
            str(a["design_fingerprint"]),
            str(a.get("method", "array")),
            int(a["seed"]) if "seed" in a else None,
            str(a.get("simulator", "")),
        )
    except KeyError as exc:
        raise ArchiveError(f"archive '{path}': /runs is incomplete, missing {exc}") from None
    _check_runs(runs, path)
    return runs


def _check_runs(r: RunSet, path: Path) -> None:
    """Refuse a ``/runs`` that the run engine cannot have written (issue 13, item 3).

    What is impossible: a status outside :data:`~calib.runset.STATUSES`; a design that is
    not finite (a design refuses NaN and inf); an ``ok`` run with a NaN or inf output (the
    worker classifies those ``invalid``); a run that is not ``ok`` with an output that is
    not NaN (only an ``ok`` run's outputs are recorded); a finished run with no attempt or
    no finish time; a pending run with either; a negative or infinite ``elapsed``. A large
    finite output of an ``ok`` run is possible (a simulator may return it) and is kept.
    """
    n, m = len(r.status), len(r.output_names)

    def refuse(dataset: str, i: int, what: str) -> None:
        raise ArchiveError(
            f"archive '{path}': /runs/{dataset} of run {i} is {what}; the run engine never "
            f"writes that: the file is damaged or was edited"
        )

    shapes = {
        "design": (r.design.shape, (n, len(r.names))),
        "outputs": (r.all_outputs.shape, (n, m)),
        "error": (r.errors.shape, (n,)),
        "attempts": (r.attempts.shape, (n,)),
        "elapsed": (r.elapsed.shape, (n,)),
        "finished_at": (r.finished_at.shape, (n,)),
    }
    for name, (got, want) in shapes.items():
        if got != want:
            raise ArchiveError(
                f"archive '{path}': /runs/{name} has shape {got}, expected {want} ({n} runs "
                f"in /runs/status, columns {list(r.names)}, outputs {list(r.output_names)})"
            )
    known = np.isin(r.status, STATUSES)
    if not known.all():
        i = int(np.flatnonzero(~known)[0])
        refuse("status", i, f"{r.status[i]!r}, not one of {list(STATUSES)}")
    if not np.isfinite(r.design).all():
        i = int(np.flatnonzero(~np.isfinite(r.design).all(axis=1))[0])
        refuse("design", i, f"{r.design[i].tolist()} (NaN or inf)")
    ok = r.status == OK
    bad = ok & ~np.isfinite(r.all_outputs).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        refuse("outputs", i, f"{r.all_outputs[i].tolist()} (NaN or inf) with status 'ok'")
    bad = ~ok & ~np.isnan(r.all_outputs).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        refuse("outputs", i, f"{r.all_outputs[i].tolist()} with status {r.status[i]!r}")
    pending = r.status == PENDING
    for name, values, wrong in (
        ("attempts", r.attempts, (r.attempts < 0) | (pending & (r.attempts != 0))),
        ("attempts", r.attempts, ~pending & (r.attempts < 1)),
        ("finished_at", r.finished_at, ~pending & ~np.isfinite(r.finished_at)),
        ("finished_at", r.finished_at, pending & ~np.isnan(r.finished_at)),
        ("elapsed", r.elapsed, (r.elapsed < 0) | np.isinf(r.elapsed)),
    ):
        if wrong.any():
            i = int(np.flatnonzero(wrong)[0])
            refuse(name, i, f"{values[i].item()!r} with status {r.status[i]!r}")


def read_runs(path: str | os.PathLike) -> RunsRecord:
    """The runs of an archive, including those still only in its journal.

    Safe to call while another process is running the design.

    Raises
    ------
    ArchiveError
        If the file does not exist, is not an archive, or has no ``/runs``.
    """
    path = Path(path)
    jpath = _journal_path(path)
    # journal first, then the file: a fold between the two reads moves records from the
    # journal into the file, so the union read this way misses nothing
    data = jpath.read_bytes() if jpath.exists() else b""
    if not path.exists():
        raise ArchiveError(f"archive: no such file '{path}'")
    with _open_h5(path) as f:
        _check_meta(f, path)
        runs = _read_runs_group(f, path, RunsRecord)
    if runs is None:
        raise ArchiveError(f"archive '{path}' has no /runs group (no design was run into it)")
    header, records = _decode_journal(data, jpath)
    if header is not None and header.get("design") == runs.fingerprint:
        for rec in records:
            _apply(runs, rec)
    return runs


# ---------------------------------------------------------------------- the writer
class RunArchive:
    """Writer of the ``/runs`` of one archive, used by :func:`calib.run_design`.

    Parameters
    ----------
    path : str or path-like
        The HDF5 file (created if missing; other groups in it are kept).
    fsync : bool
        ``fsync`` every journal line. The journal survives a killed process either way
        (the data is in the kernel after ``write``); ``fsync`` also covers a power cut.
    fold_every : float or None
        Seconds between folds of the journal into the HDF5 file while runs arrive
        (``None``: only when the design ends).

    Notes
    -----
    Use as a context manager, or call :meth:`close`; it takes an exclusive lock on the
    journal for its lifetime.
    """

    def __init__(
        self, path: str | os.PathLike, fsync: bool = True, fold_every: float | None = 30.0
    ):
        self.path = Path(path)
        self.journal_path = _journal_path(self.path)
        self.fsync = bool(fsync)
        if fold_every is not None and not fold_every > 0:
            raise ValueError(f"fold_every: expected seconds > 0 or None, got {fold_every!r}")
        self.fold_every = fold_every
        self.runs: RunSet | None = None
        self._fd: int | None = None
        self._pending = 0
        self._last_fold = 0.0
        # the groups this writer does not own, checked and held in memory from open() on: a
        # fold copies them from here and never reopens the file, which another program's
        # write handle would make HDF5 refuse (issue 13, item 12)
        self._carried: h5py.File | None = None

    # -- lifecycle -------------------------------------------------------------
    def open(self, runs: RunSet) -> RunSet:
        """Open for ``runs``' design: create the file, or check and resume it.

        Returns the stored state (the given one for a new archive), of ``runs``' class.

        Raises
        ------
        ArchiveError
            If the file holds a different design or columns, or is locked by another
            process.
        """
        _check_writable(self.path)
        self._fd = _lock_writer(self.path)
        try:
            stored = None
            if self.path.exists():
                with _open_h5(self.path) as f:
                    _check_meta(f, self.path)
                    stored = _read_runs_group(f, self.path, type(runs))
                    self._carried = carry_checked(f, self.path, ("runs",))
            if stored is None:
                self.runs = runs
            else:
                self._check_same(stored, runs)
                self.runs = stored
                header, records = _decode_journal(self._read_journal(), self.journal_path)
                if header is not None and header.get("design") == stored.fingerprint:
                    for rec in records:
                        _apply(stored, rec)
            # a fresh, complete file and an empty journal before any run starts
            self.fold(force=True)
        except BaseException:
            self.close(fold=False)
            raise
        return self.runs

    @staticmethod
    def _check_same(stored: RunSet, new: RunSet) -> None:
        cols_s = stored.input_names + stored.parameter_names
        cols_n = new.input_names + new.parameter_names
        if cols_s != cols_n or len(stored.input_names) != len(new.input_names):
            raise ArchiveError(
                f"archive holds runs with columns {cols_s}, but the design has {cols_n}; "
                f"use another archive file"
            )
        if stored.output_names != new.output_names:
            raise ArchiveError(
                f"archive holds runs with outputs {stored.output_names}, but the simulator "
                f"has {new.output_names}; use another archive file"
            )
        if stored.fingerprint != new.fingerprint:
            raise ArchiveError(
                f"archive holds a different design ({stored.design.shape[0]} runs, "
                f"fingerprint {stored.fingerprint[:12]}) than the one given "
                f"({new.design.shape[0]} runs, fingerprint {new.fingerprint[:12]}); "
                f"use another archive file to run a new design"
            )

    def _read_journal(self) -> bytes:
        assert self._fd is not None
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self._fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self, fold: bool = True) -> None:
        """Fold what is left of the journal, then release the lock.

        Raises
        ------
        ArchiveError
            If the last fold fails (the disk, the directory): every finished run is still
            in the journal, and the message says where and how to get them.
        """
        if self._fd is None:
            return
        try:
            if fold and self.runs is not None and self._pending:
                try:
                    self.fold(force=True)
                except ArchiveError as exc:
                    done = int(np.isin(self.runs.status, FINISHED).sum())
                    raise ArchiveError(
                        f"{exc}. No run is lost: the {done} finished runs are kept in the "
                        f"journal '{self.journal_path}' beside it, which read_runs"
                        f"('{self.path}') and RunSet.from_archive read with the file; "
                        f"run_design with the same design and archive runs none of them "
                        f"again and folds them into the file (do not delete the journal)"
                    ) from exc
        finally:
            fd, self._fd = self._fd, None
            _unlock_writer(fd, self.path)  # releases the flock
            if self._carried is not None:
                self._carried.close()
                self._carried = None

    def __enter__(self) -> RunArchive:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        _append(self._fd, data, self.fsync)

    def record(
        self,
        index: int,
        status: str,
        output: np.ndarray | None,
        error: str,
        elapsed: float,
        attempts: int,
        finished_at: float,
    ) -> None:
        """Journal the outcome of one run (durable when this returns), then set it in
        :attr:`runs`."""
        if self._fd is None or self.runs is None:
            raise ArchiveError(f"archive '{self.path}' is not open for writing")
        if status not in FINISHED:
            raise ValueError(f"status: expected one of {FINISHED}, got {status!r}")
        rec = {
            "i": int(index),
            "status": status,
            "y": None if output is None else [float(v) for v in np.ravel(output)],
            "error": error,
            "elapsed": float(elapsed),
            "attempts": int(attempts),
            "t": float(finished_at),
        }
        self._write(_encode(rec))
        _apply(self.runs, rec)
        self._pending += 1
        if self.fold_every is not None and finished_at - self._last_fold >= self.fold_every:
            try:
                self.fold()
            except ArchiveError:
                # the run is durable in the journal already: the design goes on, the next
                # fold is tried after fold_every, and close() reports one that still fails
                self._last_fold = time.time()

    def fold(self, force: bool = False) -> None:
        """Write the runs into a new HDF5 file, move it into place, empty the journal."""
        if self._fd is None or self.runs is None:
            raise ArchiveError(f"archive '{self.path}' is not open for writing")
        if not (force or self._pending):
            return
        runs = self.runs

        def build(dst: h5py.File) -> None:
            src = self._carried
            if src is not None:
                # carry over everything this writer does not own, as it was at open()
                for key, value in src.attrs.items():
                    dst.attrs[key] = value
                for name in src:
                    src.copy(src[name], dst, name=name)
            _write_meta(dst)
            _write_runs(dst, runs)

        replace_atomically(self.path, build)
        # only now is the journal redundant; a kill before this line replays it harmlessly
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._write(
            _encode({"kind": "header", "schema": SCHEMA_VERSION, "design": self.runs.fingerprint})
        )
        self._pending = 0
        self._last_fold = time.time()
