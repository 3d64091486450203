"""The design card's one-way data flow, checked on every import of every file (function-level
imports included), with the AST:

    base (vcfc.errors, vcfc.registry, vcfc.version: stdlib only)
      → vcfc.packing → vcfc (codec core) → vcfc.results → vcfc.sensitivity → vcfc.runners (CLI on top)

A module may import only modules of its own layer or below. Every import names the one package
`vcfc`: a bare `packing`/`results`/`runners`/`sensitivity` import would pick up whatever module of
that name is on sys.path. The one upward exception is vcfc/__main__.py, which forwards
`python -m vcfc` to the CLI. packing is also torch-free (pure numpy).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAYERS = ["base", "packing", "core", "results", "sensitivity", "runners"]
RANK = {p: i for i, p in enumerate(LAYERS)}
FOLDERS = ("packing", "results", "sensitivity", "runners")  # vcfc.<folder>, installed from <folder>/
BASE_MODULES = ("errors", "registry", "version")
EXCEPTIONS = {"vcfc.__main__": {"runners"}}
THIRD_PARTY_BANS = {"packing": {"torch"}, "base": {"numpy", "torch"}}


def module_name(path: Path, repo: Path) -> str:
    """The dotted name a file is installed as: <folder>/x.py is vcfc.<folder>.x."""
    parts = list(path.relative_to(repo).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts if parts[0] == "vcfc" else ["vcfc", *parts])


def layer_of(module: str) -> str | None:
    """The layer of a vcfc module (None: not vcfc)."""
    parts = module.split(".")
    if parts[0] != "vcfc":
        return None
    if len(parts) == 1:
        return "core"  # `import vcfc` / `from vcfc import encode`: the API of the core
    if parts[1] in FOLDERS:
        return parts[1]
    return "base" if parts[1] in BASE_MODULES else "core"


def imports(path: Path, repo: Path) -> tuple[set[str], set[str]]:
    """(vcfc modules imported, other top-level names imported) by one file, relative ones resolved."""
    me = module_name(path, repo)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    ours, others = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                root = ".".join(base + ([node.module] if node.module else []))
            else:
                root = node.module or ""
            # `from vcfc import packing` imports the subpackage; `from vcfc import encode` the core
            names = [f"{root}.{a.name}" if root == "vcfc" and a.name in FOLDERS else root for a in node.names]
        else:
            continue
        for n in names:
            (ours if n.split(".")[0] == "vcfc" else others).add(n)
            if n.split(".")[0] in FOLDERS:
                ours.add("bare:" + n)
    return ours, others


def files_of(layer: str, repo: Path) -> list[Path]:
    if layer in FOLDERS:
        return sorted((repo / layer).rglob("*.py"))
    core = [f for f in sorted((repo / "vcfc").rglob("*.py"))]
    return [f for f in core if layer_of(module_name(f, repo)) == layer]


def violations(layer: str, repo: Path | None = None) -> list[str]:
    repo = repo or REPO
    out = []
    for f in files_of(layer, repo):
        me = module_name(f, repo)
        ours, others = imports(f, repo)
        bare = sorted(n[5:] for n in ours if n.startswith("bare:"))
        higher = {layer_of(n) for n in ours if not n.startswith("bare:")}
        higher = {x for x in higher if RANK[x] > RANK[layer]} - EXCEPTIONS.get(me, set())
        banned = {n.split(".")[0] for n in others} & THIRD_PARTY_BANS.get(layer, set())
        if bare:
            out.append(f"{f.relative_to(repo)} imports {bare} without the vcfc. prefix")
        if higher or banned:
            out.append(f"{f.relative_to(repo)} imports {sorted(higher | banned)}")
    return out


@pytest.mark.parametrize("layer", LAYERS)
def test_no_layer_imports_a_higher_one(layer):
    assert files_of(layer, REPO)
    assert violations(layer) == []


def test_the_check_catches_upward_and_bare_imports(tmp_path):
    (tmp_path / "vcfc").mkdir()
    (tmp_path / "packing").mkdir()
    (tmp_path / "vcfc" / "x.py").write_text("def f():\n    from vcfc.runners.models import split\n    return split\n")
    (tmp_path / "vcfc" / "errors.py").write_text("from .spec import CodingSpec\n")
    (tmp_path / "packing" / "y.py").write_text("from results.metrics import kl_rows\nfrom ..codecs import CODECS\n")
    assert violations("core", tmp_path) == ["vcfc/x.py imports ['runners']"]
    assert violations("base", tmp_path) == ["vcfc/errors.py imports ['core']"]
    assert violations("packing", tmp_path) == ["packing/y.py imports ['results.metrics'] without the vcfc. prefix",
                                               "packing/y.py imports ['core']"]


def test_relative_imports_resolve_to_the_installed_names():
    assert module_name(REPO / "runners" / "cli" / "__init__.py", REPO) == "vcfc.runners.cli"
    ours, _ = imports(REPO / "vcfc" / "codecs" / "base.py", REPO)
    assert "vcfc.errors" in ours and all(layer_of(n) in ("base", "packing", "core") for n in ours)


def test_console_script_points_at_the_top_layer():
    text = (REPO / "pyproject.toml").read_text()
    assert 'vcfc = "vcfc.runners.cli:main"' in text


def test_importing_the_lower_layers_stays_light():
    """`import vcfc.packing` (and the CLI's registries) must not pull in torch or PyAV."""
    import subprocess

    code = ("import sys, vcfc.packing, vcfc.registry, vcfc.sensitivity.allocation, vcfc.runners.kinds; "
            "print(sorted(m for m in ('torch', 'av', 'ffmpeg', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
