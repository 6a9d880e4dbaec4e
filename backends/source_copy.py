"""Copies of op implementations as standalone source, for exports that must run without
graphdsl (``torch-source``, ``keras-source``).

Given implementation functions, :func:`copy_functions` returns their source and, first,
the source of everything they read at module level, followed transitively: helper
functions (from the backend or from graphdsl's framework-free arithmetic), constants and
tables (the module-level assignment, as written), and the imports of framework modules.
Registration decorators are dropped. Nothing here imports a framework.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
import textwrap
import types
from collections.abc import Callable, Iterable
from typing import Any

ALLOWED_MODULES = ("torch", "keras", "numpy", "tensorflow", "math", "safetensors", "typing",
                   "collections", "functools", "itertools", "json", "re", "difflib",
                   "dataclasses")


def _names_read(tree: ast.AST) -> set[str]:
    """Names the code reads when it runs: annotations are left out (the copy starts with
    `from __future__ import annotations`, so they are never evaluated)."""
    annotations: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.arg) and n.annotation is not None:
            annotations.add(id(n.annotation))
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.returns is not None:
            annotations.add(id(n.returns))
        elif isinstance(n, ast.AnnAssign):
            annotations.add(id(n.annotation))
    found: set[str] = set()
    stack: list[ast.AST] = [tree]
    while stack:
        n = stack.pop()
        if id(n) in annotations:
            continue
        if isinstance(n, ast.Name):
            found.add(n.id)
        stack.extend(ast.iter_child_nodes(n))
    return found


def _without_decorators(source: str) -> str:
    tree = ast.parse(source)
    node = tree.body[0]
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.decorator_list:
        first = node.lineno - node.decorator_list[0].lineno
        lines = source.splitlines()
        return "\n".join(lines[first:]) if first > 0 else "\n".join(
            line for line in lines if not line.lstrip().startswith("@"))
    return source


def _function_source(fn: Callable[..., Any]) -> str:
    """A function's definition without decorators; a lambda's expression alone."""
    text = textwrap.dedent(inspect.getsource(fn))
    if fn.__name__ != "<lambda>":
        return _without_decorators(text)
    code = fn.__code__
    try:
        tree = ast.parse(text)
    except SyntaxError:  # a lambda inside a larger statement: parse the line's pieces
        tree = ast.parse("(" + text.strip().rstrip(",").split(":", 1)[-1].strip() + ")") \
            if text.strip().startswith('"') else ast.parse(text.strip().rstrip(","))
    for node in ast.walk(tree):
        if isinstance(node, ast.Lambda) and \
                [a.arg for a in node.args.args] == list(code.co_varnames[:code.co_argcount]):
            segment = ast.get_source_segment(ast.unparse(tree), node) or ast.unparse(node)
            return ast.unparse(node) if segment is None else ast.unparse(node)
    raise ValueError(f"cannot find the source of a lambda in {fn.__module__}")


def _assignment_source(module: types.ModuleType, name: str) -> str | None:
    """The module-level statement that assigns ``name``, as written."""
    try:
        text = inspect.getsource(module)
    except (OSError, TypeError):
        return None
    for node in ast.parse(text).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return ast.get_source_segment(text, node)
    return None


def _imported_from(module: types.ModuleType, name: str) -> types.ModuleType | None:
    """The module that ``from M import name`` in ``module`` took ``name`` from."""
    try:
        text = inspect.getsource(module)
    except (OSError, TypeError):
        return None
    for node in ast.parse(text).body:
        if isinstance(node, ast.ImportFrom) and \
                any(a.name == name and a.asname in (None, name) for a in node.names):
            source = importlib.util.resolve_name("." * node.level + (node.module or ""),
                                                 module.__package__) \
                if node.level else node.module or ""
            return sys.modules.get(source)
    return None


def _import_line(name: str, value: types.ModuleType) -> str:
    full = value.__name__
    root = full.split(".")[0]
    if root not in ALLOWED_MODULES:
        raise ValueError(f"an implementation reads module {full}, which an export cannot "
                         "import")
    if full == name:
        return f"import {full}"
    parent, _, leaf = full.rpartition(".")
    if parent and leaf == name:
        return f"from {parent} import {leaf}"
    return f"import {full} as {name}"


def _renamed(source: str, renames: dict[str, str]) -> str:
    """``source`` with each name (a Name node, or a def's name) in ``renames`` replaced, the
    rest of the text as written."""
    spots: list[tuple[int, int, int, str]] = []  # line, start, end, new name
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and node.id in renames:
            spots.append((node.lineno, node.col_offset, node.end_col_offset or 0,
                          renames[node.id]))
        elif isinstance(node, ast.FunctionDef) and node.name in renames:
            line = source.splitlines()[node.lineno - 1]
            start = line.index(f"def {node.name}", node.col_offset) + len("def ")
            spots.append((node.lineno, start, start + len(node.name), renames[node.name]))
    lines = source.splitlines()
    for lineno, start, end, new in sorted(spots, reverse=True):
        line = lines[lineno - 1]
        lines[lineno - 1] = line[:start] + new + line[end:]
    return "\n".join(lines)


class _Copier:
    def __init__(self) -> None:
        self.imports: list[str] = []
        self.blocks: list[str] = []
        self.done: set[tuple[str, str]] = set()
        self.counter = 0
        # Functions from different modules may share a name (two `_normalise`s): the
        # second is copied under another, and the code that calls it says so.
        self.owners: dict[str, tuple[str, str]] = {}  # copied name -> (module, name)
        self.copied_as: dict[tuple[str, str], str] = {}

    def _free_name(self, key: tuple[str, str]) -> str:
        module, name = key
        copied = name
        while self.owners.get(copied, key) != key:
            copied = f"{name}_{module.rsplit('.', 1)[-1]}" if copied == name else copied + "_"
        self.owners[copied] = key
        self.copied_as[key] = copied
        return copied

    def add_function(self, fn: Callable[..., Any], name: str | None = None) -> str:
        """Copy ``fn`` (and what it reads); returns the name the copy has."""
        if fn.__closure__ or fn.__name__ == "<lambda>" or "<locals>" in fn.__qualname__:
            self.blocks.append(f"{name or fn.__name__} = {self._made(fn)}")
            return name or fn.__name__
        portable = getattr(fn, "portable", None)
        if portable is not None:  # a framework-specific speed-up: its portable form instead
            return self._global(name or fn.__name__, portable, sys.modules[fn.__module__]) \
                or name or fn.__name__
        module = sys.modules[fn.__module__]
        key = (fn.__module__, fn.__name__)
        alias = name if name is not None and name != fn.__name__ else None  # an op's name
        if key in self.done:  # copied already (under another op's name, say)
            copied = self.copied_as[key]
            if alias is not None:
                self.blocks.append(f"{alias} = {copied}")
            return alias or copied
        self.done.add(key)
        copied = self._free_name(key)
        source = _function_source(fn)
        renames = self._dependencies(ast.parse(source), module, own=fn.__name__)
        if copied != fn.__name__:
            renames[fn.__name__] = copied
        source = _renamed(source, renames) if renames else source
        if alias is not None:
            source += f"\n\n\n{alias} = {copied}"
        self.blocks.append(source)
        return alias or copied

    def _made(self, fn: Callable[..., Any]) -> str:
        """An expression that makes a function defined inside another (a closure over
        table entries such as `torch.add`, or a lambda of a table)."""
        module = sys.modules[fn.__module__]
        source = _function_source(fn)
        tree = ast.parse(source)
        free = fn.__code__.co_freevars
        values = [self._value(cell.cell_contents) for cell in (fn.__closure__ or ())]
        renames = self._dependencies(tree, module, own=fn.__name__, skip=set(free))
        if renames:
            source = _renamed(source, renames)
        if isinstance(tree.body[0], ast.Expr):  # a lambda
            body = source
            if not free:
                return f"({body})"
            return f"(lambda {', '.join(free)}: {body})({', '.join(values)})"
        self.counter += 1
        factory = f"_make_{fn.__name__}_{self.counter}"
        inner = textwrap.indent(source, "    ")
        self.blocks.append(f"def {factory}({', '.join(free)}):\n{inner}\n"
                           f"    return {tree.body[0].name}")  # type: ignore[attr-defined]
        return f"{factory}({', '.join(values)})"

    def _value(self, value: Any) -> str:
        """Source for a value a closure captured."""
        if isinstance(value, (int, float, str, bool, type(None))):
            return repr(value)
        if isinstance(value, types.FunctionType):
            if value.__closure__ or value.__name__ == "<lambda>" or \
                    "<locals>" in value.__qualname__:
                return self._made(value)
            return self.add_function(value)
        owner = getattr(value, "__objclass__", None)
        module = getattr(owner or value, "__module__", None) or ""
        if module.split(".")[0] in ALLOWED_MODULES:
            root = module.split(".")[0]
            if f"import {root}" not in self.imports:
                self.imports.append(f"import {root}")
            candidates = [f"{owner.__qualname__}.{value.__name__}"] if owner is not None \
                else [value.__name__, value.__qualname__]
            for qual in candidates:
                found: Any = sys.modules.get(module)
                for part in qual.split("."):
                    found = getattr(found, part, None)
                if found is value:
                    return f"{module}.{qual}"
        raise ValueError(f"cannot copy the captured value {value!r}")

    def _dependencies(self, tree: ast.AST, module: types.ModuleType, own: str,
                      skip: set[str] | None = None) -> dict[str, str]:
        """Copy what the code reads from its module; returns the names it must read
        under another name (a function copied as `_normalise_types`)."""
        local = {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)} | (skip or set())
        renames = {}
        for name in sorted(_names_read(tree) - local - {own}):
            if name in module.__dict__:
                copied = self._global(name, module.__dict__[name], module)
                if copied is not None and copied != name:
                    renames[name] = copied
        return renames

    def _global(self, name: str, value: Any, module: types.ModuleType) -> str | None:
        """Copy or import one global the code reads; a function's copy may be renamed, and
        its name is returned."""
        if isinstance(value, types.ModuleType):
            line = _import_line(name, value)
            if line not in self.imports:
                self.imports.append(line)
        elif isinstance(value, types.FunctionType) and \
                value.__module__.split(".")[0] not in ALLOWED_MODULES:
            return self.add_function(value, name)
        elif (isinstance(value, type) or getattr(value, "__module__", None) == "typing") and \
                getattr(value, "__module__", "").split(".")[0] in ALLOWED_MODULES:
            value_name = name if value.__module__ == "typing" else value.__name__
            line = f"from {value.__module__} import {value_name}"
            if name != value_name:
                line += f" as {name}"
            if line not in self.imports:
                self.imports.append(line)
        elif callable(value) and getattr(value, "__module__", "").split(".")[0] \
                in ALLOWED_MODULES and hasattr(value, "__name__"):
            line = f"from {value.__module__} import {value.__name__}"
            if line not in self.imports:
                self.imports.append(line)
        elif isinstance(value, type) and value.__module__.split(".")[0] == "graphdsl":
            # a small class of graphdsl's own (e.g. the ShapeError a shape helper raises)
            key = (value.__module__, value.__qualname__)
            if key in self.done:
                return None
            self.done.add(key)
            owner = sys.modules[value.__module__]
            source = textwrap.dedent(inspect.getsource(value))
            renames = self._dependencies(ast.parse(source), owner, own=value.__name__)
            source = _renamed(source, renames) if renames else source
            self.blocks.append(source if name == value.__name__
                               else f"{source}\n\n{name} = {value.__name__}")
        else:
            key = (module.__name__, name)
            if key in self.done:
                return None
            self.done.add(key)
            source = _assignment_source(module, name)
            origin = _imported_from(module, name) if source is None else None
            if origin is not None and origin is not module:
                return self._global(name, value, origin)  # a table from another module
            if source is None:
                if isinstance(value, (int, float, str, bool, tuple, type(None))):
                    source = f"{name} = {value!r}"
                else:
                    raise ValueError(f"cannot copy `{name}` of {module.__name__}")
            renames = self._dependencies(ast.parse(source), module, own=name)
            self.blocks.append(_renamed(source, renames) if renames else source)
        return None


def copy_functions(functions: Iterable[tuple[str, Callable[..., Any]]]) -> tuple[list[str],
                                                                                  str]:
    """(import lines, source defining each function under the given name)."""
    copier = _Copier()
    for name, fn in functions:
        copier.add_function(fn, name)
    return copier.imports, "\n\n\n".join(copier.blocks)
