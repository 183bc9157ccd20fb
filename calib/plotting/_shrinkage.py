"""The pooling picture: each campaign's θ under partial pooling, beside no pooling, with
the population the campaigns are drawn from.

Partial pooling pulls each campaign's estimate toward the population, the more the less
its own data say (Gelman & Hill 2007, §12.2): a campaign with few or noisy observations
moves far, a well-measured one barely. Drawing both intervals per campaign shows that
shrinkage directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ._common import (
    DATA,
    POSTERIOR,
    PRIOR_LIKE,
    check_level,
    check_posterior,
    interval_label,
    padded,
    quantiles,
)

__all__ = ["pooling"]


def pooled_parameters(post: Any) -> list[str]:
    """The partially pooled parameters of a posterior (those with ``E.typical``)."""
    return [n[: -len(".typical")] for n in post.names if n.endswith(".typical")]


def pooling(post: Any, parameter: str, unpooled: Any = None, level: float = 0.9) -> Figure:
    """Each campaign's interval of a partially pooled parameter, with the population band.

    Parameters
    ----------
    post : Posterior
        A calibration in which ``parameter`` is partially pooled.
    parameter : str
        Its name (``"E"``).
    unpooled : Posterior, optional
        The same calibration with ``parameter`` not pooled (``pooling="none"``): its
        per-campaign intervals are drawn beside, with an arrow from each to the partially
        pooled one (the shrinkage).
    level : float
        Central probability of the intervals, in (0, 1).

    Returns
    -------
    Figure
        One row per campaign (median and ``level`` interval); the shaded band is the
        ``level`` interval of a new campaign's value (``E.new``), the dashed line the
        population median (``E.typical``).

    Raises
    ------
    ValueError
        ``parameter`` is not partially pooled in ``post``, or ``unpooled`` has no
        per-campaign values of it for the same campaigns.
    """
    post = check_posterior(post)
    level = check_level(level)
    pooled = pooled_parameters(post)
    if parameter not in pooled:
        raise ValueError(
            f"parameter: {parameter!r} is not partially pooled in this posterior "
            f"(pooling='partial' parameters: {pooled})"
        )
    camps = list(post.model.campaign_names)
    if unpooled is not None:
        unpooled = check_posterior(unpooled, "unpooled")
        missing = [c for c in camps if f"{parameter}[{c}]" not in unpooled.names]
        if missing:
            raise ValueError(
                f"unpooled: expected per-campaign values of {parameter!r} (pooling='none') for "
                f"campaigns {missing}; it has {unpooled.names}"
            )
    pct = interval_label(level)
    y = np.arange(len(camps))[::-1].astype(float)  # the first campaign on top
    off = 0.15 if unpooled is not None else 0.0
    fig = Figure(figsize=(7.5, 1.6 + 0.55 * len(camps)), layout="constrained")
    ax = fig.subplots()
    new_lo, _, new_hi = quantiles(post.draws(f"{parameter}.new"), level)
    typical = quantiles(post.draws(f"{parameter}.typical"), level)[1]
    ax.axvspan(
        new_lo,
        new_hi,
        color=PRIOR_LIKE,
        alpha=0.2,
        lw=0,
        label=f"population: a new campaign's {pct} interval ({parameter}.new)",
    )
    ax.axvline(typical, color=DATA, ls="--", lw=1, label=f"population median ({parameter}.typical)")
    ends = [new_lo, new_hi]
    partial = np.array([quantiles(post.draws(parameter, campaign=c), level) for c in camps])
    if unpooled is not None:
        alone = np.array([quantiles(unpooled.draws(parameter, campaign=c), level) for c in camps])
        ax.errorbar(
            alone[:, 1],
            y - off,
            xerr=[alone[:, 1] - alone[:, 0], alone[:, 2] - alone[:, 1]],
            fmt="s",
            color=PRIOR_LIKE,
            capsize=3,
            label=f"no pooling: median, {pct}",
        )
        for k in range(len(camps)):
            # the shrinkage: from the campaign on its own to the campaign in its population
            ax.annotate(
                "",
                xy=(partial[k, 1], y[k] + off),
                xytext=(alone[k, 1], y[k] - off),
                arrowprops={"arrowstyle": "->", "color": DATA, "lw": 0.8, "alpha": 0.6},
            )
        ends += [alone.min(), alone.max()]
    ax.errorbar(
        partial[:, 1],
        y + off,
        xerr=[partial[:, 1] - partial[:, 0], partial[:, 2] - partial[:, 1]],
        fmt="o",
        color=POSTERIOR,
        capsize=3,
        label=f"partial pooling: median, {pct}",
    )
    ends += [partial.min(), partial.max()]
    ax.set_xlim(*padded(min(ends), max(ends), 0.05))
    ax.set_yticks(y, camps)
    ax.set_ylim(-0.8, len(camps) - 0.2)
    ax.set_xlabel(parameter)
    ax.set_ylabel("campaign")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    what = "partial against no pooling" if unpooled is not None else "partial pooling"
    ax.set_title(f"{parameter} per campaign: {what}", fontsize=10)
    return fig
