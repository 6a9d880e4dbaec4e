"""Random image augmentation layers ([batch, height, width, channels]): active in training
only (RandomCrop centre-crops in inference). Each sample gets its own draw, from the
framework's global random generator, so a run is deterministic for a seed
(torch.manual_seed, keras.utils.set_random_seed), as with Dropout.

The geometric layers (rotation, zoom, translation) map each output pixel (x, y) (x the
column) to a source point of the input, TensorFlow's ImageProjectiveTransformV3 arithmetic
(pixel centres at integers), then read it with `interpolation` and `fill_mode`."""

from __future__ import annotations

from typing import Any

from ..diagnostics import source_text
from ..ir.types import ShapeError, TensorType
from .registry import Arg, In, OpCall, OpDef, register
from .rules import known, positive

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_INTERPOLATIONS = ("bilinear", "nearest")
_FILL_DOC = ("fill_mode for source points outside the image: reflect (d c b a | a b c d | d c "
             "b a), wrap (TensorFlow's), nearest (the edge pixel), constant (fill_value); "
             "interpolation bilinear (the four neighbours, those outside the image read as "
             "fill_value) or nearest (coordinates rounded half away from zero)")


def factor_range(value: Any, name: str) -> tuple[float, float]:
    """Keras' factor: a number f means [-f, f]; a pair [lower, upper] is itself."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (-abs(float(value)), abs(float(value)))
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) and \
            value[0] <= value[1]:
        return (float(value[0]), float(value[1]))
    raise ShapeError(f"`{name}` must be a number f (the range [-f, f]) or a pair [lower, upper] "
                     f"with lower <= upper, got {source_text(value)}", name,
                     code="argument-value")


def _image(call: OpCall) -> TensorType:
    call.shape("x", exact_rank=4)
    for name in ("factor", "height_factor", "width_factor"):
        if call.args.get(name) is not None:
            factor_range(call.args[name], name)
    return TensorType("float32", call.input("x").shape)


_GEOMETRY_ARGS = (Arg("fill_mode", "str", "reflect", choices=FILL_MODES),
                  Arg("interpolation", "str", "bilinear", choices=_INTERPOLATIONS),
                  Arg("fill_value", "float", 0.0))

register(OpDef(
    "RandomFlip", "augment", "layer", "Flips each image at random in training.",
    inputs=(In("x", "number"),),
    args=(Arg("mode", "str", "horizontal_and_vertical",
              choices=("horizontal", "vertical", "horizontal_and_vertical")),),
    infer=_image, mask="drop", random=True,
    canonical="training: each image is flipped left-right (horizontal) and, independently, "
              "upside down (vertical) with probability 1/2 each, as `mode` allows; "
              "inference: float32(x)",
))
register(OpDef(
    "RandomRotation", "augment", "layer", "Rotates each image by a random angle in training.",
    inputs=(In("x", "number"),), args=(Arg("factor", "any"), *_GEOMETRY_ARGS),
    infer=_image, mask="drop", random=True,
    canonical="training: angle a ~ U(lower, upper) * 2 pi per image (factor f: [-f, f]); "
              "with c = ((W - 1) / 2, (H - 1) / 2) the source of (x, y) is x' = cx + cos a (x - "
              "cx) - sin a (y - cy), y' = cy + sin a (x - cx) + cos a (y - cy) (Keras' matrix); "
              + _FILL_DOC + "; inference: float32(x)",
))
register(OpDef(
    "RandomZoom", "augment", "layer", "Zooms each image in or out at random in training.",
    inputs=(In("x", "number"),),
    args=(Arg("height_factor", "any"), Arg("width_factor", "any", None, optional=True),
          *_GEOMETRY_ARGS),
    infer=_image, mask="drop", random=True,
    canonical="training: zh ~ 1 + U(height range), zw ~ 1 + U(width range) per image (zw = zh "
              "without width_factor; > 1 zooms out); the source of (x, y) is x' = zw x + (W - 1)"
              " (1 - zw) / 2, y' = zh y + (H - 1) (1 - zh) / 2; " + _FILL_DOC +
              "; inference: float32(x)",
))
register(OpDef(
    "RandomTranslation", "augment", "layer", "Shifts each image at random in training.",
    inputs=(In("x", "number"),),
    args=(Arg("height_factor", "any"), Arg("width_factor", "any"), *_GEOMETRY_ARGS),
    infer=_image, mask="drop", random=True,
    canonical="training: dy ~ U(height range) H, dx ~ U(width range) W per image; the source "
              "of (x, y) is (x - dx, y - dy); " + _FILL_DOC + "; inference: float32(x)",
))


def _random_crop(call: OpCall) -> TensorType:
    b, h, w, c = call.shape("x", exact_rank=4)
    known(h, "the height of `RandomCrop`'s input", "x")
    known(w, "the width of `RandomCrop`'s input", "x")
    positive([call.args["height"], call.args["width"]], "height")
    return TensorType("float32", (b, call.args["height"], call.args["width"], c))


register(OpDef(
    "RandomCrop", "augment", "layer", "Crops a random `height` x `width` window in training.",
    inputs=(In("x", "number"),), args=(Arg("height", "int"), Arg("width", "int")),
    infer=_random_crop, mask="drop", random=True,
    canonical="training, if H > height and W > width: one window (top ~ U{0..H - height}, "
              "left ~ U{0..W - width}) for the whole batch, as keras.layers.RandomCrop; "
              "otherwise (Keras 3's fallback) the window of that size (cut at the image's "
              "edge) at the top-left corner of Resizing's crop_to_aspect_ratio box, resized "
              "bilinearly to height x width if smaller. Inference: Resizing(height, width, "
              "bilinear, crop_to_aspect_ratio = true), tf.keras' smart resize (Keras 3.15's "
              "layer returns its input unchanged in inference, another shape; this op keeps "
              "one shape)",
))
