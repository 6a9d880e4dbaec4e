"""The picture `graphdsl compile --dot/--svg` draws, built with pydot (Graphviz's language
written by a library, so any name or label is quoted correctly).

What is drawn: inputs, targets, outputs, loss terms and metrics; one box per op (a layer's
call shows its path, op and output type; its own parameters are inside the box, not
drawn); a parameter as a node only when it is tied (red, its edges dashed red) or comes
from a `param` statement. A shared layer's calls are bold; an edge carrying a padding
mask is dotted blue; a loss term is a diamond.

Clusters: every block instance (a layer path with layers under it) and every `repeat`
(a path whose children are numbered 0, 1, ...) is a cluster. A repeat is drawn as one
copy labelled with its count unless ``expand``: the other copies' nodes map to the first
copy's, so edges from outside still show. Ops that belong to no layer (arithmetic,
indexing) join the cluster of the layer call made just before them when their source line
lies within that cluster's lines. A legend explains the styles.
"""

from __future__ import annotations

from typing import Any

from graphdsl.ir.graph import ModelGraph

_STYLE = {
    "input": {"shape": "invhouse", "style": "filled", "fillcolor": "#d0e8ff"},
    "target": {"shape": "invhouse", "style": "filled", "fillcolor": "#ffe8c0"},
    "param": {"shape": "cylinder", "style": "filled", "fillcolor": "#eeeeee"},
    "output": {"shape": "house", "style": "filled", "fillcolor": "#d8f5d0"},
    "loss": {"shape": "diamond", "style": "filled", "fillcolor": "#ffd0d0"},
    "metric": {"shape": "diamond", "style": "filled", "fillcolor": "#f0f0ff"},
    "op": {"shape": "box", "style": "rounded"},
}


def _text(*lines: Any) -> str:
    """A label: user text with backslashes kept literal, lines joined by DOT's `\\n`."""
    return "\\n".join(str(line).replace("\\", "\\\\") for line in lines)


class _Clusters:
    """Which cluster (a layer-path prefix) each node belongs to, and repeat structure."""

    def __init__(self, m: ModelGraph):
        self.m = m
        children: dict[str, set[str]] = {}
        for path in m.layers:
            parts = path.split(".")
            for i in range(1, len(parts)):
                children.setdefault(".".join(parts[:i]), set()).add(parts[i])
        self.prefixes = set(children)
        # a repeat: its children are exactly 0..n-1
        self.repeats = {p: len(c) for p, c in children.items()
                        if c and all(s.isdigit() for s in c) and
                        {int(s) for s in c} == set(range(len(c)))}
        self.of: dict[str, str] = {}
        lines: dict[str, tuple[int, int]] = {}
        for node, data in m.graph.nodes(data=True):
            owned = self._path(data)
            if owned is not None:
                cluster = owned.rpartition(".")[0]
                self.of[node] = cluster
                span = data.get("span")
                if span is not None:
                    prefix = cluster
                    while prefix:
                        lo, hi = lines.get(prefix, (span.line, span.line))
                        lines[prefix] = (min(lo, span.line), max(hi, span.end_line or span.line))
                        prefix = prefix.rpartition(".")[0]
        previous = ""
        for node, data in m.graph.nodes(data=True):
            if node in self.of:
                previous = self.of[node]
                continue
            if data["kind"] != "op":
                continue
            span = data.get("span")
            cluster = previous
            while cluster and (span is None or cluster not in lines or
                               not lines[cluster][0] <= span.line <= lines[cluster][1]):
                cluster = cluster.rpartition(".")[0]
            self.of[node] = cluster

    @staticmethod
    def _path(data: dict[str, Any]) -> str | None:
        if data["kind"] == "op" and data.get("layer"):
            return str(data["layer"])
        if data["kind"] == "param":
            return str(data["owner"] or data["name"])
        return None

    def chain(self, cluster: str) -> list[str]:
        parts = cluster.split(".") if cluster else []
        return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]

    def copy_of(self, cluster: str) -> tuple[str, int] | None:
        """(repeat path, copy index) of the outermost repeat copy that holds ``cluster``."""
        for prefix in self.chain(cluster):
            head, _, index = prefix.rpartition(".")
            if head in self.repeats and index.isdigit():
                return head, int(index)
        return None


