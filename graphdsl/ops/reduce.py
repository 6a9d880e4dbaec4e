"""Reductions over axes, optionally over a mask (`where`)."""

from __future__ import annotations

from ..ir.types import ShapeError, TensorType, broadcast, normalize_axis
from .registry import Arg, In, OpCall, OpDef, register


def reduced_axes(call: OpCall, rank: int) -> tuple[int, ...]:
    axis = call.args["axis"]
    if axis is None:
        return tuple(range(rank))
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    normalized = [normalize_axis(a, rank) for a in axes]
    if len(set(normalized)) != len(normalized):
        raise ShapeError(f"`axis` {list(axes)} names one axis twice", "axis",
                         code="argument-value")
    return tuple(sorted(normalized))


def _reduce(dtype: str | None):
    def rule(call: OpCall) -> TensorType:
        shape = call.shape("x")
        axes = reduced_axes(call, len(shape))
        if call.has("where"):
            try:
                broadcast(shape, call.shape("where"))
            except ShapeError as exc:
                raise ShapeError(f"`where` must broadcast to x: {exc.message}", "where") from None
        keep = call.args["keepdims"]
        out = tuple(1 if i in axes else d for i, d in enumerate(shape) if keep or i not in axes)
        return TensorType(dtype or call.input("x").dtype, out)

    return rule


def _keeps_steps(call: OpCall) -> bool:
    rank = call.input("x").rank
    return rank is not None and not set(reduced_axes(call, rank)) & {0, 1}


_REDUCTIONS = (
    ("sum", None, "sum of x over axis (where the mask holds)"),
    ("mean", "float32", "sum(x m) / max(sum(m), 1) over axis, m = where (all ones if absent)"),
    ("max", None, "max over axis; masked entries count as -inf"),
    ("min", None, "min over axis; masked entries count as +inf"),
    ("logsumexp", "float32", "log(sum(exp(x))) over axis, computed stably"),
)
for _name, _dtype, _canon in _REDUCTIONS:
    register(OpDef(
        _name, "reduce", "function", f"Reduction: {_canon}.",
        inputs=(In("x", "number"), In("where", "bool", optional=True)),
        args=(Arg("axis", "any", None, optional=True, doc="an int, a list of ints, or all"),
              Arg("keepdims", "bool", False)),
        infer=_reduce(_dtype), mask="drop", mask_keep=_keeps_steps, canonical=_canon,
    ))


def _argmax(call: OpCall) -> TensorType:
    shape = call.shape("x", min_rank=1)
    axis = normalize_axis(call.args["axis"], len(shape))
    return TensorType("int32", tuple(d for i, d in enumerate(shape) if i != axis))


register(OpDef("argmax", "reduce", "function", "Index of the largest value along axis.",
               inputs=(In("x", "number"),), args=(Arg("axis", "int", -1),), infer=_argmax,
               mask_keep=lambda c: (c.input("x").rank or 0) > 2,
               canonical="the first index of the maximum, int32"))
