"""One ``nn.Module`` class per layer op of the registry (``Dense``, ``Embedding``, ...).

Each layer of a program is an instance, at the path its DSL name gives, holding that
layer's own parameters (so ``state_dict()`` keys stay the canonical names). The
generated forward calls the instance with every tensor, parameter and argument as
keywords, exactly what the op's implementation takes; so per-layer forward hooks fire,
``print(module)`` reads like the program, and a tied parameter passed in from elsewhere
is simply another keyword. The classes are module-level names, so pickling a module
finds them by name.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graphdsl.ir.graph import LayerRecord, ModelGraph
from graphdsl.ops import REGISTRY
from graphdsl.ops import load_all as load_registry
from graphdsl.ops.specs import Spec

from .ops import load_all


class Layer(nn.Module):
    """A layer of the program; ``forward(**keywords)`` is the op's implementation itself
    (each subclass's ``forward`` is that function, so a call costs one function call)."""

    op_name = ""

    def __init__(self, description: str = ""):
        super().__init__()
        self.description = description

    def extra_repr(self) -> str:
        return self.description



load_registry()
_IMPLS = load_all()
LAYER_CLASSES: dict[str, type[Layer]] = {}
for _name, _op in sorted(REGISTRY.items()):
    if _op.kind == "layer" and _name.isidentifier():
        LAYER_CLASSES[_name] = type(_name, (Layer,), {
            "op_name": _name, "forward": staticmethod(_IMPLS[_name]),
            "__module__": __name__, "__qualname__": _name,
            "__doc__": f"The graphdsl `{_name}` layer: {_op.summary}"})
        globals()[_name] = LAYER_CLASSES[_name]


def _show(value: Any) -> str:
    if isinstance(value, Spec):
        return value.name if value.kind == "activation" or not value.args else str(value)
    if isinstance(value, torch.Tensor):
        return f"tensor{list(value.shape)}"
    return repr(value)


def describe(model: ModelGraph, record: LayerRecord) -> str:
    """What the repr shows: input features, the arguments that are not defaults, and
    which parameters are tied (read from another layer or a `param` statement)."""
    op = REGISTRY[record.op]
    parts = []
    if record.calls and op.params:  # the input width says what a weight matrix maps
        first = record.calls[0]
        for src, edge in model.in_edges(first):
            if edge["port"] == (op.inputs[0].name if op.inputs else None):
                t = model.node(src).get("type") or (model.node(src).get("types") or (None,))[
                    edge.get("index", 0)]
                if t is not None and t.shape and isinstance(t.shape[-1], int):
                    parts.append(f"in_features={t.shape[-1]}")
                break
    args = model.node(record.calls[0])["args"] if record.calls else record.args
    for arg in op.args:
        if arg.name not in args:
            continue
        value = args[arg.name]
        if arg.required or value != arg.default:
            parts.append(f"{arg.name}={_show(value)}")
    for name, node in record.params.items():
        data = model.node(node)
        if data["kind"] != "param" or data.get("owner") != record.path:
            parts.append(f"tied {name}")
    if record.shared:
        parts.append(f"shared x{len(record.calls)}")
    return ", ".join(parts)


def make_layer(model: ModelGraph, record: LayerRecord) -> nn.Module:
    cls = LAYER_CLASSES.get(record.op, Layer)
    return cls(describe(model, record))
