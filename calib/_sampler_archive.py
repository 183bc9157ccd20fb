"""The sampler driven into a study archive (``Calibrator.sample(archive=...)``): the archive
is opened for writing, its stored chain checked against the request and resumed, and the
sampler writes through a :class:`~calib.archive.chain.ChainBackend` on it.

This lives on the sampling side so that the archive package never imports the sampler: the
archive stores and reads checkpoints, the sampler makes them.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._sampler_posterior import posterior_from_chain
from .archive import ArchiveError, StudyWriter
from .archive.chain import ChainBackend
from .checkpoint import Checkpoint
from .sampling import run_sampler


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
        # what every checkpoint stores beside the sampler's own settings
        extra = {
            "n_walkers": n_walkers,
            "labels": list(calibrator.model.labels),
            "burn": options.get("burn"),
        }
        backend = ChainBackend(writer, every=checkpoint_every, extra=extra)
        post = run_sampler(
            calibrator,
            n_walkers=n_walkers,
            n_steps=n_steps,
            seed=seed,
            progress=progress,
            backend=backend,
            resume=stored,
            **options,
        )
        # the last checkpoint was held back: it is written with the summaries
        backend.finish(post)
        post.info["archive"] = str(writer.path)
        post.info.setdefault("n_walkers", post.n_walkers)
        return post


def _accepted_at(cp: Checkpoint, n: int) -> np.ndarray:
    """Acceptance counts after ``n`` steps; only the final counts are stored, so a shorter
    prefix gets them rescaled (used for the acceptance fraction only)."""
    if n == cp.n_steps:
        return cp.accepted.astype(float)
    return cp.accepted.astype(float) * n / cp.n_steps
