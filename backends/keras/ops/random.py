"""Sampling ops: random in training, deterministic in inference (Dropout is in core).

The noise comes from ``keras.random.normal`` (see core's docstring)."""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import ops

from . import impl
from .core import drop_out, dynamic_shape


@impl("sample_normal")
def sample_normal(*, mean: tf.Tensor, logvar: tf.Tensor, training: bool) -> tf.Tensor:
    if not training:
        return mean
    eps = keras.random.normal(dynamic_shape(mean), dtype=mean.dtype)
    return mean + ops.exp(logvar * 0.5) * eps


@impl("GaussianNoise")
def gaussian_noise(*, x: tf.Tensor, stddev: float, training: bool) -> tf.Tensor:
    if not training:
        return x
    return x + stddev * keras.random.normal(dynamic_shape(x), dtype=x.dtype)


def _spatial_dropout(*, x: tf.Tensor, rate: float, training: bool) -> tf.Tensor:
    if not training:
        return x
    return drop_out(x, rate, [-1, *[1] * (len(x.shape) - 2), -1])


for _rank in (1, 2, 3):
    impl(f"SpatialDropout{_rank}D")(_spatial_dropout)


@impl("GaussianDropout")
def gaussian_dropout(*, x: tf.Tensor, rate: float, training: bool) -> tf.Tensor:
    if not training or rate <= 0:
        return x
    stddev = math.sqrt(rate / (1.0 - rate))
    return x * (1.0 + stddev * keras.random.normal(dynamic_shape(x), dtype=x.dtype))
