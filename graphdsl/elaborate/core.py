"""Elaboration: syntax tree -> graph IR.

Resolves names and scopes, evaluates constants, expands blocks, `repeat` and models used
as layers, creates parameter nodes (recording ties, shared layers and constraints), and
runs each op's shape rule as its node is created, so a shape error points at the exact
call. Errors are reported to the sink and evaluation continues with a poison value,
so one run reports every independent mistake without cascades.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphdsl.diagnostics import (
    DiagnosticSink,
    Note,
    Span,
    choice_help,
    source_text,
    suggestion_help,
)
from graphdsl.ir.graph import LayerRecord, ModelGraph
from graphdsl.ir.types import (
    DTYPES,
    FLOAT_DTYPES,
    Dim,
    Shape,
    ShapeError,
    Sym,
    TensorType,
    dim_add,
    dim_floordiv,
    dim_mul,
    dim_sub,
    shape_str,
)
from graphdsl.ops import REGISTRY, load_all
from graphdsl.ops.elementwise import OPERATORS
from graphdsl.ops.registry import (
    LAYER_ARGS,
    REQUIRED,
    Arg,
    In,
    OpCall,
    OpDef,
    ParamSpec,
    param_args,
    snake_case,
)
from graphdsl.ops.registry import _Unknown as UnknownShape
from graphdsl.ops.specs import SPEC_TABLES, Spec, default_spec
from graphdsl.syntax import tree as ast

# Keras spellings of spec arguments -> graphdsl's.
KERAS_ALIASES = {"learning_rate": "lr", "beta1": "beta_1", "beta2": "beta_2", "eps": "epsilon",
                 "std": "stddev", "mean_": "mean", "decay": "weight_decay"}

MAX_EXPRESSION_DEPTH = 400
# Activations whose outputs are probabilities, not logits.
PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")
MAX_REPEAT = 10_000


# --- values ------------------------------------------------------------------------------


class Poison:
    """The value of an expression whose error was already reported."""

    def __repr__(self) -> str:
        return "<poison>"


POISON = Poison()


@dataclass
class Tensor:
    node: str
    index: int
    type: TensorType
    span: Span


@dataclass
class Const:
    value: Any
    span: Span


@dataclass
class TupleValue:
    items: list[Any]
    span: Span


@dataclass
class LayerValue:
    """A layer: an op with checked arguments; parameters are made at its first call."""

    op: OpDef
    args: dict[str, Any]
    overrides: dict[str, Tensor]  # parameter name -> tensor (a tie or a structured weight)
    masks: dict[str, Any]  # parameter name -> fixed 0/1 pattern
    specs: dict[str, dict[str, Spec]]  # parameter name -> {initializer|constraint|...: Spec}
    span: Span
    trainable: bool = True
    path: str | None = None
    params: dict[str, Tensor] | None = None
    param_shapes: dict[str, Shape] = field(default_factory=dict)
    calls: int = 0
    arg_spans: dict[str, Span] = field(default_factory=dict)  # argument -> its value's span


@dataclass
class Definition:
    """A block or model definition, callable to make an instance."""

    node: ast.Definition
    namespace: Namespace


@dataclass
class Instance:
    """A block or model used as a layer; its inner layers are made once and reused."""

    definition: Definition
    formals: dict[str, Any]
    span: Span
    path: str | None = None
    cache: dict[str, Any] = field(default_factory=dict)  # inner path -> LayerValue/Instance
    calls: int = 0


@dataclass
class RepeatValue:
    count: int
    shared: bool
    make: Callable[[], Any]  # makes one fresh layer-like value
    span: Span
    path: str | None = None
    members: list[Any] = field(default_factory=list)


@dataclass
class OpFunction:
    op: OpDef


@dataclass
class LayerClass:
    op: OpDef


@dataclass
class ModuleAlias:
    namespace: Namespace


LAYER_LIKE = (LayerValue, Instance, RepeatValue)


# --- namespaces and scopes ---------------------------------------------------------------


@dataclass
class Namespace:
    """The definitions visible in one file: its own and its imports."""

    file: str
    definitions: dict[str, Definition] = field(default_factory=dict)
    aliases: dict[str, Namespace] = field(default_factory=dict)
    failed: bool = False  # an import that could not be read: its names are already reported
    failed_imports: bool = False


class Scope:
    """The environment of one definition body being evaluated."""

    def __init__(self, namespace: Namespace, prefix: str, formals: dict[str, Any],
                 cache: dict[str, Any] | None, model_name: str):
        self.namespace = namespace
        self.prefix = prefix
        self.formals = formals
        self.env: dict[str, Any] = {}
        self.cache = cache  # None at a model's top level: nothing is reused there
        self.counters: dict[str, itertools.count[int]] = {}
        self.taken: set[str] = set()
        self.model_name = model_name
        self.symbols: dict[str, Dim] = {}
        self.definition_kind = "model"
        self.definition_name = model_name
        self.caller: Scope | None = None  # the scope of the call that expands this body

    def auto_path(self, base: str) -> str:
        counter = self.counters.setdefault(base, itertools.count())
        while True:
            n = next(counter)
            name = base if n == 0 else f"{base}_{n}"
            if name not in self.taken:
                self.taken.add(name)
                return self.prefix + name

    def claim(self, name: str) -> str:
        self.taken.add(name)
        return self.prefix + name


# --- the elaborator ----------------------------------------------------------------------


class Elaborator:
    def __init__(self, sink: DiagnosticSink, namespace: Namespace, all_models: dict[str, Any],
                 base_dir: str):
        load_all()
        self.sink = sink
        self.namespace = namespace
        self.all_models = all_models  # model name -> ast.Definition (for disconnected errors)
        self.base_dir = base_dir
        self.g: ModelGraph
        self.node_counter = itertools.count()
        self.regularizers: list[tuple[str, Spec, Span]] = []
        self.depth = 0
        self.missing_files_ok = False
        self.expanding: list[str] = []  # definitions being expanded, outermost first

    # ---- nodes
    def add_node(self, prefix: str, **attrs: Any) -> str:
        node_id = f"{prefix}{next(self.node_counter)}"
        attrs.setdefault("span", None)
        self.g.graph.add_node(node_id, **attrs)
        return node_id

    def connect(self, src: Tensor, dst: str, port: str, position: int = 0) -> None:
        self.g.graph.add_edge(src.node, dst, port=port, position=position, index=src.index)

    # ---- entry point
    def model(self, definition: Definition) -> ModelGraph:
        node = definition.node
        # The model's name stands for it in diagnostics about the whole model.
        self.g = ModelGraph(node.name.name, node.span.file, node.name.span)
        formals = self.bind_formals(node, [], {}, node.span, Scope(definition.namespace, "", {},
                                                                   None, node.name.name))
        self.g.formals = dict(formals)
        scope = Scope(definition.namespace, "", formals, None, node.name.name)
        self.expanding.append(node.name.name)
        self.run_body(node, scope, top_level=True, bound_inputs=None)
        self.expanding.pop()
        for path, spec, span in self.regularizers:
            self.add_regularizer(path, spec, span)
        return self.g

    def bind_formals(self, node: ast.Definition, args: Sequence[ast.Expr],
                     keywords: dict[str, ast.Keyword], span: Span, scope: Scope) -> dict[str, Any]:
        values: dict[str, Any] = {}
        formals = node.formals
        seen: set[str] = set()
        for f in formals:
            if f.name.name in seen:
                self.sink.error("duplicate-definition", f"parameter `{f.name.name}` of "
                                f"`{node.name.name}` is declared twice", f.name.span)
            seen.add(f.name.name)
        if len(args) > len(formals):
            self.sink.error("too-many-arguments", f"`{node.name.name}` takes {len(formals)} "
                            f"parameters, got {len(args)}", args[len(formals)].span)
        given: dict[str, tuple[Any, Span]] = {}
        for f, a in zip(formals, args, strict=False):
            given[f.name.name] = (self.eval(a, scope), a.span)
        names = [f.name.name for f in formals]
        for name, kw in keywords.items():
            if name not in names:
                self.sink.error("unknown-argument", f"`{node.name.name}` has no parameter "
                                f"`{name}`", kw.span, help=suggestion_help(name, names))
                continue
            if name in given:
                self.sink.error("duplicate-definition", f"parameter `{name}` given twice",
                                kw.span)
            given[name] = (self.eval(kw.value, scope), kw.value.span)
        for f in formals:
            if f.name.name in given:
                value, vspan = given[f.name.name]
            elif f.default is not None:
                value, vspan = self.eval(f.default, Scope(scope.namespace, "", values, None,
                                                          scope.model_name)), f.default.span
            else:
                self.sink.error("missing-argument", f"`{node.name.name}` needs a value for "
                                f"parameter `{f.name.name}`", span,
                                notes=[Note("declared here", f.span)])
                values[f.name.name] = POISON
                continue
            values[f.name.name] = self.check_formal(f, value, vspan)
        return values

    def check_formal(self, f: ast.Formal, value: Any, span: Span) -> Any:
        if isinstance(value, Poison):
            return POISON
        kind = f.type.name
        if kind not in ("int", "float", "bool", "str", "ints", "floats"):
            self.sink.error("unknown-name", f"unknown parameter type `{kind}`", f.type.span,
                            help="use int, float, bool, str, ints or floats")
            return POISON
        if not isinstance(value, Const):
            self.sink.error("argument-type", f"parameter `{f.name.name}` is {article(kind)} "
                            f"{kind}, got {describe(value)}", span)
            return POISON
        v = value.value
        ok = {
            "int": isinstance(v, int) and not isinstance(v, bool),
            "float": isinstance(v, (int, float)) and not isinstance(v, bool),
            "bool": isinstance(v, bool),
            "str": isinstance(v, str),
            "ints": isinstance(v, list) and all(isinstance(x, int) for x in v),
            "floats": isinstance(v, list) and all(isinstance(x, (int, float)) for x in v),
        }[kind]
        if not ok:
            self.sink.error("argument-type", f"parameter `{f.name.name}` is {article(kind)} "
                            f"{kind}, got {describe(value)}", span)
            return POISON
        return float(v) if kind == "float" else v

    # ---- bodies
    def run_body(self, node: ast.Definition, scope: Scope, top_level: bool,
                 bound_inputs: dict[str, tuple[Tensor, Span]] | None
                 ) -> list[tuple[str | None, Any]]:
        """Evaluate a definition body; return its outputs (name, value) in order."""
        outputs: list[tuple[str | None, Any]] = []
        declared: dict[str, Span] = {}
        named_results: dict[str, Span] = {}

        def declare(ident: ast.Ident, what: str) -> None:
            if ident.name in declared:
                self.sink.error("duplicate-definition", f"{what} `{ident.name}` is already "
                                f"defined", ident.span,
                                notes=[Note("first defined here", declared[ident.name])])
            declared[ident.name] = ident.span

        for stmt in node.body:
            if isinstance(stmt, (ast.InputStmt, ast.TargetStmt)):
                declare(stmt.name, "input" if isinstance(stmt, ast.InputStmt) else "target")
                if isinstance(stmt, ast.TargetStmt) and node.kind == "block":
                    self.sink.error("invalid-statement", "a block has no targets: declare "
                                    "targets in the model that trains", stmt.span)
                    continue
                if isinstance(stmt, ast.TargetStmt) and not top_level:
                    continue  # a model used as a layer contributes its forward pass only
                self.input_stmt(stmt, scope, top_level, bound_inputs)
            elif isinstance(stmt, ast.LayerStmt):
                declare(stmt.name, "layer")
                self.layer_stmt(stmt, scope)
            elif isinstance(stmt, ast.ParamStmt):
                for ident in stmt.names:
                    declare(ident, "parameter")
                self.param_stmt(stmt, scope)
            elif isinstance(stmt, ast.Assign):
                self.assign(stmt, scope)
            elif isinstance(stmt, ast.OutputStmt):
                if stmt.name is not None:
                    if stmt.name.name in named_results:
                        self.sink.error("duplicate-definition", f"output `{stmt.name.name}` is "
                                        "already defined", stmt.name.span,
                                        notes=[Note("first defined here",
                                                    named_results[stmt.name.name])])
                    named_results[stmt.name.name] = stmt.name.span
                value = self.eval(stmt.value, scope)
                if isinstance(value, (Tensor, TupleValue, Poison)) and stmt.name is not None:
                    scope.env[stmt.name.name] = value
                if not isinstance(value, (Tensor, TupleValue, Poison)):
                    self.sink.error("argument-type", f"an output must be a tensor, got "
                                    f"{describe(value)}", stmt.value.span)
                    value = POISON
                outputs.append((stmt.name.name if stmt.name else None, value))
                if top_level:
                    self.output_stmt(stmt, value, scope)
            elif isinstance(stmt, (ast.LossStmt, ast.MetricStmt)):
                if node.kind == "block":
                    self.sink.error("invalid-statement", "losses and metrics belong in a model, "
                                    "not a block", stmt.span)
                elif top_level:
                    if isinstance(stmt, ast.LossStmt):
                        self.loss_stmt(stmt, scope)
                    else:
                        self.metric_stmt(stmt, scope)
        if not outputs and not top_level:
            self.sink.error("invalid-statement", f"`{node.name.name}` has no `output`, so it "
                            "cannot be used as a layer", node.name.span)
        return outputs

    def input_stmt(self, stmt: ast.InputStmt | ast.TargetStmt, scope: Scope, top_level: bool,
                   bound: dict[str, tuple[Tensor, Span]] | None) -> None:
        name = stmt.name.name
        if top_level:
            declared = self.tensor_type(stmt.type, scope)
            kind = "input" if isinstance(stmt, ast.InputStmt) else "target"
            node = self.add_node(f"{kind}:{name}:", kind=kind, name=name, type=declared,
                                 span=stmt.name.span)
            (self.g.inputs if kind == "input" else self.g.targets).append(node)
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
            self.sink.error(code, f"input `{name}` of {scope.definition_kind} "
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
        dims: list[Dim] = []
        for i, d in enumerate(t.dims):
            if isinstance(d, ast.Name) and d.id not in scope.formals and \
                    d.id not in scope.symbols and i < len(actual.shape):
                scope.symbols[d.id] = actual.shape[i]
            dims.append(self.dim_expr(d, scope))
        declared = TensorType(dtype, tuple(dims))
        if actual.dtype != dtype:
            return "dtype-mismatch", str(declared)
        if tuple(actual.shape) != tuple(dims):
            return "shape-mismatch", str(declared)
        return None

    def tensor_type(self, t: ast.TensorTypeExpr, scope: Scope) -> TensorType:
        dtype = t.dtype.name
        if dtype not in DTYPES:
            self.sink.error("unknown-name", f"unknown dtype `{dtype}`", t.dtype.span,
                            help=suggestion_help(dtype, DTYPES) or
                            "dtypes: " + ", ".join(DTYPES))
            dtype = "float32"
        return TensorType(dtype, tuple(self.dim_expr(d, scope) for d in t.dims))

    def dim_expr(self, e: ast.Expr, scope: Scope) -> Dim:
        if isinstance(e, ast.Number) and isinstance(e.value, int):
            return e.value
        if isinstance(e, ast.Name):
            if e.id in scope.symbols:
                return scope.symbols[e.id]
            value = scope.formals.get(e.id)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if value is not None:
                self.sink.error("argument-type", f"`{e.id}` is not an int dimension: it is "
                                f"{source_text(value)}", e.span,
                                help=f"declare the parameter as `{e.id}: int`"
                                if isinstance(value, float) and value.is_integer() else None)
                return Sym.named("?")
            return Sym.named(e.id)
        if isinstance(e, ast.BinOp) and e.op in ("+", "-", "*", "//", "/"):
            a, b = self.dim_expr(e.left, scope), self.dim_expr(e.right, scope)
            if e.op == "+":
                return dim_add(a, b)
            if e.op == "-":
                return dim_sub(a, b)
            if e.op == "*":
                return dim_mul(a, b)
            return dim_floordiv(a, b)
        self.sink.error("argument-type", "a dimension is an integer, a name, or arithmetic "
                        "of them", e.span)
        return Sym.named("?")

    def layer_stmt(self, stmt: ast.LayerStmt, scope: Scope) -> None:
        value = self.eval(stmt.value, scope)
        if isinstance(value, (LayerClass, Definition)):
            self.sink.error("argument-type", f"`layer {stmt.name.name} = ...` needs a layer; "
                            "call it to make one, e.g. `Dense(10)`", stmt.value.span)
            value = POISON
        elif not isinstance(value, (*LAYER_LIKE, Poison)):
            self.sink.error("argument-type", f"`layer` names a layer, got {describe(value)}",
                            stmt.value.span, help=f"write `{stmt.name.name} = ...` for a tensor")
            value = POISON
        if isinstance(value, LAYER_LIKE):
            cached = scope.cache.get(stmt.name.name) if scope.cache is not None else None
            if cached is not None and type(cached) is type(value):
                value = cached
            else:
                if value.path is None:
                    value.path = scope.claim(stmt.name.name)
                if scope.cache is not None:
                    scope.cache[stmt.name.name] = value
        scope.env[stmt.name.name] = value

    def param_stmt(self, stmt: ast.ParamStmt, scope: Scope) -> None:
        declared = self.tensor_type(stmt.type, scope)
        shape = declared.shape or ()
        if any(not isinstance(d, int) for d in shape):
            self.sink.error("unknown-dimension", "a parameter's shape must be known: "
                            f"got {declared}", stmt.type.span,
                            help="use numbers or model parameters for its dimensions")
            for ident in stmt.names:
                scope.env[ident.name] = POISON
            return
        init = self.eval_spec(stmt.init, "initializer", scope) if stmt.init else \
            default_spec("initializer", "glorot_uniform" if len(shape) >= 2 else "zeros")
        constraint = self.eval_spec(stmt.constraint, "constraint", scope) \
            if stmt.constraint else None
        if isinstance(constraint, Spec) and stmt.constraint is not None:
            self.check_constraint_axis(constraint, shape, stmt.constraint.span)
        if isinstance(init, Spec):
            self.check_init_shape(init, shape, ", ".join(i.name for i in stmt.names),
                                  stmt.init.span if stmt.init else stmt.span)
        for ident in stmt.names:
            cached = scope.cache.get(ident.name) if scope.cache is not None else None
            if isinstance(cached, Tensor):
                scope.env[ident.name] = cached
                continue
            path = scope.claim(ident.name)
            node = self.add_node(
                "param:", kind="param", name=path, type=TensorType(declared.dtype, shape),
                role="weight", trainable=not stmt.frozen,
                init=init if isinstance(init, Spec) else default_spec("initializer", "zeros"),
                constraint=constraint if isinstance(constraint, Spec) else None,
                kernel_mask=None, owner=None, span=ident.span)
            self.g.params.append(node)
            tensor = Tensor(node, 0, TensorType(declared.dtype, shape), ident.span)
            scope.env[ident.name] = tensor
            if scope.cache is not None:
                scope.cache[ident.name] = tensor

    def assign(self, stmt: ast.Assign, scope: Scope) -> None:
        value = self.eval(stmt.value, scope)
        if isinstance(value, (LayerValue, Instance, RepeatValue)):
            self.sink.error("argument-type", "a layer is named with `layer`, not `=`",
                            stmt.span, help=f"write `layer {stmt.targets[0].name} = ...`")
            value = POISON
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
            self.sink.error("argument-type", f"cannot unpack {got} into "
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
                existing = {self.g.node(o)["name"] for o in self.g.outputs}
                n = 1
                while name in existing:
                    name, n = f"{base}_{n}", n + 1
            if not isinstance(v, Tensor):
                continue
            node = self.add_node(f"output:{name}:", kind="output", name=name,
                                 inference=stmt.inference, type=v.type,
                                 span=stmt.name.span if stmt.name else stmt.value.span)
            self.connect(v, node, "x")
            self.g.outputs.append(node)

    # ---- losses and metrics
    def loss_stmt(self, stmt: ast.LossStmt, scope: Scope) -> None:
        self.g.loss_statements += 1
        terms = self.split_terms(stmt.value, 1.0, scope)
        existing = {self.g.node(n)["name"] for n in self.g.losses}
        for weight, body in terms:
            value = self.eval(body, scope)
            if isinstance(value, Poison):
                continue
            if not isinstance(value, Tensor):
                self.sink.error("argument-type", f"a loss term must be a tensor, got "
                                f"{describe(value)}", body.span)
                continue
            if value.type.shape is not None and len(value.type.shape) != 0:
                self.sink.error("loss-not-scalar", f"a loss term must be a scalar, got "
                                f"{value.type}", body.span,
                                help="reduce it, e.g. mean(...), or use a loss function")
                continue
            if value.type.shape is not None and not value.type.is_float:
                self.sink.error("dtype-mismatch", f"a loss term must be a float, got "
                                f"{value.type}", body.span)
                continue
            name = self.term_name(stmt.name.name if stmt.name else None, body, len(terms))
            base, n = name, 1
            while name in existing:
                name, n = f"{base}_{n}", n + 1
            existing.add(name)
            node = self.add_node(f"loss:{name}:", kind="loss", name=name, weight=weight,
                                 span=body.span)
            self.connect(value, node, "x")
            self.g.losses.append(node)

    def metric_stmt(self, stmt: ast.MetricStmt, scope: Scope) -> None:
        value = self.eval(stmt.value, scope)
        if isinstance(value, Poison):
            return
        if not isinstance(value, Tensor) or (value.type.shape is not None and value.type.shape):
            self.sink.error("argument-type", f"a metric must be a scalar tensor, got "
                            f"{describe(value)}", stmt.value.span)
            return
        name = self.term_name(stmt.name.name if stmt.name else None, stmt.value, 1)
        existing = {self.g.node(n)["name"] for n in self.g.metrics}
        base, n = name, 1
        while name in existing:
            name, n = f"{base}_{n}", n + 1
        node = self.add_node(f"metric:{name}:", kind="metric", name=name, span=stmt.value.span)
        self.connect(value, node, "x")
        self.g.metrics.append(node)

    @staticmethod
    def term_name(explicit: str | None, body: ast.Expr, count: int) -> str:
        fn = None
        if isinstance(body, ast.Call):
            if isinstance(body.func, ast.Name):
                fn = body.func.id
            elif isinstance(body.func, ast.Attribute):
                fn = body.func.attr
        if explicit and count == 1:
            return explicit
        fn = fn or "term"
        return f"{explicit}.{fn}" if explicit else fn

    def split_terms(self, e: ast.Expr, weight: float,
                    scope: Scope) -> list[tuple[float, ast.Expr]]:
        """`1.0 * a + 0.5 * b - c` -> [(1.0, a), (0.5, b), (-1.0, c)]."""
        if isinstance(e, ast.BinOp) and e.op in ("+", "-"):
            right_weight = weight if e.op == "+" else -weight
            return self.split_terms(e.left, weight, scope) + \
                self.split_terms(e.right, right_weight, scope)
        if isinstance(e, ast.BinOp) and e.op == "*":
            for const_side, other in ((e.left, e.right), (e.right, e.left)):
                c = self.try_const(const_side, scope)
                if isinstance(c, (int, float)) and not isinstance(c, bool):
                    return self.split_terms(other, weight * float(c), scope)
        if isinstance(e, ast.UnaryOp) and e.op == "-":
            return self.split_terms(e.operand, -weight, scope)
        return [(weight, e)]

    def try_const(self, e: ast.Expr, scope: Scope) -> Any:
        """A constant's value without evaluating anything that would add nodes."""
        if isinstance(e, ast.Number):
            return e.value
        if isinstance(e, ast.Name) and e.id in scope.formals and e.id not in scope.env:
            return scope.formals[e.id]
        if isinstance(e, ast.UnaryOp) and e.op == "-":
            v = self.try_const(e.operand, scope)
            return -v if isinstance(v, (int, float)) else None
        if isinstance(e, ast.BinOp) and e.op in ("*", "/", "+", "-"):
            a, b = self.try_const(e.left, scope), self.try_const(e.right, scope)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)):
                try:
                    return fold(e.op, a, b)
                except (ZeroDivisionError, OverflowError):
                    return None
        return None

    def add_regularizer(self, param_node: str, spec: Spec, span: Span) -> None:
        data = self.g.node(param_node)
        tensor = Tensor(param_node, 0, data["type"], span)
        factors = {"l1": [("l1", spec.get("l1"))], "l2": [("l2", spec.get("l2"))],
                   "l1_l2": [("l1", spec.get("l1")), ("l2", spec.get("l2"))]}[spec.name]
        for fn, factor in factors:
            result = self.make_op(REGISTRY[fn], {"x": tensor}, {}, span)
            if isinstance(result, Tensor):
                name = f"{data['name']}.{fn}"
                node = self.add_node(f"loss:{name}:", kind="loss", name=name,
                                     weight=float(factor), span=span)
                self.connect(result, node, "x")
                self.g.losses.append(node)

    # ---- expressions
    def eval(self, e: ast.Expr, scope: Scope) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_EXPRESSION_DEPTH:
                if self.depth == MAX_EXPRESSION_DEPTH + 1:
                    self.sink.error("syntax", f"expression nested more than "
                                    f"{MAX_EXPRESSION_DEPTH} levels deep", e.span,
                                    help="split it into named intermediate tensors")
                return POISON
            method = getattr(self, "eval_" + type(e).__name__)
            return method(e, scope)
        finally:
            self.depth -= 1

    def eval_Number(self, e: ast.Number, scope: Scope) -> Const:
        return Const(e.value, e.span)

    def eval_String(self, e: ast.String, scope: Scope) -> Const:
        return Const(e.value, e.span)

    def eval_Bool(self, e: ast.Bool, scope: Scope) -> Const:
        return Const(e.value, e.span)

    def eval_Name(self, e: ast.Name, scope: Scope) -> Any:
        if e.id in scope.env:
            return scope.env[e.id]
        if e.id in scope.formals:
            v = scope.formals[e.id]
            return v if isinstance(v, Poison) else Const(v, e.span)
        found = lookup_global(e.id, scope.namespace)
        if found is not None:
            return found
        if e.id in DTYPES:
            return Const(e.id, e.span)
        self.unknown_name(e.id, e.span, scope)
        return POISON

    def unknown_name(self, name: str, span: Span, scope: Scope) -> None:
        if scope.namespace.failed_imports:
            return  # the name may come from a file that could not be read: already reported
        for model_name, node in self.all_models.items():
            if model_name == scope.model_name:
                continue
            where = defines(node, name)
            if where is not None:
                self.sink.error(
                    "disconnected",
                    f"`{name}` is not an input of model `{scope.model_name}`", span,
                    notes=[Note(f"`{name}` is defined in model `{model_name}`", where)],
                    help=f"declare `input {name} : ...` in `{scope.model_name}`, and connect "
                         "the two models in a combined model")
                return
        caller = scope.caller
        while caller is not None:
            outer = caller.env.get(name)
            if isinstance(outer, Tensor):
                kind = scope.definition_kind
                self.sink.error(
                    "unknown-name", f"`{name}` is not defined in {kind} "
                    f"`{scope.definition_name}`: a {kind} sees only its own inputs, "
                    f"parameters and layers", span,
                    notes=[Note(f"`{name}` is a tensor of {caller.definition_kind} "
                                f"`{caller.definition_name}`, made here", outer.span)],
                    help=f"declare `input {name} : {outer.type}` in `{scope.definition_name}` "
                         "and pass the tensor in the call")
                return
            caller = caller.caller
        candidates = [*scope.env, *scope.formals, *scope.namespace.definitions,
                      *scope.namespace.aliases, *REGISTRY]
        hint = suggestion_help(name, candidates)
        for kind, table in SPEC_TABLES.items():
            if name in table:
                hint = f"`{name}` is an {kind} name: pass it as an argument, e.g. " \
                    + {"initializer": "`kernel_initializer = ...`",
                       "activation": "`activation = ...`",
                       "constraint": "`kernel_constraint = ...`",
                       "regularizer": "`kernel_regularizer = ...`",
                       "optimizer": "in a train block: `optimizer * = ...`",
                       "schedule": "in a train block: `schedule = ...`"}[kind]
                if name in REGISTRY:
                    hint = None
                break
        self.sink.error("unknown-name", f"`{name}` is not defined", span, help=hint)

    def eval_ListExpr(self, e: ast.ListExpr, scope: Scope) -> Any:
        items = [self.eval(i, scope) for i in e.items]
        if any(isinstance(i, Poison) for i in items):
            return POISON
        if all(isinstance(i, Const) for i in items):
            return Const([i.value for i in items], e.span)
        if all(isinstance(i, (Const, Tensor)) for i in items):
            dtype = next(i.type.dtype for i in items if isinstance(i, Tensor))
            tensors = [i if isinstance(i, Tensor) else self.constant(i, dtype) for i in items]
            if any(isinstance(t, Poison) for t in tensors):
                return POISON
            return self.make_op(REGISTRY["stack"], {"xs": tensors}, {"axis": 0}, e.span)
        self.sink.error("argument-type", "a list holds numbers or tensors", e.span)
        return POISON

    def eval_BinOp(self, e: ast.BinOp, scope: Scope) -> Any:
        left = self.eval(e.left, scope)
        right = self.eval(e.right, scope)
        if isinstance(left, Poison) or isinstance(right, Poison):
            return POISON
        if isinstance(left, Const) and isinstance(right, Const):
            try:
                return Const(fold(e.op, left.value, right.value), e.span)
            except (TypeError, ZeroDivisionError, OverflowError, ValueError) as exc:
                self.sink.error("argument-value", f"cannot compute `{e.op}` of "
                                f"{source_text(left.value)} and {source_text(right.value)}: "
                                f"{exc}", e.span)
                return POISON
        if not isinstance(left, (Tensor, Const)) or not isinstance(right, (Tensor, Const)):
            bad = left if not isinstance(left, (Tensor, Const)) else right
            self.sink.error("argument-type", f"`{e.op}` needs tensors or numbers, got "
                            f"{describe(bad)}", e.span,
                            help="call a layer on a tensor first" if isinstance(bad, LAYER_LIKE)
                            else None)
            return POISON
        op = REGISTRY[OPERATORS[e.op]]
        dtype = left.type.dtype if isinstance(left, Tensor) else right.type.dtype  # type: ignore[union-attr]
        a = left if isinstance(left, Tensor) else self.constant(left, dtype)
        b = right if isinstance(right, Tensor) else self.constant(right, dtype)
        if isinstance(a, Poison) or isinstance(b, Poison):
            return POISON
        return self.make_op(op, {"x": a, "y": b}, {}, e.span,
                            arg_spans={"x": e.left.span, "y": e.right.span})

    def eval_UnaryOp(self, e: ast.UnaryOp, scope: Scope) -> Any:
        v = self.eval(e.operand, scope)
        if isinstance(v, Poison):
            return POISON
        if isinstance(v, Const):
            try:
                return Const({"-": lambda x: -x, "+": lambda x: +x,
                              "not": lambda x: not x}[e.op](v.value), e.span)
            except TypeError:
                self.sink.error("argument-value",
                                f"cannot apply `{e.op}` to {source_text(v.value)}",
                                e.span)
                return POISON
        if not isinstance(v, Tensor):
            self.sink.error("argument-type", f"`{e.op}` needs a tensor or a number, got "
                            f"{describe(v)}", e.span)
            return POISON
        if e.op == "+":
            return v
        op = REGISTRY["negative" if e.op == "-" else "logical_not"]
        return self.make_op(op, {"x": v}, {}, e.span)

    def eval_Attribute(self, e: ast.Attribute, scope: Scope) -> Any:
        if isinstance(e.value, ast.Name) and e.value.id not in scope.env and \
                e.value.id in self.all_models and e.value.id != scope.model_name and \
                lookup_global(e.value.id, scope.namespace) is not None:
            where = defines(self.all_models[e.value.id], e.attr)
            if where is not None:
                self.sink.error(
                    "disconnected",
                    f"`{e.value.id}.{e.attr}` is a tensor inside model `{e.value.id}`, not an "
                    f"input of model `{scope.model_name}`", e.span,
                    notes=[Note(f"`{e.attr}` is defined in model `{e.value.id}`", where)],
                    help=f"declare `input {e.attr} : ...` in `{scope.model_name}` and pass the "
                         f"tensor in, or use `{e.value.id}` as a layer")
                return POISON
        base = self.eval(e.value, scope)
        if isinstance(base, Poison):
            return POISON
        if isinstance(base, ModuleAlias):
            if base.namespace.failed:
                return POISON
            found = lookup_global(e.attr, base.namespace)
            if found is None:
                self.sink.error("unknown-name", f"`{e.attr}` is not defined in the imported "
                                "file", e.attr_span,
                                help=suggestion_help(e.attr, base.namespace.definitions))
                return POISON
            return found
        if isinstance(base, Tensor):
            if e.attr == "T":
                return self.make_op(REGISTRY["transpose"], {"x": base}, {"perm": None}, e.span)
            self.sink.error("unknown-name", f"a tensor has no attribute `{e.attr}`",
                            e.attr_span, help="`.T` transposes the last two axes")
            return POISON
        if isinstance(base, LayerValue):
            return self.layer_attribute(base, e)
        if isinstance(base, Instance):
            inner = base.cache.get(e.attr)
            if inner is None:
                known_names = sorted(base.cache)
                self.sink.error("unknown-name", f"`{e.attr}` is not a layer or parameter of "
                                f"`{base.path or base.definition.node.name.name}`"
                                + ("" if known_names else " (call it first: its layers are made "
                                   "at its first call)"), e.attr_span,
                                help=suggestion_help(e.attr, known_names))
                return POISON
            return inner
        if isinstance(base, RepeatValue) and (e.attr.isdigit() or True):
            self.sink.error("unknown-name", f"a repeated layer has no attribute `{e.attr}`",
                            e.attr_span, help="index its members like `stack[0]`")
            return POISON
        self.sink.error("unknown-name", f"{describe(base)} has no attribute `{e.attr}`",
                        e.attr_span)
        return POISON

    def layer_attribute(self, layer: LayerValue, e: ast.Attribute) -> Any:
        spec = layer.op.param_named(e.attr)
        names = [p.name for p in layer.op.params if p.present(layer.args)]
        if spec is None or not spec.present(layer.args):
            self.sink.error("unknown-name", f"`{layer.op.name}` layer has no parameter "
                            f"`{e.attr}`", e.attr_span,
                            help=suggestion_help(e.attr, names) or
                            (f"its parameters: {', '.join(names)}" if names else
                             "it has no parameters"))
            return POISON
        if layer.params is None:
            if any(p.needs_input for p in layer.op.params if p.present(layer.args)):
                self.sink.error("invalid-statement", f"`{layer.path}.{e.attr}` does not exist "
                                "yet: its shape depends on the layer's input", e.span,
                                help=f"call `{layer.path}` before using its parameters")
                return POISON
            self.build_params(layer, [], e.span)
        assert layer.params is not None
        return layer.params.get(e.attr, POISON)

    def eval_Subscript(self, e: ast.Subscript, scope: Scope) -> Any:
        base = self.eval(e.value, scope)
        if isinstance(base, Poison):
            return POISON
        if isinstance(base, (TupleValue, RepeatValue)) or (isinstance(base, Const) and
                                                           isinstance(base.value, list)):
            if len(e.items) != 1 or isinstance(e.items[0], (ast.Slice, ast.EllipsisExpr)):
                self.sink.error("argument-type", "index a list with one integer", e.span)
                return POISON
            i = self.eval(e.items[0], scope)
            seq = base.items if isinstance(base, TupleValue) else \
                base.members if isinstance(base, RepeatValue) else base.value
            if not isinstance(i, Const) or not isinstance(i.value, int) or \
                    not -len(seq) <= i.value < len(seq):
                self.sink.error("argument-value", f"index must be an integer in "
                                f"[{-len(seq)}, {len(seq)})", e.items[0].span)
                return POISON
            item = seq[i.value]
            return Const(item, e.span) if isinstance(base, Const) else item
        if not isinstance(base, Tensor):
            self.sink.error("argument-type", f"cannot index {describe(base)}", e.span)
            return POISON
        items: list[tuple[Any, ...]] = []
        for item in e.items:
            if isinstance(item, ast.EllipsisExpr):
                if ("ellipsis",) in items:
                    self.sink.error("argument-value", "only one `...` per index", item.span)
                    return POISON
                items.append(("ellipsis",))
            elif isinstance(item, ast.Slice):
                parts: list[int | None] = []
                for part in (item.start, item.stop, item.step):
                    if part is None:
                        parts.append(None)
                        continue
                    v = self.eval(part, scope)
                    if not isinstance(v, Const) or not isinstance(v.value, int):
                        self.sink.error("argument-type", "slice bounds must be integers",
                                        part.span)
                        return POISON
                    parts.append(v.value)
                items.append(("slice", *parts))
            else:
                v = self.eval(item, scope)
                if isinstance(v, Poison):
                    return POISON
                if not isinstance(v, Const) or not isinstance(v.value, int) or \
                        isinstance(v.value, bool):
                    self.sink.error("argument-type", f"an index must be an integer, got "
                                    f"{describe(v)}", item.span,
                                    help="select with where(...) or a mask instead")
                    return POISON
                items.append(("index", v.value))
        return self.make_op(REGISTRY["getitem"], {"x": base}, {"items": items}, e.span)

    def eval_Repeat(self, e: ast.Repeat, scope: Scope) -> Any:
        count = self.eval(e.count, scope)
        if isinstance(count, Poison):
            return POISON
        if not isinstance(count, Const) or not isinstance(count.value, int) or \
                isinstance(count.value, bool) or not 1 <= count.value <= MAX_REPEAT:
            self.sink.error("argument-value", f"`repeat` needs a count from 1 to {MAX_REPEAT}, "
                            f"got {describe(count)}", e.count.span)
            return POISON
        body = e.body
        apply_args: ast.Call | None = None
        # `repeat N Block(args)(x)`: the last call applies the repeated layer to x.
        if isinstance(body, ast.Call) and isinstance(body.func, ast.Call):
            apply_args, body = body, body.func

        def make() -> Any:
            return self.eval(body, scope)

        first = make()
        if isinstance(first, Poison):
            return POISON
        if not isinstance(first, (LayerValue, Instance)):
            self.sink.error("argument-type", f"`repeat` needs a layer or block, got "
                            f"{describe(first)}", body.span)
            return POISON
        pending = [first]

        def make_next() -> Any:
            return pending.pop() if pending else make()

        rep = RepeatValue(count.value, e.shared, make_next, e.span)
        if apply_args is None:
            return rep
        return self.call(rep, apply_args, scope)

    def eval_Call(self, e: ast.Call, scope: Scope) -> Any:
        if isinstance(e.func, ast.Name) and e.func.id == "mask_of" and \
                e.func.id not in scope.env:
            return self.mask_of(e, scope)
        func = self.eval(e.func, scope)
        if isinstance(func, Poison):
            for a in e.args:
                self.eval(a, scope)
            return POISON
        return self.call(func, e, scope)

    def mask_of(self, e: ast.Call, scope: Scope) -> Any:
        if len(e.args) != 1 or e.keywords:
            self.sink.error("argument-type", "`mask_of` takes one tensor", e.span)
            return POISON
        v = self.eval(e.args[0], scope)
        if isinstance(v, Poison):
            return POISON
        if not isinstance(v, Tensor):
            self.sink.error("argument-type", f"`mask_of` takes a tensor, got {describe(v)}",
                            e.args[0].span)
            return POISON
        if v.type.mask is None:
            self.sink.error("argument-value", "this tensor carries no mask", e.args[0].span,
                            help="masks come from `Embedding(..., mask_zero = true)`")
            return POISON
        mask_type = self.g.node(v.type.mask)["types"][0]
        return Tensor(v.type.mask, 0, mask_type, e.span)

    def call(self, func: Any, e: ast.Call, scope: Scope) -> Any:
        if isinstance(func, LayerClass):
            return self.construct_layer(func.op, e, scope)
        if isinstance(func, OpFunction):
            return self.call_function(func.op, e, scope)
        if isinstance(func, Definition):
            positional = [self.eval(a, scope) for a in e.args] if e.args else []
            if any(isinstance(p, Tensor) for p in positional) or any(
                    isinstance(p, Poison) for p in positional):
                inst = self.instantiate(func, [], {}, e.span, scope)
                return self.apply_values(inst, positional, self.eval_keywords(e, scope),
                                         e, scope)
            return self.instantiate(func, e.args, {k.name: k for k in e.keywords}, e.span,
                                    scope)
        if isinstance(func, LAYER_LIKE):
            args = [self.eval(a, scope) for a in e.args]
            return self.apply_values(func, args, self.eval_keywords(e, scope), e, scope)
        what = f"`{e.func.id}` is {describe(func)}" if isinstance(e.func, ast.Name) else \
            f"this is {describe(func)}"
        self.sink.error("not-callable", f"{what}, not a layer, block, model or function",
                        e.func.span)
        return POISON

    def eval_keywords(self, e: ast.Call, scope: Scope) -> dict[str, tuple[Any, ast.Keyword]]:
        out: dict[str, tuple[Any, ast.Keyword]] = {}
        for k in e.keywords:
            if k.name in out:
                self.sink.error("duplicate-definition", f"argument `{k.name}` given twice",
                                k.span)
            out[k.name] = (self.eval(k.value, scope), k)
        return out

    def instantiate(self, d: Definition, args: Sequence[ast.Expr],
                    keywords: dict[str, ast.Keyword], span: Span, scope: Scope) -> Any:
        formals = self.bind_formals(d.node, args, keywords, span, scope)
        return Instance(d, formals, span)

    # ---- applying layer-like values
    def apply_values(self, func: Any, args: list[Any], keywords: dict[str, tuple[Any, Any]],
                     e: ast.Call, scope: Scope) -> Any:
        if any(isinstance(a, Poison) for a in args) or any(
                isinstance(v, Poison) for v, _ in keywords.values()):
            return POISON
        if isinstance(func, LayerValue):
            return self.call_layer(func, args, keywords, e, scope)
        if isinstance(func, Instance):
            return self.call_instance(func, args, keywords, e, scope)
        assert isinstance(func, RepeatValue)
        return self.call_repeat(func, args, keywords, e, scope)

    def call_repeat(self, rep: RepeatValue, args: list[Any],
                    keywords: dict[str, tuple[Any, Any]], e: ast.Call, scope: Scope) -> Any:
        return_states = False
        if "return_states" in keywords:
            value, kw = keywords.pop("return_states")
            if not isinstance(value, Const) or not isinstance(value.value, bool):
                self.sink.error("argument-type", "`return_states` is a bool", kw.value.span)
            else:
                return_states = value.value
        if len(args) != 1 or not isinstance(args[0], Tensor):
            self.sink.error("argument-type", "a repeated layer takes exactly one tensor",
                            e.span)
            return POISON
        if not rep.members:
            first = rep.make()
            if isinstance(first, Poison):
                return POISON
            if rep.path is None:
                rep.path = scope.auto_path(layer_base_name(first))
            if rep.shared:
                first.path = first.path or rep.path
                rep.members = [first] * rep.count
            else:
                for i in range(rep.count):
                    member = first if i == 0 else rep.make()
                    if isinstance(member, Poison):
                        return POISON
                    member.path = f"{rep.path}.{i}"
                    rep.members.append(member)
        x: Any = args[0]
        states = [x]
        for member in rep.members:
            before = x
            x = self.apply_values(member, [x], dict(keywords), e, scope)
            if isinstance(x, TupleValue):
                self.sink.error("argument-type", "a repeated block must have one output",
                                e.span)
                return POISON
            if isinstance(x, Poison):
                return POISON
            if x.type.shape is not None and before.type.shape is not None and \
                    (x.type.shape != before.type.shape or x.type.dtype != before.type.dtype):
                self.sink.error("shape-mismatch", f"`repeat` feeds each copy its "
                                f"predecessor's output, but one copy maps {before.type} to "
                                f"{x.type}", e.span,
                                help="a repeated layer must keep its input's shape")
                return POISON
            states.append(x)
        if return_states:
            return TupleValue([x, TupleValue(states, e.span)], e.span)
        return x

    def call_instance(self, inst: Instance, args: list[Any],
                      keywords: dict[str, tuple[Any, Any]], e: ast.Call, scope: Scope) -> Any:
        node = inst.definition.node
        if node.name.name in self.expanding:
            chain = " -> ".join([*self.expanding[self.expanding.index(node.name.name):],
                                 node.name.name])
            self.sink.error("cycle", f"{node.kind} `{node.name.name}` uses itself: {chain}",
                            e.span, notes=[Note(f"`{node.name.name}` is defined here",
                                                node.name.span)],
                            help="a block cannot contain itself; use `repeat N` to stack it")
            return POISON
        if inst.path is None:
            inst.path = scope.auto_path(snake_case(node.name.name))
        if node.kind == "model":
            self.g.submodels.setdefault(inst.path, node.name.name)
        inputs = [s for s in node.body if isinstance(s, ast.InputStmt)]
        names = [s.name.name for s in inputs]
        bound: dict[str, tuple[Tensor, Span]] = {}
        arg_spans = [a.span for a in e.args]
        if len(args) > len(inputs):
            self.sink.error("too-many-arguments", f"`{node.name.name}` takes {len(inputs)} "
                            f"input{'s' * (len(inputs) != 1)}, got {len(args)}",
                            e.args[len(inputs)].span if len(e.args) > len(inputs) else e.span)
            return POISON
        for i, (stmt, value) in enumerate(zip(inputs, args, strict=False)):
            bound[stmt.name.name] = (value, arg_spans[i] if i < len(arg_spans) else e.span)
        for name, (value, kw) in keywords.items():
            if name not in names:
                self.sink.error("unknown-argument", f"`{node.name.name}` has no input `{name}`",
                                kw.span, help=suggestion_help(name, names))
                return POISON
            bound[name] = (value, kw.value.span)
        for name in names:
            value = bound[name][0] if name in bound else None
            if value is None:
                self.sink.error("missing-argument", f"`{node.name.name}` needs its input "
                                f"`{name}`", e.span)
                return POISON
            if not isinstance(value, Tensor):
                self.sink.error("argument-type", f"input `{name}` of `{node.name.name}` must be "
                                f"a tensor, got {describe(value)}", e.span)
                return POISON
        inst.calls += 1
        inner = Scope(inst.definition.namespace, inst.path + ".", inst.formals, inst.cache,
                      scope.model_name)
        inner.definition_kind, inner.definition_name = node.kind, node.name.name
        inner.caller = scope
        for stmt in inputs:
            inner.taken.add(stmt.name.name)
        self.expanding.append(node.name.name)
        reported = len(self.sink.items)
        outputs = self.run_body(node, inner, top_level=False, bound_inputs=bound)
        self.expanding.pop()
        self.note_call_site(reported, node, e.span)
        values = [v for _, v in outputs]
        if any(isinstance(v, Poison) for v in values):
            return POISON
        if len(values) == 1:
            return values[0]
        return TupleValue(values, e.span) if values else POISON

    def note_call_site(self, first: int, node: ast.Definition, call: Span) -> None:
        """What the body of a block reports depends on its arguments: each diagnostic found
        while expanding it (from index ``first`` on) gets a note at the call, as rustc
        notes a macro invocation. Nested calls give one note per level."""
        import dataclasses

        note = Note(f"in this call of `{node.name.name}`", call)
        items = self.sink.items
        for i in range(first, len(items)):
            span = items[i].span
            # A misplaced statement is wrong whatever the arguments.
            if span is not None and not within(span, call) and \
                    items[i].code != "invalid-statement":
                items[i] = dataclasses.replace(items[i], notes=(*items[i].notes, note))

    # ---- layers
    def construct_layer(self, op: OpDef, e: ast.Call, scope: Scope) -> Any:
        """`Dense(10, activation = relu)`: check the arguments, make a LayerValue."""
        args: dict[str, Any] = {}
        overrides: dict[str, Tensor] = {}
        masks: dict[str, Any] = {}
        specs: dict[str, dict[str, Spec]] = {}
        trainable = True
        ok = True
        extra = {a.name: a for spec in op.params for a in param_args(spec)}
        for spec in op.params:
            if spec.role == "weight":
                extra[f"{spec.name}_mask"] = Arg(f"{spec.name}_mask", "any", None, optional=True)
        layer_args = {a.name: a for a in LAYER_ARGS}
        params = {p.name: p for p in op.params}
        if len(e.args) > len(op.args):
            self.sink.error("too-many-arguments", f"`{op.name}` takes at most {len(op.args)} "
                            f"positional argument{'s' * (len(op.args) != 1)}, got "
                            f"{len(e.args)}", e.args[len(op.args)].span,
                            help=f"its arguments: {', '.join(a.name for a in op.args)}")
            ok = False
        given: dict[str, tuple[ast.Expr, Span]] = {}
        for a, expr in zip(op.args, e.args, strict=False):
            given[a.name] = (expr, expr.span)
        for k in e.keywords:
            if k.name in given:
                self.sink.error("duplicate-definition", f"argument `{k.name}` given twice",
                                k.span)
                ok = False
            given[k.name] = (k.value, k.span)
        for name, (expr, span) in given.items():
            if name in params:
                value = self.eval(expr, scope)
                if isinstance(value, Const):
                    value = self.constant(value, "float32")
                if isinstance(value, Tensor):
                    overrides[name] = Tensor(value.node, value.index, value.type, expr.span)
                elif not isinstance(value, Poison):
                    self.sink.error("argument-type", f"`{name}` of `{op.name}` takes a tensor "
                                    f"(a tie or a structured weight), got {describe(value)}",
                                    expr.span)
                    ok = False
                else:
                    ok = False
                continue
            arg = op.arg(name) or extra.get(name) or layer_args.get(name)
            if arg is None or name in {a.name for a in op.call_args}:
                candidates = [*(a.name for a in op.args), *extra, *layer_args, *params]
                self.sink.error("unknown-argument", f"`{op.name}` has no argument `{name}`",
                                span, help=suggestion_help(name, candidates) or
                                f"its arguments: {', '.join(a.name for a in op.args)}")
                ok = False
                continue
            value = self.check_arg(op, arg, expr, scope)
            if isinstance(value, Poison):
                ok = False
                args[name] = POISON
                continue
            if name == "trainable":
                trainable = bool(value)
            elif name == "name":
                pass
            elif name in extra:
                pname, _, what = name.partition("_") if False else _split_param_arg(name, params)
                if what == "mask":
                    masks[pname] = value
                elif value is not None:
                    specs.setdefault(pname, {})[what] = value
            else:
                args[name] = value
        for a in op.args:
            if a.name not in args:
                if a.required:
                    self.sink.error("missing-argument", f"`{op.name}` needs `{a.name}`", e.span,
                                    help=f"e.g. `{op.name}({a.name} = ...)`")
                    ok = False
                else:
                    args[a.name] = a.default
        if not ok:
            return POISON
        layer = LayerValue(op, args, overrides, masks, specs, e.span, trainable,
                           arg_spans={name: expr.span for name, (expr, _) in given.items()})
        if "name" in given:
            name_value = self.eval(given["name"][0], scope)
            if isinstance(name_value, Const) and isinstance(name_value.value, str):
                layer.path = scope.claim(name_value.value)
        return layer

    def call_layer(self, layer: LayerValue, args: list[Any],
                   keywords: dict[str, tuple[Any, Any]], e: ast.Call, scope: Scope) -> Any:
        op = layer.op
        if layer.path is None:
            path = scope.auto_path(op.snake_name)
            cached = scope.cache.get(path[len(scope.prefix):]) if scope.cache is not None \
                else None
            if isinstance(cached, LayerValue) and cached.op is op:
                layer.path, layer.params = cached.path, cached.params
                layer.param_shapes = cached.param_shapes
                layer.calls = cached.calls
                layer = cached
            else:
                layer.path = path
                if scope.cache is not None:
                    scope.cache[path[len(scope.prefix):]] = layer
        inputs, call_args = self.bind_inputs(op, args, keywords, e, call_args=op.call_args)
        if inputs is None:
            return POISON
        # Parameter shape rules see the inputs aligned with the op's declared inputs.
        aligned = [inputs.get(i.name) if isinstance(inputs.get(i.name), Tensor) else None
                   for i in op.inputs]
        if layer.params is None:
            if not self.build_params(layer, aligned, e.span):
                return POISON
        elif not self.check_reuse(layer, aligned, e.span):
            return POISON
        assert layer.params is not None
        layer.calls += 1
        record = self.g.layers.get(layer.path or "")
        result = self.make_op(op, inputs, {**layer.args, **call_args}, e.span,
                              params=layer.params, layer=layer.path,
                              arg_spans={**layer.arg_spans, **argument_spans(op, e)})
        if record is not None and isinstance(result, (Tensor, TupleValue)):
            first_out = result if isinstance(result, Tensor) else result.items[0]
            record.calls.append(first_out.node)
        return result

    def build_params(self, layer: LayerValue, inputs: list[Tensor | None], span: Span) -> bool:
        op = layer.op
        types = [t.type if t is not None else None for t in inputs]
        if any(t is not None and (t.shape is None or has_error_dim(t.shape)) for t in types):
            return False  # already reported
        params: dict[str, Tensor] = {}
        record = LayerRecord(layer.path or "?", op.name, jsonable_args(layer.args), layer.span,
                             trainable=layer.trainable)
        ok = True
        for spec in op.params:
            if not spec.present(layer.args):
                continue
            try:
                shape = tuple(spec.shape(layer.args, types))  # type: ignore[arg-type]
            except ShapeError as exc:
                self.sink.error(exc.code, f"`{op.name}`: {exc.message}", span, help=exc.help)
                return False
            except (IndexError, TypeError):
                rank = types[0].rank if types and types[0] is not None else None
                self.sink.error("shape-mismatch", f"`{op.name}` cannot take an input of rank "
                                f"{rank}: got {types[0]}", span)
                return False
            layer.param_shapes[spec.name] = shape
            if spec.name in layer.overrides:
                given = layer.overrides[spec.name]
                if given.type.shape is not None and tuple(given.type.shape) != shape:
                    self.sink.error(
                        "tie-shape", f"`{spec.name}` of `{op.name}` must be "
                        f"[{', '.join(map(str, shape))}] ({spec.layout}), got {given.type}",
                        given.span, notes=[Note(f"the layer is `{layer.path}`", layer.span)],
                        help="a transposed use is written `.T`" if given.type.shape and
                        tuple(reversed(given.type.shape)) == shape else None)
                    ok = False
                params[spec.name] = given
                record.params[spec.name] = given.node
                continue
            params[spec.name] = self.new_param(layer, spec, shape, span)
            record.params[spec.name] = params[spec.name].node
        for pname in layer.masks:
            if pname in layer.overrides:
                self.sink.error("argument-value", f"`{pname}_mask` cannot apply to a tied "
                                f"`{pname}`", span)
                ok = False
        if not ok:
            return False
        layer.params = params
        self.g.layers[record.path] = record
        return True

    def new_param(self, layer: LayerValue, spec: ParamSpec, shape: Shape, span: Span) -> Tensor:
        path = f"{layer.path}.{spec.name}"
        specs = layer.specs.get(spec.name, {})
        default = spec.init
        if default == "lstm_bias" and not layer.args.get("unit_forget_bias", True):
            default = "zeros"
        init = specs.get("initializer") or default_spec("initializer", default)
        constraint = specs.get("constraint")
        if constraint is not None:
            self.check_constraint_axis(
                constraint, shape, layer.arg_spans.get(f"{spec.name}_constraint", span))
        mask = layer.masks.get(spec.name)
        if mask is not None:
            mask = self.check_kernel_mask(mask, shape,
                                          layer.arg_spans.get(f"{spec.name}_mask", span))
        self.check_init_shape(init, shape, f"{path}", span)
        t = TensorType("float32", shape)
        node = self.add_node("param:", kind="param", name=path, type=t, role=spec.role,
                             trainable=layer.trainable and spec.role == "weight", init=init,
                             constraint=constraint, kernel_mask=mask, owner=layer.path,
                             span=layer.span)
        self.g.params.append(node)
        if "regularizer" in specs:
            self.regularizers.append((node, specs["regularizer"], layer.span))
        return Tensor(node, 0, t, layer.span)

    def check_constraint_axis(self, constraint: Spec, shape: Shape, span: Span) -> None:
        axis = constraint.get("axis")
        if isinstance(axis, int) and not -len(shape) <= axis < max(len(shape), 1):
            self.sink.error("argument-value", f"`{constraint.name}`: axis {axis} is out of "
                            f"range for a parameter of rank {len(shape)}", span)

    def check_init_shape(self, init: Spec, shape: Shape, what: str, span: Span) -> None:
        """Initialisers whose shape is fixed (a file, identity) must fit the parameter."""
        if init.name == "identity" and len(shape) != 2:
            self.sink.error("shape-mismatch", f"`identity()` makes a matrix, but `{what}` is "
                            f"{shape_str(shape)}", span)
        if init.name != "from_file" or (self.missing_files_ok and
                                         not os.path.isfile(init["path"])):
            return
        from graphdsl.runtime.weights import file_shape

        try:
            found = file_shape(init["path"])
        except (OSError, ValueError) as exc:
            self.sink.error("argument-value", f"`from_file`: cannot read {init['path']}: {exc}",
                            span)
            return
        if tuple(found) != tuple(shape):
            self.sink.error("shape-mismatch", f"`from_file` holds an array of shape "
                            f"{shape_str(tuple(found))}, but `{what}` is {shape_str(shape)}",
                            span, help="make the layer match the file, or the file the layer")

    def check_kernel_mask(self, mask: Any, shape: Shape, span: Span) -> Any:
        """A 0/1 pattern: full rank, or rank 1 (first axis) or rank 2 (first and last axes)."""
        import numpy as np

        try:
            arr = np.asarray(mask, dtype=np.float64)
        except (ValueError, TypeError):
            self.sink.error("argument-value", "a kernel mask is a nested list of 0 and 1", span)
            return None
        if not np.isin(arr, (0.0, 1.0)).all():
            self.sink.error("argument-value", "a kernel mask holds only 0 and 1", span)
            return None
        full = list(shape)
        if arr.ndim == 1 and len(full) >= 1:
            arr = arr.reshape((arr.shape[0],) + (1,) * (len(full) - 1))
        elif arr.ndim == 2 and len(full) >= 2:
            arr = arr.reshape((arr.shape[0],) + (1,) * (len(full) - 2) + (arr.shape[1],))
        try:
            np.broadcast_to(arr, tuple(int(d) for d in full))  # type: ignore[arg-type]
        except ValueError:
            self.sink.error("shape-mismatch", f"the kernel mask of shape {list(np.shape(mask))} "
                            f"does not fit the kernel [{', '.join(map(str, full))}]", span,
                            help="give the full shape, or [kernel positions], or "
                            "[kernel positions, output channels]")
            return None
        return np.broadcast_to(arr, tuple(int(d) for d in full)  # type: ignore[arg-type]
                               ).astype(int).tolist()

    def check_reuse(self, layer: LayerValue, inputs: list[Tensor | None], span: Span) -> bool:
        types = [t.type if t is not None else None for t in inputs]
        if any(t is not None and (t.shape is None or has_error_dim(t.shape)) for t in types):
            return False  # already reported
        for spec in layer.op.params:
            if not spec.present(layer.args) or spec.name not in layer.param_shapes:
                continue
            try:
                shape = tuple(spec.shape(layer.args, types))  # type: ignore[arg-type]
            except ShapeError as exc:
                self.sink.error(exc.code, exc.message, span)
                return False
            except (IndexError, TypeError):
                self.sink.error("shape-mismatch", f"`{layer.op.name}` cannot take an input of "
                                f"rank {types[0].rank if types[0] else None}", span)
                return False
            if shape != layer.param_shapes[spec.name]:
                self.sink.error(
                    "shape-mismatch", f"shared layer `{layer.path}` is called with an input "
                    f"that needs `{spec.name}` of shape {shape_str(shape)}, but its first call "
                    f"made it {shape_str(layer.param_shapes[spec.name])}", span,
                    notes=[Note("first called here", self.first_call_span(layer))])
                return False
        return True

    def first_call_span(self, layer: LayerValue) -> Span | None:
        record = self.g.layers.get(layer.path or "")
        if record and record.calls:
            return self.g.node(record.calls[0]).get("span")
        return layer.span

    # ---- functions
    def call_function(self, op: OpDef, e: ast.Call, scope: Scope) -> Any:
        variadic = next((i for i in op.inputs if i.variadic), None)
        # The tensors of `concat([a, b])` (or `concat(xs = [a, b])`).
        listed: ast.ListExpr | None = None
        if variadic is not None:
            named = next((k.value for k in e.keywords if k.name == variadic.name), None)
            if len(e.args) == 1 and isinstance(e.args[0], ast.ListExpr):
                listed = e.args[0]
            elif not e.args and isinstance(named, ast.ListExpr):
                listed = named
        if listed is not None:
            # Every item of `concat([x, 1])` is one of the tensors, never an argument: a
            # number becomes a constant tensor (and the shape rule then rejects a scalar).
            items = [self.eval(a, scope) for a in listed.items]
            dtype = next((i.type.dtype for i in items if isinstance(i, Tensor)), None)
            args = [self.constant(i, dtype) if isinstance(i, Const) else i for i in items]
        else:
            args = []
            arg_queue = [a for a in op.args]
            for a in e.args:
                # Positional arguments fill tensor inputs, then non-tensor arguments; the
                # kind of each argument decides which (specs are evaluated as specs).
                args.append(self.eval(a, scope))
            del arg_queue
        keywords: dict[str, tuple[Any, Any]] = {}
        for k in e.keywords:
            if k.value is listed:
                continue
            arg = op.arg(k.name)
            if arg is not None and arg.kind in SPEC_TABLES:
                keywords[k.name] = (self.eval_spec(k.value, arg.kind, scope), k)
            else:
                if k.name in keywords:
                    self.sink.error("duplicate-definition", f"argument `{k.name}` given twice",
                                    k.span)
                keywords[k.name] = (self.eval(k.value, scope), k)
        if any(isinstance(a, Poison) for a in args) or any(
                isinstance(v, Poison) for v, _ in keywords.values()):
            return POISON
        if variadic is not None and not any(isinstance(a, Tensor) for a in args) and \
                variadic.name not in keywords:
            example = f"`{op.name}([a, b])`"
            if args and listed is None:
                self.sink.error("argument-type", f"`{op.name}` takes the tensors to join, got "
                                f"{describe(args[0])}", e.args[0].span,
                                help=f"pass the tensors in a list: {example}")
            else:
                self.sink.error("missing-argument", f"`{op.name}` needs the tensors to join",
                                listed.span if listed is not None else e.span,
                                help=f"pass them in a list: {example}")
            return POISON
        inputs, rest = self.bind_inputs(op, args, keywords, e, call_args=op.args)
        if inputs is None:
            return POISON
        return self.make_op(op, inputs, rest, e.span, arg_spans=argument_spans(op, e))

    def bind_inputs(self, op: OpDef, args: list[Any], keywords: dict[str, tuple[Any, Any]],
                    e: ast.Call, call_args: Sequence[Arg]) -> tuple[Any, dict[str, Any]]:
        """Positional tensors fill tensor inputs in order; other values fill arguments."""
        inputs: dict[str, Any] = {}
        values: dict[str, Any] = {}
        input_slots = [i for i in op.inputs if not i.variadic]
        variadic = next((i for i in op.inputs if i.variadic), None)
        arg_slots = list(call_args)
        ok = True
        for a, expr in zip(args, e.args if len(e.args) == len(args) else [e] * len(args),
                           strict=False):
            if isinstance(a, Tensor) or (isinstance(a, Const) and input_slots and
                                         not arg_slots and not variadic):
                if variadic is not None:
                    inputs.setdefault(variadic.name, []).append(a)
                    continue
                if not input_slots:
                    self.sink.error("too-many-arguments", f"`{op.name}` takes "
                                    f"{len(op.inputs)} tensor inputs", expr.span)
                    ok = False
                    continue
                inputs[input_slots.pop(0).name] = a
            elif isinstance(a, Const):
                if variadic is not None and isinstance(a.value, (int, float)) and \
                        not arg_slots:
                    inputs.setdefault(variadic.name, []).append(a)
                    continue
                if not arg_slots:
                    self.sink.error("too-many-arguments", f"`{op.name}` takes no more "
                                    "arguments", expr.span)
                    ok = False
                    continue
                slot = arg_slots.pop(0)
                values[slot.name] = (a, expr)
            else:
                self.sink.error("argument-type", f"`{op.name}` takes tensors and numbers, got "
                                f"{describe(a)}", expr.span)
                ok = False
        for name, (value, kw) in keywords.items():
            slot_in = op.input_named(name)
            arg = next((x for x in call_args if x.name == name), None)
            if slot_in is not None:
                if name in inputs:
                    self.sink.error("duplicate-definition", f"input `{name}` given twice",
                                    kw.span)
                    ok = False
                inputs[name] = value
                if slot_in in input_slots:
                    input_slots.remove(slot_in)
            elif arg is not None:
                if name in values:
                    self.sink.error("duplicate-definition", f"argument `{name}` given twice",
                                    kw.span)
                    ok = False
                values[name] = (value, kw.value)
            else:
                candidates = [i.name for i in op.inputs] + [x.name for x in call_args]
                self.sink.error("unknown-argument", f"`{op.name}` has no argument `{name}`",
                                kw.span, help=suggestion_help(name, candidates) or
                                f"it takes: {', '.join(candidates)}")
                ok = False
        if variadic is not None:
            inputs.setdefault(variadic.name, [])
        for slot_in in op.inputs:
            if not slot_in.optional and slot_in.name not in inputs and not slot_in.variadic:
                self.sink.error("missing-argument", f"`{op.name}` needs its input "
                                f"`{slot_in.name}`", e.span)
                ok = False
        checked: dict[str, Any] = {}
        for arg in call_args:
            if arg.name in values:
                value, expr = values[arg.name]
                checked[arg.name] = self.check_value(op, arg, value, expr.span)
                if isinstance(checked[arg.name], Poison):
                    ok = False
            elif arg.required:
                self.sink.error("missing-argument", f"`{op.name}` needs `{arg.name}`", e.span)
                ok = False
            else:
                checked[arg.name] = arg.default
        for name, value in list(inputs.items()):
            if isinstance(value, list):
                inputs[name] = [v if isinstance(v, Tensor) else self.constant(v, "float32")
                                for v in value]
            elif isinstance(value, Const):
                other = next((v for v in inputs.values() if isinstance(v, Tensor)), None)
                declared = op.input_named(name)
                dtype = other.type.dtype if other else None
                if declared is not None and declared.dtypes == "float" and (dtype is None or
                                                                   dtype not in FLOAT_DTYPES):
                    dtype = "float32"  # sqrt(16) is 4.0, as in NumPy and PyTorch
                inputs[name] = self.constant(value, dtype)
            elif not isinstance(value, Tensor):
                self.sink.error("argument-type", f"input `{name}` of `{op.name}` must be a "
                                f"tensor, got {describe(value)}", e.span)
                ok = False
        if not ok:
            return None, {}
        return inputs, checked

    # ---- arguments
    def check_arg(self, op: OpDef, arg: Arg, expr: ast.Expr, scope: Scope) -> Any:
        if arg.kind in SPEC_TABLES:
            return self.eval_spec(expr, arg.kind, scope)
        return self.check_value(op, arg, self.eval(expr, scope), expr.span)

    def check_value(self, op: OpDef, arg: Arg, value: Any, span: Span) -> Any:
        if isinstance(value, Poison):
            return POISON
        if isinstance(value, Spec):
            return value
        if not isinstance(value, Const):
            self.sink.error("argument-type", f"`{arg.name}` of `{op.name}` takes {kind_words(arg)}"
                            f", got {describe(value)}", span)
            return POISON
        v = value.value
        if v is None and arg.optional:
            return None
        converted = convert(arg.kind, v)
        if converted is _BAD:
            fraction = arg.kind in ("int", "ints") and isinstance(v, float) and \
                not v.is_integer() and math.isfinite(v)
            shown = f"{v:.4g}" if fraction else source_text(v)
            self.sink.error("argument-type", f"`{arg.name}` of `{op.name}` takes "
                            f"{kind_words(arg)}, got {shown}", span,
                            help="`/` divides exactly; `//` is integer division" if fraction
                            else None)
            return POISON
        if arg.choices is not None and converted not in arg.choices:
            self.sink.error("argument-value", f"`{arg.name}` of `{op.name}` must be one of "
                            f"{', '.join(map(source_text, arg.choices))}, got "
                            f"{source_text(converted)}", span,
                            help=choice_help(converted, arg.choices))
            return POISON
        if arg.kind in ("int", "ints") and arg.name in ("units", "filters", "num_heads",
                                                         "key_dim", "input_dim", "output_dim",
                                                         "kernel_size", "depth", "heads") and \
                any(x < 1 for x in (converted if isinstance(converted, list) else [converted])):
            self.sink.error("argument-value", f"`{arg.name}` of `{op.name}` must be positive, "
                            f"got {converted}", span)
            return POISON
        if arg.name in ("rate",) and not 0 <= converted < 1:
            self.sink.error("argument-value", f"`rate` of `{op.name}` must be in [0, 1), got "
                            f"{converted}", span)
            return POISON
        return converted

    def eval_spec(self, expr: ast.Expr, kind: str, scope: Scope) -> Any:
        """`normal(0, 0.1)`, `relu`, `"same"`, `simplex(axis = 0)` -> a checked Spec."""
        table = SPEC_TABLES[kind]
        args: tuple[ast.Expr, ...]
        kws: tuple[ast.Keyword, ...]
        if isinstance(expr, ast.Name) and expr.id in scope.formals:
            v = scope.formals[expr.id]
            name, args, kws, span = v, (), (), expr.span
        elif isinstance(expr, (ast.Name, ast.String)):
            name = expr.id if isinstance(expr, ast.Name) else expr.value
            args, kws, span = (), (), expr.span
        elif isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name):
            name, args, kws, span = expr.func.id, expr.args, expr.keywords, expr.func.span
        else:
            self.sink.error("argument-type", f"expected {article(kind)} {kind} such as "
                            f"`{next(iter(table))}`", expr.span)
            return POISON
        if not isinstance(name, str) or name not in table:
            self.sink.error("unknown-name", f"unknown {kind} `{name}`", span,
                            help=suggestion_help(str(name), table) or
                            f"{kind}s: {', '.join(table)}")
            return POISON
        spec_def = table[name]
        values: dict[str, Any] = {}
        names = list(spec_def.args)
        if len(args) > len(names):
            self.sink.error("too-many-arguments", f"`{name}` takes {len(names)} arguments",
                            args[len(names)].span)
            return POISON
        for pname, a in zip(names, args, strict=False):
            values[pname] = (a if (kind, pname) == ("optimizer", "loss") else
                             self.eval(a, scope), a.span)
        for k in kws:
            if (kind, k.name) == ("optimizer", "loss"):
                values[k.name] = (k.value, k.value.span)
                continue
            if k.name not in spec_def.args:
                alias = KERAS_ALIASES.get(k.name)
                self.sink.error("unknown-argument", f"`{name}` has no argument `{k.name}`",
                                k.span, help=(f"did you mean `{alias}`?" if alias in names
                                              else None) or suggestion_help(k.name, names) or
                                (f"it takes: {', '.join(names)}" if names else
                                 "it takes no arguments"))
                return POISON
            values[k.name] = (self.eval(k.value, scope), k.value.span)
        out: dict[str, Any] = {}
        for pname, default in spec_def.args.items():
            if kind == "optimizer" and pname == "loss" and pname in values:
                loss_terms = self.loss_names(values[pname])
                if loss_terms is None:
                    return POISON
                out[pname] = loss_terms
                continue
            if pname in values:
                value, vspan = values[pname]
                if isinstance(value, Poison):
                    return POISON
                if not isinstance(value, Const):
                    self.sink.error("argument-type", f"`{pname}` of `{name}` takes a constant, "
                                    f"got {describe(value)}", vspan)
                    return POISON
                if isinstance(default, bool) and not isinstance(value.value, bool):
                    self.sink.error("argument-type", f"`{pname}` of `{name}` is a bool", vspan)
                    return POISON
                if isinstance(default, (int, float)) and not isinstance(default, bool) and (
                        not isinstance(value.value, (int, float)) or isinstance(value.value,
                                                                                 bool)):
                    self.sink.error("argument-type", f"`{pname}` of `{name}` is a number, got "
                                    f"{source_text(value.value)}", vspan)
                    return POISON
                out[pname] = float(value.value) if isinstance(default, float) else value.value
            elif default is REQUIRED:
                self.sink.error("missing-argument", f"`{name}` needs `{pname}`", span)
                return POISON
            else:
                out[pname] = default
        if kind == "constraint" and out.get("mode") not in ("project", "reparam"):
            self.sink.error("argument-value", f"`mode` of `{name}` is \"project\" or "
                            f"\"reparam\", got {source_text(out.get('mode'))}", span)
            return POISON
        if name == "from_file":
            path = os.path.normpath(os.path.join(self.base_dir, str(out["path"])))
            if not os.path.isfile(path) and not self.missing_files_ok:
                self.sink.error("argument-value",
                                f"`from_file`: no file {source_text(out['path'])}", span,
                                help=f"paths are relative to the program: looked at {path}")
                return POISON
            out["path"] = path
        return Spec(kind, name, tuple(out.items()))

    def loss_names(self, given: tuple[Any, Span]) -> list[str] | None:
        """`loss = d_loss` or `loss = [a, b]`: names of loss terms, checked by the train block."""
        expr, span = given
        items = expr.items if isinstance(expr, ast.ListExpr) else (expr,)
        names = []
        for item in items:
            if isinstance(item, ast.Name):
                names.append(item.id)
            elif isinstance(item, ast.String):
                names.append(item.value)
            else:
                self.sink.error("argument-type", "`loss` names loss terms: a name or a list of "
                                "names", span)
                return None
        return names

    # ---- op nodes
    def constant(self, c: Const, dtype: str | None) -> Any:
        import numpy as np

        try:
            arr = np.asarray(c.value)
        except (ValueError, TypeError):
            arr = None
        if arr is None or arr.dtype == object or arr.dtype.kind not in "biuf":
            self.sink.error("argument-type", f"{source_text(c.value)} is not a number or a "
                            "regular nested list of numbers", c.span)
            return POISON
        if dtype is None or dtype == "bool" and arr.dtype.kind != "b":
            dtype = {"b": "bool", "i": "int32", "u": "int32", "f": "float32"}[arr.dtype.kind]
        if dtype in ("int8", "int16", "int32", "int64", "uint8") and arr.dtype.kind == "f" \
                and not np.all(arr == np.round(arr)):
            self.sink.error("dtype-mismatch", f"{source_text(c.value)} is not an integer, but the "
                            f"other operand is {dtype}", c.span,
                            help="cast the tensor to float32 first")
            return POISON
        value = arr.tolist()
        return self.make_op(REGISTRY["constant"], {},
                            {"value": value, "dtype": dtype, "shape": list(arr.shape)}, c.span)

    def make_op(self, op: OpDef, inputs: dict[str, Any], args: dict[str, Any], span: Span,
                params: dict[str, Tensor] | None = None, layer: str | None = None,
                arg_spans: dict[str, Span] | None = None) -> Any:
        """Create an op node: check input dtypes, run the shape rule, carry masks."""
        arg_spans = arg_spans or {}
        self.attach_masks(op, inputs)
        self.align_where(op, inputs, span)
        for slot in op.inputs:
            value = inputs.get(slot.name)
            values = value if isinstance(value, list) else [value] if value is not None else []
            for v in values:
                if v.type.shape is None or has_error_dim(v.type.shape):
                    return self.unknown_result(op)
                problem = dtype_problem(slot.dtypes, v.type)
                if problem:
                    help_text = "ids must be integers: declare the input as int32" \
                        if op.name == "Embedding" else f"convert with cast(..., {problem[1]})"
                    if slot.name == "where" and v.type.is_float and \
                            op.input_named("sample_weight") is not None:
                        help_text = "`where` selects samples with a bool mask; to weight " \
                            "samples, pass the weights as `sample_weight = ...`"
                    self.sink.error("dtype-mismatch", f"`{op.name}` requires {problem[0]} "
                                    f"`{slot.name}`, got {v.type}",
                                    arg_spans.get(slot.name, span),
                                    notes=self.origin_notes(v), help=help_text)
                    return POISON
        in_types = {k: ([t.type for t in v] if isinstance(v, list) else v.type)
                    for k, v in inputs.items() if v is not None}
        param_types = {k: v.type for k, v in (params or {}).items()}
        call = OpCall(op, in_types, args, param_types)
        try:
            result = op.infer(call)
        except UnknownShape:
            return self.unknown_result(op)
        except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as exc:
            # A shape rule that met arguments it does not expect: say so, never crash.
            self.sink.error("argument-value", f"`{op.name}` cannot be applied to these "
                            f"arguments ({type(exc).__name__}: {exc})", span)
            return POISON
        except ShapeError as exc:
            where = span
            if isinstance(exc.argument, str) and exc.argument in arg_spans:
                where = arg_spans[exc.argument]
            culprit = inputs.get(exc.argument) if isinstance(exc.argument, str) else None
            notes = self.origin_notes(culprit) if isinstance(culprit, Tensor) else []
            if isinstance(exc.argument, str) and exc.argument not in inputs:
                notes = []
            else:
                for _k, v in inputs.items():
                    if isinstance(v, Tensor) and v is not culprit and not notes:
                        notes = self.origin_notes(v)
            # `x[:, 12]` is written with brackets: the op's internal name means nothing there.
            plain = exc.message.startswith("`") or op.name == "getitem"
            self.sink.error(exc.code, exc.message if plain else f"`{op.name}`: {exc.message}",
                            where, notes=notes, help=exc.help)
            return POISON
        node = self.add_node("op:", kind="op", op=op.name, args=dict(args), layer=layer,
                             span=span, types=())
        for name, value in inputs.items():
            if isinstance(value, list):
                for i, v in enumerate(value):
                    self.connect(v, node, name, i)
            elif value is not None:
                self.connect(value, node, name)
        for name, value in (params or {}).items():
            self.connect(value, node, name)
        outs = list(result) if isinstance(result, tuple) else [result]
        outs = self.output_masks(op, call, inputs, outs, span)
        self.g.node(node)["types"] = tuple(outs)
        if args.get("from_logits") is True and isinstance(inputs.get("pred"), Tensor):
            self.warn_probabilities_as_logits(op, inputs["pred"],
                                              arg_spans.get("from_logits", span))
        tensors = [Tensor(node, i, t, span) for i, t in enumerate(outs)]
        return tensors[0] if len(tensors) == 1 else TupleValue(tensors, span)

    def warn_probabilities_as_logits(self, op: OpDef, pred: Tensor, span: Span) -> None:
        """`from_logits = true` on a softmax or sigmoid output applies the activation twice:
        training runs, but the loss saturates and learns slowly (Keras warns as well)."""
        data = self.g.node(pred.node)
        if data.get("kind") != "op":
            return
        activation = data["args"].get("activation")
        if data["op"] in PROBABILITY_ACTIVATIONS:
            made_by = f"`{data['op']}`"
        elif isinstance(activation, Spec) and activation.name in PROBABILITY_ACTIVATIONS:
            made_by = f"`{data['op']}` with `activation = {activation.name}`"
        else:
            return
        self.sink.warning(
            "from-logits-mismatch", f"`{op.name}` is told `from_logits = true`, but its "
            f"prediction is the output of {made_by}: probabilities, not logits", span,
            notes=[Note("the activation is applied here", data.get("span"))],
            help="give the loss the values before the activation (the logits), or write "
                 "`from_logits = false`")

    def align_where(self, op: OpDef, inputs: dict[str, Any], span: Span) -> None:
        """A padding mask [B, T] given as `where` of x [B, T, d] selects whole steps: it gets
        trailing axes so it lines up from the left, as Keras masks do."""
        where, x = inputs.get("where"), inputs.get("x")
        if op.kind != "function" or not isinstance(where, Tensor) or not isinstance(x, Tensor):
            return
        ws, xs = where.type.shape, x.type.shape
        if ws is None or xs is None or not 0 < len(ws) < len(xs) or tuple(xs[: len(ws)]) != \
                tuple(ws) or tuple(xs[len(xs) - len(ws):]) == tuple(ws):
            return
        aligned: Any = where
        for _ in range(len(xs) - len(ws)):
            aligned = self.make_op(REGISTRY["expand_dims"], {"x": aligned}, {"axis": -1}, span)
            if not isinstance(aligned, Tensor):
                return
        inputs["where"] = aligned

    def unknown_result(self, op: OpDef) -> Any:
        return POISON

    def origin_notes(self, t: Tensor) -> list[Note]:
        data = self.g.node(t.node)
        span = data.get("span")
        if span is None:
            return []
        kind = data["kind"]
        what = {"input": f"`{data.get('name')}` is declared as {t.type}",
                "target": f"`{data.get('name')}` is declared as {t.type}",
                "param": f"parameter `{data.get('name')}` is {t.type}"}.get(
            kind, f"this is {t.type}")
        return [Note(what, span)]

    def attach_masks(self, op: OpDef, inputs: dict[str, Any]) -> None:
        """Consuming ops receive the padding masks of their inputs on their mask ports."""
        if op.mask not in ("consume", "consume-keep"):
            return
        data_inputs = [i for i in op.inputs if not i.name.endswith("mask") and
                       i.name not in ("where", "sample_weight", "attention_mask")]
        first = inputs.get(data_inputs[0].name) if data_inputs else None
        if inputs.get("mask") is None and isinstance(first, Tensor) and first.type.mask:
            inputs["mask"] = self.mask_tensor(first.type.mask)
        for slot in op.inputs:
            if slot.name.endswith("_mask") and slot.name != "attention_mask" and \
                    inputs.get(slot.name) is None:
                source = inputs.get(slot.name[: -len("_mask")])
                if isinstance(source, Tensor) and source.type.mask:
                    inputs[slot.name] = self.mask_tensor(source.type.mask)
                elif slot.name == "value_mask" and isinstance(source, Tensor) and \
                        isinstance(first, Tensor) and source.node == first.node and \
                        source.index == first.index and isinstance(inputs.get("mask"), Tensor):
                    inputs[slot.name] = inputs["mask"]

    def mask_tensor(self, mask_node: str) -> Tensor:
        data = self.g.node(mask_node)
        return Tensor(mask_node, 0, data["types"][0], data["span"])

    def output_masks(self, op: OpDef, call: OpCall, inputs: dict[str, Any],
                     outs: list[TensorType], span: Span) -> list[TensorType]:
        if op.mask == "produce":
            if not call.args.get("mask_zero"):
                return outs
            ids = inputs["ids"]
            zero = self.constant(Const(0, span), ids.type.dtype)
            mask = self.make_op(REGISTRY["not_equal"], {"x": ids, "y": zero}, {}, span)
            if not isinstance(mask, Tensor):
                return outs
            return [outs[0].with_mask(mask.node), *outs[1:]]
        data = [v for k, v in inputs.items() if isinstance(v, Tensor) and
                not k.endswith("mask") and k not in ("where", "sample_weight")]
        for v in inputs.values():
            if isinstance(v, list):
                data.extend(x for x in v if isinstance(x, Tensor))
        masks: list[str] = []
        for v in data:
            if v.type.mask and v.type.mask not in masks:
                masks.append(v.type.mask)
        if not masks:
            return outs
        keep = op.mask in ("elementwise", "consume-keep")
        if op.mask_keep is not None and op.mask not in ("consume",):
            try:
                keep = bool(op.mask_keep(call))
            except (ShapeError, KeyError, TypeError, IndexError, UnknownShape):
                keep = False
        if not keep:
            if op.mask == "drop" and inputs.get("where") is None:
                origin = self.g.node(masks[0]).get("span")
                self.sink.warning(
                    "mask-ignored", f"`{op.name}` ignores the padding mask of its input",
                    span, notes=[Note("the mask comes from here", origin)] if origin else [],
                    help=self.mask_help(op))
            return outs
        mask_node = masks[0]
        mask_type = self.g.node(mask_node)["types"][0]
        for other in masks[1:]:
            other_type = self.g.node(other)["types"][0]
            if other_type.shape != mask_type.shape:
                continue
            merged = self.make_op(REGISTRY["logical_and"],
                                  {"x": self.mask_tensor(mask_node),
                                   "y": self.mask_tensor(other)}, {}, span)
            if isinstance(merged, Tensor):
                mask_node = merged.node
        result = []
        for t in outs:
            fits = t.shape is not None and mask_type.shape is not None and \
                len(t.shape) > len(mask_type.shape) - 1 and \
                tuple(t.shape[: len(mask_type.shape)]) == tuple(mask_type.shape)
            result.append(t.with_mask(mask_node) if fits else t)
        return result

    @staticmethod
    def mask_help(op: OpDef) -> str:
        if op.family == "reduce":
            return f"pass the mask: `{op.name}(x, axis = 1, where = mask_of(x))`"
        return "use an op that takes the mask (e.g. GlobalAveragePooling1D), or select " \
               "positions explicitly"


