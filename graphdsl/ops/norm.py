"""Normalisation layers. Defaults are Keras' (epsilon 1e-3): GPT-2 and BERT set their own."""

from __future__ import annotations

from ..ir.types import TensorType
from .core import last_dim_of
from .registry import Arg, In, OpCall, OpDef, ParamSpec, register
from .rules import same_as


def _check_last_axis(call: OpCall) -> TensorType:
    call.shape("x", min_rank=1)
    if call.args["axis"] != -1:
        from ..ir.types import ShapeError

        raise ShapeError("only axis = -1 (the channels axis) is supported", "axis",
                         code="argument-value")
    return same_as(call, "x")


register(OpDef(
    "LayerNormalization", "norm", "layer", "Normalises each position over its features.",
    inputs=(In("x"),),
    args=(Arg("axis", "int", -1), Arg("epsilon", "float", 1e-3), Arg("center", "bool", True),
          Arg("scale", "bool", True)),
    params=(
        ParamSpec("gamma", lambda a, i: (last_dim_of(i),), "ones", "[features]",
                  when=lambda a: a["scale"]),
        ParamSpec("beta", lambda a, i: (last_dim_of(i),), "zeros", "[features]",
                  when=lambda a: a["center"]),
    ),
    infer=_check_last_axis,
    canonical="y = (x - mean) / sqrt(var + epsilon) * gamma + beta, mean and biased var over "
              "the last axis; epsilon inside the square root",
))

register(OpDef(
    "BatchNormalization", "norm", "layer",
    "Normalises each channel over the batch (and spatial axes) in training.",
    inputs=(In("x"),),
    args=(Arg("axis", "int", -1), Arg("momentum", "float", 0.99), Arg("epsilon", "float", 1e-3),
          Arg("center", "bool", True), Arg("scale", "bool", True)),
    params=(
        ParamSpec("gamma", lambda a, i: (last_dim_of(i),), "ones", "[channels]",
                  when=lambda a: a["scale"]),
        ParamSpec("beta", lambda a, i: (last_dim_of(i),), "zeros", "[channels]",
                  when=lambda a: a["center"]),
        ParamSpec("moving_mean", lambda a, i: (last_dim_of(i),), "zeros", "[channels]",
                  role="state"),
        ParamSpec("moving_variance", lambda a, i: (last_dim_of(i),), "ones", "[channels]",
                  role="state"),
    ),
    infer=_check_last_axis, mask="drop", random=True,
    canonical="training: normalise by the batch mean and biased variance over every axis but "
              "the last, then moving = momentum * moving + (1 - momentum) * batch statistic "
              "(biased variance, Keras' rule); inference: normalise by the moving statistics",
))
