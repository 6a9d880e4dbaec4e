"""Small shape rules shared by the op families."""

from __future__ import annotations

from collections.abc import Sequence

from ..diagnostics import source_text
from ..ir.types import Dim, Shape, ShapeError, TensorType, dim_add, dim_floordiv, dim_mul, dim_sub
from .registry import OpCall


def known(dim: Dim, what: str, argument: str | int | None = None) -> int:
    """An int dimension, or a ShapeError saying the op needs it known."""
    if isinstance(dim, int):
        return dim
    raise ShapeError(f"{what} must be a known size to create parameters, got `{dim}`", argument,
                     code="unknown-dimension",
                     help="declare this dimension as a number or a model parameter")


def last_dim(call: OpCall, name: str) -> int:
    shape = call.shape(name, min_rank=1)
    return known(shape[-1], f"the last dimension of `{name}` of `{call.op.name}`", name)


def same_as(call: OpCall, name: str, dtype: str | None = None) -> TensorType:
    t = call.input(name)
    return TensorType(dtype or t.dtype, t.shape)


def param_shape(fn):
    """Adapt ``fn(args, x_shape)`` to the ParamSpec signature (args, input types)."""

    def rule(args, inputs: Sequence[TensorType]) -> Shape:
        shape = inputs[0].shape if inputs else None
        return tuple(fn(args, shape))

    return rule


def conv_length(length: Dim, kernel: int, stride: int, dilation: int, padding: object) -> Dim:
    """Output length of a convolution or pooling window, TensorFlow's arithmetic.

    valid: floor((L - d(k-1) - 1) / s) + 1; same and causal: ceil(L / s);
    an int p pads p on both sides first.
    """
    span = dilation * (kernel - 1) + 1
    if padding in ("same", "causal"):
        return dim_floordiv(dim_add(length, stride - 1), stride)
    if isinstance(padding, int):
        length = dim_add(length, 2 * padding)
    out = dim_add(dim_floordiv(dim_sub(length, span), stride), 1)
    if isinstance(out, int) and out < 1:
        raise ShapeError(f"the window of size {span} does not fit an input of length {length}",
                         0)
    return out


def product(dims: Sequence[Dim]) -> Dim:
    total: Dim = 1
    for d in dims:
        total = dim_mul(total, d)
    return total


def as_pair(value: object, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int)
                                                                    for v in value):
        return (int(value[0]), int(value[1]))
    raise ShapeError(f"`{name}` must be an int or a pair of ints, got {source_text(value)}", name,
                     code="argument-value")
