"""The documentation: every Python block of docs/ runs, and the site builds in strict mode.

Each page's ```python blocks run in order, in one namespace, in a fresh interpreter (so
that no page depends on another), in a scratch folder that links the repository's
``examples/``, ``tests/`` and ``docs/`` (so that paths read as they do from a checkout's
root while whatever a block writes stays out of it), with the example plug-in package of
``examples/plugin_package`` installed (into the scratch folder, not the environment).

Two HTML comments in the Markdown, right before a block, are read (invisible on the site):

- ``<!-- skip: reason -->``: the block is not run, and is reported as a skipped case with
  its reason (``pytest -ra`` lists them). For blocks that need a GPU or a long run only.
- ``<!-- test-setup`` + code + ``-->``: Python run before the block in the same namespace
  (a fragment's inputs: a few data points, a fitted posterior read from the test archive).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PLUGIN = ROOT / "examples" / "plugin_package"
PAGES = sorted(DOCS.rglob("*.md"))

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w+-]*)[ \t]*$")
# a marker is the last thing before its block; (?:(?!-->).) keeps a match inside one comment
_SKIP = re.compile(r"<!--\s*skip:\s*(?P<reason>(?:(?!-->).)+?)\s*-->\s*$", re.S)
_SETUP = re.compile(r"<!--\s*test-setup[ \t]*\n(?P<code>(?:(?!-->).)*)-->\s*$", re.S)

#: a skip is for blocks that need a GPU or a long run; past this many, make blocks runnable
MAX_SKIPS = 3


@dataclass
class Block:
    """One fenced block of a page: its language, first code line (1-based), code, and the
    marker comment right before it."""

    lang: str
    line: int
    code: str
    skip: str | None = None
    setup: str | None = None
    setup_line: int = 0


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page``, in order, with their markers."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    prose_start = 0  # the text since the last block: where a marker may sit
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m or not m["lang"]:
            i += 1
            continue
        indent, start = m["indent"], i + 1
        end = start
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        assert end < len(lines), f"{page.relative_to(ROOT)}:{i + 1}: unclosed code block"
        code = "\n".join(
            ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[start:end]
        )
        block = Block(m["lang"], start + 1, code + "\n")
        prose = "\n".join(lines[prose_start:i])
        if s := _SKIP.search(prose):
            block.skip = s["reason"]
        elif s := _SETUP.search(prose):
            block.setup = s["code"]
            block.setup_line = prose[: s.start("code")].count("\n") + prose_start + 1
        found.append(block)
        prose_start = i = end + 1
    return found


def _python(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang == "python"]


def _name(page: Path) -> str:
    return str(page.relative_to(DOCS))


RUNNABLE = [p for p in PAGES if any(b.skip is None for b in _python(p))]
SKIPPED = [(p, b) for p in PAGES for b in _python(p) if b.skip is not None]


# the interpreter that runs one page: each block compiled with its page and line numbers,
# so that a traceback points into the Markdown
_RUNNER = """\
import json, sys, traceback
page, parts = json.load(open(sys.argv[1]))
ns = {"__name__": "__main__"}
for line, code in parts:
    try:
        exec(compile("\\n" * (line - 1) + code, page, "exec"), ns)
    except BaseException:
        traceback.print_exc()
        sys.exit(f"the block at {page}:{line} failed")
