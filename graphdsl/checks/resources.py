"""Resource sanity: reject a model whose parameters exceed the memory limit, before any
framework allocates them."""

from __future__ import annotations

from ..diagnostics import DiagnosticSink
from ..ir import ModelGraph


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def parse_bytes(text: str) -> int:
    """`8GB`, `512MiB`, `1e9` -> bytes. Raises ValueError."""
    t = text.strip().lower().replace(" ", "")
    units = {"tib": 1024**4, "gib": 1024**3, "mib": 1024**2, "kib": 1024, "tb": 10**12,
             "gb": 10**9, "mb": 10**6, "kb": 10**3, "t": 1024**4, "g": 1024**3, "m": 1024**2,
             "k": 1024, "b": 1}
    for suffix, factor in units.items():
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * factor)
    return int(float(t))


def check_memory(graph: ModelGraph, sink: DiagnosticSink, limit: int) -> None:
    weights = graph.parameter_bytes()
    # Training holds the parameters, their gradients and two Adam moments.
    training = weights + 3 * 4 * graph.trainable_count if graph.losses else weights
    if training > limit:
        sink.error("memory-limit",
                   f"model `{graph.name}` needs about {human_bytes(training)} for its "
                   f"{graph.parameter_count:,} parameters"
                   + (" with gradients and optimizer state" if graph.losses else "")
                   + f", over the limit of {human_bytes(limit)}", graph.span,
                   help="shrink the model, or raise the limit with --memory-limit")
