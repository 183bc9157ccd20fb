"""SEPIA's ball_drop_2 as a calib problem (emulator mode), for benchmarks.

Data: ``shared/data/ball_drop/sepia_bd2`` (SEPIA, LANL, BSD-3; see its README.txt and
``shared/data/ball_drop/README.md``):

- ``desNative80x4Cg.txt``: 80 simulator runs over (R, ρ_ball, C, g), the ball's radius (m)
  and density (kg/m³), the drag coefficient and the gravitational acceleration (m/s²):
  a common 20-run design over (C, g) repeated for each of the 4 balls;
- ``sims101x80Cg.txt``: the drop time (s) at each of the 101 heights of
  ``simHeights101x1`` (0, 1, ..., 100 m) for every run;
- ``fieldDat12x6gparam.txt``: columns R, ρ_air, ρ_ball, height, time, sd(time); 4 balls ×
  3 heights (20, 40, 60 m), all of them simulator heights.

The calibration problem: θ = (C, g) with uniform priors on the design's range; control
inputs x = (R, ρ_ball), which is what the design varies besides θ (ρ_air is the same
1.184 kg/m³ everywhere); one campaign whose ``y (4, 101)`` holds the 3 observed heights of
each ball and NaN elsewhere; known noise from the sd column; a shared δ over
(R, ρ_ball, height).

Example
-------
>>> from problems_ball_drop import ball_drop_2     # doctest: +SKIP
>>> cal = ball_drop_2()                              # doctest: +SKIP
>>> post = cal.sample(n_walkers=32, n_steps=4000)    # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calib import Calibrator, Campaign, Parameter

__all__ = ["ball_drop_2", "data_dir"]

_SUBDIR = Path("data") / "ball_drop" / "sepia_bd2"


def data_dir() -> Path:
    """The ``sepia_bd2`` folder: ``shared/`` next to the repository or inside it.

    The repository may be cloned under any name; the data lie in ``<repo>/../shared/data``
    (or ``<repo>/shared/data``). Every folder above this file is tried, nearest first.

    Raises
    ------
    FileNotFoundError
        If no ``shared/data/ball_drop/sepia_bd2`` is found above this file.
    """
    here = Path(__file__).resolve().parent
    for folder in (here, *here.parents):
        for cand in (folder / "shared" / _SUBDIR, folder.parent / "shared" / _SUBDIR):
            if (cand / "desNative80x4Cg.txt").is_file():
                return cand
    raise FileNotFoundError(
        f"ball_drop_2: expected the SEPIA data in shared/{_SUBDIR} beside or inside the "
        f"repository (searched from {here} upwards), found none"
    )


def load_ball_drop_2() -> dict[str, np.ndarray]:
    """The raw arrays: ``design (80, 4)`` over (R, ρ_ball, C, g), ``sims (80, 101)``,
    ``heights (101,)``, ``field (12, 6)``."""
    d = data_dir()
    design = np.loadtxt(d / "desNative80x4Cg.txt", comments="#")
    sims = np.loadtxt(d / "sims101x80Cg.txt").T  # the file is heights × runs
    heights = np.loadtxt(d / "simHeights101x1", comments="#").reshape(-1)
    field = np.loadtxt(d / "fieldDat12x6gparam.txt", comments="#")
    if design.shape != (80, 4) or sims.shape != (80, heights.size) or field.shape[1] != 6:
        raise ValueError(
            f"ball_drop_2: unexpected data shapes design {design.shape}, sims {sims.shape}, "
            f"heights {heights.shape}, field {field.shape}"
        )
    return {"design": design, "sims": sims, "heights": heights, "field": field}


def ball_drop_2(emulator: str = "basis", seed: int = 0) -> Calibrator:
    """SEPIA's ball_drop_2 as a :class:`calib.Calibrator` in emulator mode.

    Parameters
    ----------
    emulator : {"basis", "gp"}
        ``"basis"``: :class:`emulators.BasisGPEmulator` (PCA basis of the 101 heights) fitted
        on the 80 runs (a few seconds). ``"gp"``: :class:`emulators.GPEmulator`, one GP per
        height, over heights 1..100 only (at height 0 every run gives 0, which a GP
        cannot standardize; no ball is observed there), one optimizer start (≈ 20 s on 2
        cores).
    seed : int
        Seed of the emulator's optimizer starts.

    Returns
    -------
    Calibrator
        Parameters C ∈ [0.2, 2] and g ∈ [8, 12] (uniform, the design's range), a shared rbf
        discrepancy over (R, ρ_ball, height), known noise.
    """
    from emulators import BasisGPEmulator, GPEmulator

    raw = load_ball_drop_2()
    design, sims, heights, field = raw["design"], raw["sims"], raw["heights"], raw["field"]
    if emulator == "basis":
        em = BasisGPEmulator(seed=seed).fit(design, sims)
        keep = np.arange(heights.size)
    elif emulator == "gp":
        keep = np.flatnonzero(np.ptp(sims, axis=0) > 0)
        em = GPEmulator(seed=seed, n_restarts=1).fit(design, sims[:, keep])
    else:
        raise ValueError(f"emulator: expected 'basis' or 'gp', got {emulator!r}")
    coords = heights[keep]

    # one row per ball, in the order the field file lists them
    balls, first = np.unique(field[:, [0, 2]], axis=0, return_index=True)
    balls = balls[np.argsort(first)]
    x = balls  # (4, 2): R, ρ_ball
    y = np.full((x.shape[0], coords.size), np.nan)
    sd = np.full_like(y, np.nan)
    for R, _rho_air, rho, h, t, s in field:
        i = int(np.flatnonzero((x[:, 0] == R) & (x[:, 1] == rho))[0])
        j = np.flatnonzero(np.isclose(coords, h))
        if j.size != 1:
            raise ValueError(f"ball_drop_2: field height {h} is not a simulator height")
        y[i, j[0]], sd[i, j[0]] = t, s
    # noise_sd must be finite everywhere: unobserved entries take the row's sd (unused)
    row_sd = np.nanmean(sd, axis=1, keepdims=True)
    sd = np.where(np.isnan(sd), row_sd, sd)

    C_lo, C_hi = design[:, 2].min(), design[:, 2].max()
    g_lo, g_hi = design[:, 3].min(), design[:, 3].max()
    params = [Parameter("C", C_lo, C_hi), Parameter("g", g_lo, g_hi)]
    return Calibrator(
        em,
        params,
        [Campaign("field", x=x, y=y, noise_sd=sd)],
        discrepancy="shared",
        noise="known",
        input_names=("R", "rho_ball"),
        output_coords=coords,
    )
