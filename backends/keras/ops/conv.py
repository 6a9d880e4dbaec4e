"""Convolutions, channels last, with TensorFlow's padding arithmetic.

Inputs are [batch, *spatial, channels] and kernels [*k, in / groups, out] (depthwise
[*k, in, multiplier], transposed [*k, out, in]): TensorFlow's own layouts, so nothing is
permuted. A kernel whose input size is not the input's channels makes ops.conv a grouped
convolution.

Padding: "valid" (none); "same": out = ceil(L / s), pad_total = max((out - 1) s +
(k - 1) d + 1 - L, 0), pad_before = pad_total // 2 and the extra cell on the right
(TensorFlow's "SAME", which runs as it is); "causal" (1-D only): all (k - 1) d cells on the
left; an int p: p cells on both sides.

TensorFlow rejects strides > 1 together with dilation > 1; such a convolution runs with
stride 1 and keeps every s-th output, which is the same result. Transposed convolutions
run with "valid" padding and are then cut to Keras' window
(graphdsl.ops.conv.transpose_window).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf
from keras import ops

from graphdsl.ops.arith import padding_amounts
from graphdsl.ops.conv import transpose_window
from graphdsl.ops.rules import ntuple

from . import impl
from .core import activate


def pad_spatial(x: tf.Tensor, pads: Sequence[tuple[int, int]], value: float = 0.0) -> tf.Tensor:
    if not any(before or after for before, after in pads):
        return x
    return ops.pad(x, [(0, 0), *pads, (0, 0)], constant_values=value)


def spatial_pads(x: tf.Tensor, sizes: Sequence[int], strides: Sequence[int],
                 dilations: Sequence[int], padding: Any) -> list[tuple[int, int]]:
    """The explicit pads of each spatial axis ("same" needs the static spatial sizes)."""
    spatial = x.shape[1:-1]
    return [padding_amounts(spatial[i], sizes[i], strides[i], dilations[i], padding)
            for i in range(len(sizes))]


def _windowed(op: Callable[..., tf.Tensor], x: tf.Tensor, kernel: tf.Tensor, strides: Any,
              padding: Any, dilation_rate: Any) -> tf.Tensor:
    """ops.conv or ops.depthwise_conv with the registry's padding, any strides and dilation."""
    rank = len(x.shape) - 2
    sizes = tuple(kernel.shape[:rank])
    strides_ = ntuple(strides, rank, "strides")
    dilations = ntuple(dilation_rate, rank, "dilation_rate")
    # TensorFlow cannot stride and dilate at once: stride 1, then keep every s-th output
    subsample = any(s > 1 for s in strides_) and any(d > 1 for d in dilations)
    if padding == "same" and not subsample:
        tf_padding = "same"
    else:
        x = pad_spatial(x, spatial_pads(x, sizes, strides_, dilations, padding))
        tf_padding = "valid"
    y = op(x, kernel, strides=1 if subsample else strides_, padding=tf_padding,
           data_format="channels_last", dilation_rate=dilations)
    if subsample:
        y = y[(slice(None), *(slice(None, None, s) for s in strides_))]
    return y


def conv(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None, strides: Any, padding: Any,
         dilation_rate: Any) -> tf.Tensor:
    y = _windowed(ops.conv, x, kernel, strides, padding, dilation_rate)
    return y if bias is None else y + bias


def _conv_layer(*, x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None = None,
                filters: int, kernel_size: Any, strides: Any = 1, padding: Any = "valid",
                dilation_rate: Any = 1, groups: int = 1, activation: Any = "linear",
                use_bias: bool = True) -> tf.Tensor:
    y = conv(x, kernel, bias if use_bias else None, strides, padding, dilation_rate)
    return activate(y, activation)


for _rank in (1, 2, 3):
    impl(f"Conv{_rank}D")(_conv_layer)


def _depthwise_layer(*, x: tf.Tensor, depthwise_kernel: tf.Tensor,
                     bias: tf.Tensor | None = None, kernel_size: Any, strides: Any = 1,
                     padding: Any = "valid", dilation_rate: Any = 1, depth_multiplier: int = 1,
                     activation: Any = "linear", use_bias: bool = True) -> tf.Tensor:
    y = _windowed(ops.depthwise_conv, x, depthwise_kernel, strides, padding, dilation_rate)
    if use_bias and bias is not None:
        y = y + bias
    return activate(y, activation)


def _separable_layer(*, x: tf.Tensor, depthwise_kernel: tf.Tensor, pointwise_kernel: tf.Tensor,
                     bias: tf.Tensor | None = None, filters: int, kernel_size: Any,
                     strides: Any = 1, padding: Any = "valid", dilation_rate: Any = 1,
                     depth_multiplier: int = 1, activation: Any = "linear",
                     use_bias: bool = True) -> tf.Tensor:
    h = _windowed(ops.depthwise_conv, x, depthwise_kernel, strides, padding, dilation_rate)
    y = conv(h, pointwise_kernel, bias if use_bias else None, 1, "valid", 1)
    return activate(y, activation)


for _rank in (1, 2):
    impl(f"DepthwiseConv{_rank}D")(_depthwise_layer)
    impl(f"SeparableConv{_rank}D")(_separable_layer)


def _transpose_layer(*, x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None = None,
                     filters: int, kernel_size: Any, strides: Any = 1, padding: str = "valid",
                     output_padding: Any = None, dilation_rate: Any = 1,
                     activation: Any = "linear", use_bias: bool = True) -> tf.Tensor:
    rank = len(x.shape) - 2
    sizes = tuple(kernel.shape[:rank])
    strides_ = ntuple(strides, rank, "strides")
    dilations = ntuple(dilation_rate, rank, "dilation_rate")
    extra = (None,) * rank if output_padding is None else ntuple(output_padding, rank,
                                                                 "output_padding")
    # valid: the full length (L-1)s + span, or L*s (zeros at the end) when span < s
    y = ops.conv_transpose(x, kernel, strides=strides_, padding="valid",
                           data_format="channels_last", dilation_rate=dilations)
    for i in range(rank):
        start, out = transpose_window(x.shape[1 + i], sizes[i], strides_[i], dilations[i],
                                      padding, extra[i])
        have = y.shape[1 + i] - start
        index = [slice(None)] * (rank + 2)
        index[1 + i] = slice(start, start + min(out, have))
        y = y[tuple(index)]
        if out > have:
            y = ops.pad(y, [(0, 0)] * (1 + i) + [(0, out - have)] + [(0, 0)] * (rank - i))
    if use_bias and bias is not None:
        y = y + bias
    return activate(y, activation)


for _rank in (1, 2, 3):
    impl(f"Conv{_rank}DTranspose")(_transpose_layer)
