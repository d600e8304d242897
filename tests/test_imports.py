"""No import circles in the package, and every module imports on its own and in the order a user would.

A circle (modules that import each other, directly or around a loop) works only while each import sits in
the right place: at the top of one module, inside a function in another. Moving one line breaks an import
with a half-initialised module. The static check reads every module with `ast` and counts both kinds of
import (not those under ``if TYPE_CHECKING:``, which never run), so a circle cannot hide inside a function.
The dynamic checks import each module first thing in a fresh interpreter, then the package the way a
notebook does (``import nbinpaint`` and its lazy attributes).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nbinpaint
from nbinpaint import _version

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nbinpaint"


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, not ``...__init__``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = module_files()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, local: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Each import statement that can run, with whether it is inside a function (or class) body."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, local
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for branch in node.orelse:  # the ``else:`` of ``if TYPE_CHECKING:`` does run
                yield from _imports(ast.Module(body=[branch], type_ignores=[]), local)
        else:
            inner = local or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))
            yield from _imports(node, inner)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The package modules an import statement loads (not the parent packages every import runs first)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in MODULES:
                yield alias.name
        return
    base = node.module or ""
    if node.level:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        if submodule in MODULES:  # ``from nbinpaint import twins``: the submodule
            yield submodule
        elif base in MODULES:  # ``from nbinpaint import __version__``: the package's __init__ itself
            yield base


def import_graph() -> dict[str, dict[str, bool]]:
    """``graph[a][b]`` is True when ``a`` imports ``b`` only inside functions, False when at its top."""
    graph: dict[str, dict[str, bool]] = {name: {} for name in MODULES}
    for name, path in MODULES.items():
        for node, local in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for target in _targets(name, node):
                if target != name:
                    graph[name][target] = graph[name].get(target, True) and local
    return graph


def circles(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, {}))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found, key=lambda c: (-len(c), c))


def describe(component: list[str], graph: dict[str, dict[str, bool]]) -> str:
    members = set(component)
    lines = [f"circle of {len(component)} modules:"]
    for name in component:
        edges = sorted(graph[name].items())
        shown = [f"{target}{' (in a function)' if local else ''}" for target, local in edges if target in members]
        lines.append(f"  {name} -> {', '.join(shown)}")
    return "\n".join(lines)


def test_the_static_check_sees_imports_in_functions_and_skips_type_checking():
    """The checker itself, on a made-up circle: a function-local import counts, a TYPE_CHECKING one does not."""
    code = {
        "a": "from b import x\n",
        "b": "def f():\n    from a import y\n",
        "c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from a import z\n",
    }
    graph: dict[str, dict[str, bool]] = {}
    for name, text in code.items():
        graph[name] = {}
        for node, local in _imports(ast.parse(text)):
            graph[name][node.module] = local
    assert graph == {"a": {"b": False}, "b": {"a": True}, "c": {"typing": False}}
    assert circles({**graph, "a": {"b": False, "c": False}}) == [["a", "b"]]


def test_no_import_circles():
    graph = import_graph()
    found = circles(graph)
    assert not found, "import circles (a -> b lists what a imports inside the circle):\n" + "\n".join(
        describe(component, graph) for component in found
    )


def test_the_version_has_one_source():
    """Submodules read the version from `nbinpaint._version`; the package's ``__version__`` must be the same."""
    assert nbinpaint.__version__ == _version.__version__


# --- each module alone, in a fresh interpreter --------------------------------------------------------------

# Imports the third-party libraries once, then forks a child per check: each child starts with no nbinpaint
# module loaded (a fresh interpreter as far as the package is concerned) without paying torch's import again.
FORK_SERVER = r"""
import importlib, json, os, sys, traceback
checks, libraries = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for library in libraries:
    try:
        importlib.import_module(library)
    except Exception:
        pass  # not installed, or broken: the child that needs it reports it
assert not [m for m in sys.modules if m.split(".")[0] == "nbinpaint"], "a library imported nbinpaint"
failures = {}
for name, code in checks.items():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        status = 0
        try:
            exec(code, {"__name__": "__check__"})
        except BaseException:
            os.write(write, traceback.format_exc().encode())
            status = 1
        os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        output = pipe.read().decode(errors="replace")
    if os.waitpid(pid, 0)[1] != 0:
        failures[name] = output or "the child died without a traceback"
print(json.dumps(failures))
"""

USER_ORDER = """
import nbinpaint
for name in dir(nbinpaint):
    if name != "manager":  # the shared manager is an object, not an import
        getattr(nbinpaint, name)
import nbinpaint.widgets.studio
assert callable(nbinpaint.studio) and nbinpaint.InpaintStudio is nbinpaint.widgets.studio.InpaintStudio
"""


def _libraries() -> list[str]:
    """Every non-nbinpaint module the package imports at the top of a module: what the fork server preloads."""
    names = set()
    for path in MODULES.values():
        for node, local in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if local:
                continue
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif node.module and not node.level:
                names.add(node.module)
    return sorted(n for n in names if n.split(".")[0] not in ("nbinpaint", "__future__", "tests"))


def test_every_module_imports_alone_and_the_package_as_a_user_imports_it():
    checks = {name: f"import {name}" for name in MODULES}
    checks["user order: import nbinpaint, then its lazy attributes"] = USER_ORDER
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    # The same user order in a truly fresh interpreter (no preloaded libraries), beside the fork server.
    fresh = subprocess.Popen(
        [sys.executable, "-c", USER_ORDER], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    if hasattr(os, "fork"):
        server = subprocess.run(
            [sys.executable, "-c", FORK_SERVER, json.dumps(checks), json.dumps(_libraries())],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert server.returncode == 0, server.stderr[-4000:]
        failures = json.loads(server.stdout.strip().splitlines()[-1])
    else:  # no fork (Windows): one interpreter per module
        failures = {}
        for name, code in checks.items():
            run = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
            if run.returncode:
                failures[name] = run.stderr
    _, stderr = fresh.communicate(timeout=300)
    if fresh.returncode:
        failures["user order, fresh interpreter"] = stderr.decode(errors="replace")
    assert not failures, "\n\n".join(f"{name} failed:\n{trace[-2000:]}" for name, trace in failures.items())
