"""The schema of the archive file: its constants, the ``/meta`` group, typed readers of
attributes and datasets, and the file-system helpers every writer shares, among them the
one way a new version of the file replaces the old (:func:`replace_atomically`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import os
import platform
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..runset import STATUSES as STATUSES

#: Version of the file layout; bumped when a reader of an older version could misread it.
SCHEMA_VERSION = 1
FORMAT = "calib study archive"

_STR = h5py.string_dtype(encoding="utf-8")
_RNG_WORDS = 624  # MT19937 key length


class ArchiveError(Exception):
    """The archive cannot be read or written as asked (corrupt, wrong design, locked)."""


class ArchiveWarning(UserWarning):
    """The archive was read, with a caveat the message states (e.g. a burn-in longer than
    an interrupted chain)."""


# ---------------------------------------------------------------------- helpers
def _now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


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


def replace_atomically(
    path: Path,
    build: Callable[[h5py.File], None],
    *,
    fsync: bool = True,
    error: Callable[[OSError], Exception] | None = None,
) -> None:
    """Replace the file ``path`` by the HDF5 file that ``build`` fills, atomically.

    ``build(f)`` fills an empty ``h5py.File`` held in memory; its image is written to
    ``<path>.tmp`` with plain ``os.write``, fsync-ed, moved over ``path`` with
    :func:`os.replace` (atomic on POSIX), and the directory is fsync-ed. The HDF5 library
    never meets a failing write (a full disk can crash the process inside it); a kill at
    any moment leaves either the old file or the new one.

    Parameters
    ----------
    path : Path
        The file to replace (created if missing).
    build : callable
        ``build(f)`` writes the new file's content into ``f``.
    fsync : bool
        Flush the new file and the directory to the disk (off only for tests and
        benchmarks that do not need the power-cut guarantee).
    error : callable, optional
        ``error(exc)`` makes the exception raised for an ``OSError`` while writing or
        moving the file; default: an :class:`ArchiveError` naming the file.

    Raises
    ------
    ArchiveError
        (or what ``error`` returns) if the new file cannot be written or moved into place;
        ``path`` is then left as it was and ``<path>.tmp`` removed.
    """
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        build(f)
    tmp = path.with_name(path.name + ".tmp")
    try:
        # O_TRUNC: a tmp file left by a kill during an earlier replace is overwritten
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = buf.getbuffer()
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if error is not None:
            raise error(exc) from exc
        raise ArchiveError(
            f"archive '{path}': its new content could not be written to '{tmp}' and moved "
            f"into place ({exc}); is the disk full? '{path}' is as it was"
        ) from exc
    if fsync:
        _fsync_dir(path.parent)


def _strs(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _check_writable(path: Path) -> None:
    """Refuse to write an existing archive whose file is read-only, or a directory.

    Every rewrite builds a new file and moves it over the old one, which a read-only file
    does not prevent (the directory is what counts): without this check a file the user
    protected was silently replaced, and came back writable (issue 13, item 4). The mode
    bits are read rather than ``os.access``, which says yes to root.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        # refused before the writer lock, which would put a journal beside the directory
        raise ArchiveError(
            f"archive '{path}' is a directory: give the path of an HDF5 file, e.g. "
            f"'{path / 'study.h5'}'"
        )
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise ArchiveError(
            f"archive '{path}' is read-only (mode {stat.filemode(mode)}): calib would "
            f"replace it when it writes; make it writable (chmod u+w) to add to it, or give "
            f"another archive path (calib.load reads it as it is)"
        )


#: waits (seconds) before the retries of an open that another program's HDF5 lock refused
_LOCK_RETRIES = (0.2, 0.5, 1.0, 2.0)


def _open_h5(path: Path, mode: str = "r") -> h5py.File:
    for wait in (*_LOCK_RETRIES, None):
        try:
            f = h5py.File(path, mode)
            break
        except OSError as exc:
            locked = "unable to lock file" in str(exc)
            if locked and wait is not None:
                time.sleep(wait)  # another program's handle: often a moment's look
                continue
            if locked:
                raise ArchiveError(
                    f"archive '{path}' is open for writing in another program (HDF5's file "
                    f"lock refused it for {sum(_LOCK_RETRIES):.1f} s): close that handle "
                    f"(an h5py.File in mode 'a' or 'r+', a viewer) and run again; what was "
                    f"written before is intact"
                ) from None
            raise ArchiveError(f"archive '{path}' cannot be opened as HDF5: {exc}") from None
    try:
        _refuse_links(f, path)
    except BaseException:
        f.close()
        raise
    return f


def _refuse_links(f: h5py.File, path: Path) -> None:
    """Refuse external and soft links: calib writes neither, and following an external
    link would read (or, on a rewrite, copy) another file named by this one (issue 13,
    item 4)."""

    def visit(name: str, link: Any) -> tuple[str, Any] | None:
        # returning a value stops the visit (raising inside h5py's callback is not safe)
        if isinstance(link, (h5py.ExternalLink, h5py.SoftLink)):
            return name, link
        return None

    found = f.visititems_links(visit)
    if found is not None:
        name, link = found
        kind = "an external" if isinstance(link, h5py.ExternalLink) else "a soft"
        raise ArchiveError(
            f"archive '{path}': /{name} is {kind} link; calib archives hold none, and it "
            f"is not followed"
        )


def _check_meta(f: h5py.File, path: Path) -> None:
    if "meta" not in f:
        return
    if not isinstance(f["meta"], h5py.Group):
        raise ArchiveError(f"archive '{path}': /meta should be a group")
    if "schema_version" not in f["meta"].attrs:
        return
    # an integer ≥ 1 (issue 13, item 11: "abc" gave a raw ValueError)
    version = _attr_num(f["meta"], "schema_version", path)
    if version < 1:
        raise ArchiveError(
            f"archive '{path}': /meta attribute 'schema_version' is {version}, not a schema "
            f"version (1 or more)"
        )
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


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What an archive holds, without loading it: ``meta`` (:func:`read_meta`), and where
    present ``runs`` (run count per status), ``emulator`` (its class), ``chain`` (shape
    and the ``info`` JSON) and ``posterior`` (True)."""
    from ._checksum import read_checked  # it builds on this module

    out: dict[str, Any] = {"meta": read_meta(path)}
    with _open_h5(Path(path)) as f:
        if "runs" in f:
            status = _strs(read_checked(f["runs"]["status"], Path(path)))
            out["runs"] = {s: status.count(s) for s in sorted(set(status))}
        if "emulator" in f:
            cls = f["emulator"].attrs.get("class", "?")
            out["emulator"] = cls.decode() if isinstance(cls, bytes) else str(cls)
        if "chain" in f:
            info = f["chain"].attrs.get("info", "{}")
            out["chain"] = {
                "shape": tuple(int(n) for n in f["chain"]["chain"].shape),
                "info": json.loads((info.decode() if isinstance(info, bytes) else info) or "{}"),
            }
        out["posterior"] = "posterior" in f
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON-serializable: {type(obj).__name__}")


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
