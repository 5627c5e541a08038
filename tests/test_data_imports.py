"""The import graph of the data and evaluation rooms: no circle (deferred imports included), and
no import of the rooms above them (data and evaluation sit beside tasks/models, never under them)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOMS = ("attnlab.data", "attnlab.evaluation")
# What data/ and evaluation/ may not import: the rooms that use them.
ABOVE = ("attnlab.tasks", "attnlab.models", "attnlab.attention", "attnlab.callbacks", "attnlab.cli",
         "attnlab.compare")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(prefixes: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the ``attnlab`` modules it imports anywhere in its file (inside functions too),
    for every module under ``prefixes``. ``from pkg import name`` counts ``pkg.name`` when that
    is a module, else ``pkg``."""
    modules = {_module_name(p): p for p in (SRC / "attnlab").rglob("*.py")}
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
        graph[name] = {e for e in edges if e.startswith("attnlab") and e != name}
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
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_deferred_import_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("room", ROOMS)
def test_no_import_circle_and_no_upward_import(room: str) -> None:
    graph = import_graph((room,))
    assert len(graph) > 3, f"no modules found under {room}"
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph) or [])}"
    upward = {m: sorted(e for e in edges if any(e == a or e.startswith(f"{a}.") for a in ABOVE))
              for m, edges in graph.items()}
    assert not {m: e for m, e in upward.items() if e}, "data/evaluation must not import the rooms that use them"


def test_coco_scoring_does_not_load_torch() -> None:
    """The COCOeval function API (used by the bootstrap and scripts) stays torch-free."""
    code = "import sys, attnlab.evaluation.coco_scoring; assert 'torch' not in sys.modules, 'torch loaded'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env={**os.environ, "PYTHONPATH": str(SRC)})
