"""Statements of a block or model body: inputs and targets, layers, params, assignments, outputs."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphdsl.diagnostics import (
    Note,
    Span,
    source_text,
    suggestion_help,
)
from graphdsl.elaborate.values import (
    LAYER_LIKE,
    POISON,
    Definition,
    Instance,
    LayerClass,
    LayerValue,
    Poison,
    RepeatValue,
    Scope,
    Tensor,
    TupleValue,
    article,
    describe,
    flatten,
    has_error_dim,
    value_nodes,
)
from graphdsl.ir.types import (
    DTYPES,
    Dim,
    Sym,
    TensorType,
    dim_add,
    dim_floordiv,
    dim_mul,
    dim_sub,
)
from graphdsl.ops.specs import Spec, default_spec
from graphdsl.syntax import tree as ast

if TYPE_CHECKING:  # the elaborator owns this room; the room only calls back into it
    from graphdsl.elaborate.core import Elaborator


@dataclass
class Body:
    """One run of a definition body: what its statements share."""

    node: ast.Definition
    scope: Scope
    top_level: bool
    bound_inputs: dict[str, tuple[Tensor, Span]] | None
    outputs: list[tuple[str | None, Any]] = field(default_factory=list)
    declared: dict[str, Span] = field(default_factory=dict)
    named_results: dict[str, Span] = field(default_factory=dict)
    nested_in: str | None = None  # "for" or "if" while running a nested statement list

    def declare(self, el: Elaborator, ident: ast.Ident, what: str) -> bool:
        """Record a declaration; False (and an error) when the name is declared already."""
        if ident.name in self.declared:
            # the first definition is superseded, not unused: one error, no echoes
            el.g.excused.update(value_nodes(self.scope.env.get(ident.name)))
            el.sink.error("duplicate-definition", f"{what} `{ident.name}` is already defined",
                          ident.span, notes=[Note("first defined here", self.declared[ident.name])])
            self.declared[ident.name] = ident.span
            return False
        self.declared[ident.name] = ident.span
        return True


class StatementRules:
    def __init__(self, el: Elaborator) -> None:
        self.el = el
        # statement kind -> its rule; the control room registers `for` and `if`
        self.rules: dict[type, Callable[[Any, Body], None]] = {
            ast.InputStmt: self.declaration, ast.TargetStmt: self.declaration,
            ast.LayerStmt: self.layer, ast.ParamStmt: self.param,
            ast.Assign: lambda stmt, body: self.assign(stmt, body.scope),
            ast.OutputStmt: self.output, ast.LossStmt: self.loss_or_metric,
            ast.MetricStmt: self.loss_or_metric,
        }

    def register(self, kind: type, rule: Callable[[Any, Body], None]) -> None:
        self.rules[kind] = rule

    def watched(self, body: Sequence[ast.Stmt], scope: Scope) -> Iterator[ast.Stmt]:
        """The statements of a body. After one that reported an error, or that read a value
        whose error was reported earlier, what it made and read is excused from the
        unused-input, -target and -parameter checks: one mistake, one diagnostic."""
        for stmt in body:
            errors, poisoned = self.el.sink.error_count, self.el.poisoned
            nodes_before = len(self.el.g.graph)
            # `h = Bad(h)` rebinds `h`: what it read is the value from before the statement
            rebound = [scope.env.get(t.name) for t in stmt.targets] \
                if isinstance(stmt, ast.Assign) else []
            yield stmt
            if self.el.sink.error_count > errors or self.el.poisoned > poisoned:
                self.el.g.excused.update(
                    itertools.islice(self.el.g.graph.nodes, nodes_before, None))
                for old in rebound:
                    self.el.g.excused.update(value_nodes(old))
                for n in referenced_names(stmt):
                    self.el.g.excused.update(value_nodes(scope.env.get(n)))
                if isinstance(stmt, (ast.LossStmt, ast.MetricStmt)):
                    self.el.g.excused.update(self.el.g.targets)  # any could be the one meant

    def run_body(self, node: ast.Definition, scope: Scope, top_level: bool,
                 bound_inputs: dict[str, tuple[Tensor, Span]] | None
                 ) -> list[tuple[str | None, Any]]:
        """Evaluate a definition body; return its outputs (name, value) in order."""
        body = Body(node, scope, top_level, bound_inputs)
        self.run(node.body, body)
        if not body.outputs and not top_level:
            self.el.sink.error("invalid-statement", f"`{node.name.name}` has no `output`, so it "
                            "cannot be used as a layer", node.name.span)
        return body.outputs

    def run(self, statements: Sequence[ast.Stmt], body: Body) -> None:
        for stmt in self.watched(statements, body.scope):
            self.rules[type(stmt)](stmt, body)

    def declaration(self, stmt: ast.InputStmt | ast.TargetStmt, body: Body) -> None:
        kind = "input" if isinstance(stmt, ast.InputStmt) else "target"
        if body.nested_in is not None:
            self.el.sink.error("invalid-statement", f"{article(kind)} `{kind}` is declared "
                               f"at the top of the body, not inside `{body.nested_in}`",
                               stmt.span)
            return
        body.declare(self.el, stmt.name, kind)
        if isinstance(stmt, ast.TargetStmt) and body.node.kind == "block":
            self.el.sink.error("invalid-statement", "a block has no targets: declare "
                            "targets in the model that trains", stmt.span)
            return
        if isinstance(stmt, ast.TargetStmt) and not body.top_level:
            return  # a model used as a layer contributes its forward pass only
        self.input_stmt(stmt, body.scope, body.top_level, body.bound_inputs)

    def layer(self, stmt: ast.LayerStmt, body: Body) -> None:
        first = body.declare(self.el, stmt.name, "layer")
        self.layer_stmt(stmt, body.scope)
        if not first:  # which of the two later uses mean is unknown: neither is checked
            body.scope.env[stmt.name.name] = POISON

    def param(self, stmt: ast.ParamStmt, body: Body) -> None:
        for ident in stmt.names:
            body.declare(self.el, ident, "parameter")
        self.param_stmt(stmt, body.scope)

    def output(self, stmt: ast.OutputStmt, body: Body) -> None:
        scope = body.scope
        if stmt.name is not None:
            if stmt.name.name in body.named_results:
                self.el.g.excused.update(value_nodes(scope.env.get(stmt.name.name)))
                self.el.sink.error("duplicate-definition", f"output `{stmt.name.name}` is "
                                "already defined", stmt.name.span,
                                notes=[Note("first defined here",
                                            body.named_results[stmt.name.name])])
            body.named_results[stmt.name.name] = stmt.name.span
        value = self.el.expressions.eval(stmt.value, scope)
        if isinstance(value, (Tensor, TupleValue, Poison)) and stmt.name is not None:
            scope.env[stmt.name.name] = value
        if not isinstance(value, (Tensor, TupleValue, Poison)):
            self.el.sink.error("argument-type", f"an output must be a tensor, got "
                            f"{describe(value)}", stmt.value.span)
            value = POISON
        body.outputs.append((stmt.name.name if stmt.name else None, value))
        if body.top_level:
            self.output_stmt(stmt, value, scope)

    def loss_or_metric(self, stmt: ast.LossStmt | ast.MetricStmt, body: Body) -> None:
        if body.node.kind == "block":
            self.el.sink.error("invalid-statement", "losses and metrics belong in a model, "
                            "not a block", stmt.span)
        elif body.top_level:
            if isinstance(stmt, ast.LossStmt):
                self.el.losses.loss_stmt(stmt, body.scope)
            else:
                self.el.losses.metric_stmt(stmt, body.scope)

    def input_stmt(self, stmt: ast.InputStmt | ast.TargetStmt, scope: Scope, top_level: bool,
                   bound: dict[str, tuple[Tensor, Span]] | None) -> None:
        name = stmt.name.name
        if top_level:
            declared = self.tensor_type(stmt.type, scope)
            for d, size in zip(stmt.type.dims, declared.shape or (), strict=False):
                if isinstance(d, ast.Name) and isinstance(size, Sym) and \
                        d.id not in scope.symbols:
                    scope.symbols[d.id] = size  # read as a number, a clear error
                    scope.symbol_spans[d.id] = d.span
            kind = "input" if isinstance(stmt, ast.InputStmt) else "target"
            node = self.el.add_node(f"{kind}:{name}:", kind=kind, name=name, type=declared,
                                 span=stmt.name.span)
            (self.el.g.inputs if kind == "input" else self.el.g.targets).append(node)
            scope.env[name] = Tensor(node, 0, declared, stmt.name.span)
            return
        assert bound is not None
        given = bound.get(name)
        if given is None:
            scope.env[name] = POISON
            return
        actual, call_span = given
        problem = self.bind_block_input(stmt.type, scope, actual.type)
        if problem is not None:
            code, expected = problem
            self.el.sink.error(code, f"input `{name}` of {scope.definition_kind} "
                            f"`{scope.definition_name}` expects {expected}, got {actual.type}",
                            call_span, notes=[Note("declared here", stmt.type.span)])
            scope.env[name] = POISON
            return
        scope.env[name] = actual

    def bind_block_input(self, t: ast.TensorTypeExpr, scope: Scope,
                         actual: TensorType) -> tuple[str, str] | None:
        """Unify a block's declared input type with the caller's tensor type.

        A bare name that is not a parameter of the block is a size variable: its first
        occurrence takes the caller's size, later ones must agree with it.
        """
        if t.dtype.name not in DTYPES:
            self.tensor_type(t, scope)  # reports the unknown dtype
            return None
        dtype = t.dtype.name
        if actual.shape is None:
            return None
        rest = [i for i, d in enumerate(t.dims) if isinstance(d, ast.EllipsisExpr)]
        for extra in rest[1:]:
            self.el.sink.error("argument-value", "a type has at most one `...`",
                               t.dims[extra].span)
            return None
        # `...` stands for any run of axes: the sizes around it are read from both ends
        before = t.dims[:rest[0]] if rest else t.dims
        after = t.dims[rest[0] + 1:] if rest else ()
        rank = len(actual.shape)
        fits = rank >= len(before) + len(after)  # else nothing is bound: the rank is wrong
        positions = [*range(len(before)), *range(rank - len(after), rank)]
        dims: list[Dim] = []
        for d, i in zip((*before, *after), positions, strict=True):
            if isinstance(d, ast.Name) and d.id not in scope.formals and \
                    d.id not in scope.symbols and 0 <= i < rank and fits:
                scope.symbols[d.id] = actual.shape[i]
                scope.symbol_spans[d.id] = d.span
            dims.append(self.dim_expr(d, scope))
        head, tail = dims[:len(before)], dims[len(before):]
        if rest:
            shown = ", ".join([*map(str, head), "...", *map(str, tail)])
            expected = f"{dtype}[{shown}]"
            if not fits:
                return "shape-mismatch", expected
            dims = [*head, *actual.shape[len(head):rank - len(tail)], *tail]
        else:
            expected = str(TensorType(dtype, tuple(dims)))
        if actual.dtype != dtype:
            return "dtype-mismatch", expected
        if tuple(actual.shape) != tuple(dims):
            return "shape-mismatch", expected
        return None

    def tensor_type(self, t: ast.TensorTypeExpr, scope: Scope) -> TensorType:
        dtype = t.dtype.name
        if dtype not in DTYPES:
            self.el.sink.error("unknown-name", f"unknown dtype `{dtype}`", t.dtype.span,
                            help=suggestion_help(dtype, DTYPES) or
                            "dtypes: " + ", ".join(DTYPES))
            dtype = "float32"
        for d in t.dims:
            if isinstance(d, ast.EllipsisExpr):
                self.el.sink.error("argument-value", "`...` (any run of axes) belongs in a "
                                   "block's input; a model's inputs, targets and parameters "
                                   "have definite shapes", d.span,
                                   help="name each axis: `float32[B, T, d]`")
        return TensorType(dtype, tuple(Sym.named("?") if isinstance(d, ast.EllipsisExpr)
                                       else self.dim_expr(d, scope) for d in t.dims))

    def dim_expr(self, e: ast.Expr, scope: Scope) -> Dim:
        """A dimension of a declared type; one that is not a positive size is reported and
        stands as unknown (`?`), which the shape checks do not report again."""
        dim = self.dim_value(e, scope)
        if isinstance(dim, int) and dim <= 0:
            self.el.sink.error("argument-value", f"a dimension must be a positive size, got "
                               f"{dim}", e.span)
            return Sym.named("?")
        return dim

    def dim_value(self, e: ast.Expr, scope: Scope) -> Dim:
        if isinstance(e, ast.Number) and isinstance(e.value, int):
            return e.value
        if isinstance(e, ast.UnaryOp) and e.op == "-" and isinstance(e.operand, ast.Number) \
                and isinstance(e.operand.value, int):
            return -e.operand.value
        if isinstance(e, ast.Name):
            if e.id == "None":
                self.el.sink.error("unknown-name", "`None` is not a dimension: a dimension is "
                                   "an integer or a name", e.span,
                                   help="name the dimension, e.g. `B` for the batch; the same "
                                        "name stands for the same size everywhere")
                return Sym.named("?")
            if e.id in scope.symbols:
                return scope.symbols[e.id]
            value = scope.formals.get(e.id)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if value is not None:
                self.el.sink.error("argument-type", f"`{e.id}` is not an int dimension: it is "
                                f"{source_text(value)}", e.span,
                                help=f"declare the parameter as `{e.id}: int`"
                                if isinstance(value, float) and value.is_integer() else None)
                return Sym.named("?")
            return Sym.named(e.id)
        if isinstance(e, ast.BinOp) and e.op in ("+", "-", "*", "//", "/"):
            a, b = self.dim_value(e.left, scope), self.dim_value(e.right, scope)
            if b == 0 and e.op in ("//", "/"):
                self.el.sink.error("argument-value", "a dimension divided by zero", e.span)
                return Sym.named("?")
            if e.op == "+":
                return dim_add(a, b)
            if e.op == "-":
                return dim_sub(a, b)
            if e.op == "*":
                return dim_mul(a, b)
            return dim_floordiv(a, b)
        self.el.sink.error("argument-type", "a dimension is an integer, a name, or arithmetic "
                        "of them", e.span)
        return Sym.named("?")

    def layer_stmt(self, stmt: ast.LayerStmt, scope: Scope) -> None:
        value = self.el.expressions.eval(stmt.value, scope)
        if isinstance(value, (LayerClass, Definition)):
            self.el.sink.error("argument-type", f"`layer {stmt.name.name} = ...` needs a layer; "
                            "call it to make one, e.g. `Dense(10)`", stmt.value.span)
            value = POISON
        elif not isinstance(value, (*LAYER_LIKE, Poison)):
            self.el.sink.error("argument-type", f"`layer` names a layer, got {describe(value)}",
                            stmt.value.span, help=f"write `{stmt.name.name} = ...` for a tensor")
            value = POISON
        if isinstance(value, LAYER_LIKE):
            key = scope.local(stmt.name.name)
            cached = scope.cache.get(key) if scope.cache is not None else None
            if cached is not None and type(cached) is type(value):
                value = cached
            else:
                if value.path is None:
                    value.path = scope.claim(stmt.name.name, stmt.name.span)
                if scope.cache is not None:
                    scope.cache[key] = value
        scope.env[stmt.name.name] = value

    def param_stmt(self, stmt: ast.ParamStmt, scope: Scope) -> None:
        declared = self.tensor_type(stmt.type, scope)
        shape = declared.shape or ()
        if any(not isinstance(d, int) for d in shape):
            if not has_error_dim(shape):  # a `?` stands for a dimension reported already
                self.el.sink.error("unknown-dimension", "a parameter's shape must be known: "
                                   f"got {declared}", stmt.type.span,
                                   help="use numbers or model parameters for its dimensions")
            for ident in stmt.names:
                scope.env[ident.name] = POISON
            return
        init = self.el.opcalls.eval_spec(stmt.init, "initializer", scope) if stmt.init else \
            default_spec("initializer", "glorot_uniform" if len(shape) >= 2 else "zeros")
        constraint = self.el.opcalls.eval_spec(stmt.constraint, "constraint", scope) \
            if stmt.constraint else None
        if isinstance(constraint, Spec) and stmt.constraint is not None:
            self.el.layers.check_constraint_axis(constraint, shape, stmt.constraint.span)
        if isinstance(init, Spec):
            self.el.layers.check_init_shape(init, shape, ", ".join(i.name for i in stmt.names),
                                  stmt.init.span if stmt.init else stmt.span)
        for ident in stmt.names:
            cached = scope.cache.get(scope.local(ident.name)) if scope.cache is not None \
                else None
            if isinstance(cached, Tensor):
                scope.env[ident.name] = cached
                continue
            path = scope.claim(ident.name, ident.span)
            node = self.el.add_node(
                "param:", kind="param", name=path, type=TensorType(declared.dtype, shape),
                role="weight", trainable=not stmt.frozen,
                init=init if isinstance(init, Spec) else default_spec("initializer", "zeros"),
                constraint=constraint if isinstance(constraint, Spec) else None,
                kernel_mask=None, owner=None, span=ident.span)
            self.el.g.params.append(node)
            tensor = Tensor(node, 0, TensorType(declared.dtype, shape), ident.span)
            scope.env[ident.name] = tensor
            if scope.cache is not None:
                scope.cache[scope.local(ident.name)] = tensor

    def assign(self, stmt: ast.Assign, scope: Scope) -> None:
        value = self.el.expressions.eval(stmt.value, scope)
        rebound = [t for t in stmt.targets if isinstance(scope.env.get(t.name), LAYER_LIKE)]
        if isinstance(value, (LayerValue, Instance, RepeatValue)):
            if rebound:  # `layer fc = ...` then `fc = Dense(8)`: the name is taken
                self.el.sink.error(
                    "duplicate-definition", f"`{rebound[0].name}` already names a layer",
                    rebound[0].span, help="a layer is named once, with `layer`; give the new "
                    "one its own name")
            else:
                self.el.sink.error("argument-type", "a layer is named with `layer`, not `=`",
                                   stmt.span, help=f"write `layer {stmt.targets[0].name} = ...`")
            value = POISON
            rebound = []
        for t in rebound:
            scope.rebound_layers.add(t.name)
            self.el.sink.error(
                "duplicate-definition", f"`{t.name}` names a layer and cannot be rebound to "
                "a tensor", t.span, help=f"give the tensor its own name, e.g. "
                f"`{t.name}_out = ...`")  # and bind it anyway: later uses mean the tensor
        if len(stmt.targets) == 1:
            scope.env[stmt.targets[0].name] = value
            return
        if isinstance(value, Poison):
            for t in stmt.targets:
                scope.env[t.name] = POISON
            return
        if not isinstance(value, TupleValue) or len(value.items) != len(stmt.targets):
            got = f"{len(value.items)} values" if isinstance(value, TupleValue) else \
                describe(value)
            self.el.sink.error("argument-type", f"cannot unpack {got} into "
                            f"{len(stmt.targets)} names", stmt.value.span)
            for t in stmt.targets:
                scope.env[t.name] = POISON
            return
        for t, item in zip(stmt.targets, value.items, strict=True):
            scope.env[t.name] = item

    def output_stmt(self, stmt: ast.OutputStmt, value: Any, scope: Scope) -> None:
        base = stmt.name.name if stmt.name else "output"
        items: list[tuple[str, Any]]
        if isinstance(value, TupleValue):
            items = [(f"{base}_{i}", v) for i, v in enumerate(flatten(value))]
        else:
            items = [(base, value)]
        for name, v in items:
            if stmt.name is None:
                existing = {self.el.g.node(o)["name"] for o in self.el.g.outputs}
                n = 1
                while name in existing:
                    name, n = f"{base}_{n}", n + 1
            if not isinstance(v, Tensor):
                continue
            node = self.el.add_node(f"output:{name}:", kind="output", name=name,
                                 inference=stmt.inference, type=v.type,
                                 span=stmt.name.span if stmt.name else stmt.value.span)
            self.el.connect(v, node, "x")
            self.el.g.outputs.append(node)


def referenced_names(stmt: ast.Stmt) -> set[str]:
    names: set[str] = set()
    stack: list[Any] = [stmt]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Name):
            names.add(item.id)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            stack.extend(getattr(item, f.name) for f in dataclasses.fields(item)
                         if f.name != "span")
    return names
