"""Pooling, channels last: windows (1-3 D), global, and adaptive (to a given output size)."""

from __future__ import annotations

from collections.abc import Callable

from ..ir.types import TensorType
from .conv import check_padding
from .registry import Arg, In, OpCall, OpDef, register
from .rules import conv_length, ntuple, positive


def _pool_rule(rank: int) -> Callable[[OpCall], TensorType]:
    def rule(call: OpCall) -> TensorType:
        b, *spatial, c = call.shape("x", exact_rank=rank + 2)
        a = call.args
        sizes = ntuple(a["pool_size"], rank, "pool_size")
        strides = ntuple(a["strides"] if a["strides"] is not None else a["pool_size"], rank,
                         "strides")
        positive(sizes, "pool_size")
        positive(strides, "strides")
        pad = check_padding(call, False)
        out = tuple(conv_length(spatial[i], sizes[i], strides[i], 1, pad) for i in range(rank))
        return TensorType(call.input("x").dtype, (b, *out, c))
    return rule


for _rank in (1, 2, 3):
    _kind_of_size = "int" if _rank == 1 else "ints"
    for _kind in ("max", "average"):
        register(OpDef(
            f"{_kind.capitalize()}Pooling{_rank}D", "pooling", "layer",
            f"{_kind.capitalize()} pooling over {_rank}-D windows.",
            inputs=(In("x"),),
            args=(Arg("pool_size", _kind_of_size, 2),
                  Arg("strides", _kind_of_size, None, optional=True),
                  Arg("padding", "any", "valid")),
            infer=_pool_rule(_rank), mask="drop",
            canonical=f"{_kind} over each window; strides default to pool_size; padded "
                      "positions (\"same\" or an int) never win a max and are not counted in an "
                      "average; a window of padding alone gives -inf (max) or 0 (average)",
        ))


def _global_rule(rank: int) -> Callable[[OpCall], TensorType]:
    def rule(call: OpCall) -> TensorType:
        shape = call.shape("x", exact_rank=rank + 2)
        kept = (1,) * rank if call.args["keepdims"] else ()
        return TensorType("float32", (shape[0], *kept, shape[-1]))
    return rule


_KEEPDIMS = Arg("keepdims", "bool", False, doc="keep the pooled axes, with size 1")

register(OpDef(
    "GlobalAveragePooling1D", "pooling", "layer", "Mean over the steps; masked steps are skipped.",
    inputs=(In("x"), In("mask", "bool", optional=True)), args=(_KEEPDIMS,),
    infer=_global_rule(1), mask="consume",
    canonical="y = sum_t x[t] m[t] / max(sum_t m[t], 1), m the mask (all ones if none); "
              "keepdims: [B, 1, C]",
))
register(OpDef(
    "GlobalMaxPooling1D", "pooling", "layer", "Max over the steps; masked steps are skipped.",
    inputs=(In("x"), In("mask", "bool", optional=True)), args=(_KEEPDIMS,),
    infer=_global_rule(1), mask="consume",
    canonical="y = max over t of where(m[t], x[t], -1e9): masked steps never win; a row "
              "with every step masked gives -1e9; keepdims: [B, 1, C]",
))
for _rank, _axes in ((2, "height and width"), (3, "depth, height and width")):
    for _kind, _word in (("Average", "Mean"), ("Max", "Max")):
        register(OpDef(
            f"Global{_kind}Pooling{_rank}D", "pooling", "layer", f"{_word} over {_axes}.",
            inputs=(In("x"),), args=(_KEEPDIMS,), infer=_global_rule(_rank), mask="drop",
            canonical=f"y = {_word.lower()} over axes {', '.join(map(str, range(1, _rank + 1)))}"
                      " (kept with size 1 with keepdims)",
        ))


def _adaptive_rule(rank: int) -> Callable[[OpCall], TensorType]:
    def rule(call: OpCall) -> TensorType:
        b, *_, c = call.shape("x", exact_rank=rank + 2)
        out = ntuple(call.args["output_size"], rank, "output_size")
        positive(out, "output_size")
        return TensorType(call.input("x").dtype, (b, *out, c))
    return rule


for _rank in (1, 2, 3):
    for _kind in ("Average", "Max"):
        register(OpDef(
            f"Adaptive{_kind}Pooling{_rank}D", "pooling", "layer",
            f"{_kind} pooling of each of {_rank} spatial axes down to `output_size` bins.",
            inputs=(In("x"),), args=(Arg("output_size", "int" if _rank == 1 else "ints"),),
            infer=_adaptive_rule(_rank), mask="drop",
            canonical=f"bin i of an axis of length L into n bins covers [floor(i L / n), "
                      f"ceil((i + 1) L / n)) (torch's Adaptive{_kind[:3]}Pool{_rank}d and "
                      f"keras.layers.Adaptive{_kind}Pooling{_rank}D); y is the "
                      f"{_kind.lower()} over the product of the bins; the spatial sizes must be "
                      "known",
        ))
