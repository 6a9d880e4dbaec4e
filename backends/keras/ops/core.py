"""Core layers: Dense, Embedding, Dropout, Activation, Flatten, Reshape.

Also home of :func:`activate`, the one implementation of the named activations
(graphdsl/ops/specs.py ACTIVATIONS) that every layer with an ``activation`` argument and
every activation-named function op uses, of :func:`dynamic_shape` (static sizes where
known, scalar tensors where not) and of :func:`drop_out`, the dropout Dropout and
MultiHeadAttention share.

Randomness uses ``keras.random`` without a seed generator owned by a layer: Keras' global
one, which follows ``keras.utils.set_random_seed``; the training engine traces its step
with stateless draws standing in (backends/keras/rng.py), so a resumed run draws the same.
An exported model (keras-source) needs nothing but Keras for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from graphdsl.ops.arith import resolve_shape

from . import impl

if keras.backend.backend() != "tensorflow":
    raise ImportError(f"graphdsl's Keras ops need the TensorFlow backend, but Keras runs on "
                      f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow before "
                      f"importing keras")

# Keras' default negative slope for leaky_relu (specs.py says 0.2).
LEAKY_RELU_SLOPE = 0.2

_ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "linear": lambda x: x,
    "relu": ops.relu,
    "gelu": lambda x: ops.gelu(x, approximate=False),  # exact: 0.5 x (1 + erf(x / sqrt(2)))
    "gelu_tanh": lambda x: ops.gelu(x, approximate=True),
    "tanh": ops.tanh,
    "sigmoid": ops.sigmoid,
    "softmax": lambda x: ops.softmax(x, axis=-1),
    "silu": ops.silu,
    "swish": ops.silu,
    "elu": ops.elu,  # alpha 1: x if x > 0 else exp(x) - 1
    "softplus": ops.softplus,
    "leaky_relu": lambda x: ops.leaky_relu(x, negative_slope=LEAKY_RELU_SLOPE),
    "relu6": ops.relu6,
    "hard_sigmoid": ops.hard_sigmoid,  # relu6(x + 3) / 6
    "hard_silu": ops.hard_silu,
    "hard_swish": ops.hard_silu,
    "mish": keras.activations.mish,  # x tanh(softplus(x)); keras.ops has no mish
    "selu": ops.selu,
    "softsign": ops.softsign,
}

ACTIVATION_NAMES = tuple(_ACTIVATIONS)


def activate(x: tf.Tensor, activation: Any) -> tf.Tensor:
    """Apply a named activation. ``activation`` is its name or a checked activation Spec."""
    name = getattr(activation, "name", activation)
    if name is None:
        return x
    try:
        fn = _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(_ACTIVATIONS)}") \
            from None
    return fn(x)


def dynamic_shape(x: tf.Tensor) -> list[Any]:
    """x's shape: ints where the static shape knows them, scalar int32 tensors elsewhere
    (the batch axis inside a traced ``call``)."""
    return list(ops.shape(x))


def drop_out(x: tf.Tensor, rate: float, noise_shape: Sequence[int] | None = None) -> tf.Tensor:
    """Inverted dropout: x * bernoulli(1 - rate) / (1 - rate); rate >= 1 gives zeros. One
    draw per position of noise_shape (1: shared along the axis; -1: the input's size)."""
    if rate <= 0:
        return x
    if rate >= 1:
        return ops.zeros_like(x)
    shape = dynamic_shape(x)
    if noise_shape is not None:
        shape = [shape[i] if n == -1 else n for i, n in enumerate(noise_shape)]
    keep = keras.random.uniform(shape, dtype=x.dtype) >= rate
    return ops.where(keep, x / ops.cast(1.0 - rate, x.dtype), ops.zeros_like(x))


@impl("Dense")
def dense(*, x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None = None,
          units: int, activation: Any = "linear", use_bias: bool = True) -> tf.Tensor:
    # kernel is [in, units], the layout keras.layers.Dense uses
    y = ops.matmul(x, kernel)
    if use_bias and bias is not None:
        y = y + bias
    return activate(y, activation)


@impl("Embedding")
def embedding(*, ids: tf.Tensor, embeddings: tf.Tensor, input_dim: int, output_dim: int,
              mask_zero: bool = False) -> tf.Tensor:
    # The padding mask of mask_zero is a separate `not_equal` node the compiler makes.
    # tf.gather, not ops.take: take wraps negative ids around, the registry says an id
    # outside [0, input_dim) is an error (tf.gather raises on the CPU).
    ids = ops.convert_to_tensor(ids)
    if ids.dtype not in (tf.int32, tf.int64):
        ids = ops.cast(ids, "int64")
    return tf.gather(embeddings, ids)


@impl("Dropout")
def dropout(*, x: tf.Tensor, rate: float, noise_shape: Sequence[int] | None = None,
            training: bool) -> tf.Tensor:
    return drop_out(x, rate, noise_shape) if training else x


@impl("Activation")
def activation_layer(*, x: tf.Tensor, activation: Any) -> tf.Tensor:
    return activate(x, activation)


@impl("Flatten")
def flatten(*, x: tf.Tensor) -> tf.Tensor:
    return ops.reshape(x, (dynamic_shape(x)[0], -1))


@impl("Reshape")
def reshape_layer(*, x: tf.Tensor, target_shape: Sequence[int]) -> tf.Tensor:
    shape = dynamic_shape(x)
    return ops.reshape(x, (shape[0], *resolve_shape(shape[1:], target_shape)))


@impl("PReLU")
def prelu(*, x: tf.Tensor, alpha: tf.Tensor, shared_axes: Sequence[int] | None = None) -> tf.Tensor:
    # alpha is x's shape without the batch axis (1 on shared axes): it broadcasts
    return ops.relu(x) - alpha * ops.relu(-x)
