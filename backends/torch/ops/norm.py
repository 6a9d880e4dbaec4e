"""Normalisation layers over the last axis (the only axis the registry allows).

BatchNormalization follows Keras: the moving statistics are buffers updated in place in
training, ``moving = momentum * moving + (1 - momentum) * batch_stat``, with the BIASED
batch variance (torch.nn.BatchNorm would use the unbiased one and the opposite momentum).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import impl


def _check_axis(axis: int) -> None:
    if axis != -1:
        raise ValueError(f"only axis = -1 is supported, got {axis}")


@impl("LayerNormalization")
def layer_normalization(*, x: torch.Tensor, gamma: torch.Tensor | None = None,
                        beta: torch.Tensor | None = None, axis: int = -1, epsilon: float = 1e-3,
                        center: bool = True, scale: bool = True) -> torch.Tensor:
    _check_axis(axis)
    # F.layer_norm: biased variance, epsilon inside the square root
    return F.layer_norm(x, (x.shape[-1],), gamma if scale else None, beta if center else None,
                        epsilon)


@impl("BatchNormalization")
def batch_normalization(*, x: torch.Tensor, gamma: torch.Tensor | None = None,
                        beta: torch.Tensor | None = None, moving_mean: torch.Tensor,
                        moving_variance: torch.Tensor, axis: int = -1, momentum: float = 0.99,
                        epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                        training: bool) -> torch.Tensor:
    _check_axis(axis)
    if training:
        reduce_axes = tuple(range(x.dim() - 1))
        variance, mean = torch.var_mean(x, dim=reduce_axes, correction=0)
        with torch.no_grad():
            moving_mean.lerp_(mean.detach().to(moving_mean.dtype), 1.0 - momentum)
            moving_variance.lerp_(variance.detach().to(moving_variance.dtype), 1.0 - momentum)
    else:
        mean, variance = moving_mean, moving_variance
    # y = (x - mean) / sqrt(var + eps) * gamma + beta, folded into one multiply-add
    factor = torch.rsqrt(variance + epsilon)
    if scale and gamma is not None:
        factor = factor * gamma
    shift = -mean * factor
    if center and beta is not None:
        shift = shift + beta
    return torch.addcmul(shift, x, factor)
