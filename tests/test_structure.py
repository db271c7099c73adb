"""The package's shape, checked from its source: every import of `prmsearch.*` (at module level, inside functions,
under TYPE_CHECKING) runs down the floors below, no modules import each other in a circle, and no function is over
60 lines. `python tests/test_structure.py` prints the floors, the counts and anything out of place."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "prmsearch"

# Lowest first; a module may import its own floor's modules (no circles) and any floor below, never one above.
FLOORS: list[tuple[str, ...]] = [
    ("errors", "records", "files", "steps", "rows", "recipes", "shipped", "scoring", "lazy", "resume", "devices"),
    ("verifiers",),
    ("tasks",),
    ("models",),
    ("judges",),
    ("data_builders",),
    ("train",),
    ("search",),
    ("label",),
    ("eval",),
    ("embedded",),
    ("rewards", "serve"),
    ("cli", "__main__"),
]
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """The `prmsearch` modules (or names in them) that `name` imports anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            # `from . import x` names a module; `from .m import x` a name in m
            found |= {f"{base}.{a.name}" for a in node.names} if not node.module else {base}
    return {f for f in found if f == "prmsearch" or f.startswith("prmsearch.")}


def graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (a name imported from a module counts as that module)."""
    mods = modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for target in imports(name, path):
            while target not in mods and "." in target:
                target = target.rpartition(".")[0]
            if target != name and target in mods:
                edges[name].add(target)
    return edges


def floor(module: str) -> int:
    if module == "prmsearch":
        return 0  # the root package runs before any module of it, and imports only `lazy` (its names load lazily)
    top = module.split(".")[1]
    for i, names in enumerate(FLOORS):
        if top in names:
            return i
    return len(FLOORS)


def upward(edges: dict[str, set[str]]) -> list[str]:
    return [f"{a} -> {b}" for a in sorted(edges) for b in sorted(edges[a]) if floor(b) > floor(a)]


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                found.append(sorted(group))

    for v in sorted(modules()):
        if v not in index:
            visit(v)
    return found


def long_functions() -> list[str]:
    out = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    out.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({lines} lines)")
    return out


def test_every_import_runs_down_the_floors():
    assert upward(graph()) == []


def test_no_import_circles():
    assert circles(graph()) == []


def test_every_package_has_a_floor():
    tops = {m.split(".")[1] for m in modules() if "." in m}
    assert sorted(t for t in tops if floor(f"prmsearch.{t}") == len(FLOORS)) == []


def test_no_function_is_over_60_lines():
    assert long_functions() == []


if __name__ == "__main__":
    mods, edges = modules(), graph()
    packages = sorted({m.split(".")[1] for m in mods if "." in m and (PACKAGE / m.split(".")[1]).is_dir()})
    print(f"{len(packages)} packages, {len(mods)} modules, {sum(len(v) for v in edges.values())} import edges")
    for i, names in enumerate(FLOORS):
        print(f"floor {i:2d}: {' '.join(names)}")
    problems = [*upward(edges), *(" <-> ".join(c) for c in circles(edges)), *long_functions()]
    print("\n".join(problems) or "no upward imports, no circles, no function over 60 lines")
    sys.exit(1 if problems else 0)
