"""The package's import graph: one direction per side, no cycles, any import order works.

A cycle between two modules works only while the package's ``__init__`` happens to import
them in the right order; swap two lines there and importing fails with "partially initialized
module". So the module-level imports of ``companion`` must form no cycle, and every module
must import on its own, in a fresh interpreter, and after any other module of its side.
"""

import ast
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "companion"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def top_level_imports(name: str) -> set[str]:
    """The companion modules that ``name`` imports while it is being imported.

    Imports inside functions run later and cannot form an initialisation cycle, so only
    statements at module level count (also those under a module-level ``if`` or ``try``).
    """
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()

    def visit(statements):
        for node in statements:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                found.add(base)
                # "from companion.torch import segmentation" imports a module, too.
                found.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
                visit(getattr(node, "finalbody", []))

    visit(ast.parse(path.read_text()).body)
    # Importing a.b.c imports a and a.b first; keep the modules of this package only.
    closed = set()
    for target in found:
        parts = target.split(".")
        closed.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {target for target in closed if target in MODULES and target != name}


def test_every_module_of_the_package_is_found():
    assert {
        "companion",
        "companion.torch",
        "companion.keras",
        "companion.torch.segmentation",
    } <= set(MODULES)


def test_the_module_level_imports_form_no_cycle():
    graph = {name: top_level_imports(name) for name in MODULES}
    # A package's __init__ is imported before any of its submodules; an edge from a submodule
    # to its own package is therefore no cycle of ours but the import system's order.
    cycles = []
    state: dict[str, str] = {}

    def walk(name, stack):
        state[name] = "open"
        for target in sorted(graph[name]):
            if name.startswith(target + "."):
                continue
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                walk(target, stack + [target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_no_module_re_exports_a_sibling():
    # Only a side's __init__ gathers the names of its modules; a module that star-imports a
    # sibling gives every name a second import path and invites a cycle.
    offenders = []
    for name, path in MODULES.items():
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
                offenders.append(f"{name}: from {node.module} import *")
    assert not offenders, offenders


FRAMEWORK_MODULES = sorted(
    name
    for name in MODULES
    if name.startswith(("companion.torch", "companion.keras")) and not name.endswith(".__main__")
)


@pytest.mark.parametrize("module", FRAMEWORK_MODULES)
def test_each_framework_module_imports_alone_in_a_fresh_interpreter(module):
    # The framework-free modules are imported alone by tests/test_packaging.py.
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, cwd=ROOT)


@pytest.mark.parametrize("side", ["companion.torch", "companion.keras"])
def test_every_pair_of_a_sides_modules_imports_in_either_order(side):
    # In one interpreter, for speed: the package's modules are removed from sys.modules
    # before each pair, so that each pair is imported from nothing (the frameworks stay).
    modules = [name for name in FRAMEWORK_MODULES if name.startswith(side)]
    pairs = list(itertools.permutations(modules, 2))
    code = (
        "import importlib, sys\n"
        f"for first, second in {pairs!r}:\n"
        "    for name in [m for m in sys.modules if m.split('.')[0] == 'companion']:\n"
        "        del sys.modules[name]\n"
        "    importlib.import_module(first)\n"
        "    importlib.import_module(second)\n"
        "print(len(" + repr(pairs) + "))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-1] == str(len(pairs))
