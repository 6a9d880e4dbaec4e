"""Convolution and pooling, channels last, with TensorFlow's padding arithmetic.

Inputs are [batch, steps, channels] (1-D) and [batch, height, width, channels] (2-D), and
kernels [k, in, out] and [kh, kw, in, out]: TensorFlow's own layouts, so nothing is
permuted.

Padding: "valid" (none); "same": out = ceil(L / s), pad_total = max((out - 1) s +
(k - 1) d + 1 - L, 0), pad_before = pad_total // 2 and the extra cell on the right
(TensorFlow's "SAME", which runs as it is); "causal" (1-D only): all (k - 1) d cells on the
left; an int p: p cells on both sides. Convolutions pad with zeros; max pooling pads with
-inf and average pooling does not count padded cells, so padded cells never change a
pooled value (TensorFlow's "SAME" pooling does exactly that).

TensorFlow rejects strides > 1 together with dilation > 1; such a convolution runs with
stride 1 and keeps every s-th output, which is the same result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
from keras import ops

from graphdsl.ops.arith import padding_amounts, pair

from . import impl
from .core import activate, dynamic_shape


def _pad_spatial(x: tf.Tensor, pads: Sequence[tuple[int, int]], value: float = 0.0) -> tf.Tensor:
    if not any(before or after for before, after in pads):
        return x
    return ops.pad(x, [(0, 0), *pads, (0, 0)], constant_values=value)


def _spatial_pads(x: tf.Tensor, sizes: Sequence[int], strides: Sequence[int],
                  dilations: Sequence[int], padding: Any) -> list[tuple[int, int]]:
    """The explicit pads of each spatial axis ("same" needs the static spatial sizes)."""
    spatial = x.shape[1:-1]
    return [padding_amounts(spatial[i], sizes[i], strides[i], dilations[i], padding)
            for i in range(len(sizes))]


def _conv(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None, strides: Any,
          padding: Any, dilation_rate: Any, rank: int) -> tf.Tensor:
    sizes = tuple(kernel.shape[:rank])
    strides_ = (strides,) if rank == 1 else pair(strides)
    dilations = (dilation_rate,) if rank == 1 else pair(dilation_rate)
    # TensorFlow cannot stride and dilate at once: stride 1, then keep every s-th output
    subsample = any(s > 1 for s in strides_) and any(d > 1 for d in dilations)
    if padding == "same" and not subsample:
        tf_padding = "same"
    else:
        x = _pad_spatial(x, _spatial_pads(x, sizes, strides_, dilations, padding))
        tf_padding = "valid"
    y = ops.conv(x, kernel, strides=1 if subsample else strides_, padding=tf_padding,
                 data_format="channels_last", dilation_rate=dilations)
    if subsample:
        y = y[(slice(None), *(slice(None, None, s) for s in strides_))]
    if bias is not None:
        y = y + bias
    return y


@impl("Conv1D")
def conv1d(*, x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None = None,
           filters: int, kernel_size: int, strides: int = 1, padding: Any = "valid",
           dilation_rate: int = 1, activation: Any = "linear",
           use_bias: bool = True) -> tf.Tensor:
    y = _conv(x, kernel, bias if use_bias else None, strides, padding, dilation_rate, 1)
    return activate(y, activation)


@impl("Conv2D")
def conv2d(*, x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None = None,
           filters: int, kernel_size: int | Sequence[int], strides: int | Sequence[int] = 1,
           padding: Any = "valid", dilation_rate: int | Sequence[int] = 1,
           activation: Any = "linear", use_bias: bool = True) -> tf.Tensor:
    y = _conv(x, kernel, bias if use_bias else None, strides, padding, dilation_rate, 2)
    return activate(y, activation)


def _pool(x: tf.Tensor, kind: str, pool_size: Any, strides: Any, padding: Any,
          rank: int) -> tf.Tensor:
    sizes = (pool_size,) if rank == 1 else pair(pool_size)
    if strides is None:
        strides = pool_size
    strides_ = (strides,) if rank == 1 else pair(strides)
    pool = ops.max_pool if kind == "max" else ops.average_pool
    if padding in ("valid", "same"):
        # TensorFlow's "SAME" pooling ignores the padded cells, as the registry says
        return pool(x, sizes, strides_, padding=padding, data_format="channels_last")
    pads = _spatial_pads(x, sizes, strides_, (1,) * rank, padding)
    # 1 on the real cells, 0 on the padding: pooled, how many real cells (or whether any)
    # each window holds
    ones = ops.ones((1, *dynamic_shape(x)[1:-1], 1), dtype=x.dtype)
    counts = pool(_pad_spatial(ones, pads), sizes, strides_, padding="valid",
                  data_format="channels_last")
    if kind == "max":
        y = pool(_pad_spatial(x, pads, float("-inf")), sizes, strides_, padding="valid",
                 data_format="channels_last")
        # a window of padding only is -inf (TensorFlow's max pool would give the lowest
        # finite float)
        return ops.where(counts > 0, y, ops.convert_to_tensor(float("-inf"), dtype=x.dtype))
    # mean over the real cells only: pooled zero-padded x over pooled padded ones
    total = pool(_pad_spatial(x, pads), sizes, strides_, padding="valid",
                 data_format="channels_last")
    return total / ops.maximum(counts, 1.0 / math.prod(sizes))


@impl("MaxPooling1D")
def max_pooling1d(*, x: tf.Tensor, pool_size: int = 2, strides: int | None = None,
                  padding: Any = "valid") -> tf.Tensor:
    return _pool(x, "max", pool_size, strides, padding, 1)


@impl("AveragePooling1D")
def average_pooling1d(*, x: tf.Tensor, pool_size: int = 2, strides: int | None = None,
                      padding: Any = "valid") -> tf.Tensor:
    return _pool(x, "average", pool_size, strides, padding, 1)


@impl("MaxPooling2D")
def max_pooling2d(*, x: tf.Tensor, pool_size: int | Sequence[int] = 2,
                  strides: int | Sequence[int] | None = None,
                  padding: Any = "valid") -> tf.Tensor:
    return _pool(x, "max", pool_size, strides, padding, 2)


@impl("AveragePooling2D")
def average_pooling2d(*, x: tf.Tensor, pool_size: int | Sequence[int] = 2,
                      strides: int | Sequence[int] | None = None,
                      padding: Any = "valid") -> tf.Tensor:
    return _pool(x, "average", pool_size, strides, padding, 2)


# The value masked steps take in GlobalMaxPooling1D (the registry's canonical -1e9).
MASKED_MAX_FILL = -1e9


@impl("GlobalAveragePooling1D")
def global_average_pooling1d(*, x: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    if mask is None:
        return ops.mean(x, axis=1)
    m = ops.cast(mask, "bool")[..., None]
    total = ops.sum(ops.where(m, x, ops.zeros_like(x)), axis=1)
    count = ops.sum(ops.cast(m, x.dtype), axis=1)
    return total / ops.maximum(count, 1.0)


@impl("GlobalMaxPooling1D")
def global_max_pooling1d(*, x: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
    if mask is not None:
        x = ops.where(ops.cast(mask, "bool")[..., None], x,
                      ops.convert_to_tensor(MASKED_MAX_FILL, dtype=x.dtype))
    return ops.max(x, axis=1)


@impl("GlobalAveragePooling2D")
def global_average_pooling2d(*, x: tf.Tensor) -> tf.Tensor:
    return ops.mean(x, axis=(1, 2))


@impl("GlobalMaxPooling2D")
def global_max_pooling2d(*, x: tf.Tensor) -> tf.Tensor:
    return ops.max(x, axis=(1, 2))


@impl("ZeroPadding2D")
def zero_padding2d(*, x: tf.Tensor, padding: int | Sequence[int] = 1) -> tf.Tensor:
    ph, pw = pair(padding)
    return ops.pad(x, [(0, 0), (ph, ph), (pw, pw), (0, 0)])
