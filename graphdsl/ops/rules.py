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


def ntuple(value: object, rank: int, name: str) -> tuple[int, ...]:
    """An int (repeated) or a list of `rank` ints, as a tuple; ShapeError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * rank
    if isinstance(value, (list, tuple)) and len(value) == rank and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(int(v) for v in value)
    words = "an int" if rank == 1 else f"an int or a list of {rank} ints"
    raise ShapeError(f"`{name}` must be {words}, got {source_text(value)}", name,
                     code="argument-value")


def positive(values: Sequence[int], name: str, zero_ok: bool = False) -> None:
    """ShapeError unless every value is positive (or, with zero_ok, not negative)."""
    if any(v < (0 if zero_ok else 1) for v in values):
        bound = "not negative" if zero_ok else "positive"
        raise ShapeError(f"`{name}` must be {bound}, got {list(values)}", name,
                         code="argument-value")


def side_pairs(value: object, rank: int, name: str) -> tuple[tuple[int, int], ...]:
    """Keras' padding/cropping amounts, one (before, after) pair per spatial axis: an int (all
    sides), one int per axis (both sides), or one pair per axis (1-D: the pair itself)."""
    def bad() -> ShapeError:
        return ShapeError(f"`{name}` must be an int, a list of {rank} ints or a list of "
                          f"{rank} pairs of ints, got {source_text(value)}", name,
                          code="argument-value")

    def is_int(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if is_int(value):
        out = ((int(value), int(value)),) * rank  # type: ignore[call-overload]
    elif not isinstance(value, (list, tuple)):
        raise bad()
    elif rank == 1 and len(value) == 2 and all(map(is_int, value)):
        out = ((int(value[0]), int(value[1])),)
    elif len(value) == rank and all(map(is_int, value)):
        out = tuple((int(v), int(v)) for v in value)
    elif len(value) == rank and all(isinstance(v, (list, tuple)) and len(v) == 2 and
                                    all(map(is_int, v)) for v in value):
        out = tuple((int(v[0]), int(v[1])) for v in value)
    else:
        raise bad()
    positive([v for pair in out for v in pair], name, zero_ok=True)
    return out


def aspect_crop_box(height: int, width: int, target_h: int,
                    target_w: int) -> tuple[int, int, int, int]:
    """Keras' crop_to_aspect_ratio box (top, left, crop height, crop width): the largest
    centred window of the target's aspect ratio."""
    crop_h = max(min(height, width * target_h // target_w), 1)
    crop_w = max(min(width, height * target_w // target_h), 1)
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w
