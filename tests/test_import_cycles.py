"""The package's modules import each other without a cycle.

Reads every module under ``src/qdistill`` with ``ast`` (nothing is imported), takes the
``qdistill`` modules each one imports at module level and inside functions alike (a
deferred import is still a dependency), and fails on any cycle, naming it. A package's
``__init__`` that re-exports its own submodules is the package itself, so ``a/__init__``
importing ``a/b`` is not a cycle; ``a/b`` importing ``a`` (its own package) is refused
unless it imports a sibling module directly.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str, modules: set[str]) -> set[str]:
    """The qdistill modules ``path`` imports (resolved to modules that exist)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # "from .x import y": y may be a submodule (x.y) or a name in x
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t.startswith("qdistill") and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in (SRC / "qdistill").rglob("*.py")}
    modules = set(paths)
    g = {name: imports(p, name, modules) for name, p in paths.items()}
    # A package importing its own submodules (re-exports) is not a dependency of theirs.
    for name, deps in g.items():
        for dep in list(deps):
            if name.startswith(dep + "."):  # a submodule importing its own package
                continue
            if dep.startswith(name + ".") and paths[name].name == "__init__.py":
                deps.discard(dep)
    return g


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    g = graph()
    assert "qdistill.training.fit" in g["qdistill.distillation.run"]  # the parser sees real imports
