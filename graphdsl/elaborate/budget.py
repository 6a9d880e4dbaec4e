"""The elaboration budget: how large one model may grow before the compiler stops."""

from __future__ import annotations

from graphdsl.diagnostics import Span

# Nodes one model may expand to. Published architectures need a few thousand; the budget
# stops `repeat 10000` nested three deep, or blocks that each call the previous twice,
# within seconds instead of running for hours.
MAX_NODES = 100_000


class BudgetExceeded(Exception):
    """Raised out of any depth of elaboration when a model grows past MAX_NODES."""

    def __init__(self, span: Span | None):
        super().__init__("node budget exceeded")
        self.span = span