def to_dot(m: ModelGraph, expand: bool = False) -> str:
    return str(to_graph(m, expand).to_string())


def to_graph(m: ModelGraph, expand: bool = False) -> Any:
    """The picture as a ``pydot.Dot`` (``.to_string()``, ``.create(format="svg")``)."""
    import importlib

    pydot: Any = importlib.import_module("pydot")

    clusters = _Clusters(m)
    ties = m.ties()
    masks = {t.mask for _, d in m.graph.nodes(data=True) for t in d.get("types", ()) if t.mask}
    graph = pydot.Dot("G", graph_type="digraph", rankdir="TB", compound="true",
                      label=_text(f"model {m.name}"), labelloc="t", fontname="Helvetica",
                      nodesep="0.2", ranksep="0.22",
                      # at most 20 x 11 inches (a 1920 x 1080 screen at 96 dpi): larger
                      # drawings are scaled down to fit, smaller ones stay as drawn
                      size="20,11")
    graph.set_node_defaults(fontname="Helvetica", fontsize="9", height="0.28")
    graph.set_edge_defaults(fontname="Helvetica", fontsize="8", arrowsize="0.6")

    # -- which nodes are drawn, and what the hidden copies map to
    order = {n: i for i, n in enumerate(m.graph.nodes)}
    members: dict[tuple[str, int], list[str]] = {}
    for node in m.graph.nodes:
        where = clusters.copy_of(clusters.of.get(node, ""))
        if where is not None:
            members.setdefault(where, []).append(node)
    rep: dict[str, str] = {n: n for n in m.graph.nodes}
    collapsed: set[str] = set()
    if not expand:
        for path, count in clusters.repeats.items():
            first = members.get((path, 0), [])
            copies = [members.get((path, i), []) for i in range(1, count)]
            if not first or any(len(c) != len(first) for c in copies):
                continue  # copies that differ in shape are drawn in full
            if clusters.copy_of(path) is not None:
                continue  # a repeat inside a collapsed repeat's copy follows that copy
            collapsed.add(path)
            for copy in copies:
                for node, counterpart in zip(copy, first, strict=True):
                    rep[node] = counterpart

    def drawn(node: str) -> bool:
        data = m.node(node)
        if rep[node] != node:
            return False
        if data["kind"] == "param":
            return data["name"] in ties or data["owner"] is None
        return True

    ids = {n: f"n{i}" for i, n in enumerate(m.graph.nodes)}
    subgraphs: dict[str, Any] = {}

    def holder(cluster: str) -> Any:
        target = graph
        for prefix in clusters.chain(cluster):
            if prefix not in clusters.prefixes:
                break
            if prefix not in subgraphs:
                label = prefix
                if prefix in clusters.repeats:
                    count = clusters.repeats[prefix]
                    label = f"{prefix}  (repeat x {count})" if prefix not in collapsed else \
                        f"{prefix}  x {count}  (one copy drawn; --expand draws all)"
                sub = pydot.Cluster(f"c{len(subgraphs)}", label=_text(label),
                                    style="rounded,dashed" if prefix in clusters.repeats
                                    else "rounded", color="#888888", fontsize="10")
                subgraphs[prefix] = sub
                target.add_subgraph(sub)
            target = subgraphs[prefix]
        return target

    for node, data in m.graph.nodes(data=True):
        if not drawn(node):
            continue
        attrs = dict(_STYLE[data["kind"]])
        attrs["label"] = _label(data, clusters.of.get(node, ""), _input_types(m, node))
        if data["kind"] == "param" and data["name"] in ties:
            attrs.update(color="red", penwidth="2")
        if data["kind"] == "op" and data.get("layer") in m.layers and \
                m.layers[data["layer"]].shared:
            attrs["penwidth"] = "3"
        holder(clusters.of.get(node, "")).add_node(pydot.Node(ids[node], **attrs))

    seen: set[tuple[str, str, str]] = set()
    for u, v, d in sorted(m.graph.edges(data=True), key=lambda e: (order[e[0]], order[e[1]])):
        cu, cv = clusters.copy_of(clusters.of.get(u, "")), clusters.copy_of(clusters.of.get(v, ""))
        if not expand and cu and cv and cu[0] == cv[0] and cu[0] in collapsed and cu != cv:
            continue  # one copy feeding the next: drawn once, as the repeat's count
        a, b = rep[u], rep[v]
        if a == b or not drawn(a) or not drawn(b):
            continue
        key = (a, b, d["port"])
        if key in seen:
            continue
        seen.add(key)
        attrs = {"label": _text(d["port"])} if d["port"] not in ("x", "inputs", "value") \
            else {}
        src = m.node(u)
        if src["kind"] == "param" and src["name"] in ties:
            attrs.update(style="dashed", color="red")
        if u in masks and d["port"].endswith("mask"):
            attrs.update(style="dotted", color="blue")
        graph.add_edge(pydot.Edge(ids[a], ids[b], **attrs))
    graph.add_subgraph(_legend(pydot))
    return graph


