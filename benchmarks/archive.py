"""Study-archive benchmark: checkpoint overhead while sampling, and load time.

1. Overhead: 64 walkers × 20 parameters (a linear simulator, 40 observations, known noise),
   the same seeded run with and without ``archive=`` (checkpoint every 500 steps, fsync on);
   overhead = extra wall time / sampling time without the archive.
2. Load: an archive whose chain is about 100 MB (written through the archive writer),
   timed through ``calib.load``.

Prints a table and writes benchmarks/results/archive.json. About a minute on 2 cores.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

import calib
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


def overhead(n_steps: int, every: int, tmp: Path) -> dict:
    cal = make_calibrator()
    kw = dict(n_walkers=W, n_steps=n_steps, seed=1, autocorr_stop=False)
    cal.sample(**{**kw, "n_steps": 20})  # warm-up (imports, torch)
    t0 = time.perf_counter()
    a = cal.sample(**kw)
    t_plain = time.perf_counter() - t0
    path = tmp / "overhead.h5"
    t0 = time.perf_counter()
    b = cal.sample(**kw, archive=path, checkpoint_every=every)
    t_arch = time.perf_counter() - t0
    assert np.array_equal(a.chain, b.chain)
    return {
        "n_walkers": W,
        "n_dim": cal.n_dim,
        "n_steps": n_steps,
        "checkpoint_every": every,
        "sampling_s": t_plain,
        "with_archive_s": t_arch,
        "overhead_fraction": (t_arch - t_plain) / t_plain,
        "archive_mb": path.stat().st_size / 1e6,
    }


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


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ov = overhead(n_steps=3000, every=500, tmp=tmp)
        ld = load_time(tmp)
    print(f"{'quantity':<42}{'value':>12}")
    print("-" * 54)
    print(f"{'sampling, no archive (s)':<42}{ov['sampling_s']:>12.2f}")
    print(f"{'sampling, archive every 500 steps (s)':<42}{ov['with_archive_s']:>12.2f}")
    print(f"{'checkpoint overhead (fraction)':<42}{ov['overhead_fraction']:>12.3f}")
    print(f"{'final archive (MB)':<42}{ov['archive_mb']:>12.1f}")
    print(f"{'big archive (MB)':<42}{ld['archive_mb']:>12.1f}")
    print(f"{'one checkpoint of it (s)':<42}{ld['checkpoint_write_s']:>12.2f}")
    print(f"{'calib.load of it, best of 3 (s)':<42}{ld['load_s_best']:>12.2f}")
    out = Path(__file__).parent / "results" / "archive.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"machine": platform.platform(), "overhead": ov, "load": ld}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
