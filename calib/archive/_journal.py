"""The journals beside an archive and its writer lock.

Both journals are append-only logs of CRC-framed records (:func:`_frame`,
:func:`_parse_frames`), so that a write cut short by a kill or a full disk is recognised
and ignored, whichever journal it hit:

- ``<archive>.journal``: the runs journal, one frame of JSON per finished run
  (:func:`_encode`, :func:`_decode_journal`; journals written before the framing was
  shared, one JSON line and its CRC per run, are still read); its ``flock`` is the one
  writer lock of the archive (:func:`_lock_writer`), dropped by a forked child at once;
- ``<archive>.chainlog``: the chain journal, one binary frame per checkpoint between
  rewrites of the file (:func:`_encode_chain_record`, :func:`_parse_chainlog`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._h5 import _RNG_WORDS, ArchiveError, _json_default

# ---------------------------------------------------------------------- the framing
# A frame: head | body | CRC-32 (zlib, <I) of head and body. The head is a little-endian
# struct that starts with an 8-byte magic and a uint32 version, then the codec's own
# fields, and ends with the body's length in bytes (uint64). The magic lets a reader find
# the frames that follow a damaged one (telling corruption from a torn last write).
_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class _Framing:
    """The frame head of one journal: its magic, version and head layout."""

    magic: bytes
    version: int
    head: struct.Struct  # "<8sI" + the codec's fields + "Q"


def _frame(kind: _Framing, fields: tuple[int, ...], parts: Sequence[Any]) -> bytes:
    """One frame: the head of ``fields``, the body ``parts`` (bytes-like), its CRC."""
    views = [memoryview(p).cast("B") for p in parts]
    head = kind.head.pack(kind.magic, kind.version, *fields, sum(v.nbytes for v in views))
    crc = zlib.crc32(head)
    for v in views:
        crc = zlib.crc32(v, crc)
    return b"".join([head, *views, _CRC.pack(crc)])


def _frame_at(kind: _Framing, data: bytes, at: int) -> tuple[tuple[int, ...], int, int] | None:
    """``(fields, body start, body end)`` of the whole, CRC-checked frame at ``at``, or
    ``None``."""
    if len(data) - at < kind.head.size + _CRC.size:
        return None
    magic, version, *fields, size = kind.head.unpack_from(data, at)
    body = at + kind.head.size
    if magic != kind.magic or version != kind.version or body + size + _CRC.size > len(data):
        return None
    (crc,) = _CRC.unpack_from(data, body + size)
    if zlib.crc32(memoryview(data)[at : body + size]) != crc:
        return None
    return tuple(fields), body, body + size


def _parse_frames(
    kind: _Framing,
    data: bytes,
    decode: Callable[[tuple[int, ...], bytes, int, int], Any],
    path: Path,
    what: str,
) -> tuple[list[Any], int]:
    """The decoded whole frames of a journal and the offset after the last of them.

    ``decode(fields, data, start, end)`` turns a frame's body ``data[start:end]`` into a
    record, or returns ``None`` when it makes no sense (the frame then counts as damaged).
    A damaged frame at the end is a write cut short (a kill, a full disk) and it and what
    follows are ignored; a damaged frame followed by a whole one is corruption.

    Raises
    ------
    ArchiveError
        For a damaged frame followed by a whole one; ``what`` names the journal.
    """

    def whole(at: int) -> tuple[Any, int] | None:
        found = _frame_at(kind, data, at)
        if found is None:
            return None
        fields, start, end = found
        rec = decode(fields, data, start, end)
        return None if rec is None else (rec, end + _CRC.size)

    records, at = [], 0
    while at < len(data):
        got = whole(at)
        if got is None:
            nxt = data.find(kind.magic, at + 1)
            while nxt != -1:
                if whole(nxt) is not None:
                    raise ArchiveError(
                        f"{what} '{path}' is corrupt at line {len(records) + 1}: the record "
                        f"at byte {at} is damaged but whole records follow it"
                    )
                nxt = data.find(kind.magic, nxt + 1)
            break
        records.append(got[0])
        at = got[1]
    return records, at


def _append(fd: int, data: bytes, fsync: bool) -> None:
    """Write all of ``data`` at ``fd``'s offset; ``fsync`` it when asked."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if fsync:
        os.fsync(fd)