def _legend(pydot: Any) -> Any:
    legend = pydot.Cluster("legend", label="legend", style="rounded", color="#bbbbbb",
                           fontsize="9")
    legend.add_node(pydot.Node("legend_tie_a", label="tied parameter", shape="cylinder",
                               color="red", penwidth="2", fontsize="8"))
    legend.add_node(pydot.Node("legend_tie_b", label="its users", shape="box", fontsize="8"))
    legend.add_edge(pydot.Edge("legend_tie_a", "legend_tie_b", style="dashed", color="red"))
    legend.add_node(pydot.Node("legend_shared", label="shared layer (called twice or more)",
                               shape="box", style="rounded", penwidth="3", fontsize="8"))
    legend.add_node(pydot.Node("legend_mask_a", label="masked tensor", shape="box",
                               fontsize="8"))
    legend.add_node(pydot.Node("legend_mask_b", label="op using the mask", shape="box",
                               fontsize="8"))
    legend.add_edge(pydot.Edge("legend_mask_a", "legend_mask_b", label="mask", style="dotted",
                               color="blue"))
    legend.add_node(pydot.Node("legend_loss", label="loss term (x weight)", shape="diamond",
                               style="filled", fillcolor="#ffd0d0", fontsize="8"))
    return legend


def _input_types(m: ModelGraph, node: str) -> list[Any]:
    out = []
    for src, edge in m.in_edges(node):
        data = m.node(src)
        if data["kind"] in ("input", "target", "param"):
            out.append(data["type"])
        elif data["kind"] == "op" and data["types"]:
            out.append(data["types"][min(edge.get("index", 0), len(data["types"]) - 1)])
    return out


def _label(d: dict[str, Any], cluster: str, inputs: list[Any] | None = None) -> str:
    """Inside a cluster a layer shows its path below the cluster's (whose label says it).
    An op shows its output type where it differs from its inputs' (a LayerNormalization
    keeps [B, T, 768]; a Dense to 3072 says so), which keeps the picture short."""
    kind = d["kind"]
    if kind == "op":
        t = d["types"][0] if d["types"] else None
        layer = d["layer"]
        if layer and cluster and layer.startswith(cluster + "."):
            layer = layer[len(cluster) + 1:]
        lines = [f"{layer}: {d['op']}" if layer else d["op"]]
        if t is not None and (t.mask or not any(str(t) == str(i) for i in inputs or ())):
            lines.append(str(t) + (" (masked)" if t.mask else ""))
        return _text(*lines)
    if kind == "loss":
        return _text(f"loss {d['name']}", f"x {d['weight']:g}")
    if kind in ("input", "target", "param"):
        return _text(f"{kind} {d['name']}", d["type"])
    return _text(f"{kind} {d['name']}")


