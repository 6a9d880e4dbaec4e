"""Convolutions, channels last, with TensorFlow's padding arithmetic.

Inputs are [batch, *spatial, channels]; they are permuted to torch's channels-first layout
around each call (for a contiguous channels-last tensor the permuted view is torch's
channels_last memory format, so no copy is made). Kernels [*k, in / groups, out] are
permuted to torch's [out, in / groups, *k]; transposed kernels [*k, out, in] to [in, out, *k].

Padding: "valid" (none); "same": out = ceil(L / s), pad_total = max((out - 1) s +
(k - 1) d + 1 - L, 0), pad_before = pad_total // 2 and the extra cell on the right;
"causal" (1-D only): all (k - 1) d cells on the left; an int p: p cells on both sides.
Transposed convolutions run in full (no padding) and are then cut to Keras' window
(graphdsl.ops.conv.transpose_window), so they match Keras for every argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from graphdsl.ops.arith import padding_amounts
from graphdsl.ops.conv import transpose_window
from graphdsl.ops.rules import ntuple

from . import impl
from .core import activate

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def flat_pad(pads: Sequence[tuple[int, int]]) -> list[int]:
    """F.pad's argument for channels-first spatial axes given in order (last axis first)."""
    out: list[int] = []
    for before, after in reversed(pads):
        out += [before, after]
    return out


def to_channels_first(x: torch.Tensor) -> torch.Tensor:
    rank = x.dim() - 2
    return x.permute(0, rank + 1, *range(1, rank + 1))


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    rank = x.dim() - 2
    return x.permute(0, *range(2, rank + 2), 1)


def conv(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None, strides: Any,
         padding: Any, dilation_rate: Any, groups: int = 1) -> torch.Tensor:
    """Channels-last convolution with a [*k, in / groups, out] kernel."""
    rank = x.dim() - 2
    spatial = x.shape[1:-1]
    sizes = kernel.shape[:rank]
    strides_ = ntuple(strides, rank, "strides")
    dilations = ntuple(dilation_rate, rank, "dilation_rate")
    pads = [padding_amounts(spatial[i], sizes[i], strides_[i], dilations[i], padding)
            for i in range(rank)]
    xc = to_channels_first(x)
    weight = kernel.permute(rank + 1, rank, *range(rank))
    if all(before == after for before, after in pads):
        torch_padding: Any = tuple(before for before, _ in pads)
    else:
        xc = F.pad(xc, flat_pad(pads))
        torch_padding = 0
    y = _CONV[rank](xc, weight, bias, stride=strides_, padding=torch_padding,
                    dilation=dilations, groups=groups)
    return to_channels_last(y)


def _conv_layer(*, x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None = None,
                filters: int, kernel_size: Any, strides: Any = 1, padding: Any = "valid",
                dilation_rate: Any = 1, groups: int = 1, activation: Any = "linear",
                use_bias: bool = True) -> torch.Tensor:
    y = conv(x, kernel, bias if use_bias else None, strides, padding, dilation_rate, groups)
    return activate(y, activation)


for _rank in (1, 2, 3):
    impl(f"Conv{_rank}D")(_conv_layer)


def depthwise(x: torch.Tensor, depthwise_kernel: torch.Tensor, strides: Any, padding: Any,
              dilation_rate: Any) -> torch.Tensor:
    """[*k, C, m] kernel: channel c * m + j is channel c with filter [..., c, j]."""
    *k, channels, multiplier = depthwise_kernel.shape
    kernel = depthwise_kernel.reshape(*k, 1, channels * multiplier)
    return conv(x, kernel, None, strides, padding, dilation_rate, groups=channels)


def _depthwise_layer(*, x: torch.Tensor, depthwise_kernel: torch.Tensor,
                     bias: torch.Tensor | None = None, kernel_size: Any, strides: Any = 1,
                     padding: Any = "valid", dilation_rate: Any = 1, depth_multiplier: int = 1,
                     activation: Any = "linear", use_bias: bool = True) -> torch.Tensor:
    y = depthwise(x, depthwise_kernel, strides, padding, dilation_rate)
    if use_bias and bias is not None:
        y = y + bias
    return activate(y, activation)


def _separable_layer(*, x: torch.Tensor, depthwise_kernel: torch.Tensor,
                     pointwise_kernel: torch.Tensor, bias: torch.Tensor | None = None,
                     filters: int, kernel_size: Any, strides: Any = 1, padding: Any = "valid",
                     dilation_rate: Any = 1, depth_multiplier: int = 1,
                     activation: Any = "linear", use_bias: bool = True) -> torch.Tensor:
    h = depthwise(x, depthwise_kernel, strides, padding, dilation_rate)
    y = conv(h, pointwise_kernel, bias if use_bias else None, 1, "valid", 1)
    return activate(y, activation)


for _rank in (1, 2):
    impl(f"DepthwiseConv{_rank}D")(_depthwise_layer)
    impl(f"SeparableConv{_rank}D")(_separable_layer)


def _transpose_layer(*, x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None = None,
                     filters: int, kernel_size: Any, strides: Any = 1, padding: str = "valid",
                     output_padding: Any = None, dilation_rate: Any = 1,
                     activation: Any = "linear", use_bias: bool = True) -> torch.Tensor:
    rank = x.dim() - 2
    sizes = kernel.shape[:rank]
    strides_ = ntuple(strides, rank, "strides")
    dilations = ntuple(dilation_rate, rank, "dilation_rate")
    extra = (None,) * rank if output_padding is None else ntuple(output_padding, rank,
                                                                 "output_padding")
    weight = kernel.permute(rank + 1, rank, *range(rank))  # [*k, out, in] -> [in, out, *k]
    full = _CONV_TRANSPOSE[rank](to_channels_first(x), weight, stride=strides_,
                                 dilation=dilations)
    cuts = []
    for i in range(rank):
        start, out = transpose_window(x.shape[1 + i], sizes[i], strides_[i], dilations[i],
                                      padding, extra[i])
        # negative F.pad amounts cut; positive ones add zeros past the end
        cuts.append((-start, out - (full.shape[2 + i] - start)))
    y = to_channels_last(F.pad(full, flat_pad(cuts)))
    if use_bias and bias is not None:
        y = y + bias
    return activate(y, activation)


for _rank in (1, 2, 3):
    impl(f"Conv{_rank}DTranspose")(_transpose_layer)
