"""Predictions at any output coordinates: ``post.predict(X, campaign, coords=)``.

The model's outputs ``0 … M−1`` are the forward model's ``m`` and the virtual ones at the
campaigns' own coordinates (:mod:`calib._field_coords`). A prediction at other coordinates
inside the range of the model's extends them by further virtual outputs, interpolated
exactly as the likelihood interpolates (:class:`calib._field_coords.FieldOutputs`: linearly
between the two bracketing outputs; the basis emulator interpolates its basis). The
extension is built from the model's campaigns first, so its first ``M`` outputs are the
model's own, in the same order, with the same weights: the observed entries index them
unchanged, and a coordinate that is one of the model's (a simulator coordinate, or a
campaign's own) is that output, not a new one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._field_coords import FieldOutputs

if TYPE_CHECKING:
    from .likelihood import Model

__all__ = ["check_coords", "output_labels", "prediction_outputs"]

# the name the coordinates go by inside FieldOutputs (its messages are rewritten to "coords")
_TAG = "<coords>"


def check_coords(model: Model, coords: Any, campaign: int | None = None) -> np.ndarray | None:
    """Check ``coords=`` of a prediction at the boundary; the coordinates ``(k, r)``.

    Parameters
    ----------
    model : calib.likelihood.Model
    coords : None, "campaign", or array (k,) or (k, r)
        None: the model's outputs (returned as None). ``"campaign"``: the columns of
        campaign ``campaign`` (its own coordinates, or the model's outputs for a campaign
        without). Otherwise ``k`` output coordinates, a 1-D array when the outputs have one
        coordinate each.
    campaign : int or None
        The campaign predicted (None: a new campaign).

    Returns
    -------
    ndarray (k, r) or None

    Raises
    ------
    ValueError
        The model's outputs have no coordinates; ``"campaign"`` for a new campaign; an array
        of another shape, empty, or not finite; a coordinate outside the range of the
        model's (calib interpolates, it does not extrapolate); with two or more coordinates
        per output, a coordinate that is not one of the model's.
    """
    if coords is None:
        return None
    if isinstance(coords, str):
        if coords != "campaign":
            raise ValueError(f"coords: expected 'campaign' or an array, got {coords!r}")
        if campaign is None:
            raise ValueError(
                "coords='campaign': a new campaign has no coordinates of its own; give them "
                "as an array"
            )
        field = model.field
        cols = None if field is None else field.columns[campaign]
        return None if cols is None else field.coords[cols]
    sim = model.output_coords
    if sim is None:
        raise ValueError(
            "coords: given, but the model's outputs have no coordinates (a simulator's "
            "output_coords; for an emulator pass output_coords= to the Calibrator)"
        )
    r = sim.shape[1]
    try:
        c = np.asarray(coords, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"coords: expected an array of numbers, got {coords!r}") from None
    if c.ndim <= 1 and r == 1:
        c = c.reshape(-1, 1)
    if c.ndim != 2 or c.shape[1] != r or c.shape[0] == 0:
        want = "(k,) or (k, 1)" if r == 1 else f"(k, {r})"
        raise ValueError(
            f"coords: expected shape {want}, k ≥ 1 (the model's outputs have {r} "
            f"coordinate(s) each), got {np.shape(coords)}"
        )
    if not np.isfinite(c).all():
        raise ValueError("coords contains NaN or inf")
    if r == 1:
        lo, hi = float(sim.min()), float(sim.max())
        out = np.flatnonzero((c[:, 0] < lo) | (c[:, 0] > hi))
        if out.size:
            i = int(out[0])
            raise ValueError(
                f"coords[{i}] = {c[i, 0]:.6g} is outside the range of the model's output "
                f"coordinates [{lo:.6g}, {hi:.6g}]; calib interpolates, it does not "
                f"extrapolate"
            )
    else:  # only the model's own coordinates: interpolation is along one coordinate
        span = float(np.max(np.ptp(sim, axis=0))) if sim.shape[0] > 1 else 1.0
        tol = 1e-12 * max(span, np.finfo(float).tiny)  # FieldOutputs' "same point"
        for i, s in enumerate(c):
            if not (np.max(np.abs(sim - s), axis=1) <= tol).any():
                raise ValueError(
                    f"coords[{i}] = ({', '.join(f'{v:.6g}' for v in s)}) is not one of the "
                    f"model's output coordinates, and calib interpolates along one "
                    f"coordinate only (the model's have {r})"
                )
    return c


def prediction_outputs(
    model: Model, coords: Any, campaign: int | None = None
) -> tuple[FieldOutputs | None, np.ndarray | None]:
    """The outputs at ``coords``: the field that has them, and their indices in it.

    Parameters
    ----------
    model : calib.likelihood.Model
    coords, campaign : as :func:`check_coords`

    Returns
    -------
    field : FieldOutputs or None
        ``model.field`` (None without campaigns at their own coordinates) when every
        coordinate is one of the model's outputs; otherwise the model's outputs extended by
        the new ones, ``M′ > M`` outputs of which the first ``M`` are the model's.
    outputs : ndarray (k,) of int, or None
        The output (in ``0 … M′−1``) at each coordinate; None for the model's ``m``
        outputs (``coords="campaign"`` of a campaign without coordinates of its own).
    """
    c = check_coords(model, coords, campaign)
    field = model.field
    if c is None:
        return field, None
    own = [None] * model.L if field is None else list(field.columns)
    given = [None if cols is None else field.coords[cols] for cols in own]
    try:
        ext = FieldOutputs(model.output_coords, given + [c], model.campaign_names + [_TAG])
    except ValueError as err:  # an ambiguous coordinate: the model's outputs repeat one
        raise ValueError(str(err).replace(f"Campaign '{_TAG}': ", "coords: ")) from None
    outputs = ext.columns[-1]
    if outputs.max() < model.M:  # all among the model's outputs: its own path, bit for bit
        return field, outputs
    return ext, outputs


def output_labels(
    names: tuple[str, ...], model: Model, field: FieldOutputs | None, outputs: np.ndarray
) -> tuple[str, ...]:
    """A name per predicted output: the model's output name at one of its coordinates
    (``names[j]``), ``"s=<coordinate>"`` (δ's name of the coordinate feature) between them."""
    labels = []
    for j in outputs:
        if j < model.m:
            labels.append(names[j])
            continue
        s = field.coords[j]
        labels.append("s=" + ",".join(f"{v:.6g}" for v in s))
    return tuple(labels)
