"""Convolution and pooling, channels last, with TensorFlow's padding arithmetic.

Inputs are [batch, steps, channels] (1-D) and [batch, height, width, channels] (2-D);
they are permuted to torch's channels-first layout around each call (for a contiguous
channels-last tensor the permuted view is torch's channels_last memory format, so no copy
is made). Kernels [k, in, out] and [kh, kw, in, out] are permuted to [out, in, ...].

Padding: "valid" (none); "same": out = ceil(L / s), pad_total = max((out - 1) s +
(k - 1) d + 1 - L, 0), pad_before = pad_total // 2 and the extra cell on the right;
"causal" (1-D only): all (k - 1) d cells on the left; an int p: p cells on both sides.
Convolutions pad with zeros; max pooling pads with -inf and average pooling does not count
padded cells, so padded cells never change a pooled value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from graphdsl.ops.arith import padding_amounts, pair

from . import impl
from .core import activate


def _flat_pad(pads: Sequence[tuple[int, int]]) -> list[int]:
    """F.pad's argument for channels-first spatial axes given in order (last axis first)."""
    out: list[int] = []
    for before, after in reversed(pads):
        out += [before, after]
    return out


def _conv(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None, strides: Any,
          padding: Any, dilation_rate: Any, rank: int) -> torch.Tensor:
    spatial = x.shape[1:-1]
    sizes = kernel.shape[:rank]
    strides_ = (strides,) if rank == 1 else pair(strides)
    dilations = (dilation_rate,) if rank == 1 else pair(dilation_rate)
    pads = [padding_amounts(spatial[i], sizes[i], strides_[i], dilations[i], padding)
            for i in range(rank)]
    # [B, *S, C] -> [B, C, *S]; kernel [*k, in, out] -> [out, in, *k]
    to_first = (0, rank + 1, *range(1, rank + 1))
    xc = x.permute(to_first)
    weight = kernel.permute(rank + 1, rank, *range(rank))
    if all(before == after for before, after in pads):
        torch_padding: Any = tuple(before for before, _ in pads)
    else:
        xc = F.pad(xc, _flat_pad(pads))
        torch_padding = 0
    conv = F.conv1d if rank == 1 else F.conv2d
    y = conv(xc, weight, bias, stride=strides_, padding=torch_padding, dilation=dilations)
    return y.permute(0, *range(2, rank + 2), 1)


@impl("Conv1D")
def conv1d(*, x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None = None,
           filters: int, kernel_size: int, strides: int = 1, padding: Any = "valid",
           dilation_rate: int = 1, activation: Any = "linear",
           use_bias: bool = True) -> torch.Tensor:
    y = _conv(x, kernel, bias if use_bias else None, strides, padding, dilation_rate, 1)
    return activate(y, activation)


@impl("Conv2D")
def conv2d(*, x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None = None,
           filters: int, kernel_size: int | Sequence[int], strides: int | Sequence[int] = 1,
           padding: Any = "valid", dilation_rate: int | Sequence[int] = 1,
           activation: Any = "linear", use_bias: bool = True) -> torch.Tensor:
    y = _conv(x, kernel, bias if use_bias else None, strides, padding, dilation_rate, 2)
    return activate(y, activation)


def _pool(x: torch.Tensor, kind: str, pool_size: Any, strides: Any, padding: Any,
          rank: int) -> torch.Tensor:
    sizes = (pool_size,) if rank == 1 else pair(pool_size)
    if strides is None:
        strides = pool_size
    strides_ = (strides,) if rank == 1 else pair(strides)
    spatial = x.shape[1:-1]
    pads = [padding_amounts(spatial[i], sizes[i], strides_[i], 1, padding) for i in range(rank)]
    xc = x.permute(0, rank + 1, *range(1, rank + 1))
    padded = any(before or after for before, after in pads)
    if kind == "max":
        if padded:
            xc = F.pad(xc, _flat_pad(pads), value=float("-inf"))
        max_pool: Any = F.max_pool1d if rank == 1 else F.max_pool2d
        y = max_pool(xc, sizes, strides_)
    else:
        pool: Any = F.avg_pool1d if rank == 1 else F.avg_pool2d
        if padded:
            # mean over the real cells only: pooled zero-padded x over pooled padded ones
            ones = torch.ones((1, 1, *spatial), dtype=x.dtype, device=x.device)
            counts = pool(F.pad(ones, _flat_pad(pads)), sizes, strides_)
            y = pool(F.pad(xc, _flat_pad(pads)), sizes, strides_) / counts.clamp_min(
                1.0 / math.prod(sizes))
        else:
            y = pool(xc, sizes, strides_)
    return y.permute(0, *range(2, rank + 2), 1)


@impl("MaxPooling1D")
def max_pooling1d(*, x: torch.Tensor, pool_size: int = 2, strides: int | None = None,
                  padding: Any = "valid") -> torch.Tensor:
    return _pool(x, "max", pool_size, strides, padding, 1)


@impl("AveragePooling1D")
def average_pooling1d(*, x: torch.Tensor, pool_size: int = 2, strides: int | None = None,
                      padding: Any = "valid") -> torch.Tensor:
    return _pool(x, "average", pool_size, strides, padding, 1)


@impl("MaxPooling2D")
def max_pooling2d(*, x: torch.Tensor, pool_size: int | Sequence[int] = 2,
                  strides: int | Sequence[int] | None = None,
                  padding: Any = "valid") -> torch.Tensor:
    return _pool(x, "max", pool_size, strides, padding, 2)


@impl("AveragePooling2D")
def average_pooling2d(*, x: torch.Tensor, pool_size: int | Sequence[int] = 2,
                      strides: int | Sequence[int] | None = None,
                      padding: Any = "valid") -> torch.Tensor:
    return _pool(x, "average", pool_size, strides, padding, 2)


# The value masked steps take in GlobalMaxPooling1D (the registry's canonical -1e9).
MASKED_MAX_FILL = -1e9


@impl("GlobalAveragePooling1D")
def global_average_pooling1d(*, x: torch.Tensor,
                             mask: torch.Tensor | None = None) -> torch.Tensor:
    if mask is None:
        return x.mean(dim=1)
    m = mask.unsqueeze(-1)
    total = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(dim=1)
    return total / m.sum(dim=1).clamp_min(1).to(x.dtype)


@impl("GlobalMaxPooling1D")
def global_max_pooling1d(*, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    if mask is not None:
        x = torch.where(mask.unsqueeze(-1), x,
                        torch.full((), MASKED_MAX_FILL, dtype=x.dtype, device=x.device))
    return x.amax(dim=1)


@impl("GlobalAveragePooling2D")
def global_average_pooling2d(*, x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(1, 2))


@impl("GlobalMaxPooling2D")
def global_max_pooling2d(*, x: torch.Tensor) -> torch.Tensor:
    return x.amax(dim=(1, 2))


@impl("ZeroPadding2D")
def zero_padding2d(*, x: torch.Tensor, padding: int | Sequence[int] = 1) -> torch.Tensor:
    ph, pw = pair(padding)
    return F.pad(x, (0, 0, pw, pw, ph, ph))
