"""No import cycles inside ``repvit_plugins``, counting imports inside functions too (read with ``ast``)."""
from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

import repvit_plugins

PACKAGE_DIR = Path(repvit_plugins.__file__).resolve().parent
ROOT = PACKAGE_DIR.name


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (packages by their ``__init__``)."""
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = (ROOT, *path.relative_to(PACKAGE_DIR).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: dict) -> set[str]:
    """The package modules an import statement runs: its targets and the packages above them."""
    if isinstance(node, ast.Import):
        targets = {alias.name for alias in node.names}
    else:
        base = node.module or ""
        if node.level:
            anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
            base = ".".join(anchor + ([base] if base else []))
        targets = {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
    run = set()
    for target in targets:
        run |= {t for t in (*_ancestors(target), target) if t in modules}
    return run


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, without the edges to its own parent packages."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _imported(node, name, is_package, modules)
        graph[name] = edges - {name, *_ancestors(name)}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan), as a closed path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_path_through(graph, set(c), c[0]) for c in components]


def _path_through(graph: dict[str, set[str]], members: set[str], start: str) -> list[str]:
    """A shortest way from ``start`` back to itself inside one component (breadth first)."""
    queue, seen = deque([[start]]), {start}
    while queue:
        path = queue.popleft()
        for nxt in sorted(graph[path[-1]] & members):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                queue.append(path + [nxt])
    raise AssertionError(f"{start} is in no cycle")


def test_relative_imports_resolve_to_package_modules():
    graph = import_graph()
    assert {f"{ROOT}.models.repvit", f"{ROOT}.models.repvit_keys"} <= graph[f"{ROOT}.models.factory"]
    assert f"{ROOT}.weights.checkpoint_io" in graph[f"{ROOT}.weights.zoo"]


def test_zoo_and_model_core_import_no_model():
    graph = import_graph()
    assert not {m for m in graph[f"{ROOT}.weights.zoo"] if m.startswith(f"{ROOT}.models")}
    assert graph[f"{ROOT}.models.repvit"] == set()


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
