"""Exports of a PyTorch-built model: ONNX (torch.onnx's dynamo exporter) and readable
PyTorch source (torch_source.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from graphdsl.compiler import Program
from graphdsl.ir.graph import ModelGraph
from graphdsl.ir.types import Sym
from graphdsl.runtime.synthetic import synthetic_batch

from .. import ExportError
from .module import GraphModule, build_module


class _Positional(nn.Module):
    """The graph module with inputs as positional arguments and outputs as a tuple, the
    calling convention exporters trace."""

    def __init__(self, inner: GraphModule):
        super().__init__()
        self.inner = inner

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.inner(**dict(zip(self.inner.input_names, args, strict=True)))
        return tuple(outputs[name] for name in self.inner.output_names)


def dynamic_shapes(model: ModelGraph) -> tuple[dict[int, Any], ...]:
    """One entry per input: axis -> torch.export.Dim, named after the program's symbol
    (the same symbol on two inputs is the same Dim, so the exporter knows they agree)."""
    dims: dict[str, Any] = {}
    out = []
    for node in model.inputs:
        axes: dict[int, Any] = {}
        for axis, d in enumerate(model.node(node)["type"].shape or ()):
            if isinstance(d, Sym):
                if len(d.terms) == 1 and d.terms[0][1] == 1 and d.const == 0:
                    name = d.terms[0][0]
                    axes[axis] = dims.setdefault(name, torch.export.Dim(name))
                else:
                    axes[axis] = torch.export.Dim.AUTO
        out.append(axes)
    return tuple(out)


def example_inputs(model: ModelGraph) -> tuple[torch.Tensor, ...]:
    # Sizes other than 0 and 1, which the exporter would take for constants.
    batch = synthetic_batch(model, batch=2, steps=4)
    return tuple(torch.from_numpy(batch[model.node(n)["name"]]) for n in model.inputs)


def export_onnx(program: Program, model: ModelGraph, weights: Mapping[str, np.ndarray],
                out: str) -> list[str]:
    """An ONNX file whose inputs and outputs carry the program's names and whose
    symbolic dimensions stay dynamic. Returns warnings: a symbolic size the exporter had
    to fix (an implementation that loops over it in Python, as the LSTM does over time
    steps) makes an ONNX model that takes only the traced size."""
    module = build_module(model, weights, program_models=program.models).eval()
    wrapper = _Positional(module).eval()
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    import logging
    import warnings

    # The exporter logs each torchvision op it cannot register (torchvision is optional)
    # and warns about its own internals; neither concerns the user's model.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            program_onnx = torch.onnx.export(
                wrapper, example_inputs(model), dynamo=True,
                input_names=list(module.input_names), output_names=list(module.output_names),
                dynamic_shapes=(dynamic_shapes(model),), verbose=False)
        except ImportError:
            raise
        except Exception as exc:  # the exporter's reasons are many; say whose they are
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ExportError(f"torch.onnx could not export model `{model.name}`: "
                              f"{type(exc).__name__}: {first}") from exc
    program_onnx.save(out)
    return _symbolic_outputs(model, out)


def _symbolic_outputs(model: ModelGraph, path: str) -> list[str]:
    """Name the outputs' symbolic sizes as the program does (the exporter may record the
    traced size for an axis that is dynamic, e.g. after an LSTM, and onnxruntime then
    warns on every other size); return warnings for inputs whose size became fixed."""
    import onnx

    proto = onnx.load(path)
    outputs = {model.node(n)["name"]: model.node(n)["type"] for n in model.outputs}
    for value in proto.graph.output:
        t = outputs.get(value.name)
        if t is None or t.shape is None:
            continue
        for want, dim in zip(t.shape, value.type.tensor_type.shape.dim, strict=False):
            if isinstance(want, Sym):
                dim.dim_param = str(want)
    onnx.save(proto, path)
    declared = {model.node(n)["name"]: model.node(n)["type"] for n in model.inputs}
    notes = []
    for value in proto.graph.input:
        t = declared.get(value.name)
        if t is None or t.shape is None:
            continue
        for axis, (want, dim) in enumerate(zip(t.shape, value.type.tensor_type.shape.dim,
                                               strict=False)):
            if isinstance(want, Sym) and dim.HasField("dim_value"):
                notes.append(f"input `{value.name}` axis {axis} ({want}) is fixed to "
                             f"{dim.dim_value} in the ONNX model: an op loops over it in "
                             "Python, so the exporter traced one size")
    return notes


def export_source(program: Program, model: ModelGraph, weights: Mapping[str, np.ndarray],
                  out: str) -> None:
    from .torch_source import write_source

    write_source(program, model, weights, out)
