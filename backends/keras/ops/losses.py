"""Loss functions; each returns a scalar.

One reduction for every loss (graphdsl/ops/losses.py): per-sample losses l, weights
w = sample_weight * class_weight[target], validity m = mask and where (each 1 if absent):

    loss = sum(l * w * m) / max(sum(w * m), 1e-12)

with w * m broadcast to l's shape before the sums. Masked entries are selected away (not
multiplied by 0), so a non-finite loss at a masked position changes neither the value nor
a gradient.

Per-sample shapes: crossentropy with class ids and kl_normal reduce the last axis of the
prediction and keep the rest. The elementwise losses (mse, mae, huber,
binary_crossentropy) and crossentropy with probability targets average every axis beyond
the per-sample shape, which is the shape of `where`, `sample_weight` or `mask` (the first
given) or else [batch]; weights and masks broadcast (NumPy rules) to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf
from keras import ops

from . import impl
from .elementwise import is_float

# Probabilities are clipped to [CLIP_EPSILON, 1 - CLIP_EPSILON] before a log (Keras' epsilon).
CLIP_EPSILON = 1e-7
# The smallest total weight the reduction divides by.
WEIGHT_FLOOR = 1e-12


def validity(where: tf.Tensor | None, mask: tf.Tensor | None) -> tf.Tensor | None:
    """m = mask and where, or None when neither is given."""
    if where is None:
        return mask
    if mask is None:
        return where
    return ops.logical_and(where, mask)


def per_sample_rank(*weighting: tf.Tensor | None, default: int = 1) -> int:
    """The rank of the per-sample shape: the first given weighting tensor's, else 1."""
    for tensor in weighting:
        if tensor is not None:
            return len(tensor.shape)
    return default


def mean_beyond(e: tf.Tensor, rank: int) -> tf.Tensor:
    """Average e over its axes beyond the first ``rank``."""
    dims = tuple(range(rank, len(e.shape)))
    return ops.mean(e, axis=dims) if dims else e


def reduce_loss(losses: tf.Tensor, weight: tf.Tensor | None,
                valid: tf.Tensor | None) -> tf.Tensor:
    """sum(l * w * m) / max(sum(w * m), 1e-12)."""
    if weight is None and valid is None:
        count = ops.cast(ops.size(losses), losses.dtype)
        return ops.sum(losses) / ops.maximum(count, WEIGHT_FLOOR)
    weighted = losses if weight is None else losses * ops.cast(weight, losses.dtype)
    if weight is None:
        total_weight = ops.ones((), dtype=losses.dtype)
    else:
        total_weight = ops.cast(weight, losses.dtype)
    if valid is not None:
        zero = ops.zeros((), dtype=losses.dtype)
        weighted = ops.where(valid, weighted, zero)
        total_weight = ops.where(valid, total_weight, zero)
    total_weight = ops.broadcast_to(total_weight, ops.shape(losses))
    return ops.sum(weighted) / ops.maximum(ops.sum(total_weight), WEIGHT_FLOOR)


def _log_probabilities(pred: tf.Tensor, from_logits: bool) -> tf.Tensor:
    if from_logits:
        return ops.log_softmax(pred, axis=-1)
    p = pred / ops.sum(pred, axis=-1, keepdims=True)
    return ops.log(ops.clip(p, CLIP_EPSILON, 1.0 - CLIP_EPSILON))


def _combine_weights(*weights: tf.Tensor | None) -> tf.Tensor | None:
    out: tf.Tensor | None = None
    for w in weights:
        if w is not None:
            out = w if out is None else out * w
    return out


