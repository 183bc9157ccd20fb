"""Telling θ from δ: the identifiability report of a posterior.

Kennedy & O'Hagan (2001, §4.3) noted that a GP discrepancy δ can absorb what the
calibration parameters θ should explain; Brynjarsdóttir & O'Hagan (2014, "Learning about
physical parameters: the importance of model discrepancy") showed calibrations confidently
wrong for that reason. :meth:`calib.Posterior.identifiability` measures, for every
calibration parameter (of each campaign where θ is per campaign), how much the data
informed it and how much it trades against δ (docs/identifiability.md):

- contraction ``c = 1 − Var_post[θ] / Var_prior[θ]``;
- its posterior correlation with each of δ's sampled hyperparameters (``log σ_δ``,
  ``log ℓ_d``), reported as the largest ``|corr|`` and its hyperparameter;
- the δ share of the fitted signal ``s = Σ δ̂² / (Σ δ̂² + Σ (η̂ − ȳ)²)`` over the observed
  entries, with δ̂ and η̂ the posterior means of δ and of the simulator there;

and flags a parameter "barely informed" or "traded against δ" by the thresholds below.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ._data_only import data_only_sd
from ._prior_variance import PRIOR_DRAWS as PRIOR_DRAWS
from ._prior_variance import prior_variances, theta_entries
from ._validation import check_int, check_seed
from .conditional import conditional_mean

__all__ = [
    "CONTRACTION_LOW",
    "CONTRACTION_PINNED",
    "CORRELATION_HIGH",
    "Identifiability",
    "IdentifiabilityReport",
    "IdentifiabilityWarning",
    "SHARE_HIGH",
]

#: "barely informed" below this contraction: the data removed less than half the prior
#: variance, so the posterior sd is still above 1/√2 ≈ 71 % of the prior's
CONTRACTION_LOW = 0.5
#: "traded against δ" at or above this |corr| with a δ hyperparameter: that hyperparameter
#: then explains linearly at least a quarter (r² ≥ 0.25) of θ's posterior variance
CORRELATION_HIGH = 0.5
#: ... or when δ carries at least this share of the fit (s ≥ 1/3: Σ δ̂² at least half of
#: Σ (η̂ − ȳ)²) while the data have not pinned θ (contraction below ``CONTRACTION_PINNED``)
SHARE_HIGH = 1.0 / 3.0
CONTRACTION_PINNED = 0.9
#: "widened by δ" at or above this ratio of the posterior sd to the sd the data alone give
#: with δ absent (calib/_data_only.py). Any GP δ that can mimic the simulator's sensitivity
#: widens θ (measured, tests and the simple machine: δ truly zero 17×, δ constrained 13×,
#: S-GaSP 14×); far beyond that, δ takes up what θ explains and θ's value rests on δ's
#: prior (Brynjarsdóttir & O'Hagan's simple machine with a GP δ 49×, θ exactly confounded
#: with a constant δ 57×). A heuristic between the two groups, documented as such.
WIDENING_HIGH = 25.0
#: δ predictions at most this many entries (points × outputs) at a time: the conditional's
#: covariance and its draws grow with the square and cube of that number
_CHUNK = 128

BARELY, TRADED, WIDENED = "barely informed", "traded against δ", "widened by δ"


class IdentifiabilityWarning(UserWarning):
    """A calibration parameter is barely informed by the data or traded against the
    discrepancy δ: its posterior may be the prior's or δ's doing rather than the data's.
    The message names the parameter, the numbers behind the flag and what to try
    (docs/identifiability.md)."""


class IdentifiabilityReport:
    """The identifiability of each calibration parameter (:meth:`calib.Posterior.identifiability`).

    Attributes
    ----------
    rows : list of dict
        One per calibration parameter entry: ``name`` (as :meth:`calib.Posterior.draws`
        knows it, e.g. ``"E"`` or ``"E[batch-A]"``), ``parameter``, ``campaign`` (None for a
        θ common to all campaigns), ``prior_var``, ``post_var``, ``contraction``, ``corr``
        (``{hyperparameter label: corr}``, empty without δ), ``max_abs_corr`` and
        ``corr_with`` (None without δ), ``delta_share`` (the largest share over the outputs
        of the entries that inform this θ; None without δ or in the summary's cheap
        report) and ``flags`` (a list of ``"barely informed"``, ``"traded against δ"``).
    shares : list of dict
        ``campaign`` (None: all campaigns), ``output`` (None: all outputs), ``share``,
        ``sum_delta2`` (Σ δ̂²) and ``sum_eta2`` (Σ (η̂ − ȳ)²); empty without δ.
    warnings : list of str
        One message per flagged parameter: the flags, the numbers and what to try.
    delta : bool
        Whether the model has a discrepancy.
    """

    def __init__(self, rows: list[dict], shares: list[dict], delta: bool, warnings: list[str]):
        self.rows = rows
        self.shares = shares
        self.delta = delta
        self.warnings = warnings

    def __getitem__(self, name: str) -> dict[str, Any]:
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(
            f"no parameter {name!r} in the report; have {[r['name'] for r in self.rows]}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data: ``delta``, ``rows``, ``shares``, ``warnings`` and ``thresholds``."""
        return {
            "delta": self.delta,
            "rows": [dict(r, corr=dict(r["corr"]), flags=list(r["flags"])) for r in self.rows],
            "shares": [dict(s) for s in self.shares],
            "warnings": list(self.warnings),
            "thresholds": {
                "contraction_low": CONTRACTION_LOW,
                "correlation_high": CORRELATION_HIGH,
                "share_high": SHARE_HIGH,
                "contraction_pinned": CONTRACTION_PINNED,
                "widening_high": WIDENING_HIGH,
            },
        }

    def __str__(self) -> str:
        def num(v: Any, fmt: str) -> str:
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

        cols = ("parameter", "contraction", "max|corr|", "with", "δ share", "δ widens", "flags")
        cells = [
            (
                r["name"],
                num(r["contraction"], ".3f"),
                num(r["max_abs_corr"], ".3f"),
                r["corr_with"] or "-",
                num(r["delta_share"], ".3f"),
                num(r.get("widening"), ".1f"),
                ", ".join(r["flags"]) or "-",
            )
            for r in self.rows
        ]
        w = [max([len(c)] + [len(row[k]) for row in cells]) for k, c in enumerate(cols)]

        def line(row: tuple[str, ...]) -> str:  # text columns left, numbers right
            return "  ".join(
                f"{v:<{w[k]}}" if k in (0, 3, 6) else f"{v:>{w[k]}}" for k, v in enumerate(row)
            ).rstrip()

        out = [line(cols), "-" * len(line(cols))] + [line(row) for row in cells]
        if not self.delta:
            out.append("(the model has no discrepancy δ: contraction only)")
        out += [f"warning: {m}" for m in self.warnings]
        return "\n".join(out)

    __repr__ = __str__


