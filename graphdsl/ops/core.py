"""Core layers: Dense, Embedding, Dropout, Activation, PReLU, Flatten, Reshape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..ir.types import ShapeError, TensorType, shape_str
from .registry import Arg, In, OpCall, OpDef, ParamSpec, register
from .rules import known, product, same_as


def _dense(call: OpCall) -> TensorType:
    shape = call.shape("x", min_rank=1)
    return TensorType("float32", (*shape[:-1], call.args["units"]))


register(OpDef(
    "Dense", "core", "layer", "A fully connected layer: activation(x @ kernel + bias).",
    inputs=(In("x"),),
    args=(Arg("units", "int"), Arg("activation", "activation", "linear"),
          Arg("use_bias", "bool", True)),
    params=(
        ParamSpec("kernel", lambda a, i: (last_dim_of(i), a["units"]), "glorot_uniform",
                  "[in_features, units]"),
        ParamSpec("bias", lambda a, i: (a["units"],), "zeros", "[units]",
                  when=lambda a: a["use_bias"], needs_input=False),
    ),
    infer=_dense,
    canonical="y = activation(x @ kernel + bias); kernel is [in, units] (Keras layout; "
              "torch.nn.Linear.weight is its transpose)",
))


def last_dim_of(inputs: Sequence[TensorType]) -> int:
    shape = inputs[0].shape
    assert shape is not None
    if not shape:
        raise ShapeError(f"the input must have at least one axis, got {inputs[0]}", 0)
    d = shape[-1]
    if not isinstance(d, int):
        raise ShapeError(f"the last dimension of the input must be a known size, got `{d}`", 0,
                         code="unknown-dimension",
                         help="declare it as a number or a model parameter")
    return d


def _embedding(call: OpCall) -> TensorType:
    shape = call.shape("ids")
    return TensorType("float32", (*shape, call.args["output_dim"]))


register(OpDef(
    "Embedding", "core", "layer", "A lookup table of integer ids; `mask_zero` makes id 0 padding.",
    inputs=(In("ids", "int"),),
    args=(Arg("input_dim", "int"), Arg("output_dim", "int"), Arg("mask_zero", "bool", False)),
    params=(ParamSpec("embeddings", lambda a, i: (a["input_dim"], a["output_dim"]),
                      "uniform", "[input_dim, output_dim]", needs_input=False),),
    infer=_embedding, mask="produce",
    canonical="y = embeddings[ids]; with mask_zero the output's mask is ids != 0. Ids outside "
              "[0, input_dim) are an error in both backends.",
))

def check_noise_shape(call: OpCall) -> TensorType:
    """Dropout's noise_shape: per axis 1 (one draw shared along it), -1 or the input's size."""
    shape = call.shape("x")
    noise = call.args.get("noise_shape")
    if noise is not None and (len(noise) != len(shape) or any(
            n not in (1, -1, d) for n, d in zip(noise, shape, strict=False))):
        raise ShapeError(f"`noise_shape` {noise} must have one entry per axis of "
                         f"{call.input('x')}, each 1, -1 (the input's size) or the input's "
                         "size", "noise_shape", code="argument-value")
    return same_as(call, "x")


register(OpDef(
    "Dropout", "core", "layer", "Inverted dropout in training, identity in inference.",
    inputs=(In("x", "float"),),
    args=(Arg("rate", "float"),
          Arg("noise_shape", "int_list", None, optional=True,
              doc="one entry per axis: 1 shares one draw along the axis, -1 (Keras' None) or "
                  "the axis' size draws per position")),
    infer=check_noise_shape, random=True,
    canonical="training: x * bernoulli(1 - rate) / (1 - rate), one draw per position of "
              "noise_shape broadcast over the axes where it is 1; inference: x",
))

register(OpDef(
    "Activation", "core", "layer", "Applies an activation function.",
    inputs=(In("x", "float"),), args=(Arg("activation", "activation"),),
    infer=lambda c: same_as(c, "x"),
    canonical="y = activation(x)",
))


def prelu_alpha_shape(args: Mapping[str, Any], inputs: Sequence[TensorType]) -> tuple[int, ...]:
    """Keras' PReLU alpha: the input's shape without the batch axis, 1 on shared axes."""
    shape = inputs[0].shape
    assert shape is not None
    if len(shape) < 2:
        raise ShapeError(f"`PReLU` needs a batch axis and at least one more, got {inputs[0]}", 0)
    shared = args["shared_axes"] or []
    for axis in shared:
        if not 1 <= axis < len(shape):
            raise ShapeError(f"`shared_axes` entries are axes 1 .. {len(shape) - 1} of "
                             f"{inputs[0]} (axis 0 is the batch), got {axis}", "shared_axes",
                             code="argument-value")
    for axis, d in enumerate(shape):
        if axis and axis not in shared and not isinstance(d, int):
            raise ShapeError(f"axis {axis} of the input of `PReLU` must be a known size to "
                             f"create its slopes, got `{d}`", 0, code="unknown-dimension",
                             help=f"share one slope along it: `shared_axes = [{axis}]`")
    return tuple(1 if axis in shared else known(d, f"axis {axis} of the input of `PReLU`", 0)
                 for axis, d in enumerate(shape) if axis)


def _prelu(call: OpCall) -> TensorType:
    prelu_alpha_shape(call.args, [call.input("x")])
    return same_as(call, "x")


register(OpDef(
    "PReLU", "core", "layer", "Leaky ReLU with a learned slope per feature (Keras' PReLU).",
    inputs=(In("x"),),
    args=(Arg("shared_axes", "ints", None, optional=True,
              doc="axes (1 is the first after the batch) sharing one slope"),),
    params=(ParamSpec("alpha", prelu_alpha_shape, "zeros",
                      "the input's shape without the batch axis, 1 on each shared axis"),),
    infer=_prelu,
    canonical="y = max(x, 0) + alpha min(x, 0), alpha broadcast over the batch (and the "
              "shared axes); torch.nn.PReLU's weight is alpha for a [batch, channels] input",
))


def _flatten(call: OpCall) -> TensorType:
    shape = call.shape("x", min_rank=1)
    return TensorType(call.input("x").dtype, (shape[0], product(shape[1:])))


register(OpDef(
    "Flatten", "core", "layer", "Flattens every axis but the first.",
    inputs=(In("x", "any"),), infer=_flatten, mask="drop",
    canonical="y = reshape(x, [batch, -1]) in row-major (C) order, channels last",
))


def reshape_rule(in_shape: tuple, target: list, argument: str) -> tuple:
    """Target entries: ints, at most one -1 (inferred); 0 copies the input's dimension."""
    for i, d in enumerate(target):
        if isinstance(d, int) and d < -1:
            raise ShapeError(f"a size in {target} is positive, -1 (inferred) or 0 (copied), "
                             f"got {d}", argument, code="argument-value")
        if d == 0 and i >= len(in_shape):
            raise ShapeError(f"0 at position {i} of {target} copies the input's dimension {i}, "
                             f"but the input has {len(in_shape)}", argument,
                             code="argument-value")
    out = [in_shape[i] if d == 0 else d for i, d in enumerate(target)]
    if sum(1 for d in out if d == -1) > 1:
        raise ShapeError("at most one dimension may be -1", argument, code="argument-value")
    total = product(in_shape)
    known_part = product([d for d in out if d != -1])
    if -1 in out:
        if isinstance(total, int) and isinstance(known_part, int):
            if known_part == 0 or total % known_part:
                raise ShapeError(f"cannot reshape {list(in_shape)} ({total} elements) into "
                                 f"{target}", argument)
            out[out.index(-1)] = total // known_part
        elif known_part == 0:
            raise ShapeError(f"cannot infer the -1 of {target}: the other sizes multiply to 0",
                             argument, code="argument-value")
        elif known_part == total:
            out[out.index(-1)] = 1
        else:
            from ..ir.types import dim_floordiv
            out[out.index(-1)] = dim_floordiv(total, known_part)
    elif product(out) != total:
        raise ShapeError(f"cannot reshape {shape_str(tuple(in_shape))} ({total} elements) into "
                         f"{shape_str(tuple(out))}", argument)
    return tuple(out)


def _reshape_layer(call: OpCall) -> TensorType:
    shape = call.shape("x", min_rank=1)
    out = reshape_rule(shape[1:], list(call.args["target_shape"]), "target_shape")
    return TensorType(call.input("x").dtype, (shape[0], *out))


register(OpDef(
    "Reshape", "core", "layer", "Reshapes every axis but the first (Keras' Reshape).",
    inputs=(In("x", "any"),), args=(Arg("target_shape", "int_list"),),
    infer=_reshape_layer, mask="drop",
    canonical="y = reshape(x, [batch, *target_shape]) in row-major order; one -1 is inferred",
))
