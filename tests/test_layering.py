"""The design card's one-way data flow: packing, sensitivity and results never import runners;
packing never imports vcfc (vcfc imports packing)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {"packing": {"runners", "vcfc", "torch"}, "sensitivity": {"runners"}, "results": {"runners"}}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_downstream(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files
    for f in files:
        bad = imported_roots(f) & FORBIDDEN[package]
        assert not bad, f"{f.relative_to(REPO)} imports {sorted(bad)}"
