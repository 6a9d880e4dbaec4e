"""Synthetic batches that fit a model's declared inputs and targets (numpy only).

Used by `graphdsl compile --check-parity` and by tests: integer ids stay inside the range
of the Embedding or class axis that reads them, boolean masks keep their first step
valid, symbolic sizes get small values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from graphdsl.ir.graph import ModelGraph
from graphdsl.ir.types import Sym, TensorType


def _id_range(model: ModelGraph, node: str) -> int:
    """How many distinct ids a tensor may hold without leaving a table or a class axis."""
    limit = None
    for _, consumer, edge in model.graph.out_edges(node, data=True):
        data = model.node(consumer)
        if data["kind"] != "op":
            continue
        if data["op"] == "Embedding":
            n = int(data["args"]["input_dim"])
        elif data["op"] in ("crossentropy", "accuracy") and edge["port"] == "target":
            pred = next(s for s, e in model.in_edges(consumer) if e["port"] == "pred")
            pred_data = model.node(pred)
            shape = pred_data["types"][0].shape if pred_data["kind"] == "op" \
                else pred_data["type"].shape
            n = int(shape[-1]) if isinstance(shape[-1], int) else 2
        elif data["op"] == "one_hot":
            n = int(data["args"]["num_classes"])
        else:
            continue
        limit = n if limit is None else min(limit, n)
    return limit or 2


def synthetic_batch(model: ModelGraph, batch: int = 2, steps: int = 5, seed: int = 0,
                    sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    chosen: dict[str, int] = {"B": batch, "T": steps, **(sizes or {})}

    def dim(d: Any) -> int:
        if isinstance(d, int):
            return d
        assert isinstance(d, Sym)
        if len(d.terms) == 1 and d.const == 0 and d.terms[0][1] == 1:
            return chosen.setdefault(d.terms[0][0], 3)
        total = d.const
        for name, coef in d.terms:
            total += coef * chosen.setdefault(name, 3)
        return max(int(total), 1)

    out: dict[str, np.ndarray] = {}
    for node in model.inputs + model.targets:
        data = model.node(node)
        t: TensorType = data["type"]
        shape = tuple(dim(d) for d in t.shape or ())
        if t.is_float:
            value: np.ndarray = rng.standard_normal(shape).astype("float32")
        elif t.is_int:
            value = rng.integers(0, _id_range(model, node), shape).astype(t.dtype)
            if value.ndim >= 2:
                value[:, 0] = np.maximum(value[:, 0], 1)  # never an all-padding row
        else:
            value = rng.random(shape) < 0.8
            if value.ndim >= 2:
                value[:, 0] = True
        out[data["name"]] = value
    return out


def perturbed_values(values: dict[str, np.ndarray], seed: int = 1,
                     scale: float = 0.1) -> dict[str, np.ndarray]:
    """Initial values plus noise, so zero-initialised biases cannot hide a mistake."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, v in values.items():
        if name.endswith("_mask") or v.dtype.kind != "f":
            out[name] = v
        else:
            out[name] = (v + scale * rng.standard_normal(v.shape)).astype(v.dtype)
    return out
