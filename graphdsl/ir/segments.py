"""Where activation checkpointing cuts the generated loss pass: one segment per copy of a
repeated block.

The IR keeps no record of `repeat`, but its copies name their layers `P.0.*`, `P.1.*`, ...
A segment is a run of consecutive ops (in the order the code is generated) that starts at
an op of copy k of such a prefix and holds the ops up to the first op of another copy or
of a layer outside the repeat; ops without a layer (additions, activations) join the run
they follow. Any cut of straight-line code into consecutive runs computes the same
numbers, so this only decides what is recomputed. A run that reads a state tensor (batch
statistics, updated in place) is left whole: recomputing it would update the state twice.
"""

from __future__ import annotations

import re
from collections import Counter

from graphdsl.ir.graph import ModelGraph

_COPY = re.compile(r"^(.*?)\.(\d+)\.")


def repeat_segments(model: ModelGraph, ops: list[str]) -> list[list[str]]:
    """Runs of ``ops`` (a generation order) to checkpoint, each a copy of a repeated block."""
    copies: dict[str, set[int]] = {}
    for n in ops:
        match = _COPY.match(model.node(n).get("layer") or "")
        if match:
            copies.setdefault(match.group(1), set()).add(int(match.group(2)))
    repeated = {p for p, ks in copies.items() if len(ks) > 1}
    labels: list[tuple[str, int] | None] = []
    current: tuple[str, int] | None = None
    for n in ops:
        layer = model.node(n).get("layer")
        match = _COPY.match(layer or "")
        if match and match.group(1) in repeated:
            current = (match.group(1), int(match.group(2)))
        elif layer:
            current = None
        labels.append(current)
    runs: list[list[str]] = []
    for i, n in enumerate(ops):
        if labels[i] is None:
            continue
        if i and labels[i - 1] == labels[i]:
            runs[-1].append(n)
        else:
            runs.append([n])
    counts = Counter(tuple(r) for r in runs)
    return [r for r in runs if counts[tuple(r)] == 1 and not _reads_state(model, r)]


def _reads_state(model: ModelGraph, run: list[str]) -> bool:
    return any(model.node(src)["kind"] == "param" and model.node(src)["role"] == "state"
               for n in run for src, _ in model.in_edges(n))
