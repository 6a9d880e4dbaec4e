"""Compile-time loops and conditionals (`for`, `if`/`else`), and the functions of constants
they compute with (`range`, `enumerate`, `zip`, `len`, `int`, `ceil`, `floor`, `round`;
`max`, `min` and `abs` of constants).

Both run at elaboration: a `for` runs its statements once per item, an `if` runs one
branch. Tensors and layers they assign stay defined after them, as ordinary
assignments; loop variables do not. Something named inside a loop (`layer NAME`,
`name = "..."`, `param NAME`) gets the iteration in its path, `NAME.0`, `NAME.1`, ...;
automatic names count on as everywhere (`dense`, `dense_1`, ...).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from graphdsl.diagnostics import Note, Span, source_text
from graphdsl.elaborate.statements import Body
from graphdsl.elaborate.values import (
    MAX_REPEAT,
    POISON,
    Const,
    Poison,
    Scope,
    Tensor,
    TupleValue,
    describe,
)
from graphdsl.syntax import tree as ast

if TYPE_CHECKING:  # the elaborator owns this room; the room only calls back into it
    from graphdsl.elaborate.core import Elaborator

COMPILE_TIME_FUNCTIONS = ("range", "enumerate", "zip", "len", "int", "ceil", "floor", "round")
# Functions that are ops on tensors, and fold at compile time when every argument is a
# constant: `max(8, int(c + 4) // 8 * 8)`, as in MobileNet's and EfficientNet's widths.
FOLDABLE_OPS = ("max", "min", "abs")


class ControlRules:
    def __init__(self, el: Elaborator) -> None:
        self.el = el
        el.statements.register(ast.ForStmt, self.for_stmt)
        el.statements.register(ast.IfStmt, self.if_stmt)

    # --- for -----------------------------------------------------------------------------

    def for_stmt(self, stmt: ast.ForStmt, body: Body) -> None:
        scope = body.scope
        self.new_names(stmt.targets, scope)  # reported; the loop still runs, to go on checking
        shadowed = {t.name: scope.env[t.name] for t in stmt.targets if t.name in scope.env}
        items = self.items(stmt.iterable, scope)
        if items is None:
            self.poison_assigned(stmt.body, scope)
            return
        outer_path, outer_nesting = scope.loop_path, body.nested_in
        before = dict(body.declared)
        declared = dict(before)  # what the loop has declared by now, for after it
        try:
            for k, item in enumerate(items):
                values = self.unpack(item, stmt)
                if values is None:
                    self.poison_assigned(stmt.body, scope)
                    return
                for target, value in zip(stmt.targets, values, strict=True):
                    scope.env[target.name] = value
                # Each iteration may name its own layers: a name is declared once per
                # iteration, and gets the iteration in its path.
                body.declared = dict(before)
                scope.loop_path = f"{outer_path}.{k}"
                body.nested_in = "for"
                self.el.statements.run(stmt.body, body)
                declared.update({n: s for n, s in body.declared.items() if n not in declared})
        finally:
            scope.loop_path, body.nested_in = outer_path, outer_nesting
            body.declared = declared
            for target in stmt.targets:
                scope.env.pop(target.name, None)
            scope.env.update(shadowed)

    def new_names(self, targets: Sequence[ast.Ident], scope: Scope) -> None:
        seen: set[str] = set()
        for target in targets:
            if target.name in scope.env or target.name in scope.formals or \
                    target.name in seen:
                self.el.sink.error("duplicate-definition", f"`{target.name}` is already "
                                   "defined: a loop variable needs a name of its own",
                                   target.span)
            seen.add(target.name)

    def items(self, e: ast.Expr, scope: Scope) -> list[Any] | None:
        value = self.el.expressions.eval(e, scope)
        if isinstance(value, Poison):
            return None
        if isinstance(value, TupleValue):
            return list(value.items)
        if isinstance(value, Const) and isinstance(value.value, list):
            if len(value.value) > MAX_REPEAT:
                self.el.sink.error("argument-value", f"a loop runs at most {MAX_REPEAT:,} "
                                   f"times, this one {len(value.value):,}", e.span)
                return None
            return [Const(v, e.span) for v in value.value]
        self.el.sink.error("argument-type", f"`for` runs over a list of constants or of "
                           f"tensors, got {describe(value)}", e.span,
                           help="e.g. `for n in [64, 128]`, `for i in range(depth)`, "
                           "`for i, n in enumerate(stages)`")
        return None

    def unpack(self, item: Any, stmt: ast.ForStmt) -> list[Any] | None:
        n = len(stmt.targets)
        if n == 1:
            return [item]
        parts: list[Any] | None = None
        if isinstance(item, Const) and isinstance(item.value, (list, tuple)):
            parts = [Const(v, item.span) for v in item.value]
        elif isinstance(item, TupleValue):
            parts = list(item.items)
        if parts is None or len(parts) != n:
            got = f"{len(parts)} values" if parts is not None else describe(item)
            self.el.sink.error("argument-type", f"cannot unpack {got} into {n} names",
                               stmt.iterable.span)
            return None
        return parts

    # --- if ------------------------------------------------------------------------------

    def if_stmt(self, stmt: ast.IfStmt, body: Body) -> None:
        scope = body.scope
        condition = self.el.expressions.eval(stmt.condition, scope)
        if isinstance(condition, Poison):
            self.poison_assigned((*stmt.then, *stmt.otherwise), scope)
            return
        if not isinstance(condition, Const) or not isinstance(condition.value, bool):
            self.el.sink.error(
                "argument-type", f"an `if` condition is true or false at compile time, got "
                f"{describe(condition)}", stmt.condition.span,
                help="choose between tensors element by element with `where(cond, a, b)`"
                if isinstance(condition, Tensor) else None)
            self.poison_assigned((*stmt.then, *stmt.otherwise), scope)
            return
        outer = body.nested_in
        body.nested_in = "if"
        try:
            self.el.statements.run(stmt.then if condition.value else stmt.otherwise, body)
        finally:
            body.nested_in = outer

    def poison_assigned(self, statements: Sequence[ast.Stmt], scope: Scope) -> None:
        """After an error in a loop's list or a condition, the names its statements would
        define are poisoned, so their later uses report nothing more."""
        for ident in assigned_names(statements):
            scope.env.setdefault(ident, POISON)

    # --- functions of constants -------------------------------------------------------

    def call(self, e: ast.Call, scope: Scope) -> Any:
        name = e.func.id if isinstance(e.func, ast.Name) else ""
        if e.keywords:
            self.el.sink.error("unknown-argument", f"`{name}` takes no keyword arguments",
                               e.keywords[0].span)
            return POISON
        args = [self.el.expressions.eval(a, scope) for a in e.args]
        if any(isinstance(a, Poison) for a in args):
            return POISON
        for a, expr in zip(args, e.args, strict=True):
            if not isinstance(a, Const):
                self.el.sink.error("argument-type", f"`{name}` works on constants at compile "
                                   f"time, got {describe(a)}", expr.span)
                return POISON
        values = [a.value for a in args]
        spans = [a.span for a in e.args]
        if name in FOLDABLE_OPS:
            return self.fold_op(name, values, spans, e.span)
        if name in ("ceil", "floor", "round"):
            return self.rounding(name, values, spans, e.span)
        check = {"range": self.range_, "enumerate": self.enumerate_, "zip": self.zip_,
                 "len": self.len_, "int": self.int_}[name]
        return check(values, spans, e.span)

    def is_static(self, e: ast.Expr, scope: Scope) -> bool:
        """Whether `e` is made of constants only, so evaluating it adds no node."""
        if isinstance(e, (ast.Number, ast.String, ast.Bool)):
            return True
        if isinstance(e, ast.Name):
            if e.id in scope.env:
                return isinstance(scope.env[e.id], Const)
            return e.id in scope.formals or e.id in scope.symbols
        if isinstance(e, ast.UnaryOp):
            return self.is_static(e.operand, scope)
        if isinstance(e, ast.BinOp):
            return self.is_static(e.left, scope) and self.is_static(e.right, scope)
        if isinstance(e, ast.ListExpr):
            return all(self.is_static(i, scope) for i in e.items)
        if isinstance(e, ast.Subscript):
            return self.is_static(e.value, scope) and all(
                not isinstance(i, (ast.Slice, ast.EllipsisExpr)) and self.is_static(i, scope)
                for i in e.items)
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
            return self.is_compile_time(e, scope)
        return False

    def is_compile_time(self, e: ast.Call, scope: Scope) -> bool:
        """A call of a compile-time function, or of `max`/`min`/`abs` on constants only;
        a local name or a definition of the same name hides both."""
        name = e.func.id if isinstance(e.func, ast.Name) else ""
        if name in scope.env or name in scope.formals or name in scope.namespace.definitions \
                or name in scope.namespace.aliases:
            return False
        if name in COMPILE_TIME_FUNCTIONS:
            return True
        return name in FOLDABLE_OPS and bool(e.args) and not e.keywords and \
            all(self.is_static(a, scope) for a in e.args)

    def fold_op(self, name: str, values: list[Any], spans: list[Span], span: Span) -> Any:
        numbers = values[0] if len(values) == 1 and isinstance(values[0], list) and \
            name != "abs" else values
        if name == "abs" and len(values) != 1:
            return self.arity("abs", values, 1, 1, span) or POISON
        if not numbers or any(isinstance(v, bool) or not isinstance(v, (int, float))
                              for v in numbers):
            self.el.sink.error("argument-type", f"`{name}` of constants takes numbers, got "
                               f"{', '.join(map(repr, values))}", span)
            return POISON
        if name == "abs":
            return Const(abs(numbers[0]), span)
        return Const(max(numbers) if name == "max" else min(numbers), span)

    def rounding(self, name: str, values: list[Any], spans: list[Span], span: Span) -> Any:
        if not self.arity(name, values, 1, 1, span):
            return POISON
        v = values[0]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.el.sink.error("argument-type", f"`{name}` takes a number, got {source_text(v)}", spans[0])
            return POISON
        # `round` rounds half to even, as Python's; all three give ints.
        if name == "ceil":
            return Const(math.ceil(v), span)
        return Const(math.floor(v) if name == "floor" else round(v), span)

    def arity(self, name: str, values: list[Any], low: int, high: int, span: Span) -> bool:
        if low <= len(values) <= high:
            return True
        want = str(low) if low == high else f"{low} to {high}"
        self.el.sink.error("argument-type", f"`{name}` takes {want} argument"
                           f"{'s' * (high != 1)}, got {len(values)}", span)
        return False

    def range_(self, values: list[Any], spans: list[Span], span: Span) -> Any:
        if not self.arity("range", values, 1, 3, span):
            return POISON
        for v, s in zip(values, spans, strict=True):
            if not is_int(v):
                self.el.sink.error("argument-type", f"`range` takes ints, got {source_text(v)}", s)
                return POISON
        if len(values) == 3 and values[2] == 0:
            self.el.sink.error("argument-value", "the step of `range` cannot be 0", spans[2])
            return POISON
        r = range(*values)
        if len(r) > MAX_REPEAT:
            self.el.sink.error("argument-value", f"`range` makes at most {MAX_REPEAT:,} "
                               f"numbers, this one {len(r):,}", span)
            return POISON
        return Const(list(r), span)

    def enumerate_(self, values: list[Any], spans: list[Span], span: Span) -> Any:
        if not self.arity("enumerate", values, 1, 1, span) or \
                not self.is_list("enumerate", values[0], spans[0]):
            return POISON
        return Const([[i, v] for i, v in enumerate(values[0])], span)

    def zip_(self, values: list[Any], spans: list[Span], span: Span) -> Any:
        if not self.arity("zip", values, 1, 8, span):
            return POISON
        for v, s in zip(values, spans, strict=True):
            if not self.is_list("zip", v, s):
                return POISON
        lengths = {len(v) for v in values}
        if len(lengths) > 1:
            self.el.sink.error("argument-value", f"`zip` needs lists of one length, got "
                               f"lengths {', '.join(str(len(v)) for v in values)}", span,
                               notes=[Note(f"this one has {len(v)} items", s)
                                      for v, s in zip(values, spans, strict=True)])
            return POISON
        return Const([list(t) for t in zip(*values, strict=True)], span)

    def len_(self, values: list[Any], spans: list[Span], span: Span) -> Any:
        if not self.arity("len", values, 1, 1, span) or \
                not self.is_list("len", values[0], spans[0]):
            return POISON
        return Const(len(values[0]), span)

    def int_(self, values: list[Any], spans: list[Span], span: Span) -> Any:
        if not self.arity("int", values, 1, 1, span):
            return POISON
        v = values[0]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.el.sink.error("argument-type", f"`int` takes a number, got {source_text(v)}", spans[0])
            return POISON
        return Const(int(v), span)  # truncates toward zero, as Python's int()

    def is_list(self, name: str, v: Any, span: Span) -> bool:
        if isinstance(v, list):
            return True
        self.el.sink.error("argument-type", f"`{name}` takes a list, got {source_text(v)}", span)
        return False


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def assigned_names(statements: Sequence[ast.Stmt]) -> Iterator[str]:
    for stmt in statements:
        if isinstance(stmt, ast.Assign):
            yield from (t.name for t in stmt.targets)
        elif isinstance(stmt, ast.LayerStmt):
            yield stmt.name.name
        elif isinstance(stmt, ast.ParamStmt):
            yield from (t.name for t in stmt.names)
        elif isinstance(stmt, ast.OutputStmt) and stmt.name is not None:
            yield stmt.name.name
        elif isinstance(stmt, ast.ForStmt):
            yield from assigned_names(stmt.body)
        elif isinstance(stmt, ast.IfStmt):
            yield from assigned_names((*stmt.then, *stmt.otherwise))
