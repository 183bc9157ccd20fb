"""The chain of a study: :class:`ChainBackend`, the emcee backend the sampler writes
through, the ``/chain`` group's writer and validating reader, and :func:`read_chain`, which
applies the chain journal's whole records after the file's chain.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import emcee
import h5py
import numpy as np

from ..checkpoint import Checkpoint
from ._checksum import _dataset, create_checked
from ._h5 import (
    _RNG_WORDS,
    _STR,
    ArchiveError,
    _attr_num,
    _attr_str,
    _check_meta,
    _json_default,
    _open_h5,
    _strs,
)
from ._journal import _chainlog_bytes, _chainlog_path, _parse_chainlog

if TYPE_CHECKING:
    from .study import StudyWriter


class ChainBackend(emcee.backends.Backend):
    """emcee's in-memory chain, checkpointed into a study archive as it grows.

    emcee stores every step through :meth:`save_step`, in memory as its own
    :class:`emcee.backends.Backend` does (the stopping rule reads the whole chain). The
    sampler ends its stretches of steps on multiples of :attr:`every`, and when a checkpoint
    is :meth:`due` it hands over what emcee does not hold (its settings and the move's
    adapted state) to :meth:`checkpoint`, which passes the checkpoint to ``writer``: a
    :class:`~calib.archive.study.StudyWriter` appends the new steps to the chain journal, or
    rewrites the file once the journal would hold as many steps as the file (at doubling
    chain lengths). The checkpoint that completes the chain is kept back until
    :meth:`finish` writes it with the posterior's summaries.

    Parameters
    ----------
    writer : StudyWriter, optional
        Where checkpoints go: an object with ``checkpoint(cp, posterior=None)``. None keeps
        the chain in memory only, as emcee's own backend.
    every : int
        Steps between checkpoints (the sampler checks it).
    extra : dict, optional
        Put into every checkpoint's ``info`` where the sampler's lacks the key; a
        ``n_walkers`` of None there becomes the number of walkers.
    hold_last : bool
        Keep the checkpoint that completes the chain for :meth:`finish` (True), or pass it to
        ``writer`` at once as the others.

    Examples
    --------
    The sampler on its own (``run_sampler(..., backend=ChainBackend())``) keeps the chain in
    memory; ``Calibrator.sample(archive=...)`` opens a :class:`StudyWriter` on the archive
    and passes ``ChainBackend(writer, every=checkpoint_every)``.
    """

    def __init__(
        self,
        writer: StudyWriter | Any = None,
        every: int = 500,
        extra: dict[str, Any] | None = None,
        hold_last: bool = True,
    ):
        super().__init__()
        self.writer = writer
        self.every = every
        self.extra = dict(extra or {})
        self.hold_last = bool(hold_last)
        self.last: Checkpoint | None = None  # the latest checkpoint made

    @property
    def records(self) -> bool:
        """Whether checkpoints are taken (a writer was given)."""
        return self.writer is not None

    def restore(self, cp: Checkpoint) -> None:
        """Refill the backend with a stored chain, its acceptance counts and its generator
        state, so that a sampler built on it continues that chain exactly."""
        n, w, d = cp.chain.shape
        self.reset(w, d)
        self.grow(n, None)
        self.chain[:n] = cp.chain
        self.log_prob[:n] = cp.log_prob
        self.accepted[:] = cp.accepted
        self.iteration = n
        self.random_state = cp.rng_state

    def due(self, ending: bool) -> bool:
        """Whether the sampler owes a checkpoint now: every :attr:`every` steps, and when the
        chain ends (``ending``: budget reached, stopped by the convergence rule or the time
        budget)."""
        return self.records and (ending or self.iteration % self.every == 0)

    def snapshot(self, info: dict[str, Any], stopped_early: bool) -> Checkpoint:
        """The chain so far with the sampler's ``info`` (:attr:`extra` merged in)."""
        n = self.iteration
        info = {**info, **{k: v for k, v in self.extra.items() if k not in info}}
        if "n_walkers" in self.extra and info.get("n_walkers") is None:
            info["n_walkers"] = int(self.nwalkers)
        return Checkpoint(
            chain=self.chain[:n],
            log_prob=self.log_prob[:n],
            accepted=np.asarray(self.accepted, dtype=np.int64).copy(),
            rng_state=self.random_state,
            stopped_early=stopped_early,
            info=info,
        )

    def checkpoint(self, info: dict[str, Any], stopped_early: bool, completes: bool) -> None:
        """Record the chain so far: the sampler's ``info`` (settings, ``"move_state"``) and
        whether the convergence rule stopped it; ``completes``: the chain is done (its
        checkpoint waits for :meth:`finish` when :attr:`hold_last`).

        Raises
        ------
        ArchiveError
            If the writer cannot write it (the previous checkpoint stays readable).
        """
        cp = self.snapshot(info, stopped_early)
        self.last = cp
        if not (self.hold_last and completes):
            self.writer.checkpoint(cp)

    def finish(self, posterior: Any) -> None:
        """Write the last checkpoint with the summaries of ``posterior`` (nothing if no
        checkpoint was made: a resumed chain that was already complete)."""
        if self.last is not None:
            self.writer.checkpoint(self.last, posterior=posterior)


