"""Sampling layers: random in training, deterministic in inference."""

from __future__ import annotations

from collections.abc import Callable

from ..ir.types import ShapeError, TensorType, broadcast
from .registry import Arg, In, OpCall, OpDef, register
from .rules import same_as


def _sample_normal(call: OpCall) -> TensorType:
    mean, logvar = call.input("mean"), call.input("logvar")
    if mean.shape is not None and logvar.shape is not None and mean.shape != logvar.shape:
        raise ShapeError(f"`sample_normal` requires `mean` and `logvar` of one shape, got {mean} "
                         f"and {logvar}", "logvar")
    return same_as(call, "mean")


register(OpDef(
    "sample_normal", "random", "function",
    "The VAE re-parameterisation: z = mean + exp(logvar / 2) * eps, eps ~ N(0, 1).",
    inputs=(In("mean"), In("logvar")), infer=_sample_normal, random=True,
    canonical="training: mean + exp(logvar / 2) * eps with eps ~ N(0, 1); inference: mean",
))

register(OpDef(
    "GaussianNoise", "random", "layer", "Adds N(0, stddev^2) noise in training.",
    inputs=(In("x"),), args=(Arg("stddev", "float"),), infer=lambda c: same_as(c, "x"),
    random=True, canonical="training: x + stddev * eps; inference: x",
))


def _check_broadcast(call: OpCall, a: str, b: str) -> None:
    try:
        broadcast(call.shape(a), call.shape(b))
    except ShapeError as exc:
        raise ShapeError(f"`{b}` must broadcast to `{a}`: {exc.message}", b) from None


def _exact_rank(rank: int) -> Callable[[OpCall], TensorType]:
    def rule(call: OpCall) -> TensorType:
        call.shape("x", exact_rank=rank + 2)
        return same_as(call, "x")
    return rule


for _rank in (1, 2, 3):
    _shared = ", ".join(["1"] * _rank)
    register(OpDef(
        f"SpatialDropout{_rank}D", "random", "layer",
        "Drops whole channels (the same for every position of a sample) in training.",
        inputs=(In("x", "float"),), args=(Arg("rate", "float"),),
        infer=_exact_rank(_rank),
        random=True,
        canonical=f"Dropout with noise_shape [batch, {_shared}, channels]",
    ))

register(OpDef(
    "GaussianDropout", "random", "layer", "Multiplies by N(1, rate / (1 - rate)) noise in training.",
    inputs=(In("x", "float"),), args=(Arg("rate", "float"),), infer=lambda c: same_as(c, "x"),
    random=True,
    canonical="training: x * (1 + sqrt(rate / (1 - rate)) * eps), eps ~ N(0, 1); inference: x",
))
