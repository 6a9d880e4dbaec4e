"""Elaboration: syntax tree -> graph IR.

Resolves names and scopes, evaluates constants, expands blocks, `repeat` and models used
as layers, creates parameter nodes (recording ties, shared layers and constraints), and
runs each op's shape rule as its node is created, so a shape error points at the exact
call. Errors are reported to the sink and evaluation continues with a poison value,
so one run reports every independent mistake without cascades.

The Elaborator holds the state of one model being built; each concern is a room (a
module with one class) that reaches the others through it: statements, expressions,
calls (blocks, models as layers, repeat), layers and parameters, op application, masks,
losses and metrics.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from graphdsl.diagnostics import (
    DiagnosticSink,
    Note,
    Span,
    suggestion_help,
)
from graphdsl.elaborate.budget import MAX_NODES, BudgetExceeded
from graphdsl.elaborate.calls import CallRules
from graphdsl.elaborate.control import ControlRules
from graphdsl.elaborate.expressions import ExpressionRules
from graphdsl.elaborate.layers import LayerRules
from graphdsl.elaborate.losses import LossRules
from graphdsl.elaborate.masks import MaskRules
from graphdsl.elaborate.opcalls import OpRules
from graphdsl.elaborate.stateless_layers import StatelessLayers
from graphdsl.elaborate.statements import StatementRules
from graphdsl.elaborate.values import (
    POISON,
    Const,
    Definition,
    Namespace,
    Poison,
    Scope,
    Tensor,
    article,
    describe,
)
from graphdsl.ir.graph import ModelGraph
from graphdsl.ops import load_all
from graphdsl.ops.specs import Spec
from graphdsl.syntax import tree as ast


class Elaborator:
    def __init__(self, sink: DiagnosticSink, namespace: Namespace, all_models: dict[str, Any],
                 base_dir: str, max_nodes: int = MAX_NODES):
        load_all()
        self.max_nodes = max_nodes
        self.expansion_costs: dict[tuple[int, str], int] = {}  # (definition, args) -> nodes
        self.sink = sink
        self.namespace = namespace
        self.all_models = all_models  # model name -> ast.Definition (for disconnected errors)
        self.base_dir = base_dir
        self.g: ModelGraph
        self.node_counter = itertools.count()
        self.regularizers: list[tuple[str, Spec, Span]] = []
        self.depth = 0
        self.poisoned = 0  # expressions evaluated to a poison (an error reported before)
        self.missing_files_ok = False
        self.expanding: list[str] = []  # definitions being expanded, outermost first
        self.instance_paths: dict[str, Span] = {}  # path of each block instance -> its call
        # The rooms; each reaches the others through this object.
        self.statements = StatementRules(self)
        self.expressions = ExpressionRules(self)
        self.calls = CallRules(self)
        self.layers = LayerRules(self)
        self.opcalls = OpRules(self)
        self.masks = MaskRules(self)
        self.losses = LossRules(self)
        self.control = ControlRules(self)
        self.stateless = StatelessLayers(self)
        self.expressions.register(ast.Call, self.calls.eval_Call)
        self.expressions.register(ast.Repeat, self.calls.eval_Repeat)

    def add_node(self, prefix: str, **attrs: Any) -> str:
        if len(self.g.graph) >= self.max_nodes:
            raise BudgetExceeded(attrs.get("span"))
        node_id = f"{prefix}{next(self.node_counter)}"
        attrs.setdefault("span", None)
        self.g.graph.add_node(node_id, **attrs)
        return node_id

    def connect(self, src: Tensor, dst: str, port: str, position: int = 0) -> None:
        self.g.graph.add_edge(src.node, dst, port=port, position=position, index=src.index)

    def model(self, definition: Definition) -> ModelGraph:
        node = definition.node
        # The model's name stands for it in diagnostics about the whole model.
        self.g = ModelGraph(node.name.name, node.span.file, node.name.span)
        self.g.definition = node.span
        formals = self.bind_formals(node, [], {}, node.span, Scope(definition.namespace, "", {},
                                                                   None, node.name.name))
        self.g.formals = dict(formals)
        scope = Scope(definition.namespace, "", formals, None, node.name.name)
        self.expanding.append(node.name.name)
        try:
            self.statements.run_body(node, scope, top_level=True, bound_inputs=None)
        except BudgetExceeded as exc:
            self.sink.error(
                "resource-limit", f"model `{node.name.name}` expands to more than "
                f"{self.max_nodes:,} graph nodes (nested `repeat`s or blocks multiply)",
                exc.span or node.name.span,
                notes=[Note(f"expanding {' -> '.join(self.expanding)}", node.name.span)]
                if len(self.expanding) > 1 else [],
                help="check the repeat counts and how often each block calls the next")
            self.g.excused.update(self.g.graph.nodes)  # the model is incomplete: no echoes
        self.expanding = []
        for path, spec, span in self.regularizers:
            self.losses.add_regularizer(path, spec, span)
        return self.g

    def bind_formals(self, node: ast.Definition, args: Sequence[ast.Expr],
                     keywords: dict[str, ast.Keyword], span: Span, scope: Scope) -> dict[str, Any]:
        values: dict[str, Any] = {}
        formals = node.formals
        seen: set[str] = set()
        twice: set[str] = set()
        for f in formals:
            if f.name.name in seen:
                self.sink.error("duplicate-definition", f"parameter `{f.name.name}` of "
                                f"`{node.name.name}` is declared twice", f.name.span)
                twice.add(f.name.name)
            seen.add(f.name.name)
        if len(args) > len(formals):
            plural = "s" * (len(formals) != 1)
            self.sink.error("too-many-arguments", f"`{node.name.name}` takes {len(formals)} "
                            f"parameter{plural}, got {len(args)}", args[len(formals)].span)
        given: dict[str, tuple[Any, Span]] = {}
        for f, a in zip(formals, args, strict=False):
            given[f.name.name] = (self.expressions.eval(a, scope), a.span)
        names = [f.name.name for f in formals]
        for name, kw in keywords.items():
            if name not in names:
                self.sink.error("unknown-argument", f"`{node.name.name}` has no parameter "
                                f"`{name}`", kw.span, help=suggestion_help(name, names))
                continue
            if name in given:
                self.sink.error("duplicate-definition", f"parameter `{name}` given twice",
                                kw.span)
            given[name] = (self.expressions.eval(kw.value, scope), kw.value.span)
        for f in formals:
            if f.name.name in given:
                value, vspan = given[f.name.name]
            elif f.default is not None:
                value, vspan = self.expressions.eval(f.default, Scope(scope.namespace, "", values, None,
                                                          scope.model_name)), f.default.span
            else:
                self.sink.error("missing-argument", f"`{node.name.name}` needs a value for "
                                f"parameter `{f.name.name}`", span,
                                notes=[Note("declared here", f.span)])
                values[f.name.name] = POISON
                continue
            values[f.name.name] = self.check_formal(f, value, vspan)
        for name in twice:  # which declaration its uses mean is unknown: none is checked
            values[name] = POISON
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
