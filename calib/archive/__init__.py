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

Modules
-------
- :mod:`._h5`: schema constants, ``/meta``, typed readers, shared file helpers;
- :mod:`._journal`: the runs and chain journals' codecs and the writer lock;
- :mod:`.runs`: ``/runs``, :func:`read_runs` and the writer :class:`RunArchive`;
- :mod:`.study`: :class:`StudyWriter` (``/simulator``, ``/emulator``, ``/campaigns``,
  ``/posterior`` and the chain checkpoints);
- :mod:`.chain`: reading and writing ``/chain`` (:func:`read_chain`);
- :mod:`.sample`: :func:`sample_into`, the sampler driven into an archive;
- :mod:`.loading`: :func:`load`, the posterior and calibration rebuilt from an archive.
"""

from __future__ import annotations

# the public names, and the ones calib and its tests import from here (names not in
# __all__ are re-exported with "as": the import is the export)
from ._h5 import FORMAT as FORMAT
from ._h5 import SCHEMA_VERSION, STATUSES, ArchiveError, describe, read_meta
from ._journal import _lock_writer as _lock_writer
from ._journal import _unlock_writer as _unlock_writer
from .chain import _read_chain as _read_chain
from .chain import read_chain as read_chain
from .loading import load as load
from .runs import RunArchive, RunsRecord, read_runs
from .sample import sample_into as sample_into
from .study import StudyWriter as StudyWriter
from .study import configuration as configuration

__all__ = [
    "ArchiveError",
    "SCHEMA_VERSION",
    "STATUSES",
    "RunsRecord",
    "RunArchive",
    "read_runs",
    "read_meta",
    "describe",
]
