"""The study: ``/meta`` (provenance and configuration), ``/simulator``, ``/emulator``,
``/campaigns``, ``/chain`` and ``/posterior``, written by ``Calibrator.sample(archive=...)``
through :class:`StudyWriter` and read back by :func:`calib.archive.read_study` (which
:func:`calib.load` turns back into a posterior).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..checkpoint import Checkpoint
from ._checksum import carry_checked, create_checked
from ._h5 import (
    _STR,
    ArchiveError,
    _attr_str,
    _check_meta,
    _check_writable,
    _fsync_dir,
    _json_default,
    _now_iso,
    _open_h5,
    _write_meta,
    replace_atomically,
)
from ._journal import (
    _chainlog_bytes,
    _chainlog_path,
    _encode_chain_record,
    _lock_writer,
    _unlock_writer,
)
from ._same import resume_differences, state_digest
from .chain import _read_chain, _write_chain

#: The groups a study writer owns; every other group (``/runs``) is carried over unchanged.
_STUDY_GROUPS = ("simulator", "emulator", "campaigns", "chain", "posterior")


def _emulator_plugin(obj: Any) -> str | None:
    """The ``calib.emulators`` entry-point name registered for ``obj``'s class."""
    from .. import plugins

    target = f"{type(obj).__module__}:{type(obj).__qualname__}"
    short = f"{type(obj).__module__.split('.')[0]}:{type(obj).__qualname__}"
    for name, value in plugins.list("calib.emulators").items():
        if value in (target, short):
            return name
    return None


def _simulator_identity(obj: Any) -> dict[str, Any]:
    ident = getattr(obj, "identity", "")
    return {
        "class": f"{type(obj).__module__}:{type(obj).__qualname__}",
        "identity": str(ident() if callable(ident) else ident),
        "input_names": [str(s) for s in (getattr(obj, "input_names", None) or ())],
        "parameter_names": [str(s) for s in (getattr(obj, "parameter_names", None) or ())],
        "output_names": [str(s) for s in (getattr(obj, "output_names", None) or ())],
    }


def _carry(f: h5py.File, path: Path) -> h5py.File:
    """The groups of ``f`` a study writer does not own, verified, in an in-memory file."""
    return carry_checked(f, path, _STUDY_GROUPS)


def _group_name(name: str) -> str:
    # HDF5 reserves "/" and a lone "."; the attribute ``name`` keeps the original
    return name.replace("%", "%25").replace("/", "%2F").replace(".", "%2E")


