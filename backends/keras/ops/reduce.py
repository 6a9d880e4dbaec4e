"""Reductions over an axis (an int, a list of ints, or None for all), optionally over a mask
``where`` (bool, broadcast to x): masked entries count as 0 in sum and mean, -inf in max and
logsumexp, +inf in min (the integer extremes for integer tensors)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
from keras import ops

from . import impl
from .elementwise import filled, is_float


def reduced_dims(x: tf.Tensor, axis: Any) -> tuple[int, ...]:
    rank = len(x.shape)
    if axis is None:
        return tuple(range(rank))
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return tuple(sorted({a % rank for a in axes}))


def _lowest(x: tf.Tensor) -> float | int:
    return float("-inf") if is_float(x) else int(np.iinfo(x.dtype.as_numpy_dtype).min)


def _highest(x: tf.Tensor) -> float | int:
    return float("inf") if is_float(x) else int(np.iinfo(x.dtype.as_numpy_dtype).max)


def _as_float(x: tf.Tensor) -> tf.Tensor:
    return x if is_float(x) else ops.cast(x, "float32")


@impl("sum")
def sum_(*, x: tf.Tensor, where: tf.Tensor | None = None, axis: Any = None,
         keepdims: bool = False) -> tf.Tensor:
    x = ops.convert_to_tensor(x)
    dims = reduced_dims(x, axis)
    if not dims:
        return filled(x, where, 0)
    # ops.sum widens small integer types: the registry keeps x's dtype
    return ops.cast(ops.sum(filled(x, where, 0), axis=dims, keepdims=keepdims), x.dtype)


@impl("mean")
def mean(*, x: tf.Tensor, where: tf.Tensor | None = None, axis: Any = None,
         keepdims: bool = False) -> tf.Tensor:
    x = _as_float(ops.convert_to_tensor(x))
    dims = reduced_dims(x, axis)
    if not dims:
        return filled(x, where, 0)  # sum(x m) / max(m, 1) of one element
    if where is None:
        return ops.mean(x, axis=dims, keepdims=keepdims)
    total = ops.sum(filled(x, where, 0), axis=dims, keepdims=keepdims)
    count = ops.sum(ops.cast(ops.broadcast_to(where, ops.shape(x)), x.dtype), axis=dims,
                    keepdims=keepdims)
    return total / ops.maximum(count, 1.0)


@impl("max")
def max_(*, x: tf.Tensor, where: tf.Tensor | None = None, axis: Any = None,
         keepdims: bool = False) -> tf.Tensor:
    x = ops.convert_to_tensor(x)
    dims = reduced_dims(x, axis)
    masked = filled(x, where, _lowest(x))
    return ops.max(masked, axis=dims, keepdims=keepdims) if dims else masked


@impl("min")
def min_(*, x: tf.Tensor, where: tf.Tensor | None = None, axis: Any = None,
         keepdims: bool = False) -> tf.Tensor:
    x = ops.convert_to_tensor(x)
    dims = reduced_dims(x, axis)
    masked = filled(x, where, _highest(x))
    return ops.min(masked, axis=dims, keepdims=keepdims) if dims else masked


@impl("logsumexp")
def logsumexp(*, x: tf.Tensor, where: tf.Tensor | None = None, axis: Any = None,
              keepdims: bool = False) -> tf.Tensor:
    x = filled(_as_float(ops.convert_to_tensor(x)), where, float("-inf"))
    dims = reduced_dims(x, axis)
    return ops.logsumexp(x, axis=dims, keepdims=keepdims) if dims else x


@impl("argmax")
def argmax(*, x: tf.Tensor, axis: int = -1) -> tf.Tensor:
    # tf.argmax returns the first index of the maximum, as the registry says; ops.argmax
    # would rank -0.0 below 0.0
    return tf.argmax(x, axis=axis, output_type=tf.int32)
