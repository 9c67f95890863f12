"""The package's layout rules, checked by parsing ``xpath/`` with ``ast`` (nothing is imported).

Rules
-----
1. **No import cycle** between modules of ``xpath/``. Every import statement is an edge,
   function-local ones included: DESIGN.md has imports run down the layers, and a local import
   only delays a dependency that points back up (and hides the cycle until a call runs it).
   Imports under ``if TYPE_CHECKING:`` are not edges (they never run).
   ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
   ``import a.b.c`` is an edge to ``a.b.c`` only: Python imports the parent packages first, and a
   package whose ``__init__`` imports its own modules is not a cycle.
2. **No private module imported from outside its package.** A module with a private component
   (``_name``, not a dunder) may be imported only by modules of the package that holds that
   component, and its subpackages: ``xpath.models._checks`` from ``xpath.models.*``;
   ``xpath._types`` from anywhere in ``xpath``. Function-local imports count here too.
3. **No module over 600 lines** (physical lines).
4. **No function body over 80 lines of code.** The body runs from the first statement after the
   docstring to the last line of the function, nested functions included; blank lines, comment
   lines and docstring lines are not counted.

The allow-lists name today's known violations, which other branches are removing. The test fails
on any violation not listed and on any listed entry that no longer violates, so a list can only
shrink: delete the entry in the commit that fixes it.
"""

from __future__ import annotations

import ast
import io
import tokenize
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "xpath"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80

# Import cycles: the modules of each strongly connected component, sorted.
KNOWN_CYCLES: set[tuple[str, ...]] = set()
# "importer -> imported private module"
KNOWN_PRIVATE_IMPORTS: set[str] = set()
# Paths relative to xpath/
KNOWN_LONG_MODULES: set[str] = set()
# "path relative to xpath/:qualified function name"
KNOWN_LONG_FUNCTIONS: set[str] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _package_of(module: str) -> str:
    """The package a module's relative imports start from."""
    path = _modules()[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The ``xpath`` modules an import statement loads (other packages are dropped)."""
    known = _modules()
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = _package_of(module).split(".")
            base = base[: len(base) - (node.level - 1)]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        names = []
        for alias in node.names:
            sub = f"{origin}.{alias.name}"
            names.append(sub if sub in known else origin)
    return sorted({n for n in names if n in known})


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every import statement of a module, except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                stack.extend(child.orelse)
            else:
                stack.append(child)


@cache
def _edges() -> dict[str, set[str]]:
    """``module -> modules of xpath it imports``."""
    return {m: {t for node in _imports(_tree(p)) for t in _targets(m, node)} - {m} for m, p in _modules().items()}


def _cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: set[tuple[str, ...]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _owner(module: str) -> str | None:
    """The package that holds the first private component of ``module`` (None: all public)."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _private_imports() -> set[str]:
    bad = set()
    for importer, targets in _edges().items():
        for target in targets:
            owner = _owner(target)
            if owner is not None and not (importer == owner or importer.startswith(owner + ".")):
                bad.add(f"{importer} -> {target}")
    return bad


def _code_lines(path: Path) -> set[int]:
    """Line numbers that hold code: not blank, not comment-only, not part of a docstring."""
    source = path.read_text(encoding="utf-8")
    lines: set[int] = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENDMARKER, tokenize.ENCODING}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    for node in ast.walk(_tree(path)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if ast.get_docstring(node, clean=False) is not None:
                lines.difference_update(range(first.lineno, first.end_lineno + 1))
    return lines


def _functions(tree: ast.AST, prefix: str = ""):
    """``(qualified name, node)`` of every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, prefix + node.name + ".")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, prefix + node.name + ".")
        else:
            yield from _functions(node, prefix)


def function_lengths(path: Path) -> dict[str, int]:
    """Lines of code in the body of each function of ``path``, by qualified name."""
    code = _code_lines(path)
    out = {}
    for name, node in _functions(_tree(path)):
        body = node.body[1:] if ast.get_docstring(node, clean=False) is not None else node.body
        if body:
            out[name] = len(code.intersection(range(body[0].lineno, node.end_lineno + 1)))
        else:
            out[name] = 0
    return out


def _long_functions() -> dict[str, int]:
    return {
        f"{path.relative_to(ROOT).as_posix()}:{name}": n
        for path in _modules().values()
        for name, n in function_lengths(path).items()
        if n > MAX_FUNCTION_LINES
    }


def _long_modules() -> dict[str, int]:
    out = {}
    for path in _modules().values():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_MODULE_LINES:
            out[path.relative_to(ROOT).as_posix()] = n
    return out


def _check(found: set[str] | dict, known: set, what: str) -> None:
    new = sorted(set(found) - known)
    fixed = sorted(known - set(found))
    detail = {k: found[k] for k in new} if isinstance(found, dict) else new
    assert not new, f"new {what}: {detail}"
    assert not fixed, f"{what} no longer present, delete them from the allow-list in tests/test_layout.py: {fixed}"


# ------------------------------------------------------------------- the rules on xpath/
def test_no_import_cycles():
    _check(_cycles(_edges()), KNOWN_CYCLES, "import cycles")


def test_no_private_module_imported_from_another_package():
    _check(_private_imports(), KNOWN_PRIVATE_IMPORTS, "imports of another package's private module")


def test_no_module_over_600_lines():
    _check(_long_modules(), KNOWN_LONG_MODULES, f"modules over {MAX_MODULE_LINES} lines")


def test_no_function_body_over_80_lines_of_code():
    _check(_long_functions(), KNOWN_LONG_FUNCTIONS, f"functions over {MAX_FUNCTION_LINES} lines of code")


# ------------------------------------------------------------- the checker on known input
def test_package_is_found():
    modules = _modules()
    assert {"xpath", "xpath._types", "xpath.models._checks", "xpath.explain"} <= set(modules)
    assert _package_of("xpath.explain") == "xpath.explain"
    assert _package_of("xpath.explain._shap") == "xpath.explain"


def test_relative_imports_resolve_to_modules():
    edges = _edges()
    assert "xpath._types" in edges["xpath.models._survival"]  # from .._types import ...
    assert "xpath.models._checks" in edges["xpath.models._survival"]  # from ._checks import ...
    assert "xpath.models" in edges["xpath.explain._shap"]  # local `from ..models import CoxModel`
    assert "xpath.models._checks" not in edges["xpath.explain._shap"]


def test_cycle_finder_on_a_known_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": {"d"}, "f": set()}
    assert _cycles(graph) == {("a", "b", "c"), ("d", "e")}
    assert _cycles({"a": {"b"}, "b": set()}) == set()


def test_private_owner():
    assert _owner("xpath.models._checks") == "xpath.models"
    assert _owner("xpath._types") == "xpath"
    assert _owner("xpath.segmentation._x.inner") == "xpath.segmentation"
    assert _owner("xpath.models.__init__") is None and _owner("xpath.io") is None


def test_function_length_counts_code_only(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(3))
    source = (
        "def f(a,\n      b):\n"
        '    """Docstring\n\n    over lines.\n    """\n'
        "    # a comment\n\n"
        f"{body}\n"
        "    s = '''a string\n    that is code'''\n"
        "    def g():\n        '''Inner docstring.'''\n        return 1\n"
        "    return s\n"
        "class C:\n    def m(self):\n        pass\n"
    )
    path = tmp_path / "m.py"
    path.write_text(source)
    # 3 assignments + 2 lines of the string + def g + return 1 + return s
    assert function_lengths(path) == {"f": 8, "f.g": 1, "C.m": 1}

