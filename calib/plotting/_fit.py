"""Figures of the fit: the posterior predictive of reality with the data, and δ.

Where the curves are drawn depends on the inputs: along a grid of the one control input;
at the observed rows (by observation index, with error bars) when there are none or
several; against the output coordinates for functional outputs (``output_coords`` of one
column), one curve per observed row. A campaign observed at its own output coordinates
(``Campaign(coords=)``) has its data drawn there; the predictions stay at the model's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import stats

from .._validation import check_int, check_seed
from ._common import DATA, POSTERIOR, PRIOR_LIKE, band, check_level, check_posterior, grid
from ._common import interval_label as _pct

__all__ = ["discrepancy", "predictive"]

#: points along the grid of a single control input: smooth at a glance, cheap to predict
N_GRID = 60


def _campaigns(post: Any, campaign: Any) -> list[str]:
    names = list(post.model.campaign_names)
    if campaign is None:
        return names
    if campaign not in names:
        raise ValueError(f"campaign must be one of {names}, got {campaign!r}")
    return [campaign]


def _data(post: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``x (n, p)``, ``y (n, k)`` and the known ``noise_sd (n, k)`` (or None) of a campaign:
    ``k = m`` unless it has output coordinates of its own (:func:`_columns`)."""
    camp = next(c for c in post.calibrator.campaigns if c.name == name)
    return camp.shaped(post.model.p, post.model.m)


def _columns(post: Any, name: str) -> np.ndarray:
    """The output (in ``0 … M−1``) of each of a campaign's columns: the model's ``m``, or
    for ``Campaign(coords=)`` the model's outputs or virtual ones (calib/_field_coords.py)."""
    model = post.model
    cols = None if model.field is None else model.field.columns[model.campaign_names.index(name)]
    return np.arange(model.m) if cols is None else cols


def _column_coords(post: Any) -> np.ndarray:
    """``(M,)``: the coordinate of every output, the virtual ones too."""
    model = post.model
    return np.asarray(model.output_coords if model.field is None else model.field.coords)[:, 0]


def _functional(post: Any) -> bool:
    coords = post.model.output_coords
    return coords is not None and np.shape(coords)[1] == 1 and post.model.m > 1


def _rows(n: int, max_curves: int) -> np.ndarray:
    """At most ``max_curves`` observed rows, evenly spread (first and last included)."""
    return np.unique(np.linspace(0, n - 1, min(n, max_curves)).round().astype(int))


def _where(
    post: Any, xs: list[np.ndarray], max_curves: int, functional: bool
) -> tuple[str, np.ndarray]:
    """How to draw: ``"coords"``, ``"grid"`` or ``"rows"``, and the points ``X (k, p)`` to
    predict at (for ``"coords"``, the chosen rows; for ``"rows"``, every row of ``xs``)."""
    x = np.concatenate(xs)
    if functional:
        return "coords", x[_rows(len(x), max_curves)]
    if post.model.p == 1:
        lo, hi = float(x.min()), float(x.max())
        pad = 0.05 * (hi - lo) if hi > lo else 0.5
        return "grid", np.linspace(lo - pad, hi + pad, N_GRID)[:, None]
    return "rows", x


def _row_label(post: Any, x: np.ndarray) -> str:
    if not post.model.p:
        return "observation"
    return ", ".join(f"{n} = {v:.3g}" for n, v in zip(post.calibrator.input_names, x))


