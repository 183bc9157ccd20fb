"""The posterior summary table (:meth:`calib.Posterior.summary`): one row per quantity,
and the notes printed under it (the identifiability report's warnings, when one fires)."""

from __future__ import annotations

from typing import Any

__all__ = ["Summary"]


def _interval_names(level: float) -> tuple[str, str]:
    """The row keys of the interval's ends at ``level``: ``("q5", "q95")`` at 0.9."""
    return f"q{50 * (1 - level):g}", f"q{50 * (1 + level):g}"


class Summary:
    """A table of posterior summaries: one row per quantity.

    Columns: mean, sd, the equal-tailed interval's ends at ``level`` (``q5`` and ``q95``
    at the default 0.9; ``q2.5`` and ``q97.5`` at 0.95) around ``q50``; ``mcse`` (Monte Carlo
    standard error of the mean), ``ess`` (bulk ESS), ``ess_tail``, ``rhat``
    (rank-normalized split-R̂; Vehtari et al. 2021) and ``ok`` (this quantity meets the
    convergence targets). Every row also keeps ``q5`` and ``q95``. ``str(summary)`` is the
    formatted table; ``summary.rows`` is a list of dicts; ``summary[name]`` one row.

    ``summary.notes`` (a list of str, often empty) holds what the table cannot show: a
    calibration parameter the data barely inform, or one traded against δ (the cheap part
    of :meth:`calib.Posterior.identifiability`). ``str(summary)`` prints them under the
    table; :meth:`to_dict` keeps to the rows (a mapping of quantity names to rows).
    """

    def __init__(
        self, rows: list[dict[str, Any]], level: float = 0.9, notes: list[str] | None = None
    ):
        self.rows = rows
        self.level = level
        self.notes = list(notes or [])
        lo, hi = _interval_names(level)
        self.columns = ("mean", "sd", lo, "q50", hi, "mcse", "ess", "ess_tail", "rhat", "ok")

    def __getitem__(self, name: str) -> dict[str, Any]:
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(
            f"no quantity {name!r} in the summary; have {[r['name'] for r in self.rows]}"
        )

    def __len__(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {r["name"]: {c: r[c] for c in self.columns} for r in self.rows}

    def __str__(self) -> str:
        w = max([len("quantity")] + [len(r["name"]) for r in self.rows])
        head = f"{'quantity':<{w}}  " + "  ".join(f"{c:>10}" for c in self.columns)
        lines = [head, "-" * len(head)]
        for r in self.rows:
            cells = []
            for c in self.columns:
                v = r[c]
                if c == "ok":
                    cells.append(f"{'yes' if v else 'NO':>10}")
                elif c in ("ess", "ess_tail"):
                    cells.append(f"{v:>10.0f}")
                elif c == "rhat":
                    cells.append(f"{v:>10.4f}")
                else:
                    cells.append(f"{v:>10.4g}")
            lines.append(f"{r['name']:<{w}}  " + "  ".join(cells))
        if self.notes:
            lines.append("")
            lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    __repr__ = __str__
