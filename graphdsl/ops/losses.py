"""Loss functions. Each returns a scalar loss term.

Every loss has one reduction, documented once: per-sample losses l, weights
w = sample_weight * class_weight[target], validity m = mask and where, then

    loss = sum(l * w * m) / max(sum(w * m), 1e-12)

so that masked and zero-weight samples change nothing (neither the value nor a
gradient), and unweighted losses are the plain mean over valid samples.
"""

from __future__ import annotations

from ..ir.types import ShapeError, TensorType, broadcast, shape_str
from .registry import Arg, In, OpCall, OpDef, register

SCALAR = TensorType("float32", ())

_REDUCTION = ("reduction: sum(l * w * m) / max(sum(w * m), 1e-12) with w = sample_weight * "
              "class_weight[target] and m = mask and where (each 1 if absent)")

_WEIGHTING = (In("where", "bool", optional=True, doc="only these samples count"),
              In("sample_weight", "number", optional=True),
              In("mask", "bool", optional=True, doc="the prediction's padding mask"))


def sample_shape(call: OpCall) -> tuple:
    """The shape of per-sample losses; weights and masks must broadcast to it."""
    pred = call.shape("pred", min_rank=1)
    target = call.input("target")
    if call.op.name == "crossentropy" and target.is_int:
        return pred[:-1]
    if call.op.name == "kl_normal":
        return pred[:-1]
    for name in ("where", "sample_weight", "mask"):
        if call.has(name):
            return call.shape(name)
    return pred[:1]


def _check_weights(call: OpCall, samples: tuple) -> None:
    for name in ("where", "sample_weight", "mask"):
        if call.has(name):
            shape = call.shape(name)
            try:
                if broadcast(samples, shape) != tuple(samples):
                    raise ShapeError("")
            except ShapeError:
                raise ShapeError(f"`{name}` of shape {shape_str(shape)} does not fit the "
                                 f"per-sample losses of shape {shape_str(samples)}",
                                 name) from None


def _crossentropy(call: OpCall) -> TensorType:
    pred = call.shape("pred", min_rank=1)
    target = call.input("target")
    tshape = call.shape("target")
    if target.is_int:
        if tuple(tshape) != tuple(pred[:-1]):
            raise ShapeError(
                f"`crossentropy` with integer targets requires target shape = prediction shape "
                f"without its class axis: prediction {call.input('pred')} needs target "
                f"[{', '.join(map(str, pred[:-1]))}], got {target}", "target")
    elif target.is_float:
        if tuple(tshape) != tuple(pred):
            raise ShapeError(f"`crossentropy` with probability targets requires the prediction's "
                             f"shape, got {call.input('pred')} and {target}", "target")
    else:
        raise ShapeError(f"`crossentropy` targets are class ids (int) or probabilities (float), "
                         f"got {target}", "target", code="dtype-mismatch")
    if pred[-1] == 1:
        raise ShapeError(f"`crossentropy` over a single class is always 0: its prediction "
                         f"{call.input('pred')} has one entry on the class axis", "pred",
                         help="for a yes/no target use `binary_crossentropy` on the one logit, "
                              "or give the layer one unit per class")
    if call.args["class_weight"] is not None:
        n_classes = pred[-1]
        if isinstance(n_classes, int) and len(call.args["class_weight"]) != n_classes:
            raise ShapeError(f"`class_weight` has {len(call.args['class_weight'])} entries for "
                             f"{n_classes} classes", "class_weight", code="argument-value")
        if not target.is_int:
            raise ShapeError("`class_weight` needs integer targets", "class_weight",
                             code="argument-value")
    _check_weights(call, sample_shape(call))
    return SCALAR


register(OpDef(
    "crossentropy", "losses", "loss",
    "Categorical cross-entropy; integer targets are class ids, float targets probabilities.",
    inputs=(In("pred"), In("target", "number"), *_WEIGHTING),
    args=(Arg("from_logits", "bool", False), Arg("label_smoothing", "float", 0.0),
          Arg("class_weight", "float_list", None, optional=True)),
    infer=_crossentropy, mask="consume",
    canonical="l = -sum_c q_c log p_c over the last axis, p = softmax(pred) if from_logits "
              "else pred / sum(pred) clipped to [1e-7, 1 - 1e-7]; q = one_hot(target) or "
              "target, smoothed q (1 - s) + s / classes; targets at invalid positions never "
              "index anything; " + _REDUCTION,
))


