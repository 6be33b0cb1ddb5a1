"""The package's import graph: subpackages by concern, strictly layered, no circle.

Each module may import only from its own layer or the layers below it (the order below), and no two modules
import each other through any chain. Package faces (``__init__`` files that re-export lazily) are not nodes.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "shapnas"

# bottom up; a module belongs to the first prefix it starts with
LAYERS = [
    ("_facade", "runtime", "profiles"),
    ("config",),
    ("runs",),
    ("data", "networks"),
    ("training",),
    ("shapley",),
    ("search",),
    ("pipeline",),
    ("experiments",),
    ("plots",),
    ("book",),
    ("cli", "__main__"),
]


def _modules() -> dict[str, Path]:
    """Dotted module name (without ``shapnas.``) -> file, package faces left out."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py" and path.parent != PACKAGE / "profiles":
            continue
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        found[".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The shapnas modules a file imports (at any depth of the file), resolved to the modules of ``modules``."""
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shapnas"):
            base = node.module.removeprefix("shapnas").lstrip(".")
            for alias in node.names:
                name = f"{base}.{alias.name}" if base else alias.name
                targets.add(name if name in modules else base)
        elif isinstance(node, ast.Import):
            targets.update(a.name.removeprefix("shapnas").lstrip(".") for a in node.names if a.name.startswith("shapnas"))
    return {t for t in targets if t in modules}


def _layer(module: str) -> int:
    top = module.split(".")[0]
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"shapnas.{module} belongs to no layer; add its subpackage to LAYERS in {__file__}")


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def test_no_module_imports_a_higher_layer():
    upward = [f"shapnas.{a} -> shapnas.{b}" for a, targets in _graph().items() for b in targets
              if _layer(b) > _layer(a)]
    assert not upward, "imports that run back up: " + "; ".join(sorted(upward))


def test_the_import_graph_has_no_circle():
    graph = _graph()
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not circles, f"import circles: {circles}"


def test_few_modules_at_the_top_level():
    top = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert len(top) <= 6, f"shapnas/ holds {len(top)} modules besides the subpackages: {sorted(top)}"


@pytest.mark.parametrize("face, name", [("config", "resolve_config"), ("config", "POLICY_NAMES"),
                                        ("runs", "run_dir"), ("search", "run_search_loop"),
                                        ("experiments", "collect_summary")])
def test_package_faces_re_export_their_modules(face, name):
    module = importlib.import_module(f"shapnas.{face}")
    assert callable(getattr(module, name)) or isinstance(getattr(module, name), tuple)


def test_a_face_names_what_it_lacks():
    import shapnas.config

    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        shapnas.config.no_such_name  # noqa: B018
