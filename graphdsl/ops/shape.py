"""Shape manipulation: reshape, transpose, concat, stack, indexing and friends."""

from __future__ import annotations

from ..ir.types import Dim, ShapeError, TensorType, dim_add, dim_floordiv, dim_sub, normalize_axis
from .core import reshape_rule
from .registry import Arg, In, OpCall, OpDef, register


def _reshape(call: OpCall) -> TensorType:
    shape = call.shape("x")
    return TensorType(call.input("x").dtype, reshape_rule(shape, list(call.args["shape"]),
                                                          "shape"))


register(OpDef(
    "reshape", "shape", "function", "Reshapes x; 0 copies an input dimension, one -1 is inferred.",
    inputs=(In("x", "any"),), args=(Arg("shape", "int_list"),), infer=_reshape, mask="drop",
    mask_keep=lambda c: list(c.args["shape"])[:2] == [0, 0],
    canonical="row-major reshape (numpy.reshape, order C)",
))


def _transpose(call: OpCall) -> TensorType:
    shape = call.shape("x", min_rank=2)
    perm = call.args["perm"]
    if perm is None:
        perm = [*range(len(shape) - 2), len(shape) - 1, len(shape) - 2]
    if sorted(normalize_axis(p, len(shape), "perm") for p in perm) != list(range(len(shape))):
        raise ShapeError(f"`perm` must be a permutation of the {len(shape)} axes, got {perm}",
                         "perm", code="argument-value")
    return TensorType(call.input("x").dtype, tuple(shape[p] for p in perm))


register(OpDef(
    "transpose", "shape", "function",
    "Permutes axes; without perm it swaps the last two (what `.T` means).",
    inputs=(In("x", "any"),), args=(Arg("perm", "int_list", None, optional=True),),
    infer=_transpose, mask="drop",
    mask_keep=lambda c: c.args["perm"] is None and (c.input("x").rank or 0) > 3,
    canonical="numpy.transpose(x, perm); default perm swaps the last two axes",
))


def _concat(call: OpCall) -> TensorType:
    xs = call.inputs["xs"]
    if not xs:
        raise ShapeError("`concat` needs at least one tensor", "xs")
    shapes = []
    for t in xs:
        if t.shape is None:
            from .registry import unknown

            raise unknown()()
        shapes.append(t.shape)
    rank = len(shapes[0])
    if rank == 0:
        raise ShapeError(f"`concat` joins tensors along an axis, but {xs[0]} is a scalar", 0,
                         help="`stack([a, b])` makes a vector of scalars")
    axis = normalize_axis(call.args["axis"], rank)
    total: Dim = 0
    for i, (t, s) in enumerate(zip(xs, shapes, strict=True)):
        if len(s) != rank:
            raise ShapeError(f"`concat` requires tensors of one rank, got {xs[0]} and {t}", i)
        if t.dtype != xs[0].dtype:
            raise ShapeError(f"`concat` requires one dtype, got {xs[0]} and {t}", i,
                             code="dtype-mismatch")
        for j, (a, b) in enumerate(zip(shapes[0], s, strict=True)):
            if j != axis and a != b:
                raise ShapeError(f"`concat` along axis {axis} requires the other dimensions to "
                                 f"match, got {xs[0]} and {t} (axis {j}: {a} vs {b})", i)
        total = dim_add(total, s[axis])
    out = list(shapes[0])
    out[axis] = total
    return TensorType(xs[0].dtype, tuple(out))


def _concat_keeps_mask(call: OpCall) -> bool:
    rank = call.inputs["xs"][0].rank if call.inputs["xs"] else None
    return rank is not None and normalize_axis(call.args["axis"], rank) >= 2


register(OpDef(
    "concat", "shape", "function", "Joins tensors along an existing axis.",
    inputs=(In("xs", "any", variadic=True),), args=(Arg("axis", "int", -1),), infer=_concat,
    mask="elementwise", mask_keep=_concat_keeps_mask,
    canonical="numpy.concatenate; the result is masked at a step if any input is",
))


def _stack(call: OpCall) -> TensorType:
    xs = call.inputs["xs"]
    if not xs:
        raise ShapeError("`stack` needs at least one tensor", "xs")
    first = xs[0]
    for i, t in enumerate(xs):
        if t.shape is None:
            from .registry import unknown

            raise unknown()()
        if t.shape != first.shape or t.dtype != first.dtype:
            raise ShapeError(f"`stack` requires tensors of one type, got {first} and {t}", i)
    assert first.shape is not None
    axis = normalize_axis(call.args["axis"], len(first.shape) + 1)
    out = list(first.shape)
    out.insert(axis, len(xs))
    return TensorType(first.dtype, tuple(out))


register(OpDef(
    "stack", "shape", "function",
    "Stacks tensors of one shape along a new axis (nested lists of scalars use it too).",
    inputs=(In("xs", "any", variadic=True),), args=(Arg("axis", "int", 0),), infer=_stack,
    mask="none", canonical="numpy.stack",
))


def _expand_dims(call: OpCall) -> TensorType:
    shape = list(call.shape("x"))
    axis = normalize_axis(call.args["axis"], len(shape) + 1)
    shape.insert(axis, 1)
    return TensorType(call.input("x").dtype, tuple(shape))


