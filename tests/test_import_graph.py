"""rsfm's import graph, read with ``ast``: no cycles; the data layer imports no layer above it.

Two rules, checked statically (no module is imported):

* **No cycles** among module-level imports: statements run when the module is imported (module
  body, class bodies, ``if``/``try`` blocks, including ``if TYPE_CHECKING:``), relative imports
  resolved. Imports inside functions are not edges: they run later, once every module exists.
* **Layers**: ``rsfm.data``, ``rsfm.sensors`` and ``rsfm.band_stats`` (the bottom layer) never
  import ``rsfm.models``, ``rsfm.tasks``, ``rsfm.hub``, ``rsfm.inference`` or ``rsfm.curation`` --
  anywhere in the file, functions and ``importlib.import_module("...")`` literals included.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOWER = ("rsfm.data", "rsfm.sensors", "rsfm.band_stats")
UPPER = ("rsfm.models", "rsfm.tasks", "rsfm.hub", "rsfm.inference", "rsfm.curation")


@dataclass(frozen=True)
class Edge:
    """One import: ``source`` imports ``target`` at ``line`` (``module_level``: at import time)."""

    source: str
    target: str
    line: int
    module_level: bool

    def __str__(self) -> str:
        where = "" if self.module_level else " (in a function)"
        return f"{self.source}:{self.line} -> {self.target}{where}"


def package_modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``root/package``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return name in modules and modules[name].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom, modules: dict[str, Path]) -> str:
    """The absolute module a ``from ... import`` names (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if _is_package(module, modules) else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _module_level_nodes(tree: ast.Module) -> set[int]:
    """ids of the nodes that run at import time (not inside a function body)."""
    ids: set[int] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        ids.add(id(node))
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                stack.append(child)
    return ids


def _targets(module: str, node: ast.AST, modules: dict[str, Path], package: str) -> list[str]:
    """Modules of ``package`` that one AST node imports (empty for other nodes)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = _resolve(module, node, modules)
        names = [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
            for alias in node.names
        ]
    elif (
        isinstance(node, ast.Call)
        and getattr(node.func, "attr", getattr(node.func, "id", None))
        in ("import_module", "__import__")
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        names = [node.args[0].value]
    else:
        return []
    found = []
    for name in names:
        while name and name not in modules:  # `import rsfm.x.y.Name` -> the module rsfm.x.y
            name = name.rpartition(".")[0]
        if name == package or name.startswith(f"{package}."):
            found.append(name)
    return found


def import_edges(root: Path, package: str) -> list[Edge]:
    """Every import between modules of ``package`` under ``root``."""
    modules = package_modules(root, package)
    edges: dict[Edge, None] = {}  # ordered set: `from m import a, b` is one edge
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        top = _module_level_nodes(tree)
        for node in ast.walk(tree):
            for target in _targets(module, node, modules, package):
                if target != module:
                    edges[Edge(module, target, node.lineno, id(node) in top)] = None
    return list(edges)


def find_cycles(edges: list[Edge]) -> list[list[Edge]]:
    """One cycle (as its edges) per strongly connected component of module-level imports."""
    graph: dict[str, dict[str, Edge]] = {}
    for edge in edges:
        if edge.module_level:
            graph.setdefault(edge.source, {}).setdefault(edge.target, edge)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan; the graph has a few hundred nodes
        index[node] = low[node] = len(index)
        stack.append(node)
        for succ in graph.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for component in components:  # a shortest path back to the start, inside the component
        start = min(component)
        paths = {start: []}
        queue = [start]
        while queue:
            node = queue.pop(0)
            for succ, edge in sorted(graph.get(node, {}).items()):
                if succ == start:
                    cycles.append([*paths[node], edge])
                    queue = []
                    break
                if succ in component and succ not in paths:
                    paths[succ] = [*paths[node], edge]
                    queue.append(succ)
    return cycles


def layer_violations(edges: list[Edge]) -> list[Edge]:
    """Imports from the data layer into the layers above it."""

    def under(name: str, prefixes: tuple[str, ...]) -> bool:
        return any(name == p or name.startswith(f"{p}.") for p in prefixes)

    return [e for e in edges if under(e.source, LOWER) and under(e.target, UPPER)]


def _describe_cycles(cycles: list[list[Edge]]) -> str:
    return "\n".join(
        " -> ".join([c[0].source, *(f"{e.target} (line {e.line} of {e.source})" for e in c)])
        for c in cycles
    )


def test_rsfm_has_no_import_cycles() -> None:
    cycles = find_cycles(import_edges(REPO, "rsfm"))
    assert not cycles, f"{len(cycles)} import cycle(s):\n{_describe_cycles(cycles)}"


def test_data_layer_imports_no_layer_above() -> None:
    bad = layer_violations(import_edges(REPO, "rsfm"))
    assert not bad, "the data layer imports a layer above it:\n" + "\n".join(map(str, bad))


def test_the_graph_sees_rsfm() -> None:
    """Guards the two tests above against passing on an empty graph."""
    edges = import_edges(REPO, "rsfm")
    assert len(package_modules(REPO, "rsfm")) > 50 and len(edges) > 100
    assert any(e.source == "rsfm.cli" and not e.module_level for e in edges)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("files", "cycle", "violation"),
    [
        (  # a TYPE_CHECKING import closes a cycle; a relative import resolves
            {
                "rsfm/__init__.py": "",
                "rsfm/data/__init__.py": "",
                "rsfm/data/a.py": "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from .b import B\n",
                "rsfm/data/b.py": "from rsfm.data.a import A\n",
            },
            "rsfm.data.a -> rsfm.data.b",
            None,
        ),
        (  # a function-level import is no cycle but is a layer violation
            {
                "rsfm/__init__.py": "",
                "rsfm/data/__init__.py": "",
                "rsfm/data/a.py": "def f():\n    from rsfm.tasks.t import T\n",
                "rsfm/tasks/__init__.py": "",
                "rsfm/tasks/t.py": "from rsfm.data import a\n",
            },
            None,
            "rsfm.data.a:2 -> rsfm.tasks.t (in a function)",
        ),
        (  # importlib with a literal name counts; `from package import module` targets it
            {
                "rsfm/__init__.py": "",
                "rsfm/sensors.py": "import importlib\nimportlib.import_module('rsfm.hub.store')\n",
                "rsfm/hub/__init__.py": "",
                "rsfm/hub/store.py": "from rsfm import sensors\n",
            },
            "rsfm.hub.store -> rsfm.sensors",
            "rsfm.sensors:2 -> rsfm.hub.store",
        ),
    ],
)
def test_checker_finds_planted_problems(
    tmp_path: Path, files: dict[str, str], cycle: str | None, violation: str | None
) -> None:
    _write(tmp_path, files)
    edges = import_edges(tmp_path, "rsfm")
    cycles = _describe_cycles(find_cycles(edges))
    if cycle is None:
        assert cycles == ""
    else:
        assert cycles.startswith(cycle.split(" -> ")[0]) and cycle.split(" -> ")[1] in cycles
    assert [str(e) for e in layer_violations(edges)] == ([violation] if violation else [])
