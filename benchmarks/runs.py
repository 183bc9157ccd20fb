"""Run-engine benchmark: overhead per run and parallel speed-up.

Prints a table and writes benchmarks/results/runs.json. Not a timed test.

- overhead: a simulator that returns at once, 400 runs, per executor (wall time / runs);
  with and without an archive (one fsync-ed journal line per run);
- speed-up: 8 runs of a simulator that sleeps 1 s, serial vs the default process pool.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from calib.design import Design
from calib.runner import run_design
from simulators import FunctionSimulator


def instant(x, t):
    return [t[0]]


def one_second(x, t):
    time.sleep(1.0)
    return [t[0]]


def timed(sim, design, **kw) -> float:
    t0 = time.perf_counter()
    runs = run_design(sim, design, progress=False, **kw)
    elapsed = time.perf_counter() - t0
    assert runs.counts["ok"] == len(design), runs
    return elapsed


def main() -> None:
    from distributed import Client, LocalCluster

    n = 400
    fast = FunctionSimulator(instant, (), ("k",), ("y",))
    design = Design(("k",), np.arange(float(n))[:, None], 0)
    rows = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        cases = [
            ("serial", dict(executor="serial")),
            ("processes, chunksize=1", dict(executor=None, chunksize=1)),
            ("processes, chunksize=auto (default)", dict(executor=None)),
            ("processes, chunksize=16", dict(executor=None, chunksize=16)),
            ("dask (2 workers), chunksize=1", dict(executor=client, chunksize=1)),
            ("dask, chunksize=auto (default)", dict(executor=client)),
            ("dask, chunksize=16", dict(executor=client, chunksize=16)),
            ("processes + archive", dict(executor=None, archive="a")),
            ("dask + archive", dict(executor=client, archive="b")),
        ]
        for label, kw in cases:
            if "archive" in kw:
                kw["archive"] = Path(tmp) / f"{kw['archive']}.h5"
            warm = {k: v for k, v in kw.items() if k != "archive"}
            timed(fast, Design(("k",), design.array[:8], 0), **warm)  # start the workers
            t = timed(fast, design, **kw)
            rows.append({"case": label, "runs": n, "seconds": t, "ms_per_run": 1e3 * t / n})

    slow = FunctionSimulator(one_second, (), ("k",), ("y",))
    d8 = Design(("k",), np.arange(8.0)[:, None], 0)
    t_serial = timed(slow, d8, executor="serial")
    t_pool = timed(slow, d8, executor=None)
    speed = {
        "runs": 8,
        "seconds_per_run": 1.0,
        "cores": os.cpu_count(),
        "serial_s": t_serial,
        "processes_s": t_pool,
        "speedup": t_serial / t_pool,
    }

    print(f"{'engine overhead (instant simulator)':<40}{'runs':>6}{'s':>9}{'ms/run':>9}")
    for r in rows:
        print(f"{r['case']:<40}{r['runs']:>6}{r['seconds']:>9.3f}{r['ms_per_run']:>9.3f}")
    print(
        f"\n8 one-second runs on {speed['cores']} cores: serial {t_serial:.2f} s, "
        f"processes {t_pool:.2f} s, speed-up {speed['speedup']:.2f}x"
    )
    out = Path(__file__).resolve().parent / "results" / "runs.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {"python": platform.python_version(), "cores": os.cpu_count()},
                "overhead": rows,
                "speedup": speed,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()
