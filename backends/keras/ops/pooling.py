"""Pooling, channels last: windows (TensorFlow's pooling, whose "SAME" ignores padded
cells as the registry says), global, and adaptive (torch's AdaptiveAvgPool bins: the
registry's; computed here bin by bin)."""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf
from keras import ops

from graphdsl.ops.rules import ntuple

from . import impl
from .conv import pad_spatial, spatial_pads
from .core import dynamic_shape


def _pool(x: tf.Tensor, kind: str, pool_size: Any, strides: Any, padding: Any) -> tf.Tensor:
    rank = len(x.shape) - 2
    sizes = ntuple(pool_size, rank, "pool_size")
    strides_ = ntuple(pool_size if strides is None else strides, rank, "strides")
    pool = ops.max_pool if kind == "max" else ops.average_pool
    if padding in ("valid", "same"):
        return pool(x, sizes, strides_, padding=padding, data_format="channels_last")
    pads = spatial_pads(x, sizes, strides_, (1,) * rank, padding)
    # 1 on the real cells, 0 on the padding: pooled, how many real cells (or whether any)
    # each window holds
    ones = ops.ones((1, *dynamic_shape(x)[1:-1], 1), dtype=x.dtype)
    counts = pool(pad_spatial(ones, pads), sizes, strides_, padding="valid",
                  data_format="channels_last")
    if kind == "max":
        y = pool(pad_spatial(x, pads, float("-inf")), sizes, strides_, padding="valid",
                 data_format="channels_last")
        # a window of padding only is -inf (TensorFlow's max pool would give the lowest
        # finite float)
        return ops.where(counts > 0, y, ops.convert_to_tensor(float("-inf"), dtype=x.dtype))
    # mean over the real cells only: pooled zero-padded x over pooled padded ones
    total = pool(pad_spatial(x, pads), sizes, strides_, padding="valid",
                 data_format="channels_last")
    return total / ops.maximum(counts, 1.0 / math.prod(sizes))


def _pool_layer(kind: str):  # type: ignore[no-untyped-def]
    def pool(*, x: tf.Tensor, pool_size: Any = 2, strides: Any = None,
             padding: Any = "valid") -> tf.Tensor:
        return _pool(x, kind, pool_size, strides, padding)
    return pool


for _rank in (1, 2, 3):
    impl(f"MaxPooling{_rank}D")(_pool_layer("max"))
    impl(f"AveragePooling{_rank}D")(_pool_layer("average"))


# The value masked steps take in GlobalMaxPooling1D (the registry's canonical -1e9).
MASKED_MAX_FILL = -1e9


@impl("GlobalAveragePooling1D")
def global_average_pooling1d(*, x: tf.Tensor, mask: tf.Tensor | None = None,
                             keepdims: bool = False) -> tf.Tensor:
    if mask is None:
        return ops.mean(x, axis=1, keepdims=keepdims)
    m = ops.cast(mask, "bool")[..., None]
    total = ops.sum(ops.where(m, x, ops.zeros_like(x)), axis=1, keepdims=keepdims)
    count = ops.sum(ops.cast(m, x.dtype), axis=1, keepdims=keepdims)
    return total / ops.maximum(count, 1.0)


@impl("GlobalMaxPooling1D")
def global_max_pooling1d(*, x: tf.Tensor, mask: tf.Tensor | None = None,
                         keepdims: bool = False) -> tf.Tensor:
    if mask is not None:
        x = ops.where(ops.cast(mask, "bool")[..., None], x,
                      ops.convert_to_tensor(MASKED_MAX_FILL, dtype=x.dtype))
    return ops.max(x, axis=1, keepdims=keepdims)


def _global_average(*, x: tf.Tensor, keepdims: bool = False) -> tf.Tensor:
    return ops.mean(x, axis=tuple(range(1, len(x.shape) - 1)), keepdims=keepdims)


def _global_max(*, x: tf.Tensor, keepdims: bool = False) -> tf.Tensor:
    return ops.max(x, axis=tuple(range(1, len(x.shape) - 1)), keepdims=keepdims)


for _rank in (2, 3):
    impl(f"GlobalAveragePooling{_rank}D")(_global_average)
    impl(f"GlobalMaxPooling{_rank}D")(_global_max)


def _adaptive_axis(x: tf.Tensor, axis: int, bins: int, kind: str) -> tf.Tensor:
    """Pools one axis of static length L into bins [floor(i L / n), ceil((i + 1) L / n))."""
    length = x.shape[axis]
    reduce = ops.mean if kind == "Average" else ops.max
    parts = []
    for i in range(bins):
        start, end = (i * length) // bins, -(-((i + 1) * length) // bins)
        index = [slice(None)] * len(x.shape)
        index[axis] = slice(start, end)
        parts.append(reduce(x[tuple(index)], axis=axis, keepdims=True))
    return ops.concatenate(parts, axis=axis)


def _adaptive_layer(kind: str, rank: int):  # type: ignore[no-untyped-def]
    # Not ops.adaptive_*_pool: Keras 3.15's crashes the process (SIGFPE) when a bin count
    # exceeds the input length, which torch and the registry allow.
    def pool(*, x: tf.Tensor, output_size: Any) -> tf.Tensor:
        for axis, bins in enumerate(ntuple(output_size, rank, "output_size"), start=1):
            x = _adaptive_axis(x, axis, bins, kind)
        return x
    return pool


for _kind in ("Average", "Max"):
    for _rank in (1, 2, 3):
        impl(f"Adaptive{_kind}Pooling{_rank}D")(_adaptive_layer(_kind, _rank))
