"""The package's layering: the library never imports its tools, models never import the cache,
no import cycles, and `import taylorseer` stays light."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import taylorseer

pytestmark = pytest.mark.unit

PACKAGE = Path(taylorseer.__file__).parent

# What each part of the package may import of the package (besides itself).
ALLOWED = {
    "core": set(),
    "runtime": {"core", "config"},
    "wiring": {"core", "runtime", "config"},
    "config": {"core"},
    "api": {"core", "runtime", "wiring", "config"},
    "models": set(),
}


def part(module: str) -> str:
    """'taylorseer.core.forecast' -> 'core'."""
    return module.split(".")[1] if module.count(".") else ""


def runtime_nodes(tree: ast.AST):
    """Every node of `tree` except those under `if TYPE_CHECKING:` (imports for type hints only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        yield node
        yield from runtime_nodes(node)


def imports(path: Path) -> set[str]:
    """Every taylorseer module that `path` imports when it runs, at any depth of its code."""
    found = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("taylorseer"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("taylorseer"))
    return found


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)
        found[name] = path
    return found


@pytest.mark.parametrize("name", sorted(ALLOWED))
def test_the_library_and_the_models_never_import_upward(name):
    for module, path in modules().items():
        if part(module) != name:
            continue
        for imported in imports(path):
            target = part(imported)
            if target and target != name and imported in modules():
                assert target in ALLOWED[name], f"{module} imports {imported}"


def test_no_import_cycles_between_modules():
    graph = {module: {i for i in imports(path) if i in modules()} for module, path in modules().items()}
    for module in graph:  # taylorseer.x.__init__ re-exports are edges too; a package is its __init__
        graph[module].discard(module)
    visiting, done = set(), set()

    def visit(module: str, trail: list[str]) -> None:
        if module in done:
            return
        assert module not in visiting, f"import cycle: {' -> '.join(trail + [module])}"
        visiting.add(module)
        for target in graph[module]:
            if not module.startswith(target + "."):  # a package's own __init__ is imported first anyway
                visit(target, trail + [module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def loaded_packages(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(','.join(sorted(m for m in sys.modules if '.' not in m)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.strip().split(","))


def test_import_taylorseer_loads_nothing_beyond_torch():
    extra = loaded_packages("import taylorseer") - loaded_packages("import torch")
    assert extra == {"taylorseer"}
