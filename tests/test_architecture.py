"""The layers hold: the library never imports the CLI, every layer imports only the layers below it, and no two
mlplab modules import each other, even inside functions (docs/architecture.md).

The graph is read from the source with `ast`, so an import inside a function (the usual way to hide a cycle)
counts as much as one at the top. An edge goes to the module named: `from mlplab.mnist import fetch` is an edge to
`mlplab.mnist.fetch`, `from mlplab.mnist.fetch import verify_mnist` one to `mlplab.mnist.fetch`. Importing a
submodule also runs its package's `__init__`, but that is not counted as an edge: a package whose `__init__`
re-exports its submodules (`mlplab.stream`, `mlplab` itself) would otherwise be in a cycle with each of them,
although Python runs that pattern safely as long as the submodules import one another by full path, never
through the package's names. An import of the package itself (`import mlplab`, `from mlplab import __version__`)
is an edge to its `__init__` like any other, so a module that `mlplab/__init__.py` re-exports must not import
`mlplab` back. `importlib.import_module("mlplab....")` with a literal name counts as an import.

The same reading of the source keeps every function at 60 lines or fewer (STYLE.md: one function, one idea).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "mlplab"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imported_names(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(module or module.name, line) for every import in the file, wherever it is; relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno  # a submodule, or a name in `base`: resolved below
        elif isinstance(node, ast.Call) and _called(node) == "import_module" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield first.value, node.lineno


def _called(call: ast.Call) -> str | None:
    return getattr(call.func, "attr", getattr(call.func, "id", None))


def _target(name: str) -> str | None:
    """The mlplab module that `name` (a module, or a name inside one) lives in; None outside mlplab."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, dict[str, int]]:
    """module -> {imported mlplab module: first line}."""
    graph: dict[str, dict[str, int]] = {}
    for module, path in MODULES.items():
        edges: dict[str, int] = {}
        for name, line in _imported_names(module, path):
            target = _target(name)
            if target is not None and target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
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
    return found


def test_the_graph_sees_imports_inside_functions(tmp_path):
    """The reader itself: a cycle hidden in a function body, and a CLI import by string, are both found."""
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": 1}, "b": {}}) == []
    hidden = tmp_path / "hidden.py"
    hidden.write_text("def f():\n"
                      "    from mlplab.cli.common import say\n"
                      "    importlib.import_module('mlplab.cli.forward')\n")
    assert [name for name, _line in _imported_names("mlplab.hidden", hidden)] == ["mlplab.cli.common.say",
                                                                                "mlplab.cli.forward"]
    assert _target("mlplab.cli.common.say") == "mlplab.cli.common"
    assert _target("mlplab.mnist.fetch") == "mlplab.mnist.fetch" and _target("numpy.linalg") is None
    assert "mlplab.mnist.fetch" in _graph()["mlplab.mnist.data"]


def _in_cli(module: str) -> bool:
    return (module + ".").startswith("mlplab.cli.")


def test_the_library_never_imports_the_cli():
    """The CLI calls the library; the library never calls back, not even by a module name in a string (the
    reproduce plan once found `write_section1` through `importlib` and "mlplab.cli.forward")."""
    offenders = [f"{module} (line {line}) imports {target}"
                 for module, edges in _graph().items() if not _in_cli(module)
                 for target, line in edges.items() if _in_cli(target)]
    offenders += [f"{module} (line {node.lineno}) names {node.value!r}"
                  for module, path in MODULES.items() if not _in_cli(module)
                  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and re.fullmatch(r"mlplab\.cli(\.\w+)*", node.value)]
    assert offenders == []


def test_no_import_cycles_between_modules():
    graph = _graph()
    cycles = _cycles(graph)
    edges = [f"{a} -> {b} (line {line})" for c in cycles for a in c for b, line in graph[a].items() if b in c]
    assert cycles == [], edges


