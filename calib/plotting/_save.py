"""Every figure that applies to a posterior, written as PNG files (``calib plot``, the
report)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from .._validation import check_int
from ..interfaces import MissingSimulator, is_emulator
from ._chain import convergence, corner, traces
from ._common import check_posterior
from ._emulator import emulator_validation
from ._fit import discrepancy, predictive
from ._shrinkage import pooled_parameters, pooling

__all__ = ["CAPTIONS", "save_all"]

#: one line per figure, by the first part of its file name (``pooling-E.png``: ``pooling``)
CAPTIONS = {
    "corner": "Pair plot of the posterior draws: each quantity's histogram with its median "
    "and 90 % interval, every pair's scatter.",
    "traces": "Every walker's chain from the first step, the discarded burn-in shaded.",
    "convergence": "Split-R̂ and bulk ESS of every quantity against the targets.",
    "predictive": "Posterior predictive of reality and of a new measurement, with the data.",
    "discrepancy": "The model discrepancy δ: posterior mean and 90 % band, against zero.",
    "pooling": "Each campaign's value of a partially pooled parameter, with the population "
    "band (and without pooling, where given): the shrinkage.",
    "emulator": "Emulator validation: predicted against actual with 90 % intervals, and "
    "the standardized errors.",
}


def _file_part(name: str) -> str:
    """A parameter name made safe for a file name (``E[1]`` → ``E_1_``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def save_all(
    post: Any,
    out_dir: str | Path,
    emulator: Any = None,
    *,
    test: tuple[Any, Any] | None = None,
    unpooled: Any = None,
    truths: dict[str, float] | None = None,
    n_draws: int = 300,
    dpi: int = 110,
) -> list[Path]:
    """Write every figure that applies to ``post`` into ``out_dir`` as PNG.

    Always ``corner.png``, ``traces.png`` and ``convergence.png``; ``predictive.png``
    unless the study was loaded without its simulator in direct mode (a warning says so,
    and for δ); ``discrepancy.png`` when the calibration has a δ; ``pooling-<E>.png`` for
    each partially pooled parameter ``E``; ``emulator.png`` when there is an emulator
    (``emulator``, else the one the calibration ran on) and held-out runs ``test`` or a
    closed-form leave-one-out.

    Parameters
    ----------
    post : Posterior
    out_dir : str or Path
        Created if missing; files of the same names are replaced.
    emulator : fitted emulator, optional
        Default: the calibration's model when it is an emulator.
    test : (X_test, Y_test), optional
        Held-out runs for the emulator's figure; default leave-one-out.
    unpooled : Posterior, optional
        The same calibration without pooling, drawn beside each pooled parameter it has.
    truths : dict of str to float, optional
        Known values, marked in the pair plot; names that are not quantities of ``post``
        (a study's truth of a pooled parameter's population, say) are left out.
    n_draws : int
        Posterior draws behind the predictive and δ bands (the slow figures).
    dpi : int
        Resolution of the PNG files.

    Returns
    -------
    list of Path
        The files written, in the order above. :data:`CAPTIONS` describes each kind.
    """
    post = check_posterior(post)
    dpi = check_int(dpi, "dpi", least=1)
    n_draws = check_int(n_draws, "n_draws", least=1)
    if test is not None and (not isinstance(test, (tuple, list)) or len(test) != 2):
        raise ValueError(f"test: expected a pair (X_test, Y_test), got {type(test).__name__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []

    def save(stem: str, draw: Callable[[], Figure]) -> None:
        path = out / f"{stem}.png"
        draw().savefig(path, dpi=dpi)
        paths.append(path)

    # a study file's truth may name what the posterior does not: drawn where it can be
    marks = truths
    if isinstance(truths, dict):
        marks = {k: v for k, v in truths.items() if k in post.names} or None
    save("corner", lambda: corner(post, truths=marks))
    save("traces", lambda: traces(post))
    save("convergence", lambda: convergence(post))
    has_delta = post.calibrator.discrepancy.mode != "none"
    if isinstance(post.calibrator.model_object, MissingSimulator):
        # the predictions run the simulator (direct mode); a study file loaded without it
        # still has every figure of the draws
        skipped = "predictive.png" + (" and discrepancy.png" if has_delta else "")
        warnings.warn(
            f"{skipped} not written: the study was loaded without its simulator, which "
            f"direct-mode predictions run (calib.load(path, simulator=sim))",
            UserWarning,
            stacklevel=2,
        )
    else:
        save("predictive", lambda: predictive(post, n_draws=n_draws))
        if has_delta:
            save("discrepancy", lambda: discrepancy(post, n_draws=n_draws))
    for name in pooled_parameters(post):
        beside = unpooled
        if beside is not None and not all(
            f"{name}[{c}]" in beside.names for c in post.model.campaign_names
        ):
            beside = None  # pooled in that run too: nothing unpooled to compare
        save(f"pooling-{_file_part(name)}", lambda n=name, u=beside: pooling(post, n, u))
    if emulator is None and is_emulator(post.calibrator.model_object):
        emulator = post.calibrator.model_object
    if emulator is not None and (test is not None or callable(getattr(emulator, "loo", None))):
        X, Y = test if test is not None else (None, None)
        names = list(post.calibrator.output_names)
        n_out = getattr(emulator, "n_outputs", None)
        save(
            "emulator",
            lambda: emulator_validation(
                emulator, X, Y, output_names=names if n_out == len(names) else None
            ),
        )
    return paths
