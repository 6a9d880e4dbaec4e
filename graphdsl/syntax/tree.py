"""The syntax tree: small immutable nodes, each keeping the span it came from."""

from __future__ import annotations

from dataclasses import dataclass

from graphdsl.diagnostics import Span

# --- expressions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    span: Span


@dataclass(frozen=True)
class Name(Expr):
    id: str


@dataclass(frozen=True)
class Number(Expr):
    value: int | float


@dataclass(frozen=True)
class String(Expr):
    value: str


@dataclass(frozen=True)
class Bool(Expr):
    value: bool


@dataclass(frozen=True)
class ListExpr(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class BinOp(Expr):
    """Arithmetic, matrix product, comparison and logical operators alike."""

    op: str  # + - * / // @ % ** == != < <= > >= and or
    left: Expr
    right: Expr


@dataclass(frozen=True)
class UnaryOp(Expr):
    op: str  # - + not
    operand: Expr


@dataclass(frozen=True)
class Keyword:
    name: str
    value: Expr
    span: Span  # the keyword's name


@dataclass(frozen=True)
class Call(Expr):
    func: Expr
    args: tuple[Expr, ...]
    keywords: tuple[Keyword, ...]


@dataclass(frozen=True)
class Attribute(Expr):
    value: Expr
    attr: str
    attr_span: Span


@dataclass(frozen=True)
class Slice(Expr):
    start: Expr | None
    stop: Expr | None
    step: Expr | None


@dataclass(frozen=True)
class EllipsisExpr(Expr):
    pass


@dataclass(frozen=True)
class Subscript(Expr):
    value: Expr
    items: tuple[Expr, ...]  # Expr, Slice or EllipsisExpr


@dataclass(frozen=True)
class Repeat(Expr):
    """`repeat N [shared] layer`: N copies of a layer, or one layer applied N times."""

    count: Expr
    shared: bool
    body: Expr
    index: Ident | None = None  # `repeat N as i BODY`: the body reads its copy's number


# --- declarations and statements ------------------------------------------------------


@dataclass(frozen=True)
class Ident:
    name: str
    span: Span


@dataclass(frozen=True)
class TensorTypeExpr:
    dtype: Ident
    dims: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Stmt:
    span: Span


@dataclass(frozen=True)
class InputStmt(Stmt):
    name: Ident
    type: TensorTypeExpr


@dataclass(frozen=True)
class TargetStmt(Stmt):
    name: Ident
    type: TensorTypeExpr


@dataclass(frozen=True)
class LayerStmt(Stmt):
    name: Ident
    value: Expr


@dataclass(frozen=True)
class ParamStmt(Stmt):
    names: tuple[Ident, ...]
    type: TensorTypeExpr
    init: Expr | None
    constraint: Expr | None
    frozen: bool


@dataclass(frozen=True)
class Assign(Stmt):
    targets: tuple[Ident, ...]
    value: Expr


@dataclass(frozen=True)
class OutputStmt(Stmt):
    name: Ident | None  # None: an anonymous block output
    value: Expr
    inference: bool


@dataclass(frozen=True)
class LossStmt(Stmt):
    name: Ident | None
    value: Expr


@dataclass(frozen=True)
class MetricStmt(Stmt):
    name: Ident | None
    value: Expr


@dataclass(frozen=True)
class ForStmt(Stmt):
    """`for i, n in enumerate(stages) { ... }`: the body once per item, at elaboration."""

    targets: tuple[Ident, ...]
    iterable: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class IfStmt(Stmt):
    """`if cond { ... } else { ... }` on a constant condition, at elaboration."""

    condition: Expr
    then: tuple[Stmt, ...]
    otherwise: tuple[Stmt, ...]  # empty without `else`; an `else if` is one IfStmt


@dataclass(frozen=True)
class Formal:
    name: Ident
    type: Ident
    default: Expr | None
    span: Span


@dataclass(frozen=True)
class Definition:
    """A `model` or a `block`: the same body language, a model also trains."""

    kind: str  # "model" | "block"
    name: Ident
    formals: tuple[Formal, ...]
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Pattern:
    text: str
    span: Span


@dataclass(frozen=True)
class Setting(Stmt):
    name: Ident
    value: Expr


@dataclass(frozen=True)
class OptimizerStmt(Stmt):
    pattern: Pattern
    value: Expr


@dataclass(frozen=True)
class FreezeStmt(Stmt):
    pattern: Pattern


@dataclass(frozen=True)
class RestoreStmt(Stmt):
    pattern: Pattern
    path: String


@dataclass(frozen=True)
class TrainDef:
    model: Ident
    body: tuple[Stmt, ...]
    span: Span


@dataclass(frozen=True)
class Import:
    path: String
    alias: Ident | None
    names: tuple[Ident, ...] | None  # None: import everything
    span: Span


@dataclass(frozen=True)
class Module:
    file: str
    imports: tuple[Import, ...]
    definitions: tuple[Definition, ...]
    trains: tuple[TrainDef, ...]
