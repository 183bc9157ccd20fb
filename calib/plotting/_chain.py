"""Figures of the chain itself: the pair plot, the traces and the convergence picture."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .._validation import check_int, check_number
from ._common import (
    BAD,
    DATA,
    POSTERIOR,
    PRIOR_LIKE,
    check_level,
    check_names,
    check_posterior,
    interval_label,
    padded,
    quantiles,
)

__all__ = ["convergence", "corner", "traces"]


def _check_truths(truths: Any, post: Any) -> dict[str, float]:
    if truths is None:
        return {}
    if not isinstance(truths, dict):
        raise TypeError(f"truths: expected a dict of quantity name to value, got {truths!r}")
    unknown = [n for n in truths if n not in post.names]
    if unknown:
        raise ValueError(
            f"truths: {unknown} are not quantities of the posterior; have {post.names}"
        )
    return {n: check_number(v, f"truths[{n!r}]") for n, v in truths.items()}


def corner(
    post: Any,
    names: Any = None,
    max_params: int = 8,
    level: float = 0.9,
    max_points: int = 2000,
    truths: dict[str, float] | None = None,
) -> Figure:
    """Pair plot of the posterior draws: each quantity's histogram with its median and
    equal-tailed interval on the diagonal, every pair's scatter below it.

    Parameters
    ----------
    post : Posterior
    names : sequence of str, optional
        Quantities to draw (any of ``post.names``); default every sampled quantity (θ, the
        population and δ hyperparameters, the noise), without ``E.typical``/``E.new``.
    max_params : int
        At most this many (the first ones); the title says when some were left out.
    level : float
        Central probability of the dashed interval, in (0, 1).
    max_points : int
        The scatters show at most this many draws, evenly spaced in the chain; the
        histograms use all of them.
    truths : dict of str to float, optional
        Known values (a synthetic study), drawn as red lines.

    Returns
    -------
    Figure

    Examples
    --------
    >>> fig = corner(post, names=["k.mean", "k.scale"])  # doctest: +SKIP
    >>> fig.savefig("corner.png", dpi=110)  # doctest: +SKIP
    """
    post = check_posterior(post)
    level = check_level(level)
    names, n_all = check_names(post, names, max_params)
    max_points = check_int(max_points, "max_points", least=1)
    truths = _check_truths(truths, post)
    X = np.column_stack([post.draws(n) for n in names])  # (n_draws, k)
    S, k = X.shape
    # even thinning keeps the scatter readable and the PNG small
    idx = np.linspace(0, S - 1, min(S, max_points)).round().astype(int)
    side = min(1.9 * k + 1.0, 16.0)
    fig = Figure(figsize=(side, side), layout="constrained")
    axes = fig.subplots(k, k, squeeze=False)
    lims = [padded(float(X[:, j].min()), float(X[:, j].max())) for j in range(k)]
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i:
                ax.set_axis_off()
                continue
            if i == j:
                ax.hist(X[:, j], bins=30, color=POSTERIOR, alpha=0.6, histtype="stepfilled")
                lo, mid, hi = quantiles(X[:, j], level)
                ax.axvline(mid, color=POSTERIOR, lw=1.2)
                ax.axvline(lo, color=POSTERIOR, lw=0.9, ls="--")
                ax.axvline(hi, color=POSTERIOR, lw=0.9, ls="--")
                ax.set_yticks([])
                ax.set_title(f"{names[j]}\n{mid:.3g} [{lo:.3g}, {hi:.3g}]", fontsize=8)
            else:
                ax.scatter(
                    X[idx, j], X[idx, i], s=3, alpha=0.4, color=POSTERIOR, lw=0, rasterized=True
                )
                ax.set_ylim(lims[i])
                if names[i] in truths:
                    ax.axhline(truths[names[i]], color=BAD, lw=1)
            if names[j] in truths:
                ax.axvline(truths[names[j]], color=BAD, lw=1)
            ax.set_xlim(lims[j])
            ax.tick_params(labelsize=7)
            if i == k - 1:
                ax.set_xlabel(names[j], fontsize=8)
            else:
                ax.tick_params(labelbottom=False)
            if j == 0 and i > 0:
                ax.set_ylabel(names[i], fontsize=8)
            elif j > 0:
                ax.tick_params(labelleft=False)
    title = f"posterior draws: median and {interval_label(level)} interval (dashed)"
    if truths:
        title += "; true values in red"
    if n_all > k:
        title += f"\nfirst {k} of {n_all} quantities (names= picks others)"
    fig.suptitle(title, fontsize=9)
    return fig


def traces(post: Any, names: Any = None, max_params: int = 8) -> Figure:
    """The chain of every walker, step by step, from the first step: the log posterior and
    each quantity, with the discarded burn-in shaded and the end of the gradient move's
    warm-up marked.

    Walkers that still drift apart after the shading, or that stay stuck apart, are what
    a large R̂ means; a trace that wanders slowly is a small ESS.

    Parameters
    ----------
    post : Posterior
    names : sequence of str, optional
        Quantities to trace; default as :func:`corner`.
    max_params : int
        At most this many panels besides the log posterior.

    Returns
    -------
    Figure
        One panel per quantity under the log posterior's, sharing the step axis; each
        panel has one line per walker.
    """
    from ..posterior import Posterior  # torch: only when drawing

    post = check_posterior(post)
    names, n_all = check_names(post, names, max_params)
    # the same posterior with nothing discarded: the quantities along the whole chain,
    # named and transformed exactly as the kept draws are
    whole = Posterior(
        post.calibrator, post.chain, post.log_prob, post.acceptance, burn=0, info=post.info
    )
    n_steps, n_walkers = post.chain.shape[:2]
    steps = np.arange(n_steps)
    fig = Figure(figsize=(8.5, 1.2 + 1.7 * (len(names) + 1)), layout="constrained")
    axes = fig.subplots(len(names) + 1, 1, sharex=True, squeeze=False)[:, 0]
    lp = np.where(np.isfinite(post.log_prob), post.log_prob, np.nan)
    series = [("log posterior", lp)] + [
        (n, whole.draws(n).reshape(n_steps, n_walkers)) for n in names
    ]
    warmup = int(post.info.get("warmup", 0) or 0)
    for ax, (name, values) in zip(axes, series):
        ax.plot(steps, values, lw=0.6, alpha=0.6)
        if post.burn > 0:
            ax.axvspan(
                0,
                post.burn,
                color=PRIOR_LIKE,
                alpha=0.2,
                lw=0,
                label=f"burn-in: {post.burn} steps, discarded",
            )
        if 0 < warmup != post.burn:
            ax.axvline(warmup, color=DATA, ls=":", lw=1, label=f"end of warm-up (step {warmup})")
        ax.set_ylabel(name, fontsize=8)
        ax.tick_params(labelsize=7)
    kept = lp[post.burn :]
    if np.isfinite(kept).any():
        # the first steps (prior draws, MAP starts) can lie far below the posterior's
        # mass: cut them off rather than flatten the part that matters
        lo, hi = float(np.nanmin(kept)), float(np.nanmax(kept))
        span = max(hi - lo, 1.0)
        if np.nanmin(lp) < lo - 3 * span:
            axes[0].set_ylim(lo - 3 * span, hi + 0.2 * span)
            axes[0].set_ylabel("log posterior\n(clipped below)", fontsize=8)
    axes[-1].set_xlabel("step")
    axes[-1].set_xlim(0, max(n_steps - 1, 1))
    if post.burn > 0 or 0 < warmup != post.burn:
        axes[0].legend(loc="lower right", fontsize=7)
    title = f"traces of {n_walkers} walkers, {n_steps} steps"
    if n_all > len(names):
        title += f"; first {len(names)} of {n_all} quantities (names= picks others)"
    fig.suptitle(title, fontsize=9)
    return fig


def convergence(post: Any) -> Figure:
    """Rank-normalized split-R̂ and bulk ESS of every sampled quantity against the
    targets of the verdict (``post.targets``: 1.01 and 400 unless the run set others).

    Parameters
    ----------
    post : Posterior

    Returns
    -------
    Figure
        Two panels sharing the quantity axis: R̂ (left) and bulk ESS on a log scale
        (right), each with a dashed line at its target; quantities that miss a target in
        red crosses (``post.diagnostics()["worst"]``).
    """
    post = check_posterior(post)
    d = post.diagnostics()
    t_rhat, t_ess = float(d["target_rhat"]), float(d["target_ess"])
    names = list(d["rhat"])
    rhat = np.array([d["rhat"][n] for n in names], dtype=float)
    ess = np.array([d["ess_bulk"][n] for n in names], dtype=float)
    bad_names = {r["name"] for r in d["worst"]}
    bad = np.array([n in bad_names for n in names])
    y = np.arange(len(names))[::-1]  # the first quantity on top, as in the summary table
    fig = Figure(figsize=(9.0, 1.4 + 0.3 * len(names)), layout="constrained")
    ax_r, ax_e = fig.subplots(1, 2, sharey=True)
    ess_plot = np.where(ess > 0, ess, np.nan)  # a log axis: a zero ESS shows as missing
    panels = (
        (ax_r, rhat, t_rhat, f"target: R̂ < {t_rhat:g}", "split-R̂ (rank-normalized)"),
        (ax_e, ess_plot, t_ess, f"target: bulk ESS ≥ {t_ess:.0f}", "bulk ESS"),
    )
    for ax, v, target, target_label, xlabel in panels:
        if (~bad).any():
            ax.scatter(v[~bad], y[~bad], color=POSTERIOR, zorder=3, label="meets the targets")
        if bad.any():
            ax.scatter(v[bad], y[bad], color=BAD, marker="x", zorder=3, label="misses a target")
        ax.axvline(target, color=BAD, ls="--", lw=1.2, label=target_label)
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)
    ax_r.set_yticks(y, names, fontsize=8)
    ax_r.set_ylim(-0.7, len(names) - 0.3)
    finite = rhat[np.isfinite(rhat)]
    ax_r.set_xlim(*padded(min([1.0, *finite]), max([t_rhat, *finite]), 0.08))
    finite = ess_plot[np.isfinite(ess_plot)]
    ax_e.set_xscale("log")
    # 1-2-5 ticks written plainly: ESS spans about one decade, where a log axis would label
    # only one power of ten and crowd the minor ticks with "2×10²"
    ax_e.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax_e.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax_e.xaxis.set_minor_formatter(NullFormatter())
    ax_e.set_xlim(min([t_ess, *finite]) / 1.6, max([t_ess, *finite]) * 1.6)
    if bad.any():
        title = f"not converged: {int(bad.sum())} of {len(names)} quantities miss a target"
    else:
        title = f"converged: R̂ < {t_rhat:g} and bulk ESS ≥ {t_ess:.0f} for every quantity"
    div = int(d.get("n_divergent", 0) or 0)
    if div:
        title += f"; {div} divergent transitions after warm-up"
    title += f"\n{d['n_walkers']} walkers as chains, {d['n_kept']} kept steps each"
    fig.suptitle(title, fontsize=10)
    # one legend for both panels, under them (inside, it would hide quantities)
    handles, labels = ax_r.get_legend_handles_labels()
    more = [(h, lab) for h, lab in zip(*ax_e.get_legend_handles_labels()) if lab not in labels]
    fig.legend(
        handles + [h for h, _ in more],
        labels + [lab for _, lab in more],
        loc="outside lower center",
        ncol=4,
        fontsize=8,
    )
    return fig
