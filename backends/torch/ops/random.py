"""Sampling ops: random in training, deterministic in inference (Dropout is in core)."""

from __future__ import annotations

import math

import torch

from . import impl
from .core import drop_out


@impl("sample_normal")
def sample_normal(*, mean: torch.Tensor, logvar: torch.Tensor, training: bool) -> torch.Tensor:
    if not training:
        return mean
    return mean + torch.exp(logvar * 0.5) * torch.randn_like(mean)


@impl("GaussianNoise")
def gaussian_noise(*, x: torch.Tensor, stddev: float, training: bool) -> torch.Tensor:
    if not training:
        return x
    return x + stddev * torch.randn_like(x)


def _spatial_dropout(*, x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    if not training:
        return x
    return drop_out(x, rate, [-1, *[1] * (x.dim() - 2), -1])


for _rank in (1, 2, 3):
    impl(f"SpatialDropout{_rank}D")(_spatial_dropout)


@impl("GaussianDropout")
def gaussian_dropout(*, x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    if not training or rate <= 0:
        return x
    return x * (1.0 + math.sqrt(rate / (1.0 - rate)) * torch.randn_like(x))
