"""Sampling into an archive: :func:`sample_into` runs the sampler with a
:class:`StudyWriter` checkpointing its chain, and resumes from a stored chain.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ._h5 import ArchiveError
from .study import StudyWriter


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

    from ..sampling import posterior_from_chain, run_sampler

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
