"""Metrics: scalars reported during training and evaluation, never differentiated.

A metric is aggregated over an epoch as sum(value * m) / sum(m) over all valid samples
(m = mask and where), so the masked-out samples are not counted at all.
"""

from __future__ import annotations

from ..ir.types import ShapeError, TensorType
from .losses import SCALAR, _check_weights, require_one_shape, sample_shape
from .registry import Arg, In, OpCall, OpDef, register


def _accuracy(call: OpCall) -> TensorType:
    pred = call.shape("pred", min_rank=1)
    target = call.input("target")
    tshape = call.shape("target")
    if target.is_int and tuple(tshape) != tuple(pred[:-1]):
        raise ShapeError(f"`accuracy` with class ids requires target shape "
                         f"[{', '.join(map(str, pred[:-1]))}], got {target}", "target")
    if target.is_float and tuple(tshape) != tuple(pred):
        raise ShapeError(f"`accuracy` with one-hot targets requires the prediction's shape, got "
                         f"{target}", "target")
    _check_weights(call, tuple(pred[:-1]))
    return SCALAR


_WHERE = (In("where", "bool", optional=True), In("mask", "bool", optional=True))

register(OpDef(
    "accuracy", "metrics", "metric", "Share of samples whose arg-max class is the target.",
    inputs=(In("pred"), In("target", "number"), *_WHERE), infer=_accuracy, mask="consume",
    canonical="correct = argmax(pred, -1) == target (or argmax(target, -1)); value = "
              "sum(correct m) / sum(m)",
))


def _binary_accuracy(call: OpCall) -> TensorType:
    pred, target = call.input("pred"), call.input("target")
    require_one_shape(call, pred, target)
    _check_weights(call, sample_shape(call))
    return SCALAR


register(OpDef(
    "binary_accuracy", "metrics", "metric", "Share of predictions on the target's side of 0.5.",
    inputs=(In("pred"), In("target", "number"), *_WHERE),
    args=(Arg("threshold", "float", 0.5),), infer=_binary_accuracy, mask="consume",
    canonical="correct = (pred > threshold) == (target > 0.5), averaged over every element",
))
