"""Numeric functions beyond elementwise arithmetic: einsum, cumsum, tril/triu, arange and
top_k (Keras' keras.ops names and arguments)."""

from __future__ import annotations

import math

from ..diagnostics import source_text
from ..ir.types import DTYPES, Dim, ShapeError, TensorType, broadcast, normalize_axis
from .arith import arange_dtype, einsum_terms
from .bounds import POSITIVE_INT
from .registry import Arg, In, OpCall, OpDef, register, unknown
from .rules import product, same_as


def _einsum(call: OpCall) -> TensorType:
    operands = call.inputs["operands"]
    if not operands:
        raise ShapeError("`einsum` needs at least one tensor", "operands")
    shapes = []
    for i, t in enumerate(operands):
        if t.shape is None:
            raise unknown()()
        if t.dtype != operands[0].dtype:
            raise ShapeError(f"`einsum` requires operands of one dtype, got {operands[0]} and "
                             f"{t}", i, code="dtype-mismatch")
        shapes.append(t.shape)
    try:
        terms, out = einsum_terms(str(call.args["subscripts"]), [len(s) for s in shapes])
    except ValueError as exc:
        raise ShapeError(f"`einsum`: {exc}", "subscripts", code="argument-value") from None
    sizes: dict[str, Dim] = {}
    ellipsis: tuple[Dim, ...] = ()
    for i, (term, shape) in enumerate(zip(terms, shapes, strict=True)):
        before, _, after = term.partition("...")
        middle = len(shape) - len(before) - len(after) if "..." in term else 0
        try:
            ellipsis = broadcast(ellipsis, tuple(shape[len(before):len(before) + middle]))
        except ShapeError as exc:
            raise ShapeError(f"`einsum`: the `...` axes do not broadcast: {exc.message}",
                             i) from None
        letters = before + after
        dims = (*shape[:len(before)], *shape[len(shape) - len(after):])
        for ch, d in zip(letters, dims, strict=True):
            if sizes.setdefault(ch, d) != d:
                raise ShapeError(f"`einsum`: `{ch}` is {sizes[ch]} in one place and {d} in "
                                 f"another ({source_text(call.args['subscripts'])})", i)
    before, has_ellipsis, after = out.partition("...")
    shape = (*(sizes[ch] for ch in before), *(ellipsis if has_ellipsis else ()),
             *(sizes[ch] for ch in after))
    return TensorType(operands[0].dtype, tuple(shape))


register(OpDef(
    "einsum", "numeric", "function", 'Einstein summation: einsum("bij,bjk->bik", a, b).',
    inputs=(In("operands", "number", variadic=True),), args=(Arg("subscripts", "str"),),
    infer=_einsum, mask="drop",
    canonical="numpy.einsum: repeated letters are multiplied and summed over unless they "
              "appear in the output; `...` broadcasts; without `->` the output is `...` and "
              "the letters used once, in alphabetical order. Every letter must have one size.",
))


def _cumsum(call: OpCall) -> TensorType:
    shape = call.shape("x")
    axis = call.args["axis"]
    if axis is None:
        return TensorType(call.input("x").dtype, (product(shape),))
    normalize_axis(axis, len(shape))
    return same_as(call, "x")


register(OpDef(
    "cumsum", "numeric", "function", "Cumulative sum along an axis.",
    inputs=(In("x", "number"),),
    args=(Arg("axis", "int", None, optional=True, doc="none: over the flattened tensor"),
          Arg("exclusive", "bool", False), Arg("reverse", "bool", False)),
    infer=_cumsum, mask="drop", mask_keep=lambda c: c.args["axis"] is not None and
    normalize_axis(c.args["axis"], c.input("x").rank or 1) >= 2,
    canonical="y[i] = sum of x[j] for j <= i along axis (j < i with exclusive; j >= i, or "
              "j > i, with reverse); the dtype stays x's; axis none flattens first "
              "(row-major), as keras.ops.cumsum",
))


def _triangle(call: OpCall) -> TensorType:
    call.shape("x", min_rank=2)
    return same_as(call, "x")


for _name, _keep in (("tril", "j <= i + k"), ("triu", "j >= i + k")):
    register(OpDef(
        _name, "numeric", "function",
        f"Keeps the {'lower' if _name == 'tril' else 'upper'} triangle of the last two axes.",
        inputs=(In("x", "any"),), args=(Arg("k", "int", 0, doc="the diagonal: 0 the main one, "
                                                               "positive above"),),
        infer=_triangle, mask_keep=lambda c: (c.input("x").rank or 0) > 3,
        canonical=f"x[..., i, j] where {_keep}, else 0 (false for bool)",
    ))


def _arange(call: OpCall) -> TensorType:
    a = call.args
    start, stop, step = a["start"], a["stop"], a["step"]
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ShapeError("`step` must not be 0", "step", code="argument-value")
    for name, value in (("start", start), ("stop", stop), ("step", step)):
        if not math.isfinite(value):
            raise ShapeError(f"`arange` needs finite numbers, got {name} = {value}",
                             name if a.get(name) is not None else "start",
                             code="argument-value")
    dtype = arange_dtype(a["start"], a["stop"], step, a["dtype"])
    if dtype not in DTYPES or dtype == "bool":
        raise ShapeError(f"`arange` makes numbers, not {source_text(dtype)}", "dtype",
                         code="argument-value")
    size = max(math.ceil((stop - start) / step), 0)
    if size > 2**24:
        raise ShapeError(f"`arange` would make {size} values", "stop", code="argument-value")
    return TensorType(dtype, (size,))


register(OpDef(
    "arange", "numeric", "function",
    "Evenly spaced values: arange(stop), arange(start, stop, step, dtype = \"float32\").",
    inputs=(),
    args=(Arg("start", "number"), Arg("stop", "number", None, optional=True),
          Arg("step", "number", 1), Arg("dtype", "str", None, optional=True,
                                        doc="default: int32 for ints, else float32")),
    infer=_arange, mask="none",
    canonical="[start + i step for i in 0 .. ceil((stop - start) / step) - 1], each computed "
              "in float64 and then converted to dtype (like numpy.arange); arange(n) counts "
              "from 0",
))


def _top_k(call: OpCall) -> tuple[TensorType, TensorType]:
    shape = call.shape("x", min_rank=1)
    k = call.args["k"]
    if k < 1:
        raise ShapeError(f"`k` must be positive, got {k}", "k", code="argument-value")
    if isinstance(shape[-1], int) and k > shape[-1]:
        raise ShapeError(f"`k` = {k} exceeds the last dimension ({shape[-1]}) of "
                         f"{call.input('x')}", "k", code="argument-value")
    out = (*shape[:-1], k)
    return TensorType(call.input("x").dtype, out), TensorType("int32", out)


register(OpDef(
    "top_k", "numeric", "function",
    "The k largest values along the last axis and their indices: values, indices = top_k(x, 3).",
    inputs=(In("x", "number"),), args=(Arg("k", "int", bounds=POSITIVE_INT), Arg("sorted", "bool", True)),
    infer=_top_k, mask_keep=lambda c: (c.input("x").rank or 0) > 2,
    canonical="(values, int32 indices) of the k largest entries of each row of the last axis, "
              "largest first (sorted is accepted for Keras' signature: the order is always "
              "descending); among equal values the lower index comes first",
))
