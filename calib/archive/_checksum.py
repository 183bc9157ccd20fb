"""Checksums of the archive's datasets (issue 13, item 2: bit rot must not load silently).

Every dataset calib writes carries an attribute :data:`CRC_ATTR`: the CRC-32 (zlib) of its
shape and its values as a reader gets them back (numbers as little-endian bytes; strings
as their UTF-8 bytes, each preceded by its length). Every read of a dataset goes through
:func:`read_checked`, which recomputes it; a mismatch is an :class:`ArchiveError` naming
the file and the dataset. A dataset without the attribute (an archive written before
checksums, or one edited with h5py) is read unchecked, and gets its checksum when calib
next rewrites the file (:func:`copy_checked`).

Why a CRC beside each dataset rather than HDF5's fletcher32 filter: the filter needs chunked
storage, which scalars cannot have; for variable-length strings (``/runs/status`` and
``error``) it covers only the references into the global heap, not the text; and a
CRC of the values read back is checked the same way whatever the storage. CRC-32 detects
every error of up to 32 consecutive bits and all but one in 2**32 of the others.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ._h5 import ArchiveError

__all__ = [
    "CRC_ATTR",
    "carry_checked",
    "copy_checked",
    "create_checked",
    "digest",
    "read_checked",
]

#: The attribute that holds a dataset's CRC-32 (uint32).
CRC_ATTR = "crc32"


def digest(value: Any) -> int:
    """CRC-32 of an array's shape and values, as stored (see the module docstring).

    ``str`` and ``bytes`` elements digest alike (h5py gives back UTF-8 ``bytes`` for the
    ``str`` a writer passed), so a writer digests what it writes and a reader what it read.
    """
    if isinstance(value, (bytes, str)):  # a scalar string (numpy would drop trailing NULs)
        value = np.array(value, dtype=object)
    a = np.asarray(value)
    crc = zlib.crc32(repr(tuple(int(n) for n in a.shape)).encode())
    if a.dtype.kind in "OSU":
        for item in a.ravel():
            b = item if isinstance(item, bytes) else str(item).encode()
            crc = zlib.crc32(b, zlib.crc32(len(b).to_bytes(8, "little"), crc))
        return crc
    # the bytes of the little-endian values: the same on every machine
    return zlib.crc32(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")), crc)


def create_checked(g: h5py.Group, name: str, data: Any, **kwargs: Any) -> h5py.Dataset:
    """``g.create_dataset(name, data=data, **kwargs)`` with its :data:`CRC_ATTR`."""
    ds = g.create_dataset(name, data=data, **kwargs)
    if ds.dtype.kind in "OSU" or h5py.check_string_dtype(ds.dtype) is not None:
        stored = np.asarray(data, dtype=object)
    else:
        stored = np.asarray(data, dtype=ds.dtype)  # what a reader gets back
    ds.attrs[CRC_ATTR] = np.uint32(digest(stored))
    return ds


def _stored_crc(ds: h5py.Dataset, path: Path) -> int | None:
    if CRC_ATTR not in ds.attrs:
        return None
    v = ds.attrs[CRC_ATTR]
    if not (np.ndim(v) == 0 and isinstance(v, (int, np.integer)) and 0 <= int(v) < 2**32):
        raise ArchiveError(
            f"archive '{path}': {ds.name} attribute '{CRC_ATTR}' should be a 32-bit "
            f"checksum, got {v!r}: the file is damaged"
        )
    return int(v)


def read_checked(ds: h5py.Dataset, path: Path) -> Any:
    """The value of ``ds`` (``ds[()]``), its checksum verified when it has one.

    Raises
    ------
    ArchiveError
        If the dataset cannot be read or its values do not match its checksum; the
        message names the file and the dataset.
    """
    want = _stored_crc(ds, path)
    try:
        value = ds[()]
    except Exception as exc:  # noqa: BLE001 - whatever h5py raises on damaged storage
        raise ArchiveError(
            f"archive '{path}': {ds.name} cannot be read ({type(exc).__name__}: {exc}): the "
            f"file is damaged"
        ) from None
    if want is not None:
        got = digest(value)
        if got != want:
            raise ArchiveError(
                f"archive '{path}': {ds.name} fails its checksum (CRC-32 stored {want:08x}, "
                f"computed {got:08x}): its stored values changed since calib wrote them (bit "
                f"rot, a bad copy, an edit); restore the file from a copy"
            )
    return value


def check_tree(obj: h5py.Group | h5py.Dataset, path: Path) -> dict[str, int]:
    """Verify every dataset under ``obj`` (:func:`read_checked`); return the digest of
    each one, by name relative to ``obj`` ("" for ``obj`` itself)."""
    if isinstance(obj, h5py.Dataset):
        return {"": digest(read_checked(obj, path))}
    found: dict[str, int] = {}

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset):
            found[name] = digest(read_checked(item, path))

    obj.visititems(visit)
    return found


def copy_checked(src: h5py.File, name: str, dst: h5py.File, path: Path) -> None:
    """Copy ``src[name]`` into ``dst`` after verifying every dataset in it, and give the
    datasets that had no checksum (an older archive) the one of what was read.

    A rewrite therefore never copies corruption forward: a damaged dataset stops it with
    an :class:`ArchiveError`, and the previous file stays in place.
    """
    digests = check_tree(src[name], path)
    src.copy(src[name], dst, name=name)
    copied = dst[name]
    for rel, crc in digests.items():
        ds = copied if rel == "" else copied[rel]
        if CRC_ATTR not in ds.attrs:
            ds.attrs[CRC_ATTR] = np.uint32(crc)


def carry_checked(f: h5py.File, path: Path, skip: tuple[str, ...]) -> h5py.File:
    """The groups of ``f`` a writer does not own (all but ``skip``) and the root's
    attributes, verified (:func:`copy_checked`), in an in-memory file.

    A writer holds them from its ``open`` on, and every rewrite copies them from there: it
    never reopens the archive, which another program's write handle (an ``h5py.File`` in
    mode ``'a'``) would make HDF5 refuse mid-run (issue 13, item 12). The caller closes it.
    """
    mem = h5py.File(io.BytesIO(), "w")
    try:
        for key, value in f.attrs.items():
            mem.attrs[key] = value
        for name in f:
            if name not in skip:
                copy_checked(f, name, mem, path)
    except BaseException:
        mem.close()
        raise
    return mem


def _dataset(g: h5py.Group, key: str, path: Path, ndim: int | None, kind: str = "f") -> np.ndarray:
    """A numeric dataset of ``g`` checked for presence, rank, dtype kind and checksum."""
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
    return read_checked(ds, path)
