"""Driver process for the SIGKILL test: runs a design into an archive until killed.

usage: kill_driver.py ARCHIVE COUNTER N

Each simulator invocation appends its row index to COUNTER before it works, so the test
can tell which rows were (re-)run after each kill.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from calib.archive import RunArchive
from calib.design import Design
from calib.runner import run_design
from simulators import FunctionSimulator

archive, counter, n = sys.argv[1], sys.argv[2], int(sys.argv[3])


def model(x, t):
    with open(counter, "a") as fh:
        fh.write(f"{int(t[0])}\n")
    time.sleep(0.02)
    return [2.0 * t[0], t[0] ** 2]


sim = FunctionSimulator(model, (), ("k",), ("double", "square"))
design = Design(("k",), np.arange(float(n))[:, None], 0)
print("ready", flush=True)
# folds every 50 ms, so that kills also land in the middle of HDF5 rewrites
run_design(sim, design, executor=None, archive=RunArchive(archive, fold_every=0.05), progress=False)
print("done", flush=True)
