"""Normalisation layers over the last axis (the only axis the registry allows).

BatchNormalization follows Keras: in training the moving statistics are updated,
``moving = momentum * moving + (1 - momentum) * batch_stat``, with the BIASED batch
variance. They are updated with ``.assign`` when they are variables (a Keras or
TensorFlow Variable, as a layer holds them); plain tensors cannot be updated and are left
as they are.
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops

from . import impl


def _check_axis(axis: int) -> None:
    if axis != -1:
        raise ValueError(f"only axis = -1 is supported, got {axis}")


def _normalise(x: tf.Tensor, mean: tf.Tensor, variance: tf.Tensor, epsilon: float,
               gamma: tf.Tensor | None, beta: tf.Tensor | None) -> tf.Tensor:
    """(x - mean) / sqrt(variance + epsilon) * gamma + beta, folded into one multiply-add."""
    factor = ops.rsqrt(variance + epsilon)
    if gamma is not None:
        factor = factor * gamma
    shift = -mean * factor
    if beta is not None:
        shift = shift + beta
    return x * factor + shift


@impl("LayerNormalization")
def layer_normalization(*, x: tf.Tensor, gamma: tf.Tensor | None = None,
                        beta: tf.Tensor | None = None, axis: int = -1, epsilon: float = 1e-3,
                        center: bool = True, scale: bool = True) -> tf.Tensor:
    _check_axis(axis)
    # biased variance, epsilon inside the square root
    mean, variance = ops.moments(x, axes=[-1], keepdims=True)
    y = (x - mean) * ops.rsqrt(variance + epsilon)
    if scale and gamma is not None:
        y = y * gamma
    if center and beta is not None:
        y = y + beta
    return y


def _update(moving: tf.Tensor, batch_stat: tf.Tensor, momentum: float) -> None:
    if hasattr(moving, "assign"):
        stat = ops.cast(ops.stop_gradient(batch_stat), moving.dtype)
        moving.assign(moving * momentum + stat * (1.0 - momentum))


@impl("BatchNormalization")
def batch_normalization(*, x: tf.Tensor, gamma: tf.Tensor | None = None,
                        beta: tf.Tensor | None = None, moving_mean: tf.Tensor,
                        moving_variance: tf.Tensor, axis: int = -1, momentum: float = 0.99,
                        epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                        training: bool) -> tf.Tensor:
    _check_axis(axis)
    if training:
        mean, variance = ops.moments(x, axes=list(range(len(x.shape) - 1)))
        _update(moving_mean, mean, momentum)
        _update(moving_variance, variance, momentum)
    else:
        mean = ops.cast(moving_mean, x.dtype)
        variance = ops.cast(moving_variance, x.dtype)
    return _normalise(x, mean, variance, epsilon, gamma if scale else None,
                      beta if center else None)
