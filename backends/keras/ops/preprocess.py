"""Rescaling and Normalization (keras.layers' definitions)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
from keras import ops

from graphdsl.ops.preprocess import NORMALIZATION_EPSILON, kept_axes

from . import impl


@impl("Rescaling")
def rescaling(*, x: tf.Tensor, scale: float, offset: float = 0.0) -> tf.Tensor:
    return ops.cast(x, "float32") * scale + offset


def _broadcastable(value: Any, rank: int, axes: tuple[int, ...]) -> tf.Tensor:
    """A statistic shaped for the input: its axes are the last len(shape) kept axes."""
    t = ops.cast(ops.convert_to_tensor(value), "float32")
    shape = [1] * rank
    for axis, size in zip(axes[len(axes) - len(t.shape):], t.shape, strict=True):
        shape[axis] = size
    return ops.reshape(t, shape)


@impl("Normalization")
def normalization(*, x: tf.Tensor, adapt_mean: tf.Tensor | None = None,
                  adapt_variance: tf.Tensor | None = None, axis: Any = -1, mean: Any = None,
                  variance: Any = None, invert: bool = False) -> tf.Tensor:
    rank = len(x.shape)
    axes = kept_axes(axis, rank)
    m = _broadcastable(mean if mean is not None else adapt_mean, rank, axes)
    v = _broadcastable(variance if variance is not None else adapt_variance, rank, axes)
    std = ops.maximum(ops.sqrt(v), NORMALIZATION_EPSILON)
    x = ops.cast(x, "float32")
    return m + x * std if invert else (x - m) / std
