"""Checks: small passes over a model's graph, each reporting diagnostics, never raising."""

from __future__ import annotations

from ..diagnostics import DiagnosticSink
from ..ir.graph import ModelGraph
from .connectivity import check_connectivity
from .resources import check_memory


def run_checks(graph: ModelGraph, sink: DiagnosticSink, memory_limit: int,
               elaborated_cleanly: bool = True) -> None:
    # After an elaboration error the graph is incomplete: connectivity findings would only
    # echo that error (an input "unused" because the expression using it failed).
    if elaborated_cleanly:
        check_connectivity(graph, sink)
    check_memory(graph, sink, memory_limit)


__all__ = ["run_checks"]
