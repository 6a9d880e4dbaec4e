"""Sampling ops: random in training, deterministic in inference (Dropout is in core)."""

from __future__ import annotations

import torch

from . import impl


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
