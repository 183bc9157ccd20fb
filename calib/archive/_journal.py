"""The journals beside an archive and its writer lock.

- ``<archive>.journal``: the runs journal, one CRC-framed JSON line per finished run
  (:func:`_encode`, :func:`_decode_journal`); its ``flock`` is the one writer lock of the
  archive (:func:`_lock_writer`), dropped by a forked child at once;
- ``<archive>.chainlog``: the chain journal, one CRC-checked binary record per checkpoint
  between rewrites of the file (:func:`_encode_chain_record`, :func:`_parse_chainlog`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._h5 import _RNG_WORDS, ArchiveError, _json_default


# ---------------------------------------------------------------------- the runs journal
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


def _journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


# ---------------------------------------------------------------------- the writer lock
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
