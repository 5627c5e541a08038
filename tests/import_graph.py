"""The import graph of ``src/attnlab`` read from the source (no module is imported), for the tests that keep
the package free of circles and its rooms importing one way (``test_house.py``, ``test_data_imports.py``)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path, src: Path = SRC) -> str:
    """``src/attnlab/data/coco.py`` -> ``attnlab.data.coco``; a package's ``__init__.py`` is the package."""
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(src: Path = SRC) -> dict[str, Path]:
    """Every module of the ``attnlab`` package under ``src``, by dotted name."""
    return {module_name(p, src): p for p in sorted((src / "attnlab").rglob("*.py"))}


def import_graph(prefixes: tuple[str, ...] = ("attnlab",), src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the ``attnlab`` modules it imports anywhere in its file (inside functions and under
    ``TYPE_CHECKING`` too: a deferred or type-only import still ties the two modules together), for every
    module under ``prefixes``. ``from pkg import name`` counts ``pkg.name`` when that is a module, else ``pkg``."""
    modules = package_modules(src)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if not name.startswith(prefixes):
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {e for e in edges if (e == "attnlab" or e.startswith("attnlab.")) and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle among the modules of ``graph`` (as a path that ends where it starts), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def all_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (each one or more circles), sorted: the whole
    list of what to untie, where :func:`find_cycle` stops at the first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm; the package is small enough for recursion
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for start in sorted(graph):
        if start not in index:
            connect(start)
    return sorted(groups)
