"""The study archive: one self-describing HDF5 file per study, and its write path.

This module owns the layout of the file (docs/archive.md describes it field by field).
Schema version :data:`SCHEMA_VERSION`. Groups written so far:

- ``/meta``: attributes ``format``, ``schema_version``, ``created``, ``calib_version``,
  ``versions`` (JSON of package versions);
- ``/runs``: the design and the outcome of every run (``design``, ``outputs``, ``status``,
  ``error``, ``attempts``, ``elapsed``, ``finished_at`` and the column names as
  attributes).

Crash safety
------------
An HDF5 file being written when its process is killed can be left unreadable, so the
HDF5 file is never modified in place while runs arrive:

1. every finished run is appended as one line to a *journal* beside the file
   (``<archive>.journal``): JSON of the run plus a CRC-32 of that JSON, written, flushed
   and ``fsync``-ed before the next result is taken;
2. from time to time and when the design ends, the journal is *folded*: a complete new
   HDF5 file is written beside the old one (``<archive>.tmp``), fsync-ed, and moved over it
   with :func:`os.replace` (atomic on POSIX); only then is the journal emptied.

A kill at any moment therefore leaves the last complete HDF5 file plus a journal whose
lines are all whole except possibly the last, which its CRC rejects. :func:`read_runs`
merges both, so every run that finished before the kill is read back; replaying a line
already folded is harmless because a record carries its finish time and the newer value
wins. One process at a time may write an archive (an ``flock`` on the journal).

The chain of a study has its own journal, ``<archive>.chainlog``: a checkpoint appends the
new steps to it as one binary record (CRC-32 checked), and the HDF5 file is rewritten only
when the journal would hold as many steps as the file (so the rewrites happen at doubling
sizes and the total cost of checkpointing is linear in the chain length), and at the end.
Every reader of the chain applies the journal's whole records after the file's chain
(:func:`_read_chain`).

Nothing in the file is pickled: strings, integer and float arrays only.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import io
import json
import math
import os
import platform
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = [
    "ArchiveError",
    "SCHEMA_VERSION",
    "STATUSES",
    "RunsRecord",
    "RunArchive",
    "read_runs",
    "read_meta",
]

#: Version of the file layout; bumped when a reader of an older version could misread it.
SCHEMA_VERSION = 1
FORMAT = "calib study archive"

#: The status of a run: not run yet, finished, raised / exited non-zero, ran past the
#: timeout, returned NaN or the wrong shape or unparsable output.
STATUSES = ("pending", "ok", "error", "timeout", "invalid")

_STR = h5py.string_dtype(encoding="utf-8")


class ArchiveError(Exception):
    """The archive cannot be read or written as asked (corrupt, wrong design, locked)."""


@dataclass
class RunsRecord:
    """The ``/runs`` group of an archive, in memory.

    Attributes
    ----------
    design : ndarray of shape (n, p + q)
    outputs : ndarray of shape (n, m)
        NaN where a run is not ``"ok"``.
    status : ndarray of str, shape (n,)
    error : ndarray of str, shape (n,)
    attempts : ndarray of int, shape (n,)
    elapsed : ndarray of float, shape (n,)
        Seconds the last attempt took (NaN if none).
    finished_at : ndarray of float, shape (n,)
        Unix time of the last attempt's end (NaN if none).
    """

    input_names: tuple[str, ...]
    parameter_names: tuple[str, ...]
    output_names: tuple[str, ...]
    design: np.ndarray
    outputs: np.ndarray
    status: np.ndarray
    error: np.ndarray
    attempts: np.ndarray
    elapsed: np.ndarray
    finished_at: np.ndarray
    fingerprint: str
    method: str = "array"
    seed: int | None = None
    simulator: str = ""

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
    ) -> RunsRecord:
        n, m = design.shape[0], len(output_names)
        return cls(
            tuple(input_names),
            tuple(parameter_names),
            tuple(output_names),
            np.array(design, dtype=float),
            np.full((n, m), np.nan),
            np.array(["pending"] * n, dtype=object),
            np.array([""] * n, dtype=object),
            np.zeros(n, dtype=np.int32),
            np.full(n, np.nan),
            np.full(n, np.nan),
            fingerprint,
            method,
            seed,
            simulator,
        )

    def apply(self, rec: dict[str, Any]) -> None:
        """Apply one journal record, unless the stored result is newer."""
        i = int(rec["i"])
        if not 0 <= i < self.design.shape[0]:
            raise ArchiveError(f"journal record for run {i} but the design has {len(self.design)}")
        t = float(rec["t"])
        if math.isfinite(self.finished_at[i]) and self.finished_at[i] > t:
            return
        m = self.outputs.shape[1]
        y = rec.get("y")
        if rec["status"] == "ok":
            if y is None or len(y) != m:
                raise ArchiveError(f"journal record for run {i} has {y!r} outputs, expected {m}")
            self.outputs[i] = np.asarray(y, dtype=float)
        else:
            self.outputs[i] = np.nan
        self.status[i] = str(rec["status"])
        self.error[i] = str(rec.get("error", ""))
        self.attempts[i] = int(rec.get("attempts", 1))
        self.elapsed[i] = float(rec.get("elapsed", math.nan))
        self.finished_at[i] = t


# ---------------------------------------------------------------------- helpers
def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    import scipy

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
    }


def _calib_version() -> str:
    try:
        from importlib.metadata import version

        return version("calib")
    except Exception:  # noqa: BLE001 - a source checkout without metadata still writes
        return "unknown"


def _fsync_dir(path: Path) -> None:
    # the rename itself must reach the disk, not only the file's data
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _strs(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _open_h5(path: Path, mode: str = "r") -> h5py.File:
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise ArchiveError(f"archive '{path}' cannot be opened as HDF5: {exc}") from None


def _check_meta(f: h5py.File, path: Path) -> None:
    if "meta" not in f:
        return
    version = int(f["meta"].attrs.get("schema_version", SCHEMA_VERSION))
    if version > SCHEMA_VERSION:
        raise ArchiveError(
            f"archive '{path}' has schema version {version}; this calib reads up to "
            f"{SCHEMA_VERSION}: upgrade calib"
        )


def _write_meta(f: h5py.File) -> None:
    g = f.require_group("meta")
    g.attrs["format"] = FORMAT
    g.attrs["schema_version"] = SCHEMA_VERSION
    if "created" not in g.attrs:
        g.attrs["created"] = _now_iso()
    g.attrs["calib_version"] = _calib_version()
    g.attrs["versions"] = json.dumps(_versions(), sort_keys=True)


def _write_runs(f: h5py.File, r: RunsRecord) -> None:
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
    g.create_dataset("design", data=r.design.astype("<f8"))
    g.create_dataset("outputs", data=r.outputs.astype("<f8"))
    g.create_dataset("status", data=np.array(_strs(r.status), dtype=_STR))
    g.create_dataset("error", data=np.array(_strs(r.error), dtype=_STR))
    g.create_dataset("attempts", data=r.attempts.astype("<i4"))
    g.create_dataset("elapsed", data=r.elapsed.astype("<f8"))
    g.create_dataset("finished_at", data=r.finished_at.astype("<f8"))


def _read_runs_group(f: h5py.File, path: Path) -> RunsRecord | None:
    if "runs" not in f:
        return None
    g = f["runs"]
    try:
        a = g.attrs
        return RunsRecord(
            tuple(_strs(a["input_names"])),
            tuple(_strs(a["parameter_names"])),
            tuple(_strs(a["output_names"])),
            g["design"][()],
            g["outputs"][()],
            np.array(_strs(g["status"][()]), dtype=object),
            np.array(_strs(g["error"][()]), dtype=object),
            g["attempts"][()].astype(np.int32),
            g["elapsed"][()],
            g["finished_at"][()],
            str(a["design_fingerprint"]),
            str(a.get("method", "array")),
            int(a["seed"]) if "seed" in a else None,
            str(a.get("simulator", "")),
        )
    except KeyError as exc:
        raise ArchiveError(f"archive '{path}': /runs is incomplete, missing {exc}") from None


def _encode(obj: dict[str, Any]) -> bytes:
    payload = json.dumps(obj, separators=(",", ":"), allow_nan=True)
    return f"{payload}\t{zlib.crc32(payload.encode()):08x}\n".encode()


def _decode_journal(data: bytes, path: Path) -> tuple[dict | None, list[dict]]:
    """Header and records of a journal; a torn last line is dropped, others must check."""
    lines = data.split(b"\n")
    # the text after the last newline is an unfinished write (the process was killed)
    complete = lines[:-1]
    header, records = None, []
    for k, raw in enumerate(complete):
        try:
            payload, crc = raw.decode().rsplit("\t", 1)
            ok = int(crc, 16) == zlib.crc32(payload.encode())
            obj = json.loads(payload) if ok else None
        except (ValueError, UnicodeDecodeError):
            ok, obj = False, None
        if not ok:
            raise ArchiveError(f"journal '{path}' is corrupt at line {k + 1}")
        if obj.get("kind") == "header":
            header = obj
        else:
            records.append(obj)
    return header, records


#: The writer locks this process holds: descriptor -> (st_dev, st_ino) of the journal.
_WRITER_LOCKS: dict[int, tuple[int, int]] = {}


def _lock_writer(path: Path) -> int:
    """Open the runs journal of ``path`` and take its exclusive lock: the one writer lock of
    an archive, held by the run engine and the chain writer alike. Returns the descriptor;
    release it with :func:`_unlock_writer`.

    The lock belongs to this process alone: a child made by ``fork`` (a process-pool
    worker) closes its copy at once (:func:`_drop_inherited_locks`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    jpath = _journal_path(path)
    # not inheritable across exec (Python's default, O_CLOEXEC); fork is handled below
    fd = os.open(jpath, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ArchiveError(
            f"archive '{path}' is being written by another process (its journal "
            f"'{jpath}' is locked)"
        ) from None
    st = os.fstat(fd)
    _WRITER_LOCKS[fd] = (st.st_dev, st.st_ino)
    return fd


def _unlock_writer(fd: int) -> None:
    """Release a lock taken by :func:`_lock_writer` (closing its descriptor).

    A no-op in a forked child, whose copy was already closed at the fork."""
    if _WRITER_LOCKS.pop(fd, None) is not None:
        os.close(fd)


def _drop_inherited_locks() -> None:
    """Close, in a child just made by ``fork``, the writer locks it inherited.

    An ``flock`` belongs to the open file description, which ``fork`` shares: a worker
    that kept its copy would hold the archive's lock after its driver was killed, and a
    resume would fail until the worker was found and killed by hand. Closing the copy
    leaves the parent's lock in place (only ``LOCK_UN`` or the last close releases it).
    A descriptor that no longer refers to its journal (closed by hand and reused) is left
    alone."""
    for fd, ident in list(_WRITER_LOCKS.items()):
        with contextlib.suppress(OSError):
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == ident:
                os.close(fd)
    _WRITER_LOCKS.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


def _journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


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
        runs = _read_runs_group(f, path)
    if runs is None:
        raise ArchiveError(f"archive '{path}' has no /runs group (no design was run into it)")
    header, records = _decode_journal(data, jpath)
    if header is not None and header.get("design") == runs.fingerprint:
        for rec in records:
            runs.apply(rec)
    return runs


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The attributes of ``/meta`` as a dict (``versions`` decoded from JSON)."""
    path = Path(path)
    with _open_h5(path) as f:
        _check_meta(f, path)
        if "meta" not in f:
            raise ArchiveError(f"archive '{path}' has no /meta group")
        meta = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["meta"].attrs.items()}
    if "versions" in meta:
        meta["versions"] = json.loads(meta["versions"])
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in meta.items()}


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
        self.runs: RunsRecord | None = None
        self._fd: int | None = None
        self._pending = 0
        self._last_fold = 0.0

    # -- lifecycle -------------------------------------------------------------
    def open(self, runs: RunsRecord) -> RunsRecord:
        """Open for ``runs``' design: create the file, or check and resume it.

        Returns the stored state (the given one for a new archive).

        Raises
        ------
        ArchiveError
            If the file holds a different design or columns, or is locked by another
            process.
        """
        self._fd = _lock_writer(self.path)
        try:
            stored = None
            if self.path.exists():
                with _open_h5(self.path) as f:
                    _check_meta(f, self.path)
                    stored = _read_runs_group(f, self.path)
            if stored is None:
                self.runs = runs
            else:
                self._check_same(stored, runs)
                self.runs = stored
                header, records = _decode_journal(self._read_journal(), self.journal_path)
                if header is not None and header.get("design") == stored.fingerprint:
                    for rec in records:
                        stored.apply(rec)
            # a fresh, complete file and an empty journal before any run starts
            self.fold(force=True)
        except BaseException:
            self.close(fold=False)
            raise
        return self.runs

    @staticmethod
    def _check_same(stored: RunsRecord, new: RunsRecord) -> None:
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
        """Fold what is left of the journal, then release the lock."""
        if self._fd is None:
            return
        try:
            if fold and self.runs is not None and self._pending:
                self.fold(force=True)
        finally:
            fd, self._fd = self._fd, None
            _unlock_writer(fd)  # releases the flock

    def __enter__(self) -> RunArchive:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if self.fsync:
            os.fsync(self._fd)

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
        """Journal the outcome of one run (durable when this returns)."""
        if self._fd is None or self.runs is None:
            raise ArchiveError(f"archive '{self.path}' is not open for writing")
        if status not in STATUSES[1:]:
            raise ValueError(f"status: expected one of {STATUSES[1:]}, got {status!r}")
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
        self.runs.apply(rec)
        self._pending += 1
        if self.fold_every is not None and finished_at - self._last_fold >= self.fold_every:
            self.fold()

    def fold(self, force: bool = False) -> None:
        """Write the runs into a new HDF5 file, move it into place, empty the journal."""
        if self._fd is None or self.runs is None:
            raise ArchiveError(f"archive '{self.path}' is not open for writing")
        if not (force or self._pending):
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # left by a kill during an earlier fold
        with h5py.File(tmp, "w") as dst:
            if self.path.exists():
                # carry over everything this writer does not own, as it is
                with _open_h5(self.path) as src:
                    for key, value in src.attrs.items():
                        dst.attrs[key] = value
                    for name in src:
                        if name != "runs":
                            src.copy(src[name], dst, name=name)
            _write_meta(dst)
            _write_runs(dst, self.runs)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        # only now is the journal redundant; a kill before this line replays it harmlessly
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._write(
            _encode({"kind": "header", "schema": SCHEMA_VERSION, "design": self.runs.fingerprint})
        )
        self._pending = 0
        self._last_fold = time.time()


# ====================================================================== the study
# /meta (provenance), /simulator, /emulator, /campaigns, /chain and /posterior, written by
# Calibrator.sample(archive=...) through StudyWriter and read back by load().

#: The groups a study writer owns; every other group (``/runs``) is carried over unchanged.
_STUDY_GROUPS = ("simulator", "emulator", "campaigns", "chain", "posterior")
_RNG_WORDS = 624  # MT19937 key length


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


def _prior_dict(prior: Any) -> dict[str, Any] | None:
    return None if prior is None else prior.to_dict()


def _emulator_plugin(obj: Any) -> str | None:
    """The ``calib.emulators`` entry-point name registered for ``obj``'s class."""
    from . import plugins

    target = f"{type(obj).__module__}:{type(obj).__qualname__}"
    short = f"{type(obj).__module__.split('.')[0]}:{type(obj).__qualname__}"
    for name, value in plugins.list("calib.emulators").items():
        if value in (target, short):
            return name
    return None


def configuration(calibrator: Any, sample: dict[str, Any] | None = None) -> dict[str, Any]:
    """The calibration problem as plain JSON-able data (what ``/meta/configuration`` holds).

    The campaigns' arrays are in ``/campaigns``; the configuration lists their names only.
    """
    from .interfaces import is_emulator

    model = calibrator.model
    hyper = {
        name: {k: _prior_dict(v) for k, v in hp.items()}
        for name, hp in getattr(model, "hyperpriors", {}).items()
    }
    coords = getattr(model, "output_coords", None)
    return {
        "mode": "emulator" if is_emulator(calibrator.model_object) else "direct",
        "parameters": [p.to_dict() for p in calibrator.parameters],
        "campaigns": [c.name for c in calibrator.campaigns],
        "discrepancy": calibrator.discrepancy.to_dict(),
        "noise": calibrator.noise,
        "hyperpriors": hyper,
        "noise_prior": _prior_dict(getattr(model, "noise_prior", None))
        if calibrator.noise in ("shared", "per_campaign")
        else None,
        "input_names": list(calibrator.input_names),
        "output_names": list(calibrator.output_names),
        "output_coords": None if coords is None else np.asarray(coords).tolist(),
        "labels": list(model.labels),
        "sample": dict(sample or {}),
    }


def _simulator_identity(obj: Any) -> dict[str, Any]:
    ident = getattr(obj, "identity", "")
    return {
        "class": f"{type(obj).__module__}:{type(obj).__qualname__}",
        "identity": str(ident() if callable(ident) else ident),
        "input_names": [str(s) for s in (getattr(obj, "input_names", None) or ())],
        "parameter_names": [str(s) for s in (getattr(obj, "parameter_names", None) or ())],
        "output_names": [str(s) for s in (getattr(obj, "output_names", None) or ())],
    }


def _group_name(name: str) -> str:
    # HDF5 reserves "/" and a lone "."; the attribute ``name`` keeps the original
    return name.replace("%", "%25").replace("/", "%2F").replace(".", "%2E")


class StudyWriter:
    """Writer of a calibration into an archive: checkpoints of the chain, then summaries.

    A checkpoint either appends the new steps to the chain journal
    (``<archive>.chainlog``, one CRC-checked record, fsync-ed) or, at doubling chain
    lengths and at the end, writes a complete new file beside the archive
    (``<archive>.tmp``), copying the groups it does not own (``/runs``), fsyncs it, moves
    it over the archive with :func:`os.replace` and deletes the journal. A kill at any
    moment leaves the previous checkpoint readable; a reader that opens the archive (and
    the journal) sees one consistent checkpoint.

    Parameters
    ----------
    path : str or path-like
    calibrator : Calibrator
    sample : dict
        The sampling settings, stored in the configuration.
    fsync : bool
        ``fsync`` the new file and the directory at every checkpoint (survives power cuts).
    """

    def __init__(
        self, path: str | os.PathLike, calibrator: Any, sample: dict[str, Any], fsync: bool = True
    ):
        from .interfaces import is_emulator

        self.path = Path(path)
        self.calibrator = calibrator
        self.sample = dict(sample)
        self.fsync = bool(fsync)
        self.config = configuration(calibrator, sample)
        obj = calibrator.model_object
        self.emulator_state = None
        if is_emulator(obj):
            state_dict = getattr(obj, "state_dict", None)
            if not callable(state_dict):
                raise ArchiveError(
                    f"archive '{self.path}': the emulator {type(obj).__name__} has no "
                    f"state_dict(), so it cannot be stored; sample without archive="
                )
            self.emulator_state = state_dict()
            self.emulator_plugin = _emulator_plugin(obj)
        self.simulator = _simulator_identity(obj)
        self.log_path = _chainlog_path(self.path)
        self._fd: int | None = None
        self._log_fd: int | None = None
        self._folded = 0  # steps of the chain in the HDF5 file
        self._held = 0  # steps in the file and the chain journal together
        self._must_fold = False  # an append failed and its torn bytes could not be removed
        self.created: str | None = None
        self.full_writes = 0  # complete rewrites of the file by this writer (tests, benchmark)

    # -- lifecycle -------------------------------------------------------------
    def open(self, resume: bool) -> Any:
        """Lock the archive and return its stored checkpoint (``None`` if it has none).

        Raises
        ------
        ArchiveError
            If another process writes the archive, if it holds a chain and ``resume`` is
            false, or if its chain belongs to another problem.
        """
        from .sampling import Checkpoint

        self._fd = _lock_writer(self.path)
        try:
            stored: Checkpoint | None = None
            keep = 0
            log = _chainlog_bytes(self.path)
            if self.path.exists():
                with _open_h5(self.path) as f:
                    _check_meta(f, self.path)
                    if "meta" in f:
                        self.created = _attr_str(f["meta"], "created", self.path, default=None)
                    if "chain" in f:
                        if not resume:
                            raise ArchiveError(
                                f"archive '{self.path}' already holds a chain: pass "
                                f"resume=True to continue it (or to get it back), or give "
                                f"another archive path (or delete the file) to start a new one"
                            )
                        stored, self._folded, keep = _read_chain(f, self.path, log)
            if stored is not None:
                self._check_compatible(stored)
                self._held = stored.n_steps
            # drop a torn last record (or a journal of folded records only) so that appends
            # follow whole records; nothing that is not yet in the file is removed
            if keep == 0:
                with contextlib.suppress(FileNotFoundError):
                    self.log_path.unlink()
            elif keep < len(log):
                os.truncate(self.log_path, keep)
        except BaseException:
            self.close()
            raise
        return stored

    def _check_compatible(self, cp: Any) -> None:
        labels = list(self.calibrator.model.labels)
        stored = cp.info.get("labels")
        if stored is not None and list(stored) != labels:
            raise ArchiveError(
                f"archive '{self.path}': its chain has coordinates {stored}, the calibrator "
                f"{labels}; resume with the calibration that wrote it, or use another archive"
            )
        for key in ("n_walkers", "seed"):
            a, b = cp.info.get(key), self.sample.get(key)
            if key in cp.info and a != b:
                raise ArchiveError(
                    f"archive '{self.path}': its chain was sampled with {key}={a!r}, "
                    f"resume asked for {key}={b!r}; resume with the same {key}"
                )

    def close(self) -> None:
        self._close_log()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _unlock_writer(fd)

    def _close_log(self) -> None:
        if self._log_fd is not None:
            fd, self._log_fd = self._log_fd, None
            os.close(fd)

    def __enter__(self) -> StudyWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------
    def checkpoint(self, cp: Any, posterior: Any = None) -> None:
        """Record the chain of ``cp`` (and the summaries of ``posterior``) durably.

        The steps not yet recorded are appended to the chain journal, unless the journal
        would then hold as many steps as the HDF5 file, the file has no chain yet, or
        ``posterior`` is given (the last checkpoint): then the whole file is rewritten
        and the journal deleted. The file is therefore rewritten at doubling chain lengths
        only, and the total cost of checkpointing a chain of n steps is O(n).

        Raises
        ------
        ArchiveError
            If the checkpoint cannot be written (a full disk, a file-size limit); the
            previous checkpoint is left in place and readable.
        """
        if self._fd is None:
            raise ArchiveError(f"archive '{self.path}' is not open for writing")
        if self._must_rewrite(cp.n_steps, posterior):
            self._rewrite(cp, posterior)
        else:
            self._append(cp)

    def _must_rewrite(self, n: int, posterior: Any) -> bool:
        return (
            posterior is not None
            or self._folded == 0
            or self._must_fold
            or n <= self._held
            # doubling: fold once the journal would hold as many steps as the file
            or n - self._folded >= self._folded
        )

    def _append(self, cp: Any) -> None:
        record = _encode_chain_record(cp, self._held)
        if self._log_fd is None:
            try:
                self._log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            except OSError as exc:
                raise self._write_error(cp, self.log_path, exc) from exc
            if self.fsync:
                _fsync_dir(self.path.parent)  # the journal's directory entry too
        start = os.fstat(self._log_fd).st_size
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(self._log_fd, view) :]
            if self.fsync:
                os.fsync(self._log_fd)
        except OSError as exc:
            # remove the partial record; if that fails too, its CRC makes readers ignore it
            # as a torn last record, and the next checkpoint rewrites the file instead
            try:
                os.ftruncate(self._log_fd, start)
            except OSError:
                self._must_fold = True
            raise self._write_error(cp, self.log_path, exc) from exc
        self._held = cp.n_steps

    def _write_error(self, cp: Any, target: Path, exc: OSError) -> ArchiveError:
        return ArchiveError(
            f"archive '{self.path}': the checkpoint at step {cp.n_steps} could not be "
            f"written to '{target}' ({exc}); is the disk full? The previous checkpoint in "
            f"'{self.path}' is intact"
        )

    def _rewrite(self, cp: Any, posterior: Any) -> None:
        # the new file is built in memory and written with plain os.write: HDF5 itself
        # never meets a failing write (it can crash the process on one), and a full disk
        # is an OSError before anything replaces the archive
        buf = io.BytesIO()
        with h5py.File(buf, "w") as dst:
            if self.path.exists():
                with _open_h5(self.path) as src:
                    for name in src:
                        if name not in _STUDY_GROUPS:
                            src.copy(src[name], dst, name=name)
            self._write_static(dst)
            _write_chain(dst, cp, self.config)
            if posterior is not None:
                _write_posterior(dst, posterior)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = buf.getbuffer()
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise self._write_error(cp, self.path, exc) from exc
        if self.fsync:
            _fsync_dir(self.path.parent)
        # only now is the chain journal redundant; a kill before the unlink leaves records
        # whose steps the file holds, which every reader skips
        self._close_log()
        with contextlib.suppress(FileNotFoundError):
            self.log_path.unlink()
        self._folded = self._held = cp.n_steps
        self._must_fold = False
        self.full_writes += 1

    def _write_static(self, f: h5py.File) -> None:
        _write_meta(f)
        meta = f["meta"]
        if self.created is not None:
            meta.attrs["created"] = self.created
        meta.attrs["updated"] = _now_iso()
        seed = self.sample.get("seed")
        meta.attrs["seed"] = -1 if seed is None else int(seed)
        meta.attrs["configuration"] = json.dumps(self.config, default=_json_default)
        meta.attrs["mode"] = self.config["mode"]
        g = f.create_group("simulator")
        for key, value in self.simulator.items():
            if key.endswith("_names"):
                g.attrs[key] = np.array(value, dtype=_STR)
            else:
                g.attrs[key] = value
        if self.emulator_state is not None:
            g = f.create_group("emulator")
            g.attrs["class"] = str(self.emulator_state.get("class", ""))
            g.attrs["plugin"] = self.emulator_plugin or ""
            g.attrs["python_class"] = self.simulator["class"]
            _write_state(g, self.emulator_state)
        g = f.create_group("campaigns")
        g.attrs["order"] = np.array([c.name for c in self.calibrator.campaigns], dtype=_STR)
        for c in self.calibrator.campaigns:
            cg = g.create_group(_group_name(c.name))
            cg.attrs["name"] = c.name
            cg.create_dataset("y", data=np.asarray(c.y, dtype="<f8"))
            if c.x is not None:
                cg.create_dataset("x", data=np.asarray(c.x, dtype="<f8"))
            if c.noise_sd is not None:
                cg.create_dataset("noise_sd", data=np.asarray(c.noise_sd, dtype="<f8"))


def _write_state(g: h5py.Group, state: dict[str, Any]) -> None:
    """An emulator's ``state_dict``: arrays as datasets, str and numbers as scalar datasets;
    the attribute ``kind`` (``array``, ``str``, ``float``, ``int``) says which."""
    for key, value in state.items():
        if isinstance(value, str):
            ds = g.create_dataset(key, data=value, dtype=_STR)
            ds.attrs["kind"] = "str"
        elif isinstance(value, (bool, int, np.integer)) and not isinstance(value, np.ndarray):
            ds = g.create_dataset(key, data=np.int64(value))
            ds.attrs["kind"] = "int"
        elif isinstance(value, (float, np.floating)):
            ds = g.create_dataset(key, data=np.float64(value))
            ds.attrs["kind"] = "float"
        else:
            ds = g.create_dataset(key, data=np.asarray(value))
            ds.attrs["kind"] = "array"


def _write_chain(f: h5py.File, cp: Any, config: dict[str, Any]) -> None:
    g = f.create_group("chain")
    g.create_dataset("chain", data=np.asarray(cp.chain, dtype="<f8"))
    g.create_dataset("log_prob", data=np.asarray(cp.log_prob, dtype="<f8"))
    g.create_dataset("accepted", data=np.asarray(cp.accepted, dtype="<i8"))
    name, keys, pos, has_gauss, cached = cp.rng_state
    g.create_dataset("rng_key", data=np.asarray(keys, dtype="<u4"))
    g.attrs["rng_bit_generator"] = str(name)
    g.attrs["rng_pos"] = int(pos)
    g.attrs["rng_has_gauss"] = int(has_gauss)
    g.attrs["rng_cached_gaussian"] = float(cached)
    g.attrs["iteration"] = int(cp.n_steps)
    g.attrs["stopped_early"] = int(bool(cp.stopped_early))
    g.attrs["labels"] = np.array(config["labels"], dtype=_STR)
    g.attrs["info"] = json.dumps(cp.info, default=_json_default)


def _write_posterior(f: h5py.File, posterior: Any) -> None:
    g = f.create_group("posterior")
    g.attrs["burn"] = int(posterior.burn)
    rows = posterior.summary().rows
    g.create_dataset("quantity", data=np.array([r["name"] for r in rows], dtype=_STR))
    for col in ("mean", "sd", "q5", "q50", "q95", "ess", "rhat"):
        g.create_dataset(col, data=np.array([r[col] for r in rows], dtype="<f8"))
    g.create_dataset("acceptance", data=np.asarray(posterior.acceptance, dtype="<f8"))


# ---------------------------------------------------------------------- reading
def _attr_str(obj: Any, key: str, path: Path, default: Any = ...) -> Any:
    if key not in obj.attrs:
        if default is ...:
            raise ArchiveError(f"archive '{path}': {obj.name} has no attribute '{key}'")
        return default
    v = obj.attrs[key]
    if isinstance(v, bytes):
        v = v.decode()
    if not isinstance(v, str):
        raise ArchiveError(
            f"archive '{path}': {obj.name} attribute '{key}' should be a string, got {v!r}"
        )
    return v


def _attr_num(obj: Any, key: str, path: Path, kind: type = int) -> Any:
    if key not in obj.attrs:
        raise ArchiveError(f"archive '{path}': {obj.name} has no attribute '{key}'")
    v = obj.attrs[key]
    if not (np.ndim(v) == 0 and isinstance(v, (int, float, np.integer, np.floating))):
        raise ArchiveError(
            f"archive '{path}': {obj.name} attribute '{key}' should be a number, got {v!r}"
        )
    if kind is int and (not float(v).is_integer()):
        raise ArchiveError(f"archive '{path}': {obj.name} attribute '{key}' should be an integer")
    return kind(v)


def _dataset(g: h5py.Group, key: str, path: Path, ndim: int | None, kind: str = "f") -> np.ndarray:
    """A numeric dataset of ``g`` checked for presence, rank and dtype kind."""
    if key not in g:
        raise ArchiveError(f"archive '{path}': {g.name} has no dataset '{key}'")
    ds = g[key]
    if not isinstance(ds, h5py.Dataset):
        raise ArchiveError(f"archive '{path}': {ds.name} should be a dataset, got a group")
    ok_kinds = {"f": "f", "i": "iu", "u": "u"}[kind]
    if ds.dtype.kind not in ok_kinds or ds.dtype.fields is not None:
        raise ArchiveError(
            f"archive '{path}': {ds.name} should hold "
            f"{'floats' if kind == 'f' else 'integers'}, got dtype {ds.dtype}"
        )
    if ndim is not None and ds.ndim != ndim:
        raise ArchiveError(
            f"archive '{path}': {ds.name} should have {ndim} dimension(s), got shape {ds.shape}"
        )
    return ds[()]


def _read_checkpoint(f: h5py.File, path: Path) -> Any:
    from .sampling import Checkpoint

    g = f["chain"]
    if not isinstance(g, h5py.Group):
        raise ArchiveError(f"archive '{path}': /chain should be a group")
    chain = _dataset(g, "chain", path, 3)
    n, w, d = chain.shape
    log_prob = _dataset(g, "log_prob", path, 2)
    accepted = _dataset(g, "accepted", path, 1, "i")
    key = _dataset(g, "rng_key", path, 1, "i")
    if n < 1:
        raise ArchiveError(f"archive '{path}': /chain/chain holds no step")
    if log_prob.shape != (n, w):
        raise ArchiveError(
            f"archive '{path}': /chain/log_prob has shape {log_prob.shape}, expected ({n}, {w})"
        )
    if accepted.shape != (w,) or (accepted < 0).any() or (accepted > n).any():
        raise ArchiveError(
            f"archive '{path}': /chain/accepted should be {w} counts in [0, {n}], got "
            f"shape {accepted.shape}"
        )
    if key.shape != (_RNG_WORDS,):
        raise ArchiveError(
            f"archive '{path}': /chain/rng_key has shape {key.shape}, expected ({_RNG_WORDS},)"
        )
    if not np.isfinite(chain).all():
        raise ArchiveError(f"archive '{path}': /chain/chain contains NaN or inf")
    iteration = _attr_num(g, "iteration", path)
    if iteration != n:
        raise ArchiveError(
            f"archive '{path}': /chain says iteration {iteration} but holds {n} steps"
        )
    bitgen = _attr_str(g, "rng_bit_generator", path)
    if bitgen != "MT19937":
        raise ArchiveError(f"archive '{path}': /chain rng_bit_generator {bitgen!r} is not MT19937")
    pos = _attr_num(g, "rng_pos", path)
    if not 0 <= pos <= _RNG_WORDS:
        raise ArchiveError(f"archive '{path}': /chain rng_pos {pos} is outside [0, {_RNG_WORDS}]")
    rng_state = (
        bitgen,
        key.astype(np.uint32),
        pos,
        _attr_num(g, "rng_has_gauss", path),
        _attr_num(g, "rng_cached_gaussian", path, float),
    )
    try:
        info = json.loads(_attr_str(g, "info", path))
        labels = _strs(g.attrs["labels"]) if "labels" in g.attrs else None
    except (ValueError, TypeError) as exc:
        raise ArchiveError(
            f"archive '{path}': /chain attribute 'info' is not JSON: {exc}"
        ) from None
    if not isinstance(info, dict):
        raise ArchiveError(f"archive '{path}': /chain attribute 'info' should be a JSON object")
    if labels is not None:
        if len(labels) != d:
            raise ArchiveError(
                f"archive '{path}': /chain has {d} coordinates but {len(labels)} labels"
            )
        info["labels"] = labels
    return Checkpoint(
        chain=chain,
        log_prob=log_prob,
        accepted=accepted.astype(np.int64),
        rng_state=rng_state,
        stopped_early=bool(_attr_num(g, "stopped_early", path)),
        info=info,
    )


# ---------------------------------------------------------------------- the chain journal
# <archive>.chainlog: one binary record per checkpoint between rewrites of the file.
#   header  <8s I q q q q Q>: magic, version, n_start, n_rows, n_walkers, n_dim, payload bytes
#   payload chain rows (n_rows, n_walkers, n_dim) <f8, log_prob (n_rows, n_walkers) <f8,
#           accepted (n_walkers,) <i8, rng_key (624,) <i8, then UTF-8 JSON of
#           {"rng": [name, pos, has_gauss, cached_gaussian], "stopped_early", "info"}
#   crc     <I: CRC-32 (zlib) of header + payload
_LOG_MAGIC = b"calibCL\x00"
_LOG_VERSION = 1
_LOG_HEADER = struct.Struct("<8sIqqqqQ")
_LOG_CRC = struct.Struct("<I")


def _chainlog_path(path: Path) -> Path:
    return path.with_name(path.name + ".chainlog")


def _chainlog_bytes(path: Path) -> bytes:
    """The chain journal's bytes (empty if there is none).

    Read *before* the HDF5 file is opened: a fold between the two reads moves the records
    into the file (the reader then skips them), whereas the other order could pair an old
    file with records appended after a newer fold (a gap)."""
    try:
        return _chainlog_path(path).read_bytes()
    except FileNotFoundError:
        return b""


def _encode_chain_record(cp: Any, n_start: int) -> bytes:
    """The journal record of the steps ``n_start:`` of ``cp`` and its state."""
    n, w, d = cp.chain.shape
    name, keys, pos, has_gauss, cached = cp.rng_state
    meta = json.dumps(
        {
            "rng": [str(name), int(pos), int(has_gauss), float(cached)],
            "stopped_early": bool(cp.stopped_early),
            "info": cp.info,
        },
        default=_json_default,
    ).encode()
    arrays = [
        np.ascontiguousarray(cp.chain[n_start:n], dtype="<f8"),
        np.ascontiguousarray(cp.log_prob[n_start:n], dtype="<f8"),
        np.ascontiguousarray(cp.accepted, dtype="<i8"),
        np.ascontiguousarray(keys, dtype="<i8"),
    ]
    size = sum(a.nbytes for a in arrays) + len(meta)
    header = _LOG_HEADER.pack(_LOG_MAGIC, _LOG_VERSION, n_start, n - n_start, w, d, size)
    crc = zlib.crc32(header)
    for a in arrays:
        crc = zlib.crc32(a, crc)
    crc = zlib.crc32(meta, crc)
    return b"".join([header, *(a.tobytes() for a in arrays), meta, _LOG_CRC.pack(crc)])


@dataclass
class _ChainRecord:
    n_start: int
    chain: np.ndarray
    log_prob: np.ndarray
    accepted: np.ndarray
    rng_key: np.ndarray
    meta: dict[str, Any]
    end: int  # offset of the byte after the record in the journal


def _parse_chain_record(data: bytes, at: int) -> _ChainRecord | None:
    """The whole, CRC-checked record at offset ``at``, or ``None``."""
    if len(data) - at < _LOG_HEADER.size + _LOG_CRC.size:
        return None
    magic, version, n0, rows, w, d, size = _LOG_HEADER.unpack_from(data, at)
    if magic != _LOG_MAGIC or version != _LOG_VERSION:
        return None
    if n0 < 1 or rows < 1 or w < 1 or d < 1:
        return None
    body = at + _LOG_HEADER.size
    end = body + size + _LOG_CRC.size
    counts = (rows * w * d, rows * w, w, _RNG_WORDS)
    if size < 8 * sum(counts) or end > len(data):
        return None
    (crc,) = _LOG_CRC.unpack_from(data, body + size)
    if zlib.crc32(memoryview(data)[at : body + size]) != crc:
        return None
    parts, off = [], body
    for count, dtype in zip(counts, ("<f8", "<f8", "<i8", "<i8")):
        parts.append(np.frombuffer(data, dtype=dtype, count=count, offset=off))
        off += 8 * count
    try:
        meta = json.loads(data[off : body + size].decode())
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    return _ChainRecord(
        n0, parts[0].reshape(rows, w, d), parts[1].reshape(rows, w), parts[2], parts[3], meta, end
    )


def _parse_chainlog(data: bytes, path: Path) -> tuple[list[_ChainRecord], int]:
    """The whole records of a chain journal and the offset after the last of them.

    A damaged record at the end is a write cut short (a kill, a full disk) and is ignored;
    a damaged record followed by a whole one is corruption."""
    records, at = [], 0
    while at < len(data):
        rec = _parse_chain_record(data, at)
        if rec is None:
            nxt = data.find(_LOG_MAGIC, at + 1)
            while nxt != -1:
                if _parse_chain_record(data, nxt) is not None:
                    raise ArchiveError(
                        f"chain journal '{path}' is corrupt: the record at byte {at} is "
                        f"damaged but whole records follow it"
                    )
                nxt = data.find(_LOG_MAGIC, nxt + 1)
            break
        records.append(rec)
        at = rec.end
    return records, at


def _read_chain(f: h5py.File, path: Path, log: bytes) -> tuple[Any, int, int]:
    """The chain of an archive: ``/chain`` of the open file, then the journal's records.

    Every reader of the chain goes through here (``StudyWriter.open``, :func:`read_chain`,
    :func:`load`). ``log`` is the journal read before ``f`` was opened
    (:func:`_chainlog_bytes`). Records whose steps the file already holds are skipped (a
    fold whose journal deletion did not happen); the others must continue the chain.

    Returns
    -------
    checkpoint : Checkpoint
    n_folded : int
        Steps of the chain held by the file itself.
    keep : int
        Journal bytes worth keeping: up to the last applied record (0 if none applied).
    """
    from .sampling import Checkpoint

    cp = _read_checkpoint(f, path)
    n_folded = cp.n_steps
    if not log:
        return cp, n_folded, 0
    jpath = _chainlog_path(path)
    records, _ = _parse_chainlog(log, jpath)
    n, w, d = cp.chain.shape
    chains, log_probs, last, keep = [cp.chain], [cp.log_prob], None, 0
    for rec in records:
        rows = rec.chain.shape[0]
        if rec.n_start + rows <= n_folded and last is None:
            continue  # folded into the file already
        if rec.n_start != n:
            raise ArchiveError(
                f"chain journal '{jpath}': a record starts at step {rec.n_start}, but the "
                f"chain of '{path}' and the records before it end at step {n}"
            )
        if rec.chain.shape[1:] != (w, d):
            raise ArchiveError(
                f"chain journal '{jpath}': a record has {rec.chain.shape[1]} walkers × "
                f"{rec.chain.shape[2]} coordinates, the chain of '{path}' {w} × {d}"
            )
        if not np.isfinite(rec.chain).all():
            raise ArchiveError(f"chain journal '{jpath}': a record's chain holds NaN or inf")
        n += rows
        chains.append(rec.chain)
        log_probs.append(rec.log_prob)
        last, keep = rec, rec.end
    if last is None:
        return cp, n_folded, 0
    m = last.meta
    try:
        name, pos, has_gauss, cached = m["rng"]
        stopped_early, info = bool(m["stopped_early"]), dict(m["info"])
    except (KeyError, TypeError, ValueError):
        raise ArchiveError(
            f"chain journal '{jpath}': the last record's state is incomplete"
        ) from None
    if (last.accepted < 0).any() or (last.accepted > n).any():
        raise ArchiveError(
            f"chain journal '{jpath}': accepted counts should be in [0, {n}] for {w} walkers"
        )
    if name != "MT19937" or not 0 <= int(pos) <= _RNG_WORDS:
        raise ArchiveError(f"chain journal '{jpath}': the generator state is not MT19937's")
    if "labels" in cp.info:
        info["labels"] = cp.info["labels"]
    state = (
        str(name),
        last.rng_key.astype(np.uint32),
        int(pos),
        int(has_gauss),
        float(cached),
    )
    return (
        Checkpoint(
            chain=np.concatenate(chains),
            log_prob=np.concatenate(log_probs),
            accepted=last.accepted.astype(np.int64),
            rng_state=state,
            stopped_early=stopped_early,
            info=info,
        ),
        n_folded,
        keep,
    )


def read_chain(path: str | os.PathLike) -> Any:
    """The last checkpoint of an archive's chain (:class:`calib.sampling.Checkpoint`).

    The chain of the HDF5 file followed by the whole records of its chain journal
    (``<archive>.chainlog``). Safe while another process samples into the archive: the file
    is replaced atomically and journal records are CRC-checked, so a read gets one whole
    checkpoint.

    Raises
    ------
    ArchiveError
        If the file is missing, unreadable or has no (valid) ``/chain``.
    """
    path = Path(path)
    if not path.exists():
        raise ArchiveError(f"archive: no such file '{path}'")
    log = _chainlog_bytes(path)  # before the file: see _chainlog_bytes
    with _open_h5(path) as f:
        try:
            _check_meta(f, path)
            if "chain" not in f:
                raise ArchiveError(f"archive '{path}' has no /chain group (nothing sampled yet)")
            return _read_chain(f, path, log)[0]
        except ArchiveError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged file is an ArchiveError
            raise ArchiveError(f"archive '{path}': /chain cannot be read ({exc})") from None


# ---------------------------------------------------------------------- sampling into it
def sample_into(
    calibrator: Any,
    path: str | os.PathLike,
    *,
    n_walkers: int | None,
    n_steps: int,
    seed: int | None,
    progress: bool,
    resume: bool,
    checkpoint_every: int,
    fsync: bool = True,
    **options: Any,
) -> Any:
    """:meth:`Calibrator.sample` with ``archive=path`` (see its docstring)."""
    from dataclasses import replace

    from .sampling import posterior_from_chain, run_sampler

    if not isinstance(resume, bool):
        raise TypeError(f"resume must be True or False, got {resume!r}")
    sample = {
        "n_walkers": None if n_walkers is None else int(n_walkers),
        "n_steps": int(n_steps) if isinstance(n_steps, (int, np.integer)) else n_steps,
        "seed": None if seed is None else int(seed),
        "checkpoint_every": checkpoint_every,
        **{k: v for k, v in options.items() if isinstance(v, (bool, int, float, str, type(None)))},
    }
    writer = StudyWriter(path, calibrator, sample, fsync=fsync)
    with writer:
        stored = writer.open(resume)
        if stored is not None:
            w = stored.chain.shape[1]
            if n_walkers is not None and int(n_walkers) != w:
                raise ArchiveError(
                    f"archive '{writer.path}': its chain has {w} walkers, resume asked for "
                    f"n_walkers={n_walkers}; resume with n_walkers={w} (or None)"
                )
            writer.sample["n_walkers"] = n_walkers = w
            if not isinstance(n_steps, (int, np.integer)) or n_steps < 2:
                raise ValueError(f"n_steps must be an integer ≥ 2, got {n_steps!r}")
            s = stored.n_steps
            if stored.stopped_early or s >= n_steps:
                # the archive already holds this run: an uninterrupted run of n_steps ends
                # where it did, or at n_steps on the same path
                n = min(s, int(n_steps))
                return posterior_from_chain(
                    calibrator,
                    stored.chain[:n],
                    stored.log_prob[:n],
                    _accepted_at(stored, n),
                    options.get("burn", stored.info.get("burn")),
                    stored.stopped_early and n == s,
                    {**stored.info, "n_steps_budget": int(n_steps), "archive": str(writer.path)},
                )
        extra = {
            "n_walkers": n_walkers,
            "labels": list(calibrator.model.labels),
            "burn": options.get("burn"),
        }
        last: list[Any] = []

        def checkpoint(cp: Any) -> None:
            cp = replace(
                cp, info={**cp.info, **{k: v for k, v in extra.items() if k not in cp.info}}
            )
            if cp.info.get("n_walkers") is None:
                cp.info["n_walkers"] = int(cp.chain.shape[1])
            last[:] = [cp]
            if not (cp.stopped_early or cp.n_steps >= n_steps):
                writer.checkpoint(cp)  # the last one is written below, with the summaries

        post = run_sampler(
            calibrator,
            n_walkers=n_walkers,
            n_steps=n_steps,
            seed=seed,
            progress=progress,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            resume=stored,
            **options,
        )
        if last:
            writer.checkpoint(last[0], posterior=post)
        post.info["archive"] = str(writer.path)
        post.info.setdefault("n_walkers", post.n_walkers)
        return post


def _accepted_at(cp: Any, n: int) -> np.ndarray:
    """Acceptance counts after ``n`` steps; only the final counts are stored, so a shorter
    prefix gets them rescaled (used for the acceptance fraction only)."""
    if n == cp.n_steps:
        return cp.accepted.astype(float)
    return cp.accepted.astype(float) * n / cp.n_steps


# ---------------------------------------------------------------------- load
def load(path: str | os.PathLike, simulator: Any = None) -> Any:
    """Restore the :class:`~calib.posterior.Posterior` of a study archive.

    Nothing stored in the file is executed: the emulator is rebuilt from its stored arrays
    by the class registered under its name in the ``calib.emulators`` entry points; a
    Python simulator (direct mode) cannot be stored and is given again.

    Parameters
    ----------
    path : str or path-like
        The archive written by ``Calibrator.sample(archive=path)``.
    simulator : Simulator, optional
        Required when the chain was sampled with the simulator in the likelihood (direct
        mode); its input, parameter and output names must match the archived ones.

    Returns
    -------
    Posterior
        With ``posterior.calibrator`` (emulator, parameters, campaigns) rebuilt,
        ``posterior.runs`` (a :class:`~calib.RunSet`, or ``None`` if the archive has no
        ``/runs``) and ``posterior.info["archive"]``.

    Raises
    ------
    ArchiveError
        If the file is not a calib archive, is damaged, newer than this calib, has no
        chain, or needs ``simulator=``; the message names the file and what is wrong.
    """
    path = Path(path)
    if not path.exists():
        raise ArchiveError(f"archive: no such file '{path}'")
    if path.is_dir():
        raise ArchiveError(f"archive '{path}' is a directory, not an HDF5 file")
    try:
        log = _chainlog_bytes(path)  # before the file: see _chainlog_bytes
        with _open_h5(path) as f:
            post = _load(f, path, simulator, log)
        post.runs = None
        if "runs" in _group_names(path):
            from .runner import RunSet

            post.runs = RunSet.from_archive(path)
    except ArchiveError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises, say so
        raise ArchiveError(
            f"archive '{path}' cannot be loaded: {type(exc).__name__}: {exc}"
        ) from None
    return post


def _group_names(path: Path) -> list[str]:
    with _open_h5(path) as f:
        return list(f)


def _read_state(g: h5py.Group, path: Path) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        kind = obj.attrs.get("kind", "array")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        value = obj[()]
        if kind == "str":
            if not isinstance(value, (bytes, str)):
                raise ArchiveError(f"archive '{path}': {obj.name} should be a string")
            state[name] = value.decode() if isinstance(value, bytes) else value
        elif kind in ("float", "int"):
            if np.ndim(value) != 0 or obj.dtype.kind not in "fiu":
                raise ArchiveError(f"archive '{path}': {obj.name} should be a number")
            state[name] = float(value) if kind == "float" else int(value)
        elif kind == "array":
            if obj.dtype.kind not in "fiub":
                raise ArchiveError(
                    f"archive '{path}': {obj.name} should be numeric, got dtype {obj.dtype}"
                )
            state[name] = np.asarray(value)
        else:
            raise ArchiveError(f"archive '{path}': {obj.name} has unknown kind {kind!r}")

    g.visititems(visit)
    return state


def _emulator_class(g: h5py.Group, path: Path) -> Any:
    from . import plugins

    cls_name = _attr_str(g, "class", path)
    plugin = _attr_str(g, "plugin", path, default="")
    registered = plugins.list("calib.emulators")
    # only a registered entry point is imported, never a module named by the file
    name = plugin if plugin in registered else None
    if name is None:
        for ep_name, value in registered.items():
            if value.rsplit(":", 1)[-1] == cls_name:
                name = ep_name
                break
    if name is None:
        raise ArchiveError(
            f"archive '{path}': the emulator class {cls_name!r} (plug-in {plugin!r}) is not "
            f"registered under the calib.emulators entry points ({sorted(registered)}); "
            f"install the package that provides it"
        )
    cls = plugins.load("calib.emulators", name)
    if getattr(cls, "__name__", None) != cls_name:
        raise ArchiveError(
            f"archive '{path}': the emulator is a {cls_name!r}, but the registered plug-in "
            f"{name!r} provides {getattr(cls, '__name__', cls)!r}: not registered under the "
            f"calib.emulators entry points"
        )
    if not callable(getattr(cls, "from_state_dict", None)):
        raise ArchiveError(
            f"archive '{path}': the emulator plug-in {name!r} has no from_state_dict()"
        )
    return cls


def _check_simulator(sim: Any, f: h5py.File, path: Path) -> None:
    if "simulator" not in f:
        raise ArchiveError(f"archive '{path}' has no /simulator group")
    g = f["simulator"]
    stored = _simulator_identity(sim)
    for key in ("input_names", "parameter_names", "output_names"):
        want = _strs(g.attrs[key]) if key in g.attrs else None
        if want is None:
            raise ArchiveError(f"archive '{path}': /simulator has no attribute '{key}'")
        if list(want) != stored[key]:
            raise ArchiveError(
                f"archive '{path}': simulator= has {key} {stored[key]}, but the archive was "
                f"sampled with a simulator whose {key} are {list(want)}"
            )


def _load(f: h5py.File, path: Path, simulator: Any, log: bytes = b"") -> Any:
    from .calibrator import Calibrator
    from .campaign import Campaign
    from .discrepancy import Discrepancy
    from .parameters import Parameter
    from .priors import Prior
    from .sampling import posterior_from_chain

    if "meta" not in f or not isinstance(f["meta"], h5py.Group):
        raise ArchiveError(
            f"archive '{path}' is an HDF5 file without a /meta group: not a calib study "
            f"archive (written by another program?)"
        )
    meta = f["meta"]
    fmt = _attr_str(meta, "format", path, default=None)
    if fmt != FORMAT:
        raise ArchiveError(
            f"archive '{path}': /meta format is {fmt!r}, expected {FORMAT!r}: not a calib "
            f"study archive"
        )
    version = _attr_num(meta, "schema_version", path)
    if version > SCHEMA_VERSION:
        raise ArchiveError(
            f"archive '{path}' has schema version {version}; this calib reads up to "
            f"{SCHEMA_VERSION}: upgrade calib"
        )
    if "chain" not in f:
        raise ArchiveError(
            f"archive '{path}' has no /chain group: nothing was sampled into it (a design "
            f"only? read its runs with calib.RunSet.from_archive)"
        )
    try:
        config = json.loads(_attr_str(meta, "configuration", path))
    except ValueError as exc:
        raise ArchiveError(f"archive '{path}': /meta configuration is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ArchiveError(f"archive '{path}': /meta configuration should be a JSON object")
    need = ("mode", "parameters", "discrepancy", "noise", "hyperpriors", "labels", "input_names")
    missing = [k for k in need if k not in config]
    if missing:
        raise ArchiveError(f"archive '{path}': /meta configuration lacks {missing}")
    # ------------------------------------------------------------ campaigns
    if "campaigns" not in f:
        raise ArchiveError(f"archive '{path}' has no /campaigns group")
    cg = f["campaigns"]
    order = _strs(cg.attrs["order"]) if "order" in cg.attrs else None
    if order is None:
        raise ArchiveError(f"archive '{path}': /campaigns has no attribute 'order'")
    campaigns = []
    for name in order:
        key = _group_name(name)
        if key not in cg or not isinstance(cg[key], h5py.Group):
            raise ArchiveError(f"archive '{path}': /campaigns has no group for campaign {name!r}")
        g = cg[key]
        y = _dataset(g, "y", path, None)
        x = _dataset(g, "x", path, 2) if "x" in g else None
        noise_sd = _dataset(g, "noise_sd", path, None) if "noise_sd" in g else None
        try:
            campaigns.append(Campaign(name, x=x, y=y, noise_sd=noise_sd))
        except (ValueError, TypeError) as exc:
            raise ArchiveError(f"archive '{path}': /campaigns/{key} is invalid: {exc}") from None
    # ------------------------------------------------------------ the forward model
    mode = config["mode"]
    if mode == "emulator":
        if "emulator" not in f or not isinstance(f["emulator"], h5py.Group):
            raise ArchiveError(
                f"archive '{path}' was sampled with an emulator but has no /emulator"
            )
        cls = _emulator_class(f["emulator"], path)
        state = _read_state(f["emulator"], path)
        try:
            model = cls.from_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - a plug-in's own error on a bad state
            raise ArchiveError(
                f"archive '{path}': /emulator cannot be restored by {cls.__name__}."
                f"from_state_dict: {type(exc).__name__}: {exc}"
            ) from None
    elif mode == "direct":
        if simulator is None:
            ident = (
                _attr_str(f["simulator"], "identity", path, default="?")
                if "simulator" in f
                else "?"
            )
            raise ArchiveError(
                f"archive '{path}' was sampled with the simulator itself in the likelihood "
                f"({ident}), which cannot be stored without pickle: pass it again, "
                f"calib.load('{path}', simulator=sim)"
            )
        _check_simulator(simulator, f, path)
        model = simulator
    else:
        raise ArchiveError(f"archive '{path}': /meta configuration mode {mode!r} is unknown")
    # ------------------------------------------------------------ the calibrator
    try:
        parameters = [Parameter.from_dict(d) for d in config["parameters"]]
        d = config["discrepancy"]
        disc = Discrepancy(
            d["mode"],
            kernel=d["kernel"],
            scale_prior=None if d.get("scale_prior") is None else Prior.from_dict(d["scale_prior"]),
            lengthscale_prior=None
            if d.get("lengthscale_prior") is None
            else Prior.from_dict(d["lengthscale_prior"]),
        )
        hyper = {
            name: {k: Prior.from_dict(v) for k, v in hp.items() if v is not None}
            for name, hp in config["hyperpriors"].items()
        }
        noise_prior = config.get("noise_prior")
        cal = Calibrator(
            model,
            parameters,
            campaigns,
            discrepancy=disc,
            noise=config["noise"],
            hyperpriors=hyper,
            noise_prior=None if noise_prior is None else Prior.from_dict(noise_prior),
            input_names=config["input_names"] if mode == "emulator" else None,
            output_coords=config.get("output_coords"),
        )
    except ArchiveError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ArchiveError(
            f"archive '{path}': the stored configuration does not rebuild the calibration: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if list(cal.model.labels) != list(config["labels"]):
        raise ArchiveError(
            f"archive '{path}': the rebuilt calibration has coordinates {cal.model.labels}, "
            f"the archive {config['labels']}"
        )
    cp = _read_chain(f, path, log)[0]
    if cp.chain.shape[2] != cal.model.n_dim:
        raise ArchiveError(
            f"archive '{path}': /chain/chain has {cp.chain.shape[2]} coordinates, the "
            f"calibration {cal.model.n_dim}"
        )
    burn = config.get("sample", {}).get("burn", cp.info.get("burn"))
    if burn is not None and not (isinstance(burn, int) and 0 <= burn):
        raise ArchiveError(f"archive '{path}': stored burn {burn!r} is not a count of steps")
    return posterior_from_chain(
        cal,
        cp.chain,
        cp.log_prob,
        cp.accepted,
        burn,
        cp.stopped_early,
        {**cp.info, "archive": str(path)},
    )
