"""The study report: one self-contained HTML file (``calib report study.h5 -o report.html``).

:func:`write_report` gathers what a reader needs to judge a calibration without Python:
the convergence verdict and every warning (R̂ and ESS missed, divergences, a θ barely
informed or traded against δ, an emulator whose leave-one-out intervals cover too little),
the posterior table with the study's known values beside it, the configuration the
archive records, and the figures of :mod:`calib.plotting`. Figures are embedded as
base64 PNG and the CSS is inline, so the file opens anywhere, offline, and needs no
JavaScript (issue 14).
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["known_values", "write_report"]

#: Leave-one-out 90 % coverage is flagged when it falls this many binomial standard errors
#: below 0.9: a small design is not flagged for its sampling noise alone. Entries of one
#: functional output are correlated, so this errs towards silence, not false alarms.
COVERAGE_SE = 3.0

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;
max-width:1180px;padding:0 1em;color:#1b1b1b;background:#fff}
h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;
margin-top:1.8em}.meta{color:#555}nav a{margin-right:1em}
table{border-collapse:collapse;margin:.6em 0;font-variant-numeric:tabular-nums;font-size:.88em}
.wide{overflow-x:auto}th,td{border:1px solid #ccc;padding:.25em .4em;text-align:right}
th{background:#f1f3f5}td.name,th.name{text-align:left;font-family:ui-monospace,monospace}
tr.bad td{background:#fdecea}.verdict{font-size:1.15em;padding:.5em .8em;border-radius:4px}
.verdict.ok{background:#e6f4ea;border-left:6px solid #1e8e3e}
.verdict.bad{background:#fdecea;border-left:6px solid #d93025}
ul.warnings li{margin:.3em 0}pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:13px}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555}
"""


def write_report(
    post: Any, path: str | Path, figures_dir: str | Path | None = None, title: str | None = None
) -> Path:
    """Write the self-contained HTML report of a posterior.

    Parameters
    ----------
    post : Posterior
        From :func:`calib.load` or ``Calibrator.sample``.
    path : str or Path
        The HTML file to write (its folder must exist).
    figures_dir : str or Path, optional
        Keep the figures' PNG files here as well (:func:`calib.plotting.save_all`); by
        default they are drawn in a temporary folder and only embedded.
    title : str, optional
        The page's heading; default ``"Calibration report: <archive or study name>"``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    TypeError
        If ``post`` is not a posterior.
    ValueError
        If the folder of ``path`` does not exist.
    """
    if not (callable(getattr(post, "summary", None)) and hasattr(post, "calibrator")):
        raise TypeError(f"post: expected a calib Posterior, got {type(post).__name__}")
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"path: folder '{path.parent}' of '{path}' not found")
    archive = post.info.get("archive")
    name = Path(archive).name if archive else "posterior"
    title = title or f"Calibration report: {name}"
    with warnings.catch_warnings():
        # what the library warns about (ConvergenceWarning, IdentifiabilityWarning, ...) is
        # in the report's own warnings section; a numerical RuntimeWarning is not hidden
        warnings.simplefilter("ignore", UserWarning)
        summary = post.summary()
        diag = post.diagnostics()
        ident, ident_note = _identifiability(post)
        figures, figure_notes = _figures(post, figures_dir)
        problems = _warnings(post, diag, ident, summary.notes) + [
            n for n in (ident_note, _emulator_note(post), *figure_notes) if n
        ]
    parts = [
        f"<h1>{_e(title)}</h1>",
        _meta(post, archive),
        '<nav><a href="#verdict">Verdict</a><a href="#posterior">Posterior</a>'
        '<a href="#figures">Figures</a><a href="#identifiability">Identifiability</a>'
        '<a href="#configuration">Configuration</a></nav>',
        _verdict(diag, problems),
        _posterior_table(summary, known_values(post)),
        _figures_html(figures),
        _identifiability_table(ident),
        _configuration(post),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )
    path.write_text(page, encoding="utf-8")
    return path


# ---------------------------------------------------------------------- gathering
def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(v: Any, fmt: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, fmt) if isinstance(v, (int, float, np.number)) else str(v)


def known_values(post: Any) -> dict[str, float]:
    """The known values of the study file's ``[outputs] truth``, by summary row name.

    Parameters
    ----------
    post : Posterior
        Loaded from a study archive (``calib run``), whose calibrator keeps the study file.

    Returns
    -------
    dict of str to float
        Empty for a calibration built by a script or a study without ``truth``.
    """
    study = getattr(post.calibrator, "study", None) or {}
    truth = study.get("content", {}).get("outputs", {}).get("truth", {})
    return {str(k): float(v) for k, v in truth.items()}


