"""Resource sanity: reject a model whose parameters exceed the memory limit, before any
framework allocates them."""

from __future__ import annotations

import os

from ..diagnostics import DiagnosticSink
from ..ir.graph import ModelGraph

FALLBACK_MEMORY = 64 * 1024**3  # where the operating system does not say

BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB")


def human_bytes(n: float, decimal: bool = False) -> str:
    base, units = (1000, DECIMAL_UNITS) if decimal else (1024, BINARY_UNITS)
    for unit in units:
        if n < base or unit == units[-1]:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= base
    raise AssertionError("unreachable")


def limit_text(limit: int) -> tuple[str, bool]:
    """A limit as the user most likely wrote it (`1 MB`, `8 GiB`), and whether its unit is
    decimal, so that sizes compared with it are shown in the same kind of unit."""
    for exponent in range(len(BINARY_UNITS) - 1, 0, -1):
        if limit % 1024**exponent == 0 and limit // 1024**exponent < 100_000:
            return f"{limit // 1024**exponent} {BINARY_UNITS[exponent]}", False
    for exponent in range(len(DECIMAL_UNITS) - 1, 0, -1):
        if limit % 1000**exponent == 0 and limit // 1000**exponent < 100_000:
            return f"{limit // 1000**exponent} {DECIMAL_UNITS[exponent]}", True
    return human_bytes(limit), False  # the machine's memory: not a round number


def machine_memory() -> int:
    """The machine's physical memory: the default limit for a model's parameters."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return FALLBACK_MEMORY


def available_memory() -> int:
    """Memory a new allocation can get now (MemAvailable on Linux), for sizing what is read
    from a file before reading it."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_AVPHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return machine_memory()


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
        shown_limit, decimal = limit_text(limit)
        sink.error("memory-limit",
                   f"model `{graph.name}` needs about {human_bytes(training, decimal)} for its "
                   f"{graph.parameter_count:,} parameters"
                   + (" with gradients and optimizer state" if graph.losses else "")
                   + f", over the limit of {shown_limit}", graph.span,
                   help="shrink the model, or raise the limit with --memory-limit")
