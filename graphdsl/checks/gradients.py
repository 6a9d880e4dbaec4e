"""Gradient reachability: every trainable parameter must receive a gradient from the loss.

Values are not gradients: a layer whose output reaches the loss only through
`stop_gradient`, through integer or boolean tensors (`argmax`, comparisons, casts to an
integer type) gets no gradient, so training leaves it unchanged and DistributedDataParallel
fails on it as an unused parameter. The walk therefore goes backwards from the losses and
crosses an edge only where a gradient can flow: into a differentiable op, along a
floating-point tensor.
"""

from __future__ import annotations

from ..diagnostics import DiagnosticSink, Note, Span
from ..ir.graph import ModelGraph
from ..ir.types import FLOAT_DTYPES, TensorType
from ..ops import REGISTRY


def _tensor_type(graph: ModelGraph, node: str, index: int) -> TensorType | None:
    data = graph.node(node)
    if data["kind"] == "op":
        types = data.get("types") or ()
        return types[index] if index < len(types) else None
    return data.get("type")


def _walk(graph: ModelGraph, sinks: list[str]) -> tuple[set[str], dict[str, str]]:
    """Nodes a gradient from ``sinks`` reaches, and for nodes it stops at, the consumer
    that stopped it (blocked node -> consumer op node)."""
    reached: set[str] = set(sinks)
    blocked: dict[str, str] = {}
    stack = list(sinks)
    while stack:
        node = stack.pop()
        data = graph.node(node)
        if data["kind"] == "op":
            op = REGISTRY.get(data["op"])
            if op is not None and not op.differentiable:
                for parent in graph.graph.predecessors(node):
                    blocked.setdefault(parent, node)
                continue
        for parent, _, edge in graph.graph.in_edges(node, data=True):
            if parent in reached:
                continue
            t = _tensor_type(graph, parent, edge.get("index", 0))
            if t is not None and t.dtype not in FLOAT_DTYPES:
                blocked.setdefault(parent, node)
                continue
            reached.add(parent)
            stack.append(parent)
    return reached, blocked


def _why_blocked(graph: ModelGraph, blocked: dict[str, str], value_path: set[str],
                 param: str) -> tuple[str, Span | None] | None:
    """Where the parameter's value path to the loss loses its gradient, for the note."""
    import networkx as nx  # lazily: `import graphdsl` stays light

    downstream = nx.descendants(graph.graph, param) | {param}
    for producer, consumer in blocked.items():
        if producer in downstream and consumer in value_path:
            data = graph.node(consumer)
            if data["kind"] == "op":
                op = REGISTRY.get(data["op"])
                if op is not None and not op.differentiable:
                    return f"no gradient flows back through `{data['op']}`", data.get("span")
            t = graph.node(producer)
            what = t.get("op", t.get("name", "this value"))
            return (f"the loss reads `{what}` only as an integer or boolean value, which "
                    "carries no gradient", data.get("span"))
    return None


def _value_ancestors(graph: ModelGraph, sinks: list[str]) -> set[str]:
    seen: set[str] = set(sinks)
    stack = list(sinks)
    while stack:
        for parent in graph.graph.predecessors(stack.pop()):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def check_gradients(graph: ModelGraph, sink: DiagnosticSink) -> None:
    if not graph.loss_statements:
        return  # not trained: no loss of its own (a regularizer's penalty alone is none)
    if not graph.losses and not graph.excused:
        return  # (a loss that failed to check still counts: see excused)
    reached, blocked = _walk(graph, graph.losses)
    reached |= _value_ancestors(graph, sorted(graph.excused))
    values = _value_ancestors(graph, graph.losses)
    unused: dict[str, list[str]] = {}
    for node in graph.trainable_params():
        if node not in reached:
            data = graph.node(node)
            unused.setdefault(data["owner"] or data["name"], []).append(node)
    # One diagnostic per source line: the copies a `repeat` or a loop makes from one call
    # are one mistake.
    by_span: dict[Span | None, list[str]] = {}
    for owner, nodes in unused.items():
        record = graph.layers.get(owner)
        span = record.span if record else graph.node(nodes[0])["span"]
        by_span.setdefault(span, []).append(owner)
    for span, owners in by_span.items():
        nodes = unused[owners[0]]
        names = ", ".join(f"`{graph.node(n)['name']}`" for n in nodes)
        who = f"`{owners[0]}`" if len(owners) == 1 else \
            f"`{owners[0]}` (and {len(owners) - 1} more made here: " + \
            ", ".join(f"`{o}`" for o in owners[1:]) + ")"
        why = _why_blocked(graph, blocked, values, nodes[0]) if nodes[0] in values else None
        if why is None:
            message = (f"{who} has trainable parameters that no loss reaches ({names}): "
                       "training would leave them unchanged and distributed training would "
                       "fail on unused parameters")
            notes = [Note("the losses are computed without it",
                          graph.node(graph.losses[0])["span"])] if graph.losses else []
        else:
            message = (f"{who} has trainable parameters that get no gradient ({names}): "
                       "its output reaches the loss only through values no gradient flows "
                       "through, so training would leave them unchanged")
            notes = [Note(why[0], why[1])] if why[1] is not None else []
        sink.error("unused-parameter", message, span, notes=notes,
                   help="use it in a loss, freeze it (`trainable = false`), or remove it")
