"""Sampling ops: random in training, deterministic in inference (Dropout is in core).

The noise comes from TensorFlow's stateful ``tf.random.normal`` (see core's docstring)."""

from __future__ import annotations

import tensorflow as tf
from keras import ops

from . import impl


@impl("sample_normal")
def sample_normal(*, mean: tf.Tensor, logvar: tf.Tensor, training: bool) -> tf.Tensor:
    if not training:
        return mean
    eps = tf.random.normal(tf.shape(mean), dtype=mean.dtype)
    return mean + ops.exp(logvar * 0.5) * eps


@impl("GaussianNoise")
def gaussian_noise(*, x: tf.Tensor, stddev: float, training: bool) -> tf.Tensor:
    if not training:
        return x
    return x + stddev * tf.random.normal(tf.shape(x), dtype=x.dtype)
