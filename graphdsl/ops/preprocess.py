"""Preprocessing layers that live inside models: rescaling and normalisation by stored
statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..ir.types import Shape, ShapeError, TensorType
from .registry import Arg, In, OpCall, OpDef, ParamSpec, register
from .rules import known

register(OpDef(
    "Rescaling", "preprocess", "layer", "Multiplies by `scale` and adds `offset`.",
    inputs=(In("x", "number"),), args=(Arg("scale", "float"), Arg("offset", "float", 0.0)),
    infer=lambda c: TensorType("float32", c.input("x").shape),
    canonical="y = float32(x) * scale + offset",
))

# keras.backend.epsilon(): the floor of the standard deviation Normalization divides by
NORMALIZATION_EPSILON = 1e-7


def kept_axes(axis: Any, rank: int) -> tuple[int, ...]:
    """Normalization's axes with their own statistics, non-negative and sorted."""
    axes = [] if axis is None else [axis] if isinstance(axis, int) else list(axis)
    if not all(isinstance(a, int) and -rank <= a < rank for a in axes):
        raise ShapeError(f"`axis` must be ints in [-{rank}, {rank}), got {axes}", "axis",
                         code="argument-value")
    return tuple(sorted({a % rank for a in axes}))


def statistics_shape(axis: Any, shape: Shape) -> tuple[int, ...]:
    return tuple(known(shape[a], f"axis {a} of Normalization's input", "x")
                 for a in kept_axes(axis, len(shape)))


def _array_shape(value: Any, name: str) -> tuple[int, ...]:
    """The shape of a number or a nested list of numbers; ShapeError if ragged."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ()
    if isinstance(value, (list, tuple)) and value:
        inner = {_array_shape(v, name) for v in value}
        if len(inner) == 1:
            return (len(value), *inner.pop())
    raise ShapeError(f"`{name}` must be a number or a (nested) list of numbers of one shape",
                     name, code="argument-value")


def _normalization(call: OpCall) -> TensorType:
    shape = call.shape("x", min_rank=1)
    a = call.args
    stats = statistics_shape(a["axis"], shape)
    if (a["mean"] is None) != (a["variance"] is None):
        raise ShapeError("give both `mean` and `variance`, or neither (then they are state, "
                         "loaded or initialised)", "variance" if a["variance"] is None else
                         "mean", code="argument-value")
    if a["mean"] is not None:
        for name in ("mean", "variance"):
            given = _array_shape(a[name], name)
            if given and given != stats[len(stats) - len(given):]:
                raise ShapeError(f"`{name}` of shape {list(given)} does not match the "
                                 f"statistics shape {list(stats)} (the input's sizes on "
                                 f"`axis`)", name, code="argument-value")
    return TensorType("float32", shape)


def _stats_param(name: str, init: str) -> ParamSpec:
    def shape(args: Any, inputs: Sequence[TensorType]) -> tuple[int, ...]:
        x = inputs[0].shape
        assert x is not None
        return statistics_shape(args["axis"], x)

    return ParamSpec(name, shape, init, "[input sizes on axis]", role="state",
                     when=lambda a: a["mean"] is None)


register(OpDef(
    "Normalization", "preprocess", "layer",
    "Standardises by a stored mean and variance per position of `axis`.",
    inputs=(In("x", "number"),),
    args=(Arg("axis", "any", -1, doc="the axes with their own statistics (an int or a list)"),
          Arg("mean", "any", None, optional=True, doc="a number or a list shaped like the "
              "statistics; without it the statistics are the state `adapt_mean` and "
              "`adapt_variance`, which the train setting `adapt` computes from the data "
              "(Keras' `adapt`)"),
          Arg("variance", "any", None, optional=True),
          Arg("invert", "bool", False)),
    params=(_stats_param("adapt_mean", "zeros"), _stats_param("adapt_variance", "ones")),
    infer=_normalization,
    canonical=f"y = (x - mean) / max(sqrt(variance), {NORMALIZATION_EPSILON}); invert: y = mean "
              f"+ x * max(sqrt(variance), {NORMALIZATION_EPSILON}) (keras.layers.Normalization)"
              "; mean and variance are the arguments (broadcast, aligned to the last kept "
              "axes) or else the state adapt_mean / adapt_variance, shaped like the input's "
              "sizes on `axis`",
))
