"""The graph IR: one networkx MultiDiGraph per model, backend-neutral.

Node kinds (attribute ``kind``), a closed set:

- ``input`` / ``target``: ``name``, ``type`` (TensorType).
- ``param``: a parameter or state tensor. ``name`` (canonical dotted path, also the
  checkpoint key), ``type``, ``role`` ("weight" or "state"), ``trainable``, ``init``
  (Spec), ``constraint`` (Spec or None), ``kernel_mask`` (nested list or None),
  ``owner`` (the layer path that created it, or None for a `param` statement).
- ``op``: ``op`` (registry name), ``args`` (checked arguments), ``layer`` (the path of the
  layer it is a call of, or None), ``types`` (tuple of output TensorTypes).
- ``output``: ``name``, ``inference`` (bool), ``type``.
- ``loss``: ``name``, ``weight`` (float): the total loss is sum(weight * term).
- ``metric``: ``name``.

Every node has ``span`` (where it came from, or None). Edges run producer -> consumer
with ``port`` (the consumer's input or parameter name), ``position`` (for variadic
inputs) and ``index`` (which output of the producer).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphdsl.diagnostics import Span
from graphdsl.ir.types import DTYPE_BYTES, TensorType, numel

if TYPE_CHECKING:
    import networkx as nx


def _new_graph() -> nx.MultiDiGraph:
    import networkx as nx  # lazily: `import graphdsl` stays light

    return nx.MultiDiGraph()

NODE_KINDS = ("input", "target", "param", "op", "output", "loss", "metric")


@dataclass
class LayerRecord:
    """One layer instance: its op, its arguments, its parameters and its calls."""

    path: str
    op: str
    args: dict[str, Any]
    span: Span | None
    params: dict[str, str] = field(default_factory=dict)  # parameter name -> node id
    calls: list[str] = field(default_factory=list)  # op node ids
    trainable: bool = True

    @property
    def shared(self) -> bool:
        return len(self.calls) > 1


@dataclass
class TrainConfig:
    """A checked `train` block."""

    settings: dict[str, Any] = field(default_factory=dict)
    optimizers: list[tuple[str, Any, Span]] = field(default_factory=list)  # pattern, Spec, span
    groups: dict[str, str] = field(default_factory=dict)  # parameter name -> pattern
    freeze: list[str] = field(default_factory=list)
    restore: list[tuple[str, str]] = field(default_factory=list)  # pattern, path
    span: Span | None = None


@dataclass
class ModelGraph:
    name: str
    file: str
    span: Span | None
    graph: nx.MultiDiGraph = field(default_factory=_new_graph)
    inputs: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    layers: dict[str, LayerRecord] = field(default_factory=dict)
    submodels: dict[str, str] = field(default_factory=dict)  # path prefix -> model name
    train: TrainConfig | None = None
    # Nodes read by a statement that had an error: the checks count them as used, so one
    # mistake is reported once, not again as an unused input or parameter.
    excused: set[str] = field(default_factory=set)
    formals: dict[str, Any] = field(default_factory=dict)
    # The formals given from outside (`--set`, ``args=``): rebuilding the model needs them.
    arguments: dict[str, Any] = field(default_factory=dict)
    loss_statements: int = 0  # including ones whose term failed to check
    # A target passed straight to a block or model call in the model's own body -> where:
    # a leak through the call is the caller's mistake, not a line of the block.
    target_calls: dict[str, Span] = field(default_factory=dict)
    definition: Span | None = None  # the whole `model ... { }`

    # -- queries
    def node(self, node_id: str) -> dict[str, Any]:
        return self.graph.nodes[node_id]

    def ops(self) -> Iterator[str]:
        """Op nodes in a topological order (creation order breaks ties: deterministic)."""
        import networkx as nx

        order = {n: i for i, n in enumerate(self.graph.nodes)}
        for n in nx.lexicographical_topological_sort(self.graph, key=lambda n: order[n]):
            if self.graph.nodes[n]["kind"] == "op":
                yield n

    def in_edges(self, node_id: str) -> list[tuple[str, dict[str, Any]]]:
        """(producer, edge attributes) for each input of a node, in port order."""
        edges = [(u, d) for u, _, d in self.graph.in_edges(node_id, data=True)]
        return sorted(edges, key=lambda e: (e[1]["port"], e[1].get("position", 0)))

    def param_nodes(self, role: str | None = "weight") -> list[str]:
        return [p for p in self.params if role is None or self.graph.nodes[p]["role"] == role]

    def trainable_params(self) -> list[str]:
        return [p for p in self.param_nodes() if self.graph.nodes[p]["trainable"]]

    def count(self, nodes: list[str]) -> int:
        total = 0
        for p in nodes:
            shape = self.graph.nodes[p]["type"].shape
            total += (numel(shape) or 0) if shape is not None else 0
        return total

    @property
    def parameter_count(self) -> int:
        return self.count(self.param_nodes())

    @property
    def trainable_count(self) -> int:
        return self.count(self.trainable_params())

    def parameter_bytes(self) -> int:
        total = 0
        for p in self.param_nodes(None):
            t: TensorType = self.graph.nodes[p]["type"]
            total += (numel(t.shape) or 0 if t.shape is not None else 0) * DTYPE_BYTES[t.dtype]
        return total

    def ties(self) -> dict[str, list[str]]:
        """Parameters used by a layer that does not own them, or by two or more layers."""
        ties: dict[str, list[str]] = {}
        for p in self.param_nodes():
            owner = self.graph.nodes[p]["owner"]
            layers = {u for u in self._consumer_layers(p) if not u.startswith("<")}
            if owner is not None:
                layers.add(owner)
            if len(layers) > 1:
                ties[self.graph.nodes[p]["name"]] = sorted(layers)
        return ties

    def _consumer_layers(self, node_id: str) -> set[str]:
        """Layers that read a tensor directly or through parameter-only ops (a transpose)."""
        found: set[str] = set()
        stack = [node_id]
        seen = set()
        while stack:
            n = stack.pop()
            for _, v in self.graph.out_edges(n):
                if v in seen:
                    continue
                seen.add(v)
                data = self.graph.nodes[v]
                if data["kind"] != "op":
                    continue
                if data["layer"] is not None:
                    found.add(data["layer"])
                elif not _depends_on_data(self, v):
                    stack.append(v)
                else:
                    found.add(f"<{data['op']}>")
        return found

    def graph_hash(self) -> str:
        """sha256 of a canonical serialisation: same source, same hash."""
        payload = {
            "name": self.name,
            "nodes": [[n, _jsonable(d)] for n, d in self.graph.nodes(data=True)],
            "edges": sorted([u, v, d["port"], d.get("position", 0), d.get("index", 0)]
                            for u, v, d in self.graph.edges(data=True)),
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def _depends_on_data(model: ModelGraph, node_id: str) -> bool:
    """True when an op reads an input or target (rather than only parameters)."""
    import networkx as nx

    for anc in nx.ancestors(model.graph, node_id):
        if model.graph.nodes[anc]["kind"] in ("input", "target"):
            return True
    return False


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if key == "span":
            continue
        out[key] = value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
    return out
