"""The observed entries of all campaigns, δ's features and the covariance blocks.

Every observed value ``y_ℓij`` (row ``i`` of campaign ``ℓ``, output ``j``; missing values
dropped) is one entry ``a`` with features ``z_a = (x_ℓi, s_j)`` for δ (``s_j`` the output's
coordinates, when it has them). Entries are grouped in covariance blocks that are
independent a priori: one block per campaign when δ is ``"none"`` or ``"independent"`` in
direct mode, and a single block of all entries when one δ couples the campaigns
(``"shared"``) or an emulator is used (its error is one GP over all campaigns' points).
Blocks are padded to a common size (docs/model.md, "Cost of one log-posterior call").

A campaign with its own output coordinates (``Campaign(coords=)``) has its columns mapped
onto the outputs by :class:`calib._field_coords.FieldOutputs`: an output of the model, or a
virtual one interpolated between two; ``s_j`` is then the column's own coordinate.
"""

from __future__ import annotations

import numpy as np

from ._field_coords import FieldOutputs
from .kernels import sq_dists

__all__ = ["Observations"]


class Observations:
    """The data of a calibration as flat entries (built once, by :class:`calib.likelihood.Model`).

    Parameters
    ----------
    xs, ys, noises : per campaign ``x (n, p)``, ``y (n, m)`` (NaN missing), known
        ``noise_sd (n, m)`` or None
    output_coords : array (m, r) or None
    input_names : names of the control inputs (δ's feature names)
    joint : one covariance block of all entries (shared δ or an emulator)
    delta_per_campaign : δ links entries of the same campaign only (``"independent"``)
    field_coords : per campaign the coordinates ``(k_ℓ, r)`` of its columns or None
        (``Campaign(coords=)``); then that campaign's ``y`` is ``(n, k_ℓ)``
    campaign_names : names of the campaigns, for messages

    Attributes
    ----------
    obs_row, obs_col, obs_campaign, y_obs : (N,) row (over all campaigns' rows), output,
        campaign and value of each observed entry; outputs ``m … M−1`` are the virtual
        ones of ``field`` (``M = m`` without)
    field : FieldOutputs or None
        The virtual outputs, when some campaign has coordinates of its own
    known_var : (N,) known noise variances, or None unless every campaign has noise_sd
    z_obs : (N, D) δ's features; ``feature_names`` their names
    block_idx, block_pad : (B, Nmax) the entries of each covariance block and its pads
    """

    def __init__(
        self,
        xs: list[np.ndarray],
        ys: list[np.ndarray],
        noises: list[np.ndarray | None],
        output_coords: np.ndarray | None,
        input_names: tuple[str, ...],
        joint: bool,
        delta_per_campaign: bool,
        field_coords: list[np.ndarray | None] | None = None,
        campaign_names: list[str] | None = None,
    ):
        self.xs, self.ys, self.noises = xs, ys, noises
        self._delta_per_campaign = delta_per_campaign
        L = len(xs)
        self.field = None
        if field_coords is not None and any(c is not None for c in field_coords):
            names = campaign_names or [str(l) for l in range(L)]
            self.field = FieldOutputs(output_coords, list(field_coords), list(names))
        m = ys[0].shape[1] if output_coords is None else output_coords.shape[0]
        if self.field is None and any(y.shape[1] != m for y in ys):
            # a Campaign(coords=) whose coordinates did not reach here: never guess them
            raise ValueError(
                f"campaigns: y has {sorted({y.shape[1] for y in ys})} columns where the model "
                f"has {m} outputs; a campaign with coords= needs them passed (field_coords)"
            )
        self.M = m if self.field is None else self.field.M
        self.row_offsets = np.cumsum([0] + [x.shape[0] for x in xs])
        self.X_rows = np.concatenate(xs, axis=0)  # (n_rows, p)
        self.row_campaign = np.concatenate([np.full(x.shape[0], l) for l, x in enumerate(xs)])
        obs_row, obs_col, obs_camp, y_obs, known_var = [], [], [], [], []
        for l, y in enumerate(ys):
            i, j = np.nonzero(np.isfinite(y))
            obs_row.append(i + self.row_offsets[l])
            cols = None if self.field is None else self.field.columns[l]
            obs_col.append(j if cols is None else cols[j])
            obs_camp.append(np.full(i.size, l))
            y_obs.append(y[i, j])
            if noises[l] is not None:
                known_var.append(noises[l][i, j] ** 2)
        self.obs_row = np.concatenate(obs_row)
        self.obs_col = np.concatenate(obs_col)
        self.obs_campaign = np.concatenate(obs_camp)
        self.y_obs = np.concatenate(y_obs)
        self.N = self.y_obs.size
        self.n_obs_campaign = np.bincount(self.obs_campaign, minlength=L)
        every = len(known_var) == L
        self.known_var = np.concatenate(known_var) if every else None
        self.y_sd = float(np.std(self.y_obs)) if self.N > 1 else 0.0
        if not self.y_sd > 0:
            self.y_sd = max(float(np.mean(np.abs(self.y_obs))), 1.0)
        # jitter ε = 1e-10 · var(y): keeps Cholesky stable, far below any modelled variance
        self.jitter = 1e-10 * self.y_sd**2

        # ---------------------------------------------------------------- δ features
        feats = [self.X_rows[self.obs_row]]
        feat_names = list(input_names)
        if output_coords is not None:
            coords = output_coords if self.field is None else self.field.coords
            feats.append(coords[self.obs_col])
            r = output_coords.shape[1]
            feat_names += ["s"] if r == 1 else [f"s{k}" for k in range(r)]
        self.z_obs = np.concatenate(feats, axis=1)  # (N, D)
        self.feature_names = feat_names
        self.D = self.z_obs.shape[1]
        # outputs without coordinates get independent δ per output (common hyperparameters)
        self.split_outputs = output_coords is None and m > 1

        # ---------------------------------------------------------------- covariance blocks
        groups = (
            [np.arange(self.N)]
            if joint
            else [np.flatnonzero(self.obs_campaign == l) for l in range(L)]
        )
        self.B = len(groups)
        self.Nmax = max(g.size for g in groups)
        idx = np.zeros((self.B, self.Nmax), dtype=np.int64)
        pad = np.ones((self.B, self.Nmax), dtype=bool)
        for b, g in enumerate(groups):
            idx[b, : g.size] = g
            pad[b, : g.size] = False
        self.block_idx = idx
        self.block_pad = pad

    def delta_sq_dists(self) -> np.ndarray:
        """Squared distances between the features of each block's entries."""
        z = self.z_obs[self.block_idx]  # (B, Nmax, D)
        return np.stack([sq_dists(z[b], z[b]) for b in range(self.B)], axis=1)

    def delta_mask(self) -> np.ndarray:
        """``(B, Nmax, Nmax)``: whether δ links entries a and b (eq. 6's ``M_ab``)."""
        idx, pad = self.block_idx, self.block_pad
        mask = ~pad[:, :, None] & ~pad[:, None, :]
        if self._delta_per_campaign:
            c = self.obs_campaign[idx]
            mask &= c[:, :, None] == c[:, None, :]
        if self.split_outputs:
            j = self.obs_col[idx]
            mask &= j[:, :, None] == j[:, None, :]
        return mask