register(OpDef("expand_dims", "shape", "function", "Inserts an axis of size 1.",
               inputs=(In("x", "any"),), args=(Arg("axis", "int"),), infer=_expand_dims,
               mask_keep=lambda c: normalize_axis(c.args["axis"], (c.input("x").rank or 0) + 1)
               >= 2, canonical="numpy.expand_dims"))


def _squeeze(call: OpCall) -> TensorType:
    shape = list(call.shape("x"))
    axis = normalize_axis(call.args["axis"], len(shape))
    if shape[axis] != 1:
        raise ShapeError(f"cannot squeeze axis {axis} of size {shape[axis]}", "axis")
    del shape[axis]
    return TensorType(call.input("x").dtype, tuple(shape))


register(OpDef("squeeze", "shape", "function", "Removes an axis of size 1.",
               inputs=(In("x", "any"),), args=(Arg("axis", "int"),), infer=_squeeze,
               mask_keep=lambda c: normalize_axis(c.args["axis"], c.input("x").rank or 1) >= 2,
               canonical="numpy.squeeze(x, axis)"))


def _positions(call: OpCall) -> TensorType:
    shape = call.shape("x", min_rank=1)
    axis = normalize_axis(call.args["axis"], len(shape))
    return TensorType("int32", (shape[axis],))


register(OpDef("positions", "shape", "function",
               "int32[T]: 0, 1, ..., T-1 for the size T of x's axis (position ids).",
               inputs=(In("x", "any"),), args=(Arg("axis", "int", 1),), infer=_positions,
               mask="none", canonical="arange(x.shape[axis])"))


def _like(call: OpCall) -> TensorType:
    return TensorType(call.input("x").dtype, call.shape("x"))


register(OpDef("zeros_like", "shape", "function", "Zeros of x's type.",
               inputs=(In("x", "any"),), infer=_like, mask="none", canonical="0"))
register(OpDef("ones_like", "shape", "function", "Ones of x's type.",
               inputs=(In("x", "any"),), infer=_like, mask="none", canonical="1"))


def _mask_of(call: OpCall) -> TensorType:
    raise AssertionError("mask_of is resolved by the elaborator")  # pragma: no cover


register(OpDef("mask_of", "shape", "function",
               "The padding mask that travels with x: bool[batch, steps], true where valid.",
               inputs=(In("x", "any"),), infer=_mask_of, mask="none",
               canonical="resolved at compile time to the mask tensor itself"))


def _index_dim(d: Dim, item: tuple, position: int, axis: int) -> Dim | None:
    """The size of one axis after an index (None: the axis goes) or a slice."""
    if item[0] == "index":
        i = item[1]
        if isinstance(d, int) and not -d <= i < d:
            raise ShapeError(f"index {i} is out of range for axis {axis} of size {d}", position,
                             code="argument-value")
        return None
    _, start, stop, step = item
    step = step or 1
    if step < 1:
        raise ShapeError("slice steps must be positive", position, code="argument-value")
    if isinstance(d, int):
        return len(range(d)[slice(start, stop, step)])
    lo = 0 if start is None else start
    hi = d if stop is None else stop
    if isinstance(lo, int) and lo < 0:
        lo = dim_add(d, lo)
    if isinstance(hi, int) and hi < 0:
        hi = dim_add(d, hi)
    length = dim_sub(hi, lo)
    return dim_floordiv(dim_add(length, step - 1), step) if step > 1 else length


def _getitem(call: OpCall) -> TensorType:
    shape = call.shape("x")
    items = list(call.args["items"])
    n_real = sum(1 for it in items if it[0] in ("index", "slice"))
    if n_real > len(shape):
        raise ShapeError(f"too many indices ({n_real}) for a tensor of rank {len(shape)}", 0)
    full = ("slice", None, None, None)
    if ("ellipsis",) in items:
        at = items.index(("ellipsis",))
        items[at:at + 1] = [full] * (len(shape) - n_real)
    else:
        items += [full] * (len(shape) - n_real)
    out: list[Dim] = []
    axis = 0
    for position, item in enumerate(items):
        if item[0] == "newaxis":
            out.append(1)
            continue
        size = _index_dim(shape[axis], item, position, axis)
        if size == 0 or (isinstance(size, int) and size < 0):
            raise ShapeError(f"the slice of axis {axis} (size {shape[axis]}) selects nothing",
                             position, code="argument-value")
        if size is not None:
            out.append(size)
        axis += 1
    return TensorType(call.input("x").dtype, tuple(out))


def _getitem_keeps_mask(call: OpCall) -> bool:
    items = [it for it in call.args["items"] if it != ("ellipsis",)]
    full = ("slice", None, None, None)
    return len(items) < 2 or (items[0] == full and items[1] == full) or (
        call.args["items"][0] == ("ellipsis",) and (call.input("x").rank or 0) - len(items) >= 2)


register(OpDef(
    "getitem", "shape", "function", "Indexing and slicing: x[0], x[:, 1:], x[..., -1].",
    inputs=(In("x", "any"),), args=(Arg("items", "any"),), infer=_getitem, mask="none",
    mask_keep=_getitem_keeps_mask,
    canonical="NumPy basic indexing with integers, slices, `...` and new axes",
))
