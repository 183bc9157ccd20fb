"""The rules that keep calib one-way (docs/architecture.md, "Rules")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CALIB = Path(__file__).resolve().parents[2] / "calib"
# the pipeline above the storage layer: the archive is written and read by them, never the
# other way round (calib.load and Calibrator.sample(archive=) connect the two)
ABOVE_STORAGE = {"calib.calibrator", "calib.sampling", "calib.runner", "calib.config"}


def _imports(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """Every module a file imports, at module level or inside a function, absolute
    (``module``: the file's dotted name, by default from its place under calib/)."""
    package = module or ".".join(path.relative_to(CALIB.parent).with_suffix("").parts)
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: -node.level]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            # `from .. import sampling` names a module too
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def _above(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in ABOVE_STORAGE)


def test_the_archive_never_reaches_up_the_pipeline():
    files = sorted((CALIB / "archive").glob("*.py"))
    assert files, "no calib/archive package"
    bad = [
        f"{f.relative_to(CALIB.parent)}:{line} imports {mod}"
        for f in files
        for line, mod in _imports(f)
        if _above(mod)
    ]
    assert not bad, "\n".join(bad)


def test_the_import_checker_sees_lazy_and_relative_imports(tmp_path):
    # the check above must be able to fail: a function-level relative import is caught
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    from ..sampling import run_sampler\n    from .. import runner\n"
    )
    found = {m for _, m in _imports(probe, "calib.archive.probe") if _above(m)}
    assert {"calib.sampling", "calib.runner"} <= found


@pytest.mark.parametrize(
    "path", sorted(CALIB.rglob("*.py")), ids=lambda p: str(p.relative_to(CALIB))
)
def test_no_module_is_a_grab_bag(path):
    # one concept per module: about 450 lines at most (issue 10)
    n = len(path.read_text().splitlines())
    assert n <= 470, f"{path.relative_to(CALIB.parent)} has {n} lines; split it by concept"