# --- helpers -----------------------------------------------------------------------------

_BAD = object()


def convert(kind: str, v: Any) -> Any:
    is_int = isinstance(v, int) and not isinstance(v, bool)
    is_num = isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "int":
        return v if is_int else _BAD
    if kind == "float":
        return float(v) if is_num else _BAD
    if kind == "number":
        return v if is_num else _BAD
    if kind == "bool":
        return v if isinstance(v, bool) else _BAD
    if kind == "str":
        return v if isinstance(v, str) else _BAD
    if kind == "ints":
        if is_int:
            return v
        ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                         for x in v)
        return list(v) if ok else _BAD
    if kind in ("int_list", "shape"):
        if is_int:
            return [v]
        ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool)
                                         for x in v)
        return list(v) if ok else _BAD
    if kind == "float_list":
        ok = isinstance(v, list) and all(isinstance(x, (int, float)) and
                                         not isinstance(x, bool) for x in v)
        return [float(x) for x in v] if ok else _BAD
    return v


def kind_words(arg: Arg) -> str:
    return {"int": "an int", "float": "a number", "number": "a number", "bool": "true or false",
            "str": "a string", "ints": "an int or a list of ints", "int_list": "a list of ints",
            "float_list": "a list of numbers", "shape": "a list of ints",
            "any": "a constant"}.get(arg.kind, f"{article(arg.kind)} {arg.kind}")


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def within(inner: Span, outer: Span) -> bool:
    return inner.file == outer.file and (outer.line, outer.column) <= \
        (inner.line, inner.column) and (inner.end_line, inner.end_column) <= \
        (outer.end_line, outer.end_column)