class StudyWriter:
    """Writer of a calibration into an archive: checkpoints of the chain (handed over by the
    sampler's :class:`~calib.archive.chain.ChainBackend`), then summaries.

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
        The sampling settings, stored in the configuration (``/meta/configuration`` is
        ``calibrator.to_config(sample)``: the archive stores the description the calibrator
        gives of itself and never builds one).
    fsync : bool
        ``fsync`` the new file and the directory at every checkpoint (survives power cuts).
    """

    def __init__(
        self, path: str | os.PathLike, calibrator: Any, sample: dict[str, Any], fsync: bool = True
    ):
        from ..interfaces import is_emulator

        self.path = Path(path)
        self.calibrator = calibrator
        self.sample = dict(sample)
        self.fsync = bool(fsync)
        self.config = calibrator.to_config(sample)
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
        # the groups of the file this writer does not own (/runs), checked and held in
        # memory from open() on: a rewrite copies them from here and never reopens the
        # file, which another program's write handle would make HDF5 refuse (issue 13,
        # item 12); the writer lock keeps every other calib writer out meanwhile
        self._carried: h5py.File | None = None
        self.full_writes = 0  # complete rewrites of the file by this writer (tests, benchmark)

    # -- lifecycle -------------------------------------------------------------
    def open(self, resume: bool) -> Checkpoint | None:
        """Lock the archive and return its stored checkpoint (``None`` if it has none).

        Raises
        ------
        ArchiveError
            If another process writes the archive, if it holds a chain and ``resume`` is
            false, or if its chain belongs to another problem.
        """

        _check_writable(self.path)
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
                        self._check_same(f)
                    self._carried = _carry(f, self.path)
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

    def _check_same(self, f: h5py.File) -> None:
        """Refuse to resume a chain of another calibration, listing what differs."""
        diffs = resume_differences(
            f,
            self.config,
            list(self.calibrator.campaigns),
            _group_name,
            self.simulator,
            self.emulator_state,
        )
        if diffs:
            shown = "; ".join(diffs[:6]) + (
                f"; and {len(diffs) - 6} more" if len(diffs) > 6 else ""
            )
            raise ArchiveError(
                f"archive '{self.path}': its chain belongs to another calibration ({shown}); "
                f"resume with the calibration that wrote it, or give another archive path "
                f"to start a new chain"
            )

    def _check_compatible(self, cp: Checkpoint) -> None:
        labels = list(self.calibrator.model.labels)
        stored = cp.info.get("labels")
        if stored is not None and list(stored) != labels:
            raise ArchiveError(
                f"archive '{self.path}': its chain has coordinates {stored}, the calibrator "
                f"{labels}; resume with the calibration that wrote it, or use another archive"
            )
        for key in ("n_walkers", "seed"):
            a, b = cp.info.get(key), self.sample.get(key)
            if key == "n_walkers" and b is None:
                continue  # resume with the archived walkers
            if key in cp.info and a != b:
                raise ArchiveError(
                    f"archive '{self.path}': its chain was sampled with {key}={a!r}, "
                    f"resume asked for {key}={b!r}; resume with the same {key}"
                )

    def close(self) -> None:
        self._close_log()
        if self._carried is not None:
            carried, self._carried = self._carried, None
            carried.close()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _unlock_writer(fd, self.path)

    def _close_log(self) -> None:
        if self._log_fd is not None:
            fd, self._log_fd = self._log_fd, None
            os.close(fd)

    def __enter__(self) -> StudyWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------
    def checkpoint(self, cp: Checkpoint, posterior: Any = None) -> None:
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
            try:
                self._rewrite(cp, posterior)
            except ArchiveError as exc:
                if posterior is None:
                    raise  # the run stops; what it checkpointed before is intact
                self._recover(cp, posterior, exc)
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

    def _append(self, cp: Checkpoint) -> None:
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

    def _write_error(self, cp: Checkpoint, target: Path, exc: OSError) -> ArchiveError:
        return ArchiveError(
            f"archive '{self.path}': the checkpoint at step {cp.n_steps} could not be "
            f"written to '{target}' ({exc}); is the disk full? The previous checkpoint in "
            f"'{self.path}' is intact"
        )

    def _build(self, cp: Checkpoint, posterior: Any) -> Any:
        """The ``build(f)`` of a complete file holding ``cp`` (and ``posterior``)."""

        def build(dst: h5py.File) -> None:
            if self._carried is not None:
                for name in self._carried:
                    self._carried.copy(self._carried[name], dst, name=name)
            self._write_static(dst)
            _write_chain(dst, cp, self.config)
            if posterior is not None:
                _write_posterior(dst, posterior)

        return build

    def _recover(self, cp: Checkpoint, posterior: Any, exc: ArchiveError) -> None:
        """The last checkpoint could not replace the archive: write the whole result beside
        it, ``<archive>.recovered.h5``, rather than lose it, and say where (issue 13,
        item 12). Always raises :class:`ArchiveError`."""
        beside = self.path.with_name(self.path.name + ".recovered.h5")
        try:
            replace_atomically(beside, self._build(cp, posterior), fsync=self.fsync)
        except ArchiveError as again:
            raise ArchiveError(f"{exc}; writing the result beside it failed too: {again}") from exc
        raise ArchiveError(
            f"{exc}. The complete result ({cp.n_steps} steps and the posterior's summaries) "
            f"was written beside it instead, to '{beside}': calib.load('{beside}') reads it; "
            f"move it over '{self.path}' to make it the archive"
        ) from exc

    def _rewrite(self, cp: Checkpoint, posterior: Any) -> None:
        # built in memory and written with plain os.write (replace_atomically): HDF5 never
        # meets a failing write, and a full disk is an OSError before anything is replaced
        replace_atomically(
            self.path,
            self._build(cp, posterior),
            fsync=self.fsync,
            error=lambda exc: self._write_error(cp, self.path, exc),
        )
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
            g.attrs["fingerprint"] = state_digest(self.emulator_state)
            _write_state(g, self.emulator_state)
        g = f.create_group("campaigns")
        g.attrs["order"] = np.array([c.name for c in self.calibrator.campaigns], dtype=_STR)
        for c in self.calibrator.campaigns:
            cg = g.create_group(_group_name(c.name))
            cg.attrs["name"] = c.name
            create_checked(cg, "y", np.asarray(c.y, dtype="<f8"))
            if c.x is not None:
                create_checked(cg, "x", np.asarray(c.x, dtype="<f8"))
            if c.noise_sd is not None:
                create_checked(cg, "noise_sd", np.asarray(c.noise_sd, dtype="<f8"))
            if getattr(c, "coords", None) is not None:  # Campaign(coords=): y's own
                create_checked(cg, "coords", np.asarray(c.coords, dtype="<f8"))


def _write_state(g: h5py.Group, state: dict[str, Any]) -> None:
    """An emulator's ``state_dict``: arrays as datasets, str and numbers as scalar datasets;
    the attribute ``kind`` (``array``, ``str``, ``float``, ``int``) says which."""
    for key, value in state.items():
        if isinstance(value, str):
            ds = create_checked(g, key, value, dtype=_STR)
            ds.attrs["kind"] = "str"
        elif isinstance(value, (bool, int, np.integer)) and not isinstance(value, np.ndarray):
            ds = create_checked(g, key, np.int64(value))
            ds.attrs["kind"] = "int"
        elif isinstance(value, (float, np.floating)):
            ds = create_checked(g, key, np.float64(value))
            ds.attrs["kind"] = "float"
        else:
            ds = create_checked(g, key, np.asarray(value))
            ds.attrs["kind"] = "array"


def _write_posterior(f: h5py.File, posterior: Any) -> None:
    g = f.create_group("posterior")
    g.attrs["burn"] = int(posterior.burn)
    rows = posterior.summary().rows
    create_checked(g, "quantity", np.array([r["name"] for r in rows], dtype=_STR))
    for col in ("mean", "sd", "q5", "q50", "q95", "ess", "rhat"):
        create_checked(g, col, np.array([r[col] for r in rows], dtype="<f8"))
    create_checked(g, "acceptance", np.asarray(posterior.acceptance, dtype="<f8"))
