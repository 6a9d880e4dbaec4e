"""Reductions over an axis (an int, a list of ints, or None for all), optionally over a mask
``where`` (bool, broadcast to x): masked entries count as 0 in sum and mean, -inf in max and
logsumexp, +inf in min (the integer extremes for integer tensors)."""

from __future__ import annotations

from typing import Any

import torch

from . import impl


def reduced_dims(x: torch.Tensor, axis: Any) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(x.dim()))
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return tuple(sorted({a % x.dim() for a in axes}))


def _fill(x: torch.Tensor, where: torch.Tensor | None, fill: float | int) -> torch.Tensor:
    if where is None:
        return x
    return torch.where(where, x, torch.full((), fill, dtype=x.dtype, device=x.device))


def _lowest(dtype: torch.dtype) -> float | int:
    return float("-inf") if dtype.is_floating_point else torch.iinfo(dtype).min


def _highest(dtype: torch.dtype) -> float | int:
    return float("inf") if dtype.is_floating_point else torch.iinfo(dtype).max


def _as_float(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.to(torch.float32)


@impl("sum")
def sum_(*, x: torch.Tensor, where: torch.Tensor | None = None, axis: Any = None,
         keepdims: bool = False) -> torch.Tensor:
    dims = reduced_dims(x, axis)
    if not dims:
        return _fill(x, where, 0)
    # dtype= keeps integer sums in x's dtype (torch would widen them to int64)
    return torch.sum(_fill(x, where, 0), dim=dims, keepdim=keepdims, dtype=x.dtype)


@impl("mean")
def mean(*, x: torch.Tensor, where: torch.Tensor | None = None, axis: Any = None,
         keepdims: bool = False) -> torch.Tensor:
    x = _as_float(x)
    dims = reduced_dims(x, axis)
    if not dims:
        return _fill(x, where, 0)  # sum(x m) / max(m, 1) of one element
    if where is None:
        return torch.mean(x, dim=dims, keepdim=keepdims)
    total = torch.sum(_fill(x, where, 0), dim=dims, keepdim=keepdims)
    count = torch.broadcast_to(where, x.shape).sum(dim=dims, keepdim=keepdims)
    return total / count.clamp_min(1).to(x.dtype)


@impl("max")
def max_(*, x: torch.Tensor, where: torch.Tensor | None = None, axis: Any = None,
         keepdims: bool = False) -> torch.Tensor:
    dims = reduced_dims(x, axis)
    masked = _fill(x, where, _lowest(x.dtype))
    return torch.amax(masked, dim=dims, keepdim=keepdims) if dims else masked


@impl("min")
def min_(*, x: torch.Tensor, where: torch.Tensor | None = None, axis: Any = None,
         keepdims: bool = False) -> torch.Tensor:
    dims = reduced_dims(x, axis)
    masked = _fill(x, where, _highest(x.dtype))
    return torch.amin(masked, dim=dims, keepdim=keepdims) if dims else masked


@impl("logsumexp")
def logsumexp(*, x: torch.Tensor, where: torch.Tensor | None = None, axis: Any = None,
              keepdims: bool = False) -> torch.Tensor:
    x = _fill(_as_float(x), where, float("-inf"))
    dims = reduced_dims(x, axis)
    return torch.logsumexp(x, dim=dims, keepdim=keepdims) if dims else x


@impl("argmax")
def argmax(*, x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    # torch returns the first index of the maximum, as the registry says
    return torch.argmax(x, dim=axis).to(torch.int32)
