"""The HTML report (calib/report.py) and the ``calib plot`` / ``calib report`` commands: a
small real study, its report checked as HTML, then rendered in headless Chromium."""

from __future__ import annotations

import base64
import html
import io
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

STUDIES = Path(__file__).resolve().parent / "data" / "studies"
PNG = b"\x89PNG\r\n\x1a\n"


def _calib(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "calib", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """The tiny emulated line study with partial pooling and a shared δ, stopped early (160
    steps): every figure has something to draw, and the verdict has warnings to give."""
    folder = tmp_path_factory.mktemp("report")
    for name in ("a.csv", "b.csv", "line_model.py"):
        shutil.copyfile(STUDIES / name, folder / name)
    text = (STUDIES / "line_emulated.toml").read_text()
    for old, new in [
        ('pooling = "none"', 'pooling = "partial"'),
        ('mode = "none"', 'mode = "shared"'),
        ("seed = 1\n", "seed = 1\nn_steps = 160\nwarmup = 80\n"),
        ('archive = "line_emulated.h5"', 'archive = "study.h5"'),
    ]:
        assert old in text, old  # the study this test edits has changed: update the edits
        text = text.replace(old, new)
    (folder / "study.toml").write_text(text)
    r = _calib("run", "-q", "study.toml", cwd=folder)
    assert r.returncode == 3, r.stderr  # not converged: the report must say so
    return folder / "study.h5"


@pytest.fixture(scope="module")
def written(archive):
    """The report and the figures it embeds, written once."""
    import calib
    from calib.report import write_report

    post = calib.load(archive)
    out = write_report(post, archive.parent / "report.html", figures_dir=archive.parent / "figs")
    return post, out, sorted((archive.parent / "figs").glob("*.png"))


class _Page(HTMLParser):
    """Every tag with its attributes, and each table's cells by the table's class."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self._table = a.get("class", "")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def test_the_report_holds_the_table_the_verdict_and_every_figure(written):
    post, out, figures = written
    text = out.read_text(encoding="utf-8")
    page = _parse(text)
    # the posterior table: a row per quantity, the study's known values and whether the
    # 90 % interval holds them
    table = page.tables["posterior"]
    head, rows = table[0], {r[0]: dict(zip(table[0], r)) for r in table[1:]}
    summary = post.summary()
    assert head[:3] == ["quantity", "mean", "sd"] and head[-2:] == ["true", "in 90%"]
    assert set(rows) == {r["name"] for r in summary.rows}
    for name, true in {"k[A]": 0.8, "k[B]": 0.9}.items():
        row = summary[name]
        assert float(rows[name]["true"]) == true
        assert rows[name]["in 90%"] == ("yes" if row["q5"] <= true <= row["q95"] else "NO")
        assert float(rows[name]["mean"]) == pytest.approx(row["mean"], rel=1e-3)
    assert rows["k.mean"]["true"] == "–"
    # the verdict (this chain stopped early) and the quantities that miss the targets
    assert not post.converged and "NOT converged: R̂ max" in text
    worst = post.diagnostics()["worst"][0]["name"]
    assert f'<td class="name">{worst}</td>' in text and "has not converged after 160" in text
    # the configuration and the study file it came from
    assert "[[campaigns]]" in text and 'truth = { "k[A]" = 0.8' in html.unescape(text)
    # every figure the plotting module drew is embedded, as a PNG that decodes to its file
    assert len(figures) >= 5
    imgs = [a for tag, a in page.tags if tag == "img"]
    assert len(imgs) == len(figures)
    embedded = []
    for img in imgs:
        assert img["src"].startswith("data:image/png;base64,")
        raw = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        assert raw.startswith(PNG)
        pixels = mpimg.imread(io.BytesIO(raw), format="png")
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100 and np.ptp(pixels) > 0
        embedded.append(raw)
    assert sorted(embedded) == sorted(p.read_bytes() for p in figures)


def test_the_report_needs_no_network(written):
    _, out, _ = written
    text = out.read_text(encoding="utf-8")
    page = _parse(text)
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object")]
    for tag, attrs in page.tags:
        for key in ("src", "href", "srcset", "action"):
            if key in attrs:  # only embedded data and in-page anchors
                assert attrs[key].startswith(("data:", "#")), (tag, key, attrs[key][:80])
    outside = re.sub(r'src="data:[^"]*"', "", text)
    assert not re.search(r"(https?:|ftp:)?//[\w.-]+\.\w", outside)
    assert "@import" not in text and "url(" not in text


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _screenshot(browser: str, page: Path, png: Path, profile: Path) -> np.ndarray:
    cmd = [
        browser,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",  # its own profile: runs beside another browser
        f"--screenshot={png}",
        "--window-size=1200,3000",
        page.resolve().as_uri(),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and png.is_file(), r.stderr[-2000:]
    return mpimg.imread(png)


def _inked(pixels: np.ndarray) -> float:
    """The fraction of pixels that are not the page's white background."""
    rgb = pixels[..., :3]
    return float((rgb.min(axis=-1) < 0.9).mean())


def test_the_report_renders_in_headless_chromium(written, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium binary on PATH (make install puts Debian's chromium there)")
    _, out, _ = written
    # the check itself can fail: a page with nothing on it is blank by this measure
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body></body></html>")
    blank = _screenshot(browser, empty, tmp_path / "empty.png", tmp_path / "p0")
    assert _inked(blank) < 0.001
    shot = _screenshot(browser, out, tmp_path / "report.png", tmp_path / "p1")
    assert shot.shape[:2] == (3000, 1200)
    assert _inked(shot) > 0.03 and float(shot[..., :3].var()) > 1e-3


def test_calib_plot_and_report_commands(archive, tmp_path):
    r = _calib("plot", str(archive), "--out", str(tmp_path / "figures"))
    assert r.returncode == 0, r.stderr
    paths = [Path(line) for line in r.stdout.splitlines()]
    assert len(paths) >= 5 and all(p.read_bytes().startswith(PNG) for p in paths)
    assert {p.parent for p in paths} == {tmp_path / "figures"}
    r = _calib("report", str(archive), "-o", str(tmp_path / "r.html"), "--title", "Line")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{tmp_path / 'r.html'}\n"
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<h1>Line</h1>" in text and text.count("<img ") == len(paths)


def test_calib_report_writes_beside_the_archive_by_default(archive, monkeypatch, capsys):
    import calib.report
    from calib.cli import main

    calls = []
    monkeypatch.setattr(  # where it writes, not the drawing again (the test above does)
        calib.report, "write_report", lambda post, path, **kw: calls.append((path, kw)) or path
    )
    assert main(["report", str(archive)]) == 0
    assert calls == [(archive.with_suffix(".html"), {"title": None})]
    assert capsys.readouterr().out == f"{archive.with_suffix('.html')}\n"


def test_calib_report_errors_are_one_line(tmp_path):
    r = _calib("report", "missing.h5", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("calib report: error: archive: no such file")
    r = _calib("plot", "missing.h5", cwd=tmp_path)
    assert r.returncode == 2 and "--out" in r.stderr


def test_write_report_checks_its_arguments(written, tmp_path):
    from calib.report import write_report

    post = written[0]
    with pytest.raises(TypeError, match="post: expected a calib Posterior, got dict"):
        write_report({}, tmp_path / "r.html")
    with pytest.raises(ValueError, match="path: folder .* not found"):
        write_report(post, tmp_path / "no" / "r.html")


def test_a_script_calibration_without_its_simulator_still_has_a_report(tmp_path):
    """Direct mode read back without the simulator: no predictions, so no predictive
    figure (the report says why); no study file, so no known values; converged."""
    import calib
    from calib import Calibrator, Campaign, Parameter
    from calib.priors import Normal
    from calib.report import write_report
    from simulators import FunctionSimulator

    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 10)
    sim = FunctionSimulator(
        lambda X, T: T[:, :1] * X[:, :1], ("x",), ("k",), ("y",), vectorized=True
    )
    cal = Calibrator(
        sim,
        [Parameter("k", prior=Normal(1, 1))],
        [Campaign("A", x=x, y=0.8 * x + 0.1 * rng.standard_normal(10), noise_sd=0.1)],
        noise="known",
    )
    cal.sample(n_walkers=16, seed=1, archive=tmp_path / "s.h5")
    post = calib.load(tmp_path / "s.h5")
    text = write_report(post, tmp_path / "s.html").read_text(encoding="utf-8")
    page = _parse(text)
    assert post.converged and "Converged: R̂ max" in text
    assert page.tables["posterior"][0][-1] == "ok"  # no true values to show
    alts = {a["alt"] for t, a in page.tags if t == "img"}
    assert {"corner", "traces", "convergence"} <= alts and "predictive" not in alts
    assert "predictive.png not written: the study was loaded without its simulator" in text


@pytest.mark.parametrize("shrink, flagged", [(1.0, False), (0.1, True)])
def test_an_overconfident_emulator_is_flagged(shrink, flagged):
    """Leave-one-out errors drawn from the stated N(0, var): 90 % coverage near 0.9 (200
    entries: 3 binomial sd is 0.064), not flagged; intervals 10 times too narrow hold
    about 13 %, flagged."""
    from types import SimpleNamespace

    from calib.report import _emulator_note

    rng = np.random.default_rng(3)
    mean = rng.standard_normal((100, 2))
    y = mean + rng.standard_normal((100, 2))  # var 1

    class Emulator:
        training_outputs = y

        def loo(self):
            return mean, np.full_like(mean, shrink**2)

    post = SimpleNamespace(calibrator=SimpleNamespace(model_object=Emulator()))
    note = _emulator_note(post)
    assert (note is not None) == flagged
    if flagged:
        assert note.startswith("emulator coverage poor: its leave-one-out 90 % intervals hold")
