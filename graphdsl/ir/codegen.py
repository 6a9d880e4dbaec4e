"""Generated forward code, shared by every backend.

A checked model graph becomes Python source: one line per node in topological order,
each op a call of the backend's implementation with keyword arguments named as the
registry names them. Generated code is data (source + globals) before it runs; it is
registered in ``linecache`` so tracebacks show it. A backend supplies how a parameter
is read (``param_access``), how constants are read, the expression for the training
flag, and optionally how a layer is called (``layer_call``: PyTorch calls the layer's
submodule, so per-layer hooks fire).
"""

from __future__ import annotations

import itertools
import keyword
import linecache
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from graphdsl.ir.graph import ModelGraph
from graphdsl.ops import REGISTRY
from graphdsl.ops.specs import Spec

_counter = itertools.count()


def attr_chain(base: str, dotted: str) -> str:
    """`self` + `a.3.b` -> `getattr(self.a, '3').b` (a legal expression for any segment)."""
    expr = base
    for segment in dotted.split("."):
        if segment.isidentifier() and not keyword.iskeyword(segment):
            expr += f".{segment}"
        else:
            expr = f"getattr({expr}, {segment!r})"
    return expr


def const_name(node: str) -> str:
    return "_const_" + "".join(ch if ch.isalnum() else "_" for ch in node)


def _literal(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (int, str, bool, type(None))):
        return True
    if isinstance(value, (list, tuple)):
        return all(_literal(v) for v in value)
    return False


@dataclass
class Generated:
    source: str
    globals: dict[str, Any]
    filename: str

    def functions(self) -> dict[str, Any]:
        namespace = dict(self.globals)
        exec(compile(self.source, self.filename, "exec"), namespace)  # from the checked graph
        return {k: v for k, v in namespace.items() if k.startswith("_run_")}


