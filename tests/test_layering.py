"""The design card's one-way data flow, checked on every import of every file (function-level
imports included), with the AST:

    packing → vcfc (codec core) → results → sensitivity → runners (CLI on top: runners/cli)

A package may import only packages below it. The one exception is vcfc/__main__.py, which
forwards `python -m vcfc` to the CLI. packing is also torch-free (pure numpy).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ORDER = ["packing", "vcfc", "results", "sensitivity", "runners"]
RANK = {p: i for i, p in enumerate(ORDER)}
EXCEPTIONS = {REPO / "vcfc" / "__main__.py": {"runners"}}
THIRD_PARTY_BANS = {"packing": {"torch"}}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def violations(package: str) -> list[str]:
    out = []
    for f in sorted((REPO / package).rglob("*.py")):
        higher = {r for r in imported_roots(f) if RANK.get(r, -1) > RANK[package]}
        bad = (higher - EXCEPTIONS.get(f, set())) | (imported_roots(f) & THIRD_PARTY_BANS.get(package, set()))
        if bad:
            out.append(f"{f.relative_to(REPO)} imports {sorted(bad)}")
    return out


@pytest.mark.parametrize("package", ORDER)
def test_no_package_imports_a_higher_one(package):
    assert list((REPO / package).rglob("*.py"))
    assert violations(package) == []


def test_the_check_catches_a_function_level_import(tmp_path, monkeypatch):
    (tmp_path / "vcfc").mkdir()
    (tmp_path / "vcfc" / "x.py").write_text("def f():\n    from runners.models import split\n    return split\n")
    import sys

    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert violations("vcfc") == ["vcfc/x.py imports ['runners']"]


def test_console_script_points_at_the_top_layer():
    text = (REPO / "pyproject.toml").read_text()
    assert 'vcfc = "runners.cli:main"' in text