"""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """The example plug-in package, installed as pip installs it, into a scratch folder."""
    work = tmp_path_factory.mktemp("plugin")
    src = work / "src"
    # a copy: the build leaves nothing (build/, *.egg-info) in the repository
    shutil.copytree(
        PLUGIN, src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "*.h5*")
    )
    target = work / "site-packages"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
    if importlib.util.find_spec("setuptools") is not None:
        # the package's build backend is here already: build offline with it (a venv of
        # Python >= 3.12 has no setuptools, and pip then fetches it as the package says)
        cmd += ["--no-build-isolation", "--no-index"]
    out = subprocess.run(cmd + [str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return target


@pytest.mark.parametrize("page", RUNNABLE, ids=_name)
def test_python_blocks_of_the_page_run(page, tmp_path, plugin_path):
    parts = []
    for b in _python(page):
        if b.skip is None:
            if b.setup is not None:
                parts.append((b.setup_line, b.setup))
            parts.append((b.line, b.code))
    for name in ("examples", "tests", "docs"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "page.json").write_text(json.dumps([str(page), parts]))
    (tmp_path / "run_page.py").write_text(_RUNNER)
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(plugin_path), str(ROOT), env.get("PYTHONPATH")])
    )
    out = subprocess.run(
        [sys.executable, "run_page.py", "page.json"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-6000:]


@pytest.mark.parametrize(
    "page,block", SKIPPED, ids=[f"{_name(p)}:{b.line}" for p, b in SKIPPED] or None
)
def test_skipped_block_is_reported(page, block):
    pytest.skip(f"{page.relative_to(ROOT)}:{block.line}: {block.skip}")


def test_skips_are_few_and_say_why():
    assert len(SKIPPED) <= MAX_SKIPS, [f"{_name(p)}:{b.line}: {b.skip}" for p, b in SKIPPED]
    for page, b in SKIPPED:
        assert len(b.skip.split()) >= 3, f"{_name(page)}:{b.line}: a skip says why"


def test_the_blocks_are_found():
    # the collector itself: a page with blocks is seen, a marker attaches to its block
    pages = {_name(p): _python(p) for p in PAGES}
    assert len(pages["guide/pipeline.md"]) >= 2
    assert all(b.setup is None and b.skip is None for b in pages["theta_vs_delta.md"])
    assert len(RUNNABLE) >= 8


def test_toml_blocks_parse():
    for page in PAGES:
        for b in blocks(page):
            if b.lang == "toml":
                try:
                    tomllib.loads(b.code)
                except tomllib.TOMLDecodeError as e:
                    pytest.fail(f"{_name(page)}:{b.line}: {e}")


def test_console_commands_exist():
    # a `$ calib ...` line parses as the command does; a `$ make X` names a Makefile target
    from calib.cli import _COMMANDS, _parser

    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for page in PAGES:
        for b in blocks(page):
            if b.lang != "console":
                continue
            for k, line in enumerate(b.code.splitlines()):
                where = f"{_name(page)}:{b.line + k}"
                if m := re.match(r"\$ (?:\.venv/bin/)?calib (.*?)(?:\s+#.*)?$", line):
                    args = _parser().parse_args(m[1].split())
                    assert args.command in _COMMANDS, where
                elif m := re.match(r"\$ make ([\w-]+)", line):
                    assert m[1] in targets, f"{where}: no target {m[1]!r} in the Makefile"


def test_plugin_page_shows_the_example_package_as_it_is():
    # docs/plugins.md prints the package's module and pyproject.toml: they must not drift
    shown = [b.code.strip() for b in blocks(DOCS / "plugins.md")]
    for path in (PLUGIN / "calib_cooling" / "__init__.py", PLUGIN / "pyproject.toml"):
        assert path.read_text().strip() in shown, f"docs/plugins.md does not show {path}"


def _have(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


@pytest.mark.skipif(
    not _have("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"),
    reason="the docs extra is not installed (pip install -e '.[docs]')",
)
def test_site_builds_in_strict_mode(tmp_path):
    site = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml")]
        + ["-d", str(site)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-6000:]
    # the API reference was generated from the docstrings, not left as ::: lines
    api = (site / "api" / "calibration" / "index.html").read_text()
    assert "calib.Calibrator" in api and ":::" not in api
    assert "Sample the joint posterior" in api
    for page in ("index.html", "plugins/index.html", "guide/pipeline/index.html"):
        assert (site / page).is_file(), page
