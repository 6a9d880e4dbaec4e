"""Connectivity: cycles, unused inputs and targets, heads without a loss."""

from __future__ import annotations

from ..diagnostics import DiagnosticSink
from ..ir.graph import ModelGraph


def _ancestors_of(graph: ModelGraph, sinks: list[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(sinks)
    while stack:
        node = stack.pop()
        for parent in graph.graph.predecessors(node):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def check_connectivity(graph: ModelGraph, sink: DiagnosticSink) -> None:
    import networkx as nx  # lazily: `import graphdsl` stays light

    # Elaboration adds a node only after the nodes it reads, so every edge runs forward in
    # creation order and the graph is acyclic; only when one does not is a cycle searched
    # for (find_cycle alone restarts from every root and is quadratic on long chains).
    order = {n: i for i, n in enumerate(graph.graph)}
    cycle = None
    if any(order[u] >= order[v] for u, v in graph.graph.edges()) and \
            not nx.is_directed_acyclic_graph(graph.graph):
        try:
            cycle = nx.find_cycle(graph.graph)
        except nx.NetworkXNoCycle:
            cycle = None
    if cycle:
        first = graph.node(cycle[0][0])
        sink.error("cycle", f"model `{graph.name}` has a cycle through "
                   f"{len(cycle)} nodes", first.get("span"))
        return
    excused = sorted(graph.excused)
    results = graph.outputs + graph.losses + graph.metrics + excused
    used = _ancestors_of(graph, results) | graph.excused
    for node in graph.inputs:
        if node not in used:
            data = graph.node(node)
            sink.warning("unused-input", f"input `{data['name']}` of model `{graph.name}` "
                         "reaches no output, loss or metric", data["span"],
                         help="remove it, or use it")
    trained = _ancestors_of(graph, graph.losses + graph.metrics + excused) | graph.excused
    for node in graph.targets:
        if node not in trained:
            data = graph.node(node)
            sink.warning("unused-target", f"target `{data['name']}` is used by no loss or "
                         "metric", data["span"])
    if not graph.losses:
        if graph.excused:  # a loss statement failed: "no loss" would only echo it
            return
        for node in graph.outputs:
            data = graph.node(node)
            if not data["inference"]:
                sink.warning("head-without-loss", f"output `{data['name']}` has no loss",
                             data["span"], help="mark it `inference output ...` if it is only "
                             "for prediction, or add a loss")
        return
    loss_ancestors = _ancestors_of(graph, graph.losses + excused) | graph.excused
    for node in graph.outputs:
        data = graph.node(node)
        source = next(iter(graph.graph.predecessors(node)), None)
        if data["inference"] or source is None:
            continue
        if source not in loss_ancestors:
            sink.warning("head-without-loss", f"output `{data['name']}` reaches no loss",
                         data["span"], help="mark it `inference output ...` if it is only for "
                         "prediction, or add a loss term for it")