class Identifiability:
    """The identifiability report of :class:`calib.Posterior` (it sets ``model``,
    ``calibrator`` and the chain)."""

    def identifiability(self, n_draws: int = 200, seed: int | None = 0) -> IdentifiabilityReport:
        """How well the data inform each calibration parameter, and how much it trades
        against the discrepancy δ (docs/identifiability.md).

        For every calibration parameter (of each campaign where θ is per campaign): its
        contraction ``1 − Var_post/Var_prior``; its posterior correlation with each of δ's
        sampled hyperparameters ``log σ_δ``, ``log ℓ_d`` (the largest |corr| and which);
        and the share of the fitted signal that δ explains,
        ``Σ δ̂² / (Σ δ̂² + Σ (η̂ − ȳ)²)`` over the observed entries that inform it (δ̂ and
        η̂ the posterior means of δ and of the simulator there, ȳ the observations' mean;
        per output when the outputs have no coordinates, since they may have different
        units); and how much δ widens it, its posterior sd over the sd the data alone give
        with δ absent (Gauss–Newton at the posterior mean, calib/_data_only.py). A
        parameter is flagged "barely informed" when its contraction is below 0.5, "traded
        against δ" when |corr| ≥ 0.5 or the δ share is ≥ 1/3 while the contraction is
        below 0.9, "widened by δ" when the widening is ≥ 25.

        Parameters
        ----------
        n_draws : int
            Posterior draws (evenly spaced in the chain) for the δ predictions; the
            contraction and correlations use every kept draw.
        seed : int or None
            For the Monte Carlo prior variance of partially pooled parameters and the
            prediction calls.

        Returns
        -------
        IdentifiabilityReport

        Warns
        -----
        IdentifiabilityWarning
            When a parameter is flagged, naming it and what to try.
        """
        n_draws = check_int(n_draws, "n_draws", 1)
        seed = check_seed(seed)
        report = self._identifiability(cheap=False, n_draws=n_draws, seed=seed)
        if report.warnings:
            warnings.warn(" | ".join(report.warnings), IdentifiabilityWarning, stacklevel=2)
        return report

    def _identifiability(
        self, cheap: bool, n_draws: int = 200, seed: int | None = 0
    ) -> IdentifiabilityReport:
        """The report; ``cheap``: contraction and correlations only (no δ predictions), for
        :meth:`calib.Posterior.summary`, cached."""
        if cheap and getattr(self, "_identifiability_cache", None) is not None:
            return self._identifiability_cache
        model = self.model
        entries = theta_entries(model)
        prior_var = prior_variances(model, entries, seed)
        hyper = _hyper_columns(model)
        flat = self.flat_unconstrained() if hyper else None
        delta = model.disc_block is not None
        shares = [] if cheap or not delta else _delta_shares(self, n_draws, seed)
        # the simulator at 2K + 1 points: not for summary(), which must not run it
        data_sd = {} if cheap or not delta else data_only_sd(self, entries)
        several = len(model.campaign_names) > 1
        rows, messages = [], []
        for e in entries:
            th = self.draws(e["name"])
            post_var = float(np.var(th, ddof=1)) if th.size > 1 else math.nan
            pv = prior_var[e["name"]]
            contraction = 1.0 - post_var / pv if pv > 0 else math.nan
            corr = {label: _corr(th, flat[:, col]) for label, col in hyper}
            finite = {k: v for k, v in corr.items() if np.isfinite(v)}
            with_ = max(finite, key=lambda k: abs(finite[k])) if finite else None
            max_corr = abs(finite[with_]) if with_ else (math.nan if delta else None)
            share = None
            if shares:
                key = e["campaign"] if several else None
                share = max(s["share"] for s in shares if s["campaign"] == key)
            widening = math.sqrt(post_var) / data_sd[e["name"]] if e["name"] in data_sd else None
            flags = _flags(contraction, max_corr, share, delta)
            if widening is not None and widening >= WIDENING_HIGH:
                flags.append(WIDENED)
            row = {
                "name": e["name"],
                "parameter": e["parameter"],
                "campaign": e["campaign"],
                "prior_var": pv,
                "post_var": post_var,
                "contraction": contraction,
                "corr": corr,
                "max_abs_corr": max_corr,
                "corr_with": with_,
                "delta_share": share,
                "data_sd": data_sd.get(e["name"]),
                "widening": widening,
                "flags": flags,
            }
            rows.append(row)
            if flags:
                messages.append(_message(row, corr.get(with_) if with_ else None))
        report = IdentifiabilityReport(rows, shares, delta, messages)
        if cheap:
            self._identifiability_cache = report
        return report