def _identifiability(post: Any) -> tuple[Any, str | None]:
    """The full report (δ shares from 50 draws: a few predictions), else the cheap one.

    δ's share needs predictions, which a direct-mode archive read without its simulator
    cannot make; the summary's cheap report (contraction, correlations) still says which
    θ is barely informed or traded against δ.
    """
    from .interfaces import MissingSimulator

    if (
        isinstance(post.calibrator.model_object, MissingSimulator)
        and post.model.disc_block is not None
    ):
        note = "δ shares not computed: the study was loaded without its simulator"
        return post._identifiability(cheap=True), note
    return post.identifiability(n_draws=50), None


def _figures(
    post: Any, figures_dir: str | Path | None
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """The figures as ``(file name, bytes)``, and what drawing them said (a figure left
    out, or why none could be drawn: the report is still written, the table and the
    verdict are worth having without them)."""
    from .plotting import save_all

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            with tempfile.TemporaryDirectory(prefix="calib-report-") as tmp:
                out = Path(figures_dir) if figures_dir is not None else Path(tmp)
                paths = save_all(post, out, truths=known_values(post))
                figures = [(Path(f).name, Path(f).read_bytes()) for f in paths]
        except Exception as exc:  # noqa: BLE001 - said in the report's warnings
            figures = []
            caught.append(
                warnings.WarningMessage(
                    f"figures not drawn: {type(exc).__name__}: {exc}", UserWarning, "", 0
                )
            )
    notes = []
    for w in caught:
        if issubclass(w.category, UserWarning):
            notes.append(str(w.message))
        else:  # not the report's to keep: passed on as they came
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return figures, notes


def _warnings(post: Any, diag: dict[str, Any], ident: Any, notes: list[str]) -> list[str]:
    """The library's own warnings, as it would emit them (one wording for both)."""
    out = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post.warn_if_unconverged()
    out += [str(w.message) for w in caught]
    seen = set(out)
    for m in list(ident.warnings) + list(notes):
        if m not in seen:
            out.append(m)
            seen.add(m)
    return out


def _emulator_coverage(post: Any) -> tuple[float, int] | None:
    """The fraction of the emulator's training outputs inside their leave-one-out 90 %
    intervals (closed form, no refit: Rasmussen & Williams 2006 eq. 5.12, as
    ``emulators.validation.leave_one_out``), and how many; None without ``loo()``."""
    em = post.calibrator.model_object
    if not callable(getattr(em, "loo", None)) or getattr(em, "training_outputs", None) is None:
        return None
    mean, var = (np.asarray(a, dtype=np.float64) for a in em.loo())
    y = np.asarray(em.training_outputs, dtype=np.float64).reshape(mean.shape)
    z = np.abs(y - mean) / np.sqrt(np.maximum(var, np.finfo(float).tiny))
    inside = z <= stats.norm.ppf(0.95)
    return float(inside.mean()), int(inside.size)


def _emulator_note(post: Any) -> str | None:
    """The warning when the emulator's leave-one-out coverage is poor (:data:`COVERAGE_SE`)."""
    found = _emulator_coverage(post)
    if found is None:
        return None
    cover, n = found
    if cover >= 0.9 - COVERAGE_SE * math.sqrt(0.9 * 0.1 / n):
        return None
    return (
        f"emulator coverage poor: its leave-one-out 90 % intervals hold {cover:.0%} of the "
        f"{n} training outputs (expected about 90 %): it is overconfident, so the posterior "
        f"is too narrow. Try more design runs, another kernel, or emulators.validation."
    )


# ---------------------------------------------------------------------- sections
def _meta(post: Any, archive: Any) -> str:
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    bits = [f"written {now}"]
    if archive:
        bits.insert(0, f"archive <code>{_e(archive)}</code>")
        try:
            from .archive import describe

            meta = describe(archive)["meta"]
            bits.append(f"calib {_e(meta.get('calib_version'))}")
            bits.append(f"archive updated {_e(meta.get('updated'))}")
        except Exception:  # noqa: BLE001 - moved or removed since loading: say less
            pass
    return f'<p class="meta">{" · ".join(bits)}</p>'


def _verdict(diag: dict[str, Any], problems: list[str]) -> str:
    ok = bool(diag["converged"])
    line = (
        f"{'Converged' if ok else 'NOT converged'}: R̂ max {diag['rhat_max']:.4f}, bulk ESS "
        f"min {diag['ess_min']:.0f} (targets R̂ &lt; {diag['target_rhat']}, ESS ≥ "
        f"{diag['target_ess']:.0f}); {diag['n_steps']} steps × {diag['n_walkers']} walkers, "
        f"{diag['burn']} burn-in; acceptance {diag['acceptance_mean']:.2f} on average"
    )
    out = ['<section id="verdict"><h2>Verdict</h2>']
    out.append(f'<p class="verdict {"ok" if ok else "bad"}">{line}</p>')
    worst = diag.get("worst") or []
    if worst:
        out.append("<p>Quantities that miss the targets, worst first:</p><table>")
        out.append('<tr><th class="name">quantity</th><th>R̂</th><th>bulk ESS</th></tr>')
        out += [
            f'<tr class="bad"><td class="name">{_e(w["name"])}</td><td>{w["rhat"]:.4f}</td>'
            f"<td>{w['ess_bulk']:.0f}</td></tr>"
            for w in worst
        ]
        out.append("</table>")
    if problems:
        out.append('<h3>Warnings</h3><ul class="warnings">')
        out += [f"<li>{_e(p)}</li>" for p in problems]
        out.append("</ul>")
    else:
        out.append("<p>No warnings.</p>")
    return "\n".join(out) + "</section>"


def _posterior_table(summary: Any, truth: dict[str, float]) -> str:
    cols = list(summary.columns)
    lo, hi = cols[2], cols[4]
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    if truth:
        head += f"<th>true</th><th>in {summary.level:.0%}</th>"
    rows = [
        f'<div class="wide"><table class="posterior"><tr><th class="name">quantity</th>{head}</tr>'
    ]
    for r in summary.rows:
        cells = []
        for c in cols:
            v = r[c]
            if c == "ok":
                cells.append("yes" if v else "NO")
            elif c in ("ess", "ess_tail"):
                cells.append(_num(v, ".0f"))
            else:
                cells.append(_num(v, ".4f" if c == "rhat" else ".4g"))
        if truth:
            v = truth.get(r["name"])
            hit = "" if v is None else ("yes" if r[lo] <= v <= r[hi] else "NO")
            cells += [_num(v), hit]
        bad = ' class="bad"' if not r["ok"] else ""
        rows.append(
            f'<tr{bad}><td class="name">{_e(r["name"])}</td>'
            + "".join(f"<td>{_e(c)}</td>" for c in cells)
            + "</tr>"
        )
    rows.append("</table></div>")
    note = (
        f"<p>Equal-tailed {summary.level:.0%} interval ({_e(lo)}–{_e(hi)}); MCSE of the mean; "
        "bulk and tail ESS and rank-normalized split-R̂ with walkers as chains; ok: meets the "
        "convergence targets.</p>"
    )
    return '<section id="posterior"><h2>Posterior</h2>' + "\n".join(rows) + note + "</section>"


def _identifiability_table(ident: Any) -> str:
    out = ['<section id="identifiability"><h2>Identifiability</h2><table>']
    out.append(
        '<tr><th class="name">parameter</th><th>contraction</th><th>max |corr| with δ</th>'
        '<th class="name">with</th><th>δ share</th><th class="name">flags</th></tr>'
    )
    for r in ident.rows:
        bad = ' class="bad"' if r["flags"] else ""
        out.append(
            f'<tr{bad}><td class="name">{_e(r["name"])}</td><td>{_num(r["contraction"], ".3f")}'
            f'</td><td>{_num(r["max_abs_corr"], ".3f")}</td><td class="name">'
            f"{_e(r['corr_with'] or '–')}</td><td>{_num(r['delta_share'], '.3f')}</td>"
            f'<td class="name">{_e(", ".join(r["flags"]) or "–")}</td></tr>'
        )
    out.append("</table>")
    out.append(
        "<p>Contraction 1 − Var<sub>post</sub>/Var<sub>prior</sub>; "
        + (
            "correlation with δ's hyperparameters and δ's share of the fitted signal."
            if ident.delta
            else "the model has no discrepancy δ: contraction only."
        )
        + "</p></section>"
    )
    return "\n".join(out)


def _configuration(post: Any) -> str:
    from .config import to_config

    cfg = to_config(post.calibrator)
    rows = [("mode", cfg["mode"]), ("inputs", ", ".join(cfg["input_names"]))]
    rows.append(("outputs", ", ".join(cfg["output_names"])))
    cal = post.calibrator
    rows.append(
        ("campaigns", ", ".join(f"{c.name} ({np.asarray(c.y).size} values)" for c in cal.campaigns))
    )
    disc = cfg["discrepancy"]
    rows.append(("discrepancy δ", json.dumps(disc) if isinstance(disc, dict) else disc))
    rows.append(("noise", f"{cfg['noise']} (prior {json.dumps(cfg['noise_prior'])})"))
    if getattr(post, "runs", None) is not None:
        rows.append(("runs", repr(post.runs)))
    found = _emulator_coverage(post)
    if found is not None:
        em = type(cal.model_object).__name__
        rows.append(("emulator", f"{em}; leave-one-out 90 % coverage {found[0]:.2f} ({found[1]})"))
    info = post.info
    keys = ("moves", "n_walkers", "seed", "warmup", "n_steps_budget", "stopped_early")
    rows.append(("sampler", ", ".join(f"{k} {info[k]}" for k in keys if k in info)))
    out = ['<section id="configuration"><h2>Configuration</h2><table>']
    out += [f'<tr><th class="name">{_e(k)}</th><td class="name">{_e(v)}</td></tr>' for k, v in rows]
    out.append("</table><h3>Parameters</h3><table>")
    out.append(
        '<tr><th class="name">name</th><th>lower</th><th>upper</th><th class="name">prior</th>'
        '<th class="name">pooling</th><th>fixed value</th></tr>'
    )
    for p in cfg["parameters"]:
        prior = p.get("prior")
        out.append(
            f'<tr><td class="name">{_e(p["name"])}</td><td>{_num(p.get("lower"))}</td>'
            f'<td>{_num(p.get("upper"))}</td><td class="name">'
            f'{_e(json.dumps(prior) if prior else "–")}</td><td class="name">'
            f"{_e(p.get('pooling') or '–')}</td><td>{_num(p.get('value'))}</td></tr>"
        )
    out.append("</table>")
    study = cfg.get("study")
    if study:
        out.append(f"<h3>Study file <code>{_e(study.get('file'))}</code></h3>")
        out.append(f"<pre>{_e(_toml(study.get('content') or {}))}</pre>")
    return "\n".join(out) + "</section>"


def _toml(content: dict[str, Any]) -> str:
    """The study file's parsed content written back as TOML (the archive keeps the parsed
    tables, not the file's text): sections, arrays of tables, inline tables."""

    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{_key(k)} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return json.dumps(v, default=str)  # str, int, float, bool as TOML spells them

    lines: list[str] = []
    flat = {k: v for k, v in content.items() if not isinstance(v, (dict, list))}
    lines += [f"{_key(k)} = {value(v)}" for k, v in flat.items()]
    for k, v in content.items():
        if isinstance(v, dict):
            lines += ["", f"[{_key(k)}]"] + [f"{_key(a)} = {value(b)}" for a, b in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                lines += ["", f"[[{_key(k)}]]"]
                lines += [f"{_key(a)} = {value(b)}" for a, b in item.items()]
        elif isinstance(v, list):
            lines += ["", f"{_key(k)} = {value(v)}"]
    return "\n".join(lines).strip()


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _figures_html(figures: list[tuple[str, bytes]]) -> str:
    from .plotting import CAPTIONS

    out = ['<section id="figures"><h2>Figures</h2>']
    for name, raw in figures:
        mime = {".png": "image/png", ".svg": "image/svg+xml"}.get(Path(name).suffix.lower())
        if mime is None:  # another format of a figure already embedded (a PDF)
            continue
        data = base64.b64encode(raw).decode("ascii")
        stem = Path(name).stem
        kind, _, which = stem.partition("-")  # pooling-E.png: the pooling of E
        head = f"{kind} of {which}" if which else kind
        out.append(
            f'<figure><img src="data:{mime};base64,{data}" alt="{_e(stem)}">'
            f"<figcaption><b>{_e(head)}</b>. {_e(CAPTIONS.get(kind, ''))}</figcaption></figure>"
        )
    if len(out) == 1:
        out.append("<p>No figures.</p>")
    return "\n".join(out) + "</section>"
