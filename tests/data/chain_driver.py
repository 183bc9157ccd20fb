"""Sample a small calibration into an archive (resume=True), for the crash tests.

Usage: ``python chain_driver.py ARCHIVE N_STEPS CHECKPOINT_EVERY [FSIZE_LIMIT_BYTES]``.
Prints ``sampling`` once everything is imported; exits 3 with the message on ArchiveError.
"""

from __future__ import annotations

import resource
import signal
import sys

import numpy as np

import calib
from calib import Calibrator, Campaign, Parameter
from calib.priors import Normal
from simulators import FunctionSimulator

SEED = 11
N_WALKERS = 8


def product(X: np.ndarray, T: np.ndarray) -> np.ndarray:
    return T[:, :1] * T[:, 1:2]


def make_calibrator() -> Calibrator:
    y = 0.3 + 0.5 * np.random.default_rng(0).standard_normal(9)
    sim = FunctionSimulator(product, (), ("a", "b"), ("y",), vectorized=True)
    return Calibrator(
        sim,
        [Parameter("a", prior=Normal(1, 2)), Parameter("b", prior=Normal(1, 2))],
        [Campaign("A", x=None, y=y[:5], noise_sd=0.5), Campaign("B/2", x=None, y=y[5:])],
        noise="per_campaign",
    )


def sample(cal: Calibrator, path: str, n_steps: int, every: int, **kw):
    return cal.sample(
        N_WALKERS,
        n_steps,
        seed=SEED,
        archive=path,
        resume=True,
        checkpoint_every=every,
        autocorr_stop=False,
        **kw,
    )


if __name__ == "__main__":
    path, n_steps, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cal = make_calibrator()
    if len(sys.argv) > 4:
        # a full disk: writes past the limit raise OSError (EFBIG) instead of killing us
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        lim = int(sys.argv[4])
        resource.setrlimit(resource.RLIMIT_FSIZE, (lim, lim))
    print("sampling", flush=True)
    try:
        sample(cal, path, n_steps, every)
    except calib.ArchiveError as exc:
        print(exc, file=sys.stderr, flush=True)
        sys.exit(3)
    print("done", flush=True)
