"""The program's layers as a Keras functional graph, for the tools that read one.

A GraphModel computes with its generated forward (model.py says why); this graph only
records which layer feeds which. Each program layer's ParameterGroup is called, once per
call in the program, on the symbolic outputs of the nearest layers (or inputs) upstream
of it, and answers with the type the compiler inferred. Built as a Keras functional
model, the GraphModel then has what Keras' tools expect: ``model.layers`` in data-flow
order, a "Connected to" column in ``model.summary()``, a box per layer and an arrow per
connection in ``keras.utils.plot_model``.
"""

from __future__ import annotations

from typing import Any

import keras

from graphdsl.ir.graph import ModelGraph
from graphdsl.ir.types import TensorType


def keras_type(t: TensorType) -> dict[str, Any]:
    """A program type as Keras says it: a named size is `None`, bfloat16 is computed in
    float32 (the model's variables are)."""
    shape = None if t.shape is None else tuple(d if isinstance(d, int) else None
                                               for d in t.shape)
    return {"shape": shape, "dtype": "float32" if t.dtype == "bfloat16" else t.dtype}


def _unique(tensors: list[keras.KerasTensor]) -> list[keras.KerasTensor]:
    seen: dict[int, keras.KerasTensor] = {}
    for t in tensors:
        seen.setdefault(id(t), t)
    return list(seen.values())


def _call(layer: Any, upstream: list[keras.KerasTensor], out: TensorType) -> keras.KerasTensor:
    kind = keras_type(out)
    return layer(upstream[0] if len(upstream) == 1 else upstream,
                 output_shape=kind["shape"] or (None,), output_dtype=kind["dtype"])


def layer_graph(ir: ModelGraph, groups: dict[str, Any], output_layer: Any,
                ) -> tuple[dict[str, keras.KerasTensor], dict[str, keras.KerasTensor]]:
    """Symbolic inputs and outputs (by program name) linking the layers in ``groups``.

    ``groups`` holds a ParameterGroup per layer path and per path of `param` statements;
    ``output_layer(name)`` makes the layer that joins an output computed from several
    layers. A layer or a `param` group that reads no data (positions from `arange`) is
    drawn reading the first input.
    """
    inputs = {}
    for n in ir.inputs:
        data = ir.node(n)
        kind = keras_type(data["type"])
        inputs[data["name"]] = keras.Input(batch_shape=kind["shape"], dtype=kind["dtype"],
                                           name=data["name"])
    # A functional graph starts from an input: a program without one (only `param`s) is
    # drawn from a placeholder that the model's call never reads.
    first = next(iter(inputs.values())) if inputs else keras.Input(batch_shape=(),
                                                                   name="no_inputs")
    frontier: dict[str, list[keras.KerasTensor]] = {
        n: [inputs[ir.node(n)["name"]]] for n in ir.inputs}
    calls = {c: path for path, record in ir.layers.items() for c in record.calls}
    param_groups: dict[str, keras.KerasTensor] = {}

    def upstream_of(node: str) -> list[keras.KerasTensor]:
        found: list[keras.KerasTensor] = []
        params = []
        for producer, _ in ir.in_edges(node):
            data = ir.node(producer)
            if data["kind"] == "param":
                path = data["name"].rpartition(".")[0] or "params"
                if path not in ir.layers:
                    params.append((path, data["type"]))
            else:
                found.extend(frontier.get(producer, []))
        for path, t in params:
            if path in param_groups:
                found.append(param_groups[path])
            else:  # drawn first where it meets the data: between the data and its reader
                param_groups[path] = _call(groups[path], _unique(found) or [first], t)
                found = [param_groups[path]]
        return _unique(found)

    for node in ir.ops():
        upstream = upstream_of(node)
        if node in calls:
            data = ir.node(node)
            out = data["types"][0] if data["types"] else None
            layer = groups[calls[node]]
            frontier[node] = [_call(layer, upstream or [first], out)] if out is not None \
                else upstream
        else:
            frontier[node] = upstream
    outputs = {}
    for n in ir.outputs:
        data = ir.node(n)
        upstream = upstream_of(n) or [first]
        outputs[data["name"]] = upstream[0] if len(upstream) == 1 else \
            _call(output_layer(data["name"]), upstream, data["type"])
    return inputs or {"no_inputs": first}, outputs