def _flags(contraction: float, max_corr: float | None, share: float | None, delta: bool) -> list:
    """The flags of one parameter by the module's thresholds (NaN raises none)."""
    flags = []
    if contraction < CONTRACTION_LOW:
        flags.append(BARELY)
    if delta and (
        (max_corr is not None and max_corr >= CORRELATION_HIGH)
        or (share is not None and share >= SHARE_HIGH and contraction < CONTRACTION_PINNED)
    ):
        flags.append(TRADED)
    return flags


def _message(row: dict, corr: float | None) -> str:
    """What a flagged parameter's warning says: the flags, the numbers, what to try."""
    name, p = row["name"], row["parameter"]
    said = []
    if BARELY in row["flags"]:
        said.append(
            f"barely informed (contraction {row['contraction']:.2f}: the data removed "
            f"{max(row['contraction'], 0.0):.0%} of its prior variance)"
        )
    if TRADED in row["flags"]:
        why = []
        if corr is not None and abs(corr) >= CORRELATION_HIGH:
            why.append(f"posterior correlation {corr:+.2f} with {row['corr_with']}")
        if row["delta_share"] is not None and row["delta_share"] >= SHARE_HIGH:
            why.append(f"δ carries {row['delta_share']:.0%} of the fitted signal")
        said.append(f"traded against δ ({'; '.join(why)})")
    if WIDENED in row["flags"]:
        said.append(
            f"widened by δ (its posterior sd is {row['widening']:.0f}× the {row['data_sd']:.3g} "
            f"the data alone give with δ absent: δ takes up what {p} explains, so its value "
            f"rests on δ's prior; compare a run without δ)"
        )
    tries = []
    if TRADED in row["flags"] or WIDENED in row["flags"]:
        tries.append(
            "tell δ what you know: Discrepancy(..., zero_at=X0) where the model is exact "
            "(and zero_slope_at=X1 where its slope is), or process='sgasp', which keeps δ "
            "small so that θ explains what it can; a tighter scale_prior on δ"
        )
    tries.append(f"a more informative prior on {p} if you have one")
    tries.append(f"data at more x, where the simulator's output is sensitive to {p}")
    return f"{name}: {' and '.join(said)}. Try: {'; '.join(tries)} (docs/identifiability.md)."


