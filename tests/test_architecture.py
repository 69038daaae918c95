"""The layout's rules (docs/ARCHITECTURE.md), checked on the source: every import, module-level
or inside a function, goes down or sideways in the stack of folders, never up, and no group of
modules imports itself round in a circle. The product never edits ``sys.path`` and never imports
the development-only ``tools`` package."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "wandata"

# Lower layers first. A module may import from its own layer or a lower one.
LAYERS = [
    {"wandata", "wandata.atomic", "wandata.confine", "wandata.plugins", "wandata.profiles", "wandata.settings",
     "wandata.storage"},
    {"wandata.dataset"},
    {"wandata.media"},
    {"wandata.detect"},
    {"wandata.quality"},
    {"wandata.engine"},
    {"wandata.ingest"},
    {"wandata.controls"},
    {"wandata.caption", "wandata.export", "wandata.report", "wandata.review",
     "wandata.lora"},
    {"wandata.train"},
    {"wandata.cli", "wandata.__main__"},
]


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(REPO).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (f, is_pkg)
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        for i, layer in enumerate(LAYERS):
            if prefix in layer:
                return i
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py: add its folder to LAYERS "
                         "and to docs/ARCHITECTURE.md")


def _imports(module: str, path: Path, is_pkg: bool) -> list[tuple[str, int]]:
    """(imported wandata module, line) for every import in the file, wherever it stands."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            while name and name not in MODULES and name.startswith("wandata"):
                name = name.rpartition(".")[0]
            if name in MODULES and name != module:
                out.append((name, node.lineno))
    return out


GRAPH = {m: _imports(m, *MODULES[m]) for m in MODULES}


def test_no_import_reaches_up_the_stack():
    upward = [f"{MODULES[m][0].relative_to(REPO)}:{line} imports {t} (layer {_layer(t)} above {_layer(m)})"
              for m, targets in GRAPH.items() for t, line in targets
              if _layer(t) > _layer(m) and not t.startswith(m + ".")]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    edges = defaultdict(set)
    for m, targets in GRAPH.items():
        edges[m].update(t for t, _ in targets)
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in MODULES:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_product_never_edits_the_import_path_nor_imports_dev_tools():
    bad = []
    for m, (path, _) in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}: sys.path")
            if isinstance(node, ast.Constant) and node.value == "PYTHONPATH":
                bad.append(f"{path.relative_to(REPO)}:{node.lineno}: PYTHONPATH")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(n == "tools" or n.startswith("tools.") or n == "train" or n.startswith("train.")
                       for n in names if not getattr(node, "level", 0)):
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno}: imports {names}")
    assert not bad, "\n".join(bad)
