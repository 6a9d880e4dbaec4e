"""Pooling, channels last: windows with TensorFlow's padding arithmetic (conv.py's), global,
and adaptive (torch's own adaptive pooling, whose bins are the registry's).

Max pooling pads with -inf and average pooling does not count padded cells, so padded
cells never change a pooled value."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from graphdsl.ops.arith import padding_amounts
from graphdsl.ops.rules import ntuple

from . import impl
from .conv import flat_pad, to_channels_first, to_channels_last

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVERAGE = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _pool(x: torch.Tensor, kind: str, pool_size: Any, strides: Any,
          padding: Any) -> torch.Tensor:
    rank = x.dim() - 2
    sizes = ntuple(pool_size, rank, "pool_size")
    strides_ = ntuple(pool_size if strides is None else strides, rank, "strides")
    spatial = x.shape[1:-1]
    pads = [padding_amounts(spatial[i], sizes[i], strides_[i], 1, padding) for i in range(rank)]
    xc = to_channels_first(x)
    padded = any(before or after for before, after in pads)
    if kind == "max":
        if padded:
            xc = F.pad(xc, flat_pad(pads), value=float("-inf"))
        y = _MAX[rank](xc, sizes, strides_)
    else:
        pool: Any = _AVERAGE[rank]
        if padded:
            # mean over the real cells only: pooled zero-padded x over pooled padded ones
            ones = torch.ones((1, 1, *spatial), dtype=x.dtype, device=x.device)
            counts = pool(F.pad(ones, flat_pad(pads)), sizes, strides_)
            y = pool(F.pad(xc, flat_pad(pads)), sizes, strides_) / counts.clamp_min(
                1.0 / math.prod(sizes))
        else:
            y = pool(xc, sizes, strides_)
    return to_channels_last(y)


def _pool_layer(kind: str):  # type: ignore[no-untyped-def]
    def pool(*, x: torch.Tensor, pool_size: Any = 2, strides: Any = None,
             padding: Any = "valid") -> torch.Tensor:
        return _pool(x, kind, pool_size, strides, padding)
    return pool


for _rank in (1, 2, 3):
    impl(f"MaxPooling{_rank}D")(_pool_layer("max"))
    impl(f"AveragePooling{_rank}D")(_pool_layer("average"))


# The value masked steps take in GlobalMaxPooling1D (the registry's canonical -1e9).
MASKED_MAX_FILL = -1e9


@impl("GlobalAveragePooling1D")
def global_average_pooling1d(*, x: torch.Tensor, mask: torch.Tensor | None = None,
                             keepdims: bool = False) -> torch.Tensor:
    if mask is None:
        return x.mean(dim=1, keepdim=keepdims)
    m = mask.unsqueeze(-1)
    total = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device)).sum(
        dim=1, keepdim=keepdims)
    return total / m.sum(dim=1, keepdim=keepdims).clamp_min(1).to(x.dtype)


@impl("GlobalMaxPooling1D")
def global_max_pooling1d(*, x: torch.Tensor, mask: torch.Tensor | None = None,
                         keepdims: bool = False) -> torch.Tensor:
    if mask is not None:
        x = torch.where(mask.unsqueeze(-1), x,
                        torch.full((), MASKED_MAX_FILL, dtype=x.dtype, device=x.device))
    return x.amax(dim=1, keepdim=keepdims)


def _global_average(*, x: torch.Tensor, keepdims: bool = False) -> torch.Tensor:
    return x.mean(dim=tuple(range(1, x.dim() - 1)), keepdim=keepdims)


def _global_max(*, x: torch.Tensor, keepdims: bool = False) -> torch.Tensor:
    return x.amax(dim=tuple(range(1, x.dim() - 1)), keepdim=keepdims)


for _rank in (2, 3):
    impl(f"GlobalAveragePooling{_rank}D")(_global_average)
    impl(f"GlobalMaxPooling{_rank}D")(_global_max)

_ADAPTIVE = {("Average", 1): F.adaptive_avg_pool1d, ("Average", 2): F.adaptive_avg_pool2d,
             ("Average", 3): F.adaptive_avg_pool3d, ("Max", 1): F.adaptive_max_pool1d,
             ("Max", 2): F.adaptive_max_pool2d, ("Max", 3): F.adaptive_max_pool3d}


def _adaptive_layer(kind: str, rank: int):  # type: ignore[no-untyped-def]
    def pool(*, x: torch.Tensor, output_size: Any) -> torch.Tensor:
        size = ntuple(output_size, rank, "output_size")
        return to_channels_last(_ADAPTIVE[kind, rank](to_channels_first(x), size))
    return pool


for (_kind, _rank) in _ADAPTIVE:
    impl(f"Adaptive{_kind}Pooling{_rank}D")(_adaptive_layer(_kind, _rank))
