"""Metrics. Unlike the registry's single scalar, each implementation returns a TUPLE of two
scalars ``(sum(correct * m), sum(m))`` (m = mask and where, 1 where absent, counted over the
elements the metric averages), so a training loop can aggregate an epoch exactly as
sum of the first / sum of the second over the batches; one batch's value is their ratio.
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops

from . import impl
from .elementwise import is_float
from .losses import validity


def _result_dtype(pred: tf.Tensor) -> str:
    return pred.dtype.name if is_float(pred) else "float32"


def _counts(correct: tf.Tensor, valid: tf.Tensor | None,
            dtype: str) -> tuple[tf.Tensor, tf.Tensor]:
    correct = ops.cast(correct, dtype)
    if valid is None:
        return ops.sum(correct), ops.cast(ops.size(correct), dtype)
    valid = ops.broadcast_to(valid, ops.shape(correct))
    hits = ops.where(valid, correct, ops.zeros((), dtype=dtype))
    return ops.sum(hits), ops.sum(ops.cast(valid, dtype))


@impl("accuracy")
def accuracy(*, pred: tf.Tensor, target: tf.Tensor, where: tf.Tensor | None = None,
             mask: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    pred, target = ops.convert_to_tensor(pred), ops.convert_to_tensor(target)
    # tf.argmax: the first index of the maximum (see reduce.argmax)
    predicted = tf.argmax(pred, axis=-1)
    expected = tf.argmax(target, axis=-1) if is_float(target) else ops.cast(target, "int64")
    return _counts(ops.equal(predicted, expected), validity(where, mask), _result_dtype(pred))


@impl("binary_accuracy")
def binary_accuracy(*, pred: tf.Tensor, target: tf.Tensor,
                    where: tf.Tensor | None = None, mask: tf.Tensor | None = None,
                    threshold: float = 0.5) -> tuple[tf.Tensor, tf.Tensor]:
    pred, target = ops.convert_to_tensor(pred), ops.convert_to_tensor(target)
    correct = ops.equal(pred > threshold, target > 0.5)
    valid = validity(where, mask)
    if valid is not None:
        # the per-sample shape leads the prediction's: trailing axes share their sample's m
        valid = ops.reshape(valid, (*ops.shape(valid),
                                    *([1] * (len(correct.shape) - len(valid.shape)))))
    return _counts(correct, valid, _result_dtype(pred))