# docs/architecture.md: each layer imports only layers below it (and itself). Flat modules are shared plumbing.
LAYERS = {"cli": 6, "pipeline": 5, "instructor": 4, "doctor": 4, "report": 3, "mnist": 2, "stream": 2, "mlplab": 2,
          "twolayer": 1, "native": 1, "plumbing": 0}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "mlplab"  # the package's __init__: the public names, re-exported from twolayer
    sub = parts[1]
    if sub == "doctor":  # a flat module that looks at everything below it (`mlplab doctor`), not plumbing
        return "doctor"
    return sub if (PACKAGE / sub).is_dir() else "plumbing"


def test_layers_only_import_downwards():
    graph = _graph()
    unknown = sorted({_layer(m) for m in graph} - set(LAYERS))
    assert unknown == [], f"put the new subpackage(s) {unknown} into LAYERS and docs/architecture.md"
    upward = [f"{a} ({_layer(a)}) imports {b} ({_layer(b)}) at line {line}"
              for a, edges in graph.items() for b, line in edges.items()
              if _layer(a) != _layer(b) and LAYERS[_layer(b)] >= LAYERS[_layer(a)]]
    assert upward == []


@pytest.mark.parametrize("folder", sorted({p.parent for p in PACKAGE.rglob("*.py")}), ids=lambda p: p.name)
def test_every_package_folder_is_a_package(folder):
    """setuptools' `packages.find` only takes folders with an `__init__.py`; a missing one drops its modules."""
    assert (folder / "__init__.py").is_file()


# STYLE.md: "keep functions under about 60 lines". A function's length runs from its `def` line (decorators not
# counted) to its last line, docstring, comments and blank lines included; methods and nested functions count
# on their own, and an outer function's length includes the functions nested in it.
MAX_FUNCTION_LINES = 60
LONG_FUNCTIONS_ALLOWED: set[str] = set()  # a function named here may stay longer (with a reason beside it)


def _function_lengths(path: Path) -> Iterator[tuple[str, int]]:
    """(qualified name, lines) for every function and method in the file, nested ones included."""
    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    assert child.end_lineno is not None
                    yield name, child.end_lineno - child.lineno + 1
                yield from visit(child, name + ".")
            else:
                yield from visit(child, prefix)

    yield from visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), "")


def _long_functions() -> dict[str, int]:
    """'mlplab/path.py::Qual.name' -> lines, for every function in the package over MAX_FUNCTION_LINES."""
    return {f"{path.relative_to(SRC).as_posix()}::{name}": lines
            for path in MODULES.values() for name, lines in _function_lengths(path) if lines > MAX_FUNCTION_LINES}


def test_the_function_lengths_are_measured_from_def_to_the_last_line(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("@decorator\n"
                      "def outer():\n"
                      "    def inner():\n"
                      "        return 1\n"
                      "\n"
                      "    return inner\n"
                      "\n"
                      "\n"
                      "class Thing:\n"
                      "    async def method(self):\n"
                      "        pass\n")
    assert list(_function_lengths(sample)) == [("outer", 5), ("outer.inner", 2), ("Thing.method", 2)]


def test_no_function_is_over_sixty_lines():
    """One function, one idea (STYLE.md): a function over 60 lines is split into helpers named after what they do."""
    found = _long_functions()
    offenders = sorted(((lines, name) for name, lines in found.items() if name not in LONG_FUNCTIONS_ALLOWED),
                       reverse=True)
    assert offenders == [], (f"functions over {MAX_FUNCTION_LINES} lines: "
                             + ", ".join(f"{name} ({lines} lines)" for lines, name in offenders)
                             + "; split each into helpers named after what they do")
    stale = sorted(LONG_FUNCTIONS_ALLOWED - set(found))
    assert stale == [], f"no longer over {MAX_FUNCTION_LINES} lines (or gone): take {stale} off LONG_FUNCTIONS_ALLOWED"