def require_one_shape(call: OpCall, pred: TensorType, target: TensorType) -> None:
    """Elementwise losses and metrics compare prediction and target position by position:
    the shapes must be equal (Keras would broadcast [B, 1] against [B] to [B, B])."""
    if pred.shape is None or target.shape is None or pred.shape == target.shape:
        return
    help_text = None
    if len(pred.shape) == len(target.shape) + 1 and pred.shape[-1] == 1 and \
            tuple(pred.shape[:-1]) == tuple(target.shape):
        help_text = ("the prediction has a trailing axis of 1: index it with `[..., 0]`, or "
                     f"declare the target as {target.dtype}{shape_str(pred.shape)}")
    elif len(target.shape) == len(pred.shape) + 1 and target.shape[-1] == 1 and \
            tuple(target.shape[:-1]) == tuple(pred.shape):
        help_text = "the target has a trailing axis of 1: index it with `[..., 0]`"
    raise ShapeError(f"`{call.op.name}` requires prediction and target of one shape, got "
                     f"{pred} and {target}", "target", help=help_text)


def _elementwise_loss(call: OpCall) -> TensorType:
    pred, target = call.input("pred"), call.input("target")
    require_one_shape(call, pred, target)
    if not target.is_float:
        raise ShapeError(f"`{call.op.name}` requires float targets, got {target}", "target",
                         code="dtype-mismatch", help="cast(target, float32)")
    _check_weights(call, sample_shape(call))
    return SCALAR


_PER_SAMPLE = "e averaged over every axis beyond the per-sample shape gives l; "
for _name, _extra_args, _canon in (
    ("mse", (), "e = (pred - target)^2"),
    ("mae", (), "e = |pred - target|"),
    ("huber", (Arg("delta", "float", 1.0),),
     "e = 0.5 d^2 if |d| <= delta else delta (|d| - 0.5 delta), d = pred - target"),
    ("binary_crossentropy", (Arg("from_logits", "bool", False),),
     "e = -(t log p + (1 - t) log(1 - p)), p = sigmoid(pred) if from_logits else pred clipped "
     "to [1e-7, 1 - 1e-7] (from logits computed stably)"),
):
    register(OpDef(
        _name, "losses", "loss", f"Loss: {_canon}.",
        inputs=(In("pred"), In("target", "number"), *_WEIGHTING), args=_extra_args,
        infer=_elementwise_loss, mask="consume",
        canonical=_canon + "; " + _PER_SAMPLE + "the per-sample shape is that of where, "
                  "sample_weight or mask if given, else [batch]; " + _REDUCTION,
    ))


def _kl_normal(call: OpCall) -> TensorType:
    mean, logvar = call.input("pred"), call.input("target")
    if mean.shape is not None and logvar.shape is not None and mean.shape != logvar.shape:
        raise ShapeError(f"`kl_normal` requires mean and logvar of one shape, got {mean} and "
                         f"{logvar}", "target")
    if not logvar.is_float:
        raise ShapeError("`kl_normal` requires float log-variances", "target",
                         code="dtype-mismatch")
    _check_weights(call, sample_shape(call))
    return SCALAR


register(OpDef(
    "kl_normal", "losses", "loss",
    "KL(N(mean, exp(logvar)) || N(0, 1)) per sample, summed over the last axis.",
    inputs=(In("pred", doc="the mean"), In("target", doc="the log-variance"), *_WEIGHTING),
    infer=_kl_normal, mask="consume",
    canonical="l = -0.5 sum(1 + logvar - mean^2 - exp(logvar)) over the last axis; "
              + _REDUCTION,
))


def _penalty(call: OpCall) -> TensorType:
    call.shape("x")
    return SCALAR


for _name, _canon in (("l1", "sum(|x|)"), ("l2", "sum(x^2)")):
    register(OpDef(
        _name, "losses", "loss", f"Penalty {_canon} of a parameter or intermediate tensor.",
        inputs=(In("x"),), infer=_penalty, mask="none", canonical=_canon,
    ))
