"""Layers that move pixels without parameters: zero padding, cropping, up-sampling,
resizing and centre cropping (channels last)."""

from __future__ import annotations

from collections.abc import Callable

from ..ir.types import ShapeError, TensorType, dim_add, dim_mul
from .registry import Arg, In, OpCall, OpDef, register
from .rules import known, ntuple, positive, side_pairs

_AXES = {1: "steps", 2: "height and width", 3: "depth, height and width"}


def _pad_rule(rank: int, sign: int, arg: str) -> Callable[[OpCall], TensorType]:
    def rule(call: OpCall) -> TensorType:
        b, *spatial, c = call.shape("x", exact_rank=rank + 2)
        amounts = side_pairs(call.args[arg], rank, arg)
        out = []
        for size, (before, after) in zip(spatial, amounts, strict=True):
            new = dim_add(size, sign * (before + after))
            if isinstance(new, int) and new < (1 if sign < 0 else 0):
                raise ShapeError(f"`{arg}` {[list(p) for p in amounts]} removes every cell of an axis of "
                                 f"size {size}", arg, code="argument-value")
            out.append(new)
        return TensorType(call.input("x").dtype, (b, *out, c))
    return rule


for _rank in (1, 2, 3):
    register(OpDef(
        f"ZeroPadding{_rank}D", "spatial", "layer",
        f"Pads {_AXES[_rank]} with zeros.",
        inputs=(In("x", "any"),), args=(Arg("padding", "any", 1),),
        infer=_pad_rule(_rank, 1, "padding"), mask="drop",
        canonical="padding: an int (every side), one int per axis (both sides of it), or one "
                  "(before, after) pair per axis (1-D: the pair itself); zeros added there",
    ))
for _rank in (1, 2, 3):
    register(OpDef(
        f"Cropping{_rank}D", "spatial", "layer", f"Crops {_AXES[_rank]}.",
        inputs=(In("x", "any"),), args=(Arg("cropping", "any", 1 if _rank == 1 else 0),),
        infer=_pad_rule(_rank, -1, "cropping"), mask="drop",
        canonical="cropping: an int (every side), one int per axis (both sides of it), or one "
                  "(before, after) pair per axis (1-D: the pair itself); those cells removed",
    ))


def _upsampling_rule(rank: int) -> Callable[[OpCall], TensorType]:
    def rule(call: OpCall) -> TensorType:
        b, *spatial, c = call.shape("x", exact_rank=rank + 2)
        size = ntuple(call.args["size"], rank, "size")
        positive(size, "size")
        return TensorType(call.input("x").dtype,
                          (b, *(dim_mul(s, f) for s, f in zip(spatial, size, strict=True)), c))
    return rule


_INTERPOLATION = ("nearest", "bilinear")
_BILINEAR = ("bilinear: half-pixel centres, src = (dst + 0.5) in / out - 0.5 clamped to [0, "
             "in - 1], no antialiasing (TensorFlow's tf.image.resize; torch's F.interpolate "
             "with align_corners=False, antialias=False)")
_NEAREST = ("nearest: src = min(floor((dst + 0.5) in / out), in - 1) (TensorFlow's "
            "half-pixel nearest; torch's mode=\"nearest-exact\", not \"nearest\")")

register(OpDef(
    "UpSampling1D", "spatial", "layer", "Repeats each step `size` times.",
    inputs=(In("x", "any"),), args=(Arg("size", "int", 2),), infer=_upsampling_rule(1),
    mask="drop", canonical="y[t] = x[t // size]",
))
register(OpDef(
    "UpSampling2D", "spatial", "layer", "Scales height and width by integer factors.",
    inputs=(In("x"),),
    args=(Arg("size", "ints", 2), Arg("interpolation", "str", "nearest", choices=_INTERPOLATION)),
    infer=_upsampling_rule(2), mask="drop",
    canonical="nearest: y[i, j] = x[i // size_h, j // size_w]; " + _BILINEAR,
))


def _target_rule(call: OpCall) -> TensorType:
    b, _, _, c = call.shape("x", exact_rank=4)
    height, width = call.args["height"], call.args["width"]
    positive([height, width], "height")
    return TensorType("float32", (b, height, width, c))


register(OpDef(
    "Resizing", "spatial", "layer", "Resizes images to `height` x `width`.",
    inputs=(In("x"),),
    args=(Arg("height", "int"), Arg("width", "int"),
          Arg("interpolation", "str", "bilinear", choices=_INTERPOLATION),
          Arg("crop_to_aspect_ratio", "bool", False)),
    infer=_target_rule, mask="drop",
    canonical="keras.layers.Resizing: with crop_to_aspect_ratio the largest centred window of "
              "the target's aspect ratio (crop_h = min(H, W h // w), crop_w = min(W, H w // h), "
              "offsets (H - crop_h) // 2 and (W - crop_w) // 2) is resized; " + _BILINEAR +
              "; " + _NEAREST,
))


def _center_crop_rule(call: OpCall) -> TensorType:
    out = _target_rule(call)
    shape = call.shape("x")
    known(shape[1], "the height of `CenterCrop`'s input", "x")
    known(shape[2], "the width of `CenterCrop`'s input", "x")
    return out


register(OpDef(
    "CenterCrop", "spatial", "layer", "Crops the centre of images to `height` x `width`.",
    inputs=(In("x"),), args=(Arg("height", "int"), Arg("width", "int")),
    infer=_center_crop_rule, mask="drop",
    canonical="keras.layers.CenterCrop: if H >= height and W >= width, y = x[(H - height) // 2 "
              ":, (W - width) // 2 :] cut to height x width; otherwise Resizing(height, width, "
              "bilinear, crop_to_aspect_ratio = true). H and W must be known",
))