def argument_spans(op: OpDef, e: ast.Call) -> dict[str, Span]:
    """Where each input or argument of a call is written: positional arguments by the op's
    inputs in order, keywords by name (the value, as for a positional argument)."""
    spans = {i.name: a.span for i, a in zip(op.inputs, e.args, strict=False)}
    spans.update((k.name, k.value.span) for k in e.keywords)
    return spans


def describe(v: Any) -> str:
    if isinstance(v, Tensor):
        return f"a tensor {v.type}"
    if isinstance(v, Const):
        return source_text(v.value)
    if isinstance(v, LayerValue):
        return f"a `{v.op.name}` layer"
    if isinstance(v, Instance):
        return f"a `{v.definition.node.name.name}` {v.definition.node.kind}"
    if isinstance(v, RepeatValue):
        return "a repeated layer"
    if isinstance(v, Definition):
        return f"the {v.node.kind} `{v.node.name.name}`"
    if isinstance(v, LayerClass):
        return f"the layer type `{v.op.name}`"
    if isinstance(v, OpFunction):
        return f"the function `{v.op.name}`"
    if isinstance(v, TupleValue):
        return f"{len(v.items)} values"
    if isinstance(v, ModuleAlias):
        return "an imported file"
    if isinstance(v, Spec):
        return f"the {v.kind} `{v.name}`"
    return "a value"


