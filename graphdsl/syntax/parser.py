"""Source text -> syntax tree, with syntax errors in human words.

The tree builder is non-recursive, so a long operator chain cannot overflow Python's
stack; bracket nesting is capped before parsing.
After an error the offending line is blanked and the parse retried, so one run
reports several syntax errors.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import lark
from lark import Token, v_args
from lark.visitors import Transformer_NonRecursive, _VArgsWrapper

from graphdsl.diagnostics import DiagnosticSink, Span
from graphdsl.syntax import tables
from graphdsl.syntax import tree as ast
from graphdsl.syntax.errors import (
    MAX_NESTING,
    bracket_depth_error,
    report_syntax_error,
    token_span,
)

MAX_SYNTAX_ERRORS = 10
# Past this size a file gets its first syntax error only: each retry re-parses it whole.
RECOVERY_SIZE_LIMIT = 200_000


@functools.lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    return tables.load()


def _unquote(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return text[1:-1]
    return value if isinstance(value, str) else text[1:-1]


@v_args(meta=True)
class _TreeBuilder(Transformer_NonRecursive):
    """Grammar aliases are method names: no dispatch on node names is needed."""

    __visit_tokens__ = False  # no terminal has a rule: tokens pass through as they are

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _call_userfunc(self, tree: Any, new_children: Any = None) -> Any:
        # Lark rebuilds the v_args wrapper on every lookup (functools.update_wrapper per
        # node, a fifth of the parse); the rules are looked up once, in _RULES.
        rule = _RULES.get(tree.data)
        if rule is None:
            return super()._call_userfunc(tree, new_children)
        return rule(self, tree.meta, new_children if new_children is not None else tree.children)

    def _span(self, meta: Any) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.file, 1, 1, 1, 1)
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _ident(self, tok: Token) -> ast.Ident:
        return ast.Ident(str(tok), token_span(self.file, tok))

    # ---- top level
    def start(self, meta: Any, items: list[Any]) -> ast.Module:
        return ast.Module(
            self.file,
            tuple(i for i in items if isinstance(i, ast.Import)),
            tuple(i for i in items if isinstance(i, ast.Definition)),
            tuple(i for i in items if isinstance(i, ast.TrainDef)),
        )

    def import_all(self, meta: Any, c: list[Any]) -> ast.Import:
        path, alias = c
        return ast.Import(self._string(path), self._ident(alias) if alias else None, None,
                          self._span(meta))

    def import_names(self, meta: Any, c: list[Any]) -> ast.Import:
        path, *names = c
        return ast.Import(self._string(path), None, tuple(self._ident(n) for n in names),
                          self._span(meta))

    def _definition(self, kind: str, meta: Any, c: list[Any]) -> ast.Definition:
        name, formals, *body = c
        return ast.Definition(kind, self._ident(name), tuple(formals or ()), tuple(body),
                              self._span(meta))

    def model_def(self, meta: Any, c: list[Any]) -> ast.Definition:
        return self._definition("model", meta, c)

    def block_def(self, meta: Any, c: list[Any]) -> ast.Definition:
        return self._definition("block", meta, c)

    def formals(self, meta: Any, c: list[Any]) -> list[ast.Formal]:
        return [f for f in c if f is not None]

    def formal(self, meta: Any, c: list[Any]) -> ast.Formal:
        name, type_, default = c
        return ast.Formal(self._ident(name), self._ident(type_), default, self._span(meta))

    # ---- statements
    def input_stmt(self, meta: Any, c: list[Any]) -> ast.InputStmt:
        return ast.InputStmt(self._span(meta), self._ident(c[0]), c[1])

    def target_stmt(self, meta: Any, c: list[Any]) -> ast.TargetStmt:
        return ast.TargetStmt(self._span(meta), self._ident(c[0]), c[1])

    def tensor_type(self, meta: Any, c: list[Any]) -> ast.TensorTypeExpr:
        dtype, *dims = c
        return ast.TensorTypeExpr(
            self._ident(dtype),
            tuple(ast.EllipsisExpr(token_span(self.file, d)) if isinstance(d, Token) else d
                  for d in dims if d is not None),
            self._span(meta))

    def layer_stmt(self, meta: Any, c: list[Any]) -> ast.LayerStmt:
        return ast.LayerStmt(self._span(meta), self._ident(c[0]), c[1])

    def param_stmt(self, meta: Any, c: list[Any]) -> ast.ParamStmt:
        *names, type_, init, constraint, frozen = c
        return ast.ParamStmt(self._span(meta), tuple(self._ident(n) for n in names), type_,
                             init, constraint, frozen is not None)

    def constrain(self, meta: Any, c: list[Any]) -> ast.Expr:
        return c[0]

    def assign_stmt(self, meta: Any, c: list[Any]) -> ast.Assign:
        *names, value = c
        return ast.Assign(self._span(meta), tuple(self._ident(n) for n in names), value)

    def named_output(self, meta: Any, c: list[Any]) -> ast.OutputStmt:
        inference, name, value = c
        return ast.OutputStmt(self._span(meta), self._ident(name), value, inference is not None)

    def anonymous_output(self, meta: Any, c: list[Any]) -> ast.OutputStmt:
        inference, value = c
        name = ast.Ident(value.id, value.span) if isinstance(value, ast.Name) else None
        return ast.OutputStmt(self._span(meta), name, value, inference is not None)

    def loss_stmt(self, meta: Any, c: list[Any]) -> ast.LossStmt:
        name, value = c
        return ast.LossStmt(self._span(meta), self._ident(name) if name else None, value)

    def metric_stmt(self, meta: Any, c: list[Any]) -> ast.MetricStmt:
        name, value = c
        return ast.MetricStmt(self._span(meta), self._ident(name) if name else None, value)

    def for_stmt(self, meta: Any, c: list[Any]) -> ast.ForStmt:
        *names, iterable, body = c
        return ast.ForStmt(self._span(meta), tuple(self._ident(n) for n in names), iterable,
                           body)

    def if_stmt(self, meta: Any, c: list[Any]) -> ast.IfStmt:
        condition, then, otherwise = c
        if isinstance(otherwise, ast.IfStmt):
            otherwise = (otherwise,)
        return ast.IfStmt(self._span(meta), condition, then, otherwise or ())

    def stmt_block(self, meta: Any, c: list[Any]) -> tuple[ast.Stmt, ...]:
        return tuple(c)

    # ---- train blocks
    def train_def(self, meta: Any, c: list[Any]) -> ast.TrainDef:
        name, *body = c
        return ast.TrainDef(self._ident(name), tuple(body), self._span(meta))

    def setting(self, meta: Any, c: list[Any]) -> ast.Setting:
        return ast.Setting(self._span(meta), self._ident(c[0]), c[1])

    def optimizer_stmt(self, meta: Any, c: list[Any]) -> ast.OptimizerStmt:
        return ast.OptimizerStmt(self._span(meta), c[0], c[1])

    def freeze_stmt(self, meta: Any, c: list[Any]) -> ast.FreezeStmt:
        return ast.FreezeStmt(self._span(meta), c[0])

    def restore_stmt(self, meta: Any, c: list[Any]) -> ast.RestoreStmt:
        return ast.RestoreStmt(self._span(meta), c[0], self._string(c[1]))

    def quoted_pattern(self, meta: Any, c: list[Any]) -> ast.Pattern:
        return ast.Pattern(_unquote(str(c[0])), self._span(meta))

    def dotted_pattern(self, meta: Any, c: list[Any]) -> ast.Pattern:
        return ast.Pattern(".".join(str(t) for t in c), self._span(meta))

    # ---- expressions
    def repeat(self, meta: Any, c: list[Any]) -> ast.Repeat:
        count, shared, body = c
        return ast.Repeat(self._span(meta), count, shared is not None, body)

    def indexed_repeat(self, meta: Any, c: list[Any]) -> ast.Repeat:
        count, index, body = c
        return ast.Repeat(self._span(meta), count, False, body, self._ident(index))

    def logical_or(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return ast.BinOp(self._span(meta), "or", c[0], c[1])

    def logical_and(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return ast.BinOp(self._span(meta), "and", c[0], c[1])

    def logical_not(self, meta: Any, c: list[Any]) -> ast.UnaryOp:
        return ast.UnaryOp(self._span(meta), "not", c[0])

    def compare(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return ast.BinOp(self._span(meta), str(c[1]), c[0], c[2])

    def binary(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return ast.BinOp(self._span(meta), str(c[1]), c[0], c[2])

    def unary(self, meta: Any, c: list[Any]) -> ast.UnaryOp:
        return ast.UnaryOp(self._span(meta), str(c[0]), c[1])

    def call(self, meta: Any, c: list[Any]) -> ast.Call:
        func, arguments = c
        arguments = arguments or []
        args = tuple(a for a in arguments if not isinstance(a, ast.Keyword))
        keywords = tuple(a for a in arguments if isinstance(a, ast.Keyword))
        return ast.Call(self._span(meta), func, args, keywords)

    def arguments(self, meta: Any, c: list[Any]) -> list[Any]:
        return [a for a in c if a is not None]

    def keyword(self, meta: Any, c: list[Any]) -> ast.Keyword:
        return ast.Keyword(str(c[0]), c[1], token_span(self.file, c[0]))

    def loss_keyword(self, meta: Any, c: list[Any]) -> ast.Keyword:
        span = self._span(meta)
        return ast.Keyword("loss", c[0], Span(span.file, span.line, span.column, span.line,
                                               span.column + 4))

    def subscript(self, meta: Any, c: list[Any]) -> ast.Subscript:
        return ast.Subscript(self._span(meta), c[0], tuple(c[1]))

    def subscripts(self, meta: Any, c: list[Any]) -> list[ast.Expr]:
        items: list[ast.Expr] = []
        for item in c:
            if item is None:
                continue
            if isinstance(item, Token):  # ELLIPSIS
                items.append(ast.EllipsisExpr(token_span(self.file, item)))
            else:
                items.append(item)
        return items

    def slice(self, meta: Any, c: list[Any]) -> ast.Slice:
        start, stop, step = (c + [None, None, None])[:3]
        return ast.Slice(self._span(meta), start, stop, step)

    def attribute(self, meta: Any, c: list[Any]) -> ast.Attribute:
        return ast.Attribute(self._span(meta), c[0], str(c[1]), token_span(self.file, c[1]))

    def name(self, meta: Any, c: list[Any]) -> ast.Name:
        return ast.Name(self._span(meta), str(c[0]))

    def int(self, meta: Any, c: list[Any]) -> ast.Number:
        return ast.Number(self._span(meta), int(str(c[0])))

    def float(self, meta: Any, c: list[Any]) -> ast.Number:
        return ast.Number(self._span(meta), float(str(c[0])))

    def string(self, meta: Any, c: list[Any]) -> ast.String:
        return self._string(c[0])

    def _string(self, tok: Token) -> ast.String:
        return ast.String(token_span(self.file, tok), _unquote(str(tok)))

    def true(self, meta: Any, c: list[Any]) -> ast.Bool:
        return ast.Bool(self._span(meta), True)

    def false(self, meta: Any, c: list[Any]) -> ast.Bool:
        return ast.Bool(self._span(meta), False)

    # (before `list`, whose name would shadow the type in the annotations below it)
    def tuple_list(self, meta: Any, c: list[Any]) -> ast.ListExpr:
        """`(3, 3)`, as Keras code writes sizes and shapes, is the list `[3, 3]`."""
        return self.list(meta, c)

    def list(self, meta: Any, c: list[Any]) -> ast.ListExpr:
        return ast.ListExpr(self._span(meta), tuple(x for x in c if x is not None))


# --- syntax errors in human words ------------------------------------------------------


# rule name -> the method itself (the v_args wrappers' base functions)
_RULES = {name: attr.base_func for name, attr in vars(_TreeBuilder).items()
          if isinstance(attr, _VArgsWrapper)}

def parse(text: str, file: str, sink: DiagnosticSink) -> ast.Module | None:
    """Parse one file; syntax errors go to ``sink`` and the result is None."""
    deep = bracket_depth_error(text, file)
    if deep is not None:
        sink.error("syntax", f"brackets nest more than {MAX_NESTING} levels deep", deep,
                   help="split the expression into named intermediate tensors")
        return None
    parser = _parser()
    attempt = text
    errors = 0
    max_errors = MAX_SYNTAX_ERRORS if len(text) <= RECOVERY_SIZE_LIMIT else 1
    while True:
        try:
            tree = parser.parse(attempt)
        except lark.exceptions.UnexpectedInput as exc:
            errors += 1
            retry = report_syntax_error(exc, parser, attempt, file, sink)
            if errors >= max_errors or retry is None or retry == attempt:
                return None
            attempt = retry
            continue
        if errors:
            return None
        try:
            module = _TreeBuilder(file).transform(tree)
        except lark.exceptions.VisitError as exc:  # a tree-builder bug must not reach users
            sink.error("syntax", f"internal error while reading the program: {exc.orig_exc}",
                       Span(file, 1, 1, 1, 1))
            return None
        assert isinstance(module, ast.Module)
        return module


# What may stand between definitions, and what may start a statement in a body.
