"""The emulator's part of the likelihood plan: which outputs it is asked for, and where
the entries of its covariance sit in the covariance blocks of eq. 6 (docs/model.md).

In emulator mode :class:`calib.likelihood.Model` asks the emulator only for the outputs
that hold observations (those of campaigns at their own output coordinates through
:meth:`calib._field_coords.FieldOutputs.predict`), and gathers the entries ``cov[j_a, i_a,
i_b]`` its blocks need from the emulator's per-output covariance ``(W, k, n_rows,
n_rows)`` with one flat ``index_select``. All of it depends on the data only and is built
once, with the model's other constants.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["EmulatorPlan"]

DTYPE = torch.float64


class EmulatorPlan:
    """Emulator-mode indices and masks of a :class:`calib.likelihood.Model`.

    Parameters
    ----------
    model : calib.likelihood.Model
        With its observed entries and blocks set (:class:`calib.observations.Observations`);
        the tensors are made on its device.

    Attributes
    ----------
    outputs : tuple of int or None
        The forward model's outputs the emulator is asked for; None: all ``m``.
    field : ndarray of int or None
        The outputs (in ``0 … M−1``) asked for when some are interpolated at campaigns'
        own coordinates, else None.
    t_x : Tensor (n_rows, p)
        The observation rows.
    t_res_idx : Tensor (B·Nmax,)
        Flat positions of the blocks' entries in the emulator's mean ``(W, n_rows, k)``.
    t_idx, t_idx_full : Tensor (B·Nmax·Nmax,)
        Flat positions of ``cov[j_a, i_a, i_b]`` for every pair of every block, in a
        covariance over the asked outputs and over all ``M`` outputs (predictions).
    t_mask : Tensor (B, Nmax, Nmax)
        1 where entries a and b are of the same output and neither is a pad.
    """

    def __init__(self, model):
        # the emulator is evaluated at every row, as the full prediction is: a GP's mean
        # k(x*, X)α carries rounding errors of ~1e-10 relative (α is large where the runs
        # are dense) that change with the shape of its matrix products, so leaving out rows
        # without observations would change the values at that level for a negligible saving
        idx, pad = model.block_idx, model.block_pad
        cols = np.unique(model.obs_col)
        nr, nc = len(model.X_rows), cols.size
        self.outputs = None if nc == model.m else tuple(int(c) for c in cols)
        self.field = None if model.M == model.m else cols  # some interpolated
        self.t_x = model._tensor(model.X_rows, DTYPE)  # (n_rows, p)
        ci = np.searchsorted(cols, model.obs_col)
        self.t_res_idx = model._tensor((model.obs_row * nc + ci)[idx].reshape(-1))
        self.t_idx = _gather(model, model.obs_row, ci, nr)
        self.t_idx_full = _gather(model, model.obs_row, model.obs_col, nr)
        # C_η couples entries of one output only (the contract's per-output covariance)
        j = model.obs_col[idx]
        same = (j[:, :, None] == j[:, None, :]) & ~pad[:, :, None] & ~pad[:, None, :]
        self.t_mask = model._tensor(same, DTYPE)  # (B, Nmax, Nmax)

    def predict(self, model, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The emulator's mean ``(W, n_rows, k)`` and covariance ``(W, k, n_rows, n_rows)``
        at the observation rows for ``theta (W, L, q)``, of the asked outputs only."""
        W, n = theta.shape[0], self.t_x.shape[0]
        th = theta.expand(W, n, model.q) if model.L == 1 else theta[:, model._t_row_campaign]
        if self.field is not None:
            return model.field.predict(model.forward, self.t_x, th, self.field)
        return model.forward.predict(self.t_x, th, self.outputs)


def _gather(model, ri: np.ndarray, ci: np.ndarray, nr: int) -> torch.Tensor:
    """Flat positions of cov[j_a, i_a, i_b] in a covariance ``(W, ·, nr, nr)``, for every
    pair (a, b) of every block (pads point anywhere; they are masked)."""
    r, c = ri[model.block_idx], ci[model.block_idx]  # (B, Nmax)
    e = c[:, :, None] * nr * nr + r[:, :, None] * nr + r[:, None, :]
    return model._tensor(e.reshape(-1))