def _draw(
    ax: Axes,
    post: Any,
    kind: str,
    X: np.ndarray,
    pred: Any,
    j: int,
    label: str,
    color: str = POSTERIOR,
    alpha: float = 0.35,
    mean: bool = True,
) -> None:
    """One prediction (output ``j``, or every output against its coordinate) on ``ax``;
    ``mean=False`` draws the interval only (a second, wider band around the same mean)."""
    if kind == "grid":
        m, lo, hi = pred.mean[:, j], pred.lower[:, j], pred.upper[:, j]
        band(ax, X[:, 0], m, lo, hi, label, color=color, alpha=alpha, mean=mean)
    elif kind == "rows":
        # error bars, not a band: a band between unrelated rows would suggest values between
        m, lo, hi = pred.mean[:, j], pred.lower[:, j], pred.upper[:, j]
        ax.errorbar(
            np.arange(len(X)),
            m,
            yerr=[m - lo, hi - m],
            fmt="_" if mean else "none",
            color=color,
            elinewidth=1.5 if mean else 5,
            alpha=0.8 if mean else 0.4,
            capsize=2 if mean else 0,
            label=label,
        )
    else:
        t = np.asarray(post.model.output_coords)[:, 0]
        for r in range(len(X)):
            # one colour per observed row; the measurement band once in the legend
            row_label = (
                f"{label}: {_row_label(post, X[r])}" if mean else (label if r == 0 else None)
            )
            band(
                ax,
                t,
                pred.mean[r],
                pred.lower[r],
                pred.upper[r],
                row_label,
                color=f"C{r % 10}",
                alpha=alpha if mean else 0.12,
                mean_label=False,
                mean=mean,
            )


def _measurement_band_known(post: Any, noise: np.ndarray | None) -> bool:
    """A new measurement's band needs one noise sd: inferred, or known and constant."""
    if not post.model.noise_block.known:
        return True
    return noise is not None and bool(np.allclose(noise, noise.flat[0]))


def _xlabel(post: Any, kind: str) -> str:
    if kind == "coords":
        return "output coordinate"
    if kind == "grid":
        return post.calibrator.input_names[0]
    return "observation"


def predictive(
    post: Any,
    campaign: str | None = None,
    output: str | None = None,
    level: float = 0.9,
    n_draws: int = 300,
    seed: int | None = 0,
    max_curves: int = 4,
) -> Figure:
    """The posterior predictive of reality ``ζ = η(x, θ) + δ(x)`` with the data: one panel
    per campaign (and per output), or per campaign with every output against its
    coordinate for functional outputs.

    Two bands: reality itself (:meth:`Posterior.predict`), and a new measurement of it
    (``noise=True``: where the data should fall), drawn when the noise is inferred or known
    and the same for every observation of the campaign. Data with a known noise sd carry
    error bars of the same ``level``.

    Parameters
    ----------
    post : Posterior
    campaign : str, optional
        One campaign; default every campaign.
    output : str, optional
        One output (by name); default every output. Naming one draws a functional output
        as a scalar one, against the control input.
    level : float
        Central probability of the bands, in (0, 1).
    n_draws : int
        Posterior draws the predictions use (evenly spaced in the chain).
    seed : int or None
        For the δ and noise draws.
    max_curves : int
        Functional outputs: at most this many observed rows per campaign.

    Returns
    -------
    Figure

    Raises
    ------
    ValueError
        An unknown campaign or output.
    """
    post = check_posterior(post)
    level = check_level(level)
    n_draws = check_int(n_draws, "n_draws", least=1)
    max_curves = check_int(max_curves, "max_curves", least=1)
    seed = check_seed(seed)
    camps = _campaigns(post, campaign)
    out_names = list(post.calibrator.output_names)
    if output is not None and output not in out_names:
        raise ValueError(f"output must be one of {out_names}, got {output!r}")
    functional = output is None and _functional(post)
    outs = [0] if functional else ([out_names.index(output)] if output else range(len(out_names)))
    outs = list(outs)
    fig, axes = grid(len(camps) * len(outs), max_cols=max(3, len(outs)))
    z = stats.norm.ppf((1 + level) / 2)
    pct = _pct(level)
    opts = {"n_draws": n_draws, "seed": seed, "level": level}
    for c_i, name in enumerate(camps):
        x, y, noise = _data(post, name)
        cols = _columns(post, name)
        kind, X = _where(post, [x], max_curves, functional)
        pred = post.predict(X, campaign=name, **opts)
        meas = (
            post.predict(X, campaign=name, noise=True, **opts)
            if _measurement_band_known(post, noise)
            else None
        )
        for o_i, j in enumerate(outs):
            ax = axes[c_i * len(outs) + o_i]
            if meas is not None:
                _draw(
                    ax,
                    post,
                    kind,
                    X,
                    meas,
                    j,
                    f"new measurement, {pct}",
                    color=PRIOR_LIKE,
                    mean=False,
                )
            _draw(ax, post, kind, X, pred, j, f"reality ζ, {pct}")
            if kind == "coords":
                t = _column_coords(post)[cols]  # each column at its own coordinate
                for r, row in enumerate(_rows(len(x), max_curves)):
                    ax.plot(t, y[row], "o", ms=3, color=f"C{r % 10}", mec=DATA, mew=0.4)
                ax.plot([], [], "o", ms=3, color="w", mec=DATA, label="data")
            elif (hit := np.flatnonzero(cols == j)).size:  # y's column of output j, if any
                t = x[:, 0] if kind == "grid" else np.arange(len(x))
                # a noise_sd the model infers instead is not the data's: no error bars then
                known = noise is not None and post.model.noise_block.known
                yerr = z * noise[:, hit[0]] if known else None
                ax.errorbar(t, y[:, hit[0]], yerr=yerr, fmt="o", ms=3.5, color=DATA, label="data")
            title = f"campaign {name}"
            if len(out_names) > 1 and not functional:
                title += f" · {out_names[j]}"
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(_xlabel(post, kind))
            ax.set_ylabel("output" if functional else out_names[j])
            ax.legend(fontsize=7)
    fig.suptitle(f"posterior predictive ({n_draws} draws at most) with the data", fontsize=10)
    return fig