def dtype_problem(dtypes: str, t: TensorType) -> tuple[str, str] | None:
    if dtypes == "any":
        return None
    if dtypes == "float" and not t.is_float:
        return ("a float", "float32")
    if dtypes == "int" and not t.is_int:
        return ("an integer", "int32")
    if dtypes == "bool" and not t.is_bool:
        return ("a bool", "bool")
    if dtypes == "number" and t.is_bool:
        return ("a numeric", "float32")
    return None


def fold(op: str, a: Any, b: Any) -> Any:
    if op == "/" and isinstance(a, int) and isinstance(b, int) and b and a % b == 0:
        return a // b  # exact integer division stays an int: sizes like `d / heads`
    table: dict[str, Callable[[Any, Any], Any]] = {
        "+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y,
        "/": lambda x, y: x / y, "//": lambda x, y: x // y, "%": lambda x, y: x % y,
        "**": lambda x, y: x ** y if abs(y) < 64 else math.pow(x, y),
        "==": lambda x, y: x == y, "!=": lambda x, y: x != y, "<": lambda x, y: x < y,
        "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y,
        "and": lambda x, y: x and y, "or": lambda x, y: x or y,
        "@": lambda x, y: _bad_matmul(),
    }
    return table[op](a, b)


def _bad_matmul() -> Any:
    raise TypeError("`@` needs tensors")