# ---------------------------------------------------------------------- the runs journal
# <archive>.journal: a header frame ({"kind": "header", "schema", "design"}) written by
# each fold, then one frame per finished run. head <8s I Q>: magic, version, body bytes;
# body: UTF-8 JSON of {"i", "status", "y", "error", "elapsed", "attempts", "t"}.
_RUNS = _Framing(b"calibRJ\x00", 1, struct.Struct("<8sIQ"))


def _encode(obj: dict[str, Any]) -> bytes:
    """The runs journal's frame of one record (or of its header)."""
    return _frame(_RUNS, (), [json.dumps(obj, separators=(",", ":"), allow_nan=True).encode()])


def _decode_run(fields: tuple[int, ...], data: bytes, start: int, end: int) -> dict | None:
    try:
        obj = json.loads(data[start:end].decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def _decode_lines(data: bytes, path: Path) -> list[dict]:
    """The records of a runs journal in the format before the shared framing: one line of
    JSON, a tab and the JSON's CRC-32 in hex per record. A torn last line is dropped, every
    other line must check."""
    lines = data.split(b"\n")
    # the text after the last newline is an unfinished write (the process was killed)
    records = []
    for k, raw in enumerate(lines[:-1]):
        try:
            payload, crc = raw.decode().rsplit("\t", 1)
            ok = int(crc, 16) == zlib.crc32(payload.encode())
            obj = json.loads(payload) if ok else None
        except (ValueError, UnicodeDecodeError):
            ok, obj = False, None
        if not ok or not isinstance(obj, dict):
            raise ArchiveError(f"journal '{path}' is corrupt at line {k + 1}")
        records.append(obj)
    return records


def _decode_journal(data: bytes, path: Path) -> tuple[dict | None, list[dict]]:
    """Header and records of a runs journal; a torn last record is dropped.

    Raises
    ------
    ArchiveError
        If a record other than the last is damaged.
    """
    if data.startswith(b"{"):
        # written before the framing was shared (a resume folds it into the new format)
        objs = _decode_lines(data, path)
    else:
        objs, _ = _parse_frames(_RUNS, data, _decode_run, path, "journal")
    header, records = None, []
    for obj in objs:
        if obj.get("kind") == "header":
            header = obj
        else:
            records.append(obj)
    return header, records


def _journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


# ---------------------------------------------------------------------- the writer lock
#: The writer locks this process holds: descriptor -> (st_dev, st_ino) of the journal.
_WRITER_LOCKS: dict[int, tuple[int, int]] = {}
#: Those of them whose journal file this process created (see :func:`_unlock_writer`).
_CREATED: set[int] = set()
#: The outermost folder a lock created for its archive (removed again if left empty).
_MADE_DIRS: dict[int, Path] = {}


def _lock_writer(path: Path) -> int:
    """Open the runs journal of ``path`` and take its exclusive lock: the one writer lock of
    an archive, held by the run engine and the chain writer alike. Returns the descriptor;
    release it with :func:`_unlock_writer`.

    The lock belongs to this process alone: a child made by ``fork`` (a process-pool
    worker) closes its copy at once (:func:`_drop_inherited_locks`)."""
    made = next((d for d in reversed(path.parent.parents) if not d.exists()), None)
    if made is None and not path.parent.exists():
        made = path.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    jpath = _journal_path(path)
    for _ in range(100):
        # not inheritable across exec (Python's default, O_CLOEXEC); fork is handled below
        try:
            fd = os.open(jpath, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            created = True
        except FileExistsError:
            try:
                fd = os.open(jpath, os.O_RDWR)
            except FileNotFoundError:
                continue  # removed by a writer that gave it up: make it afresh
            created = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ArchiveError(
                f"archive '{path}' is being written by another process (its journal "
                f"'{jpath}' is locked)"
            ) from None
        st = os.fstat(fd)
        with contextlib.suppress(FileNotFoundError):
            now = os.stat(jpath)
            if (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
                _WRITER_LOCKS[fd] = (st.st_dev, st.st_ino)
                if created:
                    _CREATED.add(fd)
                if made is not None:
                    _MADE_DIRS[fd] = made
                return fd
        # the journal was removed (:func:`_unlock_writer`) between our open and our lock:
        # a lock on the removed file would keep nobody out; lock the one there now
        os.close(fd)
    raise ArchiveError(f"archive '{path}': its journal '{jpath}' keeps being replaced")


def _unlock_writer(fd: int, archive: Path | None = None) -> None:
    """Release a lock taken by :func:`_lock_writer` (closing its descriptor).

    With ``archive`` given, a journal this lock created is removed first if it is still
    empty and ``archive`` does not exist: a call refused before it wrote anything leaves
    no file behind (issue 13, item 10). It is removed while the lock is held, and a writer
    that opened it meanwhile sees that it is gone (:func:`_lock_writer`). A no-op in a
    forked child, whose copy was already closed at the fork."""
    if _WRITER_LOCKS.pop(fd, None) is None:
        return
    made = _MADE_DIRS.pop(fd, None)
    try:
        if fd in _CREATED and archive is not None and not archive.exists():
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_size == 0:
                    _journal_path(archive).unlink()
                    # and the folders made for it, innermost first, while they are empty
                    folder = archive.parent
                    while made is not None and folder != made.parent:
                        folder.rmdir()
                        folder = folder.parent
    finally:
        _CREATED.discard(fd)
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
    _CREATED.clear()
    _MADE_DIRS.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


# ---------------------------------------------------------------------- the chain journal
# <archive>.chainlog: one frame per checkpoint between rewrites of the file.
#   head  <8s I q q q q Q>: magic, version, n_start, n_rows, n_walkers, n_dim, body bytes
#   body  chain rows (n_rows, n_walkers, n_dim) <f8, log_prob (n_rows, n_walkers) <f8,
#         accepted (n_walkers,) <i8, rng_key (624,) <i8, then UTF-8 JSON of
#         {"rng": [name, pos, has_gauss, cached_gaussian], "stopped_early", "info"}
_CHAIN = _Framing(b"calibCL\x00", 1, struct.Struct("<8sIqqqqQ"))


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
    return _frame(_CHAIN, (n_start, n - n_start, w, d), [*arrays, meta])


@dataclass
class _ChainRecord:
    n_start: int
    chain: np.ndarray
    log_prob: np.ndarray
    accepted: np.ndarray
    rng_key: np.ndarray
    meta: dict[str, Any]
    end: int  # offset of the byte after the record in the journal


def _decode_chain(
    fields: tuple[int, ...], data: bytes, start: int, end: int
) -> _ChainRecord | None:
    n0, rows, w, d = fields
    if n0 < 1 or rows < 1 or w < 1 or d < 1:
        return None
    counts = (rows * w * d, rows * w, w, _RNG_WORDS)
    if end - start < 8 * sum(counts):
        return None
    parts, off = [], start
    for count, dtype in zip(counts, ("<f8", "<f8", "<i8", "<i8")):
        parts.append(np.frombuffer(data, dtype=dtype, count=count, offset=off))
        off += 8 * count
    try:
        meta = json.loads(data[off:end].decode())
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    return _ChainRecord(
        n0,
        parts[0].reshape(rows, w, d),
        parts[1].reshape(rows, w),
        parts[2],
        parts[3],
        meta,
        end + _CRC.size,
    )


def _parse_chainlog(data: bytes, path: Path) -> tuple[list[_ChainRecord], int]:
    """The whole records of a chain journal and the offset after the last of them.

    A damaged record at the end is a write cut short (a kill, a full disk) and is ignored;
    a damaged record followed by a whole one is corruption."""
    return _parse_frames(_CHAIN, data, _decode_chain, path, "chain journal")
