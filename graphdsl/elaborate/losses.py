"""Loss and metric statements: weighted terms, where-masks, regularizers, logits checks."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from graphdsl.diagnostics import (
    Note,
    Span,
)
from graphdsl.elaborate.values import (
    PROBABILITY_ACTIVATIONS,
    Poison,
    Scope,
    Tensor,
    describe,
)
from graphdsl.ops import REGISTRY
from graphdsl.ops.registry import (
    OpDef,
)
from graphdsl.ops.specs import Spec
from graphdsl.syntax import tree as ast

# Elementwise ops with two broadcast operands.
BROADCASTING_OPS = frozenset({"add", "subtract", "multiply", "divide", "power", "maximum",
                              "minimum", "floor_divide", "mod", "where"})


# Ops that move, drop or perturb values without changing what they are: logits stay logits
# and probabilities stay probabilities through them (the from_logits check looks past them).
KEEPS_VALUES = frozenset({"Dropout", "GaussianNoise", "GaussianDropout", "SpatialDropout1D",
                          "SpatialDropout2D", "SpatialDropout3D", "reshape", "Reshape",
                          "squeeze", "expand_dims", "Flatten", "transpose", "getitem", "linear"})


def edge_type(graph: Any, producer: str, edge: dict[str, Any]) -> Any:
    data = graph.node(producer)
    if data["kind"] == "op":
        return data["types"][edge.get("index", 0)]
    return data["type"]


if TYPE_CHECKING:  # the elaborator owns this room; the room only calls back into it
    from graphdsl.elaborate.core import Elaborator


class LossRules:
    def __init__(self, el: Elaborator) -> None:
        self.el = el
        # per model graph: (kind, name) of each named loss or metric -> where it is named
        self.named: dict[int, tuple[Any, dict[tuple[str, str], Span]]] = {}

    def loss_stmt(self, stmt: ast.LossStmt, scope: Scope) -> None:
        self.el.g.loss_statements += 1
        terms = self.split_terms(stmt.value, 1.0, scope)
        existing = {self.el.g.node(n)["name"] for n in self.el.g.losses}
        if stmt.name is not None and self.named_before(stmt.name, "loss"):
            return
        for weight, body in terms:
            first = len(self.el.g.graph)
            value = self.el.expressions.eval(body, scope)
            if isinstance(value, Poison):
                continue
            if self.silent_broadcast(first, "loss"):
                continue
            if not isinstance(value, Tensor):
                self.el.sink.error("argument-type", f"a loss term must be a tensor, got "
                                f"{describe(value)}", body.span)
                continue
            if value.type.shape is not None and len(value.type.shape) != 0:
                self.el.sink.error("loss-not-scalar", f"a loss term must be a scalar, got "
                                f"{value.type}", body.span,
                                help="reduce it, e.g. mean(...), or use a loss function")
                continue
            if value.type.shape is not None and not value.type.is_float:
                self.el.sink.error("dtype-mismatch", f"a loss term must be a float, got "
                                f"{value.type}", body.span)
                continue
            name = self.term_name(stmt.name.name if stmt.name else None, body, len(terms))
            base, n = name, 1
            while name in existing:
                name, n = f"{base}_{n}", n + 1
            existing.add(name)
            node = self.el.add_node(f"loss:{name}:", kind="loss", name=name, weight=weight,
                                 span=body.span)
            self.el.connect(value, node, "x")
            self.el.g.losses.append(node)

    def metric_stmt(self, stmt: ast.MetricStmt, scope: Scope) -> None:
        first = len(self.el.g.graph)
        value = self.el.expressions.eval(stmt.value, scope)
        if isinstance(value, Poison) or self.silent_broadcast(first, "metric"):
            return
        if not isinstance(value, Tensor) or (value.type.shape is not None and value.type.shape):
            self.el.sink.error("argument-type", f"a metric must be a scalar tensor, got "
                            f"{describe(value)}", stmt.value.span)
            return
        if stmt.name is not None and self.named_before(stmt.name, "metric"):
            return
        name = self.term_name(stmt.name.name if stmt.name else None, stmt.value, 1)
        existing = {self.el.g.node(n)["name"] for n in self.el.g.metrics}
        base, n = name, 1
        while name in existing:
            name, n = f"{base}_{n}", n + 1
        node = self.el.add_node(f"metric:{name}:", kind="metric", name=name, span=stmt.value.span)
        self.el.connect(value, node, "x")
        self.el.g.metrics.append(node)

    def named_before(self, ident: ast.Ident, kind: str) -> bool:
        """`loss ce = ...` twice: optimizer groups and logs name terms, so a name is given
        once (unnamed terms are numbered instead)."""
        # keyed by identity; the graph is kept in the value so that its id is not reused
        names = self.named.setdefault(id(self.el.g), (self.el.g, {}))[1]
        first = names.get((kind, ident.name))
        if first is None or first == ident.span:  # the same statement again: a loop
            names[kind, ident.name] = ident.span
            return False
        self.el.sink.error("duplicate-definition", f"{kind} `{ident.name}` is already defined",
                           ident.span, notes=[Note("first defined here", first)],
                           help=f"give each {kind} its own name")
        return True

    def silent_broadcast(self, first: int, what: str) -> bool:
        """Report an elementwise op, among the nodes a loss or metric made from index
        ``first`` on, that broadcasts two tensors of different ranks into a shape larger than
        both: `p - y` with p [B, 1] and y [B] is [B, B], every prediction against every
        target, and the mean of that trains quietly towards the wrong answer."""
        g = self.el.g
        for node in list(itertools.islice(g.graph.nodes, first, None)):
            data = g.node(node)
            if data["kind"] != "op" or data["op"] not in BROADCASTING_OPS:
                continue
            shapes = [edge_type(g, u, d).shape for u, d in g.in_edges(node)]
            if len(shapes) != 2 or any(sh is None or len(sh) == 0 for sh in shapes):
                continue
            a, b = shapes
            result = data["types"][0].shape
            if len(a) == len(b) or result in (a, b) or result is None:
                continue
            fmt = ", ".join
            self.el.sink.error(
                "shape-mismatch", f"`{data['op']}` in a {what} broadcasts [{fmt(map(str, a))}] "
                f"against [{fmt(map(str, b))}] to [{fmt(map(str, result))}]: every row of one "
                "is combined with every row of the other", data.get("span"),
                help="give both sides one shape, e.g. `squeeze(p, axis = -1)` or "
                     "`reshape(y, [-1, 1])`")
            return True
        return False

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
                c = self.el.expressions.try_const(const_side, scope)
                if isinstance(c, (int, float)) and not isinstance(c, bool):
                    return self.split_terms(other, weight * float(c), scope)
        if isinstance(e, ast.UnaryOp) and e.op == "-":
            return self.split_terms(e.operand, -weight, scope)
        return [(weight, e)]

    def add_regularizer(self, param_node: str, spec: Spec, span: Span) -> None:
        data = self.el.g.node(param_node)
        tensor = Tensor(param_node, 0, data["type"], span)
        factors = {"l1": [("l1", spec.get("l1"))], "l2": [("l2", spec.get("l2"))],
                   "l1_l2": [("l1", spec.get("l1")), ("l2", spec.get("l2"))]}[spec.name]
        for fn, factor in factors:
            result = self.el.opcalls.make_op(REGISTRY[fn], {"x": tensor}, {}, span)
            if isinstance(result, Tensor):
                name = f"{data['name']}.{fn}"
                node = self.el.add_node(f"loss:{name}:", kind="loss", name=name,
                                     weight=float(factor), span=span)
                self.el.connect(result, node, "x")
                self.el.g.losses.append(node)

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
                self.el.sink.error("argument-type", "`loss` names loss terms: a name or a list of "
                                "names", span)
                return None
        return names

    def check_from_logits(self, op: OpDef, pred: Tensor, from_logits: bool, span: Span) -> None:
        """`from_logits = true` on a softmax or sigmoid output applies the activation twice:
        training runs, but the loss saturates and learns slowly (Keras warns as well).
        `from_logits = false` (the default) on a layer's linear output reads logits as
        probabilities: negative values are clipped and the loss is meaningless."""
        data = self.el.g.node(pred.node)
        node = pred.node
        while data.get("kind") == "op" and data["op"] in KEEPS_VALUES:
            producers = self.el.g.in_edges(node)
            if not producers:
                return
            node = producers[0][0]
            data = self.el.g.node(node)
        if data.get("kind") != "op":
            return
        activation = data["args"].get("activation")
        if isinstance(activation, Spec):
            activation = activation.name
        if from_logits:
            if data["op"] in PROBABILITY_ACTIVATIONS:
                made_by = f"`{data['op']}`"
            elif activation in PROBABILITY_ACTIVATIONS:
                made_by = f"`{data['op']}` with `activation = {activation}`"
            else:
                return
            self.el.sink.warning(
                "from-logits-mismatch", f"`{op.name}` is told `from_logits = true`, but its "
                f"prediction is the output of {made_by}: probabilities, not logits", span,
                notes=[Note("the activation is applied here", data.get("span"))],
                help="give the loss the values before the activation (the logits), or write "
                     "`from_logits = false`")
        elif activation == "linear":
            self.el.sink.error(
                "from-logits-mismatch", f"`{op.name}` reads its prediction as probabilities "
                f"(`from_logits = false`), but it is the linear output of `{data['op']}`: "
                "logits, which can be negative", span,
                notes=[Note("the logits are made here", data.get("span"))],
                help="write `from_logits = true`, or give the layer "
                     "`activation = softmax` (`sigmoid` for binary_crossentropy)")
