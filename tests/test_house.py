"""The house rules of issue 13, read from the source: the package has no import circle (deferred and
type-only imports included), its rooms import one way (the table below), and no file or function grows
past the size a newcomer can read in one go."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.import_graph import SRC, all_cycles, find_cycle, import_graph

REPO = SRC.parent

# room -> the rooms it may import. Dependencies point one way: cli -> tasks -> models -> attention, with data,
# evaluation, runs and compare beside them, below cli. The modules at the package root (errors.py, project.py,
# ...) are the floor: every room may import them, and they import only each other.
ALLOWED: dict[str, frozenset[str]] = {
    "cli": frozenset(
        {
            "sweepers",
            "callbacks",
            "loggers",
            "tasks",
            "models",
            "attention",
            "data",
            "evaluation",
            "runs",
            "compare",
        }
    ),
    "sweepers": frozenset({"runs", "compare"}),
    "callbacks": frozenset({"tasks", "models", "attention", "runs"}),
    "tasks": frozenset({"models", "attention", "data", "evaluation", "runs"}),
    "models": frozenset({"attention"}),
    "attention": frozenset(),
    "compare": frozenset({"evaluation", "runs"}),
    "data": frozenset(),
    "evaluation": frozenset(),
    "runs": frozenset(),
    "loggers": frozenset(),
}
ROOT = "(package root)"

MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 80
LONG_MARK = "# long:"  # on the line above a `def` (or above its decorators): why this function is long
# What the size rules cover: the package, the benchmarks, the scripts, the tests and the two entry points.
CODE = ("src", "benchmarks", "scripts", "tests", "train.py", "eval.py")


def room_of(module: str) -> str:
    """``attnlab.data.coco`` -> ``data``; a module directly in the package (``attnlab.errors``) -> the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (SRC / "attnlab" / parts[1] / "__init__.py").is_file() else ROOT


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import that crosses rooms against the table, as ``module -> module (room -> room)``."""
    bad = []
    for module, edges in sorted(graph.items()):
        here = room_of(module)
        for target in sorted(edges):
            there = room_of(target)
            if there in (here, ROOT):
                continue
            if here == ROOT or there not in ALLOWED.get(here, frozenset()):
                bad.append(f"{module} -> {target} ({here} -> {there})")
    return bad


def code_files() -> list[Path]:
    files: list[Path] = []
    for entry in CODE:
        path = REPO / entry
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else [])
    return files


def long_functions(path: Path, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Functions (methods and nested ones too) longer than ``limit`` lines, ``def`` to last line, whose
    ``def`` has no ``# long: <reason>`` on the line above it or above its decorators."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    found = []
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length <= limit:
            continue
        first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        above = lines[first - 2].strip() if first >= 2 else ""
        reason = above[len(LONG_MARK) :].strip() if above.startswith(LONG_MARK) else ""
        if not reason:
            where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            found.append(f"{where}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_the_cycle_finders_find_a_deferred_import_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert all_cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}) == [
        ["a", "b"],
        ["c", "d", "e"],
    ]


def test_the_graph_sees_imports_inside_functions_and_relative_ones() -> None:
    """A check of the reader on a module known to import inside a function (``runs`` <- ``callbacks``)
    would break as the code moves; instead: every ``import`` statement of the package is in the graph."""
    graph = import_graph()
    assert len(graph) > 50, "the package was not found"
    deferred = relative = 0
    for module, edges in graph.items():
        path = SRC.joinpath(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(func):
                    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("attnlab"):
                        deferred += 1
                        assert any(e.startswith(node.module or "") for e in edges), (module, node.module)
        relative += sum(1 for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level)
        assert all(e.startswith("attnlab") for e in edges)
    assert deferred > 0, "no deferred import found: the reader no longer looks inside functions"
    assert relative >= 0  # relative imports are resolved when present (see import_graph)


def test_the_room_table_points_one_way() -> None:
    """The table itself has no circle, and every package under src/attnlab is a room in it."""
    assert find_cycle({room: set(deps) for room, deps in ALLOWED.items()}) is None
    packages = sorted(p.parent.name for p in (SRC / "attnlab").glob("*/__init__.py"))
    assert [p for p in packages if p not in ALLOWED] == [], "a package that is no room: add it to ALLOWED"


def test_no_import_circle_in_the_package() -> None:
    cycles = all_cycles(import_graph())
    assert cycles == [], "import circles (deferred and type-only imports count):\n" + "\n".join(map(str, cycles))


def test_rooms_import_one_way() -> None:
    bad = upward_imports(import_graph())
    assert bad == [], "imports against the room table in tests/test_house.py:\n" + "\n".join(bad)


def test_no_file_over_the_line_limit() -> None:
    files = code_files()
    assert len(files) > 50
    sizes = {f: len(f.read_text(encoding="utf-8").splitlines()) for f in files}
    over = [f"{f.relative_to(REPO)} ({n} lines)" for f, n in sizes.items() if n > MAX_FILE_LINES]
    assert over == [], f"files over {MAX_FILE_LINES} lines (split them by role):\n" + "\n".join(over)


@pytest.mark.parametrize("marked", [True, False])
def test_the_function_check_honours_a_written_reason(tmp_path: Path, marked: bool) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    mark = "# long: one table written out, clearer in one place\n" if marked else "# long:\n"
    module = tmp_path / "probe.py"
    module.write_text(f"{mark}@staticmethod\ndef big():\n{body}\n", encoding="utf-8")
    assert (long_functions(module) == []) is marked  # an empty reason is no reason
    module.write_text(f"def small():\n{body[: body.rindex(chr(10))]}\n", encoding="utf-8")  # 80 lines: fine
    assert long_functions(module) == []


def test_no_function_over_the_line_limit_without_a_reason() -> None:
    long = [hit for f in code_files() for hit in long_functions(f)]
    assert long == [], (
        f"functions over {MAX_FUNCTION_LINES} lines; split them, or write `{LONG_MARK} <reason>` on the line "
        "above the def:\n" + "\n".join(long)
    )
