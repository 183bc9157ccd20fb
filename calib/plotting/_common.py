"""What every figure shares: the argument checks, the panel grid, the band and its labels.

Figures are built on :class:`matplotlib.figure.Figure` directly, never through pyplot: no
global figure registry to leak into (a report draws dozens), no backend chosen for the
caller, no global ``rcParams`` touched. ``Figure.savefig`` renders through Agg.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .._validation import check_int, check_number

#: one colour per role, the same in every figure (a reader learns them once)
POSTERIOR, DATA, PRIOR_LIKE, BAD = "C0", "k", "C7", "C3"
#: derived quantities of a partially pooled parameter (``E.typical``, ``E.new``): functions
#: of the sampled ones, left out of the default corner and trace plots
DERIVED = (".typical", ".new")


def check_posterior(post: Any, name: str = "post") -> Any:
    """``post`` if it is a :class:`calib.Posterior`, else a ``TypeError`` naming ``name``."""
    from ..posterior import Posterior  # the posterior module imports torch: only when drawing

    if not isinstance(post, Posterior):
        raise TypeError(f"{name}: expected a calib.Posterior, got {type(post).__name__}")
    return post


def check_level(level: Any) -> float:
    """The central probability of a band, in (0, 1)."""
    return check_number(level, "level", 0, 1)


def check_names(post: Any, names: Any, max_params: Any) -> tuple[list[str], int]:
    """The quantities to draw and how many there were before ``max_params`` cut them.

    Parameters
    ----------
    post : Posterior
    names : sequence of str or None
        None: every sampled quantity (``post.names`` without ``.typical`` and ``.new``).
    max_params : int
        At most this many are drawn (the first ones).

    Returns
    -------
    names : list of str
        At most ``max_params`` names.
    n_all : int
        How many were asked for, so a caption can say that some were left out.
    """
    max_params = check_int(max_params, "max_params", least=1)
    have = post.names
    if names is None:
        names = [n for n in have if not n.endswith(DERIVED)]
    else:
        if isinstance(names, str):
            names = [names]
        names = list(names)
        unknown = [n for n in names if n not in have]
        if unknown:
            raise ValueError(f"names: {unknown} are not quantities of the posterior; have {have}")
        if not names:
            raise ValueError("names: expected at least one quantity, got none")
    return names[:max_params], len(names)


def grid(
    n_panels: int,
    max_cols: int = 3,
    panel: tuple[float, float] = (4.2, 3.0),
    **subplots: Any,
) -> tuple[Figure, list[Axes]]:
    """A figure of ``n_panels`` axes in rows of at most ``max_cols``; unused cells removed.

    Returns
    -------
    fig : Figure
    axes : list of Axes
        Row-major, ``n_panels`` long.
    """
    ncols = min(n_panels, max_cols)
    nrows = -(-n_panels // ncols)
    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False, **subplots)).ravel()
    for ax in axes[n_panels:]:
        ax.remove()
    return fig, list(axes[:n_panels])


def band(
    ax: Axes,
    t: np.ndarray,
    center: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    label: str,
    color: str = POSTERIOR,
    alpha: float = 0.3,
    mean_label: bool = True,
    mean: bool = True,
) -> None:
    """A shaded interval along a grid with its mean line (``mean=False``: the band only,
    for a second band around the same mean)."""
    order = np.argsort(t, kind="stable")
    ax.fill_between(
        t[order], lower[order], upper[order], color=color, alpha=alpha, lw=0, label=label
    )
    if mean:
        ax.plot(
            t[order],
            center[order],
            color=color,
            lw=1.5,
            label="posterior mean" if mean_label else None,
        )


def interval_label(level: float) -> str:
    """``"90 %"`` for 0.9; ``"97.5 %"`` for 0.975."""
    return f"{100 * level:.4g} %"


def quantiles(x: np.ndarray, level: float) -> tuple[float, float, float]:
    """``(lower, median, upper)`` of the equal-tailed ``level`` interval of draws ``x``."""
    lo, mid, hi = np.quantile(np.asarray(x).reshape(-1), [(1 - level) / 2, 0.5, (1 + level) / 2])
    return float(lo), float(mid), float(hi)


def padded(lo: float, hi: float, frac: float = 0.04) -> tuple[float, float]:
    """``(lo, hi)`` widened by ``frac`` of their span on each side; a point gets a span of
    its own (a constant quantity still needs a visible axis)."""
    span = hi - lo
    if not np.isfinite(span) or span <= 0:
        span = max(abs(lo), 1.0)
    return lo - frac * span, hi + frac * span
