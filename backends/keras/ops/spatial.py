"""Zero padding, cropping, up-sampling, resizing and centre cropping, channels last.

Resizing is Keras' own ops.image.resize (tf.image.resize: half-pixel centres, no
antialiasing), as keras.layers.Resizing and UpSampling2D use it."""

from __future__ import annotations

from typing import Any

import tensorflow as tf
from keras import ops

from graphdsl.ops.rules import aspect_crop_box, ntuple, side_pairs

from . import impl


def _pad_layer(rank: int):  # type: ignore[no-untyped-def]
    def pad(*, x: tf.Tensor, padding: Any = 1) -> tf.Tensor:
        return ops.pad(x, [(0, 0), *side_pairs(padding, rank, "padding"), (0, 0)])
    return pad


def _crop_layer(rank: int):  # type: ignore[no-untyped-def]
    def crop(*, x: tf.Tensor, cropping: Any = 0) -> tf.Tensor:
        amounts = side_pairs(cropping, rank, "cropping")
        index = tuple(slice(before, x.shape[1 + i] - after)
                      for i, (before, after) in enumerate(amounts))
        return x[(slice(None), *index)]
    return crop


for _rank in (1, 2, 3):
    impl(f"ZeroPadding{_rank}D")(_pad_layer(_rank))
    impl(f"Cropping{_rank}D")(_crop_layer(_rank))


@impl("UpSampling1D")
def up_sampling1d(*, x: tf.Tensor, size: int = 2) -> tf.Tensor:
    return ops.repeat(x, size, axis=1)


def resize(x: tf.Tensor, height: int, width: int, interpolation: str) -> tf.Tensor:
    if tuple(x.shape[1:3]) == (height, width):
        return x
    return ops.image.resize(x, (height, width), interpolation=interpolation,
                            data_format="channels_last")


@impl("UpSampling2D")
def up_sampling2d(*, x: tf.Tensor, size: Any = 2, interpolation: str = "nearest") -> tf.Tensor:
    fh, fw = ntuple(size, 2, "size")
    if interpolation == "nearest":
        return ops.repeat(ops.repeat(x, fh, axis=1), fw, axis=2)
    return resize(x, x.shape[1] * fh, x.shape[2] * fw, interpolation)


def crop_and_resize(x: tf.Tensor, height: int, width: int, interpolation: str,
                    crop_to_aspect_ratio: bool) -> tf.Tensor:
    if crop_to_aspect_ratio:
        top, left, h, w = aspect_crop_box(x.shape[1], x.shape[2], height, width)
        x = x[:, top:top + h, left:left + w]
    return resize(x, height, width, interpolation)


@impl("Resizing")
def resizing(*, x: tf.Tensor, height: int, width: int, interpolation: str = "bilinear",
             crop_to_aspect_ratio: bool = False) -> tf.Tensor:
    return crop_and_resize(ops.cast(x, "float32"), height, width, interpolation,
                           crop_to_aspect_ratio)


def center_crop(x: tf.Tensor, height: int, width: int) -> tf.Tensor:
    big_h, big_w = x.shape[1], x.shape[2]
    if big_h >= height and big_w >= width:
        top, left = (big_h - height) // 2, (big_w - width) // 2
        return x[:, top:top + height, left:left + width]
    return crop_and_resize(x, height, width, "bilinear", True)


@impl("CenterCrop")
def center_crop_layer(*, x: tf.Tensor, height: int, width: int) -> tf.Tensor:
    return center_crop(ops.cast(x, "float32"), height, width)
