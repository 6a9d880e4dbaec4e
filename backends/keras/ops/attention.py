"""Keras' MultiHeadAttention and the functions for building attention by hand.

MultiHeadAttention follows the registry's rule literally: scores at disallowed pairs are
REPLACED by -1e9 before the softmax (keras.layers.MultiHeadAttention adds -1e9 instead).
A disallowed pair then gets a weight of exactly 0 whenever its query row has an allowed
pair, and a row with no allowed pair gets uniform weights (the mean of the values), as in
the PyTorch backend.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
from keras import ops

from . import impl
from .core import drop_out, dynamic_shape
from .elementwise import SOFTMAX_MASKED_FILL, filled


def _project(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | None) -> tf.Tensor:
    """[B, T, d] @ [d, heads, size] (+ [heads, size]) -> [B, heads, T, size]."""
    d, heads, size = kernel.shape
    y = ops.matmul(x, ops.reshape(kernel, (d, heads * size)))
    if bias is not None:
        y = y + ops.reshape(bias, (heads * size,))
    batch, steps = dynamic_shape(x)[:2]
    return ops.transpose(ops.reshape(y, (batch, steps, heads, size)), (0, 2, 1, 3))


def lower_triangle(rows: Any, columns: Any) -> tf.Tensor:
    """bool [rows, columns], true where j <= i (the diagonal included)."""
    return ops.arange(columns)[None, :] <= ops.arange(rows)[:, None]


def _allowed_pairs(q_steps: Any, v_steps: Any, attention_mask: tf.Tensor | None, causal: bool,
                   mask: tf.Tensor | None, value_mask: tf.Tensor | None) -> tf.Tensor | None:
    """bool [B or 1, Tq, Tv]: true where query i may attend to value j; None: everywhere."""
    allowed: tf.Tensor | None = None

    def both(a: tf.Tensor | None, b: tf.Tensor) -> tf.Tensor:
        return b if a is None else ops.logical_and(a, b)

    if attention_mask is not None:
        allowed = both(allowed, ops.cast(attention_mask, "bool"))
    if causal:
        allowed = both(allowed, lower_triangle(q_steps, v_steps)[None])
    if mask is not None:
        allowed = both(allowed, ops.cast(mask, "bool")[:, :, None])
    if value_mask is not None:
        allowed = both(allowed, ops.cast(value_mask, "bool")[:, None, :])
    return allowed


@impl("MultiHeadAttention")
def multi_head_attention(
        *, query: tf.Tensor, value: tf.Tensor, key: tf.Tensor | None = None,
        attention_mask: tf.Tensor | None = None, mask: tf.Tensor | None = None,
        value_mask: tf.Tensor | None = None, query_kernel: tf.Tensor,
        query_bias: tf.Tensor | None = None, key_kernel: tf.Tensor,
        key_bias: tf.Tensor | None = None, value_kernel: tf.Tensor,
        value_bias: tf.Tensor | None = None, output_kernel: tf.Tensor,
        output_bias: tf.Tensor | None = None, num_heads: int, key_dim: int,
        value_dim: int | None = None, dropout: float = 0.0, use_bias: bool = True,
        output_shape: int | None = None, use_causal_mask: bool = False,
        training: bool) -> tf.Tensor:
    if key is None:
        key = value
    if value_mask is None and mask is not None and value is query:
        value_mask = mask
    if not use_bias:
        query_bias = key_bias = value_bias = output_bias = None
    q = _project(query, query_kernel, query_bias)
    k = _project(key, key_kernel, key_bias)
    v = _project(value, value_kernel, value_bias)
    batch, q_steps = dynamic_shape(query)[:2]
    v_steps = dynamic_shape(value)[1]
    scores = ops.matmul(q, ops.swapaxes(k, -1, -2)) * ops.cast(key_dim ** -0.5, q.dtype)
    allowed = _allowed_pairs(q_steps, v_steps, attention_mask, use_causal_mask, mask,
                             value_mask)
    if allowed is not None:
        scores = filled(scores, allowed[:, None], SOFTMAX_MASKED_FILL)
    weights = ops.softmax(scores, axis=-1)
    if training:
        weights = drop_out(weights, dropout)
    out = ops.matmul(weights, v)  # [B, heads, Tq, size]
    heads, size, features = output_kernel.shape
    merged = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (batch, q_steps, heads * size))
    y = ops.matmul(merged, ops.reshape(output_kernel, (heads * size, features)))
    return y + output_bias if output_bias is not None else y


@impl("split_heads")
def split_heads(*, x: tf.Tensor, heads: int) -> tf.Tensor:
    batch, steps, features = dynamic_shape(x)
    return ops.transpose(ops.reshape(x, (batch, steps, heads, features // heads)), (0, 2, 1, 3))


@impl("merge_heads")
def merge_heads(*, x: tf.Tensor) -> tf.Tensor:
    b, h, t, d = dynamic_shape(x)
    return ops.reshape(ops.transpose(x, (0, 2, 1, 3)), (b, t, h * d))


@impl("causal_mask")
def causal_mask(*, x: tf.Tensor, axis: int = 1) -> tf.Tensor:
    steps = dynamic_shape(x)[axis]
    return lower_triangle(steps, steps)
