"""Import hygiene of the package: no import cycle between its modules, and importing it never
changes the user's matplotlib backend."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = "ppl_ebm"
ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / PACKAGE


def _module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(tree: ast.Module):
    """Import statements that run when the module is imported: the module's own statements,
    including those inside module-level ``if``/``try``/``with`` blocks and class bodies, but
    not those inside functions (lazy imports) or ``if TYPE_CHECKING:`` blocks."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                stack.extend(getattr(node, field, []) or [])


def _resolve(name: str, module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, dict[str, int]]:
    """``{module: {imported package module: line}}`` of the module-level imports.

    ``import a.b`` and ``from a.b import c`` depend on ``a.b``; ``from a import b`` depends on
    the submodule ``a.b`` when there is one, else on ``a`` (a name from its ``__init__``).
    The parents that Python imports first (``a`` for ``a.b``) are not edges: a package's
    ``__init__`` importing its own submodules, which import siblings through the package,
    is how packages work and is not a cycle here.
    """
    modules = _module_files()
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        is_package = path.name == "__init__.py"
        for node in _module_level_imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(node.module or "", module, is_package, node)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            for target in targets:
                if target in modules and target != module:
                    edges.setdefault(target, node.lineno)
        graph[module] = edges
    return graph


def import_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def test_the_graph_sees_the_imports_it_should():
    """Guards the walker itself: known edges are found, a lazy (function-level) import is not."""
    graph = import_graph()
    assert "ppl_ebm.diagnostics.fast" in graph["ppl_ebm.diagnostics.summary"]
    assert "ppl_ebm.diagnostics.estimators" in graph["ppl_ebm.diagnostics.fast"]
    assert "ppl_ebm.metrics.points" in graph["ppl_ebm.metrics.modes"]
    source = (
        "import a\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import b\n"
        "try:\n    import c\nexcept ImportError:\n    import d\n"
        "class K:\n    import e\n"
        "def f():\n    import g\n"
    )
    found = {alias.name for node in _module_level_imports(ast.parse(source)) for alias in node.names}
    assert found == {"a", "TYPE_CHECKING", "c", "d", "e"}
    cycle = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert import_cycles(cycle) == [["a", "b", "c"]]


def test_no_import_cycle_between_package_modules():
    """No cycle among the package's module-level ``ppl_ebm`` imports (an ast walk of the
    source: nothing is imported).

    Function-level (lazy) imports are ignored: they run after every module involved has
    finished importing, so they cannot see a half-initialised module. So are the implicit
    imports of parent packages (see :func:`import_graph`).
    """
    graph = import_graph()
    cycles = import_cycles(graph)
    lines = []
    for component in cycles:
        members = set(component)
        lines.append("cycle: " + ", ".join(component))
        for module in component:
            for target, line in sorted(graph[module].items()):
                if target in members:
                    path = _module_files()[module].relative_to(ROOT)
                    lines.append(f"  {path}:{line}: {module} -> {target}")
    assert not cycles, "\n".join(lines)


def _studies_modules() -> list[str]:
    return sorted(name for name in _module_files() if name.startswith(f"{PACKAGE}.studies."))


def test_importing_the_package_keeps_the_matplotlib_backend():
    """``ppl_ebm`` and every ``ppl_ebm.studies`` module import without switching matplotlib's
    backend (run in a fresh interpreter, with ``MPLBACKEND`` set to a backend none of them
    would choose, so a ``matplotlib.use(...)`` anywhere on the way shows)."""
    backend = "svg"  # non-interactive, always available, and not what a module would pick
    modules = [PACKAGE, *_studies_modules()]
    code = (
        "import importlib, matplotlib\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(matplotlib.get_backend())\n"
    )
    env = {**os.environ, "MPLBACKEND": backend, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1].lower() == backend


def test_a_jax_run_of_the_command_never_loads_torch_or_pot(tmp_path):
    """``ppl-ebm sample --backend jax`` on a NumPyro model, in a fresh interpreter, runs without
    importing torch or POT (seconds of start-up in every process of a multi-process run): the
    package's torch classes load on first use and the command builds its own parser only."""
    (tmp_path / "model.py").write_text(
        "import numpyro, numpyro.distributions as dist\n\n"
        "def model():\n"
        "    numpyro.sample('x', dist.Normal(0.0, 1.0))\n")
    code = (
        "import sys\n"
        "from ppl_ebm import cli\n"
        f"code = cli.main(['sample', '--model', {str(tmp_path / 'model.py')!r}, '--backend', 'jax', '--chains', '2', "
        f"'--warmup', '5', '--samples', '5', '--output', {str(tmp_path / 'run.zarr')!r}, '--no-progress'])\n"
        "print(code, sorted(name for name in ('torch', 'ot', 'pyro') if name in sys.modules))\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout[-3000:]