def has_error_dim(shape: Shape) -> bool:
    """A dimension made `?` by an error already reported keeps later rules silent."""
    return any(isinstance(d, Sym) and any(name == "?" for name, _ in d.terms) for d in shape)


def layer_base_name(value: Any) -> str:
    if isinstance(value, LayerValue):
        return value.op.snake_name
    if isinstance(value, Instance):
        return snake_case(value.definition.node.name.name)
    return "repeat"


def flatten(v: TupleValue) -> list[Any]:
    out: list[Any] = []
    for item in v.items:
        if isinstance(item, TupleValue):
            out.extend(flatten(item))
        else:
            out.append(item)
    return out


def jsonable_args(args: dict[str, Any]) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Spec) else v) for k, v in args.items()}


def _split_param_arg(name: str, params: dict[str, ParamSpec]) -> tuple[str, str, str]:
    for suffix in ("initializer", "constraint", "regularizer", "mask"):
        if name.endswith("_" + suffix) and name[: -len(suffix) - 1] in params:
            return name[: -len(suffix) - 1], "_", suffix
    raise KeyError(name)


def lookup_global(name: str, namespace: Namespace) -> Any:
    if name in namespace.definitions:
        return namespace.definitions[name]
    if name in namespace.aliases:
        return ModuleAlias(namespace.aliases[name])
    op = REGISTRY.get(name)
    if op is not None:
        return LayerClass(op) if op.kind == "layer" else OpFunction(op)
    return None


def defines(node: ast.Definition, name: str) -> Span | None:
    """Where a model body defines a tensor `name`, if it does."""
    for stmt in node.body:
        if isinstance(stmt, (ast.InputStmt, ast.TargetStmt, ast.LayerStmt)) and \
                stmt.name.name == name:
            return stmt.name.span
        if isinstance(stmt, ast.Assign):
            for t in stmt.targets:
                if t.name == name:
                    return t.span
        if isinstance(stmt, ast.OutputStmt) and stmt.name and stmt.name.name == name:
            return stmt.name.span
        if isinstance(stmt, ast.ParamStmt):
            for t in stmt.names:
                if t.name == name:
                    return t.span
    return None


__all__ = ["Definition", "Elaborator", "In", "Namespace"]