def _write_chain(f: h5py.File, cp: Checkpoint, config: dict[str, Any]) -> None:
    g = f.create_group("chain")
    create_checked(g, "chain", np.asarray(cp.chain, dtype="<f8"))
    create_checked(g, "log_prob", np.asarray(cp.log_prob, dtype="<f8"))
    create_checked(g, "accepted", np.asarray(cp.accepted, dtype="<i8"))
    name, keys, pos, has_gauss, cached = cp.rng_state
    create_checked(g, "rng_key", np.asarray(keys, dtype="<u4"))
    g.attrs["rng_bit_generator"] = str(name)
    g.attrs["rng_pos"] = int(pos)
    g.attrs["rng_has_gauss"] = int(has_gauss)
    g.attrs["rng_cached_gaussian"] = float(cached)
    g.attrs["iteration"] = int(cp.n_steps)
    g.attrs["stopped_early"] = int(bool(cp.stopped_early))
    g.attrs["labels"] = np.array(config["labels"], dtype=_STR)
    g.attrs["info"] = json.dumps(cp.info, default=_json_default)


def _check_rng_key(key: np.ndarray, where: str) -> None:
    """A stored MT19937 key: 32-bit words, not all zero. An all-zero state is a fixed point
    of the generator (it returns 0 for ever), which made a resumed DE move loop for ever
    looking for a distinct pair of walkers (issue 13, item 6)."""
    if (key < 0).any() or (key > 0xFFFFFFFF).any():
        raise ArchiveError(f"{where} holds values outside 32-bit words: not an MT19937 state")
    if not key.any():
        raise ArchiveError(
            f"{where} is all zeros: not a usable MT19937 state (the generator would return "
            f"0 for ever); the file is damaged"
        )


#: The largest unconstrained coordinate a chain can hold. Beyond it the square of the
#: position overflows float64 (1e155**2 = inf), so no Gaussian prior, log-Jacobian or
#: quadratic form gives it a finite log-posterior: such a value was not drawn by a sampler.
_MAX_U = 1e150


def _check_values(
    chain: np.ndarray,
    log_prob: np.ndarray,
    where: str,
    names: tuple[str, str],
    first_step: int = 0,
) -> None:
    """Refuse positions and log-probabilities a sampler cannot have written.

    A position is finite and within ±:data:`_MAX_U`; a log-probability is finite or −inf
    (a walker the log-posterior rejects), never NaN or +inf (emcee would accept every move
    towards +inf, and NaN is never written). ``where`` names the file (or journal
    record) and ``names`` the two arrays; the message gives the first bad value and where
    it is (issue 13, item 3).
    """
    bad = ~np.isfinite(chain) | (np.abs(chain) > _MAX_U)
    if bad.any():
        i, w, d = (int(k) for k in np.argwhere(bad)[0])
        v = chain[i, w, d]
        what = "NaN or inf" if not np.isfinite(v) else f"a value beyond ±{_MAX_U:g}"
        raise ArchiveError(
            f"{where} {names[0]} contains {what}: {float(v)!r} at step {first_step + i}, walker {w}, "
            f"coordinate {d} (an unconstrained position no sampler reaches); the file is "
            f"damaged or was edited"
        )
    bad = np.isnan(log_prob) | (log_prob == np.inf)
    if bad.any():
        i, w = (int(k) for k in np.argwhere(bad)[0])
        v = log_prob[i, w]
        raise ArchiveError(
            f"{where} {names[1]} contains {'NaN' if np.isnan(v) else '+inf'}"
            f": {float(v)!r} at step {first_step + i}, walker {w} (a log-posterior is finite or "
            f"-inf); the file is damaged or was edited"
        )


def _read_checkpoint(f: h5py.File, path: Path) -> Checkpoint:
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
    _check_values(chain, log_prob, f"archive '{path}':", ("/chain/chain", "/chain/log_prob"))
    _check_rng_key(key, f"archive '{path}': /chain/rng_key")
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


def _read_chain(f: h5py.File, path: Path, log: bytes) -> tuple[Checkpoint, int, int]:
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
        _check_values(
            rec.chain,
            rec.log_prob,
            f"chain journal '{jpath}': the record at step {rec.n_start}:",
            ("chain", "log_prob"),
            first_step=rec.n_start,
        )
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
    _check_rng_key(last.rng_key, f"chain journal '{jpath}': the last record's rng_key")
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


def read_chain(path: str | os.PathLike) -> Checkpoint:
    """The last checkpoint of an archive's chain (:class:`calib.checkpoint.Checkpoint`).

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