class Codegen:
    """Writes `_run_forward(self, inputs)` and `_run_losses(self, inputs, targets)`.

    `_run_losses` returns (outputs, terms, metrics): terms weighted so they add up to the
    total loss; metrics as the implementation's (sum, count) pairs.
    """

    def __init__(self, model: ModelGraph, impls: dict[str, Callable[..., Any]],
                 param_access: Callable[[dict[str, Any]], str],
                 constant_access: Callable[[str], str] = lambda n: f"self.{const_name(n)}",
                 training: str = "self.training", extra_args: str = "",
                 layer_call: Callable[[str], str] | None = None,
                 checkpoint: str | None = None):
        self.model = model
        # The name of a `checkpoint(fn, *tensors)` global: the loss pass then runs each
        # copy of a repeated block through it (graphdsl/ir/segments.py).
        self.checkpoint = checkpoint
        self.impls = impls
        self.param_access = param_access
        self.constant_access = constant_access
        self.training = training
        self.extra_args = extra_args
        # A layer's call as an expression of its path (a submodule, so hooks see it);
        # None: every op calls its implementation directly.
        self.layer_call = layer_call
        self.globals: dict[str, Any] = {}
        self.names: dict[str, str] = {}

    def const(self, value: Any) -> str:
        if _literal(value):
            return repr(value)
        name = f"_k{len(self.globals)}"
        self.globals[name] = value
        return name

    def needed(self, sinks: list[str]) -> set[str]:
        import networkx as nx  # lazily: `import graphdsl` stays light

        keep = set(sinks)
        for s in sinks:
            keep |= nx.ancestors(self.model.graph, s)
        return keep

    def body(self, keep: set[str], segmented: bool = False) -> list[str]:
        m = self.model
        lines: list[str] = []
        for node in m.inputs:
            if node in keep:
                lines.append(f"{self.var(node)} = inputs[{m.node(node)['name']!r}]")
        for node in m.targets:
            if node in keep:
                lines.append(f"{self.var(node)} = targets[{m.node(node)['name']!r}]")
        for node in m.params:
            if node in keep:
                lines.append(f"{self.var(node)} = {self.param_access(m.node(node))}")
        ops = [n for n in m.ops() if n in keep]
        segments = {}
        if segmented and self.checkpoint:
            from graphdsl.ir.segments import repeat_segments

            segments = {run[0]: run for run in repeat_segments(m, ops)}
        skip: set[str] = set()
        for node in ops:
            if node in segments:
                lines += self.segment(segments[node])
                skip.update(segments[node])
            elif node not in skip:
                lines.append(f"{self.var(node)} = {self.op_call(node)}")
        return lines

    def segment(self, run: list[str]) -> list[str]:
        """``run`` as a function of the tensors it reads, called through the checkpoint:
        its activations are recomputed in the backward pass instead of kept."""
        m = self.model
        inside = set(run)
        reads = list(dict.fromkeys(src for n in run for src, _ in m.in_edges(n)
                                   if src not in inside))
        live = [n for n in run if any(dst not in inside for dst in m.graph.successors(n))]
        name = f"_segment_{self.var(run[0])}"
        args = ", ".join(self.var(n) for n in reads)
        results = "".join(f"{self.var(n)}, " for n in live)
        lines = [f"def {name}({args}):"]
        lines += [f"    {self.var(n)} = {self.op_call(n)}" for n in run]
        lines.append(f"    return ({results})")
        lines.append(f"({results}) = {self.checkpoint}({name}{', ' if args else ''}{args})")
        return lines

    def var(self, node: str) -> str:
        if node not in self.names:
            kind = self.model.node(node)["kind"]
            self.names[node] = f"{kind[0]}{len(self.names)}"
        return self.names[node]

    def ref(self, src: str, index: int) -> str:
        data = self.model.node(src)
        if data["kind"] == "op" and len(data["types"]) > 1:
            return f"{self.var(src)}[{index}]"
        return self.var(src)

    def op_call(self, node: str) -> str:
        m = self.model
        data = m.node(node)
        op = REGISTRY[data["op"]]
        if not op.inputs:  # `constant`, `arange`: static values the backend made up front
            return self.constant_access(node)
        if self.layer_call is not None and data["layer"] in m.layers:
            fn = self.layer_call(data["layer"])
        else:
            fn = f"_op_{op.name}"
            self.globals[fn] = self.impls[op.name]
        ports: dict[str, list[tuple[int, str]]] = {}
        for src, edge in m.in_edges(node):
            ports.setdefault(edge["port"], []).append((edge.get("position", 0),
                                                       self.ref(src, edge.get("index", 0))))
        parts = []
        variadic = {i.name for i in op.inputs if i.variadic}
        for port, refs in ports.items():
            if port in variadic:
                parts.append(f"{port}=[{', '.join(r for _, r in sorted(refs))}]")
            else:
                parts.append(f"{port}={refs[0][1]}")
        for slot in op.inputs:
            if slot.name not in ports:
                parts.append(f"{slot.name}={'[]' if slot.variadic else 'None'}")
        # a name can have several specs (Bidirectional's bias, one per wrapped kind)
        for name in dict.fromkeys(spec.name for spec in op.params):
            if name not in ports:
                parts.append(f"{name}=None")
        for key, value in data["args"].items():
            if isinstance(value, Spec) and value.kind == "activation":
                value = value.name
            parts.append(f"{key}={self.const(value)}")
        if op.random:
            parts.append(f"training={self.training}")
        return f"{fn}({', '.join(parts)})"

    def source_of(self, node: str) -> tuple[str, int]:
        (src, edge), = self.model.in_edges(node)
        return src, edge.get("index", 0)

    def generate(self) -> Generated:
        m = self.model
        outputs = {m.node(n)["name"]: n for n in m.outputs}
        extra = f", {self.extra_args}" if self.extra_args else ""
        lines = [f"def _run_forward(self, inputs{extra}):"]
        lines += ["    " + line for line in self.body(self.needed(list(outputs.values())))]
        returned = ", ".join(f"{name!r}: {self.ref(*self.source_of(n))}"
                             for name, n in outputs.items())
        lines.append(f"    return {{{returned}}}")
        lines.append("")
        lines.append(f"def _run_losses(self, inputs, targets{extra}):")
        keep = self.needed(list(outputs.values()) + m.losses + m.metrics)
        lines += ["    " + line for line in self.body(keep, segmented=True)]
        lines.append(f"    outputs = {{{returned}}}")
        terms = []
        for n in m.losses:
            d = m.node(n)
            src = self.ref(*self.source_of(n))
            terms.append(f"{d['name']!r}: {src}" if d["weight"] == 1.0 else
                         f"{d['name']!r}: {self.const(d['weight'])} * {src}")
        lines.append("    terms = {" + ", ".join(terms) + "}")
        metrics = [f"{m.node(n)['name']!r}: {self.ref(*self.source_of(n))}" for n in m.metrics]
        lines.append("    metrics = {" + ", ".join(metrics) + "}")
        lines.append("    return outputs, terms, metrics")
        source = "\n".join(lines) + "\n"
        filename = f"<graphdsl:{m.name}:{next(_counter)}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        return Generated(source, self.globals, filename)
