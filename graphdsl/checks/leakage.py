"""Label leakage: an output that depends on a target.

Targets exist only while training; an output computed from one is wrong at prediction time
(the model sees the answer) and cannot even be computed without labels. Ops that read a
target on the way to a loss or metric (a `where` mask from the labels, a one-hot) are fine.
"""

from __future__ import annotations

from ..diagnostics import DiagnosticSink, Note, Span
from ..ir.graph import ModelGraph


def check_leakage(graph: ModelGraph, sink: DiagnosticSink) -> None:
    import networkx as nx  # lazily: `import graphdsl` stays light

    if not graph.targets or not graph.outputs:
        return
    outputs = set(graph.outputs)
    for target in graph.targets:
        reached = nx.descendants(graph.graph, target)
        leaked = [o for o in graph.outputs if o in reached]
        if not leaked:
            continue
        # Point at the first op that reads the target on the way to an output.
        reader = next((c for c in graph.graph.successors(target)
                       if c in outputs or outputs & nx.descendants(graph.graph, c)), None)
        data = graph.node(target)
        out = graph.node(leaked[0])
        span = graph.node(reader).get("span") if reader is not None else None
        if target in graph.target_calls and not _in_model_body(graph, span):
            span = graph.target_calls[target]  # read inside a block or model it calls
        sink.error("label-leak", f"output `{out['name']}` is computed from target "
                   f"`{data['name']}`: the forward pass reads the label, which does not exist "
                   "when the model predicts", span or out.get("span"),
                   notes=[Note(f"`{data['name']}` is declared a target here", data["span"]),
                          Note(f"output `{out['name']}`", out.get("span"))],
                   help="compute the output from inputs only; use the target in a loss or "
                        "metric, or declare it an `input` if the model really reads it")


def _in_model_body(graph: ModelGraph, span: Span | None) -> bool:
    outer = graph.definition
    return span is not None and outer is not None and span.file == outer.file and \
        outer.line <= span.line <= outer.end_line