def _hyper_columns(model) -> list[tuple[str, int]]:
    """``(label, column of u)`` of δ's sampled hyperparameters: ``log σ_δ``, ``log ℓ_d``."""
    if model.disc_block is None:
        return []
    cols = []
    for slot in ("discrepancy.logscale", "discrepancy.loglengthscale"):
        s = model.slots[slot]
        cols += [(model.labels[c], c) for c in range(s.start, s.stop)]
    return cols


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either is constant (a fixed or stuck column)."""
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(np.corrcoef(a, b)[0, 1])


def _delta_shares(post, n_draws: int, seed: int | None) -> list[dict]:
    """δ's share of the fitted signal per campaign (and over all campaigns when there are
    several), per output when the outputs have no coordinates (they may then be quantities
    of different units), else over all outputs.

    δ̂ is :meth:`calib.Posterior.discrepancy`'s mean at the campaign's observed rows and
    η̂ :meth:`calib.Posterior.predict`'s mean there minus δ̂: both averages of the exact
    conditional means over the same ``n_draws`` draws, so η̂ is the simulator's (in
    emulator mode, the emulator's conditioned) mean part of the prediction.
    """
    model = post.model
    names, m = model.campaign_names, model.m
    fits = []
    for l, (c, X, y) in enumerate(zip(names, model.xs, model.ys)):
        d, r = np.empty(y.shape), np.empty(y.shape)
        # a campaign at its own output coordinates: δ̂ and η̂ at its columns (outputs of the
        # model or interpolated ones), from the same conditional (calib/_field_coords.py)
        cols = None if model.field is None else model.field.columns[l]
        U = None if cols is None else post._subsample(n_draws)
        step = max(1, _CHUNK // y.shape[1])
        for a in range(0, X.shape[0], step):
            part = X[a : a + step]
            if cols is not None:
                d[a : a + step] = conditional_mean(model, U, part, l, "discrepancy", cols)
                r[a : a + step] = conditional_mean(model, U, part, l, "reality", cols)
                continue
            d[a : a + step] = post.discrepancy(part, campaign=c, n_draws=n_draws, seed=seed).mean
            r[a : a + step] = post.predict(part, campaign=c, n_draws=n_draws, seed=seed).mean
        fits.append((d, r - d, y))
    outs = list(post.calibrator.output_names)
    # with output coordinates every column of a campaign is in one group (y's columns)
    groups = (
        [(outs[j], [j]) for j in range(m)]
        if m > 1 and model.output_coords is None
        else [(None, slice(None))]
    )
    scopes = [(c, [k]) for k, c in enumerate(names)] if len(names) > 1 else []
    scopes.append((None, list(range(len(names)))))
    shares = []
    for campaign, ks in scopes:
        for output, js in groups:
            dd, ee, yy = (
                np.concatenate([fits[k][i][:, js].reshape(-1) for k in ks]) for i in range(3)
            )
            seen = np.isfinite(yy)
            dd, ee, yy = dd[seen], ee[seen], yy[seen]
            sd2 = float((dd**2).sum())
            se2 = float(((ee - yy.mean()) ** 2).sum()) if yy.size else 0.0
            share = sd2 / (sd2 + se2) if sd2 + se2 > 0 else 0.0
            shares.append(
                {
                    "campaign": campaign,
                    "output": output,
                    "share": share,
                    "sum_delta2": sd2,
                    "sum_eta2": se2,
                }
            )
    return shares
