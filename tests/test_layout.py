"""The package's shape: the library apart from the application, and no import cycles.

Imports are read from the source with `ast` (those inside functions too), so a cycle
hidden behind a lazy import is still found. Imports under `if TYPE_CHECKING:` never run
and are left out: a type-only reference back is not a cycle.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tiktok_async"
APPLICATION_ONLY = {"argparse", "rich"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def is_type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` except those under `if TYPE_CHECKING:` (its `else` kept)."""
    found: list[ast.AST] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        found.append(node)
        if is_type_checking_block(node):
            assert isinstance(node, ast.If)
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))
    return found


def imports_of(module: str, path: Path) -> set[str]:
    """Every module `module` imports, anywhere in its source (functions included)."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = absolute(module, is_package, node)
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def internal_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (a package's `__init__` excluded as a
    target when a submodule is named: `from . import _x` is an edge to `_x`)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = {t for t in imports_of(name, path) if t in known and t != name}
        graph[name] = {t for t in targets if not any(o.startswith(t + ".") for o in targets)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node], _ = 2, stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle_through_a_lazy_import() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_relative_imports_resolve_to_package_modules() -> None:
    node = ast.parse("from .._bulk import run_bulk").body[0]
    assert isinstance(node, ast.ImportFrom)
    assert absolute("tiktok_async.cli._enrich", False, node) == "tiktok_async._bulk"


def test_type_checking_imports_do_not_count_but_lazy_ones_do() -> None:
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n"
              "def f():\n    import b\n")
    found = {n.names[0].name for n in runtime_nodes(ast.parse(source))
             if isinstance(n, ast.Import)}
    assert found == {"b"}


def test_no_import_cycles_counting_imports_inside_functions() -> None:
    graph = internal_graph()
    assert "tiktok_async.cli._worker" in graph["tiktok_async.cli._jobs"]
    assert find_cycle(graph) is None


def library_modules() -> dict[str, Path]:
    return {name: path for name, path in modules().items()
            if name.count(".") <= 1 and name != "tiktok_async.__main__"
            and not name.startswith(("tiktok_async.cli", "tiktok_async.emulator"))}


def test_library_modules_import_no_argparse_or_rich() -> None:
    library = library_modules()
    assert "tiktok_async._client" in library
    assert "tiktok_async.cli._main" not in library
    offenders = {name: sorted(imports_of(name, path) & APPLICATION_ONLY)
                 for name, path in library.items()}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_library_modules_import_nothing_from_the_application() -> None:
    offenders = {name: sorted(t for t in imports_of(name, path)
                              if t.startswith("tiktok_async.cli"))
                 for name, path in library_modules().items()}
    assert {name: found for name, found in offenders.items() if found} == {}


@pytest.mark.parametrize("module", ["argparse", "rich", "redis", "tiktok_async.emulator"])
def test_importing_the_library_loads_no_application_module(module: str) -> None:
    code = ("import sys, tiktok_async; "
            f"print(any(m == {module!r} or m.startswith({module!r} + '.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def modules_loaded_by(*args: str) -> set[str]:
    """The modules `python -m tiktok_async ARGS` imports (from `-X importtime`)."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "tiktok_async", *args],
                         capture_output=True, text=True, check=True)
    return {line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines()
            if line.startswith("import time:")}


@pytest.mark.parametrize("command", ["users", "videos"])
def test_a_bulk_command_loads_neither_redis_nor_the_emulator_nor_rich(command: str) -> None:
    """Each command imports its own module only; `--help` and `--quiet` runs never draw
    a bar, so rich waits for one."""
    loaded = modules_loaded_by(command, "--help")
    assert "tiktok_async.cli._enrich" in loaded
    heavy = {"redis", "rich", "tiktok_async.emulator", "tiktok_async.cli._jobs",
             "tiktok_async.cli._demo", "tiktok_async.cli._bench"}
    assert sorted(loaded & heavy) == []


def test_the_redis_commands_load_redis_and_the_demo_the_emulator() -> None:
    assert {"redis", "tiktok_async.cli._jobs"} <= modules_loaded_by("worker", "--help")
    assert "tiktok_async.emulator" in modules_loaded_by("demo", "--help")


def test_functions_stay_small() -> None:
    """Median and p90 function length in the package (lines) stay where issue 10 found
    them: 6 and 16 (`python scripts/function_sizes.py` lists the largest)."""
    sizes = sorted(
        (node.end_lineno or node.lineno) - node.lineno + 1
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    )
    assert len(sizes) > 300
    assert sizes[len(sizes) // 2] <= 6
    assert sizes[int(0.9 * len(sizes))] <= 16


def _check_python() -> Any:
    path = ROOT / "scripts" / "check_python.py"
    spec = importlib.util.spec_from_file_location("check_python", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_stops_at_once_with_what_to_do_on_a_python_too_old_for_the_dev_tools() -> None:
    """The dev extra needs 3.11 (httpx2); on 3.10 pip failed minutes in, naming httpx2.
    The Makefile asks `scripts/check_python.py` before it makes the venv."""
    check = _check_python()
    assert check.problem((3, 11)) is None
    assert check.problem((3, 13, 0)) is None
    message = check.problem((3, 10, 13))
    assert "Python 3.11 or later" in message
    assert "this is 3.10" in message
    assert "PYTHON=python3.11" in message
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_python.py")],
                          capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    recipe = (ROOT / "Makefile").read_text(encoding="utf-8").split("$(STAMP): pyproject.toml\n")[1]
    assert recipe.index("scripts/check_python.py") < recipe.index("-m venv")
