"""Shape manipulation: reshape, transpose, concat, stack, indexing and friends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
from keras import ops

from graphdsl.ops.arith import index_items

from . import impl
from .core import dynamic_shape, resolve_shape


@impl("reshape")
def reshape(*, x: tf.Tensor, shape: Sequence[int]) -> tf.Tensor:
    # row-major like numpy.reshape; 0 copies the input's dimension, one -1 is inferred
    return ops.reshape(x, tuple(resolve_shape(dynamic_shape(x), shape)))


@impl("transpose")
def transpose(*, x: tf.Tensor, perm: Sequence[int] | None = None) -> tf.Tensor:
    if perm is None:
        return ops.swapaxes(x, -2, -1)
    return ops.transpose(x, tuple(perm))


@impl("concat")
def concat(*, xs: Sequence[tf.Tensor], axis: int = -1) -> tf.Tensor:
    return ops.concatenate(list(xs), axis=axis)


@impl("stack")
def stack(*, xs: Sequence[tf.Tensor], axis: int = 0) -> tf.Tensor:
    return ops.stack(list(xs), axis=axis)


@impl("expand_dims")
def expand_dims(*, x: tf.Tensor, axis: int) -> tf.Tensor:
    return ops.expand_dims(x, axis)


@impl("squeeze")
def squeeze(*, x: tf.Tensor, axis: int) -> tf.Tensor:
    size = x.shape[axis]
    if size is not None and size != 1:
        raise ValueError(f"cannot squeeze axis {axis} of size {size}")
    return ops.squeeze(x, axis=axis)


@impl("positions")
def positions(*, x: tf.Tensor, axis: int = 1) -> tf.Tensor:
    return ops.arange(dynamic_shape(x)[axis], dtype="int32")


@impl("zeros_like")
def zeros_like(*, x: tf.Tensor) -> tf.Tensor:
    return ops.zeros_like(x)


@impl("ones_like")
def ones_like(*, x: tf.Tensor) -> tf.Tensor:
    return ops.ones_like(x)


@impl("mask_of")
def mask_of(*, x: tf.Tensor) -> tf.Tensor:
    """Never runs: the compiler replaces `mask_of(x)` by the mask tensor itself."""
    raise RuntimeError("mask_of is resolved at compile time to the mask tensor; a graph that "
                       "still calls it was not elaborated")


@impl("getitem")
def getitem(*, x: tf.Tensor, items: Sequence[tuple[Any, ...]]) -> tf.Tensor:
    # TensorFlow's basic indexing is NumPy's for integers, slices, `...` and new axes
    return ops.convert_to_tensor(x)[index_items(items)]
