"""The study archive: one self-describing HDF5 file per study, and its write path.

This package owns the layout of the file (docs/archive.md describes it field by field).
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

1. every finished run is appended as one CRC-framed record to a *journal* beside the file
   (``<archive>.journal``; the JSON of the run, :mod:`._journal`), written and ``fsync``-ed
   before the next result is taken;
2. from time to time and when the design ends, the journal is *folded*: a complete new
   HDF5 file is built in memory, written beside the old one (``<archive>.tmp``), fsync-ed,
   and moved over it with :func:`os.replace` (atomic on POSIX;
   :func:`._h5.replace_atomically`, the one rewrite path of the package); only then is the
   journal emptied.

A kill at any moment therefore leaves the last complete HDF5 file plus a journal whose
records are all whole except possibly the last, which its CRC rejects. :func:`read_runs`
merges both, so every run that finished before the kill is read back; replaying a line
already folded is harmless because a record carries its finish time and the newer value
wins. One process at a time may write an archive (an ``flock`` on the journal).

The chain of a study has its own journal, ``<archive>.chainlog``: the sampler writes
through :class:`.chain.ChainBackend` (an emcee backend), whose checkpoints append the new
steps to it as one binary record in the same CRC framing, and the HDF5 file is rewritten only
when the journal would hold as many steps as the file (so the rewrites happen at doubling
sizes and the total cost of checkpointing is linear in the chain length), and at the end.
Every reader of the chain applies the journal's whole records after the file's chain
(:func:`_read_chain`).

Nothing in the file is pickled: strings, integer and float arrays only. Every dataset
carries a CRC-32 checked on load (:mod:`._checksum`), and values calib never writes (a
chain position of 1e300, an unknown run status) are refused with the dataset and the value
named.

Storage only: nothing here imports the calibrator, the sampler, the run engine or
``calib.config`` (tests/calib/test_architecture.py). The pipeline writes through
:class:`RunArchive`, :class:`~.chain.ChainBackend` and :class:`StudyWriter`, and reads
through :func:`read_runs`, :func:`read_chain` and :func:`read_study`; :func:`calib.load`
(in :mod:`calib.config`) rebuilds the calibration from what :func:`read_study` returns.

Modules
-------
- :mod:`._h5`: schema constants, ``/meta``, typed readers, the atomic replace path;
- :mod:`._checksum`: the CRC-32 beside every dataset, written with it and checked on every
  read and copy (bit rot is an :class:`ArchiveError` naming the dataset);
- :mod:`._journal`: the one CRC-framed append log, the runs and chain payload codecs, and
  the writer lock;
- :mod:`.runs`: ``/runs``, :func:`read_runs` and the writer :class:`RunArchive`;
- :mod:`.study`: :class:`StudyWriter` (``/simulator``, ``/emulator``, ``/campaigns``,
  ``/posterior`` and the chain checkpoints);
- :mod:`.chain`: :class:`~.chain.ChainBackend` (the emcee backend the sampler writes
  through), ``/chain`` and :func:`read_chain`;
- :mod:`.loading`: :func:`read_study`, the whole study read back as plain data.
"""

from __future__ import annotations

# the public names, and the ones calib and its tests import from here (names not in
# __all__ are re-exported with "as": the import is the export)
from ._h5 import FORMAT as FORMAT
from ._h5 import SCHEMA_VERSION, STATUSES, ArchiveError, ArchiveWarning, describe, read_meta
from ._journal import _lock_writer as _lock_writer
from ._journal import _unlock_writer as _unlock_writer
from .chain import ChainBackend as ChainBackend
from .chain import _read_chain as _read_chain
from .chain import read_chain as read_chain
from .loading import read_study as read_study
from .runs import RunArchive, RunsRecord, read_runs
from .study import StudyWriter as StudyWriter

__all__ = [
    "ArchiveError",
    "ArchiveWarning",
    "SCHEMA_VERSION",
    "STATUSES",
    "RunsRecord",
    "RunArchive",
    "read_runs",
    "read_meta",
    "describe",
]
