"""Checks: small passes over a model's graph, each reporting diagnostics, never raising."""

from __future__ import annotations

from ..diagnostics import DiagnosticSink
from ..ir.graph import ModelGraph
from .connectivity import check_connectivity
from .gradients import check_gradients
from .leakage import check_leakage
from .resources import check_memory


def run_checks(graph: ModelGraph, sink: DiagnosticSink, memory_limit: int) -> None:
    # These run after elaboration errors too: what a failed statement read is in
    # graph.excused, so it is not reported again as unused.
    check_connectivity(graph, sink)
    check_gradients(graph, sink)
    check_leakage(graph, sink)
    check_memory(graph, sink, memory_limit)


__all__ = ["run_checks"]
