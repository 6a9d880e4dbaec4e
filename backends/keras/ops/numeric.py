"""einsum, cumsum, tril/triu, arange and top_k (graphdsl/ops/numeric.py)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from keras import ops

from graphdsl.ops.arith import arange_dtype, arange_values, einsum_terms

from . import impl
from .elementwise import keras_dtype


@impl("einsum")
def einsum(*, operands: list[tf.Tensor], subscripts: str) -> tf.Tensor:
    # the explicit form, so that an implicit output is NumPy's in both backends
    operands = [ops.convert_to_tensor(t) for t in operands]
    terms, out = einsum_terms(subscripts, [t.shape.rank for t in operands])
    return tf.einsum(f"{','.join(terms)}->{out}", *operands)


@impl("cumsum")
def cumsum(*, x: tf.Tensor, axis: int | None = None, exclusive: bool = False,
           reverse: bool = False) -> tf.Tensor:
    x = ops.convert_to_tensor(x)
    if axis is None:
        x, axis = ops.reshape(x, (-1,)), 0
    return tf.math.cumsum(x, axis=axis, exclusive=exclusive, reverse=reverse)


@impl("tril")
def tril(*, x: tf.Tensor, k: int = 0) -> tf.Tensor:
    return ops.tril(x, k=k)


@impl("triu")
def triu(*, x: tf.Tensor, k: int = 0) -> tf.Tensor:
    return ops.triu(x, k=k)


@impl("arange")
def arange(*, start: float, stop: float | None = None, step: float = 1,
           dtype: str | None = None) -> tf.Tensor:
    values = arange_values(start, stop, step)
    dtype = arange_dtype(start, stop, step, dtype)
    return ops.cast(np.asarray(values, dtype=np.float64), keras_dtype(dtype))


@impl("top_k")
def top_k(*, x: tf.Tensor, k: int, sorted: bool = True) -> tuple[tf.Tensor, tf.Tensor]:  # noqa: A002
    # tf.math.top_k: largest first, the lower index first among equal values
    values, indices = tf.math.top_k(x, k=k, sorted=True)
    return values, ops.cast(indices, "int32")
