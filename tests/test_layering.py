"""The core's imports run one way (no cycles), and an import inside a function is a lazy heavy import.

Read from the source, not by importing it, so a cycle that happens to import cleanly today (an
import placed inside a function to dodge it) is still found.
"""

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "flowcore"
#: modules whose every command or hook imports its stack on first use, as their docstrings say
LAZY_BY_DESIGN = {"flowcore.cli", "flowcore.commands"}


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(CORE.rglob("*.py"))}


def imported(node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    """The flowcore modules an import statement loads (``from pkg import submodule`` included)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    if not node.module or not node.module.startswith("flowcore"):
        return []
    subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known]
    return subs or ([node.module] if node.module in known else [])


def top_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported (``if TYPE_CHECKING:`` blocks do not)."""
    out = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        out += [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))
                and not any(isinstance(p, (ast.FunctionDef, ast.AsyncFunctionDef)) for p in _parents(node, n))]
    return out


def _parents(root: ast.AST, target: ast.AST) -> list[ast.AST]:
    for child in ast.iter_child_nodes(root):
        if child is target:
            return [root]
        found = _parents(child, target)
        if found:
            return [root, *found]
    return []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_core_has_no_import_cycle():
    trees = modules()
    known = set(trees)
    graph = {m: {d for node in top_level_imports(t) for d in imported(node, known) if d != m}
             for m, t in trees.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", sorted(set(modules()) - LAZY_BY_DESIGN))
def test_imports_inside_functions_say_why(name):
    """An import inside a function is a lazy import of something heavy or optional, and says so."""
    path = CORE.parent / (name.replace(".", "/") + ".py")
    if not path.is_file():
        path = CORE.parent / name.replace(".", "/") / "__init__.py"
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines))
    unexplained = []
    for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        for node in (n for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))):
            nearby = " ".join(lines[max(0, node.lineno - 2):node.end_lineno]).lower()
            if "lazy" not in nearby:
                unexplained.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert unexplained == []
