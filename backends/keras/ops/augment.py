"""Random image augmentation (graphdsl/ops/augment.py), channels last. The geometric layers
run Keras' own ops.image.affine_transform (TensorFlow's ImageProjectiveTransformV3), as
keras.layers.RandomRotation/RandomZoom/RandomTranslation do; the draws come from
TensorFlow's stateful generator (see core's docstring)."""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf
from keras import ops

from graphdsl.ops.augment import factor_range
from graphdsl.ops.rules import aspect_crop_box

from . import impl
from .spatial import crop_and_resize, resize


def affine_transform(images: tf.Tensor, transforms: tf.Tensor, interpolation: str,
                     fill_mode: str, fill_value: float) -> tf.Tensor:
    """Output pixel (x, y) of image b reads the input at (a0 x + a1 y + a2, b0 x + b1 y + b2),
    transforms[b] = [a0, a1, a2, b0, b1, b2, 0, 0]."""
    return ops.image.affine_transform(images, ops.cast(transforms, "float32"),
                                      interpolation=interpolation, fill_mode=fill_mode,
                                      fill_value=fill_value, data_format="channels_last")


def _uniform(batch: Any, bounds: tuple[float, float]) -> tf.Tensor:
    low, high = bounds
    return keras.random.uniform((batch,), low, high, dtype="float32")


def _stack(*rows: tf.Tensor) -> tf.Tensor:
    zero = ops.zeros_like(rows[0])
    return ops.stack([*rows, zero, zero], axis=1)


def _sizes(x: tf.Tensor) -> tuple[Any, int, int]:
    return tf.shape(x)[0], int(x.shape[1]), int(x.shape[2])


@impl("RandomFlip")
def random_flip(*, x: tf.Tensor, mode: str = "horizontal_and_vertical",
                training: bool) -> tf.Tensor:
    x = ops.cast(x, "float32")
    if not training:
        return x
    for axis, kind in ((2, "horizontal"), (1, "vertical")):
        if kind in mode:
            flip = keras.random.uniform((ops.shape(x)[0], 1, 1, 1)) < 0.5
            x = ops.where(flip, ops.flip(x, axis=axis), x)
    return x


@impl("RandomRotation")
def random_rotation(*, x: tf.Tensor, factor: Any, fill_mode: str = "reflect",
                    interpolation: str = "bilinear", fill_value: float = 0.0,
                    training: bool) -> tf.Tensor:
    x = ops.cast(x, "float32")
    if not training:
        return x
    b, h, w = _sizes(x)
    angle = _uniform(b, factor_range(factor, "factor")) * (2 * math.pi)
    cos, sin = ops.cos(angle), ops.sin(angle)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    transforms = _stack(cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos)
    return affine_transform(x, transforms, interpolation, fill_mode, fill_value)


@impl("RandomZoom")
def random_zoom(*, x: tf.Tensor, height_factor: Any, width_factor: Any = None,
                fill_mode: str = "reflect", interpolation: str = "bilinear",
                fill_value: float = 0.0, training: bool) -> tf.Tensor:
    x = ops.cast(x, "float32")
    if not training:
        return x
    b, h, w = _sizes(x)
    zh = 1 + _uniform(b, factor_range(height_factor, "height_factor"))
    zw = zh if width_factor is None else \
        1 + _uniform(b, factor_range(width_factor, "width_factor"))
    zero = ops.zeros_like(zh)
    transforms = _stack(zw, zero, (w - 1) / 2 * (1 - zw), zero, zh, (h - 1) / 2 * (1 - zh))
    return affine_transform(x, transforms, interpolation, fill_mode, fill_value)


@impl("RandomTranslation")
def random_translation(*, x: tf.Tensor, height_factor: Any, width_factor: Any,
                       fill_mode: str = "reflect", interpolation: str = "bilinear",
                       fill_value: float = 0.0, training: bool) -> tf.Tensor:
    x = ops.cast(x, "float32")
    if not training:
        return x
    b, h, w = _sizes(x)
    dy = _uniform(b, factor_range(height_factor, "height_factor")) * h
    dx = _uniform(b, factor_range(width_factor, "width_factor")) * w
    one, zero = ops.ones_like(dx), ops.zeros_like(dx)
    return affine_transform(x, _stack(one, zero, -dx, zero, one, -dy), interpolation,
                            fill_mode, fill_value)


@impl("RandomCrop")
def random_crop(*, x: tf.Tensor, height: int, width: int, training: bool) -> tf.Tensor:
    x = ops.cast(x, "float32")
    _, big_h, big_w = _sizes(x)
    if not training:
        return crop_and_resize(x, height, width, "bilinear", True)
    if big_h > height and big_w > width:
        top = keras.random.randint((), 0, big_h - height + 1, dtype="int32")
        left = keras.random.randint((), 0, big_w - width + 1, dtype="int32")
        return tf.slice(x, tf.stack([0, top, left, 0]), [-1, height, width, -1])
    top, left, _, _ = aspect_crop_box(big_h, big_w, height, width)
    return resize(x[:, top:top + height, left:left + width], height, width, "bilinear")