@impl("crossentropy")
def crossentropy(*, pred: tf.Tensor, target: tf.Tensor, where: tf.Tensor | None = None,
                 sample_weight: tf.Tensor | None = None, mask: tf.Tensor | None = None,
                 from_logits: bool = False, label_smoothing: float = 0.0,
                 class_weight: Sequence[float] | None = None) -> tf.Tensor:
    valid = validity(where, mask)
    target = ops.convert_to_tensor(target)
    classes = pred.shape[-1]
    smoothing = float(label_smoothing)
    logp = _log_probabilities(pred, from_logits)
    if not is_float(target):
        ids = target
        if valid is not None:
            # targets at invalid positions (padding ids, -1, ...) must never index anything
            ids = ops.where(valid, ids, ops.zeros((), dtype=ids.dtype))
        # tf.gather, not ops.take_along_axis (which wraps negative ids around): an id
        # outside [0, classes) at a valid position is an error, as in the PyTorch backend
        losses = -tf.gather(logp, ids, batch_dims=len(ids.shape))
        if smoothing:
            # the smoothed target q (1 - s) + s / classes
            losses = (1.0 - smoothing) * losses - (smoothing / classes) * ops.sum(logp, axis=-1)
        class_w = None
        if class_weight is not None:
            table = ops.convert_to_tensor(list(class_weight), dtype=pred.dtype)
            class_w = tf.gather(table, ids)
        return reduce_loss(losses, _combine_weights(sample_weight, class_w), valid)
    q = ops.cast(target, pred.dtype)
    if smoothing:
        q = q * (1.0 - smoothing) + smoothing / classes
    losses = -ops.sum(q * logp, axis=-1)
    rank = min(per_sample_rank(where, sample_weight, mask), len(losses.shape))
    return reduce_loss(mean_beyond(losses, rank), sample_weight, valid)


def _elementwise_loss(e: tf.Tensor, where: tf.Tensor | None,
                      sample_weight: tf.Tensor | None,
                      mask: tf.Tensor | None) -> tf.Tensor:
    losses = mean_beyond(e, per_sample_rank(where, sample_weight, mask))
    return reduce_loss(losses, sample_weight, validity(where, mask))


@impl("mse")
def mse(*, pred: tf.Tensor, target: tf.Tensor, where: tf.Tensor | None = None,
        sample_weight: tf.Tensor | None = None, mask: tf.Tensor | None = None) -> tf.Tensor:
    d = pred - ops.cast(target, pred.dtype)
    return _elementwise_loss(d * d, where, sample_weight, mask)


@impl("mae")
def mae(*, pred: tf.Tensor, target: tf.Tensor, where: tf.Tensor | None = None,
        sample_weight: tf.Tensor | None = None, mask: tf.Tensor | None = None) -> tf.Tensor:
    return _elementwise_loss(ops.abs(pred - ops.cast(target, pred.dtype)), where,
                             sample_weight, mask)


@impl("huber")
def huber(*, pred: tf.Tensor, target: tf.Tensor, where: tf.Tensor | None = None,
          sample_weight: tf.Tensor | None = None, mask: tf.Tensor | None = None,
          delta: float = 1.0) -> tf.Tensor:
    d = ops.abs(pred - ops.cast(target, pred.dtype))
    e = ops.where(d <= delta, 0.5 * d * d, delta * (d - 0.5 * delta))
    return _elementwise_loss(e, where, sample_weight, mask)


@impl("binary_crossentropy")
def binary_crossentropy(*, pred: tf.Tensor, target: tf.Tensor,
                        where: tf.Tensor | None = None,
                        sample_weight: tf.Tensor | None = None,
                        mask: tf.Tensor | None = None,
                        from_logits: bool = False) -> tf.Tensor:
    t = ops.cast(target, pred.dtype)
    if from_logits:
        # max(x, 0) - x t + log(1 + exp(-|x|)), stable for any logit
        e = ops.relu(pred) - pred * t + ops.log1p(ops.exp(-ops.abs(pred)))
    else:
        p = ops.clip(pred, CLIP_EPSILON, 1.0 - CLIP_EPSILON)
        e = -(t * ops.log(p) + (1.0 - t) * ops.log1p(-p))
    return _elementwise_loss(e, where, sample_weight, mask)


@impl("kl_normal")
def kl_normal(*, pred: tf.Tensor, target: tf.Tensor, where: tf.Tensor | None = None,
              sample_weight: tf.Tensor | None = None,
              mask: tf.Tensor | None = None) -> tf.Tensor:
    mean, logvar = pred, ops.cast(target, pred.dtype)
    losses = -0.5 * ops.sum(1.0 + logvar - mean * mean - ops.exp(logvar), axis=-1)
    return reduce_loss(losses, sample_weight, validity(where, mask))


@impl("l1")
def l1(*, x: tf.Tensor) -> tf.Tensor:
    return ops.sum(ops.abs(x))


@impl("l2")
def l2(*, x: tf.Tensor) -> tf.Tensor:
    return ops.sum(x * x)
