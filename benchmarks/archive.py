"""Study-archive benchmark: checkpoint overhead while sampling, and load time.

1. Overhead: 64 walkers × 20 parameters (a linear simulator, 40 observations, known noise),
   the same seeded run without ``archive=``, with it (checkpoint every 500 steps, fsync on:
   chain journal appends, rewrites of the file at doubling sizes), and with it the way it
   was before the chain journal (every checkpoint a complete rewrite); overhead = extra wall
   time / sampling time without the archive. The time spent inside the checkpoints is also
   measured directly (less noisy than a difference of two runs on a shared machine), split
   into the ``/posterior`` summaries (``Posterior.summary()``, computed once at the end)
   and the writes themselves.
2. Load: an archive whose chain is about 100 MB (written through the archive writer),
   timed through ``calib.load``.

The overhead is measured twice: checkpoints every 500 steps, and every 50 (where
rewriting the whole file at every checkpoint grows as the square of the chain length).
Prints tables and writes benchmarks/results/archive.json. About two minutes on 2 cores.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

import calib
import calib.archive.study as study
from calib import Calibrator, Campaign, Parameter
from calib.archive import StudyWriter
from calib.priors import Normal
from calib.sampling import Checkpoint
from simulators import FunctionSimulator

Q, W = 20, 64


def _linear(X: np.ndarray, T: np.ndarray) -> np.ndarray:
    return (T * X).sum(axis=1, keepdims=True)


def make_calibrator() -> Calibrator:
    rng = np.random.default_rng(0)
    names = tuple(f"x{k}" for k in range(Q))
    sim = FunctionSimulator(
        _linear, names, tuple(f"t{k}" for k in range(Q)), ("y",), vectorized=True
    )
    X = rng.standard_normal((40, Q))
    y = X @ rng.standard_normal(Q) + 0.1 * rng.standard_normal(40)
    return Calibrator(
        sim,
        [Parameter(f"t{k}", prior=Normal(0, 2)) for k in range(Q)],
        [Campaign("A", x=X, y=y, noise_sd=0.1)],
        noise="known",
    )


class _Timed:
    """Wall time spent in StudyWriter.checkpoint and in the /posterior summaries."""

    def __init__(self, rewrite_always: bool):
        self.rewrite_always = rewrite_always
        self.checkpoint_s = self.summary_s = 0.0
        self.full_writes = self.checkpoints = 0

    def __enter__(self) -> _Timed:
        self._saved = StudyWriter.checkpoint, StudyWriter._must_rewrite, study._write_posterior
        checkpoint, must_rewrite, write_posterior = self._saved

        def timed_checkpoint(writer, cp, posterior=None):
            t0 = time.perf_counter()
            before = writer.full_writes
            try:
                return checkpoint(writer, cp, posterior)
            finally:
                self.checkpoint_s += time.perf_counter() - t0
                self.full_writes += writer.full_writes - before
                self.checkpoints += 1

        def timed_posterior(f, posterior):
            t0 = time.perf_counter()
            try:
                return write_posterior(f, posterior)
            finally:
                self.summary_s += time.perf_counter() - t0

        StudyWriter.checkpoint = timed_checkpoint
        study._write_posterior = timed_posterior
        if self.rewrite_always:  # the archive before the chain journal
            StudyWriter._must_rewrite = lambda writer, n, posterior: True
        return self

    def __exit__(self, *exc) -> None:
        StudyWriter.checkpoint, StudyWriter._must_rewrite, study._write_posterior = self._saved


def overhead(n_steps: int, every: int, tmp: Path) -> dict:
    cal = make_calibrator()
    kw = dict(n_walkers=W, n_steps=n_steps, seed=1, autocorr_stop=False)
    cal.sample(**{**kw, "n_steps": 20})  # warm-up (imports, torch)
    t0 = time.perf_counter()
    a = cal.sample(**kw)
    t_plain = time.perf_counter() - t0
    out = {"n_walkers": W, "n_dim": cal.n_dim, "n_steps": n_steps, "checkpoint_every": every}
    out["sampling_s"] = t_plain
    for name, always in (("journal", False), ("rewrite_every_checkpoint", True)):
        path = tmp / f"overhead-{every}-{name}.h5"
        with _Timed(always) as t:
            t0 = time.perf_counter()
            b = cal.sample(**kw, archive=path, checkpoint_every=every)
            t_arch = time.perf_counter() - t0
        assert np.array_equal(a.chain, b.chain)
        out[name] = {
            "with_archive_s": t_arch,
            "overhead_fraction": (t_arch - t_plain) / t_plain,
            "checkpoints": t.checkpoints,
            "full_rewrites": t.full_writes,
            "in_checkpoints_s": t.checkpoint_s,
            "in_checkpoints_fraction": t.checkpoint_s / t_plain,
            "posterior_summary_s": t.summary_s,
            "writes_only_s": t.checkpoint_s - t.summary_s,
            "writes_only_fraction": (t.checkpoint_s - t.summary_s) / t_plain,
            "archive_mb": path.stat().st_size / 1e6,
        }
    return out


def load_time(tmp: Path, target_mb: float = 100.0) -> dict:
    cal = make_calibrator()
    n = int(target_mb * 1e6 / (W * (cal.n_dim + 1) * 8))
    rng = np.random.default_rng(2)
    chain = rng.standard_normal((n, W, cal.n_dim)) * 0.01
    cp = Checkpoint(
        chain=chain,
        log_prob=rng.standard_normal((n, W)),
        accepted=np.full(W, n // 3),
        rng_state=np.random.RandomState(0).get_state(),
        stopped_early=False,
        info={"seed": 1, "n_walkers": W, "labels": cal.model.labels},
    )
    path = tmp / "big.h5"
    with StudyWriter(path, cal, {"n_walkers": W, "n_steps": n, "seed": 1}) as w:
        w.open(resume=False)
        t0 = time.perf_counter()
        w.checkpoint(cp)
        t_write = time.perf_counter() - t0
    sim = cal.model_object
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        post = calib.load(path, simulator=sim)
        times.append(time.perf_counter() - t0)
    assert post.chain.shape == chain.shape
    return {
        "archive_mb": path.stat().st_size / 1e6,
        "n_steps": n,
        "checkpoint_write_s": t_write,
        "load_s_best": min(times),
        "load_s_all": times,
    }


def _table(ov: dict) -> None:
    every = ov["checkpoint_every"]
    print(f"\n{ov['n_steps']} steps, checkpoint every {every}")
    print(f"{'quantity':<42}{'journal':>12}{'rewrite all':>12}")
    print("-" * 66)
    print(f"{'sampling, no archive (s)':<42}{ov['sampling_s']:>12.2f}")
    j, r = ov["journal"], ov["rewrite_every_checkpoint"]
    rows = (
        ("sampling with the archive (s)", "with_archive_s", ".2f"),
        ("overhead, wall-time difference (fraction)", "overhead_fraction", ".3f"),
        ("checkpoints / full rewrites", None, ""),
        ("time in checkpoints (s)", "in_checkpoints_s", ".2f"),
        ("  of which /posterior summaries (s)", "posterior_summary_s", ".2f"),
        ("  of which writes (s)", "writes_only_s", ".2f"),
        ("time in checkpoints / sampling", "in_checkpoints_fraction", ".3f"),
        ("writes only / sampling", "writes_only_fraction", ".3f"),
        ("final archive (MB)", "archive_mb", ".1f"),
    )
    for label, key, fmt in rows:
        if key is None:
            a = f"{j['checkpoints']}/{j['full_rewrites']}"
            b = f"{r['checkpoints']}/{r['full_rewrites']}"
            print(f"{label:<42}{a:>12}{b:>12}")
        else:
            print(f"{label:<42}{j[key]:>12{fmt}}{r[key]:>12{fmt}}")


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ov = overhead(n_steps=3000, every=500, tmp=tmp)
        # many checkpoints: where rewriting the file every time grows as n²
        ov50 = overhead(n_steps=3000, every=50, tmp=tmp)
        ld = load_time(tmp)
    _table(ov)
    _table(ov50)
    print()
    print(f"{'big archive (MB)':<42}{ld['archive_mb']:>12.1f}")
    print(f"{'one checkpoint of it (s)':<42}{ld['checkpoint_write_s']:>12.2f}")
    print(f"{'calib.load of it, best of 3 (s)':<42}{ld['load_s_best']:>12.2f}")
    out = Path(__file__).parent / "results" / "archive.json"
    out.parent.mkdir(exist_ok=True)
    result = {
        "machine": platform.platform(),
        "note": "2 cores shared with other work: compare the columns of one run",
        "overhead": ov,
        "overhead_every_50": ov50,
        "load": ld,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