def discrepancy(
    post: Any,
    campaign: str | None = None,
    level: float = 0.9,
    n_draws: int = 300,
    seed: int | None = 0,
    max_curves: int = 4,
) -> Figure:
    """The model discrepancy δ: its posterior mean and ``level`` band
    (:meth:`Posterior.discrepancy`), per output, against zero.

    A shared δ is one function for every campaign: one panel (or one row of panels, one
    per output) over the range of all campaigns' inputs, ticks on the axis where the data
    are. An independent δ has one panel per campaign.

    Parameters
    ----------
    post : Posterior
    campaign : str, optional
        One campaign; default every campaign (an independent δ) or the shared δ.
    level, n_draws, seed, max_curves
        As :func:`predictive`.

    Returns
    -------
    Figure

    Raises
    ------
    ValueError
        The calibration has no discrepancy (``discrepancy="none"``), or an unknown campaign.
    """
    post = check_posterior(post)
    mode = post.calibrator.discrepancy.mode
    if mode == "none":
        raise ValueError(
            "the calibration has no discrepancy (discrepancy='none'): there is no δ to draw"
        )
    level = check_level(level)
    n_draws = check_int(n_draws, "n_draws", least=1)
    max_curves = check_int(max_curves, "max_curves", least=1)
    seed = check_seed(seed)
    shared = mode == "shared" and campaign is None
    camps = _campaigns(post, campaign)
    groups = [camps] if shared else [[c] for c in camps]
    functional = _functional(post)
    out_names = list(post.calibrator.output_names)
    outs = [0] if functional else list(range(len(out_names)))
    fig, axes = grid(len(groups) * len(outs), max_cols=max(3, len(outs)), panel=(5.0, 3.4))
    for g_i, group in enumerate(groups):
        xs = [_data(post, c)[0] for c in group]
        kind, X = _where(post, xs, max_curves, functional)
        # a shared δ is the same function in every campaign: ask through the first
        pred = post.discrepancy(X, campaign=group[0], n_draws=n_draws, seed=seed, level=level)
        for o_i, j in enumerate(outs):
            ax = axes[g_i * len(outs) + o_i]
            _draw(ax, post, kind, X, pred, j, f"δ, {_pct(level)}")
            ax.axhline(0.0, color=DATA, lw=0.8, ls="--", label="δ = 0")
            if kind == "grid":
                x = np.concatenate(xs)[:, 0]
                ax.plot(x, np.zeros_like(x), "|", color=DATA, ms=10, label="data inputs")
            where = "shared by every campaign" if shared else f"campaign {group[0]}"
            title = f"δ, {where}"
            if len(out_names) > 1 and not functional:
                title += f" · {out_names[j]}"
            ax.set_title(title, fontsize=9)
            ax.set_xlabel(_xlabel(post, kind))
            ax.set_ylabel("δ" if functional else f"δ of {out_names[j]}")
            ax.legend(fontsize=7)
    fig.suptitle("model discrepancy δ (reality − simulator)", fontsize=10)
    return fig
