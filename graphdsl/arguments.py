"""Model arguments given from outside the program: `--set NAME=VALUE` on the command line
and ``args={...}`` in Python.

They override the formals of the selected model (`model GPT2(vocab: int = 50257, ...)`).
Each one becomes the formal's default, as if the program had been written with it, so it
is type-checked exactly like a default and a later default that reads it (`ff: int = 4 *
d`) sees it. The given values are written into a small text file of their own,
``<arguments>``, so that a diagnostic about one quotes it with a caret like any source.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from graphdsl.diagnostics import DiagnosticSink, SourceMap, Span, suggestion_help
from graphdsl.syntax import tree as ast

ARGUMENTS_FILE = "<arguments>"


@dataclass(frozen=True)
class CommandLineValue:
    """The text after `=` in `--set NAME=VALUE`, read as a literal of the language."""

    text: str


class SetOptionError(ValueError):
    """A `--set` option that is not NAME=VALUE (a usage error, not a diagnostic)."""


def parse_set_options(options: Sequence[str] | None) -> dict[str, CommandLineValue]:
    """`["vocab=100", "d=32"]` -> {"vocab": CommandLineValue("100"), ...}; the last wins."""
    out: dict[str, CommandLineValue] = {}
    for option in options or ():
        name, sep, text = option.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise SetOptionError(f"--set {option!r}: expected NAME=VALUE, e.g. --set vocab=100")
        out[name] = CommandLineValue(text.strip())
    return out


@dataclass(frozen=True)
class _Given:
    name: str
    value: ast.Expr
    name_span: Span


class ModelArguments:
    """Overrides for model formals, as syntax: each value is an expression with a span."""

    def __init__(self, values: Mapping[str, Any], sources: SourceMap):
        self.given: dict[str, _Given] = {}
        self.plain: dict[str, Any] = {}  # name -> the value as JSON (recorded in the IR)
        lines = []
        for number, (name, value) in enumerate(values.items(), start=1):
            if isinstance(value, CommandLineValue):
                prefix, text = f"--set {name}=", value.text
            else:
                prefix, text = f"{name} = ", _literal(value)
            lines.append(prefix + text)
            value_span = Span(ARGUMENTS_FILE, number, len(prefix) + 1, number,
                              len(prefix) + 1 + max(len(text), 1))
            name_column = len(prefix) - len(name) - (3 if prefix.endswith(" = ") else 1) + 1
            name_span = Span(ARGUMENTS_FILE, number, name_column, number,
                             name_column + len(name))
            expr = _read_literal(text, value_span) if isinstance(value, CommandLineValue) \
                else _python_expr(value, value_span)
            self.given[name] = _Given(name, expr, name_span)
            self.plain[name] = _plain(expr)
        if lines:
            sources.add(ARGUMENTS_FILE, "\n".join(lines) + "\n")

    def __bool__(self) -> bool:
        return bool(self.given)

    def check_names(self, models: Iterable[ast.Definition], sink: DiagnosticSink) -> None:
        """An argument that no selected model declares is an `unknown-argument` error."""
        models = list(models)
        declared = {f.name.name for m in models for f in m.formals}
        for g in self.given.values():
            if g.name in declared:
                continue
            names = " or ".join(f"`{m.name.name}`" for m in models)
            message = f"{names} has no parameter `{g.name}`" if models else \
                f"the file defines no model to take `{g.name}`"
            sink.error("unknown-argument", message, g.name_span,
                       help=suggestion_help(g.name, declared) or
                       ("its parameters: " + ", ".join(sorted(declared)) if declared else
                        "the model takes no parameters"))

    def apply(self, node: ast.Definition) -> ast.Definition:
        """The definition with the given values as its formals' defaults."""
        if not any(f.name.name in self.given for f in node.formals):
            return node
        formals = tuple(
            dataclasses.replace(f, default=self.given[f.name.name].value)
            if f.name.name in self.given else f for f in node.formals)
        return dataclasses.replace(node, formals=formals)

    def for_model(self, node: ast.Definition) -> dict[str, Any]:
        """The given values this model declares, as JSON values."""
        declared = {f.name.name for f in node.formals}
        return {k: v for k, v in self.plain.items() if k in declared}


def _literal(value: Any) -> str:
    """A Python value written as the language writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _python_expr(value: Any, span: Span) -> ast.Expr:
    if isinstance(value, bool):
        return ast.Bool(span, value)
    if isinstance(value, (int, float)):
        return ast.Number(span, value)
    if isinstance(value, str):
        return ast.String(span, value)
    if isinstance(value, (list, tuple)):
        return ast.ListExpr(span, tuple(_python_expr(v, span) for v in value))
    # Not a value the language has: let the formal's check say so, quoting it as text.
    return ast.String(span, repr(value))


_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)")


def _read_literal(text: str, span: Span) -> ast.Expr:
    """`100`, `0.1`, `1e-5`, `true`, `"text"`, `[1, 2]`; any other text is a string, so that
    `--set act=gelu` needs no shell quoting (an int formal then says it got a string)."""
    text = text.strip()
    if _INT.fullmatch(text):
        return ast.Number(span, int(text))
    if _FLOAT.fullmatch(text):
        return ast.Number(span, float(text))
    if text in ("true", "false"):
        return ast.Bool(span, text == "true")
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return ast.String(span, text[1:-1])
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        items = [part.strip() for part in inner.split(",")] if inner else []
        return ast.ListExpr(span, tuple(_read_literal(part, span) for part in items))
    return ast.String(span, text)


def _plain(expr: ast.Expr) -> Any:
    if isinstance(expr, ast.ListExpr):
        return [_plain(e) for e in expr.items]
    if isinstance(expr, (ast.Number, ast.String, ast.Bool)):
        return expr.value
    return None
