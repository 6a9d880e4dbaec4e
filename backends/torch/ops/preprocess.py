"""Rescaling and Normalization (keras.layers' definitions)."""

from __future__ import annotations

from typing import Any

import torch

from graphdsl.ops.preprocess import NORMALIZATION_EPSILON, kept_axes

from . import impl


@impl("Rescaling")
def rescaling(*, x: torch.Tensor, scale: float, offset: float = 0.0) -> torch.Tensor:
    return x.float() * scale + offset


def _broadcastable(value: Any, x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    """A statistic shaped for x: its axes are the last len(shape) kept axes."""
    t = torch.as_tensor(value, dtype=torch.float32, device=x.device)
    shape = [1] * x.dim()
    for axis, size in zip(axes[len(axes) - t.dim():], t.shape, strict=True):
        shape[axis] = size
    return t.reshape(shape)


@impl("Normalization")
def normalization(*, x: torch.Tensor, adapt_mean: torch.Tensor | None = None,
                  adapt_variance: torch.Tensor | None = None, axis: Any = -1,
                  mean: Any = None, variance: Any = None, invert: bool = False) -> torch.Tensor:
    axes = kept_axes(axis, x.dim())
    m = _broadcastable(mean if mean is not None else adapt_mean, x, axes)
    v = _broadcastable(variance if variance is not None else adapt_variance, x, axes)
    std = v.sqrt().clamp_min(NORMALIZATION_EPSILON)
    x = x.float()
    return m + x * std if invert else (x - m) / std
